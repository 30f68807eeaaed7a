//! Access control end to end: mutual TLS identities, unix-socket peers, the
//! per-identity policy matrix, certificate reload, and robustness against
//! malformed input.

// Test code: a failed unwrap is a failed test, with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kmsd_tests::{
    Kmsd, KmsdOptions, ctx, free_port,
    pki::{Ca, Issued, tls_client},
};
use tonic::Code;

// The crate root sits in tests/, so the sub-module needs its path.
#[path = "security/policy_matrix.rs"]
mod policy_matrix;

struct Setup {
    kmsd: Kmsd,
    port: u16,
    ca: Ca,
    alice: Issued,
    bob: Issued,
}

fn policy(alice: &Issued, bob: &Issued) -> String {
    format!(
        r#"
[[identities]]
name = "alice"
spki_sha256 = "{}"
policies = ["data-alice"]

[[identities]]
name = "bob"
spki_sha256 = "{}"
policies = ["key-admin"]

[[identities]]
name = "root-socket"
unix_uid = 0
policies = ["everything"]

[[identities]]
name = "app"
unix_uid = 1000
policies = ["data-default"]

[policies.data-alice]
allow = ["data:*"]
keys = ["alice-*", "default"]
deny = ["Encrypt"]

[policies.key-admin]
allow = ["keys:*"]

[policies.everything]
allow = ["*"]

[policies.data-default]
allow = ["GenerateDataKey", "Decrypt"]
keys = ["default"]
"#,
        alice.spki_sha256, bob.spki_sha256
    )
}

async fn setup() -> Setup {
    let ca = Ca::new("kmsd test CA");
    let alice = ca.client("alice", false);
    let bob = ca.client("bob", false);
    let port = free_port();
    let mut options = KmsdOptions::local();
    options.server_toml = format!(
        "tcp = \"127.0.0.1:{port}\"\n[server.tls]\ncert_file = \"{{dir}}/server.crt\"\nkey_file = \"{{dir}}/server.key\"\nclient_ca_file = \"{{dir}}/ca.crt\"\n"
    );
    options.extra_toml =
        "[policy]\nfile = \"{dir}/policy.toml\"\n[audit]\noutput = \"{dir}/audit.log\"\n".into();
    let mut kmsd = Kmsd::spawn_only(options);
    // The files must exist before kmsd reads its config; the first spawn
    // above fails on their absence, so write them and start again.
    ca.server().write(kmsd.dir(), "server");
    std::fs::write(kmsd.dir().join("ca.crt"), ca.cert_pem()).unwrap();
    std::fs::write(kmsd.dir().join("policy.toml"), policy(&alice, &bob)).unwrap();
    kmsd.respawn();
    kmsd.wait_ready().await;
    Setup {
        kmsd,
        port,
        ca,
        alice,
        bob,
    }
}

#[tokio::test]
async fn clients_without_a_valid_certificate_cannot_complete_a_handshake() {
    let s = setup().await;
    let other_ca = Ca::new("another CA");
    let mallory = other_ca.client("mallory", false);
    let expired = s.ca.client("expired", true);
    let no_cert = tls_client(s.port, &s.ca.cert_pem(), None).await;
    let foreign = tls_client(s.port, &s.ca.cert_pem(), Some(&mallory)).await;
    let stale = tls_client(s.port, &s.ca.cert_pem(), Some(&expired)).await;
    for (who, attempt) in [
        ("no certificate", no_cert),
        ("another CA", foreign),
        ("expired", stale),
    ] {
        // The handshake fails either at connect or, with TLS 1.3's late
        // client-certificate check, on the first call.
        let refused = match attempt {
            Err(_) => true,
            Ok(client) => client
                .generate_data_key(None, &ctx(&[]))
                .await
                .is_err_and(|e| {
                    e.code() != Some(Code::PermissionDenied) && e.code() != Some(Code::Ok)
                }),
        };
        assert!(refused, "{who}: the handshake was accepted");
    }
    // A good certificate works.
    let alice = tls_client(s.port, &s.ca.cert_pem(), Some(&s.alice))
        .await
        .unwrap();
    alice.generate_data_key(None, &ctx(&[])).await.unwrap();
    assert!(s.kmsd.logs().contains("TLS handshake refused"));
}

