//! A key as the local backend holds it in memory: its metadata and, per
//! version, the wrapping key derived from its material and the material as
//! stored in the key file; and the map of every key.

use std::ops::Bound;

use arc_swap::ArcSwap;
use crossbeam_skiplist::SkipMap;

use super::*;

/// Every key of the directory, by id.
///
/// A skip list of per-key cells: a read finds its key without a lock (an
/// epoch pin and an atomic load), and a write stores one key's new state in
/// its cell, or links one new node, at a cost that does not grow with the
/// number of keys. (A copy-on-write `BTreeMap` behind one `ArcSwap` copied
/// every key on every write: 17 ms of CPU per create at 50,000 keys,
/// issue 21.) Iteration is in id order, as ListKeys pages need.
///
/// Writers hold the backend's writer lock, so a key's cell is never
/// created twice; a reader sees either a key's old state or its new one.
///
/// The skip list is boxed: its head holds a tower of 32 links, which
/// would make the local variant of `Backend` needlessly large.
#[derive(Default)]
pub(super) struct KeyMap {
    map: Box<SkipMap<KeyId, ArcSwap<Entry>>>,
}

impl KeyMap {
    /// The key's entry, if the directory has a file for it.
    pub(super) fn get(&self, key_id: &KeyId) -> Option<Arc<Entry>> {
        self.map.get(key_id).map(|cell| cell.value().load_full())
    }

    pub(super) fn contains(&self, key_id: &KeyId) -> bool {
        self.map.contains_key(key_id)
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Makes `entry` the key's state. Called under the writer lock.
    pub(super) fn put(&self, key_id: KeyId, entry: Entry) {
        match self.map.get(&key_id) {
            Some(cell) => cell.value().store(Arc::new(entry)),
            None => {
                self.map.insert(key_id, ArcSwap::from_pointee(entry));
            }
        }
    }

    /// Forgets a destroyed key. Called under the writer lock.
    pub(super) fn remove(&self, key_id: &KeyId) {
        self.map.remove(key_id);
    }

    /// Every key with its entry, in id order.
    pub(super) fn all(&self) -> impl Iterator<Item = (KeyId, Arc<Entry>)> + '_ {
        self.map
            .iter()
            .map(|cell| (cell.key().clone(), cell.value().load_full()))
    }

    /// The readable keys with an id after `after` (all of them if `None`),
    /// in id order.
    pub(super) fn ready_after<'a>(
        &'a self,
        after: Option<&'a KeyId>,
    ) -> impl Iterator<Item = Arc<LocalKey>> + 'a {
        let start = match after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        self.map
            .range::<KeyId, _>((start, Bound::Unbounded))
            .filter_map(|cell| match &**cell.value().load() {
                Entry::Ready(key) => Some(Arc::clone(key)),
                Entry::Unreadable => None,
            })
    }
}

pub(super) enum Entry {
    Ready(Arc<LocalKey>),
    /// The file exists but could not be read; the reason was logged.
    Unreadable,
}

pub(super) struct LocalKey {
    pub(super) meta: KeyMetadata,
    /// Index `v - 1` holds version `v`.
    pub(super) versions: Vec<Arc<LocalVersion>>,
}

pub(super) struct LocalVersion {
    pub(super) wrapping: WrappingKey,
    pub(super) stored: Stored,
}

pub(super) enum Stored {
    Plain(Zeroizing<[u8; KEY_LEN]>),
    Sealed(Vec<u8>),
}

impl LocalKey {
    pub(super) fn version(&self, version: u32) -> Option<&LocalVersion> {
        let index = usize::try_from(version).ok()?.checked_sub(1)?;
        self.versions.get(index).map(Arc::as_ref)
    }

    pub(super) fn current(&self) -> Result<&LocalVersion, KmsError> {
        self.version(self.meta.current_version).ok_or_else(|| {
            KmsError::Internal(format!("key {} lost its current version", self.meta.key_id))
        })
    }
}
