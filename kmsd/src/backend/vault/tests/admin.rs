//! The KeyAdmin API on Transit and KV.

use serde_json::json;

use super::*;
use crate::backend::{KeyState, StateChange};
use crate::clock::Clock as _;

#[tokio::test]
async fn key_admin_round_trip_through_the_daemon() {
    let bao = OpenBao::dev().await;
    let clock = clock();
    let daemon = start_daemon(&bao, &token_auth(&bao.root_token()), "", &clock).await;
    let kms = &daemon.kms;
    let tags = BTreeMap::from([("team".to_owned(), "storage".to_owned())]);
    let meta = kms
        .create_key(
            &cx(),
            Some(id("alpha")),
            "the alpha key".into(),
            tags.clone(),
        )
        .await
        .unwrap();
    assert_eq!(meta.state, KeyState::Enabled);
    assert_eq!((meta.current_version, meta.versions.len()), (1, 1));
    assert_eq!(meta.created_at, clock.now());
    assert_eq!(meta.backend, blob::BackendKind::Vault);
    let described = kms.describe_key(&cx(), &id("alpha")).await.unwrap();
    assert_eq!(described, meta);
    assert_eq!(described.description, "the alpha key");
    assert_eq!(described.tags, tags);

    let err = kms
        .create_key(&cx(), Some(id("alpha")), String::new(), BTreeMap::new())
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::KeyAlreadyExists(_)), "{err:?}");
    let err = kms.describe_key(&cx(), &id("missing")).await.unwrap_err();
    assert!(matches!(err, KmsError::KeyNotFound(_)), "{err:?}");

    // Paged listing, in key-id order ("default" was created at startup).
    for key in ["delta", "bravo", "echo", "charlie"] {
        kms.create_key(&cx(), Some(id(key)), String::new(), BTreeMap::new())
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = kms.list_keys(&cx(), 2, &token).await.unwrap();
        assert!(page.keys.len() <= 2);
        seen.extend(page.keys.iter().map(|k| k.key_id.to_string()));
        match page.next_page_token {
            Some(next) => token = next,
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["alpha", "bravo", "charlie", "default", "delta", "echo"]
    );

    // Lifecycle: disable, enable, schedule deletion, cancel.
    let disabled = kms
        .change_state(&cx(), &id("alpha"), StateChange::Disable)
        .await
        .unwrap();
    assert_eq!(disabled.state, KeyState::Disabled);
    let enabled = kms
        .change_state(&cx(), &id("alpha"), StateChange::Enable)
        .await
        .unwrap();
    assert_eq!(enabled.state, KeyState::Enabled);
    let (pending, _) = kms
        .schedule_key_deletion(&cx(), &id("alpha"), 7, false)
        .await
        .unwrap();
    assert_eq!(pending.state, KeyState::PendingDeletion);
    assert_eq!(
        pending.deletion_date,
        Some(clock.now() + time::Duration::days(7))
    );
    let err = kms.rotate_key(&cx(), &id("alpha")).await.unwrap_err();
    assert!(
        matches!(err, KmsError::InvalidStateTransition { .. }),
        "{err:?}"
    );
    let err = kms
        .change_state(&cx(), &id("alpha"), StateChange::Enable)
        .await
        .unwrap_err();
    assert!(
        matches!(err, KmsError::InvalidStateTransition { .. }),
        "{err:?}"
    );
    let cancelled = kms
        .change_state(&cx(), &id("alpha"), StateChange::CancelDeletion)
        .await
        .unwrap();
    assert_eq!(
        (cancelled.state, cancelled.deletion_date),
        (KeyState::Disabled, None)
    );

    // The status summary shows settings, never the token.
    let active = vault_of(&daemon);
    let summary = format!("{:?}", active.summary);
    assert!(summary.contains(&bao.address()), "{summary}");
    assert!(!summary.contains(&bao.root_token()), "{summary}");
    daemon.shutdown().await.unwrap();
}

