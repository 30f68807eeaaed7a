//! The core every front end (gRPC, REST) calls.
//!
//! Each operation follows the same path: take a concurrency permit, resolve
//! and validate its input, check the caller's policy, call the active
//! backend through its circuit breaker and deadline, then record one audit
//! line and the request metrics. Errors travel as `KmsError` and become a
//! wire status in one place per front end.

mod admin;
mod aliases;
mod backup;
mod data;
mod health;
mod import;
mod keys;
mod metadata;
mod observe;
mod reload;
mod rotation;
mod usage;

use std::{sync::Arc, time::Duration};

use time::OffsetDateTime;
use tokio::sync::Semaphore;

/// Defined with the configuration, below the service.
pub use crate::config::ServiceOptions;

#[cfg(test)]
pub use self::health::PROBE_KEY_ID;
pub use self::import::ImportRequest;
pub use self::keys::{
    DEFAULT_PAGE_SIZE, MAX_DELETION_WINDOW_DAYS, MAX_PAGE_SIZE, MIN_DELETION_WINDOW_DAYS,
};
pub use self::reload::{Reload, ReloadFuture, ReloadReport};
#[cfg(test)]
use crate::backend::KeyBackend;
use crate::{
    audit::AuditLog,
    cache::DataKeyCache,
    clock::Clock,
    error::KmsError,
    lifecycle::{Active, Lifecycle, Runtime},
    metrics::Metrics,
    policy::Policy,
};

/// Encrypt takes at most this many bytes of plaintext.
pub const MAX_PLAINTEXT_LEN: usize = 4096;

/// The service core. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct Kms {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    lifecycle: Lifecycle,
    clock: Arc<dyn Clock>,
    started_at: OffsetDateTime,
    metrics: Metrics,
    audit: AuditLog,
    cache: DataKeyCache,
    permits: Semaphore,
    max_concurrent: usize,
    backend_timeout: Duration,
    policy: arc_swap::ArcSwap<Policy>,
    /// What the last self-probe found.
    probe: std::sync::Mutex<health::Probe>,
    /// What a backend configuration given to the admin API may name.
    admin_rules: crate::config::AdminPlaneRules,
    /// The shortest automatic rotation period EnableKeyRotation accepts.
    min_rotation_period: Duration,
    /// What Admin Reload calls, registered by the daemon.
    reloader: std::sync::OnceLock<Arc<dyn Reload>>,
    /// Pending import tokens (ImportKey).
    imports: crate::import::ImportTokens,
    /// Usage figures, the wrap budget and the deletion guard (issue 20).
    usage: usage::Usage,
}

impl Kms {
    /// A service over `lifecycle`.
    pub fn new(
        lifecycle: Lifecycle,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        audit: AuditLog,
        policy: Policy,
        options: ServiceOptions,
    ) -> Self {
        let started_at = clock.now();
        let cache = DataKeyCache::new(options.cache, metrics.clone());
        let budget = i64::try_from(options.usage.wrap_budget).unwrap_or(i64::MAX);
        metrics.usage.wrap_budget.set(budget);
        Self {
            inner: Arc::new(Inner {
                lifecycle,
                clock,
                started_at,
                metrics,
                audit,
                cache,
                permits: Semaphore::new(options.max_concurrent_requests),
                max_concurrent: options.max_concurrent_requests,
                backend_timeout: options.backend_timeout,
                policy: arc_swap::ArcSwap::from_pointee(policy),
                probe: std::sync::Mutex::new(health::Probe::NotYet),
                admin_rules: options.admin_rules,
                min_rotation_period: options.min_rotation_period,
                reloader: std::sync::OnceLock::new(),
                imports: crate::import::ImportTokens::new(options.imports),
                usage: usage::Usage::new(options.usage),
            }),
        }
    }

    /// The lifecycle.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Replaces the access policy (on SIGHUP or file change).
    pub fn set_policy(&self, policy: Policy) {
        self.inner.policy.store(Arc::new(policy));
    }

    /// When the service was created.
    pub fn started_at(&self) -> OffsetDateTime {
        self.inner.started_at
    }

    /// The current lifecycle view.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.inner.lifecycle.snapshot()
    }

    fn active(&self) -> Result<Arc<Active>, KmsError> {
        self.inner.lifecycle.active()
    }

    /// Whether the active backend answers (not counted as a request).
    #[cfg(test)]
    pub async fn health(&self) -> Result<(), KmsError> {
        let active = self.active()?;
        self.backend_call(&active, "health", active.backend.health())
            .await
    }
}

#[cfg(test)]
mod tests;
