//! Data keys, small secrets and ReEncrypt through Transit.

use super::*;
use crate::backend::StateChange;

#[tokio::test]
async fn data_keys_round_trip_and_bind_their_context() {
    let bao = OpenBao::dev().await;
    let backend = backend(&bao, &token_auth(&bao.root_token()), "", &clock()).await;
    create(&backend, "k1").await;
    let context = ctx(&[("bucket", "b"), ("object", "o")]);
    let generated = backend
        .generate_data_key(&id("k1"), &context)
        .await
        .unwrap();
    assert_eq!(generated.sealed.key_version, 1);
    assert!(payload(&generated.sealed.blob).starts_with("vault:v1:"));
    let opened = opens_to_its_key(&backend, &generated, &context).await;
    assert_eq!((opened.key_id.as_str(), opened.key_version), ("k1", 1));

    // Any other context fails exactly as with the local backend.
    for other in [
        ctx(&[]),
        ctx(&[("bucket", "b")]),
        ctx(&[("bucket", "b"), ("object", "O")]),
        ctx(&[("bucket", "b"), ("object", "o"), ("x", "")]),
    ] {
        let err = open(&backend, &generated.sealed.blob, &other)
            .await
            .unwrap_err();
        assert!(matches!(err, KmsError::InvalidCiphertext), "{err:?}");
    }

    // Small secrets, up to the 4 KiB the service allows.
    for len in [0, 1, 100, 4096] {
        let secret: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let sealed = backend.encrypt(&id("k1"), &secret, &context).await.unwrap();
        assert!(sealed.blob.len() <= blob::MAX_BLOB_LEN);
        let opened = open(&backend, &sealed.blob, &context).await.unwrap();
        assert_eq!(opened.plaintext.expose_secret(), &secret[..]);
    }

    // A blob moved to another key fails: the key id is in the AAD.
    create(&backend, "k2").await;
    let mut moved = generated.sealed.blob.clone();
    moved[5..7].copy_from_slice(b"k2");
    let err = open(&backend, &moved, &context).await.unwrap_err();
    assert!(matches!(err, KmsError::InvalidCiphertext), "{err:?}");

    // Unknown keys.
    let err = backend
        .generate_data_key(&id("nope"), &context)
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::KeyNotFound(_)), "{err:?}");
}

#[tokio::test]
async fn disabled_keys_refuse_encrypt_and_decrypt() {
    let bao = OpenBao::dev().await;
    let backend = backend(&bao, &token_auth(&bao.root_token()), "", &clock()).await;
    create(&backend, "k").await;
    let context = ctx(&[("a", "b")]);
    let sealed = backend
        .encrypt(&id("k"), b"secret", &context)
        .await
        .unwrap();
    backend
        .change_state(&id("k"), StateChange::Disable)
        .await
        .unwrap();
    let err = backend.encrypt(&id("k"), b"x", &context).await.unwrap_err();
    assert!(matches!(err, KmsError::KeyDisabled(_)), "{err:?}");
    let err = open(&backend, &sealed.blob, &context).await.unwrap_err();
    assert!(matches!(err, KmsError::KeyDisabled(_)), "{err:?}");
    backend
        .change_state(&id("k"), StateChange::Enable)
        .await
        .unwrap();
    open(&backend, &sealed.blob, &context).await.unwrap();
}

#[tokio::test]
async fn every_flipped_bit_is_rejected() {
    let bao = OpenBao::dev().await;
    let backend = backend(&bao, &token_auth(&bao.root_token()), "", &clock()).await;
    create(&backend, "default").await;
    let context = ctx(&[("k", "v")]);
    let blob = generated_blob(&backend, "default", &context).await;
    let payload_start = 5 + "default".len() + 4;
    for bit in 0..blob.len() * 8 {
        let mut bad = blob.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let err = open(&backend, &bad, &context)
            .await
            .expect_err("a flipped bit must be rejected");
        if bit / 8 >= payload_start {
            assert!(
                matches!(err, KmsError::InvalidCiphertext),
                "bit {bit}: {err:?}"
            );
        } else {
            assert!(
                matches!(
                    err,
                    KmsError::MalformedBlob(_)
                        | KmsError::InvalidCiphertext
                        | KmsError::KeyNotFound(_)
                        | KmsError::KeyVersionNotFound { .. }
                        | KmsError::InvalidKeyId { .. }
                ),
                "bit {bit}: {err:?}"
            );
        }
    }
    // Truncations too.
    for len in [0, 4, payload_start, payload_start + 9, blob.len() - 1] {
        assert!(
            open(&backend, &blob[..len], &context).await.is_err(),
            "len {len}"
        );
    }
}

