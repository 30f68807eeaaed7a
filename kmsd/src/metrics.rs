//! Prometheus metrics. Label values come from closed sets (operations,
//! gRPC codes, backends, states): never a key id or anything a caller
//! controls, so the series count is bounded.
//!
//! The per-request series are resolved once at startup, so recording a
//! request is two atomic adds and a histogram observation, with no label
//! hashing on the hot path.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tonic::Code;

use crate::{fingerprint::ConfigFingerprint, lifecycle::ServiceState, request::Operation};

/// Latency buckets from 50 µs (a local wrap) to 10 s (a stuck backend).
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

const CODES: [Code; 17] = [
    Code::Ok,
    Code::Cancelled,
    Code::Unknown,
    Code::InvalidArgument,
    Code::DeadlineExceeded,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unimplemented,
    Code::Internal,
    Code::Unavailable,
    Code::DataLoss,
    Code::Unauthenticated,
];

/// The canonical upper-case name of a gRPC code.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

const STATES: [ServiceState; 5] = [
    ServiceState::NotConfigured,
    ServiceState::Configured,
    ServiceState::Running,
    ServiceState::Stopped,
    ServiceState::Error,
];

/// Every metric kmsd exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `requests[op][code]`.
    requests: Vec<Vec<IntCounter>>,
    latency: Vec<Histogram>,
    /// Requests being served now.
    pub in_flight: IntGauge,
    backend_ops: IntCounterVec,
    backend_latency: HistogramVec,
    /// The data plane's successful backend calls, found without
    /// `with_label_values`.
    hot_backend_calls: hot::HotBackendCalls,
    cache_lookups: IntCounterVec,
    cache_entries: IntGaugeVec,
    cache_evictions: IntCounterVec,
    state: IntGaugeVec,
    keys: IntGaugeVec,
    /// Seconds the Vault token has left; -1 when no credential expires.
    pub vault_token_ttl: IntGauge,
    /// Whether the last self-probe succeeded (1) or not (0).
    pub probe_success: IntGauge,
    /// When the self-probe last succeeded (Unix seconds).
    pub probe_last_success: IntGauge,
    /// How long self-probes take.
    pub probe_duration: Histogram,
    breaker_open: IntGaugeVec,
    /// 1 while the backend cannot be reached or its self-probe fails, even
    /// if kmsd still serves (readiness is separate).
    pub backend_degraded: IntGauge,
    /// Audit lines written.
    pub audit_events: IntCounter,
    /// Audit lines that could not be written.
    pub audit_errors: IntCounter,
    config_info: IntGaugeVec,
    vault_node_up: IntGaugeVec,
    vault_node_serving: IntGaugeVec,
    reloads: IntCounterVec,
    // Automatic rotation.
    key_rotations: IntCounterVec,
    key_imports: IntCounterVec,
    /// Usage figures (issue 20).
    pub usage: usage::UsageMetrics,
}

/// Creates metrics in one registry. Invariant: every name below is
/// registered once, with valid names and labels, so neither definition nor
/// registration can fail.
#[derive(Clone, Copy)]
struct Define<'r>(&'r Registry);

impl Define<'_> {
    fn register<T: prometheus::core::Collector + Clone + 'static>(self, metric: T) -> T {
        self.0
            .register(Box::new(metric.clone()))
            .unwrap_or_else(|e| unreachable!("metric registration: {e}"));
        metric
    }

    fn counter(self, name: &str, help: &str) -> IntCounter {
        self.register(
            IntCounter::with_opts(Opts::new(name, help))
                .unwrap_or_else(|e| unreachable!("metric definition: {e}")),
        )
    }

    fn gauge(self, name: &str, help: &str) -> IntGauge {
        self.register(
            IntGauge::with_opts(Opts::new(name, help))
                .unwrap_or_else(|e| unreachable!("metric definition: {e}")),
        )
    }

    /// A histogram with [`LATENCY_BUCKETS`].
    fn histogram(self, name: &str, help: &str) -> Histogram {
        self.register(
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()))
                .unwrap_or_else(|e| unreachable!("metric definition: {e}")),
        )
    }

    fn counter_vec(self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(
            IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("metric definition: {e}")),
        )
    }

    fn gauge_vec(self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(
            IntGaugeVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("metric definition: {e}")),
        )
    }

    /// A histogram family with [`LATENCY_BUCKETS`].
    fn histogram_vec(self, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
        self.register(
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .unwrap_or_else(|e| unreachable!("metric definition: {e}")),
        )
    }
}

