//! Metadata changes (description, tags) of local keys, and the
//! [`MetadataStore`] of the local backend: the key file is
//! rewritten as for every other change, atomically and durably, before
//! the new metadata becomes visible.

use super::{LocalBackend, LocalKey};
use crate::{
    alias::{AliasEntry, AliasName, AliasWrite},
    backend::{KeyMetadata, MetadataChange, MetadataStore},
    error::KmsError,
    key_id::KeyId,
};

impl LocalBackend {
    pub(super) async fn update_locally(
        &self,
        key_id: &KeyId,
        change: &MetadataChange,
    ) -> Result<KeyMetadata, KmsError> {
        let _writing = self.writer.lock().await;
        let old = self.key(key_id)?;
        let mut meta = old.meta.clone();
        if !change.apply(key_id, meta.state, &mut meta.description, &mut meta.tags)? {
            return Ok(meta);
        }
        self.commit(LocalKey {
            meta,
            versions: old.versions.clone(),
        })
        .await
    }
}

impl MetadataStore for LocalBackend {
    async fn update_metadata(
        &self,
        key_id: &KeyId,
        change: &MetadataChange,
    ) -> Result<KeyMetadata, KmsError> {
        self.update_locally(key_id, change).await
    }

    async fn put_alias(
        &self,
        name: &AliasName,
        target: &KeyId,
        write: AliasWrite,
    ) -> Result<AliasEntry, KmsError> {
        self.put_alias_locally(name, target, write).await
    }

    async fn delete_alias(&self, name: &AliasName) -> Result<(), KmsError> {
        self.delete_alias_locally(name).await
    }

    async fn list_aliases(&self) -> Result<Vec<AliasEntry>, KmsError> {
        self.list_aliases_locally()
    }

    async fn resolve_alias(&self, name: &AliasName) -> Result<KeyId, KmsError> {
        self.resolve_alias_locally(name)
    }
}