#[tokio::test]
async fn unix_peers_are_identified_by_their_credentials() {
    use std::os::unix::{fs::PermissionsExt, process::CommandExt};
    let s = setup().await;
    // Let uid/gid 1000 reach the socket: traverse the directory, and own
    // the socket's group (its mode is 0660).
    std::fs::set_permissions(s.kmsd.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::os::unix::fs::chown(s.kmsd.socket(), None, Some(1000)).unwrap();
    let endpoint = s.kmsd.endpoint().to_string();
    let run_as_app = |args: &[&str]| {
        let output = std::process::Command::new(kmsd_tests::binary("kmsd"))
            .args(args)
            .arg("--endpoint")
            .arg(&endpoint)
            .uid(1000)
            .gid(1000)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, stderr) = run_as_app(&["datakey"]);
    assert!(
        ok,
        "uid 1000 may generate data keys under default: {stderr}"
    );
    for denied in [
        &["datakey", "--key-id", "alice-1"][..],
        &["key", "create", "x"],
        &["status"],
    ] {
        let (ok, stderr) = run_as_app(denied);
        assert!(
            !ok && stderr.contains("PERMISSION_DENIED"),
            "{denied:?}: {stderr}"
        );
    }
    let audit = std::fs::read_to_string(s.kmsd.dir().join("audit.log")).unwrap();
    assert!(audit.contains("unix:uid=1000,gid=1000 (app)"), "{audit}");
}

#[tokio::test]
async fn the_server_certificate_reloads_without_dropping_connections() {
    let s = setup().await;
    let alice = tls_client(s.port, &s.ca.cert_pem(), Some(&s.alice))
        .await
        .unwrap();
    alice.generate_data_key(None, &ctx(&[])).await.unwrap();

    // A server certificate from a new CA; clients of the new CA can connect
    // only once kmsd has reloaded.
    let new_ca = Ca::new("renewed CA");
    new_ca.server().write(s.kmsd.dir(), "server");
    s.kmsd.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(client) = tls_client(s.port, &new_ca.cert_pem(), Some(&s.alice)).await
            && client.generate_data_key(None, &ctx(&[])).await.is_ok()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection made before the reload still works.
    alice.generate_data_key(None, &ctx(&[])).await.unwrap();
    // New connections trusting only the old CA now fail.
    assert!(
        tls_client(s.port, &s.ca.cert_pem(), Some(&s.alice))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn plain_tcp_needs_an_explicit_danger_flag() {
    let dir = kmsd_tests::private_dir();
    let config = dir.path().join("kmsd.toml");
    std::fs::write(
        &config,
        format!("[server]\ntcp = \"127.0.0.1:{}\"\n", free_port()),
    )
    .unwrap();
    let output = std::process::Command::new(kmsd_tests::binary("kmsd"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("needs [server.tls]"));
}

#[tokio::test]
async fn the_cli_speaks_mutual_tls() {
    let s = setup().await;
    let dir = s.kmsd.dir();
    std::fs::write(dir.join("client-ca.crt"), s.ca.cert_pem()).unwrap();
    let (cert, key) = s.alice.write(dir, "alice");
    let output = std::process::Command::new(kmsd_tests::binary("kmsd"))
        .args([
            "datakey",
            "--endpoint",
            &format!("https://127.0.0.1:{}", s.port),
        ])
        .arg("--tls-ca")
        .arg(dir.join("client-ca.crt"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .output()
        .unwrap();
    // kmsd's certificate names localhost and 127.0.0.1, so the endpoint's
    // host verifies without an override.
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["key_id"], "default");
}
