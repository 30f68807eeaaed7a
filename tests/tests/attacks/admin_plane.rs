//! Item 1: over the admin API (REST and gRPC Admin) a backend
//! configuration may not name files, variables or danger_* flags unless the
//! config file's `[admin]` allows them, nor a Vault address outside
//! `[admin] allowed_vault_addresses`: refused with 400 / INVALID_ARGUMENT
//! `INVALID_CONFIG` naming the field, before any connection, and nothing
//! persisted.

use kms_client::proto;
use kmsd_tests::{
    Kmsd, KmsdOptions, code_and_reason, ctx,
    rest::{AdminClient, with_admin_rules},
};
use tonic::Code;

use super::*;

const SECRET: &str = "attack-admin-secret-77a1c3";
const ENV_SECRET: &str = "env-held-secret-0b9e42";

/// A running local kmsd with a sealed state directory, the admin API and
/// `[admin]` lines `rules`.
async fn start(rules: &str) -> (Kmsd, AdminClient) {
    let mut options = KmsdOptions::local();
    options.server_toml = "state_dir = \"{dir}/state\"\n[server.state_sealing]\npassphrase_env = \"KMSD_TEST_STATE_PASSPHRASE\"\n".into();
    options.env.push((
        "KMSD_TEST_STATE_PASSPHRASE".into(),
        "attack test state passphrase".into(),
    ));
    options
        .env
        .push(("KMSD_ATTACK_ENV".into(), ENV_SECRET.into()));
    let (options, port) = with_admin_rules(options, "admin", SECRET, rules);
    let kmsd = Kmsd::start(options).await;
    (kmsd, AdminClient::new(port, "admin", SECRET))
}

fn vault_json(address: &str, auth: &str, extra: &str) -> String {
    format!(
        r#"{{"backend_type": "vault", "address": "{address}", "auth_method": {auth}{extra}, "timeout_seconds": 2, "retry_attempts": 0}}"#
    )
}

/// Sends `json` as Configure and Reconfigure over REST and gRPC; each must
/// be refused as INVALID_CONFIG naming `field` and quoting none of
/// `values`.
async fn assert_refused(kmsd: &Kmsd, rest: &AdminClient, field: &str, json: &str, values: &[&str]) {
    for path in ["/kms/reconfigure", "/kms/configure"] {
        let reply = rest.post(path, json).await;
        assert_eq!(
            (reply.status, reply.code()),
            (400, "INVALID_CONFIG"),
            "{field} {path}: {}",
            reply.text
        );
        assert!(reply.text.contains(field), "{field}: {}", reply.text);
        for value in values {
            assert!(!reply.text.contains(value), "{field}: {}", reply.text);
        }
    }
    let client = kmsd.client().await;
    let reconfigured = client
        .admin()
        .reconfigure(proto::ReconfigureRequest {
            backend_config_json: json.to_owned(),
            discard_previous: false,
            decrypt_only: false,
        })
        .await
        .map_err(kms_client::Error::from);
    let configured = client
        .admin()
        .configure(proto::ConfigureRequest {
            backend_config_json: json.to_owned(),
        })
        .await
        .map_err(kms_client::Error::from);
    for result in [reconfigured.map(|_| ()), configured.map(|_| ())] {
        let err = result.unwrap_err();
        assert_eq!(
            code_and_reason(&err),
            (Code::InvalidArgument, "INVALID_CONFIG".to_owned()),
            "{field}: {err}"
        );
        assert!(err.to_string().contains(field), "{field}: {err}");
        for value in values {
            assert!(!err.to_string().contains(value), "{field}: {err}");
        }
    }
}

