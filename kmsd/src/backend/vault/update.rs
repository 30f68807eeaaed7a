//! Metadata changes (description, tags) of Vault keys: a check-and-set
//! rewrite of the key's KV record, as every state change is, so two kmsd
//! changing one key never lose an update.

use super::{CAS_ATTEMPTS, VaultBackend, kv::Written, metadata::unreadable};
use crate::{
    alias::{AliasEntry, AliasName, AliasWrite},
    backend::{KeyMetadata, MetadataChange, MetadataStore},
    error::KmsError,
    key_id::KeyId,
};

impl VaultBackend {
    /// The key's KV record and its version, read for a check-and-set
    /// change (state or metadata).
    pub(super) async fn record_for_change(
        &self,
        key_id: &KeyId,
    ) -> Result<super::kv::Versioned, KmsError> {
        self.records
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
            if !changed || self.records.write(&record, current.version).await? == Written::Done {
                return self.describe_fresh(key_id).await;
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
        self.put_alias_record(name, target, write).await
    }

    async fn delete_alias(&self, name: &AliasName) -> Result<(), KmsError> {
        self.delete_alias_record(name).await
    }

    async fn list_aliases(&self) -> Result<Vec<AliasEntry>, KmsError> {
        self.list_alias_records().await
    }

    async fn resolve_alias(&self, name: &AliasName) -> Result<KeyId, KmsError> {
        self.resolve_alias_record(name).await
    }
}
