//! The rolling reconfiguration of docs/operations.md, run on three
//! sidecars under load: from one Vault (an OpenBao dev server) to another
//! (the 3-node Raft cluster), node by node, in two passes. Blobs sealed on
//! one sidecar are opened on another at once, so a sidecar that sealed
//! with the new backend before every sidecar could open it would fail a
//! call.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use kms_client::KmsClient;

use super::*;

/// A blob, its context, the data key it must open to, and which pass of
/// the rollout had finished when it was sealed.
struct Sealed {
    blob: Vec<u8>,
    context: kms_client::EncryptionContext,
    key: Vec<u8>,
    phase: u8,
}

fn vault_json(address: &str, token: &str) -> String {
    format!(
        r#"{{"backend_type": "vault", "address": "{address}", "auth_method": {{"token": "{token}"}}, "default_key_id": "rolling"}}"#
    )
}

async fn reconfigure(client: &KmsClient, json: &str, decrypt_only: bool) {
    client
        .admin()
        .reconfigure(proto::ReconfigureRequest {
            backend_config_json: json.into(),
            discard_previous: false,
            decrypt_only,
        })
        .await
        .unwrap_or_else(|e| panic!("reconfigure (decrypt_only {decrypt_only}): {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_pass_rolling_reconfiguration_under_load_fails_no_call() {
    let old = kmsd_openbao_testkit::OpenBao::dev().await;
    let cluster = RaftCluster::shared().await;
    let new_token = cluster.kmsd_token().await;
    let new_address = cluster.address(cluster.active().await);
    let new_json = vault_json(&new_address, &new_token);

    let mut sidecars = Vec::new();
    for _ in 0..3 {
        sidecars.push(
            Kmsd::start(KmsdOptions {
                backend_toml: Some(old.backend_toml(&old.root_token(), "rolling")),
                ..KmsdOptions::local()
            })
            .await,
        );
    }
    let mut clients = Vec::new();
    for sidecar in &sidecars {
        clients.push(
            sidecar
                .client_with(|c| c.timeout = Duration::from_secs(30))
                .await,
        );
    }
    let endpoints: Vec<String> = sidecars.iter().map(|s| s.endpoint().to_string()).collect();

    // Load: seal on one sidecar, open at once on the next one; every call
    // counts.
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let sealed = Arc::new(Mutex::new(Vec::<Sealed>::new()));
    let mut workers = Vec::new();
    for worker in 0..4usize {
        let (clients, stop, phase, failures, sealed) = (
            clients.clone(),
            stop.clone(),
            phase.clone(),
            failures.clone(),
            sealed.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let (sealer, opener) = ((worker + n) % 3, (worker + n + 1) % 3);
                let context = ctx(&[("worker", &worker.to_string()), ("n", &n.to_string())]);
                let at = phase.load(Ordering::SeqCst) as u8;
                match clients[sealer].generate_data_key(None, &context).await {
                    Ok(generated) => {
                        match clients[opener]
                            .decrypt(&generated.blob, &context, None)
                            .await
                        {
                            Ok(opened) => assert_eq!(
                                opened.plaintext.expose_secret(),
                                generated.key.expose_secret()
                            ),
                            Err(e) => failures
                                .lock()
                                .unwrap()
                                .push(format!("decrypt on {opener} of a blob from {sealer}: {e}")),
                        }
                        sealed.lock().unwrap().push(Sealed {
                            blob: generated.blob.clone(),
                            context,
                            key: generated.key.expose_secret().to_vec(),
                            phase: at,
                        });
                    }
                    Err(e) => failures
                        .lock()
                        .unwrap()
                        .push(format!("generate on {sealer}: {e}")),
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let settle = || tokio::time::sleep(Duration::from_millis(700));
    // At least `n` blobs sealed in `phase` (a loaded machine is slow, so
    // count rather than sleep a fixed time).
    let sealed_in = |p: u64, n: usize| {
        let sealed = sealed.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            while sealed
                .lock()
                .unwrap()
                .iter()
                .filter(|s| u64::from(s.phase) == p)
                .count()
                < n
            {
                assert!(Instant::now() < deadline, "no load in phase {p}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    sealed_in(0, 20).await;

    // Pass 1: every sidecar learns to open what the new backend seals.
    for client in &clients {
        reconfigure(client, &new_json, true).await;
        settle().await;
    }
    let (code, report, stderr) = cluster_check(&endpoints);
    assert_eq!(code, 0, "after pass 1: {report}\n{stderr}");
    phase.store(1, Ordering::SeqCst);
    // Pass 2: every sidecar seals with the new backend; the old one stays
    // for decryption.
    for client in &clients {
        reconfigure(client, &new_json, false).await;
        settle().await;
    }
    phase.store(2, Ordering::SeqCst);
    sealed_in(2, 20).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }

    let failures = failures.lock().unwrap().clone();
    let sealed = std::mem::take(&mut *sealed.lock().unwrap());
    let by_phase = |p: u8| sealed.iter().filter(|s| s.phase == p).count();
    eprintln!(
        "rolling reconfiguration: {} blobs sealed (before pass 2: {}, during it: {}, after it: {}), {} failed calls",
        sealed.len(),
        by_phase(0),
        by_phase(1),
        by_phase(2),
        failures.len()
    );
    assert!(failures.is_empty(), "failed calls: {failures:#?}");
    assert!(by_phase(0) >= 20 && by_phase(2) >= 20, "too little load");

    // The end state: every sidecar seals with the new backend and keeps the
    // old one for decryption; they agree.
    let (code, report, stderr) = cluster_check(&endpoints);
    assert_eq!(code, 0, "after pass 2: {report}\n{stderr}");
    let fields = &report["nodes"][0];
    assert_eq!(fields["state"], "Running");
    for client in &clients {
        let status = client
            .admin()
            .status(proto::StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        let address = &status.backend.unwrap().settings["address"];
        assert_eq!(address, &new_address);
        assert_eq!(status.previous_backends.len(), 1);
        assert_eq!(
            status.previous_backends[0].settings["address"],
            old.address()
        );
    }
    // Every blob opens on every sidecar.
    for blob in &sealed {
        for (i, client) in clients.iter().enumerate() {
            let opened = client
                .decrypt(&blob.blob, &blob.context, None)
                .await
                .unwrap_or_else(|e| panic!("sidecar {i}, blob of phase {}: {e}", blob.phase));
            assert_eq!(opened.plaintext.expose_secret(), blob.key.as_slice());
        }
    }
    // The new backend really seals now: with the old Vault gone, new data
    // keys still come (and old blobs no longer open, as expected).
    drop(old);
    let context = ctx(&[("after", "old vault gone")]);
    let fresh = clients[0].generate_data_key(None, &context).await.unwrap();
    clients[2]
        .decrypt(&fresh.blob, &context, None)
        .await
        .unwrap();
}

/// `decrypt_only` refuses what it cannot mean, precisely, and changes
/// nothing then: together with `discard_previous`, for the active backend
/// itself, and when kmsd is not Running. Accepted, it adds the backend in
/// front of the previous ones, keeps the active one, and the fingerprint
/// says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decrypt_only_refuses_what_it_cannot_mean() {
    // The admin API may name key directories only under an allowed one.
    let kmsd = Kmsd::start(KmsdOptions {
        extra_toml: "[admin]\nallowed_dirs = [\"{dir}\"]\n".into(),
        ..KmsdOptions::local()
    })
    .await;
    let client = kmsd.client().await;
    let local = |dir: &str| {
        format!(
            r#"{{"backend_type": "local", "key_dir": "{}/{dir}", "default_key_id": "default"}}"#,
            kmsd.dir().display()
        )
    };
    let status = || async {
        client
            .admin()
            .status(proto::StatusRequest {})
            .await
            .unwrap()
            .into_inner()
    };
    let before = status().await;
    let attempt = |json: String, discard_previous: bool| {
        let mut admin = client.admin();
        async move {
            admin
                .reconfigure(proto::ReconfigureRequest {
                    backend_config_json: json,
                    discard_previous,
                    decrypt_only: true,
                })
                .await
        }
    };

    let both = attempt(local("keys-b"), true).await.unwrap_err();
    assert_eq!(both.code(), tonic::Code::InvalidArgument, "{both:?}");
    assert!(both.message().contains("exclude each other"), "{both:?}");
    let active = attempt(local("keys"), false).await.unwrap_err();
    assert_eq!(active.code(), tonic::Code::InvalidArgument, "{active:?}");
    assert!(active.message().contains("active backend"), "{active:?}");
    assert_eq!(status().await.config_fingerprint, before.config_fingerprint);

    let added = attempt(local("keys-b"), false).await.unwrap().into_inner();
    assert_eq!(
        added.backend.unwrap().settings["key_dir"],
        format!("{}/keys", kmsd.dir().display())
    );
    assert_eq!(
        added.previous_backends[0].settings["key_dir"],
        format!("{}/keys-b", kmsd.dir().display())
    );
    assert_ne!(added.config_fingerprint, before.config_fingerprint);
    assert_ne!(added.config_fields["decrypt_only_backends"], "none");
    // The active backend still seals and opens.
    let context = ctx(&[("k", "v")]);
    let generated = client.generate_data_key(None, &context).await.unwrap();
    client
        .decrypt(&generated.blob, &context, None)
        .await
        .unwrap();

    client.admin().stop(proto::StopRequest {}).await.unwrap();
    let stopped = attempt(local("keys-c"), false).await.unwrap_err();
    assert_eq!(
        stopped.code(),
        tonic::Code::FailedPrecondition,
        "{stopped:?}"
    );
    assert_eq!(status().await.previous_backends.len(), 1);
}
