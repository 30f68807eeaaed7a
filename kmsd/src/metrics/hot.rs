//! The series of the data plane's successful backend calls, resolved once.
//!
//! A `with_label_values` look-up hashes the labels, takes a read lock and
//! clones the series (an atomic reference count): cache lines that every
//! worker shares and bounces on every request (issue 21). These few series
//! are found by comparing short strings instead.

use std::sync::Arc;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

/// Backends and data-plane operations resolved ahead.
const BACKENDS: [&str; 2] = ["local", "vault"];
const OPERATIONS: [&str; 3] = ["generate_data_key", "encrypt", "decrypt"];

#[derive(Debug)]
struct HotBackendCall {
    backend: &'static str,
    operation: &'static str,
    ok: IntCounter,
    latency: Histogram,
}

/// `kmsd_backend_operations_total{outcome="ok"}` and the latency series of
/// the data plane's backend calls.
#[derive(Debug, Clone)]
pub(super) struct HotBackendCalls(Arc<[HotBackendCall]>);

impl HotBackendCalls {
    pub(super) fn new(ops: &IntCounterVec, latency: &HistogramVec) -> Self {
        Self(
            BACKENDS
                .iter()
                .flat_map(|backend| OPERATIONS.iter().map(move |op| (*backend, *op)))
                .map(|(backend, operation)| HotBackendCall {
                    backend,
                    operation,
                    ok: ops.with_label_values(&[backend, operation, "ok"]),
                    latency: latency.with_label_values(&[backend, operation]),
                })
                .collect(),
        )
    }

    /// Records a successful call if its series is here; false otherwise.
    pub(super) fn record(&self, backend: &str, operation: &str, seconds: f64) -> bool {
        match self
            .0
            .iter()
            .find(|hot| hot.operation == operation && hot.backend == backend)
        {
            Some(hot) => {
                hot.ok.inc();
                hot.latency.observe(seconds);
                true
            }
            None => false,
        }
    }
}
