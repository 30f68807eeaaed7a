//! The in-memory counters, on the data-plane hot path: recording a wrap
//! or a decrypt is one map lookup and a few relaxed atomic operations,
//! with no lock and no allocation once the key version has been seen.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

use crossbeam_skiplist::SkipMap;

use super::{Figures, KeyUsage, VersionFigures, VersionUsage, from_unix};
use crate::key_id::KeyId;

/// One version's counters. `wraps` and `decrypts` are this node's own
/// (what it persists); `other_*` are the other nodes' as last read from
/// the store; the times are the latest seen anywhere.
#[derive(Debug, Default)]
struct Counters {
    wraps: AtomicU64,
    decrypts: AtomicU64,
    other_wraps: AtomicU64,
    other_decrypts: AtomicU64,
    last_wrap: AtomicI64,
    last_decrypt: AtomicI64,
    /// Set once the version's wraps reached the budget and a rotation was
    /// asked for, so it is asked for once (see [`UsageTracker::rearm`]).
    budget_hit: AtomicBool,
}

impl Counters {
    fn merged(&self, version: u32) -> VersionUsage {
        VersionUsage {
            version,
            wraps: self
                .wraps
                .load(Relaxed)
                .saturating_add(self.other_wraps.load(Relaxed)),
            decrypts: self
                .decrypts
                .load(Relaxed)
                .saturating_add(self.other_decrypts.load(Relaxed)),
            last_wrap_at: from_unix(self.last_wrap.load(Relaxed)),
            last_decrypt_at: from_unix(self.last_decrypt.load(Relaxed)),
        }
    }
}

/// Usage counters of every key version this node has seen.
#[derive(Debug)]
pub struct UsageTracker {
    keys: SkipMap<KeyId, SkipMap<u32, Counters>>,
    wrap_budget: u64,
}

impl UsageTracker {
    /// Counters that ask for a rotation at `wrap_budget` wraps a version.
    pub fn new(wrap_budget: u64) -> Self {
        Self {
            keys: SkipMap::new(),
            wrap_budget,
        }
    }

    /// Runs `f` on the counters of `key_id` `version`, creating them the
    /// first time (the only allocation).
    fn with<T>(&self, key_id: &KeyId, version: u32, f: impl FnOnce(&Counters) -> T) -> T {
        let versions = match self.keys.get(key_id) {
            Some(entry) => entry,
            None => self.keys.get_or_insert_with(key_id.clone(), SkipMap::new),
        };
        let versions = versions.value();
        match versions.get(&version) {
            Some(counters) => f(counters.value()),
            None => f(versions
                .get_or_insert_with(version, Counters::default)
                .value()),
        }
    }

    /// Records a wrap at `now` (Unix seconds). True exactly once per
    /// version, when its wraps (over every node) reach the budget: the
    /// caller then rotates the key.
    pub fn record_wrap(&self, key_id: &KeyId, version: u32, now: i64) -> bool {
        self.with(key_id, version, |c| {
            let own = c.wraps.fetch_add(1, Relaxed).saturating_add(1);
            if c.last_wrap.load(Relaxed) < now {
                c.last_wrap.fetch_max(now, Relaxed);
            }
            own.saturating_add(c.other_wraps.load(Relaxed)) >= self.wrap_budget
                && !c.budget_hit.load(Relaxed)
                && !c.budget_hit.swap(true, Relaxed)
        })
    }

    /// Records a decrypt at `now` (Unix seconds).
    pub fn record_decrypt(&self, key_id: &KeyId, version: u32, now: i64) {
        self.with(key_id, version, |c| {
            c.decrypts.fetch_add(1, Relaxed);
            if c.last_decrypt.load(Relaxed) < now {
                c.last_decrypt.fetch_max(now, Relaxed);
            }
        });
    }

    /// Lets a version ask for a rotation again (after one that failed).
    pub fn rearm(&self, key_id: &KeyId, version: u32) {
        self.with(key_id, version, |c| c.budget_hit.store(false, Relaxed));
    }

    /// A key's figures, merged over the nodes.
    pub fn usage(&self, key_id: &KeyId) -> KeyUsage {
        let versions = self
            .keys
            .get(key_id)
            .map(|entry| {
                entry
                    .value()
                    .iter()
                    .map(|v| v.value().merged(*v.key()))
                    .collect()
            })
            .unwrap_or_default();
        KeyUsage { versions }
    }

