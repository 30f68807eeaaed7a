//! The consistent backup procedure of docs/operations.md: stop, copy the
//! key and state directories, and restore them after losing both.

use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use kms_client::proto;
use kmsd_tests::{Kmsd, KmsdOptions, ctx, private_dir};

/// Copies `from` into `to` recursively, keeping modes.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    fs::set_permissions(to, fs::metadata(from).unwrap().permissions()).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

#[tokio::test]
async fn the_documented_consistent_backup_restores() {
    let mut options = KmsdOptions::local();
    options.server_toml = "state_dir = \"{dir}/state\"".into();
    options.backend_toml = Some(
        "[backend]\nbackend_type = \"local\"\nkey_dir = \"{dir}/keys\"\ndefault_key_id = \"default\"\n[backend.sealing]\npassphrase_file = \"{dir}/passphrase\"\n".into(),
    );
    let probe = private_dir();
    // The harness picks the directory when it spawns: the first start fails
    // for want of the passphrase, which is then put in place.
    let mut kmsd = Kmsd::spawn_only(options);
    let passphrase = kmsd.dir().join("passphrase");
    fs::write(&passphrase, "correct horse battery staple\n").unwrap();
    fs::set_permissions(&passphrase, fs::Permissions::from_mode(0o600)).unwrap();
    kmsd.restart().await;
    let client = kmsd.client().await;
    let context = ctx(&[("bucket", "photos")]);
    let before = client.generate_data_key(None, &context).await.unwrap();
    client
        .key_admin()
        .rotate_key(proto::RotateKeyRequest {
            key_id: "default".into(),
        })
        .await
        .unwrap();
    let after = client.generate_data_key(None, &context).await.unwrap();

    // While kmsd serves, the directory is locked; `kmsd admin stop`
    // releases it, so `flock --nonblock` (here: try_lock) proves the copy
    // is consistent.
    let lock = fs::File::open(kmsd.dir().join("keys/.kmsd.lock")).unwrap();
    assert!(
        lock.try_lock().is_err(),
        "kmsd holds the key directory's lock"
    );
    client.admin().stop(proto::StopRequest {}).await.unwrap();
    lock.try_lock().expect("admin stop releases the lock");
    let backup = probe.path().join("backup");
    copy_tree(&kmsd.dir().join("keys"), &backup.join("keys"));
    copy_tree(&kmsd.dir().join("state"), &backup.join("state"));
    lock.unlock().unwrap();
    client.admin().start(proto::StartRequest {}).await.unwrap();
    drop(client);

    // Disaster: the key directory is lost. Restore to the same paths.
    kmsd.kill9();
    fs::remove_dir_all(kmsd.dir().join("keys")).unwrap();
    fs::remove_dir_all(kmsd.dir().join("state")).unwrap();
    copy_tree(&backup.join("keys"), &kmsd.dir().join("keys"));
    copy_tree(&backup.join("state"), &kmsd.dir().join("state"));
    kmsd.respawn();
    kmsd.wait_ready().await;
    let client = kmsd.client().await;
    // The copy was taken while Stopped, and says so (as documented).
    let status = client
        .admin()
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.state, proto::ServiceState::Stopped as i32);
    client.admin().start(proto::StartRequest {}).await.unwrap();
    for key in [&before, &after] {
        let opened = client.decrypt(&key.blob, &context, None).await.unwrap();
        assert_eq!(
            opened.plaintext.expose_secret(),
            key.key.expose_secret().as_slice(),
            "a blob from before the backup opens from the restored copy"
        );
    }
}
