//! Backup bundles: a round trip opens every old blob, and a wrong secret,
//! a tampered or truncated bundle, and a conflict are refused before
//! anything is written.

use std::{collections::BTreeMap, os::unix::fs::PermissionsExt, sync::Arc};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use kms_core::SecretBytes;

use super::*;
use crate::{
    backend::local::tests::{id, private_dir},
    blob,
    clock::SystemClock,
};

fn open(dir: &Path, sealing: Option<SealingSecret>) -> LocalBackend {
    LocalBackend::open(
        LocalConfig {
            key_dir: dir.to_owned(),
            sealing,
        },
        Arc::new(SystemClock),
    )
    .unwrap()
}

fn key(byte: u8) -> SealingSecret {
    SealingSecret::KeyFile(SecretBytes::new(vec![byte; 32]))
}

async fn create(backend: &LocalBackend, key: &str) {
    backend
        .create_key(NewKey {
            key_id: id(key),
            description: format!("{key} key"),
            tags: BTreeMap::new(),
        })
        .await
        .unwrap();
}

/// A backend with keys `a` (rotated once) and `b`, and a blob under each
/// version.
async fn with_blobs(backend: &LocalBackend) -> Vec<(Vec<u8>, Vec<u8>)> {
    let cx = EncryptionContext::empty();
    create(backend, "a").await;
    create(backend, "b").await;
    let mut blobs = Vec::new();
    for k in ["a", "b", "a"] {
        let plain = format!("secret of {k} {}", blobs.len()).into_bytes();
        let sealed = backend.encrypt(&id(k), &plain, &cx).await.unwrap();
        blobs.push((plain, sealed.blob));
        if blobs.len() == 1 {
            backend.rotate_key(&id("a")).await.unwrap();
        }
    }
    blobs
}

