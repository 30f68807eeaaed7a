//! Two kmsd daemons against one OpenBao, as two storage nodes would run.

use std::time::{Duration, Instant};

use super::*;
use crate::backend::StateChange;

/// Beyond the TTL: the requests' own latency on a busy test machine.
const SLACK: Duration = Duration::from_secs(1);

/// Polls `probe` until it returns true; returns how long that took.
async fn time_until<F, Fut>(limit: Duration, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !probe().await {
        assert!(started.elapsed() < limit, "not seen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn two_daemons_share_keys_and_see_changes_within_the_cache_ttl() {
    let bao = OpenBao::dev().await;
    let ttl = Duration::from_secs(1);
    let extra = "cache_ttl_seconds = 1";
    let auth = token_auth(&bao.root_token());
    let (clock_a, clock_b) = (clock(), clock());
    let a = start_daemon(&bao, &auth, extra, &clock_a).await;
    let b = start_daemon(&bao, &auth, extra, &clock_b).await;
    let context = ctx(&[("bucket", "shared")]);
    let (kms_a, kms_b, c) = (&a.kms, &b.kms, &context);

    // A data key made through one decrypts through the other, both ways.
    let from_a = a
        .kms
        .generate_data_key(&cx(), Operation::GenerateDataKey, None, &context)
        .await
        .unwrap();
    let opened = b
        .kms
        .decrypt(&cx(), &from_a.sealed.blob, &context, None)
        .await
        .unwrap();
    assert_eq!(opened.plaintext.expose_secret(), from_a.key.expose_secret());
    let from_b = b
        .kms
        .generate_data_key(&cx(), Operation::GenerateDataKey, None, &context)
        .await
        .unwrap();
    a.kms
        .decrypt(&cx(), &from_b.sealed.blob, &context, None)
        .await
        .unwrap();
    assert_eq!(from_b.sealed.key_version, 1, "b has version 1 cached");

    // A rotation through A: A uses it at once; B decrypts A's new blobs at
    // once (Transit knows the version) and seals under it within the TTL.
    a.kms.rotate_key(&cx(), &id("default")).await.unwrap();
    let new_from_a = a
        .kms
        .generate_data_key(&cx(), Operation::GenerateDataKey, None, &context)
        .await
        .unwrap();
    assert_eq!(new_from_a.sealed.key_version, 2);
    b.kms
        .decrypt(&cx(), &new_from_a.sealed.blob, &context, None)
        .await
        .unwrap();
    let seen = time_until(ttl * 3, || async move {
        kms_b
            .generate_data_key(&cx(), Operation::GenerateDataKey, None, c)
            .await
            .unwrap()
            .sealed
            .key_version
            == 2
    })
    .await;
    assert!(seen <= ttl + SLACK, "rotation seen after {seen:?}");

    // A disable through B stops A within the TTL; enabling brings it back.
    b.kms
        .change_state(&cx(), &id("default"), StateChange::Disable)
        .await
        .unwrap();
    let seen = time_until(ttl * 3, || async move {
        matches!(
            kms_a
                .generate_data_key(&cx(), Operation::GenerateDataKey, None, c)
                .await,
            Err(KmsError::KeyDisabled(_))
        )
    })
    .await;
    assert!(seen <= ttl + SLACK, "disable seen after {seen:?}");
    b.kms
        .change_state(&cx(), &id("default"), StateChange::Enable)
        .await
        .unwrap();
    time_until(ttl * 3, || async move {
        kms_a
            .generate_data_key(&cx(), Operation::GenerateDataKey, None, c)
            .await
            .is_ok()
    })
    .await;

    // Concurrent state changes through both never lose an update: each
    // check-and-set write applies to the state it read.
    let (key, internal) = (id("default"), cx());
    let (x, y) = tokio::join!(
        a.kms.change_state(&internal, &key, StateChange::Disable),
        b.kms.change_state(&internal, &key, StateChange::Disable),
    );
    assert_eq!(x.unwrap().state, crate::backend::KeyState::Disabled);
    assert_eq!(y.unwrap().state, crate::backend::KeyState::Disabled);

    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
