//! Intermediate-key caching against a real OpenBao.

use std::{collections::BTreeSet, time::Duration};

use super::*;
use crate::backend::StateChange;

fn intermediate(ttl_seconds: u64, max_uses: u64) -> String {
    format!(
        "[backend.intermediate_key]\nenabled = true\nttl_seconds = {ttl_seconds}\nmax_uses = {max_uses}\n"
    )
}

/// `extra` goes before the auth table (TOML tables end at the next one).
async fn with_intermediate(bao: &OpenBao, ttl: u64, uses: u64) -> VaultBackend {
    let auth = format!(
        "{}{}",
        token_auth(&bao.root_token()),
        intermediate(ttl, uses)
    );
    backend(bao, &auth, "", &clock()).await
}

fn intermediate_id(sealed: &[u8]) -> String {
    blob::intermediate_key_id(&blob::parse(sealed).unwrap())
        .expect("sealed under an intermediate key")
}

#[tokio::test]
async fn data_keys_wrap_locally_under_a_bounded_intermediate_key() {
    let bao = OpenBao::dev().await;
    let backend = with_intermediate(&bao, 300, 5).await;
    create(&backend, "k1").await;
    let context = ctx(&[("bucket", "b"), ("object", "o")]);
    let mut ids = Vec::new();
    let mut generated = Vec::new();
    for _ in 0..12 {
        let key = backend
            .generate_data_key(&id("k1"), &context)
            .await
            .unwrap();
        assert_eq!(key.sealed.key_version, 1);
        ids.push(intermediate_id(&key.sealed.blob));
        generated.push(key);
    }
    // max_uses = 5: uses 1-5, 6-10, 11-12.
    assert!(ids[..5].iter().all(|i| *i == ids[0]), "{ids:?}");
    assert!(ids[5..10].iter().all(|i| *i == ids[5]), "{ids:?}");
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 3, "{ids:?}");

    for key in &generated {
        let opened = open(&backend, &key.sealed.blob, &context).await.unwrap();
        assert_eq!(opened.plaintext.expose_secret(), key.key.expose_secret());
        assert_eq!((opened.key_id.as_str(), opened.key_version), ("k1", 1));
        // Another context fails, as everywhere.
        for other in [ctx(&[]), ctx(&[("bucket", "b"), ("object", "O")])] {
            let err = open(&backend, &key.sealed.blob, &other).await.unwrap_err();
            assert!(matches!(err, KmsError::InvalidCiphertext), "{err:?}");
        }
    }

    // A backend without the mode, or with nothing cached, still opens them:
    // the blob carries everything.
    let plain = backend_plain(&bao).await;
    let opened = open(&plain, &generated[0].sealed.blob, &context)
        .await
        .unwrap();
    assert_eq!(
        opened.plaintext.expose_secret(),
        generated[0].key.expose_secret()
    );
    // And the mode opens ordinary Transit blobs.
    let direct = plain.generate_data_key(&id("k1"), &context).await.unwrap();
    let opened = open(&backend, &direct.sealed.blob, &context).await.unwrap();
    assert_eq!(opened.plaintext.expose_secret(), direct.key.expose_secret());

    // Small secrets too.
    let sealed = backend
        .encrypt(&id("k1"), &[7; 4096], &context)
        .await
        .unwrap();
    assert!(sealed.blob.len() <= blob::MAX_BLOB_LEN);
    let opened = open(&plain, &sealed.blob, &context).await.unwrap();
    assert_eq!(opened.plaintext.expose_secret(), &[7; 4096]);

    // A blob moved to another key fails, whether or not that key's
    // intermediate key is cached.
    create(&backend, "k2").await;
    backend
        .generate_data_key(&id("k2"), &context)
        .await
        .unwrap();
    let mut moved = generated[0].sealed.blob.clone();
    moved[5..7].copy_from_slice(b"k2");
    for b in [&backend, &plain] {
        let err = open(b, &moved, &context).await.unwrap_err();
        assert!(matches!(err, KmsError::InvalidCiphertext), "{err:?}");
    }
}

async fn backend_plain(bao: &OpenBao) -> VaultBackend {
    backend(bao, &token_auth(&bao.root_token()), "", &clock()).await
}

