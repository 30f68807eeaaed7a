//! Readiness and the self-probe: a periodic wrap and unwrap of a data key
//! under a reserved key, proving the backend does real work, not just that
//! it accepts connections.

use std::{
    collections::BTreeMap,
    sync::atomic::Ordering,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use super::Kms;
use crate::{
    backend::{KeyBackend, KeyState, NewKey},
    blob,
    context::EncryptionContext,
    crypto,
    error::KmsError,
    key_id::KeyId,
    lifecycle::ServiceState,
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
        let was_ok = self.inner.probe_ok.swap(result.is_ok(), Ordering::AcqRel);
        match (&result, was_ok) {
            (Err(e), true) => tracing::warn!(error = %e, "self-probe failed: not ready"),
            (Ok(()), false) => tracing::info!("self-probe passed: ready"),
            _ => {}
        }
        result
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

    /// Whether kmsd should receive traffic: Running, the last self-probe
    /// passed, and the backend's breaker is closed. The error says why not.
    pub fn readiness(&self) -> Result<(), String> {
        let runtime = self.runtime();
        let Some(active) = runtime
            .active
            .as_ref()
            .filter(|_| runtime.state == ServiceState::Running)
        else {
            return Err(format!("kmsd is {}", runtime.state.as_str()));
        };
        if active.breaker.is_open() {
            return Err(format!(
                "the {} backend is unavailable (circuit open)",
                active.kind().as_str()
            ));
        }
        if !self.inner.probe_ok.load(Ordering::Acquire) {
            return Err("the last self-probe failed".into());
        }
        Ok(())
    }
}
