//! Usage figures in the service (issue 20): counting wraps and decrypts,
//! rotating a key whose version reached the wrap budget, persisting the
//! figures, and the deletion impact and guard.

use std::{
    sync::{Arc, PoisonError, Weak},
    time::Instant,
};

use super::{Kms, observe::Audit};
use crate::{
    backend::{Backend, KeyBackend, KeyMetadata, KeyState, UsageStore, rotation::Rotation},
    clock::rfc3339,
    error::KmsError,
    key_id::KeyId,
    usage::{DeletionImpact, UsageSettings, UsageTracker},
};

/// The audit operation of a rotation because of the wrap budget.
const ROTATE_FOR_BUDGET: &str = "RotateKeyForBudget";

/// The counters, and which store they were loaded from.
#[derive(Debug)]
pub(super) struct Usage {
    pub(super) tracker: UsageTracker,
    pub(super) settings: UsageSettings,
    /// The store whose persisted figures the counters continue from;
    /// figures are written only there (see [`Kms::flush_usage`]).
    /// `None` until the first load.
    origin: std::sync::Mutex<Option<Weak<Backend>>>,
}

impl Usage {
    pub(super) fn new(settings: UsageSettings) -> Self {
        Self {
            tracker: UsageTracker::new(settings.wrap_budget),
            settings,
            origin: std::sync::Mutex::new(None),
        }
    }

    fn origin(&self) -> Option<Weak<Backend>> {
        self.origin
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_origin(&self, backend: &Arc<Backend>) {
        *self.origin.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::downgrade(backend));
    }
}

impl Kms {
    fn now_secs(&self) -> i64 {
        self.inner.clock.now().unix_timestamp()
    }

    /// Counts a wrap under `key_id` `version` (the key's real id, never an
    /// alias); the wrap that reaches the budget starts a rotation.
    pub(super) fn record_wrap(&self, key_id: &KeyId, version: u32) {
        let usage = &self.inner.usage;
        self.inner.metrics.usage.wraps.inc();
        if usage.tracker.record_wrap(key_id, version, self.now_secs()) {
            let (kms, key_id) = (self.clone(), key_id.clone());
            tokio::spawn(async move { kms.rotate_for_budget(&key_id, version).await });
        }
    }

    /// Counts a decrypt under `key_id` `version`.
    pub(super) fn record_decrypt(&self, key_id: &KeyId, version: u32) {
        self.inner.metrics.usage.decrypts.inc();
        self.inner
            .usage
            .tracker
            .record_decrypt(key_id, version, self.now_secs());
    }

    /// Rotates `key_id` because `version` reached the wrap budget, unless
    /// it is no longer the current version (rotated meanwhile, here or by
    /// another node). Audited as `RotateKeyForBudget` by `kmsd`.
    async fn rotate_for_budget(&self, key_id: &KeyId, version: u32) {
        let started = Instant::now();
        let audit = Audit {
            key_id: Some(key_id.clone()),
            key_version: Some(version),
            ..Audit::default()
        };
        let result = async {
            let active = self.active()?;
            let meta = self
                .backend_call(&active, "describe_key", active.backend.describe_key(key_id))
                .await?;
            if meta.current_version != version || meta.state != KeyState::Enabled {
                return Ok(None);
            }
            // Several nodes can reach the budget together: the backend's
            // compare-and-set rotates once for all of them.
            self.backend_call(
                &active,
                "rotate_key",
                active.backend.rotate_key_if_current(key_id, version),
            )
            .await
        }
        .await;
        let metrics = &self.inner.metrics.usage;
        match &result {
            Ok(None) => metrics.budget_rotation("skipped"),
            Ok(Some(meta)) => {
                metrics.budget_rotation("rotated");
                self.forget_key_everywhere(key_id);
                tracing::info!(%key_id, version, new_version = meta.current_version, budget = self.inner.usage.settings.wrap_budget, "key rotated: its version reached the wrap budget");
            }
            Err(e) => {
                metrics.budget_rotation("failed");
                // The next wrap asks again.
                self.inner.usage.tracker.rearm(key_id, version);
                tracing::warn!(%key_id, version, error = %e, "rotation for the wrap budget failed");
            }
        }
        if !matches!(result, Ok(None)) {
            self.audit_internal(ROTATE_FOR_BUDGET, started, &audit, result.as_ref().err())
                .await;
        }
    }

    /// `meta` with its usage figures.
    pub(super) fn with_usage(&self, mut meta: KeyMetadata) -> KeyMetadata {
        meta.usage = self.inner.usage.tracker.usage(&meta.key_id);
        meta
    }

