//! OpenBao killed, sealed and frozen (SIGSTOP), one after the other, under
//! two kmsd: A calls Vault for every data key; B has intermediate keys, so
//! it serves through an outage. A's calls fail fast once Vault is known to
//! be down and recover by themselves; B stays ready (`/health/ready`)
//! throughout while reporting the outage apart (`/health/backend`). The
//! failing calls' latency and the times to recover are printed.

use std::time::{Duration, Instant};

use super::*;

#[derive(Debug, Clone, Copy)]
enum Fault {
    Killed,
    Sealed,
    Stopped,
}

/// How long each fault lasts while A is loaded.
const WINDOW: Duration = Duration::from_secs(3);
/// Callers loading A, each with one request in flight.
const CALLERS: usize = 8;

/// Whether `message` prints a duration as a long fraction of seconds
/// ("9.999999799s") rather than as the docs do ("10s", "1.5s", "250ms").
fn has_raw_duration(message: &str) -> bool {
    let bytes = message.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'.' && i > 0 && bytes[i - 1].is_ascii_digit() {
            let digits = bytes[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if digits > 3 && bytes.get(i + 1 + digits) == Some(&b's') {
                return true;
            }
        }
        i += 1;
    }
    false
}

/// Loads A with GenerateDataKey for `WINDOW`; returns the latencies of
/// the calls that failed (all of them should).
async fn load(a: &KmsClient) -> Vec<Duration> {
    let until = Instant::now() + WINDOW;
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move {
                let mut failed = Vec::new();
                while Instant::now() < until {
                    let started = Instant::now();
                    match a.generate_data_key(None, &ctx(&[])).await {
                        Ok(_) => panic!("a call succeeded while Vault was down"),
                        Err(e) => {
                            assert_eq!(e.code(), Some(tonic::Code::Unavailable), "{e}");
                            assert!(!has_raw_duration(&e.to_string()), "{e}");
                            failed.push(started.elapsed());
                        }
                    }
                }
                failed
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    all
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// Polls `check` every 20 ms until it holds; returns how long that took.
async fn until<F, Fut>(what: &str, check: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} did not happen within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_outages_fail_fast_and_nodes_that_can_serve_stay_ready() {
    let mut bao = OpenBao::persistent().await;
    let (kmsd_a, a_port) = start_on(&bao, "", "").await;
    let (kmsd_b, b_port) = start_on(
        &bao,
        "",
        "[backend.intermediate_key]\nenabled = true\nttl_seconds = 300\n",
    )
    .await;
    let (a, b) = (no_retries(&kmsd_a).await, no_retries(&kmsd_b).await);
    let context = ctx(&[("bucket", "b")]);
    for port in [a_port, b_port] {
        until("ready", || async move {
            health(port, "/health/ready").await == 200
        })
        .await;
    }
    let b_blob = b.generate_data_key(None, &context).await.unwrap();

    for fault in [Fault::Killed, Fault::Sealed, Fault::Stopped] {
        // Both healthy again, with fresh key metadata.
        a.generate_data_key(None, &context).await.unwrap();
        b.generate_data_key(None, &context).await.unwrap();
        until("B healthy", || async {
            health(b_port, "/health/backend").await == 200
        })
        .await;

        match fault {
            Fault::Killed => bao.stop(),
            Fault::Sealed => bao.seal().await,
            Fault::Stopped => bao.signal("STOP"),
        }
        let down = Instant::now();
        // B serves every call through the outage, and stays ready.
        let serving = {
            let b = b.clone();
            let (blob, key, context) = (
                b_blob.blob.clone(),
                b_blob.key.clone_secret(),
                context.clone(),
            );
            tokio::spawn(async move {
                let mut calls = 0;
                while down.elapsed() < WINDOW {
                    let opened = b.decrypt(&blob, &context, None).await.unwrap();
                    assert_eq!(opened.plaintext.expose_secret(), key.expose_secret());
                    b.generate_data_key(None, &context).await.unwrap();
                    assert_eq!(health(b_port, "/health/ready").await, 200);
                    calls += 2;
                }
                calls
            })
        };
        // When A's readiness turns (it cannot serve without Vault).
        let watching = tokio::spawn(async move {
            while health(a_port, "/health/ready").await != 503 {
                assert!(down.elapsed() < Duration::from_secs(30), "A stayed ready");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            down.elapsed()
        });
        let failed = load(&a).await;
        let b_calls = serving.await.unwrap();
        let not_ready = watching.await.unwrap();
        until("B degraded", || async {
            health(b_port, "/health/backend").await == 503
        })
        .await;
        assert_eq!(health(b_port, "/health/ready").await, 200);

        let restored = Instant::now();
        match fault {
            Fault::Killed => {
                bao.restart().await;
                bao.unseal().await;
            }
            Fault::Sealed => bao.unseal().await,
            Fault::Stopped => bao.signal("CONT"),
        }
        let answering = restored.elapsed();
        let recovered = until("A serves again", || async {
            a.generate_data_key(None, &context).await.is_ok()
        })
        .await;
        let ready = until("A ready again", || async {
            health(a_port, "/health/ready").await == 200
        })
        .await;
        until("B healthy again", || async {
            health(b_port, "/health/backend").await == 200
        })
        .await;
        println!(
            "OpenBao {fault:?}: A failed {} calls ({} callers, {:?}): p50 {:?}, p99 {:?}, max {:?}; A not ready after {:?}; B served {b_calls} calls and stayed ready",
            failed.len(),
            CALLERS,
            WINDOW,
            percentile(&failed, 0.5),
            percentile(&failed, 0.99),
            failed.last().unwrap(),
            not_ready,
        );
        println!(
            "OpenBao {fault:?}: back after {answering:?}; A served again {recovered:?} and was ready {ready:?} after that"
        );
    }
}
