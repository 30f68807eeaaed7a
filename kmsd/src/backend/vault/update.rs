//! Metadata changes (description, tags) of Vault keys: a check-and-set
//! rewrite of the key's KV record, as every state change is, so two kmsd
//! changing one key never lose an update.

use super::{
    VaultBackend,
    kv::{CAS_ATTEMPTS, Written},
    metadata::unreadable,
};
use crate::{
    alias::{AliasEntry, AliasName, AliasWrite},
    backend::{KeyMetadata, MetadataChange, MetadataStore},
    error::KmsError,
    key_id::KeyId,
};

impl VaultBackend {
    /// Forgets the cached resolution of `alias`.
    pub fn forget_alias(&self, alias: &AliasName) {
        self.aliases.remember(alias, None);
    }

    /// The key's KV record and its version, read for a check-and-set
    /// change (state or metadata).
    pub(super) async fn record_for_change(
        &self,
        key_id: &KeyId,
    ) -> Result<super::kv::Versioned, KmsError> {
        self.keys
            .records
            .read(key_id)
            .await
            .map_err(|e| unreadable(key_id, e))?
            .ok_or_else(|| KmsError::KeyNotFound(key_id.clone()))
    }

    pub(super) async fn update_record(
        &self,
        key_id: &KeyId,
        change: &MetadataChange,
    ) -> Result<KeyMetadata, KmsError> {
        for _ in 0..CAS_ATTEMPTS {
            let current = self.record_for_change(key_id).await?;
            let mut record = current.record;
            let changed = change.apply(
                key_id,
                record.state,
                &mut record.description,
                &mut record.tags,
            )?;
            if !changed || self.keys.records.write(&record, current.version).await? == Written::Done
            {
                return self.keys.describe_fresh(key_id).await;
            }
        }
        Err(KmsError::BackendUnavailable {
            backend: "vault",
            detail: format!("key {key_id} kept changing under concurrent updates; try again"),
        })
    }
}

impl MetadataStore for VaultBackend {
    async fn update_metadata(
        &self,
        key_id: &KeyId,
        change: &MetadataChange,
    ) -> Result<KeyMetadata, KmsError> {
        self.update_record(key_id, change).await
    }

    async fn put_alias(
        &self,
        name: &AliasName,
        target: &KeyId,
        write: AliasWrite,
    ) -> Result<AliasEntry, KmsError> {
        self.aliases
            .put(name, target, write, self.clock.as_ref())
            .await
    }

    async fn delete_alias(&self, name: &AliasName) -> Result<(), KmsError> {
        self.aliases.delete(name).await
    }

    async fn list_aliases(&self) -> Result<Vec<AliasEntry>, KmsError> {
        self.aliases.list().await
    }

    async fn resolve_alias(&self, name: &AliasName) -> Result<KeyId, KmsError> {
        self.aliases.resolve(name).await
    }
}
