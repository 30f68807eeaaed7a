//! The runtime lifecycle through the gRPC Admin service: every transition,
//! invalid ones, reconfiguration with no failed request, and persistence
//! across restarts.

// Test code: a failed unwrap is a failed test, with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use kms_client::{KmsClient, proto};
use kmsd_tests::{Kmsd, KmsdOptions, assert_error, ctx, every_file};
use tonic::Code;

/// NotConfigured, with a state directory; the admin API may name key
/// directories under the instance's directory.
fn not_configured() -> KmsdOptions {
    KmsdOptions {
        backend_toml: None,
        server_toml: "state_dir = \"{dir}/state\"".into(),
        extra_toml:
            "[admin]\nallowed_dirs = [\"{dir}\"]\nallowed_env_vars = [\"KMSD_TEST_VAULT_TOKEN\"]\n"
                .into(),
        env: vec![("KMSD_TEST_VAULT_TOKEN".into(), "t".into())],
        ..KmsdOptions::local()
    }
}

fn local_json(kmsd: &Kmsd, dir: &str) -> String {
    format!(
        r#"{{"backend_type": "local", "key_dir": "{}/{dir}", "default_key_id": "default"}}"#,
        kmsd.dir().display()
    )
}

fn rpc<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, kms_client::Error> {
    r.map(tonic::Response::into_inner)
        .map_err(kms_client::Error::from)
}

async fn configure(
    client: &KmsClient,
    json: &str,
) -> Result<proto::StatusResponse, kms_client::Error> {
    rpc(client
        .admin()
        .configure(proto::ConfigureRequest {
            backend_config_json: json.into(),
        })
        .await)
}

async fn reconfigure(
    client: &KmsClient,
    json: &str,
) -> Result<proto::StatusResponse, kms_client::Error> {
    rpc(client
        .admin()
        .reconfigure(proto::ReconfigureRequest {
            backend_config_json: json.into(),
            discard_previous: false,
            decrypt_only: false,
        })
        .await)
}

async fn start(client: &KmsClient) -> Result<proto::StatusResponse, kms_client::Error> {
    rpc(client.admin().start(proto::StartRequest {}).await)
}

async fn stop(client: &KmsClient) -> Result<proto::StatusResponse, kms_client::Error> {
    rpc(client.admin().stop(proto::StopRequest {}).await)
}

async fn status(client: &KmsClient) -> proto::StatusResponse {
    rpc(client.admin().status(proto::StatusRequest {}).await).unwrap()
}

/// A kmsd started unconfigured, then configured through the admin API with
/// a local backend in `keys-a` and started.
async fn running_on_keys_a() -> (Kmsd, KmsClient) {
    running_on_keys_a_with(not_configured()).await
}

/// As [`running_on_keys_a`], started with `options` (which configure no
/// backend): the prelude of every swap test.
async fn running_on_keys_a_with(options: KmsdOptions) -> (Kmsd, KmsClient) {
    let kmsd = Kmsd::start(options).await;
    let client = kmsd.client().await;
    configure(&client, &local_json(&kmsd, "keys-a"))
        .await
        .unwrap();
    start(&client).await.unwrap();
    (kmsd, client)
}

