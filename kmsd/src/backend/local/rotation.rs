//! Rotation of local keys: on demand, conditional and scheduled. Every
//! rotation runs under the backend's writer lock, so "only if still at
//! version n" and "only if due" are decided and written in one step; one
//! kmsd holds a key directory at a time (its lock file), so no other
//! process rotates behind it.

use super::*;
use crate::backend::rotation::{self, Rotation, RotationSchedule};

impl LocalBackend {
    /// `old` with one more version, made current. Refused while the key
    /// is pending deletion. Called under the writer lock.
    pub(super) fn with_new_version(
        &self,
        key_id: &KeyId,
        old: &LocalKey,
    ) -> Result<LocalKey, KmsError> {
        if old.meta.state == KeyState::PendingDeletion {
            return Err(KmsError::InvalidStateTransition {
                key_id: key_id.clone(),
                state: old.meta.state.as_str(),
                action: "rotate",
            });
        }
        let next = old.meta.current_version.checked_add(1).ok_or_else(|| {
            KmsError::InvalidArgument(format!("key {key_id} has reached its last version"))
        })?;
        let mut meta = old.meta.clone();
        meta.current_version = next;
        meta.versions.push(VersionInfo {
            version: next,
            created_at: self.clock.now(),
        });
        let mut versions = old.versions.clone();
        versions.push(self.new_version(key_id, next)?);
        Ok(LocalKey { meta, versions })
    }
}

impl Rotation for LocalBackend {
    async fn rotate_key_if_current(
        &self,
        key_id: &KeyId,
        expected_current_version: u32,
    ) -> Result<Option<KeyMetadata>, KmsError> {
        let _writing = self.writer.lock().await;
        let old = self.key(key_id)?;
        if old.meta.current_version != expected_current_version {
            return Ok(None);
        }
        let key = self.with_new_version(key_id, &old)?;
        self.commit(key).await.map(Some)
    }

    async fn rotate_key_if_due(
        &self,
        key_id: &KeyId,
        now: OffsetDateTime,
    ) -> Result<Option<KeyMetadata>, KmsError> {
        let _writing = self.writer.lock().await;
        let old = self.key(key_id)?;
        let Some(schedule) = old
            .meta
            .rotation
            .filter(|s| rotation::due(old.meta.state, Some(s), now))
        else {
            return Ok(None);
        };
        let mut key = self.with_new_version(key_id, &old)?;
        key.meta.rotation = Some(schedule.after_rotation(now));
        self.commit(key).await.map(Some)
    }

    async fn set_rotation(
        &self,
        key_id: &KeyId,
        schedule: Option<RotationSchedule>,
    ) -> Result<KeyMetadata, KmsError> {
        let _writing = self.writer.lock().await;
        let old = self.key(key_id)?;
        rotation::refuse_pending(key_id, old.meta.state, schedule.is_some())?;
        let schedule = rotation::merged(old.meta.rotation, schedule);
        if old.meta.rotation == schedule {
            return Ok(old.meta.clone());
        }
        let mut meta = old.meta.clone();
        meta.rotation = schedule;
        self.commit(LocalKey {
            meta,
            versions: old.versions.clone(),
        })
        .await
    }

    async fn keys_due_for_rotation(&self, now: OffsetDateTime) -> Result<Vec<KeyId>, KmsError> {
        // Reads unread keys' metadata only: see `lazy.rs`.
        Ok(self
            .select_keys(|meta| rotation::due(meta.state, meta.rotation.as_ref(), now))
            .await)
    }
}

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::PermissionsExt, time::Duration};

    use super::*;
    use crate::{backend::NewKey, clock::ManualClock};

    fn id(s: &str) -> KeyId {
        KeyId::parse(s).unwrap()
    }

    #[tokio::test]
    async fn scheduled_and_conditional_rotation_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let clock = ManualClock::new(OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap());
        let open = || {
            LocalBackend::open(
                LocalConfig {
                    key_dir: dir.path().to_owned(),
                    sealing: None,
                },
                Arc::new(clock.clone()),
            )
            .unwrap()
        };
        let backend = open();
        let k = id("k");
        backend
            .create_key(NewKey {
                key_id: k.clone(),
                description: String::new(),
                tags: Default::default(),
            })
            .await
            .unwrap();
        assert_eq!(
            backend
                .rotate_key_if_current(&k, 1)
                .await
                .unwrap()
                .map(|m| m.current_version),
            Some(2)
        );
        assert!(
            backend
                .rotate_key_if_current(&k, 1)
                .await
                .unwrap()
                .is_none()
        );

        let schedule = RotationSchedule::starting(clock.now(), Duration::from_secs(10));
        backend.set_rotation(&k, Some(schedule)).await.unwrap();
        assert!(
            backend
                .keys_due_for_rotation(clock.now())
                .await
                .unwrap()
                .is_empty()
        );
        clock.advance(time::Duration::seconds(10));
        let now = clock.now();
        assert_eq!(
            backend.keys_due_for_rotation(now).await.unwrap(),
            vec![k.clone()]
        );
        let meta = backend.rotate_key_if_due(&k, now).await.unwrap().unwrap();
        assert_eq!(meta.current_version, 3);
        assert_eq!(meta.rotation, Some(schedule.after_rotation(now)));
        assert!(backend.rotate_key_if_due(&k, now).await.unwrap().is_none());
        drop(backend);

        // The schedule is in the key file.
        let backend = open();
        assert_eq!(
            backend.describe_key(&k).await.unwrap().rotation,
            Some(schedule.after_rotation(now))
        );
        assert_eq!(backend.set_rotation(&k, None).await.unwrap().rotation, None);
        let deletion_date = now + time::Duration::days(7);
        backend
            .change_state(
                &k,
                crate::backend::StateChange::ScheduleDeletion { deletion_date },
            )
            .await
            .unwrap();
        assert!(matches!(
            backend.set_rotation(&k, Some(schedule)).await,
            Err(KmsError::InvalidStateTransition { .. })
        ));
    }
}
