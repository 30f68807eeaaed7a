//! A key as the local backend holds it in memory: its metadata and, per
//! version, the wrapping key derived from its material and the material as
//! stored in the key file.

use super::*;

#[derive(Clone)]
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
