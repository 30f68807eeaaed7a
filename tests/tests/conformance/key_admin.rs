//! `kms.v1.KeyAdmin`, health and reflection through generated clients.

use std::time::{SystemTime, UNIX_EPOCH};

use kms_client::{KmsClient, proto};
use kmsd_tests::{assert_error, ctx};
use tonic::Code;

use crate::Fixture;

fn rpc<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, kms_client::Error> {
    r.map(tonic::Response::into_inner)
        .map_err(kms_client::Error::from)
}

async fn describe(
    client: &KmsClient,
    key_id: &str,
) -> Result<proto::KeyMetadata, kms_client::Error> {
    rpc(client
        .key_admin()
        .describe_key(proto::DescribeKeyRequest {
            key_id: key_id.into(),
            ..Default::default()
        })
        .await)
    .map(|r| r.key_metadata.expect("metadata"))
}

async fn admin_call(
    client: &KmsClient,
    op: &str,
    key_id: &str,
) -> Result<proto::KeyMetadata, kms_client::Error> {
    let mut admin = client.key_admin();
    let key_id = key_id.to_owned();
    let meta = match op {
        "describe" => {
            rpc(admin
                .describe_key(proto::DescribeKeyRequest {
                    key_id,
                    ..Default::default()
                })
                .await)?
            .key_metadata
        }
        "rotate" => rpc(admin.rotate_key(proto::RotateKeyRequest { key_id }).await)?.key_metadata,
        "enable" => rpc(admin.enable_key(proto::EnableKeyRequest { key_id }).await)?.key_metadata,
        "disable" => {
            rpc(admin.disable_key(proto::DisableKeyRequest { key_id }).await)?.key_metadata
        }
        "schedule" => {
            rpc(admin
                .schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
                    key_id,
                    pending_window_in_days: 0,
                    // The deletion guard (issue 20) is not what this tests.
                    force: true,
                })
                .await)?
            .key_metadata
        }
        "cancel" => {
            rpc(admin
                .cancel_key_deletion(proto::CancelKeyDeletionRequest { key_id })
                .await)?
            .key_metadata
        }
        other => panic!("unknown op {other}"),
    };
    Ok(meta.expect("metadata"))
}

const OPS: [&str; 6] = [
    "describe", "rotate", "enable", "disable", "schedule", "cancel",
];

