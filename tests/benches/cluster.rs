//! kmsd over a real 3-node OpenBao Raft cluster, against clients that call
//! the cluster directly, in one run (docs/performance.md, "An OpenBao
//! cluster"; `scripts/bench.sh` runs it last):
//!
//! - **Throughput**: `kmsd bench` at 64 in flight, GenerateDataKey through
//!   a kmsd that lists the three nodes (Transit batching as configured by
//!   default) against `transit/datakey/plaintext` called on the active node
//!   directly; the two alternate, and the ratio is of medians.
//! - **Stall during a leader failure**: 16 callers each through kmsd and
//!   directly with one address (a standby that survives, and the node that
//!   fails), every caller with the same deadline and retries. The active
//!   node is SIGKILLed, and in a second event SIGSTOPped; printed per
//!   client: the longest gap between successful calls, p99 of the calls
//!   started during the election, and calls that failed.
//!
//! `cargo bench -p kmsd-tests --bench cluster` (add `KMS_BENCH_QUICK=1`
//! for a smoke run). Figures are printed, never asserted.

// A benchmark, like a test, stops loudly on a broken set-up.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::{
    fs,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use kms_client::{KmsClient, RetryPolicy};
use kmsd_tests::{Kmsd, KmsdOptions, binary, ctx, raft::RaftCluster};
use serde_json::Value;

/// Callers per client in the stall measurement.
const STALL_CALLERS: usize = 16;
/// Every caller's deadline for one call, retries included, as a real
/// storage server would set it.
const DEADLINE: Duration = Duration::from_secs(10);
/// One attempt of a direct caller (kmsd's own is `attempt_timeout_ms`).
const ATTEMPT: Duration = Duration::from_secs(2);
/// The Transit key the direct callers use.
const DIRECT_KEY: &str = "bench-direct";

struct Settings {
    rounds: usize,
    duration: f64,
    warmup: f64,
    /// How long the load runs on after a new node is active.
    after: Duration,
}

fn main() {
    let quick = std::env::var_os("KMS_BENCH_QUICK").is_some();
    let settings = Settings {
        rounds: if quick { 1 } else { 3 },
        duration: if quick { 2.0 } else { 5.0 },
        warmup: if quick { 0.5 } else { 1.0 },
        after: Duration::from_secs(if quick { 1 } else { 3 }),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(&settings));
}

async fn run(settings: &Settings) {
    let cluster = RaftCluster::start().await;
    let token = cluster.kmsd_token().await;
    cluster
        .api("POST", &format!("transit/keys/{DIRECT_KEY}"), None)
        .await;
    let kmsd = Kmsd::start(KmsdOptions {
        backend_toml: Some(cluster.all_nodes_backend_toml(&token, "bench-cluster")),
        extra_toml: "[audit]\noutput = \"{dir}/audit.jsonl\"\n".into(),
        env: vec![("RUST_LOG".into(), "info".into())],
        ..KmsdOptions::local()
    })
    .await;
    let token_file = kmsd.dir().join("root-token");
    fs::write(&token_file, cluster.root_token()).expect("write the token file");

    println!("cluster: 3 OpenBao nodes (Raft), kmsd lists all three");
    throughput(settings, &cluster, &kmsd, &token_file.display().to_string()).await;

    let client = kmsd
        .client_with(|c| {
            c.timeout = DEADLINE;
            c.retry = RetryPolicy {
                max_attempts: 5,
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(500),
            };
        })
        .await;
    for event in [Event::Kill, Event::Stop] {
        stall(settings, &cluster, &client, event).await;
    }
}

