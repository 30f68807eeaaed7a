//! EnableKeyRotation, DisableKeyRotation and GetKeyRotationStatus through
//! gRPC, REST and the CLI.

use std::{process::Command, time::Duration};

use kms_client::proto;
use kmsd_tests::{assert_error, binary};
use tonic::Code;

use crate::{Backend, MIN_PERIOD_SECS, next_rotation, now_secs, start};

const DAY: i64 = 86_400;

pub(crate) async fn enable_disable_and_status(backend: Backend) {
    let (node, _openbao) = start(backend).await;
    node.create("r1").await;
    let mut admin = node.client.key_admin();
    let status = || {
        let mut admin = node.client.key_admin();
        async move {
            admin
                .get_key_rotation_status(proto::GetKeyRotationStatusRequest {
                    key_id: "r1".into(),
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let enable = |days: u32| proto::EnableKeyRotationRequest {
        key_id: "r1".into(),
        rotation_period_in_days: days,
        rotation_period_seconds: 0,
    };

    // Off at first.
    let off = status().await;
    assert_eq!(off.key_id, "r1");
    assert!(!off.rotation_enabled);
    assert_eq!(
        (off.rotation_period_in_days, off.rotation_period_seconds),
        (0, 0)
    );
    assert!(off.next_rotation_date.is_none());
    let meta = node.describe("r1").await;
    assert!(!meta.rotation_enabled && meta.next_rotation_date.is_none());

    // No period: AWS's default of 365 days, the first rotation a period
    // from now.
    let before = now_secs();
    let meta = admin
        .enable_key_rotation(enable(0))
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    let next = next_rotation(&meta).unwrap();
    assert!(meta.rotation_enabled);
    assert_eq!(meta.rotation_period_seconds, 365 * 86_400);
    assert!((before + 365 * DAY..=now_secs() + 365 * DAY).contains(&next));
    let on = status().await;
    assert!(on.rotation_enabled);
    assert_eq!(on.rotation_period_in_days, 365);
    assert_eq!(on.rotation_period_seconds, 365 * 86_400);
    assert_eq!(
        on.next_rotation_date.as_ref().map(|t| t.seconds),
        Some(next)
    );

    // The same period again changes nothing; a new one starts from now.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = admin.enable_key_rotation(enable(365)).await.unwrap();
    assert_eq!(
        next_rotation(again.get_ref().key_metadata.as_ref().unwrap()),
        Some(next)
    );
    let meta = admin
        .enable_key_rotation(enable(90))
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    let next90 = next_rotation(&meta).unwrap();
    assert!((now_secs() + 90 * DAY - 5..=now_secs() + 90 * DAY).contains(&next90));
    // DescribeKey shows it.
    let described = node.describe("r1").await;
    assert!(described.rotation_enabled);
    assert_eq!(described.rotation_period_seconds, 90 * 86_400);
    assert_eq!(next_rotation(&described), Some(next90));

    // On-demand rotation stays, and leaves the schedule as it is.
    let rotated = admin
        .rotate_key(proto::RotateKeyRequest {
            key_id: "r1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    assert_eq!(rotated.current_version, 2);
    assert_eq!(next_rotation(&rotated), Some(next90));
    assert_eq!(node.rotations_counted("manual", "ok").await, Some(1.0));
    assert_eq!(node.rotations_counted("schedule", "ok").await, Some(0.0));

    // REST: the status, the describe view, enable and disable.
    let rest = &node.rest;
    let reply = rest.get("/kms/keys/rotation/status?keyId=r1").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["key_id"], "r1");
    assert_eq!(reply.json["rotation_enabled"], true);
    assert_eq!(reply.json["rotation_period_in_days"], 90);
    assert_eq!(reply.json["rotation_period_seconds"], 90 * 86_400);
    assert!(
        reply.json["next_rotation_date"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let reply = rest.get("/kms/keys/r1").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let view = &reply.json["key_metadata"];
    assert_eq!(view["rotation_enabled"], true);
    assert_eq!(view["rotation_period_seconds"], 90 * 86_400);
    assert!(view["next_rotation_date"].is_string());
    let reply = rest
        .post(
            "/kms/keys/rotation/enable",
            r#"{"key_id": "r1", "rotation_period_in_days": 100}"#,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["key_id"], "r1");
    assert_eq!(
        reply.json["key_metadata"]["rotation_period_seconds"],
        100 * 86_400
    );
    let reply = rest
        .post("/kms/keys/rotation/disable", r#"{"key_id": "r1"}"#)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["key_metadata"]["rotation_enabled"], false);
    assert!(reply.json["key_metadata"]["next_rotation_date"].is_null());
    assert!(reply.json["key_metadata"]["rotation_period_seconds"].is_null());
    let reply = rest.get("/kms/keys/rotation/status?key_id=r1").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["rotation_enabled"], false);
    assert!(reply.json["rotation_period_in_days"].is_null());
    assert!(reply.json["next_rotation_date"].is_null());
    // Disabling again is a no-op.
    let meta = admin
        .disable_key_rotation(proto::DisableKeyRotationRequest {
            key_id: "r1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    assert!(!meta.rotation_enabled);
    assert_eq!(meta.current_version, 2);

    // A key pending deletion cannot have rotation enabled; disabling it
    // is allowed.
    admin.enable_key_rotation(enable(90)).await.unwrap();
    admin
        .schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
            key_id: "r1".into(),
            pending_window_in_days: 7,
            // The guard is not under test here.
            force: true,
        })
        .await
        .unwrap();
    let err = assert_error(
        node.client
            .key_admin()
            .enable_key_rotation(enable(90))
            .await
            .map_err(kms_client::Error::from),
        Code::FailedPrecondition,
        "INVALID_KEY_STATE",
    );
    assert!(err.to_string().contains("PendingDeletion"), "{err}");
    let meta = admin
        .disable_key_rotation(proto::DisableKeyRotationRequest {
            key_id: "r1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    assert!(!meta.rotation_enabled);
    // An unknown key.
    assert_error(
        node.client
            .key_admin()
            .get_key_rotation_status(proto::GetKeyRotationStatusRequest {
                key_id: "missing".into(),
            })
            .await
            .map_err(kms_client::Error::from),
        Code::NotFound,
        "KEY_NOT_FOUND",
    );
    let reply = rest.get("/kms/keys/rotation/status?keyId=missing").await;
    assert_eq!(
        (reply.status, reply.code()),
        (404, "KEY_NOT_FOUND"),
        "{}",
        reply.text
    );

    // Every call is audited under its own operation.
    let enables = node.audit("EnableKeyRotation");
    assert_eq!(enables.len(), 6, "{enables:?}");
    assert!(enables.iter().all(|l| l["key_id"] == "r1"));
    assert_eq!(
        enables.iter().filter(|l| l["outcome"] == "error").count(),
        1
    );
    assert_eq!(node.audit("DisableKeyRotation").len(), 3);
    let statuses = node.audit("GetKeyRotationStatus");
    assert_eq!(statuses.len(), 6, "{statuses:?}");
}

pub(crate) async fn bad_periods_are_refused_precisely(backend: Backend) {
    let (node, _openbao) = start(backend).await;
    node.create("r2").await;
    let admin = node.client.key_admin();
    let refused = |days: u32, secs: u64, expected: String| {
        let mut admin = admin.clone();
        async move {
            let err = assert_error(
                admin
                    .enable_key_rotation(proto::EnableKeyRotationRequest {
                        key_id: "r2".into(),
                        rotation_period_in_days: days,
                        rotation_period_seconds: secs,
                    })
                    .await
                    .map_err(kms_client::Error::from),
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            );
            assert!(err.to_string().contains(&expected), "{days}/{secs}: {err}");
        }
    };
    let range = "between 2 seconds (0 days) and 2560 days";
    refused(
        2561,
        0,
        format!("the rotation period is 2561 days; it must be {range}"),
    )
    .await;
    refused(
        0,
        1,
        format!("the rotation period is 1 seconds; it must be {range}"),
    )
    .await;
    refused(0, 2560 * 86_400 + 1, "2560 days".into()).await;
    refused(
        1,
        60,
        "give rotation_period_in_days or rotation_period_seconds, not both".into(),
    )
    .await;
    // Nothing changed.
    assert!(!node.describe("r2").await.rotation_enabled);
    // The limits themselves are accepted.
    node.enable_secs("r2", MIN_PERIOD_SECS).await;
    let meta = node.enable_secs("r2", 2560 * 86_400).await;
    assert_eq!(meta.rotation_period_seconds, 2560 * 86_400);

    // REST: an explicit 0, both units, an unknown field, a bad key id.
    for (body, message) in [
        (
            r#"{"key_id": "r2", "rotation_period_in_days": 0}"#,
            "must be positive",
        ),
        (
            r#"{"key_id": "r2", "rotation_period_in_days": 2561}"#,
            "2561 days",
        ),
        (
            r#"{"key_id": "r2", "rotation_period_in_days": 90, "rotation_period_seconds": 90}"#,
            "not both",
        ),
        (r#"{"key_id": "r2", "period": 90}"#, "period"),
        (r#"{"key_id": "bad id"}"#, ""),
    ] {
        let reply = node.rest.post("/kms/keys/rotation/enable", body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        assert!(
            reply.json["message"].as_str().unwrap().contains(message),
            "{body}: {}",
            reply.text
        );
    }
    let reply = node.rest.get("/kms/keys/rotation/status").await;
    assert_eq!(
        (reply.status, reply.code()),
        (400, "INVALID_ARGUMENT"),
        "{}",
        reply.text
    );
    // Refusals are audited too.
    assert!(node.audit("EnableKeyRotation").len() >= 4);
}

pub(crate) async fn the_cli_manages_rotation(backend: Backend) {
    let (node, _openbao) = start(backend).await;
    node.create("r3").await;
    let endpoint = node.kmsd.endpoint().to_string();
    let cli = |args: &[&str]| {
        let output = Command::new(binary("kmsd"))
            .arg("key")
            .arg("rotation")
            .args(args)
            .env("KMSD_ENDPOINT", &endpoint)
            .output()
            .unwrap();
        let json = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
        (
            output.status.success(),
            json,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, json, stderr) = cli(&["enable", "r3", "--days", "90"]);
    assert!(ok, "{stderr}");
    assert_eq!(json["key_id"], "r3");
    assert_eq!(json["rotation_enabled"], true);
    assert_eq!(json["rotation_period_seconds"], 90 * 86_400);
    let (ok, json, stderr) = cli(&["status", "r3"]);
    assert!(ok, "{stderr}");
    assert_eq!(json["rotation_enabled"], true);
    assert_eq!(json["rotation_period_in_days"], 90);
    assert!(json["next_rotation_date"].as_str().unwrap().ends_with('Z'));
    let (ok, json, stderr) = cli(&["enable", "r3", "--seconds", "3600"]);
    assert!(ok, "{stderr}");
    assert_eq!(json["rotation_period_seconds"], 3600);
    let (ok, json, stderr) = cli(&["disable", "r3"]);
    assert!(ok, "{stderr}");
    assert_eq!(json["rotation_enabled"], false);
    let (ok, json, _) = cli(&["status", "r3"]);
    assert!(ok);
    assert_eq!(json["rotation_enabled"], false);
    assert!(json["next_rotation_date"].is_null());
    // Refusals reach the operator with kmsd's reason.
    let (ok, _, stderr) = cli(&["enable", "r3", "--days", "2561"]);
    assert!(!ok);
    assert!(
        stderr.contains("between 2 seconds (0 days) and 2560 days"),
        "{stderr}"
    );
    let (ok, _, stderr) = cli(&["enable", "r3", "--days", "90", "--seconds", "5"]);
    assert!(!ok);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}