#[tokio::test]
async fn every_transition_and_the_invalid_ones() {
    let kmsd = Kmsd::start(not_configured()).await;
    let client = kmsd.client().await;
    assert_eq!(
        status(&client).await.state(),
        proto::ServiceState::NotConfigured
    );
    assert_error(
        start(&client).await,
        Code::FailedPrecondition,
        "INVALID_SERVICE_STATE",
    );
    assert_error(
        stop(&client).await,
        Code::FailedPrecondition,
        "INVALID_SERVICE_STATE",
    );

    // Invalid configurations change nothing.
    for bad in [
        "not json",
        r#"{"backend_type": "floppy"}"#,
        r#"{"backend_type": "local", "key_dir": "relative/path"}"#,
        r#"{"backend_type": "local", "key_dir": "/k", "default_key_id": "../x"}"#,
    ] {
        assert_error(
            configure(&client, bad).await,
            Code::InvalidArgument,
            "INVALID_CONFIG",
        );
    }
    assert_eq!(
        status(&client).await.state(),
        proto::ServiceState::NotConfigured
    );

    let configured = configure(&client, &local_json(&kmsd, "keys-a"))
        .await
        .unwrap();
    assert_eq!(configured.state(), proto::ServiceState::Configured);
    assert_eq!(configured.backend.unwrap().backend_type, "local");
    let err = assert_error(
        client.generate_data_key(None, &ctx(&[])).await,
        Code::Unavailable,
        "NOT_RUNNING",
    );
    assert!(err.to_string().contains("Configured"), "{err}");

    let running = start(&client).await.unwrap();
    assert_eq!(running.state(), proto::ServiceState::Running);
    assert!(running.persisted);
    let blob = client.generate_data_key(None, &ctx(&[])).await.unwrap();
    // Starting again is a no-op; configuring while running is refused.
    start(&client).await.unwrap();
    assert_error(
        configure(&client, &local_json(&kmsd, "keys-b")).await,
        Code::FailedPrecondition,
        "INVALID_SERVICE_STATE",
    );

    assert_eq!(
        stop(&client).await.unwrap().state(),
        proto::ServiceState::Stopped
    );
    stop(&client).await.unwrap();
    let err = assert_error(
        client.decrypt(&blob.blob, &ctx(&[]), None).await,
        Code::Unavailable,
        "NOT_RUNNING",
    );
    assert!(err.to_string().contains("Stopped"), "{err}");
    assert_eq!(
        start(&client).await.unwrap().state(),
        proto::ServiceState::Running
    );
    client.decrypt(&blob.blob, &ctx(&[]), None).await.unwrap();

    // A backend that cannot start leaves Error, with the reason.
    stop(&client).await.unwrap();
    std::fs::write(kmsd.dir().join("not-a-dir"), b"").unwrap();
    configure(&client, &local_json(&kmsd, "not-a-dir"))
        .await
        .unwrap();
    assert_error(
        start(&client).await,
        Code::FailedPrecondition,
        "BACKEND_START_FAILED",
    );
    let failed = status(&client).await;
    assert_eq!(failed.state(), proto::ServiceState::Error);
    assert!(failed.error.contains("not-a-dir"), "{}", failed.error);
    configure(&client, &local_json(&kmsd, "keys-a"))
        .await
        .unwrap();
    start(&client).await.unwrap();
    client.decrypt(&blob.blob, &ctx(&[]), None).await.unwrap();
}

