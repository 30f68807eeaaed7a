//! A real 3-node OpenBao cluster on integrated storage (Raft), on loopback
//! ports it picks itself: [`RaftCluster::start`] starts three `bao server`
//! processes, initialises the first, joins and unseals the others, waits
//! until autopilot reports `failure_tolerance == 1`, and sets up what
//! kmsd's vault backend expects (Transit at `transit/` with
//! `disable_upsert`, KV v2 at `secret/`, the policy of docs/vault.md as
//! `kmsd`). Per node it offers [`kill`](RaftCluster::kill) (SIGKILL),
//! [`stop`](RaftCluster::stop) (SIGSTOP), [`cont`](RaftCluster::cont),
//! [`seal`](RaftCluster::seal), [`unseal`](RaftCluster::unseal) and
//! [`restart`](RaftCluster::restart), and [`active`](RaftCluster::active)
//! finds the node that leads.
//!
//! Teardown, however the test ends: `Drop` kills every node and removes
//! the directory (a panic unwinds through it); every node also dies with
//! the test process, and a watchdog removes the directory then, so a
//! cluster kept for a whole suite ([`RaftCluster::shared`]), an abort or a
//! killed test binary leave nothing behind (see `process.rs`).
//!
//! Start-up speed (facts in /work/shared/notes/openbao-ha.md, figures
//! printed by every start): `performance_multiplier = 1` makes init and
//! elections take about 2 s instead of 10; autopilot's reconcile interval
//! (10 s by default) paces the promotion of joined non-voters, so it is
//! set to 1 s, with a 1 s server stabilisation time. The explicit
//! `sys/storage/raft/join` is used rather than `retry_join`, whose 2 s
//! retry loop and "unseal only after the challenge" ordering make start-up
//! slower and less predictable.

use std::{
    fs,
    process::{Child, Command},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

mod process;
mod start;

/// Nodes per cluster.
pub const NODES: usize = 3;

/// The deadline of one control call; a frozen node never answers.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a node may take to reach a state (an election, a promotion)
/// on a loaded 2-core machine.
const STATE_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug)]
struct Node {
    api_port: u16,
    cluster_port: u16,
    child: Option<Child>,
    /// SIGSTOPped and not yet continued.
    frozen: bool,
    starts: u32,
}

/// A running 3-node OpenBao Raft cluster; torn down on drop.
#[derive(Debug)]
pub struct RaftCluster {
    dir: tempfile::TempDir,
    nodes: Vec<Mutex<Node>>,
    root_token: String,
    unseal_key: String,
    watchdog: Mutex<Option<Child>>,
}

/// A node's state as `sys/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// 200: the active node.
    Active,
    /// 429: an unsealed standby.
    Standby,
    /// 503: sealed.
    Sealed,
    /// No answer (killed, frozen, or another status).
    Down,
}

impl RaftCluster {
    /// Starts a fresh cluster and waits until it tolerates the loss of
    /// one node. Prints how long each phase took.
    pub async fn start() -> Self {
        let t0 = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("kmsd-raft-")
            .tempdir()
            .expect("a temporary directory");
        let watchdog = process::watchdog(dir.path());
        let mut cluster = Self {
            dir,
            nodes: Vec::new(),
            root_token: String::new(),
            unseal_key: String::new(),
            watchdog: Mutex::new(watchdog),
        };
        for _ in 0..NODES {
            cluster.nodes.push(Mutex::new(Node {
                api_port: 0,
                cluster_port: 0,
                child: None,
                frozen: false,
                starts: 0,
            }));
        }
        for node in 0..NODES {
            cluster.spawn_on_fresh_ports(node).await;
        }
        let (status, init) = cluster
            .try_api(
                0,
                "PUT",
                "sys/init",
                Some(json!({ "secret_shares": 1, "secret_threshold": 1 })),
                None,
            )
            .await;
        assert_eq!(status, 200, "init: {init}\n{}", cluster.log(0));
        cluster.root_token = init["root_token"].as_str().unwrap().to_owned();
        cluster.unseal_key = init["keys_base64"][0].as_str().unwrap().to_owned();
        cluster.unseal(0).await;
        cluster.wait_health(0, |h| h == Health::Active).await;
        let t_active = t0.elapsed();
        // Promote joined nodes soon after they are healthy (default 10 s).
        cluster
            .api(
                "POST",
                "sys/storage/raft/autopilot/configuration",
                Some(json!({ "server_stabilization_time": "1s" })),
            )
            .await;
        let leader = cluster.address(0);
        for node in 1..NODES {
            let (status, answer) = cluster
                .try_api(
                    node,
                    "POST",
                    "sys/storage/raft/join",
                    Some(json!({ "leader_api_addr": leader })),
                    None,
                )
                .await;
            assert_eq!(status, 200, "join node {node}: {answer}");
            cluster.unseal(node).await;
        }
        let t_joined = t0.elapsed();
        cluster.setup_engines().await;
        cluster.wait_failure_tolerance(1).await;
        eprintln!(
            "raft cluster ready in {:.1} s (node 0 active at {:.1} s, others joined and unsealed at {:.1} s); {}",
            t0.elapsed().as_secs_f64(),
            t_active.as_secs_f64(),
            t_joined.as_secs_f64(),
            cluster.addresses().join(" "),
        );
        cluster
    }

