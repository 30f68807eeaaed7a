//! `kms.v1.KeyManagement` through the generated client.

use kms_client::proto;
use kmsd_tests::{assert_error, code_and_reason, ctx};
use tonic::Code;

use crate::Fixture;

pub(crate) async fn generate_data_key_round_trips(f: Fixture) {
    let context = ctx(&[("bucket", "photos"), ("object", "cat.jpg")]);
    let generated = f.client.generate_data_key(None, &context).await.unwrap();
    assert_eq!(generated.key_id, "default");
    assert_eq!(generated.key_version, 1);
    let opened = f
        .client
        .decrypt(&generated.blob, &context, None)
        .await
        .unwrap();
    assert_eq!(
        opened.plaintext.expose_secret(),
        generated.key.expose_secret()
    );
    assert_eq!((opened.key_id.as_str(), opened.key_version), ("default", 1));
    let again = f
        .client
        .decrypt_data_key(&generated.blob, &context)
        .await
        .unwrap();
    assert_eq!(again.expose_secret(), generated.key.expose_secret());

    let key = f.new_key("gdk").await;
    let other = f
        .client
        .generate_data_key(Some(&key), &context)
        .await
        .unwrap();
    assert_eq!(other.key_id, key);
    assert_ne!(other.key.expose_secret(), generated.key.expose_secret());
}

pub(crate) async fn generate_without_plaintext_round_trips(f: Fixture) {
    let context = ctx(&[("tenant", "t1")]);
    let sealed = f
        .client
        .generate_data_key_without_plaintext(None, &context)
        .await
        .unwrap();
    let opened = f
        .client
        .decrypt(&sealed.blob, &context, None)
        .await
        .unwrap();
    assert_eq!(opened.plaintext.len(), 32);
}

pub(crate) async fn encrypt_round_trips_up_to_4_kib(f: Fixture) {
    let context = ctx(&[]);
    for len in [0usize, 1, 31, 32, 33, 4095, 4096] {
        let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let sealed = f.client.encrypt(None, &plaintext, &context).await.unwrap();
        let opened = f
            .client
            .decrypt(&sealed.blob, &context, Some("default"))
            .await
            .unwrap();
        assert_eq!(
            opened.plaintext.expose_secret(),
            plaintext.as_slice(),
            "len {len}"
        );
    }
}

