//! Rotation of Vault keys that several kmsd sharing one Vault must do
//! once: the scheduled one (every kmsd's sweep finds the key due) and the
//! conditional one ("rotate if still at version n").
//!
//! A rotation is claimed first: a check-and-set write of the key's KV
//! record adding a [`RotationClaim`]. Only one of several kmsd that read
//! the same record version gets its write in; the others see the claim
//! (or a record not due any more) and leave the key alone. The claimer
//! rotates the Transit key, then rewrites the record without the claim
//! and, for a scheduled rotation, with the next rotation date.
//!
//! A claimer that dies, or whose Transit call failed (its answer may have
//! been lost after the rotation happened), leaves its claim behind; after
//! [`CLAIM_STALE_AFTER`] another kmsd (or itself) takes it over. Transit's latest
//! version tells the new claimer whether the dead one had rotated: if it
//! is past the claim's `from_version`, only the record is finished.

use time::OffsetDateTime;

use super::{
    VaultBackend,
    kv::{CAS_ATTEMPTS, KeyRecord, RotationClaim, Written},
    metadata::unreadable,
};
use crate::{
    backend::{
        KeyMetadata, KeyState,
        rotation::{self, Rotation, RotationSchedule},
    },
    error::KmsError,
    key_id::KeyId,
};

/// How long a claim keeps other kmsd away. A rotation takes one Transit
/// call; five minutes is far beyond any retry schedule of it, and short
/// next to the shortest real period (days).
const CLAIM_STALE_AFTER: time::Duration = time::Duration::minutes(5);

/// Which rotation is asked for.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Only if the current version is still this one.
    Current(u32),
    /// Only if the schedule is due at this time; moves it on.
    Due(OffsetDateTime),
}

fn busy(key_id: &KeyId) -> KmsError {
    KmsError::BackendUnavailable {
        backend: "vault",
        detail: format!("key {key_id} kept changing under concurrent updates; try again"),
    }
}

impl VaultBackend {
    /// Transit's latest version of the key.
    async fn latest_version(&self, key_id: &KeyId) -> Result<u32, KmsError> {
        self.keys
            .transit
            .read(key_id)
            .await
            .map_err(|e| unreadable(key_id, e))?
            .map(|t| t.latest_version)
            .ok_or_else(|| KmsError::KeyNotFound(key_id.clone()))
    }