    /// Reads the active store's figures: this node's own are added to the
    /// counters the first time (or after the backend was replaced by
    /// another store, whose figures replace the old ones), the other nodes'
    /// replace what was read before.
    pub async fn load_usage(&self) -> Result<(), KmsError> {
        let active = self.active()?;
        let usage = &self.inner.usage;
        let node = &usage.settings.node_name;
        let stored = self
            .backend_call(&active, "load_usage", active.backend.load_usage(node))
            .await?;
        let origin = usage.origin();
        let same = origin
            .as_ref()
            .is_some_and(|o| std::ptr::eq(o.as_ptr(), Arc::as_ptr(&active.backend)));
        if !same {
            if origin.is_some() {
                usage.tracker.clear();
            }
            usage.tracker.add_own(&stored.own);
            usage.set_origin(&active.backend);
        }
        usage.tracker.set_others(&stored.others);
        Ok(())
    }

    /// Writes this node's figures to the store they were loaded from (and
    /// reads the other nodes' again). Before the first load, nothing is
    /// written: that would replace the persisted figures with the few
    /// counted since the start.
    pub async fn flush_usage(&self) -> Result<(), KmsError> {
        let usage = &self.inner.usage;
        let active = self.active()?;
        let origin = usage.origin().and_then(|o| o.upgrade());
        let same = origin
            .as_ref()
            .is_some_and(|o| Arc::ptr_eq(o, &active.backend));
        if let (Some(old), false) = (&origin, same) {
            // The backend was replaced: what was counted so far goes to the
            // store it was loaded from.
            let _ = old
                .store_usage(&usage.settings.node_name, &usage.tracker.own())
                .await;
        }
        if !same {
            return self.load_usage().await;
        }
        let own = usage.tracker.own();
        let result = self
            .backend_call(
                &active,
                "store_usage",
                active.backend.store_usage(&usage.settings.node_name, &own),
            )
            .await;
        self.inner.metrics.usage.flush(result.is_ok());
        result?;
        self.load_usage().await?;
        let highest = usage.tracker.highest_wraps();
        self.inner
            .metrics
            .usage
            .highest_version_wraps
            .set(i64::try_from(highest).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Reads the other nodes' figures again, first switching stores (see
    /// [`Self::flush_usage`]) if the backend was replaced.
    async fn flush_or_load_usage(&self) -> Result<(), KmsError> {
        let active = self.active()?;
        let same = self
            .inner
            .usage
            .origin()
            .and_then(|o| o.upgrade())
            .is_some_and(|o| Arc::ptr_eq(&o, &active.backend));
        if same {
            self.load_usage().await
        } else {
            self.flush_usage().await
        }
    }

    /// What deleting `key_id` would affect, as far as kmsd has seen: its
    /// figures, with the other nodes' read again when possible.
    pub(super) async fn deletion_impact(&self, key_id: &KeyId) -> DeletionImpact {
        if let Err(e) = self.flush_or_load_usage().await {
            tracing::warn!(%key_id, error = %e, "the deletion impact uses the figures read before: the store's cannot be read");
        }
        let usage = self.inner.usage.tracker.usage(key_id);
        let window = self.inner.usage.settings.deletion_guard_window;
        let since = self.inner.clock.now() - window;
        let within = |t: Option<time::OffsetDateTime>| t.is_some_and(|t| t >= since);
        DeletionImpact {
            versions_decrypted_within_window: usage
                .versions
                .iter()
                .filter(|v| within(v.last_decrypt_at))
                .map(|v| v.version)
                .collect(),
            used_within_window: !window.is_zero() && within(usage.last_used_at()),
            window,
            usage,
        }
    }

    /// The deletion guard: refuses (and counts) scheduling the deletion of
    /// a key used within the window, unless forced.
    pub(super) fn guard_deletion(
        &self,
        key_id: &KeyId,
        impact: &DeletionImpact,
        force: bool,
    ) -> Result<(), KmsError> {
        if force || !impact.used_within_window {
            return Ok(());
        }
        self.inner.metrics.usage.guard_refusals.inc();
        Err(KmsError::KeyStillReferenced {
            key_id: key_id.clone(),
            last_used_at: impact.usage.last_used_at().map(rfc3339).unwrap_or_default(),
            window_secs: impact.window.as_secs(),
        })
    }

    /// Forgets a destroyed key's figures.
    pub(super) fn forget_usage(&self, key_id: &KeyId) {
        self.inner.usage.tracker.forget(key_id);
    }
}