async fn opens_all(backend: &LocalBackend, blobs: &[(Vec<u8>, Vec<u8>)]) {
    let cx = EncryptionContext::empty();
    for (plain, sealed) in blobs {
        let opened = backend
            .decrypt(&blob::parse(sealed).unwrap(), &cx)
            .await
            .unwrap();
        assert_eq!(opened.plaintext.expose_secret(), plain.as_slice());
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_bundle_restores_into_a_new_sealed_directory_and_old_blobs_open() {
    let old_dir = private_dir();
    let old = open(old_dir.path(), None);
    let blobs = with_blobs(&old).await;
    let bundle = old.backup(key(1)).await.unwrap();
    drop(old);
    drop(old_dir);

    let new_dir = private_dir();
    let new = open(new_dir.path(), Some(key(9)));
    let report = new
        .restore(bundle.clone(), key(1), false, OnConflict::Fail)
        .await
        .unwrap();
    assert_eq!(report.keys_in_bundle, 2);
    assert_eq!(report.restored, [id("a"), id("b")]);
    opens_all(&new, &blobs).await;
    let a = new.describe_key(&id("a")).await.unwrap();
    assert_eq!((a.current_version, a.description.as_str()), (2, "a key"));
    // Written to disk, re-sealed under the new directory's secret.
    drop(new);
    let reopened = open(new_dir.path(), Some(key(9)));
    opens_all(&reopened, &blobs).await;
    let text = std::fs::read_to_string(new_dir.path().join("a.key")).unwrap();
    assert!(text.contains("sealed_material") && !text.contains("\"material\""));

    // Again: every key is identical now, so nothing conflicts.
    let again = reopened
        .restore(bundle, key(1), false, OnConflict::Fail)
        .await
        .unwrap();
    assert_eq!(again.identical, [id("a"), id("b")]);
    assert!(again.restored.is_empty());
}

#[tokio::test]
async fn a_passphrase_bundle_opens_with_that_passphrase_only() {
    let dir = private_dir();
    let backend = open(dir.path(), None);
    create(&backend, "a").await;
    let pass = |p: &str| SealingSecret::Passphrase(SecretBytes::new(p.as_bytes().to_vec()));
    let short = backend.backup(pass("short")).await.unwrap_err();
    assert!(short.to_string().contains("shorter than"), "{short}");
    let bundle = backend.backup(pass("correct horse battery")).await.unwrap();
    let target = private_dir();
    let restore = open(target.path(), None);
    let wrong = restore
        .restore(
            bundle.clone(),
            pass("wrong horse battery"),
            false,
            OnConflict::Fail,
        )
        .await
        .unwrap_err();
    assert!(
        wrong.to_string().contains("wrong backup passphrase"),
        "{wrong}"
    );
    // A key file for a passphrase bundle is the wrong secret too.
    let kind = restore
        .restore(bundle.clone(), key(1), false, OnConflict::Fail)
        .await
        .unwrap_err();
    assert!(
        kind.to_string().contains("wrong backup passphrase"),
        "{kind}"
    );
    let report = restore
        .restore(
            bundle,
            pass("correct horse battery"),
            false,
            OnConflict::Fail,
        )
        .await
        .unwrap();
    assert_eq!(report.restored, [id("a")]);
}

#[tokio::test]
async fn tampered_or_truncated_bundles_are_refused_and_nothing_is_written() {
    let dir = private_dir();
    let backend = open(dir.path(), None);
    with_blobs(&backend).await;
    let bundle = backend.backup(key(1)).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&bundle).unwrap();

    let mut payload = B64.decode(json["payload"].as_str().unwrap()).unwrap();
    let last = payload.len() - 1;
    payload[last] ^= 1;
    let mut flipped = json.clone();
    flipped["payload"] = B64.encode(&payload).into();

    let mut fewer = json.clone();
    fewer["manifest"]["entries"].as_array_mut().unwrap().pop();
    fewer["manifest"]["keys"] = 1.into();

    let mut redigested = fewer.clone();
    // The digest an attacker would compute: the manifest's fields in order.
    let manifest: super::bundle::Manifest =
        serde_json::from_value(redigested["manifest"].clone()).unwrap();
    let manifest = serde_json::to_vec(&manifest).unwrap();
    redigested["manifest_sha256"] = hex::encode(crypto::sha256(&manifest)).into();

    let target = private_dir();
    let restore = open(target.path(), None);
    let before = names(target.path());
    let cases = [
        (
            serde_json::to_vec(&flipped).unwrap(),
            "payload does not authenticate",
        ),
        (
            serde_json::to_vec(&fewer).unwrap(),
            "manifest does not match its digest",
        ),
        (
            serde_json::to_vec(&redigested).unwrap(),
            "payload does not authenticate",
        ),
        (bundle[..bundle.len() / 2].to_vec(), "truncated"),
        (Vec::new(), "truncated"),
    ];
    for (bad, expected) in cases {
        for dry_run in [true, false] {
            let err = restore
                .restore(bad.clone(), key(1), dry_run, OnConflict::Skip)
                .await
                .unwrap_err();
            assert!(
                matches!(&err, KmsError::InvalidArgument(m) if m.contains(expected)),
                "{expected}: {err}"
            );
        }
    }
    assert_eq!(names(target.path()), before);
    assert!(restore.list_keys(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_dry_run_reports_and_writes_nothing() {
    let dir = private_dir();
    let backend = open(dir.path(), None);
    with_blobs(&backend).await;
    let bundle = backend.backup(key(1)).await.unwrap();
    let target = private_dir();
    let restore = open(target.path(), None);
    let before = names(target.path());
    let report = restore
        .restore(bundle, key(1), true, OnConflict::Fail)
        .await
        .unwrap();
    assert!(report.dry_run);
    assert_eq!(report.restored, [id("a"), id("b")]);
    assert_eq!(names(target.path()), before);
    assert!(restore.list_keys(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn conflicts_fail_the_restore_or_are_skipped() {
    let dir = private_dir();
    let backend = open(dir.path(), None);
    with_blobs(&backend).await;
    let bundle = backend.backup(key(1)).await.unwrap();

    // The target has its own, different `b` and nothing else.
    let target = private_dir();
    let restore = open(target.path(), None);
    create(&restore, "b").await;
    let err = restore
        .restore(bundle.clone(), key(1), false, OnConflict::Fail)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("(b)"), "{err}");
    assert!(
        restore.describe_key(&id("a")).await.is_err(),
        "nothing restored"
    );

    let report = restore
        .restore(bundle, key(1), false, OnConflict::Skip)
        .await
        .unwrap();
    assert_eq!(
        (report.restored, report.skipped),
        (vec![id("a")], vec![id("b")])
    );
    assert_eq!(
        restore
            .describe_key(&id("a"))
            .await
            .unwrap()
            .current_version,
        2
    );
    assert_eq!(
        restore.describe_key(&id("b")).await.unwrap().description,
        "b key"
    );
    assert!(OnConflict::parse("overwrite").is_err());
}

#[tokio::test]
async fn a_directory_with_an_unreadable_key_is_not_backed_up() {
    let dir = private_dir();
    let backend = open(dir.path(), None);
    create(&backend, "a").await;
    drop(backend);
    std::fs::write(dir.path().join("a.key"), b"{ damaged").unwrap();
    std::fs::set_permissions(
        dir.path().join("a.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let backend = open(dir.path(), None);
    assert!(matches!(
        backend.backup(key(1)).await,
        Err(KmsError::KeyUnreadable(_))
    ));
}

fn alias(s: &str) -> AliasName {
    AliasName::parse(s).unwrap()
}

#[tokio::test]
async fn aliases_travel_with_their_keys_under_the_conflict_policy() {
    use crate::alias::AliasWrite;
    let dir = private_dir();
    let backend = open(dir.path(), None);
    with_blobs(&backend).await;
    for (name, target) in [("alias/photos", "a"), ("alias/logs", "b")] {
        backend
            .put_alias_locally(&alias(name), &id(target), AliasWrite::Create)
            .await
            .unwrap();
    }
    let bundle = backend.backup(key(1)).await.unwrap();
    let text = String::from_utf8(bundle.clone()).unwrap();
    assert!(text.contains("\"aliases\": 2"), "the manifest counts them");

    // Into an empty directory: both aliases, with their dates.
    let fresh_dir = private_dir();
    let fresh = open(fresh_dir.path(), None);
    let report = fresh
        .restore(bundle.clone(), key(1), false, OnConflict::Fail)
        .await
        .unwrap();
    assert_eq!(
        report.aliases_restored,
        [alias("alias/logs"), alias("alias/photos")]
    );
    drop(fresh);
    let fresh = open(fresh_dir.path(), None);
    assert_eq!(
        fresh.resolve_alias_locally(&alias("alias/photos")).unwrap(),
        id("a")
    );
    assert_eq!(
        fresh.list_aliases_locally().unwrap(),
        backend.list_aliases_locally().unwrap()
    );
    let again = fresh
        .restore(bundle.clone(), key(1), false, OnConflict::Fail)
        .await
        .unwrap();
    assert_eq!(again.aliases_identical.len(), 2);
    assert!(again.aliases_restored.is_empty());

    // A directory where `alias/photos` points elsewhere: a conflict.
    let target_dir = private_dir();
    let target = open(target_dir.path(), None);
    create(&target, "c").await;
    target
        .put_alias_locally(&alias("alias/photos"), &id("c"), AliasWrite::Create)
        .await
        .unwrap();
    let err = target
        .restore(bundle.clone(), key(1), false, OnConflict::Fail)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("alias/photos"), "{err}");
    assert!(
        target.describe_key(&id("a")).await.is_err(),
        "nothing restored"
    );
    let report = target
        .restore(bundle, key(1), false, OnConflict::Skip)
        .await
        .unwrap();
    assert_eq!(report.aliases_skipped, [alias("alias/photos")]);
    assert_eq!(report.aliases_restored, [alias("alias/logs")]);
    assert_eq!(
        target
            .resolve_alias_locally(&alias("alias/photos"))
            .unwrap(),
        id("c"),
        "kept"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["aliases_skipped"], serde_json::json!(["alias/photos"]));
}
