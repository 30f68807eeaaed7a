//! No secret reaches an output: every RPC runs with known key material,
//! plaintexts, data keys, an admin secret and a sealing passphrase, then
//! the logs, the audit log, the metrics and every status response are
//! searched for each of them in raw, hex and base64 form.

// Test code: a failed unwrap is a failed test, with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use kms_client::{KmsClient, proto};
use kmsd_tests::{
    Kmsd, KmsdOptions, ctx, every_file, free_port,
    rest::{AdminClient, with_admin},
};

const PLAINTEXT: &[u8] = b"a small secret: 7f3c9a11-do-not-leak";
const ADMIN_SECRET: &str = "admin-secret-0d1e2f3a4b5c6d7e";
const PASSPHRASE: &str = "sealing passphrase 51c2-9bd0";
const STATE_PASSPHRASE: &str = "state sealing passphrase 9e07-41aa";

fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![
        secret.to_vec(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
        B64.encode(secret).into_bytes(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(secret)
            .into_bytes(),
    ];
    // A prefix of the base64 form catches a secret inside a longer encoded
    // value (base64 of a blob that embeds it at an aligned offset).
    if secret.len() >= 24 {
        forms.push(B64.encode(&secret[..24]).into_bytes());
    }
    forms
}

fn assert_absent(haystack: &[u8], secrets: &[(&str, Vec<u8>)], place: &str) {
    for (name, secret) in secrets {
        for form in forms(secret) {
            assert!(
                !haystack.windows(form.len()).any(|w| w == form.as_slice()),
                "{name} leaked into {place}"
            );
        }
    }
}

/// The secrets every run holds, whatever its backend: the Encrypt
/// plaintext, the admin secret and the state sealing passphrase.
fn common_secrets() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("the Encrypt plaintext", PLAINTEXT.to_vec()),
        ("the admin secret", ADMIN_SECRET.as_bytes().to_vec()),
        (
            "the state sealing passphrase",
            STATE_PASSPHRASE.as_bytes().to_vec(),
        ),
    ]
}

/// Starts kmsd with a state directory, an audit file, metrics, trace-level
/// logs and the admin API: every output the search reads.
async fn start_observed(mut options: KmsdOptions) -> (Kmsd, KmsClient, AdminClient, u16) {
    let metrics_port = free_port();
    options.server_toml = "state_dir = \"{dir}/state\"\n[server.state_sealing]\npassphrase_env = \"KMSD_TEST_STATE_PASSPHRASE\"\n".into();
    options
        .env
        .push(("KMSD_TEST_STATE_PASSPHRASE".into(), STATE_PASSPHRASE.into()));
    options.extra_toml = format!(
        "[audit]\noutput = \"{{dir}}/audit.log\"\ninclude_context = false\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[log]\nlevel = \"trace\"\n"
    );
    let (options, admin_port) = with_admin(options, "admin", ADMIN_SECRET);
    let kmsd = Kmsd::start(options).await;
    let client = kmsd.client().await;
    let rest = AdminClient::new(admin_port, "admin", ADMIN_SECRET);
    (kmsd, client, rest, metrics_port)
}

/// Searches kmsd's own outputs (logs, audit log, metrics, runtime state)
/// and the `responses` collected by the test for every secret.
async fn assert_nothing_leaked(
    kmsd: &Kmsd,
    metrics_port: u16,
    secrets: &[(&str, Vec<u8>)],
    responses: Vec<(&str, Vec<u8>)>,
) {
    let metrics = kmsd_tests::metrics::scrape(metrics_port).await;
    let audit = std::fs::read(kmsd.dir().join("audit.log")).unwrap();
    assert!(audit.len() > 1000, "the audit log is suspiciously short");
    let outputs = [
        ("the logs (trace level)", kmsd.logs().into_bytes()),
        ("the audit log", audit),
        ("the metrics", metrics.into_bytes()),
        (
            "the state directory (every file)",
            every_file(&kmsd.dir().join("state")),
        ),
    ];
    for (place, text) in outputs.into_iter().chain(responses) {
        assert_absent(&text, secrets, place);
    }
}

