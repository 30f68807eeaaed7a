//! Failover: kmsd configured with all three nodes of the cluster keeps
//! the data plane whole while the active node is killed (SIGKILL), frozen
//! (SIGSTOP: forwarded requests hang), a standby is sealed and a killed
//! node comes back. A client drives GenerateDataKey + Decrypt at a steady
//! concurrency through kmsd; no call may fail (the client retries
//! transient errors within its deadline, as a real one does). The longest
//! stall and the time until a write (CreateKey) succeeds again are
//! printed, not asserted: the machine is shared. A second kmsd with
//! intermediate keys runs the same load through the same faults.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use kms_client::{KmsClient, RetryPolicy};

use super::*;

/// Calls in flight at once.
const CONCURRENCY: usize = 8;

/// GenerateDataKey + Decrypt in a loop on `CONCURRENCY` tasks, recording
/// when each pair ended and every failure.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<Mutex<Vec<Instant>>>,
    failures: Arc<Mutex<Vec<String>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(client: &KmsClient) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..CONCURRENCY)
            .map(|worker| {
                let (client, stop, done, failures) =
                    (client.clone(), stop.clone(), done.clone(), failures.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let context =
                            ctx(&[("worker", &worker.to_string()), ("n", &n.to_string())]);
                        let result = match client.generate_data_key(None, &context).await {
                            Ok(generated) => client
                                .decrypt(&generated.blob, &context, None)
                                .await
                                .map(|opened| {
                                    assert_eq!(
                                        opened.plaintext.expose_secret(),
                                        generated.key.expose_secret()
                                    );
                                })
                                .map_err(|e| format!("decrypt: {e}")),
                            Err(e) => Err(format!("generate: {e}")),
                        };
                        match result {
                            Ok(()) => done.lock().unwrap().push(Instant::now()),
                            Err(e) => failures.lock().unwrap().push(e),
                        }
                        n += 1;
                    }
                })
            })
            .collect();
        Self {
            stop,
            done,
            failures,
            workers,
        }
    }

    /// The longest time without a completed pair since `since`, and how
    /// many completed.
    fn stall_since(&self, since: Instant) -> (Duration, usize) {
        let done = self.done.lock().unwrap();
        let mut last = since;
        let mut longest = Duration::ZERO;
        let mut count = 0;
        for &t in done.iter().filter(|&&t| t >= since) {
            longest = longest.max(t.saturating_duration_since(last));
            last = last.max(t);
            count += 1;
        }
        (
            longest.max(Instant::now().saturating_duration_since(last)),
            count,
        )
    }

    /// Waits until `n` more pairs completed.
    async fn wait_for(&self, n: usize) {
        let target = self.done.lock().unwrap().len() + n;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.done.lock().unwrap().len() < target {
            assert!(
                Instant::now() < deadline,
                "the load stalled: {:?}",
                self.failures.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }

    async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.unwrap();
        }
        self.failures.lock().unwrap().clone()
    }
}