/// `kmsd bench --json` with `args`; its report.
fn kmsd_bench(settings: &Settings, endpoint: Option<&str>, args: &[&str]) -> Value {
    let mut command = Command::new(binary("kmsd"));
    if let Some(endpoint) = endpoint {
        command.args(["--endpoint", endpoint]);
    }
    let output = command
        .args(["bench", "--json"])
        .args(["--duration", &settings.duration.to_string()])
        .args(["--warmup", &settings.warmup.to_string()])
        .args(args)
        .output()
        .expect("kmsd bench runs");
    assert!(
        output.status.success(),
        "kmsd bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("kmsd bench --json prints JSON")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn throughput(settings: &Settings, cluster: &RaftCluster, kmsd: &Kmsd, token_file: &str) {
    let active = cluster.address(cluster.active().await);
    let endpoint = format!("unix:{}", kmsd.socket().display());
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    for round in 1..=settings.rounds {
        let d = kmsd_bench(
            settings,
            None,
            &[
                "--openbao-addr",
                &active,
                "--openbao-token-file",
                token_file,
                "--key-id",
                DIRECT_KEY,
                "-c",
                "64",
            ],
        );
        let k = kmsd_bench(settings, Some(&endpoint), &["-c", "64", "-m", "4"]);
        for (name, report) in [("openbao-active-direct", &d), ("kmsd-3-nodes", &k)] {
            println!(
                "  round {round}/{} {name:<22} {:>8.0} req/s  p50 {:>6.0} µs  p99 {:>6.0} µs  errors {}",
                settings.rounds,
                report["rps"].as_f64().unwrap_or(0.0),
                report["p50_us"].as_f64().unwrap_or(0.0),
                report["p99_us"].as_f64().unwrap_or(0.0),
                report["errors"]
            );
        }
        direct.push(d["rps"].as_f64().unwrap_or(0.0));
        through.push(k["rps"].as_f64().unwrap_or(0.0));
    }
    let (direct, through) = (median(direct), median(through));
    println!(
        "cluster GenerateDataKey, 64 in flight: kmsd {through:.0} req/s, OpenBao active node direct {direct:.0} req/s, ratio {:.2}",
        through / direct
    );
}

#[derive(Clone, Copy, PartialEq)]
enum Event {
    Kill,
    Stop,
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Event::Kill => "SIGKILL",
            Event::Stop => "SIGSTOP",
        }
    }
}

/// One call: when it started and ended, and whether it succeeded.
#[derive(Clone, Copy)]
struct Call {
    start: Instant,
    end: Instant,
    ok: bool,
}

