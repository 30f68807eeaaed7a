//! Item 5: a config-file syntax error never prints a secret, REST errors
//! never quote a body value, and a sealing passphrase that is too short or
//! readable by others is refused.

use std::{os::unix::fs::PermissionsExt, process::Command, time::Duration};

use kmsd_tests::{
    Kmsd, KmsdOptions, binary, private_dir,
    rest::{AdminClient, with_admin_rules},
};

const TOKEN: &str = "s.TOKEN-9f3e1a7c";

/// Each broken shape of a config file with an inline secret, through
/// `serve` and `serve --check-config`: exit 78, and the secret in none of
/// the output.
#[test]
fn config_syntax_errors_never_print_a_secret() {
    let vault = |auth: &str, extra: &str| {
        format!(
            "[backend]\nbackend_type = \"vault\"\naddress = \"https://v:8200\"\n{extra}\n[backend.auth_method]\n{auth}\n"
        )
    };
    let approle = |secret_id: &str| {
        format!(
            "[backend]\nbackend_type = \"vault\"\naddress = \"https://v:8200\"\n[backend.auth_method.approle]\nrole_id = \"r\"\n{secret_id}\n"
        )
    };
    let shapes = [
        (
            "unterminated string",
            vault(&format!("token = \"{TOKEN}"), ""),
        ),
        (
            "duplicate key",
            vault(&format!("token = \"{TOKEN}\"\ntoken = \"{TOKEN}\""), ""),
        ),
        (
            "junk after a value",
            vault(&format!("token = \"{TOKEN}\" x"), ""),
        ),
        (
            "a secret in a number field",
            vault("token = \"t\"", &format!("timeout_seconds = \"{TOKEN}\"")),
        ),
        (
            "an unquoted secret",
            vault("token = \"t\"", &format!("timeout_seconds = {TOKEN}")),
        ),
        (
            "an unterminated literal secret id",
            approle(&format!("secret_id = '{TOKEN}")),
        ),
        (
            "an unterminated multi-line secret id",
            approle(&format!("secret_id = \"\"\"{TOKEN}")),
        ),
        (
            "a secret as the backend type",
            format!("[backend]\nbackend_type = \"{TOKEN}\"\n"),
        ),
    ];
    let dir = private_dir();
    let config = dir.path().join("kmsd.toml");
    for (shape, text) in shapes {
        std::fs::write(&config, text).unwrap();
        for check in [false, true] {
            let mut command = Command::new(binary("kmsd"));
            command.arg("serve").arg("--config").arg(&config);
            if check {
                command.arg("--check-config");
            }
            let out = command.output().unwrap();
            let printed = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.status.code(), Some(78), "{shape}: {printed}");
            assert!(
                !printed.contains(TOKEN),
                "{shape} (check {check}): {printed}"
            );
            assert!(!printed.contains("TOKEN-9f3e"), "{shape}: {printed}");
            assert!(printed.contains("line "), "{shape}: {printed}");
        }
    }
}