pub(crate) async fn oversized_encrypt_is_rejected(f: Fixture) {
    let err = assert_error(
        f.client.encrypt(None, &[7; 4097], &ctx(&[])).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert!(err.to_string().contains("4097"), "{err}");
}

pub(crate) async fn wrong_context_is_rejected(f: Fixture) {
    let context = ctx(&[("bucket", "b"), ("object", "o")]);
    let generated = f.client.generate_data_key(None, &context).await.unwrap();
    for other in [
        ctx(&[]),
        ctx(&[("bucket", "b")]),
        ctx(&[("bucket", "b"), ("object", "O")]),
        ctx(&[("bucket", "b"), ("object", "o"), ("extra", "")]),
    ] {
        assert_error(
            f.client.decrypt(&generated.blob, &other, None).await,
            Code::InvalidArgument,
            "INVALID_CIPHERTEXT",
        );
    }
}

pub(crate) async fn every_flipped_bit_is_rejected(f: Fixture) {
    let context = ctx(&[("k", "v")]);
    let generated = f.client.generate_data_key(None, &context).await.unwrap();
    let blob = generated.blob;
    // Header: magic, format, backend, id length, id ("default"), version.
    let payload_start = 5 + 7 + 4;
    for bit in 0..blob.len() * 8 {
        let mut bad = blob.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let err = f
            .client
            .decrypt(&bad, &context, None)
            .await
            .expect_err("a flipped bit must be rejected");
        let (code, reason) = code_and_reason(&err);
        if bit / 8 >= payload_start {
            assert_eq!(
                (code, reason.as_str()),
                (Code::InvalidArgument, "INVALID_CIPHERTEXT"),
                "bit {bit}"
            );
        } else {
            // A flip in the header can turn the key id or version into one
            // that does not exist; anything else is malformed or fails to
            // authenticate.
            assert!(
                matches!(
                    (code, reason.as_str()),
                    (
                        Code::InvalidArgument,
                        "MALFORMED_CIPHERTEXT" | "INVALID_CIPHERTEXT"
                    ) | (Code::NotFound, "KEY_NOT_FOUND" | "KEY_VERSION_NOT_FOUND")
                ),
                "bit {bit}: {err}"
            );
        }
    }
}

pub(crate) async fn truncated_and_extended_blobs_are_rejected(f: Fixture) {
    let context = ctx(&[]);
    let blob = f
        .client
        .generate_data_key(None, &context)
        .await
        .unwrap()
        .blob;
    for len in 0..blob.len() {
        let err = f
            .client
            .decrypt(&blob[..len], &context, None)
            .await
            .expect_err("a truncated blob must be rejected");
        assert_eq!(err.code(), Some(Code::InvalidArgument), "len {len}: {err}");
    }
    let mut longer = blob.clone();
    longer.push(0);
    assert_error(
        f.client.decrypt(&longer, &context, None).await,
        Code::InvalidArgument,
        "INVALID_CIPHERTEXT",
    );
}

pub(crate) async fn malformed_blobs_are_rejected(f: Fixture) {
    for blob in [
        Vec::new(),
        b"not a blob".to_vec(),
        b"vault:v1:AAAA".to_vec(),
        vec![0x6b, 0x6d, 0x09, 0x01],
        vec![0u8; 9000],
    ] {
        assert_error(
            f.client.decrypt(&blob, &ctx(&[]), None).await,
            Code::InvalidArgument,
            "MALFORMED_CIPHERTEXT",
        );
    }
}

pub(crate) async fn wrong_expected_key_id_is_rejected(f: Fixture) {
    let other = f.new_key("other").await;
    let blob = f
        .client
        .generate_data_key(None, &ctx(&[]))
        .await
        .unwrap()
        .blob;
    let err = assert_error(
        f.client.decrypt(&blob, &ctx(&[]), Some(&other)).await,
        Code::InvalidArgument,
        "INCORRECT_KEY",
    );
    assert!(err.to_string().contains("default"), "{err}");
    f.client
        .decrypt(&blob, &ctx(&[]), Some("default"))
        .await
        .unwrap();
}

pub(crate) async fn unknown_keys_are_not_found(f: Fixture) {
    assert_error(
        f.client
            .generate_data_key(Some("no-such-key"), &ctx(&[]))
            .await,
        Code::NotFound,
        "KEY_NOT_FOUND",
    );
    assert_error(
        f.client.encrypt(Some("no-such-key"), b"x", &ctx(&[])).await,
        Code::NotFound,
        "KEY_NOT_FOUND",
    );
    // A well-formed blob naming a key that does not exist ("defaulx").
    let mut blob = f
        .client
        .generate_data_key(None, &ctx(&[]))
        .await
        .unwrap()
        .blob;
    blob[5 + 6] = b'x';
    assert_error(
        f.client.decrypt(&blob, &ctx(&[]), None).await,
        Code::NotFound,
        "KEY_NOT_FOUND",
    );
    assert_error(
        f.client
            .re_encrypt(
                &f.client.encrypt(None, b"x", &ctx(&[])).await.unwrap().blob,
                &ctx(&[]),
                Some("no-such-key"),
                None,
            )
            .await,
        Code::NotFound,
        "KEY_NOT_FOUND",
    );
}

pub(crate) async fn invalid_key_ids_are_rejected(f: Fixture) {
    let blob = f.client.encrypt(None, b"x", &ctx(&[])).await.unwrap().blob;
    for bad in [
        "../../etc/passwd",
        "a/b",
        ".hidden",
        "sp ace",
        &"k".repeat(129),
        "ключ",
    ] {
        assert_error(
            f.client.generate_data_key(Some(bad), &ctx(&[])).await,
            Code::InvalidArgument,
            "INVALID_KEY_ID",
        );
        assert_error(
            f.client.encrypt(Some(bad), b"x", &ctx(&[])).await,
            Code::InvalidArgument,
            "INVALID_KEY_ID",
        );
        assert_error(
            f.client.decrypt(&blob, &ctx(&[]), Some(bad)).await,
            Code::InvalidArgument,
            "INVALID_KEY_ID",
        );
        assert_error(
            f.client.re_encrypt(&blob, &ctx(&[]), Some(bad), None).await,
            Code::InvalidArgument,
            "INVALID_KEY_ID",
        );
    }
}

pub(crate) async fn context_limits(f: Fixture) {
    // The empty context and a context at every limit are fine.
    let full: kms_client::EncryptionContext = (0..64)
        .map(|i| (format!("k{i:02}"), "v".repeat(100)))
        .collect();
    for context in [ctx(&[]), full.clone(), ctx(&[("k", &"v".repeat(8191))])] {
        let blob = f
            .client
            .generate_data_key(None, &context)
            .await
            .unwrap()
            .blob;
        f.client.decrypt(&blob, &context, None).await.unwrap();
    }
    let mut too_many = full;
    too_many.insert("k64".into(), String::new());
    let huge = ctx(&[("k", &"v".repeat(8192))]);
    let empty_key = ctx(&[("", "v")]);
    for context in [too_many, huge, empty_key] {
        assert_error(
            f.client.generate_data_key(None, &context).await,
            Code::InvalidArgument,
            "INVALID_ENCRYPTION_CONTEXT",
        );
        assert_error(
            f.client.decrypt(b"km", &context, None).await,
            Code::InvalidArgument,
            "INVALID_ENCRYPTION_CONTEXT",
        );
    }
}

pub(crate) async fn oversized_messages_are_refused(f: Fixture) {
    let result = f
        .client
        .key_management()
        .decrypt(proto::DecryptRequest {
            ciphertext_blob: vec![0; 100 * 1024],
            encryption_context: Default::default(),
            expected_key_id: String::new(),
        })
        .await;
    let status = result.expect_err("a 100 KiB request must be refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // It fails the same way every time: kms-client must not retry it (it
    // did, four times, before only OVERLOADED counted as transient).
    let error = kms_client::Error::from(status);
    assert!(!error.is_transient(), "{error}");
    let error = f
        .client
        .decrypt(&vec![0; 100 * 1024], &ctx(&[]), None)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(Code::ResourceExhausted), "{error}");
    assert!(!error.is_transient(), "{error}");
    // The connection survives.
    f.client.generate_data_key(None, &ctx(&[])).await.unwrap();
}

pub(crate) async fn re_encrypt_moves_blobs(f: Fixture) {
    let key = f.new_key("re").await;
    let context = ctx(&[("object", "a")]);
    let generated = f
        .client
        .generate_data_key(Some(&key), &context)
        .await
        .unwrap();
    f.client
        .key_admin()
        .rotate_key(proto::RotateKeyRequest {
            key_id: key.clone(),
        })
        .await
        .unwrap();

    // Same key: moves to the newest version, same context.
    let moved = f
        .client
        .re_encrypt(&generated.blob, &context, None, None)
        .await
        .unwrap();
    assert_eq!(
        (moved.source_key_id.as_str(), moved.source_key_version),
        (key.as_str(), 1)
    );
    assert_eq!(
        (moved.blob.key_id.as_str(), moved.blob.key_version),
        (key.as_str(), 2)
    );
    let opened = f
        .client
        .decrypt(&moved.blob.blob, &context, None)
        .await
        .unwrap();
    assert_eq!(
        opened.plaintext.expose_secret(),
        generated.key.expose_secret()
    );

    // Another key and another context.
    let new_context = ctx(&[("object", "b")]);
    let elsewhere = f
        .client
        .re_encrypt(
            &generated.blob,
            &context,
            Some("default"),
            Some(&new_context),
        )
        .await
        .unwrap();
    assert_eq!(elsewhere.blob.key_id, "default");
    let opened = f
        .client
        .decrypt(&elsewhere.blob.blob, &new_context, None)
        .await
        .unwrap();
    assert_eq!(
        opened.plaintext.expose_secret(),
        generated.key.expose_secret()
    );
    assert_error(
        f.client.decrypt(&elsewhere.blob.blob, &context, None).await,
        Code::InvalidArgument,
        "INVALID_CIPHERTEXT",
    );

    // The source context is checked.
    assert_error(
        f.client
            .re_encrypt(&generated.blob, &ctx(&[]), None, None)
            .await,
        Code::InvalidArgument,
        "INVALID_CIPHERTEXT",
    );
    // The old blob still opens.
    f.client
        .decrypt(&generated.blob, &context, None)
        .await
        .unwrap();
}
