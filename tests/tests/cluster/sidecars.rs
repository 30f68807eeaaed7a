//! Several sidecars, one truth: three kmsd (one per storage node), each
//! configured with every node of the cluster. A key created through one
//! is usable through the others at once; a rotation or a disable through
//! one reaches the others within the key-metadata refresh
//! (`cache_ttl_seconds`, default 5 s; docs/vault.md). The windows are
//! printed; the assertion allows the loaded machine twice the default.
//! (The disable on every path, with intermediate keys and the data-key
//! cache, is tests/tests/vault/kill_switch.rs on one OpenBao.)

use kms_client::{KmsClient, RetryPolicy};

use super::*;

/// The documented bound, with room for a loaded machine.
const WINDOW: Duration = Duration::from_secs(10);

/// How long until `check` holds on every one of `clients`; each is asked
/// every 50 ms.
async fn window(clients: &[&KmsClient], what: &str, check: impl AsyncCheck) -> Duration {
    let since = Instant::now();
    let mut waiting: Vec<usize> = (0..clients.len()).collect();
    while !waiting.is_empty() {
        assert!(
            since.elapsed() < WINDOW,
            "{what}: sidecars {waiting:?} still disagree after {:?}",
            since.elapsed()
        );
        let mut still = Vec::new();
        for i in waiting {
            if !check.holds(clients[i]).await {
                still.push(i);
            }
        }
        waiting = still;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    since.elapsed()
}

/// A check on one sidecar.
trait AsyncCheck {
    async fn holds(&self, client: &KmsClient) -> bool;
}

/// GenerateDataKey with the key seals with `version`.
struct SealsWith(&'static str, u32);

impl AsyncCheck for SealsWith {
    async fn holds(&self, client: &KmsClient) -> bool {
        let context = ctx(&[("check", "version")]);
        let generated = client
            .generate_data_key(Some(self.0), &context)
            .await
            .unwrap();
        generated.key_version == self.1
    }
}

/// GenerateDataKey with the key is refused as disabled.
struct Refuses(&'static str);

impl AsyncCheck for Refuses {
    async fn holds(&self, client: &KmsClient) -> bool {
        let context = ctx(&[("check", "disabled")]);
        match client.generate_data_key(Some(self.0), &context).await {
            Ok(_) => false,
            Err(e) if e.reason() == Some("KEY_DISABLED") => true,
            Err(e) => panic!("expected KEY_DISABLED, got {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sidecars_share_keys_rotations_and_disables() {
    const KEY: &str = "one-truth";
    let cluster = RaftCluster::shared().await;
    let token = cluster.kmsd_token().await;
    let mut sidecars = Vec::new();
    for _ in 0..3 {
        sidecars.push(
            Kmsd::start(KmsdOptions {
                backend_toml: Some(cluster.all_nodes_backend_toml(&token, "one-truth-default")),
                ..KmsdOptions::local()
            })
            .await,
        );
    }
    let mut clients = Vec::new();
    for sidecar in &sidecars {
        clients.push(
            sidecar
                .client_with(|c| {
                    c.retry = RetryPolicy::NEVER;
                    c.timeout = Duration::from_secs(30);
                })
                .await,
        );
    }
    let (a, others) = (&clients[0], [&clients[1], &clients[2]]);
    let context = ctx(&[("bucket", "shared")]);

    // Created on A, usable on B and C at once; what each seals opens on
    // every other.
    a.key_admin()
        .create_key(proto::CreateKeyRequest {
            key_id: KEY.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut blobs = Vec::new();
    for client in &clients {
        let generated = client.generate_data_key(Some(KEY), &context).await.unwrap();
        assert_eq!(generated.key_version, 1);
        blobs.push(generated);
    }

    // Rotated on A: B and C seal with version 2 within the refresh.
    let rotated = a
        .key_admin()
        .rotate_key(proto::RotateKeyRequest { key_id: KEY.into() })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    assert_eq!(rotated.current_version, 2);
    let rotate_window = window(&others, "rotate", SealsWith(KEY, 2)).await;
    for client in &clients {
        blobs.push(client.generate_data_key(Some(KEY), &context).await.unwrap());
    }
    // Blobs of either version open on every sidecar.
    for blob in &blobs {
        for client in &clients {
            let opened = client.decrypt(&blob.blob, &context, None).await.unwrap();
            assert_eq!(opened.plaintext.expose_secret(), blob.key.expose_secret());
        }
    }

    // Disabled on A: B and C refuse within the refresh.
    a.key_admin()
        .disable_key(proto::DisableKeyRequest { key_id: KEY.into() })
        .await
        .unwrap();
    let disable_window = window(&others, "disable", Refuses(KEY)).await;
    eprintln!(
        "three sidecars: a rotation on A reached B and C within {:.2} s, a disable within {:.2} s (cache_ttl_seconds = 5)",
        rotate_window.as_secs_f64(),
        disable_window.as_secs_f64()
    );
}
