//! Two kmsd nodes on one OpenBao: each persists its own figures under
//! `_usage/<node name>` and reads the other's, so both show the cluster's
//! figures, the wrap budget counts every node's wraps, and the deletion
//! guard sees a decrypt made on the other node.

use kmsd_openbao_testkit::OpenBao;

use super::*;

/// A node named `node` on `bao`, flushing every second, with a wrap budget
/// of 6.
async fn node(bao: &OpenBao, node: &str) -> Kmsd {
    Kmsd::start(KmsdOptions {
        backend_toml: Some(format!(
            "[backend]\nbackend_type = \"vault\"\naddress = \"{}\"\ndefault_key_id = \"default\"\ncreate_default_key = true\n[backend.auth_method]\ntoken = \"{}\"\n",
            bao.address(),
            bao.root_token()
        )),
        extra_toml: format!(
            "[usage]\nflush_interval_secs = 1\n[keys]\nwrap_budget = 6\n[cluster]\nnode_name = \"{node}\"\n"
        ),
        ..KmsdOptions::local()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_merge_their_figures_share_the_budget_and_the_guard() {
    let bao = OpenBao::dev().await;
    let a = node(&bao, "node-a").await;
    let b = node(&bao, "node-b").await;
    let (ca, cb) = (a.client().await, b.client().await);
    create(&ca, "shared").await;
    create(&ca, "quiet").await;

    let mut blobs = wrap(&ca, "shared", 2).await;
    blobs.extend(wrap(&cb, "shared", 3).await);
    // Each node sees the other's wraps once both flushed.
    until(&ca, "shared", "node a sees 5 wraps", |m| wraps(m, 1) == 5).await;
    until(&cb, "shared", "node b sees 5 wraps", |m| wraps(m, 1) == 5).await;

    // A decrypt on node b is evidence node a's guard sees.
    unwrap_all(&cb, &blobs[..1]).await;
    until(&ca, "shared", "node a sees b's decrypt", |m| {
        m.versions.first().is_some_and(|v| v.decrypts == 1)
    })
    .await;
    let i = impact(&ca, "shared").await.impact.unwrap();
    assert_eq!(i.versions_decrypted_within_window, [1]);
    assert!(i.used_within_window);
    assert_error(
        schedule(&ca, "shared", false).await,
        Code::FailedPrecondition,
        "KEY_STILL_REFERENCED",
    );
    assert!(
        !schedule(&cb, "quiet", false)
            .await
            .unwrap()
            .impact
            .unwrap()
            .used_within_window
    );

    // The sixth wrap, on node a, reaches the budget of 6 over both nodes.
    blobs.extend(wrap(&ca, "shared", 1).await);
    let meta = until(&ca, "shared", "rotation at the budget", |m| {
        m.current_version == 2
    })
    .await;
    assert_eq!(meta.versions.len(), 2, "{meta:?}");
    // Both nodes open every blob, the old ones under version 1.
    unwrap_all(&ca, &blobs).await;
    unwrap_all(&cb, &blobs).await;
    let logs = a.logs();
    assert!(
        logs.contains("\"operation\":\"RotateKeyForBudget\""),
        "{logs}"
    );

    // Forced, the deletion goes through and reports what was seen.
    let forced = schedule(&ca, "shared", true).await.unwrap();
    assert_eq!(
        forced.key_metadata.unwrap().state(),
        proto::KeyState::PendingDeletion
    );
    assert!(forced.impact.unwrap().total_wraps >= 6);
}
