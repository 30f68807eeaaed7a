//! Reload without restart, against the real binary under load: SIGHUP,
//! `kmsd admin reload` (gRPC) and `POST /kms/reload` put a new gRPC server
//! certificate, admin access keys, policy and log level in force without a
//! failed request, and a broken file changes nothing.

// Test code: a failed unwrap is a failed test, with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use kmsd_tests::{
    Kmsd, KmsdOptions, binary, ctx, free_port,
    load::{Counters, data_key_round_trips},
    pki::{Ca, Issued, tls_client},
    rest::AdminClient,
};

fn policy(operator: &Issued, encrypt: bool) -> String {
    let deny = if encrypt { "" } else { "deny = [\"Encrypt\"]" };
    format!(
        r#"
[[identities]]
name = "root-socket"
unix_uid = 0
policies = ["everything"]

[[identities]]
name = "operator"
spki_sha256 = "{}"
policies = ["data"]

[[identities]]
name = "ops"
access_key = "ops"
policies = ["everything"]

[[identities]]
name = "ops2"
access_key = "ops2"
policies = ["everything"]

[policies.everything]
allow = ["*"]

[policies.data]
allow = ["data:*"]
{deny}
"#,
        operator.spki_sha256
    )
}

/// The config file's tables after `[server]`: the log level, the policy and
/// the admin listener with `keys` as its access keys (each secret in
/// `<dir>/<key>.secret`).
fn extra_toml(level: &str, admin_port: u16, keys: &[&str]) -> String {
    let mut toml = format!(
        "[log]\nlevel = \"{level}\"\n[policy]\nfile = \"{{dir}}/policy.toml\"\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n"
    );
    for key in keys {
        toml.push_str(&format!(
            "[[admin.access_keys]]\naccess_key = \"{key}\"\nsecret_key_file = \"{{dir}}/{key}.secret\"\n"
        ));
    }
    toml
}

struct Setup {
    kmsd: Kmsd,
    options: KmsdOptions,
    grpc_port: u16,
    admin_port: u16,
    ca: Ca,
    operator: Issued,
}

impl Setup {
    /// Replaces the config file's extra tables (after `[server]`), now
    /// `from`, with `to`.
    fn rewrite_extra(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.kmsd.config_path()).unwrap();
        let dir = self.kmsd.dir().display().to_string();
        let (from, to) = (from.replace("{dir}", &dir), to.replace("{dir}", &dir));
        assert!(text.contains(&from), "the config file is not as expected");
        std::fs::write(self.kmsd.config_path(), text.replace(&from, &to)).unwrap();
    }

    fn write(&self, name: &str, content: &str) {
        std::fs::write(self.kmsd.dir().join(name), content).unwrap();
    }

    fn admin(&self, key: &str, secret: &str) -> AdminClient {
        AdminClient::new(self.admin_port, key, secret)
    }

    /// `kmsd admin reload` over the unix socket: its JSON output.
    fn cli_reload(&self) -> std::process::Output {
        std::process::Command::new(binary("kmsd"))
            .args(["admin", "reload", "--endpoint"])
            .arg(format!("unix:{}", self.kmsd.socket().display()))
            .output()
            .unwrap()
    }
}

async fn setup() -> Setup {
    let ca = Ca::new("reload test CA");
    let operator = ca.client("operator", false);
    let (grpc_port, admin_port) = (free_port(), free_port());
    let mut options = KmsdOptions::local();
    options.server_toml = format!(
        "tcp = \"127.0.0.1:{grpc_port}\"\n[server.tls]\ncert_file = \"{{dir}}/server.crt\"\nkey_file = \"{{dir}}/server.key\"\nclient_ca_file = \"{{dir}}/ca.crt\"\n"
    );
    options.extra_toml = extra_toml("info", admin_port, &["ops"]);
    // RUST_LOG would win over `[log] level`, as it does at start.
    options.env.push(("RUST_LOG".into(), String::new()));
    let mut kmsd = Kmsd::spawn_only(options.clone());
    // The files must exist before kmsd reads its config; the first spawn
    // above fails on their absence, so write them and start again.
    ca.server().write(kmsd.dir(), "server");
    std::fs::write(kmsd.dir().join("ca.crt"), ca.cert_pem()).unwrap();
    std::fs::write(kmsd.dir().join("policy.toml"), policy(&operator, true)).unwrap();
    std::fs::write(kmsd.dir().join("ops.secret"), "ops-secret-0123456789").unwrap();
    std::fs::write(kmsd.dir().join("ops2.secret"), "ops2-secret-0123456789").unwrap();
    kmsd.respawn();
    kmsd.wait_ready().await;
    Setup {
        kmsd,
        options,
        grpc_port,
        admin_port,
        ca,
        operator,
    }
}

