//! The metadata cache: what each key's state and versions were, so the
//! data plane does not read KV and Transit on every request.
//!
//! Entries are used for the TTL (`cache_ttl_seconds`). Changes made
//! through this kmsd replace its entry at once; changes made through
//! another kmsd (a rotation, a disable) are seen here once the entry
//! expires, so at most one TTL later. An expired entry is kept as the key's
//! last known state, which only the intermediate-key mode uses, and only
//! while Vault cannot be reached. The cache holds at most `max_cached_keys`
//! entries; when full, the least recently used goes (moka's LRU policy).
//!
//! Storage is a moka cache (bounded, each write touches one key). Whether
//! an entry is fresh is decided here, from the `tokio::time::Instant` it
//! was filled at, not by moka's own expiry: an expired entry must stay
//! readable as the last known state, and tokio's clock is the one tests
//! pause and advance.
//!
//! Filling is single-flight per key: when an entry expires under load, one
//! request reads Vault and the others wait for it, then find its answer
//! (moka's `and_try_compute_with`, which runs one computation per key at a
//! time).

use std::{sync::Arc, time::Duration};

use moka::{ops::compute::Op, policy::EvictionPolicy};
use tokio::time::Instant;

use crate::{backend::KeyMetadata, error::KmsError, key_id::KeyId};

#[derive(Clone)]
struct Entry {
    meta: Arc<KeyMetadata>,
    filled: Instant,
}

/// A bounded TTL cache of key metadata.
pub(crate) struct MetadataCache {
    ttl: Duration,
    entries: moka::sync::Cache<KeyId, Entry>,
    /// Holds nothing: its per-key compute lock makes fills single-flight.
    fills: moka::future::Cache<KeyId, ()>,
}

impl std::fmt::Debug for MetadataCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataCache")
            .field("ttl", &self.ttl)
            .field("max", &self.entries.policy().max_capacity())
            .field("len", &self.entries.entry_count())
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

impl From<Entry> for Cached {
    fn from(entry: Entry) -> Self {
        Self {
            age: entry.filled.elapsed(),
            meta: entry.meta,
        }
    }
}

impl MetadataCache {
    /// A cache whose entries live `ttl`, holding at most `max` (≥ 1).
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        let max = u64::try_from(max.max(1)).unwrap_or(u64::MAX);
        Self {
            ttl,
            entries: moka::sync::Cache::builder()
                .max_capacity(max)
                .eviction_policy(EvictionPolicy::lru())
                .build(),
            fills: moka::future::Cache::builder().max_capacity(max).build(),
        }
    }

    /// The entry of `key_id` if it has not expired.
    pub(crate) fn get(&self, key_id: &KeyId) -> Option<Cached> {
        self.last_known(key_id).filter(|c| c.age < self.ttl)
    }

    /// The entry of `key_id` whatever its age: the key's last known
    /// metadata.
    pub(crate) fn last_known(&self, key_id: &KeyId) -> Option<Cached> {
        self.entries.get(key_id).map(Cached::from)
    }

    /// The entry of `key_id` if it is fresh and at most `max_age` old, else
    /// what `fill` reads. One fill per key runs at a time; a request that
    /// waited for another's fill uses its answer instead of reading again.
    pub(crate) async fn get_or_fill<F, Fut>(
        &self,
        key_id: &KeyId,
        max_age: Duration,
        fill: F,
    ) -> Result<Cached, KmsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Cached, KmsError>>,
    {
        let fresh = |c: &Cached| c.age <= max_age;
        if let Some(cached) = self.get(key_id).filter(fresh) {
            return Ok(cached);
        }
        let mut found = None;
        self.fills
            .entry_by_ref(key_id)
            .and_try_compute_with(|_| async {
                let cached = match self.get(key_id).filter(fresh) {
                    Some(cached) => cached,
                    None => fill().await?,
                };
                found = Some(cached);
                // Nothing is stored in `fills`: only its lock is wanted.
                Ok::<_, KmsError>(Op::Nop)
            })
            .await?;
        // moka runs the closure exactly once when it returns Ok.
        found.ok_or_else(|| KmsError::Internal("the metadata fill did not run".into()))
    }

    /// Stores what was just read from Vault (or just written to it).
    pub(crate) fn put(&self, meta: KeyMetadata) -> Arc<KeyMetadata> {
        let meta = Arc::new(meta);
        if !self.ttl.is_zero() {
            let entry = Entry {
                meta: Arc::clone(&meta),
                filled: Instant::now(),
            };
            self.entries.insert(meta.key_id.clone(), entry);
        }
        meta
    }

    /// Forgets `key_id` (it was destroyed, or is known to be stale).
    pub(crate) fn remove(&self, key_id: &KeyId) {
        self.entries.invalidate(key_id);
    }

    /// Forgets everything; returns how many entries there were.
    pub(crate) fn clear(&self) -> usize {
        let count = self.len();
        self.entries.invalidate_all();
        count
    }

    /// How many entries are held (expired ones included).
    pub(crate) fn len(&self) -> usize {
        // moka counts after applying its pending writes and evictions.
        self.entries.run_pending_tasks();
        usize::try_from(self.entries.entry_count()).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

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
            rotation: None,
            origin: Default::default(),
            usage: Default::default(),
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
        // Expired, the entry is still the key's last known state.
        let last = cache.last_known(&id).unwrap();
        assert_eq!(last.age, Duration::from_secs(5));
        cache.put(meta("k", 2));
        assert_eq!(cache.get(&id).unwrap().meta.current_version, 2);
        cache.remove(&id);
        assert!(cache.get(&id).is_none());
        assert!(cache.last_known(&id).is_none());
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
        assert_eq!(cache.clear(), 3);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let cache = MetadataCache::new(Duration::ZERO, 3);
        cache.put(meta("a", 1));
        assert_eq!(cache.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_fill_once_and_a_stale_entry_is_filled_again() {
        let cache = Arc::new(MetadataCache::new(Duration::from_secs(5), 3));
        let loads = Arc::new(AtomicUsize::new(0));
        let lookup = |cache: Arc<MetadataCache>, loads: Arc<AtomicUsize>| async move {
            let id = KeyId::parse("a").unwrap();
            cache
                .get_or_fill(&id, Duration::MAX, || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let meta = cache.put(meta("a", 1));
                    Ok(Cached {
                        meta,
                        age: Duration::ZERO,
                    })
                })
                .await
                .unwrap()
        };
        let waiting: Vec<_> = (0..8)
            .map(|_| tokio::spawn(lookup(Arc::clone(&cache), Arc::clone(&loads))))
            .collect();
        for task in waiting {
            assert_eq!(task.await.unwrap().meta.current_version, 1);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // Fresh: served without a fill.
        lookup(Arc::clone(&cache), Arc::clone(&loads)).await;
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // Expired: filled again.
        tokio::time::advance(Duration::from_secs(5)).await;
        lookup(Arc::clone(&cache), Arc::clone(&loads)).await;
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_fill_is_returned_and_caches_nothing() {
        let cache = MetadataCache::new(Duration::from_secs(60), 3);
        let id = KeyId::parse("a").unwrap();
        let result = cache
            .get_or_fill(&id, Duration::MAX, || async {
                Err(KmsError::KeyNotFound(id.clone()))
            })
            .await;
        assert!(matches!(result, Err(KmsError::KeyNotFound(_))));
        assert!(cache.last_known(&id).is_none());
    }
}