/// Callers driving one client until stopped.
struct Load {
    name: String,
    calls: Arc<Mutex<Vec<Call>>>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start<F, Fut>(name: String, call: F) -> Self
    where
        F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = bool> + Send,
    {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..STALL_CALLERS)
            .map(|worker| {
                let (call, calls, stop) = (call.clone(), calls.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let start = Instant::now();
                        let ok = call(worker, n).await;
                        let end = Instant::now();
                        calls
                            .lock()
                            .expect("not poisoned")
                            .push(Call { start, end, ok });
                        n += 1;
                        if !ok {
                            // A failed call already spent its deadline.
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        Self {
            name,
            calls,
            stop,
            workers,
        }
    }

    async fn finish(self) -> (String, Vec<Call>) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            let _ = worker.await;
        }
        let calls = self.calls.lock().expect("not poisoned").clone();
        (self.name, calls)
    }
}

/// A direct caller: `transit/datakey/plaintext` on one address, each
/// attempt bounded by [`ATTEMPT`], retried with the same back-off as the
/// kmsd client's within [`DEADLINE`].
#[derive(Clone)]
struct Direct {
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
    token: Arc<str>,
}

impl Direct {
    fn new(address: &str, token: &str) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            client,
            url: format!("{address}/v1/transit/datakey/plaintext/{DIRECT_KEY}"),
            token: token.into(),
        }
    }

    async fn attempt(&self) -> bool {
        let request = http::Request::post(&self.url)
            .header("x-vault-token", &*self.token)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .expect("a valid request");
        let answer = tokio::time::timeout(ATTEMPT, async {
            let response = self.client.request(request).await.ok()?;
            let ok = response.status().is_success();
            response.into_body().collect().await.ok()?;
            Some(ok)
        })
        .await;
        matches!(answer, Ok(Some(true)))
    }

    async fn call(&self) -> bool {
        let deadline = Instant::now() + DEADLINE;
        let mut delay = Duration::from_millis(50);
        loop {
            if self.attempt().await {
                return true;
            }
            if Instant::now() + delay >= deadline {
                return false;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }
}

/// The longest time without a successful call in `[from, to]`.
fn longest_gap(calls: &[Call], from: Instant, to: Instant) -> Duration {
    let mut ends: Vec<Instant> = calls
        .iter()
        .filter(|c| c.ok && c.end >= from && c.end <= to)
        .map(|c| c.end)
        .collect();
    ends.sort();
    let mut last = from;
    let mut longest = Duration::ZERO;
    for end in ends {
        longest = longest.max(end - last);
        last = end;
    }
    longest.max(to.saturating_duration_since(last))
}

/// p99 of the calls started in `[from, to]`, and how many there were.
fn p99_started(calls: &[Call], from: Instant, to: Instant) -> (Option<Duration>, usize) {
    let mut latencies: Vec<Duration> = calls
        .iter()
        .filter(|c| c.start >= from && c.start <= to)
        .map(|c| c.end - c.start)
        .collect();
    latencies.sort();
    let n = latencies.len();
    let p99 = (n > 0).then(|| latencies[(n * 99).div_ceil(100) - 1]);
    (p99, n)
}

async fn stall(settings: &Settings, cluster: &RaftCluster, client: &KmsClient, event: Event) {
    cluster.wait_failure_tolerance(1).await;
    let failing = cluster.active().await;
    let survivor = (0..kmsd_tests::raft::NODES)
        .find(|&n| n != failing)
        .expect("three nodes");
    let root = cluster.root_token().to_owned();
    let kmsd_client = client.clone();
    let loads = vec![
        Load::start("kmsd (3 addresses)".into(), move |worker, n| {
            let client = kmsd_client.clone();
            async move {
                let context = ctx(&[("worker", &worker.to_string()), ("n", &n.to_string())]);
                client.generate_data_key(None, &context).await.is_ok()
            }
        }),
        direct_load(
            "direct, one standby address",
            cluster.address(survivor),
            &root,
        ),
        direct_load(
            "direct, the failing node's address",
            cluster.address(failing),
            &root,
        ),
    ];
    tokio::time::sleep(Duration::from_secs(2)).await;

    let at = Instant::now();
    match event {
        Event::Kill => cluster.kill(failing),
        Event::Stop => cluster.stop(failing),
    }
    let elected = loop {
        let now = cluster.active().await;
        if now != failing {
            break Instant::now();
        }
    };
    tokio::time::sleep(settings.after).await;
    let end = Instant::now();
    let mut results = Vec::new();
    for load in loads {
        results.push(load.finish().await);
    }
    println!(
        "cluster {} of the active node: new active node after {:.2} s",
        event.name(),
        (elected - at).as_secs_f64()
    );
    for (name, calls) in &results {
        let gap = longest_gap(calls, at, end);
        let (p99, n) = p99_started(calls, at, elected);
        let failed = calls.iter().filter(|c| !c.ok && c.start >= at).count();
        let p99 = p99.map_or("n/a".into(), |p| format!("{:.0} ms", p.as_secs_f64() * 1e3));
        println!(
            "  {name:<36} longest gap {:.2} s, p99 of {n} calls started during the election {p99}, failed {failed}",
            gap.as_secs_f64()
        );
    }
    match event {
        Event::Kill => cluster.restart(failing).await,
        Event::Stop => cluster.cont(failing),
    }
}

fn direct_load(name: &str, address: String, token: &str) -> Load {
    let direct = Direct::new(&address, token);
    Load::start(name.into(), move |_, _| {
        let direct = direct.clone();
        async move { direct.call().await }
    })
}