/// Requests kmsd answers all along: data keys over one long-lived TLS
/// connection and over the unix socket, and admin status calls.
struct Load {
    counters: Counters,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    async fn start(s: &Setup, tls_trust: &str) -> Self {
        let counters = Counters::default();
        let tls = tls_client(s.grpc_port, tls_trust, Some(&s.operator))
            .await
            .unwrap();
        let unix = s.kmsd.client().await;
        let mut tasks = vec![
            data_key_round_trips(tls, counters.clone()),
            data_key_round_trips(unix, counters.clone()),
        ];
        let admin = s.admin("ops", "ops-secret-0123456789");
        let admin_counters = counters.clone();
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !admin_counters.stopped() {
                let reply = admin.get("/kms/status").await;
                let result = match reply.status {
                    200 => Ok(()),
                    status => Err(format!("status {status}: {}", reply.text)),
                };
                admin_counters.record(result, &mut errors);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            errors
        }));
        Self { counters, tasks }
    }

    async fn finish(self) -> (u64, u64, Vec<String>) {
        self.counters.finish(self.tasks).await
    }
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: never happened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_put_new_files_in_force_under_load_and_a_broken_file_changes_nothing() {
    let s = setup().await;
    let renewed = Ca::new("renewed CA");
    let both_cas = format!("{}{}", s.ca.cert_pem(), renewed.cert_pem());
    let load = Load::start(&s, &both_cas).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 1. SIGHUP: a server certificate from a new CA is served to new
    // connections; the long-lived one under load keeps working.
    renewed.server().write(s.kmsd.dir(), "server");
    s.kmsd.signal("HUP");
    eventually(
        "the renewed certificate is served",
        async || match tls_client(s.grpc_port, &renewed.cert_pem(), Some(&s.operator)).await {
            Ok(client) => client.generate_data_key(None, &ctx(&[])).await.is_ok(),
            Err(_) => false,
        },
    )
    .await;
    assert!(
        tls_client(s.grpc_port, &s.ca.cert_pem(), Some(&s.operator))
            .await
            .is_err()
            || tls_client(s.grpc_port, &s.ca.cert_pem(), Some(&s.operator))
                .await
                .unwrap()
                .generate_data_key(None, &ctx(&[]))
                .await
                .is_err(),
        "new connections trusting only the old CA must fail"
    );

    // 2. POST /kms/reload: a second admin access key, the policy (no
    // Encrypt for the operator) and the log level (warn: the per-request
    // "admin request" info line stops).
    let ops = s.admin("ops", "ops-secret-0123456789");
    let ops2 = s.admin("ops2", "ops2-secret-0123456789");
    assert_eq!(ops2.get("/kms/status").await.status, 403, "not a key yet");
    let operator = tls_client(s.grpc_port, &renewed.cert_pem(), Some(&s.operator))
        .await
        .unwrap();
    operator.encrypt(None, b"x", &ctx(&[])).await.unwrap();
    let with_ops2 = extra_toml("warn", s.admin_port, &["ops", "ops2"]);
    s.rewrite_extra(&s.options.extra_toml, &with_ops2);
    s.write("policy.toml", &policy(&s.operator, false));
    let reply = ops.post("/kms/reload", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reloaded: Vec<&str> = reply.json["reloaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for part in ["tls:grpc", "admin_access_keys", "policy", "log_level"] {
        assert!(reloaded.contains(&part), "{part} not in {reloaded:?}");
    }
    assert_eq!(reply.json["restart_required"], serde_json::json!([]));
    assert_eq!(
        ops2.get("/kms/status").await.status,
        200,
        "ops2 is a key now"
    );
    let denied = operator.encrypt(None, b"x", &ctx(&[])).await.unwrap_err();
    assert_eq!(denied.code(), Some(tonic::Code::PermissionDenied));
    let before = count(&s.kmsd.logs(), "admin request access_key");
    for _ in 0..5 {
        assert_eq!(ops2.get("/kms/status").await.status, 200);
    }
    // The load's own admin calls would count too: the level is global.
    assert_eq!(
        count(&s.kmsd.logs(), "admin request access_key"),
        before,
        "info lines are still written after the level went to warn"
    );

    // 3. A broken file: a server key that is not a key, together with an
    // edit that would remove ops2. Refused as a whole, by the API (409)
    // and by SIGHUP (logged); ops2 and the current certificate stay.
    s.rewrite_extra(&with_ops2, &extra_toml("warn", s.admin_port, &["ops"]));
    s.write(
        "server.key",
        "-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n",
    );
    let reply = ops.post("/kms/reload", "").await;
    assert_eq!(reply.status, 409, "{}", reply.text);
    assert_eq!(reply.code(), "RELOAD_FAILED");
    assert!(reply.text.contains("tls:grpc"), "{}", reply.text);
    assert!(!reply.text.contains("broken"), "the file's content leaked");
    assert_eq!(
        ops2.get("/kms/status").await.status,
        200,
        "ops2 was removed"
    );
    s.kmsd.signal("HUP");
    eventually("the SIGHUP refusal is logged", async || {
        s.kmsd.logs().contains("SIGHUP reload refused")
    })
    .await;
    assert_eq!(
        ops2.get("/kms/status").await.status,
        200,
        "ops2 was removed"
    );
    let fresh = tls_client(s.grpc_port, &renewed.cert_pem(), Some(&s.operator))
        .await
        .unwrap();
    fresh.generate_data_key(None, &ctx(&[])).await.unwrap();

    // 4. Fixed: `kmsd admin reload` (gRPC) puts the edit in force.
    renewed.server().write(s.kmsd.dir(), "server");
    let output = s.cli_reload();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["reloaded"].to_string().contains("admin_access_keys"));
    assert_eq!(ops2.get("/kms/status").await.status, 403, "ops2 is gone");

    // Counted by trigger and result; the admin listener serves /metrics too.
    let metrics = kmsd_tests::metrics::scrape(s.admin_port).await;
    let reloads = |trigger: &str, result: &str| {
        kmsd_tests::metrics::series(
            &metrics,
            &format!("kmsd_reloads_total{{result=\"{result}\",trigger=\"{trigger}\"}}"),
        )
    };
    assert_eq!(reloads("api", "ok"), Some(2.0), "{metrics}");
    assert_eq!(reloads("api", "refused"), Some(1.0), "{metrics}");
    assert_eq!(reloads("signal", "ok"), Some(1.0), "{metrics}");
    assert_eq!(reloads("signal", "refused"), Some(1.0), "{metrics}");

    let (ok, failed, errors) = load.finish().await;
    assert_eq!(failed, 0, "requests failed during the reloads: {errors:?}");
    assert!(ok > 50, "too little load to mean anything: {ok}");
    let logs = s.kmsd.logs();
    for secret in ["ops-secret-0123456789", "ops2-secret-0123456789"] {
        assert!(!logs.contains(secret), "an admin secret reached the log");
    }
}

#[tokio::test]
async fn a_changed_listen_address_is_reported_not_applied() {
    let s = setup().await;
    let ops = s.admin("ops", "ops-secret-0123456789");
    let text = std::fs::read_to_string(s.kmsd.config_path()).unwrap();
    let moved = text.replace(
        &format!("127.0.0.1:{}", s.grpc_port),
        &format!("127.0.0.1:{}", free_port()),
    );
    std::fs::write(s.kmsd.config_path(), moved).unwrap();
    let reply = ops.post("/kms/reload", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json["restart_required"],
        serde_json::json!(["server"])
    );
    // Still served where it was.
    let client = tls_client(s.grpc_port, &s.ca.cert_pem(), Some(&s.operator))
        .await
        .unwrap();
    client.generate_data_key(None, &ctx(&[])).await.unwrap();
}
