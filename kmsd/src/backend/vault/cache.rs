//! The metadata cache: what each key's state and versions were, so the
//! data plane does not read KV and Transit on every request.
//!
//! Entries are used for the TTL (`cache_ttl_seconds`). Changes made
//! through this kmsd replace its entry at once; changes made through
//! another kmsd (a rotation, a disable) are seen here once the entry
//! expires, so at most one TTL later. An expired entry is kept as the key's
//! last known state, which only the intermediate-key mode uses, and only
//! while Vault cannot be reached. The cache holds at most `max_cached_keys`
//! entries; when full, expired entries go first, then the least recently
//! filled.
//!
//! Filling is single-flight per key: when an entry expires under load, one
//! request reads Vault and the others wait for its answer.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

use crate::{backend::KeyMetadata, key_id::KeyId};

struct Entry {
    meta: Arc<KeyMetadata>,
    filled: Instant,
}

/// A bounded TTL cache of key metadata.
pub(crate) struct MetadataCache {
    ttl: Duration,
    max: usize,
    // std locks: never held across an await.
    entries: Mutex<HashMap<KeyId, Entry>>,
    fills: Mutex<HashMap<KeyId, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for MetadataCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataCache")
            .field("ttl", &self.ttl)
            .field("max", &self.max)
            .field("len", &self.len())
            .finish()
    }
}

/// A fresh entry and its age.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    /// The metadata.
    pub(crate) meta: Arc<KeyMetadata>,
    /// How long ago it was read from Vault.
    pub(crate) age: Duration,
}

impl MetadataCache {
    /// A cache whose entries live `ttl`, holding at most `max` (≥ 1).
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max: max.max(1),
            entries: Mutex::new(HashMap::new()),
            fills: Mutex::new(HashMap::new()),
        }
    }

    /// The entry of `key_id` if it has not expired.
    pub(crate) fn get(&self, key_id: &KeyId) -> Option<Cached> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(key_id)?;
        let age = entry.filled.elapsed();
        (age < self.ttl).then(|| Cached {
            meta: Arc::clone(&entry.meta),
            age,
        })
    }

    /// The entry of `key_id` whatever its age: the key's last known
    /// metadata.
    pub(crate) fn last_known(&self, key_id: &KeyId) -> Option<Cached> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(key_id)?;
        Some(Cached {
            meta: Arc::clone(&entry.meta),
            age: entry.filled.elapsed(),
        })
    }

    /// Stores what was just read from Vault (or just written to it).
    pub(crate) fn put(&self, meta: KeyMetadata) -> Arc<KeyMetadata> {
        let meta = Arc::new(meta);
        if self.ttl.is_zero() {
            return meta;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.max && !entries.contains_key(&meta.key_id) {
            let ttl = self.ttl;
            entries.retain(|_, e| e.filled.elapsed() < ttl);
            if entries.len() >= self.max
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.filled)
                    .map(|(id, _)| id.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            meta.key_id.clone(),
            Entry {
                meta: Arc::clone(&meta),
                filled: Instant::now(),
            },
        );
        meta
    }

    /// Forgets `key_id` (it was destroyed, or is known to be stale).
    pub(crate) fn remove(&self, key_id: &KeyId) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key_id);
    }

    /// Forgets everything; returns how many entries there were.
    pub(crate) fn clear(&self) -> usize {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let count = entries.len();
        entries.clear();
        count
    }

    /// How many entries are held (expired ones included).
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The lock that makes filling `key_id` single-flight. Hold it while
    /// reading Vault; check [`Self::get`] again once it is held.
    pub(crate) fn fill_lock(&self, key_id: &KeyId) -> FillGuard<'_> {
        let lock = {
            let mut fills = self.fills.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(fills.entry(key_id.clone()).or_default())
        };
        FillGuard {
            cache: self,
            key_id: key_id.clone(),
            lock,
        }
    }
}

/// Shares one fill lock; removes it from the map when the last user goes.
pub(crate) struct FillGuard<'a> {
    cache: &'a MetadataCache,
    key_id: KeyId,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl FillGuard<'_> {
    /// The per-key lock.
    pub(crate) fn lock(&self) -> &tokio::sync::Mutex<()> {
        &self.lock
    }
}

impl Drop for FillGuard<'_> {
    fn drop(&mut self) {
        let mut fills = self
            .cache
            .fills
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Two references: the map's and this guard's. Nobody else waits.
        if Arc::strong_count(&self.lock) <= 2 {
            fills.remove(&self.key_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::{backend::KeyState, blob::BackendKind};

    fn meta(id: &str, version: u32) -> KeyMetadata {
        KeyMetadata {
            key_id: KeyId::parse(id).unwrap(),
            state: KeyState::Enabled,
            description: String::new(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            deletion_date: None,
            current_version: version,
            versions: Vec::new(),
            backend: BackendKind::Vault,
            tags: Default::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl() {
        let cache = MetadataCache::new(Duration::from_secs(5), 10);
        let id = KeyId::parse("k").unwrap();
        cache.put(meta("k", 1));
        assert_eq!(cache.get(&id).unwrap().meta.current_version, 1);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(cache.get(&id).is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(cache.get(&id).is_none());
        cache.put(meta("k", 2));
        assert_eq!(cache.get(&id).unwrap().meta.current_version, 2);
        cache.remove(&id);
        assert!(cache.get(&id).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_is_bounded_and_evicts_the_oldest() {
        let cache = MetadataCache::new(Duration::from_secs(60), 3);
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            cache.put(meta(id, 1));
            tokio::time::advance(Duration::from_secs(1 + i as u64)).await;
        }
        cache.put(meta("d", 1));
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&KeyId::parse("a").unwrap()).is_none());
        for id in ["b", "c", "d"] {
            assert!(cache.get(&KeyId::parse(id).unwrap()).is_some(), "{id}");
        }
        // Refreshing a present key evicts nothing.
        cache.put(meta("b", 2));
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let cache = MetadataCache::new(Duration::ZERO, 3);
        cache.put(meta("a", 1));
        assert_eq!(cache.len(), 0);
    }

    #[tokio::test]
    async fn fill_locks_are_shared_then_dropped() {
        let cache = MetadataCache::new(Duration::from_secs(60), 3);
        let id = KeyId::parse("a").unwrap();
        let first = cache.fill_lock(&id);
        let held = first.lock().lock().await;
        let second = cache.fill_lock(&id);
        assert!(second.lock().try_lock().is_err());
        drop(held);
        drop(first);
        drop(second);
        assert!(cache.fills.lock().unwrap().is_empty());
    }
}
