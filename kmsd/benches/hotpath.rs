//! Two items of the GenerateDataKey path, each against what it replaced
//! (issue 21, "profile and show before/after per item"), in alternating
//! rounds of one run:
//!
//! - the audit line: `AuditEvent::encode_line` against `serde_json::to_vec`
//!   of the same event (a GenerateDataKey line with a context digest);
//! - a successful backend call's metrics: the series resolved once
//!   (`generate_data_key`) against a `with_label_values` look-up (a call
//!   outside the resolved set, `describe_key`: the same two series, looked
//!   up as every call was before), on one thread and on two at once (the
//!   look-up's lock and reference count are shared cache lines).
//!
//! ```sh
//! cargo bench -p kmsd --bench hotpath
//! KMSD_BENCH_QUICK=1 cargo bench -p kmsd --bench hotpath
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{hint::black_box, time::Instant};

use kmsd::{AuditEvent, Metrics};

fn event() -> AuditEvent<'static> {
    AuditEvent {
        time: "2026-12-06T22:00:00.123456789Z".into(),
        caller: "unix:uid=1000,gid=1000".into(),
        operation: "GenerateDataKey",
        key_id: Some("rustfs-default"),
        key_version: Some(3),
        destination_key_id: None,
        intermediate_key: None,
        destination_intermediate_key: None,
        alias: None,
        context_sha256: Some(
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        ),
        context: None,
        outcome: "ok",
        code: "OK",
        reason: None,
        offline: false,
        duration_us: 41,
    }
}

/// Nanoseconds per call of `f` over `n` calls.
fn per_call(n: u64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Nanoseconds per call of `f` over `n` calls on each of `threads` threads
/// at once (the slowest thread's figure).
fn per_call_on(threads: usize, n: u64, f: impl Fn() + Sync) -> f64 {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| per_call(n, &f)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold(0.0, f64::max)
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let quick = std::env::var_os("KMSD_BENCH_QUICK").is_some();
    let (rounds, n) = if quick { (5, 50_000) } else { (21, 200_000) };
    let event = event();

    let (mut serde, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        serde.push(per_call(n, || {
            let mut line = serde_json::to_vec(black_box(&event)).unwrap();
            line.push(b'\n');
            black_box(line);
        }));
        direct.push(per_call(n, || {
            let mut line = Vec::with_capacity(384);
            black_box(&event).encode_line(&mut line);
            black_box(line);
        }));
    }
    println!("hot path items, {rounds} rounds (medians)");
    println!(
        "audit line: serde_json {:.0} ns, encode_line {:.0} ns ({:.2}×)",
        median(serde.clone()),
        median(direct.clone()),
        median(serde.iter().zip(&direct).map(|(s, d)| d / s).collect())
    );

    let metrics = Metrics::new();
    for threads in [1, 2] {
        let (mut lookup, mut resolved) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            lookup.push(per_call_on(threads, n, || {
                metrics.backend_call("local", black_box("describe_key"), "ok", 1e-6);
            }));
            resolved.push(per_call_on(threads, n, || {
                metrics.backend_call("local", black_box("generate_data_key"), "ok", 1e-6);
            }));
        }
        println!(
            "backend call metrics, {threads} thread(s): with_label_values {:.0} ns, resolved {:.0} ns ({:.2}×)",
            median(lookup.clone()),
            median(resolved.clone()),
            median(lookup.iter().zip(&resolved).map(|(l, r)| r / l).collect())
        );
    }
}