#[tokio::test]
async fn rest_errors_never_quote_a_body_value() {
    let options = KmsdOptions {
        backend_toml: None,
        server_toml: "state_dir = \"{dir}/state\"".into(),
        ..KmsdOptions::local()
    };
    let (options, port) = with_admin_rules(
        options,
        "admin",
        "rest-secret-26bd",
        "allowed_dirs = [\"/\"]",
    );
    let _kmsd = Kmsd::start(options).await;
    let admin = AdminClient::new(port, "admin", "rest-secret-26bd");
    let vault = |field: &str| {
        format!(
            r#"{{"backend_type": "vault", "address": "https://v:8200", "auth_method": {{"token": "t"}}, "{field}": "{TOKEN}"}}"#
        )
    };
    let bodies = [
        format!(
            r#"{{"backend_type": "vault", "address": "{TOKEN}", "auth_method": {{"token": "t"}}}}"#
        ),
        format!(
            r#"{{"backend_type": "vault", "address": "{TOKEN}:x", "auth_method": {{"token": "t"}}}}"#
        ),
        vault("mount_path").replace(TOKEN, &format!("{TOKEN}/..")),
        vault("namespace").replace(TOKEN, &format!("a b {TOKEN}")),
        vault("default_key_id").replace(TOKEN, &format!("{TOKEN}/x")),
        vault("timeout_seconds"),
        vault("no_such_field"),
        format!(r#"{{"backend_type": "{TOKEN}"}}"#),
        format!(r#"{{"backend_type": "local", "key_dir": "{TOKEN}"}}"#),
        format!(r#"{{"backend_type": "local", "key_dir": "/k", "default_key_id": "-{TOKEN}"}}"#),
        format!(
            r#"{{"backend_type": "local", "key_dir": "/k", "sealing": {{"passphrase_file": "{TOKEN}"}}}}"#
        ),
        format!(
            r#"{{"backend_type": "local", "key_dir": "/k", "sealing": {{"passphrase_file": ["{TOKEN}"]}}}}"#
        ),
    ];
    for body in &bodies {
        for path in ["/kms/configure", "/kms/reconfigure"] {
            let reply = admin.post(path, body).await;
            assert_eq!(reply.status, 400, "{body}: {}", reply.text);
            assert!(!reply.text.contains("TOKEN-9f3e"), "{body}: {}", reply.text);
        }
    }
    for (path, body) in [
        ("/kms/keys", format!(r#"{{"key_id": "{TOKEN}/.."}}"#)),
        (
            "/kms/keys",
            format!(r#"{{"key_id": 1, "description": "{TOKEN}", "x": 2}}"#),
        ),
        (
            "/kms/generate-data-key",
            format!(r#"{{"key_id": "{TOKEN} x"}}"#),
        ),
    ] {
        let reply = admin.post(path, &body).await;
        assert!(reply.status >= 400, "{body}: {}", reply.text);
        assert!(!reply.text.contains("TOKEN-9f3e"), "{body}: {}", reply.text);
    }
    let reply = admin.get(&format!("/kms/keys?limit={TOKEN}")).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(!reply.text.contains("TOKEN-9f3e"), "{}", reply.text);
}

/// A sealed local backend whose passphrase file is written with `contents`
/// and `mode` after the first (failing) spawn: the exit status and logs.
async fn sealed_start(contents: &str, mode: u32) -> (Kmsd, bool) {
    let mut options = KmsdOptions::local();
    options.backend_toml = Some(format!(
        "{}[backend.sealing]\npassphrase_file = \"{{dir}}/passphrase\"\n",
        options.backend_toml.unwrap()
    ));
    let mut kmsd = Kmsd::spawn_only(options);
    kmsd.wait_exit(Duration::from_secs(20)).await;
    let file = kmsd.dir().join("passphrase");
    std::fs::write(&file, contents).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    kmsd.respawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = kmsd.try_exit_status() {
            return (kmsd, status.success());
        }
        // The socket is bound only once the backend opened.
        if kmsd.socket().exists() {
            kmsd.wait_ready().await;
            return (kmsd, true);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kmsd neither started nor exited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn weak_or_exposed_sealing_passphrases_are_refused() {
    let (kmsd, started) = sealed_start("x\n", 0o600).await;
    assert!(!started);
    assert!(
        kmsd.logs().contains("shorter than 16 bytes"),
        "{}",
        kmsd.logs()
    );
    assert!(!kmsd.dir().join("keys/default.key").exists());

    let passphrase = "a long enough passphrase 6c2d";
    let (kmsd, started) = sealed_start(passphrase, 0o644).await;
    assert!(!started);
    assert!(
        kmsd.logs().contains("other users may read or write it"),
        "{}",
        kmsd.logs()
    );
    assert!(!kmsd.logs().contains(passphrase));

    let (kmsd, started) = sealed_start(passphrase, 0o600).await;
    assert!(started, "{}", kmsd.logs());
    let sealing = std::fs::read_to_string(kmsd.dir().join("keys/.kmsd-sealing.json")).unwrap();
    let sealing: serde_json::Value = serde_json::from_str(&sealing).unwrap();
    assert_eq!(sealing["argon2"]["m_cost_kib"], 65536, "{sealing}");
    assert_eq!(sealing["argon2"]["t_cost"], 3, "{sealing}");
}
