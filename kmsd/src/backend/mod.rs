//! The backend contract: what every key store provides, and the rules they
//! all share (key states and their transitions).
//!
//! Backends form a closed set, so they are dispatched through the
//! [`Backend`] enum rather than boxed trait objects.

pub mod capabilities;
mod key_metadata;
pub mod local;
pub mod update;
pub mod vault;

use std::future::Future;

use kms_core::{DataKey, SecretBytes};
use time::OffsetDateTime;

pub use self::{
    key_metadata::{KeyMetadata, KeyOrigin, KeyState, NewKey, StateChange, VersionInfo},
    metadata_store::MetadataStore,
    rotation::{Rotation, RotationSchedule},
    update::MetadataChange,
};
use crate::{
    blob::{BackendKind, ParsedBlob},
    context::EncryptionContext,
    error::KmsError,
    key_id::KeyId,
};

/// A freshly sealed blob.
#[derive(Debug)]
pub struct Sealed {
    /// The blob.
    pub blob: Vec<u8>,
    /// The key that sealed it.
    pub key_id: KeyId,
    /// Its version.
    pub key_version: u32,
}

/// A fresh data key and its sealed form.
#[derive(Debug)]
pub struct GeneratedKey {
    /// The plaintext data key.
    pub key: DataKey,
    /// The sealed form.
    pub sealed: Sealed,
}

/// An opened blob.
#[derive(Debug)]
pub struct Opened {
    /// The plaintext.
    pub plaintext: SecretBytes,
    /// The key that had sealed it.
    pub key_id: KeyId,
    /// Its version.
    pub key_version: u32,
}

/// What a deletion sweep did: the keys it destroyed, and the error that
/// stopped it, if one did (the keys destroyed before it are still listed,
/// so each can be audited).
#[derive(Debug, Default)]
pub struct Sweep {
    /// Destroyed keys, in the order they went.
    pub destroyed: Vec<KeyId>,
    /// Why the sweep stopped early.
    pub failed: Option<KmsError>,
}

impl Sweep {
    /// The destroyed keys, or the error if the sweep stopped early.
    pub fn into_result(self) -> Result<Vec<KeyId>, KmsError> {
        match self.failed {
            Some(e) => Err(e),
            None => Ok(self.destroyed),
        }
    }
}

/// What every backend provides.
pub trait KeyBackend: Send + Sync {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// Generates a 32-byte data key and seals it under the key's current
    /// version.
    fn generate_data_key(
        &self,
        key_id: &KeyId,
        context: &EncryptionContext,
    ) -> impl Future<Output = Result<GeneratedKey, KmsError>> + Send;

