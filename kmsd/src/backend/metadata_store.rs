//! What a backend keeps about keys besides their material and state:
//! description and tag changes, and aliases. A trait of its own beside
//! [`KeyBackend`](super::KeyBackend), with the same enum dispatch.

use std::future::Future;

use super::{Backend, KeyMetadata, MetadataChange};
use crate::{
    alias::{AliasEntry, AliasName, AliasWrite},
    error::KmsError,
    key_id::KeyId,
};

/// Metadata changes and aliases, as every backend provides them.
pub trait MetadataStore: Send + Sync {
    /// Changes a key's description or tags.
    fn update_metadata(
        &self,
        key_id: &KeyId,
        change: &MetadataChange,
    ) -> impl Future<Output = Result<KeyMetadata, KmsError>> + Send;

    /// Creates an alias or points it at another key.
    fn put_alias(
        &self,
        name: &AliasName,
        target: &KeyId,
        write: AliasWrite,
    ) -> impl Future<Output = Result<AliasEntry, KmsError>> + Send;

    /// Deletes an alias.
    fn delete_alias(&self, name: &AliasName) -> impl Future<Output = Result<(), KmsError>> + Send;

    /// Every alias, by name.
    fn list_aliases(&self) -> impl Future<Output = Result<Vec<AliasEntry>, KmsError>> + Send;

    /// The key an alias points at now.
    fn resolve_alias(
        &self,
        name: &AliasName,
    ) -> impl Future<Output = Result<KeyId, KmsError>> + Send;
}

impl MetadataStore for Backend {
    async fn update_metadata(
        &self,
        key_id: &KeyId,
        change: &MetadataChange,
    ) -> Result<KeyMetadata, KmsError> {
        dispatch_async!(self, b => b.update_metadata(key_id, change))
    }
    async fn put_alias(
        &self,
        name: &AliasName,
        target: &KeyId,
        write: AliasWrite,
    ) -> Result<AliasEntry, KmsError> {
        dispatch_async!(self, b => b.put_alias(name, target, write))
    }
    async fn delete_alias(&self, name: &AliasName) -> Result<(), KmsError> {
        dispatch_async!(self, b => b.delete_alias(name))
    }
    async fn list_aliases(&self) -> Result<Vec<AliasEntry>, KmsError> {
        dispatch_async!(self, b => b.list_aliases())
    }
    async fn resolve_alias(&self, name: &AliasName) -> Result<KeyId, KmsError> {
        dispatch_async!(self, b => b.resolve_alias(name))
    }
}

impl Backend {
    /// Forgets what the backend caches about `alias` (after a change made
    /// through another backend instance of the same store).
    pub fn forget_alias(&self, alias: &AliasName) {
        match self {
            Backend::Local(_) => {}
            Backend::Vault(vault) => vault.forget_alias(alias),
        }
    }
}
