//! The keys: a key's KV record and Transit key read together, cached, and
//! composed into [`KeyMetadata`]. [`Keys`] holds the two engines, the
//! metadata cache and the intermediate keys; sealing (`wrap`) and the
//! backend build on it, and it knows neither.

use std::time::Duration;

use super::{
    cache::{Cached, MetadataCache},
    error::VaultError,
    intermediate::Intermediates,
    kv::{KeyRecord, Records},
    transit::{Transit, TransitKey},
};
use crate::{
    backend::{KeyMetadata, KeyState},
    blob::BackendKind,
    error::KmsError,
    key_id::KeyId,
};

/// The engines a key lives in and what is cached about it.
#[derive(Debug)]
pub(super) struct Keys {
    pub(super) transit: Transit,
    pub(super) records: Records,
    pub(super) cache: MetadataCache,
    /// Intermediate-key caching, when on.
    pub(super) intermediates: Option<Box<Intermediates>>,
}

impl Keys {
    /// How long the backend can go on serving without reaching Vault: the
    /// intermediate-key TTL when that mode is on (an intermediate key
    /// wraps and unwraps for that long, under the key state last read).
    pub(super) fn offline_window(&self) -> Option<Duration> {
        self.intermediates.as_ref().map(|i| i.ttl())
    }

    /// Forgets the intermediate keys of `key_id` (all keys: `None`).
    pub(super) fn forget_intermediates(&self, key_id: Option<&KeyId>) {
        if let Some(intermediates) = &self.intermediates {
            intermediates.forget(key_id);
        }
    }

    /// Reads a key's record and Transit key now.
    pub(super) async fn load(&self, key_id: &KeyId) -> Result<KeyMetadata, KmsError> {
        let (record, transit) = tokio::join!(self.records.read(key_id), self.transit.read(key_id));
        let record = match record.map_err(|e| unreadable(key_id, e))? {
            Some(versioned) => versioned.record,
            None => return Err(KmsError::KeyNotFound(key_id.clone())),
        };
        let transit = match transit.map_err(|e| unreadable(key_id, e))? {
            Some(transit) => transit,
            // Destroyed half-way (Transit key gone, record not yet): the
            // next sweep removes the record.
            None if record.state == KeyState::PendingDeletion => {
                return Err(KmsError::KeyNotFound(key_id.clone()));
            }
            None => {
                tracing::error!(%key_id, "the key's record exists in KV but its Transit key does not");
                return Err(KmsError::KeyUnreadable(key_id.clone()));
            }
        };
        if let Some(reason) = transit.unsuitable() {
            tracing::error!(%key_id, %reason, "the key's Transit key is not one kmsd may use");
            return Err(KmsError::KeyUnreadable(key_id.clone()));
        }
        Ok(compose(key_id, &record, &transit))
    }

    /// The key's metadata from the cache if it is at most `max_age` old,
    /// else from Vault (one reader per key at a time).
    pub(super) async fn lookup(
        &self,
        key_id: &KeyId,
        max_age: Duration,
    ) -> Result<Cached, KmsError> {
        self.cache
            .get_or_fill(key_id, max_age, || self.reload(key_id))
            .await
    }

    /// Reads the key's metadata from Vault and caches it.
    pub(super) async fn reload(&self, key_id: &KeyId) -> Result<Cached, KmsError> {
        match self.load(key_id).await {
            Ok(meta) => Ok(Cached {
                meta: self.cache.put(meta),
                age: Duration::ZERO,
            }),
            Err(e) => {
                if matches!(e, KmsError::KeyNotFound(_)) {
                    self.cache.remove(key_id);
                }
                Err(e)
            }
        }
    }

    /// The key's metadata, if the key may be used: read again from Vault
    /// once it is older than the metadata TTL (so a change made through
    /// another kmsd is seen within it). While Vault cannot be reached, the
    /// state last read is used for as long as an intermediate key would be
    /// (the only way this backend serves without Vault).
    pub(super) async fn usable(&self, key_id: &KeyId) -> Result<Cached, KmsError> {
        let cached = match self.lookup(key_id, Duration::MAX).await {
            Ok(cached) => cached,
            Err(e @ KmsError::BackendUnavailable { .. }) => {
                match self
                    .offline_window()
                    .and_then(|window| self.cache.last_known(key_id).filter(|c| c.age <= window))
                {
                    Some(last) => last,
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        cached.meta.check_usable()?;
        Ok(cached)
    }

    /// Reads fresh metadata and caches it.
    pub(super) async fn describe_fresh(&self, key_id: &KeyId) -> Result<KeyMetadata, KmsError> {
        Ok(KeyMetadata::clone(&self.reload(key_id).await?.meta))
    }
}

pub(super) fn has_version(meta: &KeyMetadata, version: u32) -> bool {
    meta.versions.iter().any(|v| v.version == version)
}

/// A record that does not parse makes its key unreadable, not the backend.
pub(super) fn unreadable(key_id: &KeyId, e: VaultError) -> KmsError {
    match e {
        VaultError::Decode { op, reason } => {
            tracing::error!(%key_id, %op, %reason, "key data in Vault is damaged");
            KmsError::KeyUnreadable(key_id.clone())
        }
        other => other.into(),
    }
}

pub(super) fn compose(key_id: &KeyId, record: &KeyRecord, transit: &TransitKey) -> KeyMetadata {
    KeyMetadata {
        key_id: key_id.clone(),
        state: record.state,
        description: record.description.clone(),
        created_at: record.created_at,
        deletion_date: record.deletion_date,
        current_version: transit.latest_version,
        versions: transit.versions.clone(),
        backend: BackendKind::Vault,
        tags: record.tags.clone(),
        rotation: record.rotation,
        origin: record.origin,
        usage: Default::default(),
    }
}
