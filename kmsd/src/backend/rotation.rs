//! Automatic rotation: a key's schedule, the rules for its period, and the
//! [`Rotation`] trait both backends implement (beside
//! [`KeyBackend`](super::KeyBackend), with the same enum dispatch).
//!
//! The daemon's sweep (on every kmsd) asks the backend which keys are due
//! and rotates each with [`Rotation::rotate_key_if_due`]; the backend makes
//! that rotate once even when several kmsd share one store (the local
//! backend under its writer lock, Vault through a check-and-set claim on
//! the key's KV record). On-demand rotation (RotateKey) leaves the schedule
//! as it is, as in AWS KMS.

use std::{future::Future, time::Duration};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Backend, KeyMetadata, KeyState};
use crate::{error::KmsError, key_id::KeyId};

/// AWS KMS's shortest rotation period, in days: the default of
/// `[keys] min_rotation_period_secs`.
pub const MIN_ROTATION_PERIOD_DAYS: u32 = 90;
/// AWS KMS's longest rotation period, in days (not configurable).
pub const MAX_ROTATION_PERIOD_DAYS: u32 = 2560;
/// The period when a request gives none (AWS KMS's default).
pub const DEFAULT_ROTATION_PERIOD_DAYS: u32 = 365;
/// Seconds in a day.
pub const SECS_PER_DAY: u64 = 86_400;

/// A key's automatic rotation schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationSchedule {
    /// Seconds between rotations.
    pub period_secs: u64,
    /// When the sweep rotates the key next.
    #[serde(with = "time::serde::rfc3339")]
    pub next_rotation: OffsetDateTime,
}

impl RotationSchedule {
    /// A schedule whose first rotation is one period after `now`.
    pub fn starting(now: OffsetDateTime, period: Duration) -> Self {
        Self {
            period_secs: period.as_secs(),
            next_rotation: now + period,
        }
    }

    /// The period.
    pub fn period(&self) -> Duration {
        Duration::from_secs(self.period_secs)
    }

    /// Whether the sweep should rotate now.
    pub fn is_due(&self, now: OffsetDateTime) -> bool {
        self.next_rotation <= now
    }

    /// The schedule after a scheduled rotation at `now`: one period from
    /// now, not from the missed date, so a kmsd that was down for several
    /// periods rotates once, not once per missed period.
    pub fn after_rotation(&self, now: OffsetDateTime) -> Self {
        Self::starting(now, self.period())
    }
}

/// Whether the sweep should rotate a key now: rotation on and due, and the
/// key enabled (a disabled key's rotation waits until it is enabled again,
/// as in AWS KMS; a key pending deletion is never rotated).
pub fn due(state: KeyState, schedule: Option<&RotationSchedule>, now: OffsetDateTime) -> bool {
    state == KeyState::Enabled && schedule.is_some_and(|s| s.is_due(now))
}

/// The schedule after EnableKeyRotation (`Some`) or DisableKeyRotation
/// (`None`): enabling again with the period a key already has keeps its
/// next rotation date, so a repeated request changes nothing; a new period
/// starts from now.
pub fn merged(
    existing: Option<RotationSchedule>,
    requested: Option<RotationSchedule>,
) -> Option<RotationSchedule> {
    match (existing, requested) {
        (Some(old), Some(new)) if old.period_secs == new.period_secs => Some(old),
        (_, requested) => requested,
    }
}

/// The period a request asks for: `days` or `secs` (at most one non-zero;
/// neither means the default of 365 days), within `[min, 2560 days]`.
pub fn requested_period(days: u32, secs: u64, min: Duration) -> Result<Duration, KmsError> {
    let max_secs = u64::from(MAX_ROTATION_PERIOD_DAYS) * SECS_PER_DAY;
    let (period, asked) = match (days, secs) {
        (0, 0) => (
            u64::from(DEFAULT_ROTATION_PERIOD_DAYS) * SECS_PER_DAY,
            format!("{DEFAULT_ROTATION_PERIOD_DAYS} days (the default)"),
        ),
        (d, 0) => (u64::from(d) * SECS_PER_DAY, format!("{d} days")),
        (0, s) => (s, format!("{s} seconds")),
        (_, _) => {
            return Err(KmsError::InvalidArgument(
                "give rotation_period_in_days or rotation_period_seconds, not both".into(),
            ));
        }
    };
    if period < min.as_secs() || period > max_secs {
        return Err(KmsError::InvalidArgument(format!(
            "the rotation period is {asked}; it must be between {} and {MAX_ROTATION_PERIOD_DAYS} days",
            describe_min(min)
        )));
    }
    Ok(Duration::from_secs(period))
}

/// The configured minimum as a reader expects it: whole days as days.
fn describe_min(min: Duration) -> String {
    let secs = min.as_secs();
    if secs.is_multiple_of(SECS_PER_DAY) {
        format!("{}", secs / SECS_PER_DAY)
    } else {
        format!("{secs} seconds ({} days)", secs / SECS_PER_DAY)
    }
}

