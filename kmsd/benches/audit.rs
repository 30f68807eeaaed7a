//! kmsd's audit writers against one `write(2)` per line, at 1, 16 and 64
//! requests in flight, to a file on disk as deployed (issue 21: "measure
//! it against today's per-line write ... including p99 at 1 in flight,
//! which must not regress by more than 10%").
//!
//! - per line (the baseline): `AuditWriter::inline`: each request takes a
//!   mutex over the file and writes its own line on the runtime's worker.
//! - o_append: `AuditWriter::append_only`, what kmsd uses for a file: each
//!   request writes its own line with one `write(2)` to the file opened
//!   with `O_APPEND`, without a lock (the kernel appends each call whole).
//! - thread: `AuditWriter::start`, what kmsd uses for stdout: requests
//!   append to a shared buffer and wait; one writer thread writes each
//!   batch with one call.
//!
//! All run on a two-worker tokio runtime with the same ~330-byte lines,
//! in alternating rounds; each round's figure is lines per second and the
//! p50/p99 of one append, and the printed figure is the median round.
//!
//! ```sh
//! cargo bench -p kmsd --bench audit
//! KMSD_BENCH_QUICK=1 cargo bench -p kmsd --bench audit
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fs::{File, OpenOptions},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use kmsd::{AuditWriter, Metrics};

/// A line the size of a GenerateDataKey audit line with a context digest.
fn line(n: u64) -> Vec<u8> {
    format!(
        "{{\"time\":\"2026-12-06T04:00:00.000000Z\",\"operation\":\"GenerateDataKey\",\"caller\":\"uid:1000\",\"key_id\":\"rustfs-default\",\"key_version\":3,\"outcome\":\"ok\",\"duration_us\":41,\"context_sha256\":\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\",\"request\":{n}}}\n"
    )
    .into_bytes()
}

type Sink = Arc<AuditWriter>;

fn open(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

struct Round {
    lines_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

/// `in_flight` tasks appending for `duration`.
async fn round(sink: &Sink, in_flight: usize, duration: Duration) -> Round {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..in_flight {
        let sink = sink.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = task as u64;
            while Instant::now() < deadline {
                let line = line(n);
                let start = Instant::now();
                sink.append(line).await.unwrap();
                latencies.push(start.elapsed().as_secs_f64() * 1e6);
                n += in_flight as u64;
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let at = |per_mille: usize| all[(all.len() * per_mille / 1000).min(all.len() - 1)];
    Round {
        lines_per_sec: all.len() as f64 / elapsed,
        p50_us: at(500),
        p99_us: at(990),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let quick = std::env::var_os("KMSD_BENCH_QUICK").is_some();
    let (rounds, duration) = if quick {
        (3, Duration::from_millis(500))
    } else {
        (7, Duration::from_secs(2))
    };
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let metrics = Metrics::new();
    let file = |name: &str| Box::new(open(&dir.path().join(name)));
    // The baseline first: every ratio is "÷ per line".
    let writers: [(&str, Sink); 3] = [
        (
            "per line",
            Arc::new(AuditWriter::inline(file("line.jsonl"), metrics.clone())),
        ),
        (
            "o_append",
            Arc::new(AuditWriter::append_only(
                open(&dir.path().join("append.jsonl")),
                metrics.clone(),
            )),
        ),
        (
            "thread",
            Arc::new(AuditWriter::start(file("thread.jsonl"), metrics).unwrap()),
        ),
    ];

    println!(
        "audit writers to a file on disk, {rounds} rounds x {} ms (medians; ratios are medians of per-round ratios to \"per line\")",
        duration.as_millis()
    );
    println!(
        "{:>9} {:>9} {:>12} {:>8} {:>9} {:>9} {:>8}",
        "in flight", "writer", "lines/s", "÷", "p50 µs", "p99 µs", "p99 ÷"
    );
    for in_flight in [1, 16, 64] {
        let mut results: Vec<Vec<Round>> = writers.iter().map(|_| Vec::new()).collect();
        runtime.block_on(async {
            // A warm-up round of each, not counted.
            for (_, sink) in &writers {
                round(sink, in_flight, duration / 4).await;
            }
            for _ in 0..rounds {
                for ((_, sink), results) in writers.iter().zip(&mut results) {
                    results.push(round(sink, in_flight, duration).await);
                }
            }
        });
        let baseline = &results[0];
        for ((name, _), rounds) in writers.iter().zip(&results) {
            let ratio = median(
                rounds
                    .iter()
                    .zip(baseline)
                    .map(|(r, b)| r.lines_per_sec / b.lines_per_sec)
                    .collect(),
            );
            let p99_ratio = median(
                rounds
                    .iter()
                    .zip(baseline)
                    .map(|(r, b)| r.p99_us / b.p99_us)
                    .collect(),
            );
            println!(
                "{in_flight:>9} {name:>9} {:>12.0} {ratio:>7.2}× {:>9.1} {:>9.1} {p99_ratio:>7.2}×",
                median(rounds.iter().map(|r| r.lines_per_sec).collect()),
                median(rounds.iter().map(|r| r.p50_us).collect()),
                median(rounds.iter().map(|r| r.p99_us).collect()),
            );
        }
    }
}
