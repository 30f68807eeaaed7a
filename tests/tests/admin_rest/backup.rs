//! Backup and restore of the local backend against the real binary: a
//! bundle from `POST /kms/backup` restored by `kmsd key restore` into a new
//! key directory opens every old blob in a new kmsd; `POST /kms/restore`
//! refuses wrong passphrases, tampered bundles and conflicts, and its dry
//! run changes nothing.

use std::{fs, os::unix::fs::PermissionsExt, path::Path, process::Output};

use super::*;

const PASSPHRASE: &str = "backup passphrase of the test";

fn kmsd_cli(args: &[&str]) -> Output {
    Command::new(binary("kmsd"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run kmsd")
}

fn key_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".key"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn restore_body(bundle: &serde_json::Value, passphrase: &str, extra: &str) -> String {
    format!(r#"{{"passphrase": "{passphrase}", "bundle": {bundle}{extra}}}"#)
}

#[tokio::test]
async fn a_backup_restored_into_a_new_directory_opens_every_old_blob() {
    let mut old_options = KmsdOptions::local();
    old_options.extra_toml = "[audit]\noutput = \"{dir}/audit.log\"\n".into();
    let (mut old, admin) = start(old_options).await;
    let client = old.client().await;
    let keys = client.key_admin();
    for id in ["app", "logs"] {
        let mut keys = keys.clone();
        keys.create_key(kms_client::proto::CreateKeyRequest {
            key_id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    // Storage servers name `alias/photos`: it must survive the restore.
    keys.clone()
        .create_alias(kms_client::proto::CreateAliasRequest {
            alias_name: "alias/photos".into(),
            target_key_id: "app".into(),
        })
        .await
        .unwrap();
    let mut blobs = Vec::new();
    for (round, key) in [None, Some("app"), Some("logs"), Some("app")]
        .into_iter()
        .enumerate()
    {
        let plain = format!("object {round}").into_bytes();
        let sealed = client
            .encrypt(key, &plain, &ctx(&[("bucket", "b")]))
            .await
            .unwrap();
        blobs.push((plain, sealed.blob));
        if round == 1 {
            let mut keys = keys.clone();
            keys.rotate_key(kms_client::proto::RotateKeyRequest {
                key_id: "app".into(),
            })
            .await
            .unwrap();
        }
    }

    // No secret, or a short passphrase: refused before anything is read.
    expect(
        &admin.post("/kms/backup", "{}").await,
        400,
        "INVALID_ARGUMENT",
    );
    expect(
        &admin
            .post("/kms/backup", r#"{"passphrase": "short"}"#)
            .await,
        400,
        "INVALID_ARGUMENT",
    );
    let bundle = ok(
        admin
            .post(
                "/kms/backup",
                &format!(r#"{{"passphrase": "{PASSPHRASE}"}}"#),
            )
            .await,
        200,
    );
    assert_eq!(bundle["format"], "kmsd-backup-v1");
    assert_eq!(bundle["manifest"]["keys"], 3, "default, app, logs");
    assert_eq!(bundle["manifest"]["versions"], 4);
    assert_eq!(bundle["manifest"]["aliases"], 1);
    assert!(
        !bundle.to_string().contains("\"material\""),
        "no material outside the sealed payload"
    );
    let audit = fs::read_to_string(old.dir().join("audit.log")).unwrap();
    assert!(
        audit.contains("\"operation\":\"Backup\""),
        "an audit line for the backup:\n{audit}"
    );

    // The old node is gone with its keys.
    let work = private_dir();
    let bundle_path = work.path().join("bundle.json");
    fs::write(&bundle_path, bundle.to_string()).unwrap();
    let pass_path = work.path().join("passphrase");
    fs::write(&pass_path, format!("{PASSPHRASE}\n")).unwrap();
    fs::set_permissions(&pass_path, fs::Permissions::from_mode(0o600)).unwrap();
    old.kill9();
    fs::remove_dir_all(old.dir().join("keys")).unwrap();

    // The CLI restores into a new directory: a dry run first.
    let new_dir = work.path().join("keys");
    fs::create_dir(&new_dir).unwrap();
    fs::set_permissions(&new_dir, fs::Permissions::from_mode(0o700)).unwrap();
    let restore = |extra: &[&str]| {
        let mut args = vec![
            "key",
            "restore",
            "--key-dir",
            new_dir.to_str().unwrap(),
            "--passphrase-file",
            pass_path.to_str().unwrap(),
            "--bundle",
            bundle_path.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        kmsd_cli(&args)
    };
    let dry = restore(&["--dry-run"]);
    assert!(dry.status.success(), "{dry:?}");
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(
        report["restored"],
        serde_json::json!(["app", "default", "logs"])
    );
    assert_eq!(
        report["aliases_restored"],
        serde_json::json!(["alias/photos"])
    );
    assert!(key_files(&new_dir).is_empty(), "a dry run writes nothing");
    assert!(!new_dir.join("aliases.json").exists());
    let real = restore(&[]);
    assert!(real.status.success(), "{real:?}");
    assert_eq!(key_files(&new_dir), ["app.key", "default.key", "logs.key"]);
    assert_eq!(report["keys_in_bundle"], 3, "not kmsd's reserved probe key");

    // A new kmsd on the restored directory opens every old blob.
    let new = Kmsd::start(KmsdOptions {
        backend_toml: Some(format!(
            "[backend]\nbackend_type = \"local\"\nkey_dir = \"{}\"\ndefault_key_id = \"default\"\n",
            new_dir.display()
        )),
        ..KmsdOptions::local()
    })
    .await;
    let client = new.client().await;
    for (plain, blob) in &blobs {
        let opened = client
            .decrypt(blob, &ctx(&[("bucket", "b")]), None)
            .await
            .unwrap();
        assert_eq!(opened.plaintext.expose_secret(), plain.as_slice());
    }
    // And new writes through the restored alias go to its key.
    let through_alias = client
        .encrypt(
            Some("alias/photos"),
            b"new object",
            &ctx(&[("bucket", "b")]),
        )
        .await
        .unwrap();
    assert_eq!(through_alias.key_id, "app");

    // The CLI refuses a directory a kmsd serves.
    let busy = restore(&["--dry-run"]);
    assert!(!busy.status.success());
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(
        stderr.contains("in use by another kmsd") && stderr.contains("/kms/restore"),
        "{busy:?}"
    );
}

#[tokio::test]
async fn the_restore_route_verifies_the_bundle_and_honours_conflicts() {
    let (_old, old_admin) = start(KmsdOptions::local()).await;
    ok(
        old_admin.post("/kms/keys", r#"{"key_id": "app"}"#).await,
        201,
    );
    let bundle = ok(
        old_admin
            .post(
                "/kms/backup",
                &format!(r#"{{"passphrase": "{PASSPHRASE}"}}"#),
            )
            .await,
        200,
    );

    // A new node: its own `default` differs from the bundle's.
    let (new, admin) = start(KmsdOptions::local()).await;
    let keys_dir = new.dir().join("keys");
    let default_before = fs::read(keys_dir.join("default.key")).unwrap();

    let wrong = admin
        .post(
            "/kms/restore",
            &restore_body(&bundle, "not the backup passphrase", ""),
        )
        .await;
    expect(&wrong, 400, "INVALID_ARGUMENT");
    assert!(
        wrong.text.contains("wrong backup passphrase"),
        "{}",
        wrong.text
    );

    let mut tampered = bundle.clone();
    tampered["manifest"]["entries"][0]["current_version"] = 7.into();
    let refused = admin
        .post("/kms/restore", &restore_body(&tampered, PASSPHRASE, ""))
        .await;
    expect(&refused, 400, "INVALID_ARGUMENT");
    assert!(refused.text.contains("altered"), "{}", refused.text);

    let mut truncated = bundle.clone();
    let payload = truncated["payload"].as_str().unwrap().to_owned();
    truncated["payload"] = payload[..payload.len() / 2].into();
    expect(
        &admin
            .post("/kms/restore", &restore_body(&truncated, PASSPHRASE, ""))
            .await,
        400,
        "INVALID_ARGUMENT",
    );

    // The default key conflicts: "fail" (the default) restores nothing.
    let conflict = admin
        .post("/kms/restore", &restore_body(&bundle, PASSPHRASE, ""))
        .await;
    expect(&conflict, 400, "INVALID_ARGUMENT");
    assert!(conflict.text.contains("(default)"), "{}", conflict.text);

    // A dry run says what "skip" would do, and writes nothing.
    let dry = ok(
        admin
            .post(
                "/kms/restore",
                &restore_body(
                    &bundle,
                    PASSPHRASE,
                    r#", "dry_run": true, "on_conflict": "skip""#,
                ),
            )
            .await,
        200,
    );
    assert_eq!(dry["restored"], serde_json::json!(["app"]));
    assert_eq!(dry["skipped"], serde_json::json!(["default"]));
    assert!(
        !keys_dir.join("app.key").exists(),
        "a dry run writes nothing"
    );
    assert_eq!(
        fs::read(keys_dir.join("default.key")).unwrap(),
        default_before
    );
    expect(&admin.get("/kms/keys/app").await, 404, "KEY_NOT_FOUND");

    let done = ok(
        admin
            .post(
                "/kms/restore",
                &restore_body(&bundle, PASSPHRASE, r#", "on_conflict": "skip""#),
            )
            .await,
        200,
    );
    assert_eq!(done["restored"], serde_json::json!(["app"]));
    ok(admin.get("/kms/keys/app").await, 200);
    // Again: `app` is identical now and is left alone.
    let again = ok(
        admin
            .post(
                "/kms/restore",
                &restore_body(&bundle, PASSPHRASE, r#", "on_conflict": "skip""#),
            )
            .await,
        200,
    );
    assert_eq!(again["identical"], serde_json::json!(["app"]));
}
