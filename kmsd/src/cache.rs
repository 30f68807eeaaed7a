//! A bounded, time-limited cache of opened data keys, so repeated Decrypts
//! of the same blob (hot objects) do not each reach the backend.
//!
//! Entries are keyed by SHA-256(blob || canonical context), so a hit needs
//! the exact blob and context a backend already accepted. Each entry
//! remembers the backend that opened it, and every hit is checked against
//! that backend's view of the key's state (in memory for the local
//! backend; for Vault its metadata, read again once older than
//! `cache_ttl_seconds`), so a key disabled or scheduled for deletion stops
//! its cached data keys as soon as any other path: at once on this node,
//! within the metadata TTL on others. Every entry of a key is also dropped
//! at once on this node when the key is disabled, scheduled for deletion or
//! destroyed, and all of them when the backend changes. Plaintexts are
//! `SecretBytes`, wiped when evicted.
//!
//! When `offline` is set, an entry older than the TTL may still be served
//! for that long if the backend is unreachable; the default (0) fails
//! closed.

use std::{
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use kms_core::SecretBytes;
use moka::notification::RemovalCause;

use crate::{backend::Opened, crypto, key_id::KeyId, lifecycle::Active, metrics::Metrics};

const NAME: &str = "data_keys";

/// Cache settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Most entries held (0 turns the cache off).
    pub max_entries: u64,
    /// How long an entry is served normally.
    pub ttl: Duration,
    /// How much longer it may be served while the backend is unreachable.
    pub offline: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            ttl: Duration::from_secs(30),
            offline: Duration::ZERO,
        }
    }
}

struct Entry {
    plaintext: SecretBytes,
    key_id: KeyId,
    key_version: u32,
    inserted: Instant,
    /// The backend that opened the blob (not kept alive by the cache).
    origin: Weak<Active>,
}

/// A cached opened blob and the backend that opened it.
#[derive(Debug)]
pub struct Hit {
    /// The opened blob.
    pub opened: Opened,
    /// The backend that opened it; gone if it was replaced since.
    pub origin: Option<Arc<Active>>,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// A fresh entry.
    Fresh(Hit),
    /// An entry past its TTL but within the offline window: serve it only
    /// if the backend is unreachable.
    Stale(Hit),
    /// Nothing usable.
    Miss,
}

/// The data-key cache.
pub struct DataKeyCache {
    cache: Option<moka::sync::Cache<[u8; 32], Arc<Entry>>>,
    settings: CacheSettings,
    metrics: Metrics,
}

impl std::fmt::Debug for DataKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyCache")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn hit(entry: &Entry) -> Hit {
    Hit {
        opened: Opened {
            plaintext: SecretBytes::new(entry.plaintext.expose_secret().to_vec()),
            key_id: entry.key_id.clone(),
            key_version: entry.key_version,
        },
        origin: entry.origin.upgrade(),
    }
}

impl DataKeyCache {
    /// A cache with `settings`.
    pub fn new(settings: CacheSettings, metrics: Metrics) -> Self {
        let cache = (settings.max_entries > 0 && !settings.ttl.is_zero()).then(|| {
            let evictions = metrics.clone();
            moka::sync::Cache::builder()
                .max_capacity(settings.max_entries)
                .time_to_live(settings.ttl + settings.offline)
                .support_invalidation_closures()
                .eviction_listener(move |_, _, cause| {
                    let cause = match cause {
                        RemovalCause::Expired => "expired",
                        RemovalCause::Size => "size",
                        RemovalCause::Explicit => "invalidated",
                        RemovalCause::Replaced => "replaced",
                    };
                    evictions.cache_eviction(NAME, cause);
                })
                .build()
        });
        Self {
            cache,
            settings,
            metrics,
        }
    }

    /// The cache key of a blob opened under a context.
    pub fn key(blob: &[u8], canonical_context: &[u8]) -> [u8; 32] {
        let mut input = Vec::with_capacity(blob.len() + canonical_context.len() + 4);
        // The blob's length separates the two parts unambiguously.
        input.extend_from_slice(&u32::try_from(blob.len()).unwrap_or(u32::MAX).to_be_bytes());
        input.extend_from_slice(blob);
        input.extend_from_slice(canonical_context);
        crypto::sha256(&input)
    }