#[tokio::test]
async fn re_encrypt_moves_blobs_between_versions_keys_and_contexts() {
    let bao = OpenBao::dev().await;
    let clock = clock();
    let daemon = start_daemon(&bao, &token_auth(&bao.root_token()), "", &clock).await;
    let kms = &daemon.kms;
    // The default key was created at startup.
    assert_eq!(
        kms.describe_key(&cx(), &id("default"))
            .await
            .unwrap()
            .current_version,
        1
    );
    let context = ctx(&[("bucket", "b")]);
    let generated = kms
        .generate_data_key(&cx(), Operation::GenerateDataKey, None, &context)
        .await
        .unwrap();
    kms.rotate_key(&cx(), &id("default")).await.unwrap();

    // Same key: to the newest version.
    let moved = kms
        .re_encrypt(&cx(), &generated.sealed.blob, &context, None, None, None)
        .await
        .unwrap();
    assert_eq!((moved.source_key_version, moved.sealed.key_version), (1, 2));
    assert!(payload(&moved.sealed.blob).starts_with("vault:v2:"));
    let opened = kms
        .decrypt(&cx(), &moved.sealed.blob, &context, None)
        .await
        .unwrap();
    assert_eq!(
        opened.plaintext.expose_secret(),
        generated.key.expose_secret()
    );

    // Another key and another context.
    kms.create_key(&cx(), Some(id("other")), String::new(), BTreeMap::new())
        .await
        .unwrap();
    let other_context = ctx(&[("bucket", "c")]);
    let moved = kms
        .re_encrypt(
            &cx(),
            &generated.sealed.blob,
            &context,
            None,
            Some(id("other").into()),
            Some(&other_context),
        )
        .await
        .unwrap();
    assert_eq!(moved.sealed.key_id.as_str(), "other");
    let err = kms
        .decrypt(&cx(), &moved.sealed.blob, &context, None)
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::InvalidCiphertext), "{err:?}");
    let opened = kms
        .decrypt(
            &cx(),
            &moved.sealed.blob,
            &other_context,
            Some(&id("other").into()),
        )
        .await
        .unwrap();
    assert_eq!(
        opened.plaintext.expose_secret(),
        generated.key.expose_secret()
    );

    // The source must authenticate first.
    let err = kms
        .re_encrypt(
            &cx(),
            &generated.sealed.blob,
            &other_context,
            None,
            None,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::InvalidCiphertext), "{err:?}");
    daemon.shutdown().await.unwrap();
}

/// Concurrent calls share Transit requests (`batch_input`): each still gets
/// its own answer, and a bad blob in a batch fails alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_are_batched_and_fail_alone() {
    use std::sync::Arc;
    let bao = OpenBao::dev().await;
    let backend = Arc::new(backend(&bao, &token_auth(&bao.root_token()), "", &clock()).await);
    create(&*backend, "k").await;
    let context = |i: usize| ctx(&[("object", &format!("o{i}"))]);
    let generating: Vec<_> = (0..100)
        .map(|i| {
            let backend = Arc::clone(&backend);
            tokio::spawn(async move { backend.generate_data_key(&id("k"), &context(i)).await })
        })
        .collect();
    let mut generated = Vec::new();
    for g in generating {
        generated.push(g.await.unwrap().unwrap());
    }
    // Every third blob is opened under the wrong context.
    let opening: Vec<_> = generated
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let backend = Arc::clone(&backend);
            let blob = g.sealed.blob.clone();
            let context = if i % 3 == 0 {
                ctx(&[("object", "elsewhere")])
            } else {
                context(i)
            };
            tokio::spawn(async move { open(&*backend, &blob, &context).await })
        })
        .collect();
    for (i, (g, o)) in generated.iter().zip(opening).enumerate() {
        match o.await.unwrap() {
            Ok(o) if i % 3 != 0 => assert_eq!(o.plaintext.expose_secret(), g.key.expose_secret()),
            Err(KmsError::InvalidCiphertext) if i % 3 == 0 => {}
            other => panic!("blob {i}: {other:?}"),
        }
    }
}
