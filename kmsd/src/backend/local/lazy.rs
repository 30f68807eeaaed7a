//! Keys read on first use (issue 21). Opening a directory only lists it
//! (see `open.rs`); each key's file is read, parsed and checked (its
//! sealed versions unsealed) the first time something needs the key, and
//! the result is installed in the key's cell with a compare-and-swap.
//!
//! Why the swap is safe: a writer (under the writer lock) writes the key's
//! file first and then stores the new state in the cell, and nothing ever
//! stores `Unloaded` after open, nor `Listed` over anything but `Unloaded`.
//! A loader installs what it read only if the cell still holds the state it
//! saw; if a writer stored a newer state in between, the swap fails and the
//! loader returns that state instead, so a stale read never overwrites a
//! write. Two loaders racing on one key both read the same file; the first
//! swap wins and the other takes its result (a use that finds a listing's
//! `Listed` there reads once more, as it needs the material).
//!
//! Reads happen inline, on whichever thread asks (a tokio worker for
//! requests), not through `spawn_blocking`: a key file is under 1 KiB and
//! read from the page cache in 10-20 µs, about what handing the read to the
//! blocking pool and back costs, and each key is read once per process.
//! The sweeps over every key yield to the runtime between batches of 256,
//! so a first sweep over 100,000 unread keys (about half a second of
//! reading in a release build) holds a worker for a few milliseconds at a
//! time. A ListKeys page reads at most its page size (1,000) of files.
//!
//! What stays in memory: the walks over every key (ListKeys, the rotation
//! and deletion sweeps, and so the daemon's key-count gauge, which walks
//! ListKeys every 30 s from start) keep each key's metadata once read
//! (`Entry::Listed`), but not its material: reading 100,000 files again on
//! every walk would cost about half a second of CPU each time, while the
//! metadata costs about 300 bytes a key (100,000 listed keys: +30 MB). A key's material is kept once
//! the key is used (`Entry::Ready`), and its wrapping keys once each
//! version is used (`LocalVersion`). Keys are never unloaded again: the
//! keys in use are few, and a cache with eviction is not worth its
//! complexity at 100,000 keys (`local_scale open` reports the figures).

use arc_swap::Guard;

use super::{key::Cell, *};

/// Keys read (at most) between two yields of a sweep.
const SWEEP_BATCH: usize = 256;

impl LocalBackend {
    /// The key's state, its file read first if it was not yet; `None` if
    /// the directory has no such key.
    pub(super) fn entry(&self, key_id: &KeyId) -> Option<Arc<Entry>> {
        let cell = self.keys.cell(key_id)?;
        Some(self.load_cell(key_id, cell.value()))
    }

    /// The state in `cell` (the cell of `key_id`), read from the file and
    /// installed first if the key is unread or only listed: `Ready` or
    /// `Unreadable`.
    pub(super) fn load_cell(&self, key_id: &KeyId, cell: &Cell) -> Arc<Entry> {
        load_with(cell, || self.read_key(key_id))
    }

    /// The state in `cell` with the key's metadata read if it was not yet;
    /// an unread key is installed as `Listed` (metadata only, see `Entry`).
    pub(super) fn list_cell(&self, key_id: &KeyId, cell: &Cell) -> Arc<Entry> {
        let seen = cell.load_full();
        if !matches!(*seen, Entry::Unloaded) {
            return seen;
        }
        let listed = match self.read_key(key_id) {
            // Read (and checked) whole, as a use would: a damaged file is
            // unreadable whichever reads it first.
            Entry::Ready(key) => match Arc::try_unwrap(key) {
                Ok(key) => Entry::Listed(Box::new(key.meta)),
                Err(key) => Entry::Ready(key),
            },
            other => other,
        };
        install(cell, &seen, listed)
    }

    /// The key's metadata, read (as for a listing) if it was not yet.
    pub(super) fn metadata(&self, key_id: &KeyId) -> Result<KeyMetadata, KmsError> {
        let cell = self
            .keys
            .cell(key_id)
            .ok_or_else(|| KmsError::KeyNotFound(key_id.clone()))?;
        self.list_cell(key_id, cell.value())
            .meta()
            .cloned()
            .ok_or_else(|| KmsError::KeyUnreadable(key_id.clone()))
    }

