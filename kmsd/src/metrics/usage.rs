//! The usage figures' metrics (issue 20). No series is labelled with a
//! key id: per-key figures are in DescribeKey, not in Prometheus.

use prometheus::{IntCounter, IntCounterVec, IntGauge};

use super::Define;

/// Wraps and decrypts counted, budget rotations, deletion-guard refusals
/// and flushes.
#[derive(Debug, Clone)]
pub struct UsageMetrics {
    /// Wraps this node counted.
    pub wraps: IntCounter,
    /// Decrypts this node counted.
    pub decrypts: IntCounter,
    budget_rotations: IntCounterVec,
    /// The configured wrap budget.
    pub wrap_budget: IntGauge,
    /// The most wraps of any one key version, over every node.
    pub highest_version_wraps: IntGauge,
    /// ScheduleKeyDeletion calls refused as KEY_STILL_REFERENCED.
    pub guard_refusals: IntCounter,
    flushes: IntCounterVec,
}

impl UsageMetrics {
    pub(super) fn new(define: Define<'_>) -> Self {
        Self {
            wraps: define.counter(
                "kmsd_usage_wraps_total",
                "Wraps (GenerateDataKey, Encrypt, ReEncrypt) this node counted into the usage figures.",
            ),
            decrypts: define.counter(
                "kmsd_usage_decrypts_total",
                "Decrypts (Decrypt, ReEncrypt) this node counted into the usage figures.",
            ),
            budget_rotations: define.counter_vec(
                "kmsd_wrap_budget_rotations_total",
                "Rotations because a key version reached [keys] wrap_budget, by result (rotated, skipped: already rotated, failed).",
                &["result"],
            ),
            wrap_budget: define.gauge(
                "kmsd_wrap_budget",
                "The configured wraps per key version before kmsd rotates the key ([keys] wrap_budget).",
            ),
            highest_version_wraps: define.gauge(
                "kmsd_wrap_budget_highest_version_wraps",
                "The most wraps of any one key version known to this node, over every node (updated at each flush).",
            ),
            guard_refusals: define.counter(
                "kmsd_deletion_guard_refusals_total",
                "ScheduleKeyDeletion calls refused because the key was used within [keys] deletion_guard_window_secs.",
            ),
            flushes: define.counter_vec(
                "kmsd_usage_flushes_total",
                "Writes of this node's usage figures to the key store, by result (ok, failed).",
                &["result"],
            ),
        }
    }

    /// Counts a budget rotation's `result`.
    pub fn budget_rotation(&self, result: &str) {
        self.budget_rotations.with_label_values(&[result]).inc();
    }

    /// Counts a flush.
    pub fn flush(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.flushes.with_label_values(&[result]).inc();
    }
}
