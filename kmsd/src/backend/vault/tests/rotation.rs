//! Conditional and scheduled rotation with two backends on one OpenBao,
//! as two kmsd would run: each rotation happens once, and a claim left by
//! a kmsd that stopped is taken over once it is stale.

use std::time::Duration;

use super::*;
use crate::{
    backend::{
        Rotation, RotationSchedule, StateChange,
        vault::kv::{RotationClaim, Written},
    },
    clock::Clock,
};

/// Two backends of one OpenBao sharing one manual clock, and a key `k`.
async fn two_backends(bao: &OpenBao, clock: &ManualClock) -> (VaultBackend, VaultBackend) {
    let auth = token_auth(&bao.root_token());
    let a = backend(bao, &auth, "", clock).await;
    let b = backend(bao, &auth, "", clock).await;
    create(&a, "k").await;
    (a, b)
}

/// Runs `call` on both backends at once; returns how many rotated.
async fn both<'a, F, Fut>(a: &'a VaultBackend, b: &'a VaultBackend, call: F) -> usize
where
    F: Fn(&'a VaultBackend) -> Fut,
    Fut: std::future::Future<Output = Result<Option<KeyMetadata>, KmsError>>,
{
    let (x, y) = tokio::join!(call(a), call(b));
    [x.unwrap(), y.unwrap()].iter().flatten().count()
}

#[tokio::test]
async fn two_backends_rotate_once_per_condition() {
    let bao = OpenBao::dev().await;
    let clock = clock();
    let (a, b) = two_backends(&bao, &clock).await;
    let k = id("k");

    // "If still at version 1", from both at once: one rotation.
    let rotated = both(&a, &b, |x| x.rotate_key_if_current(&k, 1)).await;
    assert_eq!(rotated, 1);
    assert_eq!(a.describe_key(&k).await.unwrap().current_version, 2);
    assert!(a.rotate_key_if_current(&k, 1).await.unwrap().is_none());

    // A schedule: not due before its date; due, one rotation of the two.
    let now = clock.now();
    let schedule = RotationSchedule::starting(now, Duration::from_secs(10));
    let meta = a.set_rotation(&k, Some(schedule)).await.unwrap();
    assert_eq!(meta.rotation, Some(schedule));
    assert!(b.keys_due_for_rotation(now).await.unwrap().is_empty());
    assert!(b.rotate_key_if_due(&k, now).await.unwrap().is_none());
    clock.advance(time::Duration::seconds(10));
    let due = clock.now();
    // A (whose cache holds the schedule it set) lists the key; B may still
    // cache the key from before, for up to the metadata TTL.
    assert_eq!(a.keys_due_for_rotation(due).await.unwrap(), vec![k.clone()]);
    let rotated = both(&a, &b, |x| x.rotate_key_if_due(&k, due)).await;
    assert_eq!(rotated, 1);
    let meta = b.describe_key(&k).await.unwrap();
    assert_eq!(meta.current_version, 3);
    assert_eq!(meta.rotation, Some(schedule.after_rotation(due)));
    assert!(
        a.rotation_claim_of(&k).await.is_none(),
        "the claim is released"
    );

    // Enabling again with the same period keeps the date; a new period
    // starts from now.
    let again = RotationSchedule::starting(due, Duration::from_secs(10));
    assert_eq!(
        a.set_rotation(&k, Some(again)).await.unwrap().rotation,
        meta.rotation
    );
    let longer = RotationSchedule::starting(due, Duration::from_secs(20));
    assert_eq!(
        a.set_rotation(&k, Some(longer)).await.unwrap().rotation,
        Some(longer)
    );
    assert_eq!(a.set_rotation(&k, None).await.unwrap().rotation, None);
}

#[tokio::test]
async fn a_stale_claim_is_taken_over_and_a_finished_rotation_not_repeated() {
    let bao = OpenBao::dev().await;
    let clock = clock();
    let (a, b) = two_backends(&bao, &clock).await;
    let k = id("k");
    let schedule = RotationSchedule::starting(clock.now(), Duration::from_secs(10));
    a.set_rotation(&k, Some(schedule)).await.unwrap();
    clock.advance(time::Duration::seconds(10));

    // A kmsd claimed at version 1 and stopped before rotating: the claim
    // holds others off for five minutes, then B rotates.
    a.plant_claim(&k, clock.now(), 1).await;
    assert!(
        b.rotate_key_if_due(&k, clock.now())
            .await
            .unwrap()
            .is_none()
    );
    clock.advance(time::Duration::minutes(5));
    let meta = b.rotate_key_if_due(&k, clock.now()).await.unwrap().unwrap();
    assert_eq!(meta.current_version, 2);
    assert!(b.rotation_claim_of(&k).await.is_none());

    // A kmsd claimed at version 2, rotated (Transit is at 3) and stopped
    // before releasing: the taker finishes the record without rotating.
    clock.advance(time::Duration::seconds(10));
    a.plant_claim(&k, clock.now(), 2).await;
    a.rotate_key(&k).await.unwrap();
    clock.advance(time::Duration::minutes(5));
    let now = clock.now();
    let meta = b.rotate_key_if_due(&k, now).await.unwrap().unwrap();
    assert_eq!(meta.current_version, 3, "not rotated twice");
    assert_eq!(
        meta.rotation.unwrap().next_rotation,
        now + schedule.period()
    );
    assert!(b.rotation_claim_of(&k).await.is_none());
}

#[tokio::test]
async fn rotation_follows_the_key_state() {
    let bao = OpenBao::dev().await;
    let clock = clock();
    let (a, _b) = two_backends(&bao, &clock).await;
    let k = id("k");
    let schedule = RotationSchedule::starting(clock.now(), Duration::from_secs(10));
    a.set_rotation(&k, Some(schedule)).await.unwrap();
    clock.advance(time::Duration::seconds(10));
    // A disabled key waits; enabled again, it is due at once.
    a.change_state(&k, StateChange::Disable).await.unwrap();
    assert!(
        a.keys_due_for_rotation(clock.now())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        a.rotate_key_if_due(&k, clock.now())
            .await
            .unwrap()
            .is_none()
    );
    a.change_state(&k, StateChange::Enable).await.unwrap();
    assert!(
        a.rotate_key_if_due(&k, clock.now())
            .await
            .unwrap()
            .is_some()
    );
    // Pending deletion: no schedule can be set, nothing rotates.
    let deletion_date = clock.now() + time::Duration::days(7);
    a.change_state(&k, StateChange::ScheduleDeletion { deletion_date })
        .await
        .unwrap();
    assert!(matches!(
        a.set_rotation(&k, Some(schedule)).await,
        Err(KmsError::InvalidStateTransition { .. })
    ));
    assert!(matches!(
        a.rotate_key_if_current(&k, 2).await,
        Err(KmsError::InvalidStateTransition { .. })
    ));
    assert!(a.set_rotation(&k, None).await.is_ok());
    assert!(matches!(
        a.rotate_key_if_current(&id("missing"), 1).await,
        Err(KmsError::KeyNotFound(_))
    ));
}

impl VaultBackend {
    /// The claim in the key's record, if any.
    async fn rotation_claim_of(&self, key_id: &KeyId) -> Option<RotationClaim> {
        self.keys
            .records
            .read(key_id)
            .await
            .unwrap()
            .unwrap()
            .record
            .rotation_claim
    }

    /// Writes a claim as a kmsd that then stopped would have left it.
    async fn plant_claim(&self, key_id: &KeyId, at: OffsetDateTime, from_version: u32) {
        let current = self.keys.records.read(key_id).await.unwrap().unwrap();
        let mut record = current.record;
        record.rotation_claim = Some(RotationClaim { at, from_version });
        let written = self
            .keys
            .records
            .write(&record, current.version)
            .await
            .unwrap();
        assert_eq!(written, Written::Done);
    }
}