    /// Reads one key's file. A file that cannot be read, parsed or
    /// unsealed makes its key unavailable, with the reason in the log.
    pub(super) fn read_key(&self, key_id: &KeyId) -> Entry {
        let path = file::key_path(&self.dir, key_id);
        match load_key(&path, key_id, self.sealer.as_ref()) {
            Ok(key) => Entry::Ready(Arc::new(key)),
            Err(reason) => {
                tracing::error!(path = %path.display(), %reason, "key file is unreadable; this key is unavailable, the others are served");
                Entry::Unreadable
            }
        }
    }

    /// The metadata of the readable keys with an id after `after` (all if
    /// `None`), in id order; each key's metadata is read when the iteration
    /// reaches it, so a ListKeys page reads only the keys it returns.
    pub(super) fn listed_after<'a>(
        &'a self,
        after: Option<&'a KeyId>,
    ) -> impl Iterator<Item = KeyMetadata> + 'a {
        self.keys
            .cells_after(after)
            .filter_map(|cell| self.list_cell(cell.key(), cell.value()).meta().cloned())
    }

    /// The ids of the readable keys `pick` selects, in id order, reading
    /// unread keys' metadata on the way and yielding to the runtime
    /// between batches.
    pub(super) async fn select_keys(
        &self,
        pick: impl Fn(&KeyMetadata) -> bool + Send,
    ) -> Vec<KeyId> {
        let mut picked = Vec::new();
        let mut after: Option<KeyId> = None;
        loop {
            let mut last = None;
            let mut seen = 0;
            for cell in self.keys.cells_after(after.as_ref()).take(SWEEP_BATCH) {
                seen += 1;
                if self
                    .list_cell(cell.key(), cell.value())
                    .meta()
                    .is_some_and(&pick)
                {
                    picked.push(cell.key().clone());
                }
                last = Some(cell.key().clone());
            }
            if seen < SWEEP_BATCH {
                return picked;
            }
            after = last;
            tokio::task::yield_now().await;
        }
    }

    /// A version's plaintext material, unsealed if need be.
    pub(super) fn material(
        &self,
        key_id: &KeyId,
        version: u32,
        stored: &Stored,
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, KmsError> {
        match (stored, &self.sealer) {
            (Stored::Plain(material), _) => Ok(material.clone()),
            (Stored::Sealed(sealed), Some(sealer)) => {
                sealer.open(key_id, version, sealed).map_err(internal)
            }
            (Stored::Sealed(_), None) => Err(KmsError::Internal(format!(
                "key {key_id} holds sealed material without a sealer"
            ))),
        }
    }

    /// Version `version` of `key_id`'s wrapping key, derived on first use.
    pub(super) fn wrapping<'v>(
        &self,
        key_id: &KeyId,
        version: u32,
        of: &'v LocalVersion,
    ) -> Result<&'v WrappingKey, KmsError> {
        of.wrapping(|stored| self.material(key_id, version, stored))
    }
}

/// `load_cell` with the file read by `read`.
pub(super) fn load_with(cell: &Cell, mut read: impl FnMut() -> Entry) -> Arc<Entry> {
    let mut seen = cell.load_full();
    // At most twice round: a listing may install `Listed` over the
    // `Unloaded` this read started from, and that is no use to a caller
    // who needs the material; nothing replaces a `Listed` but `Ready` or
    // `Unreadable`.
    while matches!(*seen, Entry::Unloaded | Entry::Listed(_)) {
        seen = install(cell, &seen, read());
    }
    seen
}

/// Installs `loaded` in `cell` if it still holds `seen` (the `Unloaded`
/// the read started from), and returns the state the cell holds after.
pub(super) fn install(cell: &Cell, seen: &Arc<Entry>, loaded: Entry) -> Arc<Entry> {
    let loaded = Arc::new(loaded);
    let previous = cell.compare_and_swap(seen, Arc::clone(&loaded));
    if Arc::ptr_eq(&previous, seen) {
        loaded
    } else {
        // A writer or another loader got there first: theirs is at least
        // as new as what this read found.
        Guard::into_inner(previous)
    }
}

#[cfg(test)]
#[path = "lazy_tests.rs"]
mod tests;
