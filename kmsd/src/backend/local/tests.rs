use std::{collections::BTreeMap, os::unix::fs::PermissionsExt, sync::Arc};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use kms_core::SecretBytes;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::{blob, clock::ManualClock};

pub(super) fn id(s: &str) -> KeyId {
    KeyId::parse(s).unwrap()
}

pub(super) fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    EncryptionContext::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .unwrap()
}

/// A temporary directory with the mode kmsd insists on.
pub(super) fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

pub(super) fn clock() -> ManualClock {
    ManualClock::new(OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap())
}

pub(super) fn open(dir: &Path, clock: &ManualClock) -> Result<LocalBackend, LocalError> {
    LocalBackend::open(
        LocalConfig {
            key_dir: dir.to_owned(),
            sealing: None,
        },
        Arc::new(clock.clone()),
    )
}

fn open_sealed(dir: &Path, passphrase: &str) -> Result<LocalBackend, LocalError> {
    LocalBackend::open(
        LocalConfig {
            key_dir: dir.to_owned(),
            sealing: Some(SealingSecret::Passphrase(SecretBytes::new(
                passphrase.as_bytes().to_vec(),
            ))),
        },
        Arc::new(clock()),
    )
}

pub(super) async fn create(backend: &LocalBackend, key: &str) -> KeyMetadata {
    backend
        .create_key(NewKey {
            key_id: id(key),
            description: format!("key {key}"),
            tags: BTreeMap::new(),
        })
        .await
        .unwrap()
}

async fn decrypt(
    backend: &LocalBackend,
    sealed: &[u8],
    context: &EncryptionContext,
) -> Result<Opened, KmsError> {
    let parsed = blob::parse(sealed)?;
    backend.decrypt(&parsed, context).await
}

#[tokio::test]
async fn data_keys_round_trip_and_bind_their_context() {
    let dir = private_dir();
    let backend = open(dir.path(), &clock()).unwrap();
    create(&backend, "k1").await;
    let context = ctx(&[("bucket", "b"), ("object", "o")]);
    let generated = backend
        .generate_data_key(&id("k1"), &context)
        .await
        .unwrap();
    assert_eq!(generated.sealed.key_version, 1);
    let opened = decrypt(&backend, &generated.sealed.blob, &context)
        .await
        .unwrap();
    assert_eq!(
        opened.plaintext.expose_secret(),
        generated.key.expose_secret()
    );

    for other in [
        ctx(&[]),
        ctx(&[("bucket", "b")]),
        ctx(&[("bucket", "b"), ("object", "O")]),
    ] {
        let err = decrypt(&backend, &generated.sealed.blob, &other)
            .await
            .unwrap_err();
        assert!(matches!(err, KmsError::InvalidCiphertext), "{err:?}");
    }
}

#[tokio::test]
async fn every_flipped_bit_is_rejected() {
    let dir = private_dir();
    let backend = open(dir.path(), &clock()).unwrap();
    create(&backend, "k1").await;
    let context = ctx(&[("a", "b")]);
    let sealed = backend
        .encrypt(&id("k1"), b"secret", &context)
        .await
        .unwrap();
    for bit in 0..sealed.blob.len() * 8 {
        let mut bad = sealed.blob.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(
            decrypt(&backend, &bad, &context).await.is_err(),
            "bit {bit}"
        );
    }
    for len in 0..sealed.blob.len() {
        assert!(
            decrypt(&backend, &sealed.blob[..len], &context)
                .await
                .is_err(),
            "len {len}"
        );
    }
}