#[tokio::test]
async fn an_intermediate_key_expires_and_rotation_replaces_it() {
    let bao = OpenBao::dev().await;
    let backend = with_intermediate(&bao, 1, 1_000_000).await;
    create(&backend, "k").await;
    let context = ctx(&[]);
    let first = backend.generate_data_key(&id("k"), &context).await.unwrap();
    let again = backend.generate_data_key(&id("k"), &context).await.unwrap();
    assert_eq!(
        intermediate_id(&first.sealed.blob),
        intermediate_id(&again.sealed.blob)
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = backend.generate_data_key(&id("k"), &context).await.unwrap();
    assert_ne!(
        intermediate_id(&first.sealed.blob),
        intermediate_id(&later.sealed.blob)
    );
    // Opened after the cache forgot it: one Transit call, same answer.
    let opened = open(&backend, &first.sealed.blob, &context).await.unwrap();
    assert_eq!(opened.plaintext.expose_secret(), first.key.expose_secret());

    backend.rotate_key(&id("k")).await.unwrap();
    let rotated = backend.generate_data_key(&id("k"), &context).await.unwrap();
    assert_eq!(rotated.sealed.key_version, 2);
    assert_ne!(
        intermediate_id(&later.sealed.blob),
        intermediate_id(&rotated.sealed.blob)
    );
    for key in [&first, &later, &rotated] {
        let opened = open(&backend, &key.sealed.blob, &context).await.unwrap();
        assert_eq!(opened.plaintext.expose_secret(), key.key.expose_secret());
    }
}

/// The point of the mode, and its trade-off: while an intermediate key
/// lives, wraps and unwraps under it need no Transit call, so they go on
/// while OpenBao is sealed. A kmsd without it cached cannot open them.
#[tokio::test]
async fn wraps_and_unwraps_under_a_live_intermediate_key_need_no_transit_call() {
    let bao = OpenBao::dev().await;
    let backend = with_intermediate(&bao, 300, 1_000_000).await;
    create(&backend, "k").await;
    let context = ctx(&[("bucket", "b")]);
    let first = backend.generate_data_key(&id("k"), &context).await.unwrap();
    let fresh = with_intermediate(&bao, 300, 1_000_000).await;
    bao.seal().await;
    for _ in 0..50 {
        let key = backend.generate_data_key(&id("k"), &context).await.unwrap();
        let opened = open(&backend, &key.sealed.blob, &context).await.unwrap();
        assert_eq!(opened.plaintext.expose_secret(), key.key.expose_secret());
    }
    open(&backend, &first.sealed.blob, &context).await.unwrap();
    let err = open(&fresh, &first.sealed.blob, &context)
        .await
        .unwrap_err();
    assert!(
        matches!(err, KmsError::BackendUnavailable { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn disabling_a_key_stops_its_intermediate_keys_at_once() {
    let bao = OpenBao::dev().await;
    let backend = with_intermediate(&bao, 300, 1_000_000).await;
    create(&backend, "k").await;
    let context = ctx(&[]);
    let key = backend.generate_data_key(&id("k"), &context).await.unwrap();
    backend
        .change_state(&id("k"), StateChange::Disable)
        .await
        .unwrap();
    let err = backend
        .generate_data_key(&id("k"), &context)
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::KeyDisabled(_)), "{err:?}");
    let err = open(&backend, &key.sealed.blob, &context)
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::KeyDisabled(_)), "{err:?}");
    backend
        .change_state(&id("k"), StateChange::Enable)
        .await
        .unwrap();
    let after = backend.generate_data_key(&id("k"), &context).await.unwrap();
    assert_ne!(
        intermediate_id(&key.sealed.blob),
        intermediate_id(&after.sealed.blob)
    );
    open(&backend, &key.sealed.blob, &context).await.unwrap();
}

/// The wrapped intermediate key is in every blob, in the clear. Pasted into
/// an ordinary Transit blob it must not open, or Decrypt would hand it out.
#[tokio::test]
async fn a_wrapped_intermediate_key_never_opens_as_a_data_key() {
    let bao = OpenBao::dev().await;
    let backend = with_intermediate(&bao, 300, 1_000_000).await;
    let plain = backend_plain(&bao).await;
    create(&backend, "k").await;
    let key = backend
        .generate_data_key(&id("k"), &ctx(&[]))
        .await
        .unwrap();
    let parsed = blob::parse(&key.sealed.blob).unwrap();
    let payload = blob::VaultIntermediatePayload::parse(parsed.payload)
        .unwrap()
        .unwrap();
    let mut forged = parsed.header_bytes.to_vec();
    forged.extend_from_slice(payload.wrapped.as_bytes());
    for b in [&backend, &plain] {
        for context in [ctx(&[]), ctx(&[("k", "")])] {
            let err = open(b, &forged, &context).await.unwrap_err();
            assert!(matches!(err, KmsError::InvalidCiphertext), "{err:?}");
        }
    }
}

#[tokio::test]
async fn every_flipped_bit_of_an_intermediate_blob_is_rejected() {
    let bao = OpenBao::dev().await;
    let backend = with_intermediate(&bao, 300, 1_000_000).await;
    create(&backend, "default").await;
    let context = ctx(&[("k", "v")]);
    let blob = generated_blob(&backend, "default", &context).await;
    for bit in 0..blob.len() * 8 {
        let mut bad = blob.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        open(&backend, &bad, &context)
            .await
            .expect_err("a flipped bit must be rejected");
    }
    for len in 0..blob.len() {
        assert!(
            open(&backend, &blob[..len], &context).await.is_err(),
            "len {len}"
        );
    }
}
