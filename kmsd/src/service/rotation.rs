//! Automatic rotation: EnableKeyRotation, DisableKeyRotation,
//! GetKeyRotationStatus, and the rotation sweep every kmsd runs
//! (`[keys] rotation_sweep_interval_secs`). The backend makes a due key
//! rotate once however many kmsd sweep it (backend/rotation.rs).

use std::time::Instant;

use super::{Kms, observe::Audit};
use crate::{
    backend::{KeyMetadata, Rotation, RotationSchedule, rotation::requested_period},
    error::KmsError,
    key_id::KeyId,
    request::{Operation, RequestContext},
};

/// The audit operation of a rotation made by the sweep (caller `kmsd`).
const ROTATE_KEY_ON_SCHEDULE: &str = "RotateKeyOnSchedule";

impl Kms {
    /// EnableKeyRotation: `days` or `secs` (not both; neither: 365 days),
    /// within `[keys] min_rotation_period_secs` and 2560 days.
    pub async fn enable_key_rotation(
        &self,
        cx: &RequestContext,
        key_id: &KeyId,
        days: u32,
        secs: u64,
    ) -> Result<KeyMetadata, KmsError> {
        let period = requested_period(days, secs, self.inner.min_rotation_period);
        let schedule = period
            .as_ref()
            .ok()
            .map(|p| RotationSchedule::starting(self.inner.clock.now(), *p));
        self.set_rotation(
            cx,
            Operation::EnableKeyRotation,
            key_id,
            period.map(drop),
            schedule,
        )
        .await
    }

    /// DisableKeyRotation.
    pub async fn disable_key_rotation(
        &self,
        cx: &RequestContext,
        key_id: &KeyId,
    ) -> Result<KeyMetadata, KmsError> {
        self.set_rotation(cx, Operation::DisableKeyRotation, key_id, Ok(()), None)
            .await
    }

    async fn set_rotation(
        &self,
        cx: &RequestContext,
        op: Operation,
        key_id: &KeyId,
        checked: Result<(), KmsError>,
        schedule: Option<RotationSchedule>,
    ) -> Result<KeyMetadata, KmsError> {
        let result = self
            .on_key(cx, op, key_id, checked, "set_rotation", async |active| {
                active.backend.set_rotation(key_id, schedule).await
            })
            .await;
        if result.is_ok() {
            // Decrypt-only backends kept by a reconfiguration may cache the
            // key's metadata from the same store.
            self.forget_key_everywhere(key_id);
        }
        result
    }

    /// GetKeyRotationStatus: the key's metadata, whose `rotation` is the
    /// answer (its own operation, so a policy may grant it apart from
    /// DescribeKey).
    pub async fn key_rotation_status(
        &self,
        cx: &RequestContext,
        key_id: &KeyId,
    ) -> Result<KeyMetadata, KmsError> {
        self.describe_as(cx, Operation::GetKeyRotationStatus, key_id)
            .await
    }

    /// Rotates every key whose rotation is due (the rotation sweep),
    /// writing one audit line per key rotated (operation
    /// `RotateKeyOnSchedule`, caller `kmsd`, the new version) and one per
    /// key that failed; returns the keys rotated. A key another kmsd
    /// rotated first is neither.
    pub async fn sweep_rotations(&self) -> Result<Vec<KeyId>, KmsError> {
        let active = self.active()?;
        let started = Instant::now();
        let now = self.inner.clock.now();
        let due = match self
            .backend_call(
                &active,
                "keys_due_for_rotation",
                active.backend.keys_due_for_rotation(now),
            )
            .await
        {
            Ok(due) => due,
            Err(e) => {
                self.audit_internal(ROTATE_KEY_ON_SCHEDULE, started, &Audit::default(), Some(&e))
                    .await;
                return Err(e);
            }
        };
        let mut rotated = Vec::new();
        for key_id in due.into_iter().filter(|k| !k.is_reserved()) {
            let started = Instant::now();
            let result = self
                .backend_call(
                    &active,
                    "rotate_key_if_due",
                    active.backend.rotate_key_if_due(&key_id, now),
                )
                .await;
            let mut audit = Audit {
                key_id: Some(key_id.clone()),
                ..Audit::default()
            };
            match result {
                Ok(None) => continue,
                Ok(Some(meta)) => {
                    audit.key_version = Some(meta.current_version);
                    self.forget_key_everywhere(&key_id);
                    self.inner.metrics.key_rotation("schedule", true);
                    tracing::info!(%key_id, version = meta.current_version, "key rotated on schedule");
                    self.audit_internal(ROTATE_KEY_ON_SCHEDULE, started, &audit, None)
                        .await;
                    rotated.push(key_id);
                }
                Err(e) => {
                    self.inner.metrics.key_rotation("schedule", false);
                    tracing::error!(%key_id, error = %e, "scheduled rotation failed; the next sweep retries");
                    self.audit_internal(ROTATE_KEY_ON_SCHEDULE, started, &audit, Some(&e))
                        .await;
                }
            }
        }
        Ok(rotated)
    }
}
