//! The replay cache: a signature is accepted once while it could still pass
//! the clock-skew check, and refused after that anyway.
//!
//! Bounded: at most [`REPLAY_CACHE_ENTRIES`] signatures (about 80 bytes
//! each, so under 6 MiB). Entries leave when their request can no longer
//! pass the skew check; a cache full of unexpired entries refuses new
//! requests (503 `SlowDown`) rather than forget one that could be replayed.
//! The cache lives in memory only: a restart empties it, which is why
//! requests signed before the process started are refused
//! ([`super::AuthError::BeforeStart`]).

use std::{
    collections::{BTreeSet, HashSet},
    sync::Mutex,
};

use super::AuthError;

/// The most signatures remembered at once: 65,536 accepted admin requests
/// in 15 minutes (about 70 per second, sustained) is far above what the
/// admin API is for.
pub const REPLAY_CACHE_ENTRIES: usize = 65_536;

/// Signatures seen, with the unix time at which each expires.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    seen: HashSet<[u8; 32]>,
    by_expiry: BTreeSet<(i64, [u8; 32])>,
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::with_capacity(REPLAY_CACHE_ENTRIES)
    }
}

impl ReplayCache {
    /// A cache of at most `capacity` signatures.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Entries::default()),
        }
    }

    /// Records `signature`, which stays valid until `expires` (unix
    /// seconds), at time `now`; refuses one already recorded.
    pub fn check_and_insert(
        &self,
        signature: [u8; 32],
        expires: i64,
        now: i64,
    ) -> Result<(), AuthError> {
        // A poisoned lock means a panic while holding it; the sets are
        // still consistent (every mutation is a single insert or remove
        // pair), so keep using them.
        let mut entries = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(&(expiry, sig)) = entries.by_expiry.first() {
            if expiry > now {
                break;
            }
            entries.by_expiry.pop_first();
            entries.seen.remove(&sig);
        }
        if entries.seen.contains(&signature) {
            return Err(AuthError::Replayed);
        }
        if entries.seen.len() >= self.capacity {
            return Err(AuthError::ReplayCacheFull);
        }
        entries.seen.insert(signature);
        entries.by_expiry.insert((expires, signature));
        Ok(())
    }

    /// How many signatures are remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .seen
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_accepted_once_until_it_expires() {
        let cache = ReplayCache::with_capacity(2);
        assert!(cache.check_and_insert([1; 32], 100, 0).is_ok());
        assert_eq!(
            cache.check_and_insert([1; 32], 100, 50),
            Err(AuthError::Replayed)
        );
        assert!(cache.check_and_insert([2; 32], 200, 50).is_ok());
        // Full of unexpired entries: refuse rather than forget one.
        assert_eq!(
            cache.check_and_insert([3; 32], 200, 60),
            Err(AuthError::ReplayCacheFull)
        );
        // Once the first expires it leaves, and its request could no
        // longer pass the skew check anyway.
        assert!(cache.check_and_insert([3; 32], 300, 100).is_ok());
        assert!(cache.check_and_insert([1; 32], 300, 150).is_err());
        assert_eq!(cache.len(), 2);
    }
}