    /// One claimed rotation (module docs). `None`: not wanted any more,
    /// or another kmsd holds the claim.
    async fn rotate_claimed(
        &self,
        key_id: &KeyId,
        want: Want,
    ) -> Result<Option<KeyMetadata>, KmsError> {
        let now = self.clock.now();
        let (claim, claimed) = 'claim: {
            for _ in 0..CAS_ATTEMPTS {
                let current = self.record_for_change(key_id).await?;
                let record = &current.record;
                match want {
                    Want::Current(_) if record.state == KeyState::PendingDeletion => {
                        return Err(KmsError::InvalidStateTransition {
                            key_id: key_id.clone(),
                            state: record.state.as_str(),
                            action: "rotate",
                        });
                    }
                    Want::Due(at) if !rotation::due(record.state, record.rotation.as_ref(), at) => {
                        return Ok(None);
                    }
                    _ => {}
                }
                let stale = match record.rotation_claim {
                    Some(held) if now < held.at + CLAIM_STALE_AFTER => return Ok(None),
                    held => held,
                };
                let latest = self.latest_version(key_id).await?;
                let from_version = match (want, stale) {
                    (Want::Current(expected), _) if latest != expected => return Ok(None),
                    (Want::Current(expected), _) => expected,
                    // The dead claimer's rotation may have gone through.
                    (Want::Due(_), Some(stale)) => stale.from_version,
                    (Want::Due(_), None) => latest,
                };
                let claim = RotationClaim {
                    at: now,
                    from_version,
                };
                let mut claimed = current.record.clone();
                claimed.rotation_claim = Some(claim);
                if self.keys.records.write(&claimed, current.version).await? == Written::Done {
                    break 'claim (claim, (claimed, current.version + 1));
                }
            }
            return Err(busy(key_id));
        };
        // Read again under the claim: a RotateKey (which takes no claim)
        // may have come between the first read and the claim.
        let latest = match self.latest_version(key_id).await {
            Ok(latest) => latest,
            Err(e) => {
                self.release(key_id, claim, claimed.clone(), None).await;
                return Err(e);
            }
        };
        let rotate = latest == claim.from_version;
        if let Want::Current(_) = want
            && !rotate
        {
            self.release(key_id, claim, claimed.clone(), None).await;
            return Ok(None);
        }
        if rotate && let Err(e) = self.keys.transit.rotate(key_id).await {
            // A scheduled rotation keeps its claim: the rotation may have
            // happened with its answer lost, and only a takeover (which
            // compares Transit's version with the claim's) can tell
            // without rotating twice. "If still at version n" needs no
            // such care: a retry finds the version moved.
            if let Want::Current(_) = want {
                self.release(key_id, claim, claimed, None).await;
            }
            return Err(e.into());
        }
        let moved = matches!(want, Want::Due(_)).then_some(now);
        self.release(key_id, claim, claimed, moved).await;
        if !rotate {
            tracing::info!(%key_id, "finished a scheduled rotation a kmsd that stopped had begun");
        }
        self.keys.forget_intermediates(Some(key_id));
        self.keys.describe_fresh(key_id).await.map(Some)
    }

    /// Removes `claim` from the key's record, moving the schedule on from
    /// `moved_at` when given. `claimed` is the record as the claim wrote
    /// it, tried first; a conflict means another change came in between,
    /// and the record is read again. Best effort: a claim left behind goes
    /// stale.
    async fn release(
        &self,
        key_id: &KeyId,
        claim: RotationClaim,
        claimed: (KeyRecord, u64),
        moved_at: Option<OffsetDateTime>,
    ) {
        let (record, mut version) = claimed;
        let mut known = Some(record);
        for _ in 0..CAS_ATTEMPTS {
            let mut record = match known.take() {
                Some(record) => record,
                None => match self.keys.records.read(key_id).await {
                    Ok(Some(current)) => {
                        version = current.version;
                        current.record
                    }
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(%key_id, error = %e, "could not release a rotation claim; it goes stale");
                        return;
                    }
                },
            };
            if record.rotation_claim != Some(claim) {
                return;
            }
            record.rotation_claim = None;
            if let Some(at) = moved_at {
                record.rotation = record.rotation.map(|s| s.after_rotation(at));
            }
            match self.keys.records.write(&record, version).await {
                Ok(Written::Done) => return,
                Ok(Written::Conflict) => {}
                Err(e) => {
                    tracing::warn!(%key_id, error = %e, "could not release a rotation claim; it goes stale");
                    return;
                }
            }
        }
    }
}

impl Rotation for VaultBackend {
    async fn rotate_key_if_current(
        &self,
        key_id: &KeyId,
        expected_current_version: u32,
    ) -> Result<Option<KeyMetadata>, KmsError> {
        self.rotate_claimed(key_id, Want::Current(expected_current_version))
            .await
    }

    async fn rotate_key_if_due(
        &self,
        key_id: &KeyId,
        now: OffsetDateTime,
    ) -> Result<Option<KeyMetadata>, KmsError> {
        self.rotate_claimed(key_id, Want::Due(now)).await
    }

    async fn set_rotation(
        &self,
        key_id: &KeyId,
        schedule: Option<RotationSchedule>,
    ) -> Result<KeyMetadata, KmsError> {
        for _ in 0..CAS_ATTEMPTS {
            let current = self.record_for_change(key_id).await?;
            rotation::refuse_pending(key_id, current.record.state, schedule.is_some())?;
            let schedule = rotation::merged(current.record.rotation, schedule);
            if current.record.rotation == schedule {
                return self.keys.describe_fresh(key_id).await;
            }
            let mut record = current.record;
            record.rotation = schedule;
            if self.keys.records.write(&record, current.version).await? == Written::Done {
                return self.keys.describe_fresh(key_id).await;
            }
        }
        Err(busy(key_id))
    }

    async fn keys_due_for_rotation(&self, now: OffsetDateTime) -> Result<Vec<KeyId>, KmsError> {
        let mut due = Vec::new();
        for key_id in self.keys.records.list().await? {
            // A fresh cache entry rules a key out without a read (most
            // keys are not due); a record read decides the rest.
            if let Some(cached) = self.keys.cache.get(&key_id)
                && !rotation::due(cached.meta.state, cached.meta.rotation.as_ref(), now)
            {
                continue;
            }
            match self.keys.records.read(&key_id).await {
                Ok(Some(current))
                    if rotation::due(
                        current.record.state,
                        current.record.rotation.as_ref(),
                        now,
                    ) =>
                {
                    due.push(key_id);
                }
                Ok(_) => {}
                Err(super::error::VaultError::Decode { reason, .. }) => {
                    tracing::error!(%key_id, %reason, "skipping an unreadable key record in the rotation sweep");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(due)
    }
}