/// The reproduction: role_id_file = the master-key file, secret_id_file =
/// the admin secret, pointed at a Vault the caller runs; and the
/// token_file / token_env variants, TLS paths, danger flags, a key_dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_environment_references_never_reach_an_attacker_vault() {
    let vault = FakeVault::start().await;
    let (kmsd, rest) = start("").await;
    let master = kmsd.dir().join("keys/default.key");
    assert!(master.exists());
    let admin_secret = kmsd.dir().join("admin-secret");
    std::fs::write(&admin_secret, SECRET).unwrap();
    let (m, a) = (
        master.display().to_string(),
        admin_secret.display().to_string(),
    );
    let address = vault.address();
    let cases = [
        (
            "backend.auth_method.approle.role_id_file",
            vault_json(
                &address,
                &format!(r#"{{"approle": {{"role_id_file": "{m}", "secret_id_file": "{a}"}}}}"#),
                "",
            ),
        ),
        (
            "backend.auth_method.approle.secret_id_file",
            vault_json(
                &address,
                &format!(r#"{{"approle": {{"role_id": "r", "secret_id_file": "{a}"}}}}"#),
                "",
            ),
        ),
        (
            "backend.auth_method.token_file",
            vault_json(&address, &format!(r#"{{"token_file": "{m}"}}"#), ""),
        ),
        (
            "backend.auth_method.token_env",
            vault_json(&address, r#"{"token_env": "KMSD_ATTACK_ENV"}"#, ""),
        ),
        (
            "backend.auth_method.approle.secret_id_env",
            vault_json(
                &address,
                r#"{"approle": {"role_id": "r", "secret_id_env": "KMSD_ATTACK_ENV"}}"#,
                "",
            ),
        ),
        (
            "backend.tls.client_cert_path",
            vault_json(
                &address,
                r#"{"token": "t"}"#,
                &format!(r#", "tls": {{"client_cert_path": "{m}", "client_key_path": "{m}"}}"#),
            ),
        ),
        (
            "backend.danger_allow_http",
            vault_json(
                &address,
                r#"{"token": "t"}"#,
                r#", "danger_allow_http": true"#,
            ),
        ),
        (
            "backend.tls.danger_skip_tls_verify",
            vault_json(
                &address.replace("http:", "https:"),
                r#"{"token": "t"}"#,
                r#", "tls": {"danger_skip_tls_verify": true}"#,
            ),
        ),
        (
            "backend.key_dir",
            format!(r#"{{"backend_type": "local", "key_dir": "{m}-dir"}}"#),
        ),
    ];
    for (field, json) in &cases {
        assert_refused(&kmsd, &rest, field, json, &[&m, &a, "KMSD_ATTACK_ENV"]).await;
    }
    let (connections, bytes) = vault.received();
    assert_eq!(
        (connections, bytes.len()),
        (0, 0),
        "the attacker's Vault was contacted: {}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(
        !kmsd.dir().join("state/runtime.json").exists(),
        "a refused configuration was persisted"
    );
    let client = kmsd.client().await;
    client.generate_data_key(None, &ctx(&[])).await.unwrap();

    // The control: a configuration the rules allow (an inline token, the
    // caller's own) does reach the listener, so its silence above means
    // something. It fails (the fake Vault answers 500) and leaves nothing
    // behind in the state directory.
    let token = "caller-own-token-5ae1";
    let reply = rest
        .post(
            "/kms/reconfigure",
            &vault_json(&address, &format!(r#"{{"token": "{token}"}}"#), ""),
        )
        .await;
    assert_ne!(reply.status, 200, "{}", reply.text);
    let (connections, bytes) = vault.received();
    assert!(connections > 0 && contains(&bytes, token.as_bytes()));
    let state = every_file(&kmsd.dir().join("state"));
    assert!(
        !contains(&state, token.as_bytes()),
        "a failed reconfigure left its secret"
    );
    assert!(!kmsd.dir().join("state/runtime.json").exists());
    assert!(!kmsd.dir().join("state/secrets").exists());
    client.generate_data_key(None, &ctx(&[])).await.unwrap();
}

/// `[admin] allowed_vault_addresses` limits where the admin API may point
/// kmsd, inline secrets included; `allowed_dirs` and `allowed_env_vars`
/// open exactly what they list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_allow_lists_decide_what_the_admin_api_may_name() {
    let vault = FakeVault::start().await;
    let (kmsd, rest) = start(
        "allowed_vault_addresses = [\"https://vault.example.invalid:8200\"]\nallowed_dirs = [\"{dir}/allowed\"]\nallowed_env_vars = [\"KMSD_ATTACK_ENV\"]",
    )
    .await;
    let refused = vault_json(&vault.address(), r#"{"token": "s.inline-8d2f"}"#, "");
    assert_refused(
        &kmsd,
        &rest,
        "backend.address",
        &refused,
        &["s.inline-8d2f"],
    )
    .await;
    assert_eq!(
        vault.received().0,
        0,
        "the Vault outside the list was contacted"
    );

    let outside = format!(
        r#"{{"backend_type": "local", "key_dir": "{}/keys-2"}}"#,
        kmsd.dir().display()
    );
    assert_refused(&kmsd, &rest, "backend.key_dir", &outside, &[]).await;
    let inside = format!(
        r#"{{"backend_type": "local", "key_dir": "{}/allowed/keys", "default_key_id": "default"}}"#,
        kmsd.dir().display()
    );
    let reply = rest.post("/kms/reconfigure", &inside).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}
