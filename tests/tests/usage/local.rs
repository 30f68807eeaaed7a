//! The local backend: figures per version on every front end, persisted
//! across a restart, the deletion guard, and a tiny wrap budget.

use std::process::Command;

use kmsd_tests::{
    binary, metrics,
    rest::{AdminClient, with_admin},
};

use super::*;

/// A local kmsd flushing every second, with `[keys]` lines `keys`, the
/// admin REST API and a metrics listener; returns it, the admin port and
/// the metrics port.
async fn start_local(keys: &str) -> (Kmsd, u16, u16) {
    let metrics_port = free_port();
    let base = KmsdOptions {
        extra_toml: format!(
            "[usage]\nflush_interval_secs = 1\n[keys]\n{keys}\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
        ),
        ..KmsdOptions::local()
    };
    let (options, admin_port) = with_admin(base, "admin", "usage test secret 0123456789");
    (Kmsd::start(options).await, admin_port, metrics_port)
}

fn cli(kmsd: &Kmsd, args: &[&str]) -> (bool, serde_json::Value, String) {
    let output = Command::new(binary("kmsd"))
        .args(args)
        .env("KMSD_ENDPOINT", kmsd.endpoint().to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (
        output.status.success(),
        serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_are_counted_shown_persisted_and_guard_deletion() {
    let (mut kmsd, admin_port, metrics_port) = start_local("").await;
    let client = kmsd.client().await;
    create(&client, "used").await;
    create(&client, "idle").await;
    let blobs = wrap(&client, "used", 3).await;
    unwrap_all(&client, &blobs[..2]).await;

    // gRPC: per version and per key.
    let meta = describe(&client, "used").await;
    let v1 = &meta.versions[0];
    assert_eq!((v1.wraps, v1.decrypts), (3, 2), "{meta:?}");
    assert!(v1.last_wrap_at.is_some() && v1.last_decrypt_at.is_some());
    assert_eq!(meta.total_wraps, 3);
    assert!(meta.last_used_at.is_some());
    let idle = describe(&client, "idle").await;
    assert_eq!((idle.total_wraps, idle.last_used_at), (0, None));

    // The impact: used within the window, version 1 still decrypted.
    let answer = impact(&client, "used").await;
    let i = answer.impact.unwrap();
    assert!(i.used_within_window);
    assert_eq!(i.versions_decrypted_within_window, [1]);
    assert_eq!((i.total_wraps, i.total_decrypts), (3, 2));
    assert_eq!(i.window_seconds, 7 * 24 * 3600);

    // REST: the same figures, and the impact on `?impact=true`.
    let admin = AdminClient::new(admin_port, "admin", "usage test secret 0123456789");
    let plain = admin.get("/kms/keys/used").await;
    assert_eq!(plain.status, 200, "{}", plain.text);
    assert_eq!(plain.json["key_metadata"]["versions"][0]["wraps"], 3);
    assert_eq!(plain.json["key_metadata"]["total_wraps"], 3);
    assert!(plain.json.get("impact").is_none());
    let with = admin.get("/kms/keys/used?impact=true").await;
    assert_eq!(with.status, 200, "{}", with.text);
    assert_eq!(with.json["impact"]["used_within_window"], true);
    assert_eq!(with.json["impact"]["versions"][0]["decrypts"], 2);

    // The CLI prints the REST view.
    let (ok, json, stderr) = cli(&kmsd, &["key", "describe", "used", "--impact"]);
    assert!(ok, "{stderr}");
    assert_eq!(json["key_metadata"]["versions"][0]["wraps"], 3);
    assert_eq!(json["impact"]["versions_decrypted_within_window"][0], 1);

    // The guard: refused on every front end unless forced; an unused key
    // is scheduled without force.
    assert_error(
        schedule(&client, "used", false).await,
        Code::FailedPrecondition,
        "KEY_STILL_REFERENCED",
    );
    let refused = admin
        .delete(
            "/kms/keys/delete",
            r#"{"key_id": "used", "pending_window_in_days": 7}"#,
        )
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (409, "KEY_STILL_REFERENCED"),
        "{}",
        refused.text
    );
    let (ok, _, stderr) = cli(&kmsd, &["key", "schedule-deletion", "used", "--days", "7"]);
    assert!(!ok && stderr.contains("KEY_STILL_REFERENCED"), "{stderr}");
    assert_eq!(
        describe(&client, "used").await.state(),
        proto::KeyState::Enabled
    );
    let idle = schedule(&client, "idle", false).await.unwrap();
    assert!(!idle.impact.unwrap().used_within_window);
    let forced = schedule(&client, "used", true).await.unwrap();
    assert_eq!(
        forced.key_metadata.unwrap().state(),
        proto::KeyState::PendingDeletion
    );
    assert_eq!(forced.impact.unwrap().total_wraps, 3);
    rpc(client
        .key_admin()
        .cancel_key_deletion(proto::CancelKeyDeletionRequest {
            key_id: "used".into(),
        })
        .await)
    .unwrap();
    rpc(client
        .key_admin()
        .enable_key(proto::EnableKeyRequest {
            key_id: "used".into(),
        })
        .await)
    .unwrap();

    let text = metrics::scrape(metrics_port).await;
    assert_eq!(
        metrics::series(&text, "kmsd_usage_wraps_total"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metrics::series(&text, "kmsd_deletion_guard_refusals_total"),
        Some(3.0)
    );
    assert_eq!(
        metrics::series(&text, "kmsd_wrap_budget"),
        Some(f64::from(1u32 << 30))
    );
    let logs = kmsd.logs();
    assert!(
        logs.contains("\"operation\":\"ScheduleKeyDeletion\""),
        "{logs}"
    );

    // Persisted: a stop writes the figures, the next start continues.
    kmsd.signal("TERM");
    kmsd.wait_exit(Duration::from_secs(20)).await;
    let file = std::fs::read_to_string(kmsd.dir().join("keys/usage.json")).unwrap();
    assert!(file.contains("\"used\""), "{file}");
    kmsd.respawn();
    kmsd.wait_ready().await;
    let client = kmsd.client().await;
    let meta = describe(&client, "used").await;
    assert_eq!((meta.versions[0].wraps, meta.versions[0].decrypts), (3, 2));
    wrap(&client, "used", 1).await;
    assert_eq!(describe(&client, "used").await.total_wraps, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_wrap_budget_rotates_the_key_once() {
    let (kmsd, _, metrics_port) = start_local("wrap_budget = 5").await;
    let client = kmsd.client().await;
    create(&client, "busy").await;
    let old = wrap(&client, "busy", 5).await;
    let meta = until(&client, "busy", "rotation at the budget", |m| {
        m.current_version == 2
    })
    .await;
    assert!(wraps(&meta, 1) >= 5, "{meta:?}");
    // Below the budget of version 2: no second rotation.
    let new = wrap(&client, "busy", 3).await;
    let meta = describe(&client, "busy").await;
    assert_eq!(
        (meta.current_version, meta.versions.len()),
        (2, 2),
        "{meta:?}"
    );
    assert_eq!(wraps(&meta, 2), 3);
    // Every blob still opens: old ones under version 1.
    unwrap_all(&client, &old).await;
    unwrap_all(&client, &new).await;
    let text = metrics::scrape(metrics_port).await;
    assert_eq!(
        metrics::series(
            &text,
            "kmsd_wrap_budget_rotations_total{result=\"rotated\"}"
        ),
        Some(1.0),
        "{text}"
    );
    let logs = kmsd.logs();
    assert!(
        logs.contains("\"operation\":\"RotateKeyForBudget\""),
        "{logs}"
    );
}
