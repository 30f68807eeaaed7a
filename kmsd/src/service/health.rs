//! Readiness and the self-probe: a periodic wrap and unwrap of a data key
//! under a reserved key, proving the backend does real work, not just that
//! it accepts connections.

use std::{
    collections::BTreeMap,
    sync::{Arc, PoisonError},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use super::Kms;
use crate::{
    backend::{KeyBackend, KeyState, NewKey},
    blob,
    clock::Secs,
    context::EncryptionContext,
    crypto,
    error::KmsError,
    key_id::KeyId,
    lifecycle::{Active, ServiceState},
};

/// The reserved key the self-probe uses; created on first use, hidden from
/// ListKeys, and refused to callers of CreateKey.
pub const PROBE_KEY_ID: &str = "kmsd-internal-probe";

impl Kms {
    /// Generates a data key under the probe key and opens it again. Not a
    /// request: it is neither audited nor counted in the request metrics,
    /// only in the probe metrics.
    pub async fn self_probe(&self) -> Result<(), KmsError> {
        let started = Instant::now();
        let result = self.probe_once().await;
        let metrics = &self.inner.metrics;
        metrics
            .probe_duration
            .observe(started.elapsed().as_secs_f64());
        metrics.probe_success.set(i64::from(result.is_ok()));
        if result.is_ok() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            metrics
                .probe_last_success
                .set(i64::try_from(now).unwrap_or(i64::MAX));
        }
        let was_ok = self.record_probe(&result);
        match (&result, was_ok) {
            (Err(e), true) => tracing::warn!(error = %e, "self-probe failed"),
            (Ok(()), false) => tracing::info!("self-probe passed"),
            _ => {}
        }
        result
    }

    /// Keeps the probe's result; returns whether the previous one passed.
    fn record_probe(&self, result: &Result<(), KmsError>) -> bool {
        let mut probe = self
            .inner
            .probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let was_ok = matches!(*probe, Probe::Passed);
        *probe = match (result, &*probe) {
            (Ok(()), _) => Probe::Passed,
            (Err(KmsError::BackendUnavailable { .. }), Probe::Unreachable { since, .. }) => {
                Probe::Unreachable {
                    since: *since,
                    reason: result_reason(result),
                }
            }
            (Err(KmsError::BackendUnavailable { .. }), _) => Probe::Unreachable {
                since: Instant::now(),
                reason: result_reason(result),
            },
            (Err(_), _) => Probe::Failed(result_reason(result)),
        };
        was_ok
    }

    async fn probe_once(&self) -> Result<(), KmsError> {
        let active = self.active()?;
        let key_id = KeyId::parse(PROBE_KEY_ID)?;
        let described = self
            .backend_call(
                &active,
                "describe_key",
                active.backend.describe_key(&key_id),
            )
            .await;
        match described {
            Ok(meta) if meta.state == KeyState::Enabled => {}
            Ok(meta) => {
                return Err(KmsError::Internal(format!(
                    "the self-probe key {PROBE_KEY_ID} is {}",
                    meta.state.as_str()
                )));
            }
            Err(KmsError::KeyNotFound(_)) => {
                let new = NewKey {
                    key_id: key_id.clone(),
                    description: "kmsd's self-probe key; do not use".into(),
                    tags: BTreeMap::new(),
                };
                self.backend_call(&active, "create_key", active.backend.create_key(new))
                    .await?;
            }
            Err(e) => return Err(e),
        }
        let context = EncryptionContext::new(BTreeMap::from([(
            "kmsd".to_owned(),
            "self-probe".to_owned(),
        )]))?;
        let generated = self
            .backend_call(
                &active,
                "generate_data_key",
                active.backend.generate_data_key(&key_id, &context),
            )
            .await?;
        let parsed = blob::parse(&generated.sealed.blob)?;
        let opened = self
            .backend_call(
                &active,
                "decrypt",
                active.backend.decrypt(&parsed, &context),
            )
            .await?;
        if !crypto::constant_time_eq(
            opened.plaintext.expose_secret(),
            generated.key.expose_secret(),
        ) {
            return Err(KmsError::Internal(
                "the self-probe opened a different data key than it sealed".into(),
            ));
        }
        Ok(())
    }

    /// Whether kmsd should receive traffic: it is Running and can serve the
    /// calls it is asked for. That is the case while the backend is healthy
    /// (the last self-probe passed, its circuit breaker is closed), and
    /// also while the backend cannot be reached if kmsd serves without it
    /// (Vault intermediate keys, the data-key cache's offline window), for
    /// as long as that lasts. The error says why not.
    pub fn readiness(&self) -> Result<(), String> {
        let active = self.running_backend()?;
        match self.condition(&active) {
            Condition::Healthy => Ok(()),
            Condition::Failing(reason) => Err(reason),
            Condition::Unreachable { since, reason } => {
                let window = [
                    active.backend.offline_window(),
                    self.inner.cache.offline_window(),
                ]
                .into_iter()
                .flatten()
                .max();
                match window {
                    Some(window) if since.elapsed() < window => Ok(()),
                    Some(window) => Err(format!(
                        "{reason} (for longer than kmsd serves without it: {})",
                        Secs(window)
                    )),
                    None => Err(reason),
                }
            }
        }
    }

    /// Why the backend is degraded (unreachable, or its self-probe fails),
    /// whether or not kmsd still serves; `None` while it is healthy or kmsd
    /// is not running. Reported apart from readiness: in the status, the
    /// `kmsd_backend_degraded` metric and `/health/backend`.
    pub fn degraded(&self) -> Option<String> {
        let active = self.running_backend().ok()?;
        let degraded = match self.condition(&active) {
            Condition::Healthy => None,
            Condition::Failing(reason) | Condition::Unreachable { reason, .. } => Some(reason),
        };
        self.inner
            .metrics
            .backend_degraded
            .set(i64::from(degraded.is_some()));
        degraded
    }

    /// Ok while Running; otherwise the state, in words.
    pub fn running_state(&self) -> Result<(), String> {
        self.running_backend().map(drop)
    }

    fn running_backend(&self) -> Result<Arc<Active>, String> {
        let runtime = self.runtime();
        match (&runtime.active, runtime.state) {
            (Some(active), ServiceState::Running) => Ok(Arc::clone(active)),
            (_, state) => Err(format!("kmsd is {}", state.as_str())),
        }
    }

    fn condition(&self, active: &Active) -> Condition {
        if let Some(open) = active.backend.unavailable() {
            return Condition::Unreachable {
                since: open.since,
                reason: format!(
                    "the {} backend is unavailable: {open}",
                    active.kind().as_str()
                ),
            };
        }
        let probe = self
            .inner
            .probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match probe {
            Probe::Passed => Condition::Healthy,
            Probe::NotYet => Condition::Failing("the self-probe has not passed yet".into()),
            Probe::Unreachable { since, reason } => Condition::Unreachable { since, reason },
            Probe::Failed(reason) => Condition::Failing(reason),
        }
    }
}

/// What the last self-probe found.
#[derive(Debug, Clone, Default)]
pub(super) enum Probe {
    /// None has run since the service started.
    #[default]
    NotYet,
    /// It wrapped and unwrapped a data key.
    Passed,
    /// The backend could not be reached, since the first such failure.
    Unreachable { since: Instant, reason: String },
    /// The backend answered but could not do the work (denied, ...).
    Failed(String),
}

enum Condition {
    Healthy,
    Unreachable { since: Instant, reason: String },
    Failing(String),
}

fn result_reason(result: &Result<(), KmsError>) -> String {
    match result {
        Ok(()) => String::new(),
        Err(e) => format!("the last self-probe failed: {}", e.public_message()),
    }
}