#[tokio::test]
async fn rotation_keeps_old_versions_decrypting() {
    let dir = private_dir();
    let backend = open(dir.path(), &clock()).unwrap();
    create(&backend, "k1").await;
    let context = ctx(&[]);
    let old = backend.encrypt(&id("k1"), b"v1", &context).await.unwrap();
    let meta = backend.rotate_key(&id("k1")).await.unwrap();
    assert_eq!(meta.current_version, 2);
    assert_eq!(meta.versions.len(), 2);
    let new = backend.encrypt(&id("k1"), b"v2", &context).await.unwrap();
    assert_eq!(new.key_version, 2);
    assert_eq!(
        decrypt(&backend, &old.blob, &context)
            .await
            .unwrap()
            .key_version,
        1
    );
    assert_eq!(
        decrypt(&backend, &new.blob, &context)
            .await
            .unwrap()
            .plaintext
            .expose_secret(),
        b"v2"
    );

    // A blob whose version field is changed opens under the wrong key.
    let mut moved = old.blob.clone();
    let version_at = 5 + 2;
    moved[version_at + 3] = 2;
    assert!(matches!(
        decrypt(&backend, &moved, &context).await,
        Err(KmsError::InvalidCiphertext)
    ));
}

#[tokio::test]
async fn disabled_and_pending_keys_refuse_everything_until_restored() {
    let dir = private_dir();
    let clock = clock();
    let backend = open(dir.path(), &clock).unwrap();
    create(&backend, "k1").await;
    let context = ctx(&[]);
    let sealed = backend.encrypt(&id("k1"), b"x", &context).await.unwrap();

    backend
        .change_state(&id("k1"), StateChange::Disable)
        .await
        .unwrap();
    assert!(matches!(
        backend.generate_data_key(&id("k1"), &context).await,
        Err(KmsError::KeyDisabled(_))
    ));
    assert!(matches!(
        decrypt(&backend, &sealed.blob, &context).await,
        Err(KmsError::KeyDisabled(_))
    ));
    backend
        .change_state(&id("k1"), StateChange::Enable)
        .await
        .unwrap();
    decrypt(&backend, &sealed.blob, &context).await.unwrap();

    let deletion_date = clock.now() + Duration::days(7);
    let meta = backend
        .change_state(&id("k1"), StateChange::ScheduleDeletion { deletion_date })
        .await
        .unwrap();
    assert_eq!(meta.state, KeyState::PendingDeletion);
    assert_eq!(meta.deletion_date, Some(deletion_date));
    assert!(matches!(
        backend.encrypt(&id("k1"), b"x", &context).await,
        Err(KmsError::KeyPendingDeletion { .. })
    ));
    let meta = backend
        .change_state(&id("k1"), StateChange::CancelDeletion)
        .await
        .unwrap();
    assert_eq!((meta.state, meta.deletion_date), (KeyState::Disabled, None));
}

#[tokio::test]
async fn keys_are_destroyed_only_after_their_window() {
    let dir = private_dir();
    let clock = clock();
    let backend = open(dir.path(), &clock).unwrap();
    create(&backend, "doomed").await;
    create(&backend, "kept").await;
    let deletion_date = clock.now() + Duration::days(7);
    backend
        .change_state(
            &id("doomed"),
            StateChange::ScheduleDeletion { deletion_date },
        )
        .await
        .unwrap();

    clock.advance(Duration::days(7) - Duration::seconds(1));
    assert!(
        backend
            .destroy_due_keys(clock.now())
            .await
            .into_result()
            .unwrap()
            .is_empty()
    );
    clock.advance(Duration::seconds(1));
    assert_eq!(
        backend
            .destroy_due_keys(clock.now())
            .await
            .into_result()
            .unwrap(),
        [id("doomed")]
    );
    assert!(matches!(
        backend.describe_key(&id("doomed")).await,
        Err(KmsError::KeyNotFound(_))
    ));
    assert!(!file::key_path(dir.path(), &id("doomed")).exists());
    backend.describe_key(&id("kept")).await.unwrap();

    drop(backend);
    let reopened = open(dir.path(), &clock).unwrap();
    assert!(reopened.describe_key(&id("doomed")).await.is_err());
}

