//! Vault sealed, stopped, and behind TLS.

use std::time::{Duration, Instant};

use tonic::Code;

use super::*;

fn assert_unavailable(err: &KmsError, needle: &str) {
    assert!(
        matches!(err, KmsError::BackendUnavailable { .. }),
        "{err:?}"
    );
    assert_eq!(err.code_and_reason().0, Code::Unavailable);
    assert!(err.to_string().contains(needle), "{err}");
}

#[tokio::test]
async fn a_sealed_vault_is_unavailable_then_recovers_without_restart() {
    let bao = OpenBao::dev().await;
    let clock = clock();
    // The service's breaker would answer for Vault after five failures in
    // a row; a higher threshold keeps Vault's own answer in view here.
    let breaker = "[breaker]\nfailure_threshold = 20\n";
    let daemon = start_daemon(&bao, &token_auth(&bao.root_token()), breaker, &clock).await;
    let kms = &daemon.kms;
    let context = ctx(&[("bucket", "b")]);
    let before = kms
        .generate_data_key(&cx(), Operation::GenerateDataKey, None, &context)
        .await
        .unwrap();

    bao.seal().await;
    let err = kms
        .generate_data_key(&cx(), Operation::GenerateDataKey, None, &context)
        .await
        .unwrap_err();
    assert_unavailable(&err, "sealed");
    let err = kms
        .decrypt(&cx(), &before.sealed.blob, &context, None)
        .await
        .unwrap_err();
    assert_unavailable(&err, "sealed");
    let err = kms.health().await.unwrap_err();
    assert_unavailable(&err, "sealed");
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), Code::Unavailable);
    assert!(!status.message().contains(&bao.root_token()));

    bao.unseal().await;
    let started = Instant::now();
    while kms.health().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(5), "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kms.generate_data_key(&cx(), Operation::GenerateDataKey, None, &context)
        .await
        .unwrap();
    let opened = kms
        .decrypt(&cx(), &before.sealed.blob, &context, None)
        .await
        .unwrap();
    assert_eq!(opened.plaintext.expose_secret(), before.key.expose_secret());
    daemon.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stopped_vault_is_unavailable_within_the_deadline_then_recovers() {
    let mut bao = OpenBao::persistent().await;
    let clock = clock();
    let backend = backend(
        &bao,
        &token_auth(&bao.root_token()),
        "timeout_seconds = 2",
        &clock,
    )
    .await;
    create(&backend, "k").await;
    let context = ctx(&[]);
    let before = backend.generate_data_key(&id("k"), &context).await.unwrap();

    bao.stop();
    let started = Instant::now();
    let err = backend
        .generate_data_key(&id("k"), &context)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert_unavailable(&err, "cannot reach Vault");
    let err = backend.describe_key(&id("k")).await.unwrap_err();
    assert_unavailable(&err, "cannot reach Vault");
    assert!(backend.health().await.is_err());

    // Back, but sealed (a real server restarts sealed): the breaker, open
    // since the refused connections, names the cause its probe sees now.
    bao.restart().await;
    let started = Instant::now();
    loop {
        let err = backend
            .generate_data_key(&id("k"), &context)
            .await
            .unwrap_err();
        if err.to_string().contains("sealed") {
            assert_unavailable(&err, "sealed");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{err}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Unsealed: the probe closes the breaker within its interval.
    bao.unseal().await;
    backend.health().await.unwrap();
    let started = Instant::now();
    let after = loop {
        match backend.generate_data_key(&id("k"), &context).await {
            Ok(after) => break after,
            Err(e) => assert!(started.elapsed() < Duration::from_secs(10), "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for generated in [&before, &after] {
        opens_to_its_key(&backend, generated, &context).await;
    }
}

#[tokio::test]
async fn tls_is_verified_against_the_configured_ca() {
    let bao = OpenBao::dev_tls().await;
    let auth = token_auth(&bao.root_token());
    let ca = bao.ca_cert_path();
    let dir = ca.parent().unwrap().to_owned();
    let with_ca = format!("[backend.tls]\nca_cert_path = \"{}\"\n", ca.display());
    let backend = backend(&bao, &auth, &with_ca, &clock()).await;
    create(&backend, "k").await;
    let context = ctx(&[]);
    let sealed = backend
        .encrypt(&id("k"), b"over tls", &context)
        .await
        .unwrap();
    open(&backend, &sealed.blob, &context).await.unwrap();

    // Only the configured CAs are trusted: the system's roots do not know
    // this one, and another CA does not either.
    let err = try_backend(&bao, &auth, "", &clock())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot reach Vault"), "{err}");
    let other_ca = format!(
        "[backend.tls]\nca_cert_path = \"{}\"\n",
        dir.join("vault-cert.pem").display()
    );
    assert!(try_backend(&bao, &auth, &other_ca, &clock()).await.is_err());

    // A client identity is loaded and presented.
    let mtls = format!(
        "[backend.tls]\nca_cert_path = \"{}\"\nclient_cert_path = \"{}\"\nclient_key_path = \"{}\"\n",
        ca.display(),
        dir.join("vault-cert.pem").display(),
        dir.join("vault-key.pem").display()
    );
    let backend = super::backend(&bao, &auth, &mtls, &clock()).await;
    open(&backend, &sealed.blob, &context).await.unwrap();
    let bad_key = format!(
        "[backend.tls]\nclient_cert_path = \"{}\"\nclient_key_path = \"{}\"\n",
        dir.join("vault-cert.pem").display(),
        dir.join("vault-ca.pem").display()
    );
    let err = try_backend(&bao, &auth, &bad_key, &clock())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("client_cert_path"), "{err}");

    // danger_skip_tls_verify accepts it (and warns).
    let skip = "[backend.tls]\ndanger_skip_tls_verify = true\n";
    let backend = super::backend(&bao, &auth, skip, &clock()).await;
    open(&backend, &sealed.blob, &context).await.unwrap();
}