    /// One cluster per test binary, started by the first caller, for tests
    /// that neither stop, seal nor kill a node (each should use key names
    /// of its own). It lives until the test process ends (see the module
    /// documentation for how it is torn down then).
    pub async fn shared() -> &'static RaftCluster {
        static SHARED: tokio::sync::OnceCell<RaftCluster> = tokio::sync::OnceCell::const_new();
        SHARED.get_or_init(Self::start).await
    }

    /// `http://127.0.0.1:<api port>` of `node` (0-based).
    pub fn address(&self, node: usize) -> String {
        format!("http://127.0.0.1:{}", self.node(node).api_port)
    }

    /// Every node's address.
    pub fn addresses(&self) -> Vec<String> {
        (0..NODES).map(|n| self.address(n)).collect()
    }

    /// The root token.
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The process id of `node` (0 when it is not running).
    pub fn pid(&self, node: usize) -> u32 {
        self.node(node).child.as_ref().map_or(0, Child::id)
    }

    /// The node that is active now; waits through an election.
    pub async fn active(&self) -> usize {
        let deadline = Instant::now() + STATE_TIMEOUT;
        loop {
            for node in 0..NODES {
                if self.health(node).await == Health::Active {
                    return node;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no node became active:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What `sys/health` of `node` says (a stopped or killed node: Down,
    /// at once).
    pub async fn health(&self, node: usize) -> Health {
        {
            let n = self.node(node);
            if n.frozen || n.child.is_none() {
                return Health::Down;
            }
        }
        let url = format!("{}/v1/sys/health", self.address(node));
        match process::call(&url, "GET", None, None, Duration::from_secs(1))
            .await
            .0
        {
            200 => Health::Active,
            429 => Health::Standby,
            503 => Health::Sealed,
            _ => Health::Down,
        }
    }

    /// SIGKILL `node` and reap it.
    pub fn kill(&self, node: usize) {
        let mut n = self.node(node);
        if let Some(mut child) = n.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        n.frozen = false;
    }

    /// SIGSTOP `node`: it keeps its sockets but answers nothing.
    pub fn stop(&self, node: usize) {
        self.signal(node, "STOP");
        self.node(node).frozen = true;
    }

    /// SIGCONT a stopped `node`.
    pub fn cont(&self, node: usize) {
        self.signal(node, "CONT");
        self.node(node).frozen = false;
    }

    /// Seals `node` (only that node; sealing is not forwarded) and waits
    /// until it reports sealed.
    pub async fn seal(&self, node: usize) {
        let (status, answer) = self
            .try_api(node, "PUT", "sys/seal", None, Some(&self.root_token))
            .await;
        assert!(
            status == 204 || status == 200,
            "seal {node}: {status} {answer}"
        );
        self.wait_health(node, |h| h == Health::Sealed).await;
    }

    /// Unseals `node` and waits until it is a standby or active.
    pub async fn unseal(&self, node: usize) {
        let (status, answer) = self
            .try_api(
                node,
                "PUT",
                "sys/unseal",
                Some(json!({ "key": self.unseal_key })),
                None,
            )
            .await;
        assert_eq!(status, 200, "unseal {node}: {answer}\n{}", self.log(node));
        self.wait_health(node, |h| matches!(h, Health::Active | Health::Standby))
            .await;
    }

    /// Kills `node` if it runs, starts it again on the same ports and data
    /// (it comes back sealed), and unseals it. Call
    /// [`Self::wait_failure_tolerance`] before killing another node.
    pub async fn restart(&self, node: usize) {
        self.kill(node);
        self.start_sealed(node).await;
        self.unseal(node).await;
    }

    /// Kills `node` if it runs and starts it again, leaving it sealed.
    pub async fn start_sealed(&self, node: usize) {
        self.kill(node);
        let deadline = Instant::now() + STATE_TIMEOUT;
        // The ports, or the raft.db lock, may be held for a moment.
        while !self.spawn_and_wait(node).await {
            assert!(
                Instant::now() < deadline,
                "node {node} does not start again:\n{}",
                self.log(node)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.wait_health(node, |h| h == Health::Sealed).await;
    }

    /// Waits until autopilot, asked on the active node, reports at least
    /// `n` for `failure_tolerance`.
    pub async fn wait_failure_tolerance(&self, n: u64) {
        let deadline = Instant::now() + STATE_TIMEOUT;
        loop {
            let active = self.active().await;
            let (_, state) = self
                .try_api(
                    active,
                    "GET",
                    "sys/storage/raft/autopilot/state",
                    None,
                    Some(&self.root_token),
                )
                .await;
            if state["data"]["failure_tolerance"]
                .as_u64()
                .is_some_and(|ft| ft >= n)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "failure_tolerance never reached {n}: {state}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A root-token call on the active node; panics unless it succeeds.
    /// Returns the JSON answer (`null` for an empty one).
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let active = self.active().await;
        let (status, answer) = self
            .try_api(active, method, path, body, Some(&self.root_token))
            .await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} on node {active} answered {status}: {answer}"
        );
        answer
    }

    /// A call on `node` with `token` (none: unauthenticated): the status
    /// (0 when nothing answered) and the JSON answer.
    pub async fn try_api(
        &self,
        node: usize,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}/v1/{path}", self.address(node));
        process::call(&url, method, token, body.as_ref(), CALL_TIMEOUT).await
    }

    /// A token holding only the policy of docs/vault.md.
    pub async fn kmsd_token(&self) -> String {
        let answer = self
            .api(
                "POST",
                "auth/token/create",
                Some(json!({ "policies": ["kmsd"], "ttl": "24h", "no_default_policy": true })),
            )
            .await;
        answer["auth"]["client_token"].as_str().unwrap().to_owned()
    }

    /// A `[backend]` table for kmsd pointed at `node` with `token`.
    pub fn backend_toml(&self, node: usize, token: &str, default_key_id: &str) -> String {
        format!(
            "[backend]\nbackend_type = \"vault\"\naddress = \"{}\"\ndefault_key_id = \"{default_key_id}\"\n[backend.auth_method]\ntoken = \"{token}\"\n",
            self.address(node)
        )
    }

    /// A `[backend]` table for kmsd naming every node, with `token`.
    pub fn all_nodes_backend_toml(&self, token: &str, default_key_id: &str) -> String {
        let list = self
            .addresses()
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "[backend]\nbackend_type = \"vault\"\naddress = [{list}]\ndefault_key_id = \"{default_key_id}\"\n[backend.auth_method]\ntoken = \"{token}\"\n"
        )
    }

    /// Everything `node` printed, across restarts.
    pub fn log(&self, node: usize) -> String {
        let starts = self.node(node).starts;
        (1..=starts)
            .map(|s| fs::read_to_string(self.log_path(node, s)).unwrap_or_default())
            .collect()
    }

    fn logs(&self) -> String {
        (0..NODES)
            .map(|n| format!("--- node {n} ---\n{}", self.log(n)))
            .collect()
    }

    fn node(&self, node: usize) -> MutexGuard<'_, Node> {
        // A panic while holding the lock leaves the data intact.
        self.nodes[node]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn log_path(&self, node: usize, start: u32) -> std::path::PathBuf {
        self.dir.path().join(format!("node{node}.{start}.log"))
    }

    fn signal(&self, node: usize, signal: &str) {
        let pid = self.pid(node);
        assert_ne!(pid, 0, "node {node} is not running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    async fn wait_health(&self, node: usize, done: impl Fn(Health) -> bool) {
        let deadline = Instant::now() + STATE_TIMEOUT;
        loop {
            let health = self.health(node).await;
            if done(health) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {node} stays {health:?}:\n{}",
                self.log(node)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RaftCluster {
    fn drop(&mut self) {
        for node in 0..NODES {
            self.kill(node);
        }
        let watchdog = self
            .watchdog
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(mut child) = watchdog.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