#[tokio::test]
async fn keys_survive_a_restart() {
    let dir = private_dir();
    let clock = clock();
    let backend = open(dir.path(), &clock).unwrap();
    create(&backend, "k1").await;
    backend.rotate_key(&id("k1")).await.unwrap();
    let context = ctx(&[("x", "y")]);
    let sealed = backend.encrypt(&id("k1"), b"kept", &context).await.unwrap();
    let before = backend.describe_key(&id("k1")).await.unwrap();
    drop(backend);

    let backend = open(dir.path(), &clock).unwrap();
    assert_eq!(backend.describe_key(&id("k1")).await.unwrap(), before);
    let opened = decrypt(&backend, &sealed.blob, &context).await.unwrap();
    assert_eq!(opened.plaintext.expose_secret(), b"kept");
}

#[tokio::test]
async fn a_damaged_key_file_takes_down_only_its_key() {
    let dir = private_dir();
    let clock = clock();
    let backend = open(dir.path(), &clock).unwrap();
    create(&backend, "good").await;
    create(&backend, "bad").await;
    drop(backend);
    std::fs::write(file::key_path(dir.path(), &id("bad")), b"{ not json").unwrap();

    let backend = open(dir.path(), &clock).unwrap();
    backend.describe_key(&id("good")).await.unwrap();
    assert!(matches!(
        backend.describe_key(&id("bad")).await,
        Err(KmsError::KeyUnreadable(_))
    ));
    assert!(matches!(
        backend.generate_data_key(&id("bad"), &ctx(&[])).await,
        Err(KmsError::KeyUnreadable(_))
    ));
    // Creating over a damaged key would destroy what an operator may repair.
    assert!(matches!(
        backend
            .create_key(NewKey {
                key_id: id("bad"),
                description: String::new(),
                tags: BTreeMap::new(),
            })
            .await,
        Err(KmsError::KeyAlreadyExists(_))
    ));
}

#[tokio::test]
async fn loose_permissions_refuse_to_start() {
    let dir = private_dir();
    let keys = dir.path().join("keys");
    let clock = clock();
    let backend = open(&keys, &clock).unwrap();
    create(&backend, "k1").await;
    drop(backend);

    let key_file = file::key_path(&keys, &id("k1"));
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = open(&keys, &clock).unwrap_err();
    assert!(
        matches!(&err, LocalError::LoosePermissions { path } if *path == key_file),
        "{err}"
    );
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = open(&keys, &clock).unwrap_err();
    assert!(
        matches!(&err, LocalError::LoosePermissions { path } if *path == keys),
        "{err}"
    );
}

