//! Keys read on first use: what a reopened directory serves, and that a
//! first read never loses a write that raced it.

use std::{collections::BTreeMap, time::Instant};

use kms_core::SecretBytes;
use time::Duration;

use super::*;
use crate::{
    backend::local::tests::{clock, create, id, private_dir},
    blob,
    clock::ManualClock,
};

/// Opens `dir`, which must open.
fn open(dir: &Path, clock: &ManualClock) -> LocalBackend {
    crate::backend::local::tests::open(dir, clock).unwrap()
}

/// The state of `key`'s cell without reading it.
fn state(backend: &LocalBackend, key: &str) -> &'static str {
    match &*backend.keys.cell(&id(key)).unwrap().value().load_full() {
        Entry::Unloaded => "unloaded",
        Entry::Listed(_) => "listed",
        Entry::Ready(_) => "ready",
        Entry::Unreadable => "unreadable",
    }
}

async fn round_trip(backend: &LocalBackend, key: &str) -> Result<u32, KmsError> {
    let context = EncryptionContext::empty();
    let generated = backend.generate_data_key(&id(key), &context).await?;
    let opened = backend
        .decrypt(&blob::parse(&generated.sealed.blob)?, &context)
        .await?;
    assert_eq!(
        opened.plaintext.expose_secret(),
        generated.key.expose_secret()
    );
    Ok(opened.key_version)
}

#[tokio::test]
async fn a_key_is_read_on_first_use_and_serves_as_before() {
    let dir = private_dir();
    let clock = clock();
    let backend = open(dir.path(), &clock);
    create(&backend, "a").await;
    create(&backend, "b").await;
    let context = EncryptionContext::empty();
    let old = backend.encrypt(&id("a"), b"old", &context).await.unwrap();
    drop(backend);

    let backend = open(dir.path(), &clock);
    assert_eq!(state(&backend, "a"), "unloaded");
    assert_eq!(state(&backend, "b"), "unloaded");
    let meta = backend.describe_key(&id("a")).await.unwrap();
    assert_eq!(meta.description, "key a");
    assert_eq!(state(&backend, "a"), "listed", "metadata only");
    assert_eq!(
        state(&backend, "b"),
        "unloaded",
        "only the key used is read"
    );
    assert_eq!(round_trip(&backend, "a").await.unwrap(), 1);
    assert_eq!(state(&backend, "a"), "ready");
    let opened = backend
        .decrypt(&blob::parse(&old.blob).unwrap(), &context)
        .await
        .unwrap();
    assert_eq!(opened.plaintext.expose_secret(), b"old");
    // GenerateDataKey as the first use of a key, and CreateKey over an
    // unread key (refused without reading it).
    assert_eq!(round_trip(&backend, "b").await.unwrap(), 1);
    assert!(matches!(
        backend
            .create_key(NewKey {
                key_id: id("a"),
                description: String::new(),
                tags: BTreeMap::new(),
            })
            .await,
        Err(KmsError::KeyAlreadyExists(_))
    ));
}

#[tokio::test]
async fn a_damaged_file_is_unreadable_only_once_used_and_the_others_serve() {
    let dir = private_dir();
    let clock = clock();
    let backend = open(dir.path(), &clock);
    for key in ["a", "b", "c"] {
        create(&backend, key).await;
    }
    drop(backend);
    fs::write(file::key_path(dir.path(), &id("b")), b"{ damaged").unwrap();

    let backend = open(dir.path(), &clock);
    assert_eq!(state(&backend, "b"), "unloaded", "opening reads no file");
    round_trip(&backend, "a").await.unwrap();
    assert!(matches!(
        round_trip(&backend, "b").await,
        Err(KmsError::KeyUnreadable(_))
    ));
    assert_eq!(state(&backend, "b"), "unreadable");
    assert!(matches!(
        backend.describe_key(&id("b")).await,
        Err(KmsError::KeyUnreadable(_))
    ));
    round_trip(&backend, "c").await.unwrap();
    let listed: Vec<KeyId> = backend
        .list_keys(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.key_id)
        .collect();
    assert_eq!(listed, [id("a"), id("c")]);
}

