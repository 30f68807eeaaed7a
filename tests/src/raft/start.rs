//! Starting a node's process, and the engines and policy kmsd expects.

use std::{
    fs,
    time::{Duration, Instant},
};

use kmsd_openbao_testkit::{bao_binary, documented_policy};
use serde_json::json;

use super::{RaftCluster, STATE_TIMEOUT, process};
use crate::free_port;

impl RaftCluster {
    /// Picks ports and starts `node` until one start is not lost to a port
    /// race with another test.
    pub(super) async fn spawn_on_fresh_ports(&self, node: usize) {
        for _ in 0..10 {
            {
                let mut n = self.node(node);
                n.api_port = free_port();
                n.cluster_port = free_port();
            }
            if self.spawn_and_wait(node).await {
                return;
            }
        }
        panic!("node {node} never started:\n{}", self.log(node));
    }

    /// Starts `node`; true once it answers HTTP, false if it exited first.
    pub(super) async fn spawn_and_wait(&self, node: usize) -> bool {
        self.spawn(node);
        let deadline = Instant::now() + STATE_TIMEOUT;
        loop {
            let url = format!("{}/v1/sys/health", self.address(node));
            if process::call(&url, "GET", None, None, Duration::from_secs(1))
                .await
                .0
                != 0
            {
                return true;
            }
            {
                let mut n = self.node(node);
                if let Some(child) = n.child.as_mut()
                    && matches!(child.try_wait(), Ok(Some(_)))
                {
                    n.child = None;
                    return false;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {node} does not answer:\n{}",
                self.log(node)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn spawn(&self, node: usize) {
        let home = self.dir.path().join(format!("node{node}"));
        let data = home.join("data");
        fs::create_dir_all(&data).expect("create the data directory");
        let mut n = self.node(node);
        let config = home.join("bao.hcl");
        fs::write(
            &config,
            format!(
                r#"storage "raft" {{
  path = "{data}"
  node_id = "node{node}"
  performance_multiplier = 1
  autopilot_reconcile_interval = "1s"
  autopilot_update_interval = "500ms"
}}
listener "tcp" {{
  address = "127.0.0.1:{api}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{api}"
cluster_addr = "http://127.0.0.1:{cluster}"
"#,
                data = data.display(),
                api = n.api_port,
                cluster = n.cluster_port,
            ),
        )
        .expect("write the node config");
        n.starts += 1;
        let log = fs::File::create(self.log_path(node, n.starts)).expect("create the node log");
        let child = process::spawn_tied(
            &bao_binary(),
            &["server".into(), format!("-config={}", config.display())],
            &[("HOME", &home)],
            &log,
        )
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bao_binary().display()));
        n.child = Some(child);
        n.frozen = false;
    }

    /// Transit (encrypt never creates keys), KV v2 at `secret/`, and the
    /// documented policy as `kmsd`: what docs/vault.md asks an operator
    /// to set up.
    pub(super) async fn setup_engines(&self) {
        self.api(
            "POST",
            "sys/mounts/transit",
            Some(json!({ "type": "transit" })),
        )
        .await;
        self.api(
            "POST",
            "transit/config/keys",
            Some(json!({ "disable_upsert": true })),
        )
        .await;
        self.api(
            "POST",
            "sys/mounts/secret",
            Some(json!({ "type": "kv", "options": { "version": "2" } })),
        )
        .await;
        self.api(
            "PUT",
            "sys/policies/acl/kmsd",
            Some(json!({ "policy": documented_policy() })),
        )
        .await;
        // A new KV v2 mount answers 400 while it sets itself up.
        let deadline = Instant::now() + STATE_TIMEOUT;
        loop {
            let active = self.active().await;
            let (status, _) = self
                .try_api(
                    active,
                    "GET",
                    "secret/data/kmsd-probe",
                    None,
                    Some(&self.root_token),
                )
                .await;
            if status == 404 {
                return;
            }
            assert!(Instant::now() < deadline, "KV v2 never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