#[tokio::test]
async fn interrupted_writes_are_cleaned_up_not_loaded() {
    let dir = private_dir();
    let clock = clock();
    drop(open(dir.path(), &clock).unwrap());
    let tmp = dir.path().join(".k2.key.0123456789abcdef.tmp");
    std::fs::write(&tmp, b"{").unwrap();
    let backend = open(dir.path(), &clock).unwrap();
    assert!(!tmp.exists());
    assert!(backend.list_keys(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn one_directory_serves_one_process() {
    let dir = private_dir();
    let clock = clock();
    let _first = open(dir.path(), &clock).unwrap();
    assert!(matches!(
        open(dir.path(), &clock),
        Err(LocalError::Locked(_))
    ));
}

#[tokio::test]
async fn listing_pages_in_id_order() {
    let dir = private_dir();
    let backend = open(dir.path(), &clock()).unwrap();
    for k in ["c", "a", "b", "d"] {
        create(&backend, k).await;
    }
    let ids = |keys: Vec<KeyMetadata>| {
        keys.into_iter()
            .map(|k| k.key_id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(backend.list_keys(None, 3).await.unwrap()),
        ["a", "b", "c"]
    );
    assert_eq!(
        ids(backend.list_keys(Some(&id("c")), 3).await.unwrap()),
        ["d"]
    );
}

#[tokio::test]
async fn sealed_directories_hold_no_plaintext_material() {
    let dir = private_dir();
    let backend = open_sealed(dir.path(), "correct horse battery staple").unwrap();
    create(&backend, "k1").await;
    backend.rotate_key(&id("k1")).await.unwrap();
    let context = ctx(&[]);
    let sealed = backend.encrypt(&id("k1"), b"x", &context).await.unwrap();

    // Recover each version's material through the sealer, then look for it
    // in every file of the directory in raw, hex and base64 form.
    let sealer = backend.sealer.as_ref().unwrap();
    let key = backend.key(&id("k1")).unwrap();
    let mut materials = Vec::new();
    for (i, version) in key.versions.iter().enumerate() {
        let Stored::Sealed(bytes) = &version.stored else {
            panic!("a sealed directory stored plaintext material");
        };
        let v = u32::try_from(i + 1).unwrap();
        materials.push(*sealer.open(&id("k1"), v, bytes).unwrap());
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let contents = std::fs::read(entry.unwrap().path()).unwrap();
        for m in &materials {
            assert!(!contents.windows(m.len()).any(|w| w == m));
            for text in [hex::encode(m), B64.encode(m)] {
                assert!(!contents.windows(text.len()).any(|w| w == text.as_bytes()));
            }
        }
    }
    drop((key, backend));

    let err = open_sealed(dir.path(), "wrong").unwrap_err();
    assert!(matches!(err, LocalError::WrongSealingSecret(_)), "{err}");
    assert!(err.to_string().contains("wrong passphrase"));
    let err = open(dir.path(), &clock()).unwrap_err();
    assert!(matches!(err, LocalError::SealedWithoutSecret(_)), "{err}");

    let backend = open_sealed(dir.path(), "correct horse battery staple").unwrap();
    let opened = decrypt(&backend, &sealed.blob, &context).await.unwrap();
    assert_eq!(opened.plaintext.expose_secret(), b"x");
}

#[tokio::test]
async fn sealing_cannot_be_turned_on_over_plaintext_keys() {
    let dir = private_dir();
    let backend = open(dir.path(), &clock()).unwrap();
    create(&backend, "k1").await;
    drop(backend);
    assert!(matches!(
        open_sealed(dir.path(), "pw"),
        Err(LocalError::UnsealedKeysPresent(_))
    ));
}

#[test]
fn a_new_sealing_needs_a_long_passphrase_and_old_parameters_still_open() {
    use super::sealing::{KEY_DIR, MIN_PASSPHRASE_LEN};
    let secret = |p: &str| SealingSecret::Passphrase(SecretBytes::new(p.as_bytes().to_vec()));
    let dir = private_dir();
    let short = "x".repeat(MIN_PASSPHRASE_LEN - 1);
    assert!(matches!(
        Sealer::open_or_init(dir.path(), &secret(&short), false),
        Err(LocalError::WeakPassphrase { .. })
    ));
    assert!(!dir.path().join(".kmsd-sealing.json").exists());

    // A directory sealed with the earlier defaults (19 MiB, 2 passes)
    // keeps its parameters and opens under the new code.
    let old = crate::crypto::Argon2Params {
        m_cost_kib: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };
    let passphrase = "correct horse battery staple";
    Sealer::init_with(dir.path(), &secret(passphrase), &KEY_DIR, old).unwrap();
    let stored = std::fs::read_to_string(dir.path().join(".kmsd-sealing.json")).unwrap();
    assert!(stored.contains("19456"), "{stored}");
    Sealer::open_or_init(dir.path(), &secret(passphrase), true).unwrap();
    // An existing directory opens even with a short passphrase (warned).
    let other = private_dir();
    Sealer::init_with(other.path(), &secret(&short), &KEY_DIR, old).unwrap();
    Sealer::open_or_init(other.path(), &secret(&short), true).unwrap();

    let new = private_dir();
    Sealer::open_or_init(new.path(), &secret(passphrase), false).unwrap();
    let stored = std::fs::read_to_string(new.path().join(".kmsd-sealing.json")).unwrap();
    assert!(
        stored.contains("65536") && stored.contains("\"t_cost\": 3"),
        "{stored}"
    );
}
