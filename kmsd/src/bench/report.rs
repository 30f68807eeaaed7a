//! The benchmark's result, as text or JSON.

use std::fmt;

use serde::Serialize;

use super::Load;

/// Requests per second and latency percentiles of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Concurrent callers.
    pub concurrency: usize,
    /// Connections.
    pub connections: usize,
    /// Measured seconds.
    pub duration_secs: f64,
    /// Successful requests.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Requests sent during the warm-up (not measured). With `requests`
    /// and `errors`, everything this run asked of the server, so the
    /// server's CPU time over the whole run can be divided by it.
    pub warmup_requests: u64,
    /// Successful requests per second.
    pub rps: f64,
    /// Latency percentiles in microseconds.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// The slowest request.
    pub max_us: f64,
}

/// The nearest-rank percentile, `per_mille` thousandths (999 = p99.9),
/// in microseconds. Integer arithmetic: 99.9 % of 1000 samples is exactly
/// rank 999, which floating point would round up to 1000.
fn percentile(sorted: &[u64], per_mille: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (per_mille * sorted.len()).div_ceil(1000);
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

impl Report {
    pub(super) fn new(
        mut latencies_ns: Vec<u64>,
        errors: u64,
        warmup_requests: u64,
        load: &Load,
    ) -> Self {
        latencies_ns.sort_unstable();
        let requests = latencies_ns.len() as u64;
        let secs = load.duration.as_secs_f64();
        Self {
            concurrency: load.concurrency,
            connections: load.connections,
            duration_secs: secs,
            requests,
            errors,
            warmup_requests,
            rps: requests as f64 / secs,
            p50_us: percentile(&latencies_ns, 500),
            p90_us: percentile(&latencies_ns, 900),
            p99_us: percentile(&latencies_ns, 990),
            p999_us: percentile(&latencies_ns, 999),
            max_us: latencies_ns.last().map_or(0.0, |l| *l as f64 / 1000.0),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} callers on {} connections for {:.1} s",
            self.concurrency, self.connections, self.duration_secs
        )?;
        writeln!(
            f,
            "  requests  {} ok, {} errors ({} more during the warm-up)",
            self.requests, self.errors, self.warmup_requests
        )?;
        writeln!(f, "  rate      {:.0} requests/s", self.rps)?;
        write!(
            f,
            "  latency   p50 {:.0} µs  p90 {:.0} µs  p99 {:.0} µs  p99.9 {:.0} µs  max {:.0} µs",
            self.p50_us, self.p90_us, self.p99_us, self.p999_us, self.max_us
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted: Vec<u64> = (1..=1000).map(|us| us * 1000).collect();
        assert_eq!(percentile(&sorted, 500), 500.0);
        assert_eq!(percentile(&sorted, 990), 990.0);
        assert_eq!(percentile(&sorted, 999), 999.0);
        assert_eq!(percentile(&[], 500), 0.0);
        assert_eq!(percentile(&[7000], 999), 7.0);
    }
}
