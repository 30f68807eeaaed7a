//! The local backend: master keys in files under `key_dir`, one per key.
//!
//! For development, CI and single nodes. Keys are read on first use and
//! then held in memory (`lazy.rs`); every change is written to disk (atomically and durably) before
//! it becomes visible, so a client never sees a key that a crash could lose.

mod aliases;
mod backup;
mod bundle;
mod convert;
mod error;
mod file;
mod key;
mod lazy;
mod open;
mod rotation;
pub mod scale;
mod sealing;
mod update;
mod usage;
mod write;

use std::{
    fs,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use time::OffsetDateTime;
use zeroize::Zeroizing;

pub use self::backup::{OnConflict, RestoreReport};
pub use self::error::LocalError;
pub use self::sealing::{MIN_PASSPHRASE_LEN, STATE_DIR, SealDomain, Sealer, SealingSecret};
use self::{
    convert::{load_key, to_file},
    file::{KEY_FILE_FORMAT, KEY_FILE_SUFFIX, KeyFile, PlainMaterial, VersionFile},
    key::{Entry, KeyMap, LocalKey, LocalVersion, Stored},
};
use super::{
    GeneratedKey, KeyBackend, KeyMetadata, KeyOrigin, KeyState, NewKey, Opened, Sealed,
    StateChange, Sweep, VersionInfo,
};
use crate::{
    blob::{self, BackendKind, BlobHeader, LocalPayload, ParsedBlob},
    clock::Clock,
    context::EncryptionContext,
    crypto::{self, CryptoError, KEY_LEN, SEED_LEN, TAG_LEN, WrappingKey},
    error::KmsError,
    key_id::KeyId,
};

/// HKDF domain of sealed blobs made by this backend.
const BLOB_DOMAIN: &[u8] = b"kmsd/v1/local-blob";
/// Held (flock) while a kmsd process uses the directory.
const LOCK_FILE: &str = ".kmsd.lock";
/// How long opening a directory waits for its lock (see `open`).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Where the keys are and how they are protected at rest.
#[derive(Debug)]
pub struct LocalConfig {
    /// The key directory.
    pub key_dir: PathBuf,
    /// Seal key files under a KEK from this secret.
    pub sealing: Option<SealingSecret>,
}

/// The local backend.
pub struct LocalBackend {
    dir: PathBuf,
    keys: KeyMap,
    /// Serialises changes, so each is written before the next is computed.
    writer: tokio::sync::Mutex<()>,
    sealer: Option<Sealer>,
    clock: Arc<dyn Clock>,
    aliases: aliases::LocalAliases,
    /// Holds the directory lock for the backend's lifetime, and for any
    /// write it started: a write outlives the backend when its caller timed
    /// out and the backend was then replaced, and the next backend on the
    /// directory must not read (or clean up) behind it.
    lock: Arc<fs::File>,
}

impl std::fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBackend")
            .field("dir", &self.dir)
            .field("sealed", &self.sealer.is_some())
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl LocalBackend {
    /// The key directory.
    pub fn key_dir(&self) -> &Path {
        &self.dir
    }

    /// Whether key files are sealed at rest.
    pub fn is_sealed(&self) -> bool {
        self.sealer.is_some()
    }

    fn key(&self, key_id: &KeyId) -> Result<Arc<LocalKey>, KmsError> {
        match self.entry(key_id).as_deref() {
            Some(Entry::Ready(key)) => Ok(Arc::clone(key)),
            // `entry` reads an unread or listed key, so only `Ready` and
            // `Unreadable` are seen here.
            Some(Entry::Unreadable | Entry::Unloaded | Entry::Listed(_)) => {
                Err(KmsError::KeyUnreadable(key_id.clone()))
            }
            None => Err(KmsError::KeyNotFound(key_id.clone())),
        }
    }

    fn seal(
        &self,
        key_id: &KeyId,
        key: &LocalKey,
        plaintext: &[u8],
        seed: &[u8; SEED_LEN],
        context: &EncryptionContext,
    ) -> Result<Sealed, KmsError> {
        let key_version = key.meta.current_version;
        let header = BlobHeader {
            backend: BackendKind::Local,
            key_id: key_id.clone(),
            key_version,
        };
        let mut out = header.encode(SEED_LEN + plaintext.len() + TAG_LEN);
        let aad = blob::aad(&out, context);
        out.extend_from_slice(seed);
        self.wrapping(key_id, key_version, key.current()?)?
            .seal_append(seed, &aad, plaintext, &mut out)
            .map_err(internal)?;
        Ok(Sealed {
            blob: out,
            key_id: key_id.clone(),
            key_version,
        })
    }
}

impl KeyBackend for LocalBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Local
    }

    async fn generate_data_key(
        &self,
        key_id: &KeyId,
        context: &EncryptionContext,
    ) -> Result<GeneratedKey, KmsError> {
        let key = self.key(key_id)?;
        key.meta.check_usable()?;
        // One getrandom call gives both the data key and the seal's seed.
        let mut random = Zeroizing::new([0u8; KEY_LEN + SEED_LEN]);
        crypto::fill_random(random.as_mut()).map_err(internal)?;
        let (dek, seed) = random.split_at(KEY_LEN);
        let dek: [u8; KEY_LEN] = dek.try_into().map_err(internal_len)?;
        let seed: &[u8; SEED_LEN] = seed.try_into().map_err(internal_len)?;
        let key_material = kms_core::DataKey::from_bytes(dek);
        let sealed = self.seal(key_id, &key, key_material.expose_secret(), seed, context)?;
        Ok(GeneratedKey {
            key: key_material,
            sealed,
        })
    }

    async fn encrypt(
        &self,
        key_id: &KeyId,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Sealed, KmsError> {
        let key = self.key(key_id)?;
        key.meta.check_usable()?;
        let seed = crypto::random_array::<SEED_LEN>().map_err(internal)?;
        self.seal(key_id, &key, plaintext, &seed, context)
    }

    async fn decrypt(
        &self,
        blob: &ParsedBlob<'_>,
        context: &EncryptionContext,
    ) -> Result<Opened, KmsError> {
        let header = &blob.header;
        let key = self.key(&header.key_id)?;
        key.meta.check_usable()?;
        let version =
            key.version(header.key_version)
                .ok_or_else(|| KmsError::KeyVersionNotFound {
                    key_id: header.key_id.clone(),
                    version: header.key_version,
                })?;
        let payload = LocalPayload::parse(blob.payload)?;
        let aad = blob::aad(blob.header_bytes, context);
        let plaintext = self
            .wrapping(&header.key_id, header.key_version, version)?
            .open(payload.seed, &aad, payload.sealed)
            .map_err(|_| KmsError::InvalidCiphertext)?;
        Ok(Opened {
            plaintext,
            key_id: header.key_id.clone(),
            key_version: header.key_version,
        })
    }

    async fn create_key(&self, new: NewKey) -> Result<KeyMetadata, KmsError> {
        let _writing = self.writer.lock().await;
        if self.keys.contains(&new.key_id) {
            return Err(KmsError::KeyAlreadyExists(new.key_id));
        }
        let version = self.new_version(&new.key_id, 1)?;
        self.commit(self.first_version(new, version, KeyOrigin::Kmsd))
            .await
    }

    async fn import_key(
        &self,
        new: NewKey,
        material: Zeroizing<[u8; KEY_LEN]>,
    ) -> Result<KeyMetadata, KmsError> {
        let _writing = self.writer.lock().await;
        if self.keys.contains(&new.key_id) {
            return Err(KmsError::KeyAlreadyExists(new.key_id));
        }
        let version = self.version_of(&new.key_id, 1, material)?;
        self.commit(self.first_version(new, version, KeyOrigin::External))
            .await
    }

    async fn describe_key(&self, key_id: &KeyId) -> Result<KeyMetadata, KmsError> {
        self.metadata(key_id)
    }

    async fn list_keys(
        &self,
        after: Option<&KeyId>,
        limit: usize,
    ) -> Result<Vec<KeyMetadata>, KmsError> {
        Ok(self.listed_after(after).take(limit).collect())
    }

    async fn rotate_key(&self, key_id: &KeyId) -> Result<KeyMetadata, KmsError> {
        let _writing = self.writer.lock().await;
        let old = self.key(key_id)?;
        let key = self.with_new_version(key_id, &old)?;
        self.commit(key).await
    }

    async fn change_state(
        &self,
        key_id: &KeyId,
        change: StateChange,
    ) -> Result<KeyMetadata, KmsError> {
        let _writing = self.writer.lock().await;
        let old = self.key(key_id)?;
        let (state, deletion_date) = change.apply(key_id, old.meta.state)?;
        if state == old.meta.state && deletion_date == old.meta.deletion_date {
            return Ok(old.meta.clone());
        }
        let mut meta = old.meta.clone();
        meta.state = state;
        meta.deletion_date = deletion_date;
        self.commit(LocalKey {
            meta,
            versions: old.versions.clone(),
        })
        .await
    }

    async fn destroy_due_keys(&self, now: OffsetDateTime) -> Sweep {
        let mut sweep = Sweep::default();
        if let Err(e) = self.sweep(now, &mut sweep.destroyed).await {
            sweep.failed = Some(e);
        }
        sweep
    }

    async fn key_usable(&self, key_id: &KeyId) -> Result<(), KmsError> {
        self.metadata(key_id)?.check_usable()
    }

    async fn health(&self) -> Result<(), KmsError> {
        match fs::metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(KmsError::BackendUnavailable {
                backend: "local",
                detail: "the key directory is not a directory".into(),
            }),
            Err(e) => Err(KmsError::BackendUnavailable {
                backend: "local",
                detail: format!("the key directory is not accessible: {}", e.kind()),
            }),
        }
    }
}

fn internal(e: CryptoError) -> KmsError {
    KmsError::Internal(e.to_string())
}

fn internal_len(_: std::array::TryFromSliceError) -> KmsError {
    KmsError::Internal("slice length mismatch".into())
}

#[cfg(test)]
mod tests;
