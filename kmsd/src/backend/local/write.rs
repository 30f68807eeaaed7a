//! Changes to the key directory: a new version's material, writing a
//! key's file before its new state becomes visible, and the deletion sweep.
//! Every change runs under the backend's writer lock.

use super::*;

impl LocalBackend {
    pub(super) fn new_version(
        &self,
        key_id: &KeyId,
        version: u32,
    ) -> Result<Arc<LocalVersion>, KmsError> {
        let material = Zeroizing::new(crypto::random_array::<KEY_LEN>().map_err(internal)?);
        self.version_of(key_id, version, material)
    }

    /// A version holding `material` (generated, or imported by a caller),
    /// stored as the directory stores every version: sealed or plain.
    pub(super) fn version_of(
        &self,
        key_id: &KeyId,
        version: u32,
        material: Zeroizing<[u8; KEY_LEN]>,
    ) -> Result<Arc<LocalVersion>, KmsError> {
        let stored = match &self.sealer {
            Some(sealer) => Stored::Sealed(
                sealer
                    .seal(key_id, version, &material)
                    .map_err(internal)?
                    .into_boxed_slice(),
            ),
            None => Stored::Plain(material),
        };
        // The wrapping key is derived on the version's first use.
        Ok(Arc::new(LocalVersion::new(stored)))
    }

    /// A new key whose only version is `version`.
    pub(super) fn first_version(
        &self,
        new: NewKey,
        version: Arc<LocalVersion>,
        origin: KeyOrigin,
    ) -> LocalKey {
        let now = self.clock.now();
        LocalKey {
            meta: KeyMetadata {
                key_id: new.key_id,
                state: KeyState::Enabled,
                description: new.description,
                created_at: now,
                deletion_date: None,
                current_version: 1,
                versions: vec![VersionInfo {
                    version: 1,
                    created_at: now,
                }],
                backend: BackendKind::Local,
                tags: new.tags,
                rotation: None,
                origin,
                usage: Default::default(),
            },
            versions: vec![version],
        }
    }

    /// Writes the key's file, then makes the new state visible.
    pub(super) async fn commit(&self, key: LocalKey) -> Result<KeyMetadata, KmsError> {
        let json = Zeroizing::new(
            serde_json::to_vec_pretty(&to_file(&key))
                .map_err(|e| KmsError::Internal(format!("encoding a key file: {e}")))?,
        );
        let dir = self.dir.clone();
        let name = format!("{}{KEY_FILE_SUFFIX}", key.meta.key_id);
        let lock = Arc::clone(&self.lock);
        tokio::task::spawn_blocking(move || {
            let _held = lock;
            file::write_atomic(&dir, &name, &json)
        })
        .await
        .map_err(|e| KmsError::Internal(format!("key writer task failed: {e}")))?
        .map_err(|e| {
            KmsError::Internal(format!("writing key file in {}: {e}", self.dir.display()))
        })?;
        let meta = key.meta.clone();
        self.keys
            .put(meta.key_id.clone(), Arc::new(Entry::Ready(Arc::new(key))));
        Ok(meta)
    }

    /// The deletion sweep; `destroyed` collects the keys as they go.
    pub(super) async fn sweep(
        &self,
        now: OffsetDateTime,
        destroyed: &mut Vec<KeyId>,
    ) -> Result<(), KmsError> {
        let pending = |meta: &KeyMetadata| {
            meta.state == KeyState::PendingDeletion && meta.deletion_date.is_some_and(|d| d <= now)
        };
        // Chosen before taking the writer lock: the first sweep may read
        // every key file, which must not hold up CreateKey meanwhile. Each
        // choice is checked again under the lock.
        let candidates = self.select_keys(pending).await;
        let _writing = self.writer.lock().await;
        let due = candidates
            .into_iter()
            .filter(|key_id| self.metadata(key_id).is_ok_and(|meta| pending(&meta)));
        for key_id in due {
            let dir = self.dir.clone();
            let path = file::key_path(&self.dir, &key_id);
            let lock = Arc::clone(&self.lock);
            tokio::task::spawn_blocking(move || {
                let _held = lock;
                file::remove_durably(&dir, &path)
            })
            .await
            .map_err(|e| KmsError::Internal(format!("key remover task failed: {e}")))?
            .map_err(|e| KmsError::Internal(format!("removing key file of {key_id}: {e}")))?;
            self.keys.remove(&key_id);
            tracing::info!(%key_id, "key destroyed: its deletion window has passed");
            destroyed.push(key_id);
        }
        Ok(())
    }
}