/// The per-request series, resolved once: `requests[op][code]` and
/// `latency[op]`.
fn request_series(define: Define<'_>) -> (Vec<Vec<IntCounter>>, Vec<Histogram>) {
    let requests = define.counter_vec(
        "kmsd_requests_total",
        "Requests served, by operation and gRPC status code.",
        &["operation", "code"],
    );
    let latency = define.histogram_vec(
        "kmsd_request_duration_seconds",
        "Time to serve a request, by operation.",
        &["operation"],
    );
    let requests = Operation::ALL
        .iter()
        .map(|op| {
            CODES
                .iter()
                .map(|code| requests.with_label_values(&[op.as_str(), code_name(*code)]))
                .collect()
        })
        .collect();
    let latency = Operation::ALL
        .iter()
        .map(|op| latency.with_label_values(&[op.as_str()]))
        .collect();
    (requests, latency)
}

/// `kmsd_build_info`: one series, set once.
fn build_info(define: Define<'_>) {
    define
        .gauge_vec(
            "kmsd_build_info",
            "Always 1; the labels say which kmsd this is.",
            &["version"],
        )
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let define = Define(&registry);
        let (requests, latency) = request_series(define);
        build_info(define);
        let backend_ops = define.counter_vec(
            "kmsd_backend_operations_total",
            "Calls from kmsd to its backend, by backend, operation and outcome (ok, or the error reason).",
            &["backend", "operation", "outcome"],
        );
        let backend_latency = define.histogram_vec(
            "kmsd_backend_operation_duration_seconds",
            "Time a backend call takes, by backend and operation.",
            &["backend", "operation"],
        );
        let metrics = Self {
            requests,
            latency,
            in_flight: define.gauge("kmsd_requests_in_flight", "Requests being served now."),
            hot_backend_calls: hot::HotBackendCalls::new(&backend_ops, &backend_latency),
            backend_ops,
            backend_latency,
            cache_lookups: define.counter_vec(
                "kmsd_cache_lookups_total",
                "Cache lookups, by cache and result (hit, miss, stale).",
                &["cache", "result"],
            ),
            cache_entries: define.gauge_vec("kmsd_cache_entries", "Entries held, by cache.", &["cache"]),
            cache_evictions: define.counter_vec(
                "kmsd_cache_evictions_total",
                "Entries evicted, by cache and cause.",
                &["cache", "cause"],
            ),
            state: define.gauge_vec(
                "kmsd_service_state",
                "1 for the lifecycle state kmsd is in, 0 for the others.",
                &["state"],
            ),
            keys: define.gauge_vec("kmsd_keys", "Master keys in the active backend, by state.", &["state"]),
            vault_token_ttl: define.gauge(
                "kmsd_vault_token_ttl_seconds",
                "Seconds the Vault token has left before it expires; -1 when kmsd holds no expiring credential.",
            ),
            probe_success: define.gauge(
                "kmsd_self_probe_success",
                "1 if the last self-probe succeeded, else 0.",
            ),
            probe_last_success: define.gauge(
                "kmsd_self_probe_last_success_timestamp_seconds",
                "When the self-probe last succeeded, in Unix seconds.",
            ),
            probe_duration: define.histogram("kmsd_self_probe_duration_seconds", "Time a self-probe takes."),
            breaker_open: define.gauge_vec(
                "kmsd_circuit_breaker_open",
                "1 while the breaker in front of a backend is open.",
                &["backend"],
            ),
            backend_degraded: define.gauge(
                "kmsd_backend_degraded",
                "1 while the active backend cannot be reached or its self-probe fails, whether or not kmsd still serves.",
            ),
            audit_events: define.counter("kmsd_audit_events_total", "Audit lines written."),
            audit_errors: define.counter(
                "kmsd_audit_write_errors_total",
                "Audit lines that could not be written.",
            ),
            config_info: define.gauge_vec(
                "kmsd_config_info",
                "Always 1; config_fingerprint identifies the non-secret configuration (sidecars of one deployment should agree).",
                &["config_fingerprint", "backend_type"],
            ),
            vault_node_up: define.gauge_vec(
                "kmsd_vault_node_up",
                "1 if the configured Vault node answered its last health check or request, else 0.",
                &["address"],
            ),
            vault_node_serving: define.gauge_vec(
                "kmsd_vault_node_serving",
                "1 for the Vault node kmsd sends to first (the active node when known), else 0.",
                &["address"],
            ),
            reloads: define.counter_vec(
                "kmsd_reloads_total",
                "Reloads, by trigger (signal, api, file) and result (ok, refused).",
                &["trigger", "result"],
            ),
            key_rotations: define.counter_vec(
                "kmsd_key_rotations_total",
                "Key rotations, by trigger (manual, schedule) and result (ok, error).",
                &["trigger", "result"],
            ),
            key_imports: define.counter_vec(
                "kmsd_key_imports_total",
                "ImportKey calls, by result (ok, token_not_found, token_expired, invalid, denied, error).",
                &["result"],
            ),
            usage: usage::UsageMetrics::new(define),
            registry,
        };
        metrics.set_state(ServiceState::NotConfigured);
        // Every series from the start, so a rate over them has a base.
        for trigger in ["manual", "schedule"] {
            for result in ["ok", "error"] {
                metrics.key_rotations.with_label_values(&[trigger, result]);
            }
        }
        metrics.vault_token_ttl.set(-1);
        metrics
    }

    /// Records one served request.
    pub fn request(&self, op: Operation, code: Code, seconds: f64) {
        let code_index = CODES.iter().position(|c| *c == code).unwrap_or(2);
        if let Some(counter) = self
            .requests
            .get(op.index())
            .and_then(|c| c.get(code_index))
        {
            counter.inc();
        }
        if let Some(histogram) = self.latency.get(op.index()) {
            histogram.observe(seconds);
        }
    }

    /// Records one backend call.
    pub fn backend_call(&self, backend: &str, operation: &str, outcome: &str, seconds: f64) {
        if outcome == "ok" && self.hot_backend_calls.record(backend, operation, seconds) {
            return;
        }
        self.backend_ops
            .with_label_values(&[backend, operation, outcome])
            .inc();
        self.backend_latency
            .with_label_values(&[backend, operation])
            .observe(seconds);
    }

    /// Records a cache lookup (`hit`, `miss` or `stale`).
    pub fn cache_lookup(&self, cache: &str, result: &str) {
        self.cache_lookups.with_label_values(&[cache, result]).inc();
    }

    /// Sets a cache's size.
    pub fn cache_size(&self, cache: &str, entries: u64) {
        self.cache_entries
            .with_label_values(&[cache])
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// Records an eviction.
    pub fn cache_eviction(&self, cache: &str, cause: &str) {
        self.cache_evictions
            .with_label_values(&[cache, cause])
            .inc();
    }

    /// Sets the lifecycle state.
    pub fn set_state(&self, current: ServiceState) {
        for state in STATES {
            self.state
                .with_label_values(&[state.as_str()])
                .set(i64::from(state == current));
        }
    }

    /// Sets the key counts by state.
    pub fn set_keys(&self, enabled: usize, disabled: usize, pending_deletion: usize) {
        for (state, n) in [
            ("Enabled", enabled),
            ("Disabled", disabled),
            ("PendingDeletion", pending_deletion),
        ] {
            self.keys
                .with_label_values(&[state])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Counts a reload: `trigger` is `signal`, `api` or `file`.
    pub fn reload(&self, trigger: &str, ok: bool) {
        let result = if ok { "ok" } else { "refused" };
        self.reloads.with_label_values(&[trigger, result]).inc();
    }

    /// Counts a key rotation: `trigger` is `manual` (RotateKey) or
    /// `schedule` (the rotation sweep).
    pub fn key_rotation(&self, trigger: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.key_rotations
            .with_label_values(&[trigger, result])
            .inc();
    }

    /// Counts an ImportKey by its result, one of a closed set.
    pub fn key_import(&self, result: &'static str) {
        self.key_imports.with_label_values(&[result]).inc();
    }

    /// Sets whether a backend's breaker is open.
    pub fn set_breaker_open(&self, backend: &str, open: bool) {
        self.breaker_open
            .with_label_values(&[backend])
            .set(i64::from(open));
    }

    /// Forgets the Vault nodes of a previous backend.
    pub fn reset_vault_nodes(&self) {
        self.vault_node_up.reset();
        self.vault_node_serving.reset();
    }

    /// Sets a Vault node's health and whether kmsd sends to it first.
    /// Addresses are configuration, not secrets.
    pub fn set_vault_node(&self, address: &str, up: bool, serving: bool) {
        self.vault_node_up
            .with_label_values(&[address])
            .set(i64::from(up));
        self.vault_node_serving
            .with_label_values(&[address])
            .set(i64::from(serving));
    }

    /// Publishes the configuration fingerprint: one series, replaced when
    /// the configuration changes. The label is a hash over non-secret
    /// settings and changes only with the configuration, so it adds one
    /// series per reconfiguration at most.
    pub fn set_config_fingerprint(&self, fingerprint: &ConfigFingerprint) {
        let backend_type = fingerprint
            .fields
            .get("backend_type")
            .map_or("none", String::as_str);
        self.config_info.reset();
        self.config_info
            .with_label_values(&[fingerprint.hash.as_str(), backend_type])
            .set(1);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut buffer = Vec::new();
        // Invariant: the text encoder only fails on writer errors, and a
        // Vec never fails to grow.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

mod hot;
#[cfg(test)]
mod tests;
mod usage;