    /// Seals `plaintext` under the key's current version.
    fn encrypt(
        &self,
        key_id: &KeyId,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> impl Future<Output = Result<Sealed, KmsError>> + Send;

    /// Opens a blob this backend sealed.
    fn decrypt(
        &self,
        blob: &ParsedBlob<'_>,
        context: &EncryptionContext,
    ) -> impl Future<Output = Result<Opened, KmsError>> + Send;

    /// Creates a key with one version.
    fn create_key(&self, new: NewKey)
    -> impl Future<Output = Result<KeyMetadata, KmsError>> + Send;

    /// Creates a key whose version 1 is `material`, imported by a caller
    /// (origin [`KeyOrigin::External`]).
    fn import_key(
        &self,
        new: NewKey,
        material: zeroize::Zeroizing<[u8; crate::crypto::KEY_LEN]>,
    ) -> impl Future<Output = Result<KeyMetadata, KmsError>> + Send;

    /// Describes a key.
    fn describe_key(
        &self,
        key_id: &KeyId,
    ) -> impl Future<Output = Result<KeyMetadata, KmsError>> + Send;

    /// Up to `limit` keys with ids greater than `after`, in id order.
    fn list_keys(
        &self,
        after: Option<&KeyId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<KeyMetadata>, KmsError>> + Send;

    /// Adds a version and makes it current.
    fn rotate_key(
        &self,
        key_id: &KeyId,
    ) -> impl Future<Output = Result<KeyMetadata, KmsError>> + Send;

    /// Changes a key's state.
    fn change_state(
        &self,
        key_id: &KeyId,
        change: StateChange,
    ) -> impl Future<Output = Result<KeyMetadata, KmsError>> + Send;

    /// Destroys every key whose deletion date is at or before `now`.
    fn destroy_due_keys(&self, now: OffsetDateTime) -> impl Future<Output = Sweep> + Send;

    /// Whether `key_id` may be used now (it exists and is enabled), by the
    /// state this backend holds or caches: what a hit of the service's
    /// data-key cache is checked against.
    fn key_usable(&self, key_id: &KeyId) -> impl Future<Output = Result<(), KmsError>> + Send;

    /// Whether the backend can serve requests now.
    fn health(&self) -> impl Future<Output = Result<(), KmsError>> + Send;
}

/// The configured backend.
#[derive(Debug)]
pub enum Backend {
    /// Key files on disk.
    Local(local::LocalBackend),
    /// Vault or OpenBao: Transit keys, metadata in KV v2.
    Vault(vault::VaultBackend),
}

macro_rules! dispatch {
    ($self:ident, $b:ident => $call:expr) => {
        match $self {
            Backend::Local($b) => $call,
            Backend::Vault($b) => $call,
        }
    };
}

/// As `dispatch!` for an async call, with the Vault arm's future boxed: it
/// holds an HTTP exchange and is kilobytes large (4.6 KiB for
/// GenerateDataKey), and inline it would set the size of every request's
/// future, which is moved into a box per request and memcpy'd whole. One
/// allocation next to a network round trip costs nothing.
macro_rules! dispatch_async {
    ($self:ident, $b:ident => $call:expr) => {
        match $self {
            Backend::Local($b) => $call.await,
            Backend::Vault($b) => Box::pin($call).await,
        }
    };
}

// After the dispatch macros, which it uses.
mod metadata_store;
pub mod rotation;
// Usage figures' persistence (issue 20); after the dispatch macros too.
mod usage;
pub use self::usage::UsageStore;

impl Backend {
    /// Drops the backend's own caches (key metadata); returns how many
    /// entries there were. The local backend holds its keys, not a cache.
    pub fn clear_cache(&self) -> usize {
        match self {
            Backend::Local(_) => 0,
            Backend::Vault(vault) => vault.clear_cache(),
        }
    }

    /// Status settings that change while kmsd runs (the Vault node that
    /// serves, each node's health); the static ones are in
    /// `Active::summary`.
    pub fn live_summary(&self) -> Vec<(&'static str, String)> {
        match self {
            Backend::Local(_) => Vec::new(),
            Backend::Vault(vault) => vault.node_summary(),
        }
    }

    /// How long the backend's credentials have left, where they expire.
    pub fn credential_ttl(&self) -> Option<std::time::Duration> {
        match self {
            Backend::Local(_) => None,
            Backend::Vault(vault) => vault.token_ttl(),
        }
    }

    /// Why the backend cannot be reached, while its circuit breaker is
    /// open. The local backend has nothing to reach.
    pub fn unavailable(&self) -> Option<crate::breaker::Open> {
        match self {
            Backend::Local(_) => None,
            Backend::Vault(vault) => vault.unavailable(),
        }
    }

    /// How long the backend serves on its own while its store cannot be
    /// reached (Vault's intermediate keys), if at all.
    pub fn offline_window(&self) -> Option<std::time::Duration> {
        match self {
            Backend::Local(_) => None,
            Backend::Vault(vault) => vault.offline_window(),
        }
    }

    /// Forgets what the backend caches about `key_id` (after a state change
    /// made through another backend instance of the same store).
    pub fn forget_key(&self, key_id: &KeyId) {
        match self {
            Backend::Local(_) => {}
            Backend::Vault(vault) => vault.forget_key(key_id),
        }
    }
}

impl KeyBackend for Backend {
    fn kind(&self) -> BackendKind {
        dispatch!(self, b => b.kind())
    }
    async fn generate_data_key(
        &self,
        key_id: &KeyId,
        context: &EncryptionContext,
    ) -> Result<GeneratedKey, KmsError> {
        dispatch_async!(self, b => b.generate_data_key(key_id, context))
    }
    async fn encrypt(
        &self,
        key_id: &KeyId,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Sealed, KmsError> {
        dispatch_async!(self, b => b.encrypt(key_id, plaintext, context))
    }
    async fn decrypt(
        &self,
        blob: &ParsedBlob<'_>,
        context: &EncryptionContext,
    ) -> Result<Opened, KmsError> {
        dispatch_async!(self, b => b.decrypt(blob, context))
    }
    async fn create_key(&self, new: NewKey) -> Result<KeyMetadata, KmsError> {
        dispatch_async!(self, b => b.create_key(new))
    }
    async fn import_key(
        &self,
        new: NewKey,
        material: zeroize::Zeroizing<[u8; crate::crypto::KEY_LEN]>,
    ) -> Result<KeyMetadata, KmsError> {
        dispatch_async!(self, b => b.import_key(new, material))
    }
    async fn describe_key(&self, key_id: &KeyId) -> Result<KeyMetadata, KmsError> {
        dispatch_async!(self, b => b.describe_key(key_id))
    }
    async fn list_keys(
        &self,
        after: Option<&KeyId>,
        limit: usize,
    ) -> Result<Vec<KeyMetadata>, KmsError> {
        dispatch_async!(self, b => b.list_keys(after, limit))
    }
    async fn rotate_key(&self, key_id: &KeyId) -> Result<KeyMetadata, KmsError> {
        dispatch_async!(self, b => b.rotate_key(key_id))
    }
    async fn change_state(
        &self,
        key_id: &KeyId,
        change: StateChange,
    ) -> Result<KeyMetadata, KmsError> {
        dispatch_async!(self, b => b.change_state(key_id, change))
    }
    async fn destroy_due_keys(&self, now: OffsetDateTime) -> Sweep {
        dispatch_async!(self, b => b.destroy_due_keys(now))
    }
    async fn key_usable(&self, key_id: &KeyId) -> Result<(), KmsError> {
        dispatch_async!(self, b => b.key_usable(key_id))
    }
    async fn health(&self) -> Result<(), KmsError> {
        dispatch_async!(self, b => b.health())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_machine_matches_the_documented_table() {
        use KeyState::*;
        let id = KeyId::parse("k").unwrap();
        let when = OffsetDateTime::UNIX_EPOCH;
        let del = StateChange::ScheduleDeletion {
            deletion_date: when,
        };
        let table = [
            (StateChange::Enable, Enabled, Some(Enabled)),
            (StateChange::Enable, Disabled, Some(Enabled)),
            (StateChange::Enable, PendingDeletion, None),
            (StateChange::Disable, Enabled, Some(Disabled)),
            (StateChange::Disable, Disabled, Some(Disabled)),
            (StateChange::Disable, PendingDeletion, None),
            (del, Enabled, Some(PendingDeletion)),
            (del, Disabled, Some(PendingDeletion)),
            (del, PendingDeletion, None),
            (StateChange::CancelDeletion, Enabled, None),
            (StateChange::CancelDeletion, Disabled, None),
            (StateChange::CancelDeletion, PendingDeletion, Some(Disabled)),
        ];
        for (change, from, to) in table {
            let got = change.apply(&id, from).ok().map(|(s, _)| s);
            assert_eq!(got, to, "{change:?} from {from:?}");
        }
        assert_eq!(del.apply(&id, Enabled).unwrap().1, Some(when));
    }
}