    /// Looks a blob up.
    pub fn get(&self, key: &[u8; 32]) -> Lookup {
        let Some(cache) = &self.cache else {
            return Lookup::Miss;
        };
        match cache.get(key) {
            Some(entry) if entry.inserted.elapsed() < self.settings.ttl => {
                self.metrics.cache_lookup(NAME, "hit");
                Lookup::Fresh(hit(&entry))
            }
            Some(entry) => {
                self.metrics.cache_lookup(NAME, "stale");
                Lookup::Stale(hit(&entry))
            }
            None => {
                self.metrics.cache_lookup(NAME, "miss");
                Lookup::Miss
            }
        }
    }

    /// Remembers a blob `origin` opened.
    pub fn insert(&self, key: [u8; 32], value: &Opened, origin: Weak<Active>) {
        if let Some(cache) = &self.cache {
            cache.insert(
                key,
                Arc::new(Entry {
                    plaintext: SecretBytes::new(value.plaintext.expose_secret().to_vec()),
                    key_id: value.key_id.clone(),
                    key_version: value.key_version,
                    inserted: Instant::now(),
                    origin,
                }),
            );
            self.metrics.cache_size(NAME, cache.entry_count());
        }
    }

    /// Drops every entry of one key.
    pub fn invalidate_key(&self, key_id: &KeyId) {
        if let Some(cache) = &self.cache {
            let key_id = key_id.clone();
            // Invariant: the cache was built with invalidation closures on.
            let _ = cache.invalidate_entries_if(move |_, entry| entry.key_id == key_id);
        }
    }

    /// Drops everything; returns how many entries there were.
    pub fn clear(&self) -> u64 {
        let Some(cache) = &self.cache else {
            return 0;
        };
        cache.run_pending_tasks();
        let count = cache.entry_count();
        cache.invalidate_all();
        cache.run_pending_tasks();
        self.metrics.cache_size(NAME, 0);
        count
    }

    /// How long after the backend became unreachable cached data keys may
    /// still be served (the TTL plus the offline window), if they may be
    /// served offline at all.
    pub fn offline_window(&self) -> Option<Duration> {
        (self.cache.is_some() && !self.settings.offline.is_zero())
            .then(|| self.settings.ttl + self.settings.offline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened_value(key: &str) -> Opened {
        Opened {
            plaintext: SecretBytes::new(vec![7; 32]),
            key_id: KeyId::parse(key).unwrap(),
            key_version: 1,
        }
    }

    #[test]
    fn hits_until_the_ttl_then_stale_within_the_offline_window() {
        let cache = DataKeyCache::new(
            CacheSettings {
                max_entries: 10,
                ttl: Duration::from_millis(50),
                offline: Duration::from_secs(5),
            },
            Metrics::new(),
        );
        let key = DataKeyCache::key(b"blob", b"ctx");
        assert!(matches!(cache.get(&key), Lookup::Miss));
        cache.insert(key, &opened_value("k"), Weak::new());
        assert!(
            matches!(cache.get(&key), Lookup::Fresh(h) if h.opened.plaintext.expose_secret() == [7; 32])
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(cache.get(&key), Lookup::Stale(_)));
    }

    #[test]
    fn invalidation_drops_one_key_and_clear_drops_all() {
        let cache = DataKeyCache::new(CacheSettings::default(), Metrics::new());
        let (a, b) = (DataKeyCache::key(b"a", b""), DataKeyCache::key(b"b", b""));
        cache.insert(a, &opened_value("ka"), Weak::new());
        cache.insert(b, &opened_value("kb"), Weak::new());
        cache.invalidate_key(&KeyId::parse("ka").unwrap());
        assert!(matches!(cache.get(&a), Lookup::Miss));
        assert!(matches!(cache.get(&b), Lookup::Fresh(_)));
        assert_eq!(cache.clear(), 1);
        assert!(matches!(cache.get(&b), Lookup::Miss));
    }

    #[test]
    fn the_blob_and_context_boundary_is_unambiguous() {
        assert_ne!(
            DataKeyCache::key(b"ab", b"c"),
            DataKeyCache::key(b"a", b"bc")
        );
    }

    #[test]
    fn a_zero_size_turns_it_off() {
        let cache = DataKeyCache::new(
            CacheSettings {
                max_entries: 0,
                ..CacheSettings::default()
            },
            Metrics::new(),
        );
        let key = DataKeyCache::key(b"blob", b"");
        cache.insert(key, &opened_value("k"), Weak::new());
        assert!(matches!(cache.get(&key), Lookup::Miss));
    }
}