/// A read that started before a rotation and finishes after it must not
/// install the version it read over the rotated key.
#[tokio::test]
async fn a_stale_first_read_never_overwrites_a_rotation() {
    let dir = private_dir();
    let clock = clock();
    let backend = open(dir.path(), &clock);
    create(&backend, "k").await;
    drop(backend);

    let backend = open(dir.path(), &clock);
    let cell = backend.keys.cell(&id("k")).unwrap();
    let seen = cell.value().load_full();
    let stale = backend.read_key(&id("k"));
    assert_eq!(
        backend.rotate_key(&id("k")).await.unwrap().current_version,
        2
    );
    let now = install(cell.value(), &seen, stale);
    let Entry::Ready(key) = &*now else {
        panic!("the key is readable");
    };
    assert_eq!(key.meta.current_version, 2, "the rotation stands");
    assert_eq!(round_trip(&backend, "k").await.unwrap(), 2);
}

/// Many first uses race rotations of the same keys on several threads:
/// every rotation counts, in memory and on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_reads_racing_rotations_and_creates_lose_nothing() {
    let dir = private_dir();
    let clock = clock();
    let backend = open(dir.path(), &clock);
    let keys: Vec<String> = (0..16).map(|n| format!("k{n:02}")).collect();
    for key in &keys {
        create(&backend, key).await;
    }
    drop(backend);

    let backend = Arc::new(open(dir.path(), &clock));
    let mut tasks = Vec::new();
    for key in &keys {
        for _ in 0..3 {
            let (b, k) = (Arc::clone(&backend), key.clone());
            tasks.push(tokio::spawn(async move {
                round_trip(&b, &k).await.unwrap();
            }));
        }
        let (b, k) = (Arc::clone(&backend), key.clone());
        tasks.push(tokio::spawn(async move {
            b.rotate_key(&id(&k)).await.unwrap();
        }));
        let (b, k) = (Arc::clone(&backend), key.clone());
        tasks.push(tokio::spawn(async move {
            create(&b, &format!("{k}-new")).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for key in &keys {
        let meta = backend.describe_key(&id(key)).await.unwrap();
        assert_eq!(meta.current_version, 2, "{key}");
        backend
            .describe_key(&id(&format!("{key}-new")))
            .await
            .unwrap();
    }
    drop(backend);
    let backend = open(dir.path(), &clock);
    assert_eq!(backend.list_keys(None, 100).await.unwrap().len(), 32);
    for key in &keys {
        assert_eq!(round_trip(&backend, key).await.unwrap(), 2);
    }
}

/// A listing that installs a key's metadata while a first use is reading
/// it must not leave the use without the material.
#[tokio::test]
async fn a_listing_landing_during_a_first_read_does_not_fail_the_use() {
    let dir = private_dir();
    let clock = clock();
    let backend = open(dir.path(), &clock);
    create(&backend, "k").await;
    drop(backend);

    let backend = open(dir.path(), &clock);
    let cell = backend.keys.cell(&id("k")).unwrap();
    let mut first = true;
    let now = load_with(cell.value(), || {
        if std::mem::take(&mut first) {
            backend.list_cell(&id("k"), cell.value());
            assert_eq!(state(&backend, "k"), "listed");
        }
        backend.read_key(&id("k"))
    });
    assert!(matches!(*now, Entry::Ready(_)));
    assert_eq!(state(&backend, "k"), "ready");
}

/// Listings (which install metadata only) race first uses (which need
/// the material) of the same unread keys on several threads: every use
/// succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_racing_first_uses_never_fail_a_use() {
    let dir = private_dir();
    let clock = clock();
    let backend = open(dir.path(), &clock);
    let keys: Vec<String> = (0..64).map(|n| format!("k{n:02}")).collect();
    for key in &keys {
        create(&backend, key).await;
    }
    drop(backend);
    for _ in 0..5 {
        let backend = Arc::new(open(dir.path(), &clock));
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let b = Arc::clone(&backend);
            tasks.push(tokio::spawn(async move {
                assert_eq!(b.list_keys(None, 100).await.unwrap().len(), 64);
            }));
        }
        for half in [0, 1] {
            let (b, keys) = (Arc::clone(&backend), keys.clone());
            tasks.push(tokio::spawn(async move {
                for key in keys.iter().skip(half).step_by(2) {
                    round_trip(&b, key).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    }
}

#[tokio::test]
async fn list_keys_pages_across_unread_keys_in_id_order_reading_only_its_page() {
    let dir = private_dir();
    let clock = clock();
    let backend = open(dir.path(), &clock);
    let keys: Vec<String> = (0..25).rev().map(|n| format!("k{n:02}")).collect();
    for key in &keys {
        create(&backend, key).await;
    }
    drop(backend);
    fs::write(file::key_path(dir.path(), &id("k10")), b"{ damaged").unwrap();

    let backend = open(dir.path(), &clock);
    let first = backend.list_keys(None, 7).await.unwrap();
    assert_eq!(first.len(), 7);
    assert_eq!(first[6].key_id, id("k06"));
    assert_eq!(state(&backend, "k06"), "listed", "metadata only");
    assert_eq!(state(&backend, "k07"), "unloaded", "past the page");
    let mut listed: Vec<KeyId> = first.into_iter().map(|k| k.key_id).collect();
    while let Some(last) = listed.last().cloned() {
        let page = backend.list_keys(Some(&last), 7).await.unwrap();
        if page.is_empty() {
            break;
        }
        listed.extend(page.into_iter().map(|k| k.key_id));
    }
    let mut expected: Vec<KeyId> = keys.iter().filter(|k| *k != "k10").map(|k| id(k)).collect();
    expected.sort();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn sweeps_read_unread_keys_and_act_on_them() {
    let dir = private_dir();
    let clock = clock();
    let backend = open(dir.path(), &clock);
    create(&backend, "doomed").await;
    create(&backend, "kept").await;
    let schedule = crate::backend::rotation::RotationSchedule::starting(
        clock.now(),
        std::time::Duration::from_secs(60),
    );
    crate::backend::rotation::Rotation::set_rotation(&backend, &id("kept"), Some(schedule))
        .await
        .unwrap();
    let deletion_date = clock.now() + Duration::days(7);
    backend
        .change_state(
            &id("doomed"),
            StateChange::ScheduleDeletion { deletion_date },
        )
        .await
        .unwrap();
    drop(backend);

    clock.advance(Duration::days(7));
    let backend = open(dir.path(), &clock);
    let due = crate::backend::rotation::Rotation::keys_due_for_rotation(&backend, clock.now())
        .await
        .unwrap();
    assert_eq!(due, [id("kept")]);
    assert_eq!(
        state(&backend, "kept"),
        "listed",
        "a sweep keeps no material"
    );
    let destroyed = backend
        .destroy_due_keys(clock.now())
        .await
        .into_result()
        .unwrap();
    assert_eq!(destroyed, [id("doomed")]);
    assert!(!file::key_path(dir.path(), &id("doomed")).exists());
}

/// A sealed directory costs one KDF at open; reading its keys afterwards
/// unseals each with the KEK already derived (an AEAD open, no KDF).
#[tokio::test]
async fn a_sealed_directory_is_read_lazily_after_one_kdf() {
    let dir = private_dir();
    let sealed = || {
        LocalBackend::open(
            LocalConfig {
                key_dir: dir.path().to_owned(),
                sealing: Some(SealingSecret::Passphrase(SecretBytes::new(
                    b"correct horse battery staple".to_vec(),
                ))),
            },
            Arc::new(clock()),
        )
        .unwrap()
    };
    let backend = sealed();
    let keys: Vec<String> = (0..20).map(|n| format!("s{n:02}")).collect();
    for key in &keys {
        create(&backend, key).await;
    }
    drop(backend);
    // A version whose sealed material is altered does not unseal.
    let path = file::key_path(dir.path(), &id("s13"));
    let text = fs::read_to_string(&path).unwrap();
    let start = text.find("\"sealed_material\": \"").unwrap() + 20;
    let flipped = if &text[start..=start] == "A" {
        "B"
    } else {
        "A"
    };
    fs::write(
        &path,
        format!("{}{flipped}{}", &text[..start], &text[start + 1..]),
    )
    .unwrap();

    let started = Instant::now();
    let backend = sealed();
    let open_took = started.elapsed();
    assert!(keys.iter().all(|k| state(&backend, k) == "unloaded"));
    let started = Instant::now();
    for key in &keys {
        let result = round_trip(&backend, key).await;
        if key == "s13" {
            assert!(matches!(result, Err(KmsError::KeyUnreadable(_))));
        } else {
            result.unwrap();
        }
    }
    // A KDF per key would make reading 20 keys take 20 opens.
    assert!(
        started.elapsed() < open_took,
        "reading took {:?}, the open {open_took:?}",
        started.elapsed()
    );
    let Entry::Ready(key) = &*backend.entry(&id("s00")).unwrap() else {
        panic!("s00 is readable");
    };
    assert!(matches!(key.versions[0].stored, Stored::Sealed(_)));
}