#[tokio::test]
async fn a_failed_reconfigure_leaves_the_old_backend_serving() {
    let (kmsd, client) = running_on_keys_a().await;
    let before = client.generate_data_key(None, &ctx(&[])).await.unwrap();

    std::fs::write(kmsd.dir().join("a-file"), b"").unwrap();
    assert_error(
        reconfigure(&client, &local_json(&kmsd, "a-file")).await,
        Code::FailedPrecondition,
        "BACKEND_START_FAILED",
    );
    assert_error(
        reconfigure(&client, r#"{"backend_type": "local", "key_dir": "nope"}"#).await,
        Code::InvalidArgument,
        "INVALID_CONFIG",
    );
    // A Vault nobody listens on (the token by variable: an inline one
    // would need [server.state_sealing] to be persisted).
    let unreachable = format!(
        r#"{{"backend_type": "vault", "address": "http://127.0.0.1:{}", "auth_method": {{"token_env": "KMSD_TEST_VAULT_TOKEN"}}, "timeout_seconds": 2, "retry_attempts": 1}}"#,
        kmsd_tests::free_port()
    );
    assert_error(
        reconfigure(&client, &unreachable).await,
        Code::FailedPrecondition,
        "BACKEND_START_FAILED",
    );
    let after = status(&client).await;
    assert_eq!(after.state(), proto::ServiceState::Running);
    assert!(after.backend.unwrap().settings["key_dir"].ends_with("keys-a"));
    client.decrypt(&before.blob, &ctx(&[]), None).await.unwrap();
    client.generate_data_key(None, &ctx(&[])).await.unwrap();
}

#[tokio::test]
async fn reconfigure_keeps_the_old_backend_for_decryption() {
    let (kmsd, client) = running_on_keys_a().await;
    let from_a = client
        .generate_data_key(None, &ctx(&[("o", "1")]))
        .await
        .unwrap();

    let swapped = reconfigure(&client, &local_json(&kmsd, "keys-b"))
        .await
        .unwrap();
    assert!(swapped.backend.unwrap().settings["key_dir"].ends_with("keys-b"));
    assert_eq!(swapped.previous_backends.len(), 1);
    assert!(swapped.previous_backends[0].settings["key_dir"].ends_with("keys-a"));

    // Both directories hold a key named "default" with different material:
    // the blob from A still opens, and new blobs come from B.
    let opened = client
        .decrypt(&from_a.blob, &ctx(&[("o", "1")]), None)
        .await
        .unwrap();
    assert_eq!(opened.plaintext.expose_secret(), from_a.key.expose_secret());
    let from_b = client
        .generate_data_key(None, &ctx(&[("o", "1")]))
        .await
        .unwrap();
    // ReEncrypt moves A's blob to B.
    let moved = client
        .re_encrypt(&from_a.blob, &ctx(&[("o", "1")]), None, None)
        .await
        .unwrap();

    // Drop A: its blob no longer opens, B's and the moved one do.
    rpc(client
        .admin()
        .reconfigure(proto::ReconfigureRequest {
            backend_config_json: local_json(&kmsd, "keys-b"),
            discard_previous: true,
            decrypt_only: false,
        })
        .await)
    .unwrap();
    let stop_keeping = rpc(client
        .admin()
        .reconfigure(proto::ReconfigureRequest {
            backend_config_json: local_json(&kmsd, "keys-c"),
            discard_previous: true,
            decrypt_only: false,
        })
        .await)
    .unwrap();
    assert_eq!(
        stop_keeping.previous_backends.len(),
        1,
        "A stays until it is explicitly dropped"
    );
    reconfigure(&client, &local_json(&kmsd, "keys-b"))
        .await
        .unwrap();
    client
        .decrypt(&from_b.blob, &ctx(&[("o", "1")]), None)
        .await
        .unwrap();
    let opened = client
        .decrypt(&moved.blob.blob, &ctx(&[("o", "1")]), None)
        .await
        .unwrap();
    assert_eq!(opened.plaintext.expose_secret(), from_a.key.expose_secret());
}

#[tokio::test]
async fn the_applied_configuration_survives_a_restart() {
    let (mut kmsd, client) = running_on_keys_a().await;
    let from_a = client.generate_data_key(None, &ctx(&[])).await.unwrap();
    reconfigure(&client, &local_json(&kmsd, "keys-b"))
        .await
        .unwrap();
    let from_b = client.generate_data_key(None, &ctx(&[])).await.unwrap();

    kmsd.restart().await;
    let client = kmsd.client().await;
    let restored = status(&client).await;
    assert_eq!(restored.state(), proto::ServiceState::Running);
    assert!(restored.backend.unwrap().settings["key_dir"].ends_with("keys-b"));
    assert_eq!(restored.previous_backends.len(), 1);
    client.decrypt(&from_a.blob, &ctx(&[]), None).await.unwrap();
    client.decrypt(&from_b.blob, &ctx(&[]), None).await.unwrap();

    // A stopped service comes back stopped.
    stop(&client).await.unwrap();
    kmsd.restart().await;
    assert_eq!(
        status(&kmsd.client().await).await.state(),
        proto::ServiceState::Stopped
    );
}

/// Until the admin API changes something, the config file owns the
/// backend: an edit of `[backend]` takes effect at the next start. After a
/// change through the admin API, `runtime.json` does.
#[tokio::test]
async fn the_config_file_owns_the_backend_until_the_admin_api_changes_it() {
    let file_config = |key_dir: &str| KmsdOptions {
        backend_toml: Some(format!(
            "[backend]\nbackend_type = \"local\"\nkey_dir = \"{{dir}}/{key_dir}\"\ndefault_key_id = \"default\"\n"
        )),
        server_toml: "state_dir = \"{dir}/state\"".into(),
        ..not_configured()
    };
    let key_dir = |s: proto::StatusResponse| s.backend.unwrap().settings["key_dir"].clone();
    let mut kmsd = Kmsd::start(file_config("keys-a")).await;
    assert!(key_dir(status(&kmsd.client().await).await).ends_with("keys-a"));
    assert!(
        !kmsd.dir().join("state/runtime.json").exists(),
        "nothing to persist yet"
    );
    kmsd.set_options(file_config("keys-b"));
    kmsd.restart().await;
    let client = kmsd.client().await;
    assert!(
        key_dir(status(&client).await).ends_with("keys-b"),
        "the edit applies"
    );

    // An admin change takes over, and survives an edit of the file.
    reconfigure(&client, &local_json(&kmsd, "keys-c"))
        .await
        .unwrap();
    kmsd.set_options(file_config("keys-d"));
    kmsd.restart().await;
    assert!(key_dir(status(&kmsd.client().await).await).ends_with("keys-c"));
}

/// Eight workers run GenerateDataKey then Decrypt in a loop while each of
/// `targets` is applied in turn through Reconfigure, `pause` apart; any
/// failed request fails the test. Every blob is opened again at the end;
/// returns the backend byte of each (0x01 local, 0x02 vault).
async fn swap_under_load(kmsd: &Kmsd, targets: &[String], pause: Duration) -> Vec<u8> {
    let admin = kmsd.client().await;
    let stop_flag = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..8 {
        let client = kmsd.client().await;
        let stop_flag = Arc::clone(&stop_flag);
        workers.push(tokio::spawn(async move {
            let context = ctx(&[("worker", &worker.to_string())]);
            let mut blobs = Vec::new();
            while !stop_flag.load(Ordering::Relaxed) {
                let generated = client
                    .generate_data_key(None, &context)
                    .await
                    .unwrap_or_else(|e| panic!("GenerateDataKey failed during a swap: {e}"));
                let opened = client
                    .decrypt(&generated.blob, &context, None)
                    .await
                    .unwrap_or_else(|e| panic!("Decrypt failed during a swap: {e}"));
                assert_eq!(
                    opened.plaintext.expose_secret(),
                    generated.key.expose_secret()
                );
                blobs.push(generated);
            }
            (context, blobs)
        }));
    }
    for target in targets {
        tokio::time::sleep(pause).await;
        reconfigure(&admin, target).await.unwrap();
    }
    tokio::time::sleep(pause).await;
    stop_flag.store(true, Ordering::Relaxed);
    let client = kmsd.client().await;
    let mut backends = Vec::new();
    for worker in workers {
        let (context, blobs) = worker.await.unwrap();
        for generated in blobs {
            let opened = client
                .decrypt(&generated.blob, &context, None)
                .await
                .unwrap();
            assert_eq!(
                opened.plaintext.expose_secret(),
                generated.key.expose_secret()
            );
            backends.push(generated.blob[3]);
        }
    }
    backends
}

/// Swaps the backend back and forth under a steady load of GenerateDataKey
/// and Decrypt: not one request may fail, and every blob opens at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_backends_under_load_fails_no_request() {
    let (kmsd, _admin) = running_on_keys_a().await;
    let targets = ["keys-b", "keys-a", "keys-b", "keys-a", "keys-b"].map(|d| local_json(&kmsd, d));
    let blobs = swap_under_load(&kmsd, &targets, Duration::from_millis(150)).await;
    assert!(
        blobs.len() > 50,
        "too little load to prove anything: {} data keys",
        blobs.len()
    );
}

mod persist;
mod vault;
