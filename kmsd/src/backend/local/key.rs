//! A key as the local backend holds it in memory: its metadata and, per
//! version, the material as stored in the key file and the wrapping key
//! derived from it on first use; and the map of every key.

use std::{ops::Bound, sync::OnceLock};

use arc_swap::ArcSwap;
use crossbeam_skiplist::{SkipMap, map};

use super::*;

/// One key's state: swapped whole by writers, and by the first use of a
/// key that was not read yet (see `LocalBackend::load_cell`).
pub(super) type Cell = ArcSwap<Entry>;

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
    map: Box<SkipMap<KeyId, Cell>>,
}

impl KeyMap {
    /// The key's cell, if the directory has a file for it.
    pub(super) fn cell(&self, key_id: &KeyId) -> Option<map::Entry<'_, KeyId, Cell>> {
        self.map.get(key_id)
    }

    pub(super) fn contains(&self, key_id: &KeyId) -> bool {
        self.map.contains_key(key_id)
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Makes `entry` the key's state. Called under the writer lock, or
    /// while opening (before anyone else holds the map).
    ///
    /// One search of the skip list, for a new key or an existing one (a
    /// `get` then an `insert` searched twice for a new key: at 100,000 keys
    /// each search is a chain of cache misses).
    pub(super) fn put(&self, key_id: KeyId, entry: Arc<Entry>) {
        let cell = self
            .map
            .get_or_insert_with(key_id, || ArcSwap::new(Arc::clone(&entry)));
        if !Arc::ptr_eq(&cell.value().load(), &entry) {
            cell.value().store(entry);
        }
    }

    /// Forgets a destroyed key. Called under the writer lock.
    pub(super) fn remove(&self, key_id: &KeyId) {
        self.map.remove(key_id);
    }

    /// The cells of the keys with an id after `after` (all of them if
    /// `None`), in id order.
    pub(super) fn cells_after<'a>(
        &'a self,
        after: Option<&'a KeyId>,
    ) -> impl Iterator<Item = map::Entry<'a, KeyId, Cell>> + 'a {
        let start = match after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        self.map.range::<KeyId, _>((start, Bound::Unbounded))
    }
}

pub(super) enum Entry {
    /// Listed at open, not read yet: the first use reads the file.
    Unloaded,
    /// Read by a walk over many keys (ListKeys, the sweeps), which needs
    /// only metadata: the material is not kept, and is read again from the
    /// file on the key's first cryptographic use or change. This keeps a
    /// walk over 100,000 keys (the key-count gauge walks ListKeys every
    /// 30 s) from pinning every key's material in memory.
    Listed(Box<KeyMetadata>),
    Ready(Arc<LocalKey>),
    /// The file exists but could not be read; the reason was logged.
    Unreadable,
}

impl Entry {
    /// The key's metadata, if it has been read.
    pub(super) fn meta(&self) -> Option<&KeyMetadata> {
        match self {
            Entry::Listed(meta) => Some(meta),
            Entry::Ready(key) => Some(&key.meta),
            Entry::Unloaded | Entry::Unreadable => None,
        }
    }
}

pub(super) struct LocalKey {
    pub(super) meta: KeyMetadata,
    /// Index `v - 1` holds version `v`. Shared between a key's successive
    /// states, so a version's derived wrapping key survives a rotation.
    pub(super) versions: Vec<Arc<LocalVersion>>,
}

pub(super) struct LocalVersion {
    pub(super) stored: Stored,
    /// Derived on the version's first use, not when the key is read: most
    /// keys of a large directory are listed or swept far more often than
    /// used, and a derived key (ring's HMAC state, about 200 bytes) is the
    /// largest part of a version. Boxed, so an underived version costs a
    /// pointer rather than the whole state.
    wrapping: OnceLock<Box<WrappingKey>>,
}

pub(super) enum Stored {
    Plain(Zeroizing<[u8; KEY_LEN]>),
    Sealed(Box<[u8]>),
}

impl LocalVersion {
    pub(super) fn new(stored: Stored) -> Self {
        Self {
            stored,
            wrapping: OnceLock::new(),
        }
    }

    /// The version's wrapping key, derived from `material` (its plaintext
    /// material, unsealed if need be) the first time it is asked for.
    /// Racing first uses may both derive; one result is kept.
    pub(super) fn wrapping(
        &self,
        material: impl FnOnce(&Stored) -> Result<Zeroizing<[u8; KEY_LEN]>, KmsError>,
    ) -> Result<&WrappingKey, KmsError> {
        if let Some(wrapping) = self.wrapping.get() {
            return Ok(wrapping);
        }
        let material = material(&self.stored)?;
        let derived = Box::new(WrappingKey::new(&material, BLOB_DOMAIN));
        Ok(self.wrapping.get_or_init(|| derived))
    }
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