/// Automatic and conditional rotation, as every backend provides them.
pub trait Rotation: Send + Sync {
    /// Adds a version if the key's current version is still
    /// `expected_current_version`; `None` if it is not (someone else
    /// rotated first). Several kmsd calling this at once for the same
    /// version rotate once.
    fn rotate_key_if_current(
        &self,
        key_id: &KeyId,
        expected_current_version: u32,
    ) -> impl Future<Output = Result<Option<KeyMetadata>, KmsError>> + Send;

    /// Rotates the key if its schedule is due at `now` (see [`due`]) and
    /// moves the schedule one period on; `None` if it was not due (or
    /// another kmsd is rotating it, or has just done so).
    fn rotate_key_if_due(
        &self,
        key_id: &KeyId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<KeyMetadata>, KmsError>> + Send;

    /// Sets (`Some`) or clears (`None`) the key's schedule, as [`merged`]
    /// with the one it has. Setting is refused while the key is pending
    /// deletion; clearing an absent one is a no-op.
    fn set_rotation(
        &self,
        key_id: &KeyId,
        schedule: Option<RotationSchedule>,
    ) -> impl Future<Output = Result<KeyMetadata, KmsError>> + Send;

    /// The keys whose rotation looks due at `now`, for the sweep (which
    /// confirms each with [`Self::rotate_key_if_due`]).
    fn keys_due_for_rotation(
        &self,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Vec<KeyId>, KmsError>> + Send;
}

impl Rotation for Backend {
    async fn rotate_key_if_current(
        &self,
        key_id: &KeyId,
        expected_current_version: u32,
    ) -> Result<Option<KeyMetadata>, KmsError> {
        dispatch_async!(self, b => b.rotate_key_if_current(key_id, expected_current_version))
    }
    async fn rotate_key_if_due(
        &self,
        key_id: &KeyId,
        now: OffsetDateTime,
    ) -> Result<Option<KeyMetadata>, KmsError> {
        dispatch_async!(self, b => b.rotate_key_if_due(key_id, now))
    }
    async fn set_rotation(
        &self,
        key_id: &KeyId,
        schedule: Option<RotationSchedule>,
    ) -> Result<KeyMetadata, KmsError> {
        dispatch_async!(self, b => b.set_rotation(key_id, schedule))
    }
    async fn keys_due_for_rotation(&self, now: OffsetDateTime) -> Result<Vec<KeyId>, KmsError> {
        dispatch_async!(self, b => b.keys_due_for_rotation(now))
    }
}

/// The refusal of a schedule change on a key pending deletion.
pub(crate) fn refuse_pending(
    key_id: &KeyId,
    state: KeyState,
    enable: bool,
) -> Result<(), KmsError> {
    if state == KeyState::PendingDeletion && enable {
        return Err(KmsError::InvalidStateTransition {
            key_id: key_id.clone(),
            state: state.as_str(),
            action: "enable automatic rotation of",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(90 * SECS_PER_DAY);

    #[test]
    fn periods_follow_aws_ranges_and_the_configured_minimum() {
        let days = |d: u64| Duration::from_secs(d * SECS_PER_DAY);
        assert_eq!(requested_period(0, 0, MIN).unwrap(), days(365));
        assert_eq!(requested_period(90, 0, MIN).unwrap(), days(90));
        assert_eq!(requested_period(2560, 0, MIN).unwrap(), days(2560));
        for (d, s) in [(89, 0), (2561, 0), (0, 60), (1, 1)] {
            assert!(
                matches!(
                    requested_period(d, s, MIN),
                    Err(KmsError::InvalidArgument(_))
                ),
                "{d} {s}"
            );
        }
        let err = requested_period(89, 0, MIN).unwrap_err().to_string();
        assert!(
            err.contains("89 days") && err.contains("between 90 and 2560"),
            "{err}"
        );
        let short = Duration::from_secs(2);
        assert_eq!(requested_period(0, 2, short).unwrap(), short);
        let err = requested_period(0, 1, short).unwrap_err().to_string();
        assert!(err.contains("between 2 seconds (0 days) and 2560"), "{err}");
    }

    #[test]
    fn schedules_move_on_from_the_rotation_not_the_missed_date() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let s = RotationSchedule::starting(t0, Duration::from_secs(10));
        assert!(!s.is_due(t0 + Duration::from_secs(9)));
        assert!(s.is_due(t0 + Duration::from_secs(10)));
        let late = t0 + Duration::from_secs(95);
        assert_eq!(
            s.after_rotation(late).next_rotation,
            late + Duration::from_secs(10)
        );
        assert!(due(KeyState::Enabled, Some(&s), late));
        assert!(!due(KeyState::Disabled, Some(&s), late));
        assert!(!due(KeyState::PendingDeletion, Some(&s), late));
        assert!(!due(KeyState::Enabled, None, late));
        let other = RotationSchedule::starting(late, Duration::from_secs(20));
        assert_eq!(merged(Some(s), Some(s.after_rotation(late))), Some(s));
        assert_eq!(merged(Some(s), Some(other)), Some(other));
        assert_eq!(merged(Some(s), None), None);
    }
}