#[tokio::test]
async fn rotation_keeps_old_blobs_decrypting() {
    let bao = OpenBao::dev().await;
    let backend = backend(&bao, &token_auth(&bao.root_token()), "", &clock()).await;
    create(&backend, "k").await;
    let context = ctx(&[("object", "o")]);
    let mut blobs = vec![backend.encrypt(&id("k"), b"v1", &context).await.unwrap()];
    for expected in [2, 3] {
        let meta = backend.rotate_key(&id("k")).await.unwrap();
        assert_eq!(meta.current_version, expected);
        let versions: Vec<u32> = meta.versions.iter().map(|v| v.version).collect();
        assert_eq!(versions, (1..=expected).collect::<Vec<_>>());
        let sealed = backend
            .encrypt(&id("k"), format!("v{expected}").as_bytes(), &context)
            .await
            .unwrap();
        assert_eq!(sealed.key_version, expected);
        assert!(payload(&sealed.blob).starts_with(&format!("vault:v{expected}:")));
        blobs.push(sealed);
    }
    for (i, sealed) in blobs.iter().enumerate() {
        let opened = open(&backend, &sealed.blob, &context).await.unwrap();
        assert_eq!(
            opened.plaintext.expose_secret(),
            format!("v{}", i + 1).as_bytes()
        );
        assert_eq!(opened.key_version, i as u32 + 1);
    }

    // The header's version must be the one Transit used.
    let mut lying = blobs[2].blob.clone();
    let at = 5 + 1;
    lying[at..at + 4].copy_from_slice(&1u32.to_be_bytes());
    let err = open(&backend, &lying, &context).await.unwrap_err();
    assert!(matches!(err, KmsError::InvalidCiphertext), "{err:?}");

    // A version that does not exist, consistently in header and payload.
    let mut future = blobs[0].blob[..at].to_vec();
    future.extend_from_slice(&9u32.to_be_bytes());
    future.extend_from_slice(
        payload(&blobs[0].blob)
            .replacen("vault:v1:", "vault:v9:", 1)
            .as_bytes(),
    );
    let err = open(&backend, &future, &context).await.unwrap_err();
    assert!(
        matches!(err, KmsError::KeyVersionNotFound { version: 9, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_deletion_window_really_destroys_the_transit_key() {
    let bao = OpenBao::dev().await;
    let clock = clock();
    let backend = backend(&bao, &token_auth(&bao.root_token()), "", &clock).await;
    create(&backend, "doomed").await;
    create(&backend, "kept").await;
    let context = ctx(&[]);
    let sealed = backend
        .encrypt(&id("doomed"), b"bye", &context)
        .await
        .unwrap();
    let deletion_date = clock.now() + time::Duration::days(7);
    backend
        .change_state(
            &id("doomed"),
            StateChange::ScheduleDeletion { deletion_date },
        )
        .await
        .unwrap();
    assert!(
        backend
            .destroy_due_keys(clock.now())
            .await
            .into_result()
            .unwrap()
            .is_empty()
    );
    clock.advance(time::Duration::days(6));
    assert!(
        backend
            .destroy_due_keys(clock.now())
            .await
            .into_result()
            .unwrap()
            .is_empty()
    );
    assert!(bao.transit_key_exists("doomed").await);

    clock.advance(time::Duration::days(1));
    let destroyed = backend
        .destroy_due_keys(clock.now())
        .await
        .into_result()
        .unwrap();
    assert_eq!(destroyed, [id("doomed")]);
    assert!(
        !bao.transit_key_exists("doomed").await,
        "the Transit key is gone"
    );
    let (status, _) = bao
        .try_api(
            "GET",
            "secret/metadata/rustfs/kms/keys/doomed",
            None,
            Some(&bao.root_token()),
        )
        .await;
    assert_eq!(status, 404, "the KV record and its versions are gone");
    assert!(bao.transit_key_exists("kept").await);

    let err = backend.describe_key(&id("doomed")).await.unwrap_err();
    assert!(matches!(err, KmsError::KeyNotFound(_)), "{err:?}");
    let err = open(&backend, &sealed.blob, &context).await.unwrap_err();
    assert!(matches!(err, KmsError::KeyNotFound(_)), "{err:?}");
    let listed: Vec<_> = backend.list_keys(None, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
        ["kept"]
    );
    // Sweeping again is harmless; the id can be created afresh.
    assert!(
        backend
            .destroy_due_keys(clock.now())
            .await
            .into_result()
            .unwrap()
            .is_empty()
    );
    assert_eq!(create(&backend, "doomed").await.current_version, 1);
}

#[tokio::test]
async fn create_adopts_only_suitable_transit_keys() {
    let bao = OpenBao::dev().await;
    let backend = backend(&bao, &token_auth(&bao.root_token()), "", &clock()).await;
    // A Transit key left by a create that died before writing its record.
    bao.api(
        "POST",
        "transit/keys/orphan",
        Some(json!({ "type": "aes256-gcm96" })),
    )
    .await;
    let meta = create(&backend, "orphan").await;
    assert_eq!(meta.current_version, 1);
    backend
        .encrypt(&id("orphan"), b"x", &ctx(&[]))
        .await
        .unwrap();

    for (name, body) in [
        ("chacha", json!({ "type": "chacha20-poly1305" })),
        (
            "exportable",
            json!({ "type": "aes256-gcm96", "exportable": true }),
        ),
        (
            "derived",
            json!({ "type": "aes256-gcm96", "derived": true }),
        ),
    ] {
        bao.api("POST", &format!("transit/keys/{name}"), Some(body))
            .await;
        let err = backend
            .create_key(NewKey {
                key_id: id(name),
                description: String::new(),
                tags: BTreeMap::new(),
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, KmsError::InvalidArgument(m) if m.contains("cannot adopt")),
            "{name}: {err:?}"
        );
        let err = backend.describe_key(&id(name)).await.unwrap_err();
        assert!(matches!(err, KmsError::KeyNotFound(_)), "{name}: {err:?}");
    }
}
