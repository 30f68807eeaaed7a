//! The service status as both admin APIs report it: the gRPC `Admin.Status`
//! and the REST `status` endpoint render this one report, so they cannot
//! drift apart.
//!
//! Only what backends put in [`Active::summary`] (non-secret settings such
//! as `key_dir` or `sealed`) is shown; the configuration as written, which
//! may name secrets, never is.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::{
    fingerprint::ConfigFingerprint,
    key_id::KeyId,
    lifecycle::{Active, ServiceState},
    service::Kms,
};

/// A snapshot of the lifecycle, the backends and their health.
#[derive(Debug, Clone)]
pub struct StatusReport {
    /// The lifecycle state.
    pub state: ServiceState,
    /// What went wrong, in the Error state.
    pub error: Option<String>,
    /// The active backend, or the configured one when not running.
    pub backend: Option<BackendSummary>,
    /// Backends kept for decryption only, newest first.
    pub previous_backends: Vec<BackendSummary>,
    /// kmsd's version.
    pub version: &'static str,
    /// When the service started.
    pub started_at: OffsetDateTime,
    /// Whether kmsd is ready for traffic: Running and able to serve what it
    /// is asked (see [`Kms::readiness`]).
    pub healthy: bool,
    /// Why the backend is degraded (unreachable, or its self-probe fails),
    /// even while kmsd still serves; `None` while it is healthy.
    pub degraded: Option<String>,
    /// Whether admin changes survive a restart.
    pub persisted: bool,
    /// The configuration fingerprint and the non-secret fields it covers.
    pub fingerprint: Arc<ConfigFingerprint>,
}

/// One backend, without secrets.
#[derive(Debug, Clone)]
pub struct BackendSummary {
    /// `local`, `vault`, ...
    pub backend_type: &'static str,
    /// The key used when a request names none.
    pub default_key_id: Option<KeyId>,
    /// Non-secret settings; empty for a backend that is configured but not
    /// built.
    pub settings: Vec<(&'static str, String)>,
}

impl BackendSummary {
    fn of(active: &Active) -> Self {
        Self {
            backend_type: active.kind().as_str(),
            default_key_id: active.default_key_id.clone(),
            settings: active
                .summary
                .iter()
                .cloned()
                .chain(active.backend.live_summary())
                .collect(),
        }
    }
}

/// The current status of `kms`.
pub fn report(kms: &Kms) -> StatusReport {
    let runtime = kms.runtime();
    let healthy = kms.readiness().is_ok();
    let backend = match (&runtime.active, &runtime.configured) {
        (Some(active), _) => Some(BackendSummary::of(active)),
        (None, Some((kind, default_key_id))) => Some(BackendSummary {
            backend_type: kind,
            default_key_id: default_key_id.clone(),
            settings: Vec::new(),
        }),
        (None, None) => None,
    };
    StatusReport {
        state: runtime.state,
        error: runtime.error.clone(),
        backend,
        previous_backends: runtime
            .previous
            .iter()
            .map(|a| BackendSummary::of(a))
            .collect(),
        version: env!("CARGO_PKG_VERSION"),
        started_at: kms.started_at(),
        healthy,
        degraded: kms.degraded(),
        persisted: kms.lifecycle().is_persisted(),
        fingerprint: Arc::clone(&runtime.fingerprint),
    }
}