    /// This node's own figures: what it persists.
    pub fn own(&self) -> Figures {
        let mut out = Figures::new();
        for key in &self.keys {
            let versions = key
                .value()
                .iter()
                .map(|v| {
                    let c = v.value();
                    let figures = VersionFigures {
                        wraps: c.wraps.load(Relaxed),
                        decrypts: c.decrypts.load(Relaxed),
                        last_wrap_at: c.last_wrap.load(Relaxed),
                        last_decrypt_at: c.last_decrypt.load(Relaxed),
                    };
                    (*v.key(), figures)
                })
                .filter(|(_, f)| *f != VersionFigures::default())
                .collect::<std::collections::BTreeMap<_, _>>();
            if !versions.is_empty() {
                out.insert(key.key().clone(), versions);
            }
        }
        out
    }

    /// Adds this node's persisted figures to what it counted since it
    /// started (once, when a store is first read).
    pub fn add_own(&self, own: &Figures) {
        for (key_id, versions) in own {
            for (version, f) in versions {
                self.with(key_id, *version, |c| {
                    c.wraps.fetch_add(f.wraps, Relaxed);
                    c.decrypts.fetch_add(f.decrypts, Relaxed);
                    c.last_wrap.fetch_max(f.last_wrap_at, Relaxed);
                    c.last_decrypt.fetch_max(f.last_decrypt_at, Relaxed);
                });
            }
        }
    }

    /// Replaces the other nodes' figures with `others` (read again at
    /// every flush).
    pub fn set_others(&self, others: &Figures) {
        for key in &self.keys {
            let listed = others.get(key.key());
            for v in key.value() {
                let f = listed
                    .and_then(|l| l.get(v.key()))
                    .copied()
                    .unwrap_or_default();
                v.value().other_wraps.store(f.wraps, Relaxed);
                v.value().other_decrypts.store(f.decrypts, Relaxed);
            }
        }
        for (key_id, versions) in others {
            for (version, f) in versions {
                self.with(key_id, *version, |c| {
                    c.other_wraps.store(f.wraps, Relaxed);
                    c.other_decrypts.store(f.decrypts, Relaxed);
                    c.last_wrap.fetch_max(f.last_wrap_at, Relaxed);
                    c.last_decrypt.fetch_max(f.last_decrypt_at, Relaxed);
                });
            }
        }
    }

    /// The most wraps (over every node) of any one version: how close the
    /// nearest key is to its budget.
    pub fn highest_wraps(&self) -> u64 {
        self.keys
            .iter()
            .flat_map(|k| {
                k.value()
                    .iter()
                    .map(|v| v.value().merged(*v.key()).wraps)
                    .collect::<Vec<_>>()
            })
            .max()
            .unwrap_or(0)
    }

    /// Forgets a key (destroyed, so a new key of the same id starts at 0).
    pub fn forget(&self, key_id: &KeyId) {
        self.keys.remove(key_id);
    }

    /// Forgets everything (the backend was replaced by another store).
    pub fn clear(&self) {
        self.keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> KeyId {
        KeyId::parse(s).unwrap()
    }

    #[test]
    fn the_budget_asks_for_one_rotation_per_version() {
        let t = UsageTracker::new(3);
        let k = id("k");
        let hits: Vec<bool> = (0..5).map(|_| t.record_wrap(&k, 1, 10)).collect();
        assert_eq!(hits, [false, false, true, false, false]);
        assert!(!t.record_wrap(&k, 2, 11));
        t.rearm(&k, 1);
        assert!(t.record_wrap(&k, 1, 12));
        let usage = t.usage(&k);
        assert_eq!(usage.version(1).wraps, 6);
        assert_eq!(usage.total_wraps(), 7);
        assert_eq!(usage.last_used_at().unwrap().unix_timestamp(), 12);
    }

    #[test]
    fn other_nodes_count_towards_the_budget_and_the_figures() {
        let t = UsageTracker::new(10);
        let k = id("k");
        t.record_decrypt(&k, 1, 5);
        let mut others = Figures::new();
        others.entry(k.clone()).or_default().insert(
            1,
            VersionFigures {
                wraps: 9,
                decrypts: 2,
                last_wrap_at: 7,
                last_decrypt_at: 0,
            },
        );
        t.set_others(&others);
        assert!(t.record_wrap(&k, 1, 8));
        let v = t.usage(&k).version(1);
        assert_eq!((v.wraps, v.decrypts), (10, 3));
        // Only this node's own counts are persisted.
        let own = t.own();
        assert_eq!(own[&k][&1].wraps, 1);
        assert_eq!(own[&k][&1].decrypts, 1);
        t.set_others(&Figures::new());
        assert_eq!(t.usage(&k).version(1).wraps, 1);
        t.add_own(&own);
        assert_eq!(t.usage(&k).version(1).wraps, 2);
        assert_eq!(t.highest_wraps(), 2);
        t.forget(&k);
        assert_eq!(t.usage(&k), KeyUsage::default());
    }
}