/// Calls every key-admin RPC once, on a new key `k2`, so each has its
/// log and audit lines in the search.
async fn every_key_admin_rpc(client: &KmsClient) {
    let mut admin = client.key_admin();
    admin
        .create_key(proto::CreateKeyRequest {
            key_id: "k2".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .describe_key(proto::DescribeKeyRequest {
            key_id: "k2".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .list_keys(proto::ListKeysRequest::default())
        .await
        .unwrap();
    admin
        .rotate_key(proto::RotateKeyRequest {
            key_id: "k2".into(),
        })
        .await
        .unwrap();
    admin
        .disable_key(proto::DisableKeyRequest {
            key_id: "k2".into(),
        })
        .await
        .unwrap();
    admin
        .enable_key(proto::EnableKeyRequest {
            key_id: "k2".into(),
        })
        .await
        .unwrap();
    admin
        .schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
            key_id: "k2".into(),
            pending_window_in_days: 7,
            // The deletion guard (issue 20) is not what this tests.
            force: true,
        })
        .await
        .unwrap();
    admin
        .cancel_key_deletion(proto::CancelKeyDeletionRequest {
            key_id: "k2".into(),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_audit_metrics_or_status() {
    let mut options = KmsdOptions::local();
    options.backend_toml = Some(format!(
        "{}[backend.sealing]\npassphrase_env = \"KMSD_TEST_PASSPHRASE\"\n",
        options.backend_toml.unwrap()
    ));
    options
        .env
        .push(("KMSD_TEST_PASSPHRASE".into(), PASSPHRASE.into()));
    let (kmsd, client, rest, metrics_port) = start_observed(options).await;

    // Every data-plane RPC.
    let context = ctx(&[("bucket", "b"), ("object", "o")]);
    let generated = client.generate_data_key(None, &context).await.unwrap();
    let sealed_only = client
        .generate_data_key_without_plaintext(None, &context)
        .await
        .unwrap();
    let opened_only = client
        .decrypt(&sealed_only.blob, &context, None)
        .await
        .unwrap();
    let sealed = client.encrypt(None, PLAINTEXT, &context).await.unwrap();
    client
        .decrypt(&sealed.blob, &context, Some("default"))
        .await
        .unwrap();
    client
        .decrypt(&sealed.blob, &ctx(&[]), None)
        .await
        .unwrap_err();
    let moved = client
        .re_encrypt(&sealed.blob, &context, None, None)
        .await
        .unwrap();
    client
        .decrypt(&moved.blob.blob, &context, None)
        .await
        .unwrap();
    every_key_admin_rpc(&client).await;
    // The runtime admin API, over gRPC and REST, including a failed
    // configure carrying a secret-looking value.
    let mut runtime = client.admin();
    let grpc_status = format!(
        "{:?}",
        runtime
            .status(proto::StatusRequest {})
            .await
            .unwrap()
            .into_inner()
    );
    runtime
        .clear_cache(proto::ClearCacheRequest {})
        .await
        .unwrap();
    let bad = format!(
        r#"{{"backend_type": "local", "key_dir": "/k", "sealing": {{"passphrase_file": ["{PASSPHRASE}"]}}}}"#
    );
    let refused = runtime
        .reconfigure(proto::ReconfigureRequest {
            backend_config_json: bad.clone(),
            discard_previous: false,
            decrypt_only: false,
        })
        .await
        .unwrap_err();
    let rest_status = rest.get("/kms/status").await.text;
    let rest_config = rest.get("/kms/config").await.text;
    let rest_refused = rest.post("/kms/reconfigure", &bad).await.text;
    let rest_datakey = rest
        .post("/kms/generate-data-key", r#"{"key_id": "default"}"#)
        .await;
    assert_eq!(rest_datakey.status, 200);
    let rest_dek = B64
        .decode(rest_datakey.json["plaintext_key"].as_str().unwrap())
        .unwrap();
    // The search works: the one place a data key belongs, the response that
    // hands it out, is found to contain it.
    let found = std::panic::catch_unwind(|| {
        assert_absent(
            rest_datakey.text.as_bytes(),
            &[("probe", rest_dek.clone())],
            "the control",
        )
    });
    assert!(
        found.is_err(),
        "the leak search cannot find a secret where it is"
    );

    // The secrets: data keys handed out, the plaintext, the admin secret,
    // the passphrase, and the master key material (recovered through the
    // API: opening a blob by hand is not possible, so the material is the
    // one thing the outputs cannot be searched for directly; the sealed key
    // files guarantee it is not on disk, see tests/tests/process/).
    let mut secrets = common_secrets();
    secrets.extend([
        ("a data key", generated.key.expose_secret().to_vec()),
        (
            "a data key (without plaintext)",
            opened_only.plaintext.expose_secret().to_vec(),
        ),
        ("a REST data key", rest_dek),
        ("the sealing passphrase", PASSPHRASE.as_bytes().to_vec()),
    ]);
    let mut key_files = Vec::new();
    for entry in std::fs::read_dir(kmsd.dir().join("keys")).unwrap() {
        key_files.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let responses = vec![
        ("the gRPC status", grpc_status.into_bytes()),
        (
            "a refused gRPC reconfigure",
            refused.message().as_bytes().to_vec(),
        ),
        ("the REST status", rest_status.into_bytes()),
        ("the REST config", rest_config.into_bytes()),
        ("a refused REST reconfigure", rest_refused.into_bytes()),
        ("the key files", key_files),
    ];
    assert_nothing_leaked(&kmsd, metrics_port, &secrets, responses).await;
}

/// The same search with the vault backend: a known Vault token, given
/// inline in the config file and again through a REST reconfigure, with
/// intermediate keys on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_vault_token_or_data_key_reaches_any_output() {
    let openbao = kmsd_openbao_testkit::OpenBao::dev().await;
    let token = openbao.root_token();
    let mut options = KmsdOptions::local();
    options.backend_toml = Some(openbao.backend_toml(&token, "default").replace(
        "[backend.auth_method]",
        "[backend.intermediate_key]\nenabled = true\n[backend.auth_method]",
    ));
    let (kmsd, client, rest, metrics_port) = start_observed(options).await;

    let context = ctx(&[("bucket", "b"), ("object", "o")]);
    let generated = client.generate_data_key(None, &context).await.unwrap();
    let sealed = client.encrypt(None, PLAINTEXT, &context).await.unwrap();
    client.decrypt(&sealed.blob, &context, None).await.unwrap();
    client
        .decrypt(&sealed.blob, &ctx(&[]), None)
        .await
        .unwrap_err();
    let moved = client
        .re_encrypt(&generated.blob, &context, None, None)
        .await
        .unwrap();
    let reopened = client
        .decrypt(&moved.blob.blob, &context, None)
        .await
        .unwrap();
    assert_eq!(
        reopened.plaintext.expose_secret(),
        generated.key.expose_secret()
    );
    every_key_admin_rpc(&client).await;
    let grpc_status = format!(
        "{:?}",
        client
            .admin()
            .status(proto::StatusRequest {})
            .await
            .unwrap()
            .into_inner()
    );
    // Reconfigure through REST with the token inline (the seed's JSON),
    // then once more with a token Vault refuses.
    let seed_json = format!(
        r#"{{"backend_type": "vault", "address": "{}", "auth_method": {{"token": "{token}"}}, "default_key_id": "default"}}"#,
        openbao.address()
    );
    let reconfigured = rest.post("/kms/reconfigure", &seed_json).await;
    assert_eq!(reconfigured.status, 200, "{}", reconfigured.text);
    let wrong_token = "hvs.wrong-token-6a1f0c9e2b";
    let refused = rest
        .post("/kms/reconfigure", &seed_json.replace(&token, wrong_token))
        .await;
    assert_ne!(refused.status, 200, "{}", refused.text);
    let after = client.generate_data_key(None, &context).await.unwrap();
    let rest_status = rest.get("/kms/status").await.text;
    let rest_config = rest.get("/kms/config").await.text;

    let audit = std::fs::read_to_string(kmsd.dir().join("audit.log")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"operation\":\"GenerateDataKey\"")
                && l.contains("\"intermediate_key\":\"")),
        "GenerateDataKey under an intermediate key is audited with its id"
    );
    let mut secrets = common_secrets();
    secrets.extend([
        ("the Vault token", token.as_bytes().to_vec()),
        ("a refused Vault token", wrong_token.as_bytes().to_vec()),
        ("a data key", generated.key.expose_secret().to_vec()),
        ("a later data key", after.key.expose_secret().to_vec()),
    ]);
    assert!(
        kmsd.dir().join("state/runtime.json").exists(),
        "the REST reconfigure was persisted"
    );
    let responses = vec![
        ("the gRPC status", grpc_status.into_bytes()),
        ("the REST status", rest_status.into_bytes()),
        ("the REST config", rest_config.into_bytes()),
        ("a refused REST reconfigure", refused.text.into_bytes()),
    ];
    assert_nothing_leaked(&kmsd, metrics_port, &secrets, responses).await;
}
