//! Several kmsd sidecars over a real 3-node OpenBao Raft cluster
//! (`kmsd_tests::raft`): the harness itself, failover with every node
//! configured, one truth across sidecars, drift detection between
//! sidecars, and a rolling reconfiguration under load.
//!
//! Tests that leave the cluster as they found it share one
//! ([`RaftCluster::shared`]); a test that kills, stops or seals nodes
//! starts its own.

// Test code: a failed unwrap is a failed test, with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    process::Command,
    time::{Duration, Instant},
};

use kms_client::proto;
use kmsd_tests::{
    Kmsd, KmsdOptions, binary, ctx, free_port,
    raft::{Health, NODES, RaftCluster},
    rest::{self, AdminClient},
};
use serde_json::Value;

mod drift;
mod failover;
mod rolling;
mod sidecars;

/// `kmsd cluster check` over `endpoints`: exit code, JSON, stderr.
fn cluster_check(endpoints: &[String]) -> (i32, Value, String) {
    let mut cmd = Command::new(binary("kmsd"));
    for endpoint in endpoints {
        cmd.args(["--endpoint", endpoint]);
    }
    let output = cmd.args(["cluster", "check"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (
        output.status.code().unwrap_or(-1),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// kmsd as it is today (one Vault address) pointed at the active node of
/// the cluster serves GenerateDataKey and Decrypt, with a token holding
/// only the documented policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kmsd_on_the_active_node_of_a_raft_cluster_serves_the_data_plane() {
    let cluster = RaftCluster::shared().await;
    let token = cluster.kmsd_token().await;
    let active = cluster.active().await;
    let kmsd = Kmsd::start(KmsdOptions {
        backend_toml: Some(cluster.backend_toml(active, &token, "smoke-default")),
        ..KmsdOptions::local()
    })
    .await;
    let client = kmsd.client().await;
    let context = ctx(&[("bucket", "b"), ("object", "o")]);
    let generated = client.generate_data_key(None, &context).await.unwrap();
    let opened = client
        .decrypt(&generated.blob, &context, None)
        .await
        .unwrap();
    assert_eq!(
        opened.plaintext.expose_secret(),
        generated.key.expose_secret()
    );
    // The key lives in the cluster: every node knows it.
    for node in 0..NODES {
        let (status, answer) = cluster
            .try_api(
                node,
                "GET",
                "transit/keys/smoke-default",
                None,
                Some(cluster.root_token()),
            )
            .await;
        assert_eq!(status, 200, "node {node}: {answer}");
    }
}

/// Every per-node operation of the harness does what it says: SIGSTOP and
/// SIGCONT a standby, seal and unseal it, SIGKILL the active node (another
/// takes over) and restart it (sealed until unsealed, then a standby, and
/// the cluster tolerates a failure again). Prints the timings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_stops_seals_kills_and_restarts_nodes() {
    let cluster = RaftCluster::start().await;
    let active = cluster.active().await;
    let standby = (active + 1) % NODES;
    assert_eq!(cluster.health(standby).await, Health::Standby);

    cluster.stop(standby);
    assert_eq!(cluster.health(standby).await, Health::Down);
    // Two of three nodes still make a quorum: writes go through.
    cluster
        .api("POST", "transit/keys/harness-while-stopped", None)
        .await;
    cluster.cont(standby);
    assert_eq!(cluster.health(standby).await, Health::Standby);

    cluster.seal(standby).await;
    let (status, _) = cluster
        .try_api(
            standby,
            "GET",
            "transit/keys/harness-while-stopped",
            None,
            Some(cluster.root_token()),
        )
        .await;
    assert_eq!(status, 503, "a sealed node answers 503");
    cluster.unseal(standby).await;
    cluster.wait_failure_tolerance(1).await;

    let killed_at = Instant::now();
    cluster.kill(active);
    assert_eq!(cluster.health(active).await, Health::Down);
    let new_active = cluster.active().await;
    assert_ne!(new_active, active);
    eprintln!(
        "SIGKILL of node {active}: node {new_active} active after {:.2} s",
        killed_at.elapsed().as_secs_f64()
    );

    let restarted_at = Instant::now();
    cluster.start_sealed(active).await;
    assert_eq!(cluster.health(active).await, Health::Sealed);
    cluster.unseal(active).await;
    cluster.wait_failure_tolerance(1).await;
    eprintln!(
        "restart of node {active}: failure_tolerance 1 again after {:.2} s",
        restarted_at.elapsed().as_secs_f64()
    );
    // Data written before the kill survived on the new leader.
    let key = cluster
        .api("GET", "transit/keys/harness-while-stopped", None)
        .await;
    assert_eq!(key["data"]["name"], "harness-while-stopped");
}