pub(crate) async fn create_describe_and_list(f: Fixture) {
    let created = rpc(f
        .client
        .key_admin()
        .create_key(proto::CreateKeyRequest {
            key_id: "listed-a".into(),
            description: "first".into(),
            tags: [("team".to_owned(), "storage".to_owned())].into(),
        })
        .await)
    .unwrap()
    .key_metadata
    .unwrap();
    assert_eq!(created.state(), proto::KeyState::Enabled);
    assert_eq!((created.current_version, created.versions.len()), (1, 1));
    assert_eq!(created.description, "first");
    assert_eq!(
        created.tags.get("team").map(String::as_str),
        Some("storage")
    );
    assert_eq!(describe(&f.client, "listed-a").await.unwrap(), created);

    // An id picked by kmsd.
    let random = rpc(f
        .client
        .key_admin()
        .create_key(proto::CreateKeyRequest::default())
        .await)
    .unwrap()
    .key_metadata
    .unwrap();
    assert_eq!(random.key_id.len(), 36, "{}", random.key_id);

    for id in ["listed-b", "listed-c", "listed-d"] {
        rpc(f
            .client
            .key_admin()
            .create_key(proto::CreateKeyRequest {
                key_id: id.into(),
                ..Default::default()
            })
            .await)
        .unwrap();
    }
    // Page through everything two at a time.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = rpc(f
            .client
            .key_admin()
            .list_keys(proto::ListKeysRequest {
                page_size: 2,
                page_token: token,
            })
            .await)
        .unwrap();
        assert!(page.keys.len() <= 2);
        seen.extend(page.keys.into_iter().map(|k| k.key_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "keys come in id order");
    for id in [
        "default",
        "listed-a",
        "listed-b",
        "listed-c",
        "listed-d",
        random.key_id.as_str(),
    ] {
        assert!(seen.iter().any(|s| s == id), "{id} missing from {seen:?}");
    }

    assert_error(
        rpc(f
            .client
            .key_admin()
            .list_keys(proto::ListKeysRequest {
                page_size: 1001,
                page_token: String::new(),
            })
            .await),
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    // Tokens kmsd did not issue: junk, and base64url of any id (which main
    // accepted, answering OK).
    use base64::Engine as _;
    let b64 = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    for token in ["!!".to_owned(), b64("not-a-token"), b64("listed-b")] {
        assert_error(
            rpc(f
                .client
                .key_admin()
                .list_keys(proto::ListKeysRequest {
                    page_size: 0,
                    page_token: token,
                })
                .await),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
    }
}

pub(crate) async fn create_refuses_duplicates_and_reserved_ids(f: Fixture) {
    let create = |key_id: &str, description: String| {
        let mut admin = f.client.key_admin();
        let request = proto::CreateKeyRequest {
            key_id: key_id.into(),
            description,
            tags: Default::default(),
        };
        async move { rpc(admin.create_key(request).await) }
    };
    assert_error(
        create("default", String::new()).await,
        Code::AlreadyExists,
        "KEY_ALREADY_EXISTS",
    );
    assert_error(
        create("kmsd-internal-probe", String::new()).await,
        Code::InvalidArgument,
        "RESERVED_KEY_ID",
    );
    assert_error(
        create("../x", String::new()).await,
        Code::InvalidArgument,
        "INVALID_KEY_ID",
    );
    assert_error(
        create("long-desc", "d".repeat(1025)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

pub(crate) async fn rotation_keeps_old_blobs_decrypting(f: Fixture) {
    let key = f.new_key("rot").await;
    let context = ctx(&[("object", "x")]);
    let mut blobs = Vec::new();
    for expected_version in 1..=3u32 {
        let generated = f
            .client
            .generate_data_key(Some(&key), &context)
            .await
            .unwrap();
        assert_eq!(generated.key_version, expected_version);
        blobs.push(generated);
        let meta = admin_call(&f.client, "rotate", &key).await.unwrap();
        assert_eq!(meta.current_version, expected_version + 1);
        assert_eq!(meta.versions.len() as u32, expected_version + 1);
    }
    for generated in &blobs {
        let opened = f
            .client
            .decrypt(&generated.blob, &context, None)
            .await
            .unwrap();
        assert_eq!(opened.key_version, generated.key_version);
        assert_eq!(
            opened.plaintext.expose_secret(),
            generated.key.expose_secret()
        );
    }
    let newest = f.client.encrypt(Some(&key), b"n", &context).await.unwrap();
    assert_eq!(newest.key_version, 4);
}

pub(crate) async fn disable_and_enable(f: Fixture) {
    let key = f.new_key("dis").await;
    let context = ctx(&[]);
    let blob = f
        .client
        .generate_data_key(Some(&key), &context)
        .await
        .unwrap()
        .blob;
    let meta = admin_call(&f.client, "disable", &key).await.unwrap();
    assert_eq!(meta.state(), proto::KeyState::Disabled);
    // Disabling twice is a no-op, so retries are safe.
    admin_call(&f.client, "disable", &key).await.unwrap();
    assert_error(
        f.client.generate_data_key(Some(&key), &context).await,
        Code::FailedPrecondition,
        "KEY_DISABLED",
    );
    assert_error(
        f.client.encrypt(Some(&key), b"x", &context).await,
        Code::FailedPrecondition,
        "KEY_DISABLED",
    );
    assert_error(
        f.client.decrypt(&blob, &context, None).await,
        Code::FailedPrecondition,
        "KEY_DISABLED",
    );
    assert_error(
        f.client
            .re_encrypt(&blob, &context, Some("default"), None)
            .await,
        Code::FailedPrecondition,
        "KEY_DISABLED",
    );
    let meta = admin_call(&f.client, "enable", &key).await.unwrap();
    assert_eq!(meta.state(), proto::KeyState::Enabled);
    f.client.decrypt(&blob, &context, None).await.unwrap();
}

pub(crate) async fn deletion_window_and_cancel(f: Fixture) {
    let key = f.new_key("del").await;
    let context = ctx(&[]);
    let blob = f
        .client
        .generate_data_key(Some(&key), &context)
        .await
        .unwrap()
        .blob;
    for days in [1u32, 6, 31, 365] {
        assert_error(
            rpc(f
                .client
                .key_admin()
                .schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
                    key_id: key.clone(),
                    pending_window_in_days: days,
                    // The deletion guard (issue 20) is not what this tests.
                    force: true,
                })
                .await),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let meta = rpc(f
        .client
        .key_admin()
        .schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
            key_id: key.clone(),
            pending_window_in_days: 7,
            // The deletion guard (issue 20) is not what this tests.
            force: true,
        })
        .await)
    .unwrap()
    .key_metadata
    .unwrap();
    assert_eq!(meta.state(), proto::KeyState::PendingDeletion);
    let when = meta.deletion_date.expect("a deletion date").seconds;
    assert!(
        (when - (now + 7 * 86_400)).abs() < 60,
        "deletion date {when}, now {now}"
    );

    assert_error(
        f.client.generate_data_key(Some(&key), &context).await,
        Code::FailedPrecondition,
        "KEY_PENDING_DELETION",
    );
    assert_error(
        f.client.decrypt(&blob, &context, None).await,
        Code::FailedPrecondition,
        "KEY_PENDING_DELETION",
    );
    for op in ["enable", "disable", "rotate", "schedule"] {
        assert_error(
            admin_call(&f.client, op, &key).await,
            Code::FailedPrecondition,
            "INVALID_KEY_STATE",
        );
    }

    let meta = admin_call(&f.client, "cancel", &key).await.unwrap();
    assert_eq!(meta.state(), proto::KeyState::Disabled);
    assert!(meta.deletion_date.is_none());
    assert_error(
        admin_call(&f.client, "cancel", &key).await,
        Code::FailedPrecondition,
        "INVALID_KEY_STATE",
    );

    // The default window is 30 days.
    let meta = admin_call(&f.client, "schedule", &key).await.unwrap();
    let when = meta.deletion_date.unwrap().seconds;
    assert!((when - (now + 30 * 86_400)).abs() < 60);
    admin_call(&f.client, "cancel", &key).await.unwrap();
    admin_call(&f.client, "enable", &key).await.unwrap();
    f.client.decrypt(&blob, &context, None).await.unwrap();
}

pub(crate) async fn admin_calls_validate_key_ids(f: Fixture) {
    for op in OPS {
        assert_error(
            admin_call(&f.client, op, "no-such-key").await,
            Code::NotFound,
            "KEY_NOT_FOUND",
        );
        for bad in ["", "../../etc/passwd", "a b"] {
            assert_error(
                admin_call(&f.client, op, bad).await,
                Code::InvalidArgument,
                "INVALID_KEY_ID",
            );
        }
    }
}

/// `meta` without its usage figures (issue 20).
fn without_usage(mut meta: proto::KeyMetadata) -> proto::KeyMetadata {
    meta.last_used_at = None;
    meta.total_wraps = 0;
    for v in &mut meta.versions {
        (v.wraps, v.decrypts, v.last_wrap_at, v.last_decrypt_at) = (0, 0, None, None);
    }
    meta
}

pub(crate) async fn keys_survive_a_restart(mut f: Fixture) {
    let key = f.new_key("persist").await;
    admin_call(&f.client, "rotate", &key).await.unwrap();
    admin_call(&f.client, "disable", &key).await.unwrap();
    admin_call(&f.client, "enable", &key).await.unwrap();
    let context = ctx(&[("a", "b")]);
    let v2 = f
        .client
        .generate_data_key(Some(&key), &context)
        .await
        .unwrap();
    let before = describe(&f.client, &key).await.unwrap();

    f.restart().await;

    // Usage figures are approximate: a kill -9 loses those not yet
    // flushed (tests/tests/usage covers their persistence).
    assert_eq!(
        without_usage(describe(&f.client, &key).await.unwrap()),
        without_usage(before)
    );
    let opened = f.client.decrypt(&v2.blob, &context, None).await.unwrap();
    assert_eq!(opened.plaintext.expose_secret(), v2.key.expose_secret());
    assert_eq!(
        f.client
            .generate_data_key(Some(&key), &context)
            .await
            .unwrap()
            .key_version,
        2
    );
}

pub(crate) async fn health_and_reflection(f: Fixture) {
    let channel = f.client.channel();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for service in ["", "kms.v1.KeyManagement"] {
        loop {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .map(|r| r.into_inner().status());
            if status.as_ref().ok()
                == Some(&tonic_health::pb::health_check_response::ServingStatus::Serving)
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{service:?} never became SERVING: {status:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let status = rpc(f.client.admin().status(proto::StatusRequest {}).await).unwrap();
    assert_eq!(status.state(), proto::ServiceState::Running);
    assert!(status.healthy);
    assert_eq!(status.backend.unwrap().default_key_id, "default");
}