/// Creates keys (a write: Transit and KV) until one succeeds; how long
/// that took from `since`.
async fn write_resumes(client: &KmsClient, name: &str, since: Instant) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(60);
    for attempt in 0u32.. {
        let result = client
            .key_admin()
            .create_key(proto::CreateKeyRequest {
                key_id: format!("{name}-{attempt}"),
                ..Default::default()
            })
            .await;
        match result {
            Ok(_) => return since.elapsed(),
            Err(e) => assert!(
                Instant::now() < deadline,
                "no write succeeded within 60 s: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}

/// kmsd's status: the node it sends to and every node's health.
async fn nodes(client: &KmsClient) -> (String, String) {
    let status = client
        .admin()
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let settings = status.backend.unwrap().settings;
    (settings["serving_node"].clone(), settings["nodes"].clone())
}

/// Waits until kmsd's status shows every node answering (active or
/// standby), and it sends to the active one.
async fn wait_all_up(client: &KmsClient, cluster: &RaftCluster, kmsd: &Kmsd) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let active = cluster.address(cluster.active().await);
        let (serving, nodes) = nodes(client).await;
        let up = nodes.matches("(active").count() + nodes.matches("(standby").count();
        if up == NODES && serving == active {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "kmsd does not see every node up: serving {serving}, nodes {nodes}\n{}",
            kmsd.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The whole failover story on one cluster, in sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kmsd_on_all_three_nodes_rides_out_kill_freeze_and_seal() {
    let cluster = RaftCluster::start().await;
    let token = cluster.kmsd_token().await;
    let metrics_port = free_port();
    let kmsd = Kmsd::start(KmsdOptions {
        backend_toml: Some(cluster.all_nodes_backend_toml(&token, "failover")),
        extra_toml: format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"),
        ..KmsdOptions::local()
    })
    .await;
    // The client's own deadline and retries, as a real one has them.
    let client = kmsd
        .client_with(|c| {
            c.timeout = Duration::from_secs(10);
            c.retry = RetryPolicy {
                max_attempts: 5,
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(500),
            };
        })
        .await;
    wait_all_up(&client, &cluster, &kmsd).await;
    let text = kmsd_tests::metrics::scrape(metrics_port).await;
    for address in cluster.addresses() {
        assert!(
            text.contains(&format!("kmsd_vault_node_up{{address=\"{address}\"}} 1")),
            "{address}:\n{text}"
        );
    }

    // A second kmsd with intermediate keys: its data plane needs OpenBao
    // once per intermediate key, so it should not even stall.
    let ik = Kmsd::start(KmsdOptions {
        backend_toml: Some(format!(
            "{}[backend.intermediate_key]\nenabled = true\nttl_seconds = 300\n",
            cluster.all_nodes_backend_toml(&token, "failover")
        )),
        ..KmsdOptions::local()
    })
    .await;
    let ik_client = ik
        .client_with(|c| {
            c.timeout = Duration::from_secs(10);
            c.retry = RetryPolicy {
                max_attempts: 5,
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(500),
            };
        })
        .await;

    // Writes are probed with a short deadline of their own, so a write
    // stuck behind the frozen node does not hide when writes resume.
    let writer = kmsd
        .client_with(|c| {
            c.timeout = Duration::from_secs(3);
            c.retry = RetryPolicy::NEVER;
        })
        .await;
    let load = Load::start(&client);
    let ik_load = Load::start(&ik_client);
    load.wait_for(20).await;
    ik_load.wait_for(20).await;

    // SIGKILL of the active node.
    let killed = cluster.active().await;
    let at = Instant::now();
    cluster.kill(killed);
    let write = write_resumes(&writer, "after-kill", at).await;
    load.wait_for(20).await;
    let (stall, calls) = load.stall_since(at);
    eprintln!(
        "SIGKILL of the active node: longest stall {:.2} s over {calls} calls, a write succeeded after {:.2} s, failures {}",
        stall.as_secs_f64(),
        write.as_secs_f64(),
        load.failures().len()
    );
    eprintln!(
        "  with intermediate keys: longest stall {:.2} s, failures {}",
        ik_load.stall_since(at).0.as_secs_f64(),
        ik_load.failures().len()
    );
    let (serving, nodes_seen) = nodes(&client).await;
    assert_ne!(serving, cluster.address(killed), "{nodes_seen}");
    assert!(
        nodes_seen.contains(&format!("{} (down", cluster.address(killed))),
        "{nodes_seen}"
    );

    // The killed node comes back sealed (503), then is unsealed; a standby
    // is sealed meanwhile. kmsd keeps serving and returns to every node.
    cluster.start_sealed(killed).await;
    load.wait_for(10).await;
    cluster.unseal(killed).await;
    cluster.wait_failure_tolerance(1).await;
    let active = cluster.active().await;
    let standby = (0..NODES).find(|&n| n != active).unwrap();
    let at = Instant::now();
    cluster.seal(standby).await;
    let sealed = format!("{} (sealed", cluster.address(standby));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !nodes(&client).await.1.contains(&sealed) {
        assert!(Instant::now() < deadline, "kmsd does not see {sealed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    load.wait_for(20).await;
    let (serving, nodes_seen) = nodes(&client).await;
    assert_ne!(serving, cluster.address(standby), "{nodes_seen}");
    eprintln!(
        "sealed standby: longest stall {:.2} s; kmsd sends to {serving}; {nodes_seen}",
        load.stall_since(at).0.as_secs_f64()
    );
    cluster.unseal(standby).await;
    cluster.wait_failure_tolerance(1).await;
    wait_all_up(&client, &cluster, &kmsd).await;

    // SIGSTOP of the active node: what it was forwarded hangs.
    let frozen = cluster.active().await;
    let at = Instant::now();
    cluster.stop(frozen);
    let write = write_resumes(&writer, "after-stop", at).await;
    load.wait_for(20).await;
    let (stall, calls) = load.stall_since(at);
    eprintln!(
        "SIGSTOP of the active node: longest stall {:.2} s over {calls} calls, a write succeeded after {:.2} s, failures {}",
        stall.as_secs_f64(),
        write.as_secs_f64(),
        load.failures().len()
    );
    eprintln!(
        "  with intermediate keys: longest stall {:.2} s, failures {}",
        ik_load.stall_since(at).0.as_secs_f64(),
        ik_load.failures().len()
    );
    cluster.cont(frozen);
    wait_all_up(&client, &cluster, &kmsd).await;
    load.wait_for(10).await;

    let failures = load.finish().await;
    let ik_failures = ik_load.finish().await;
    assert!(
        ik_failures.is_empty(),
        "{} failed data-plane calls with intermediate keys: {ik_failures:#?}",
        ik_failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed data-plane calls: {failures:#?}",
        failures.len()
    );
}
