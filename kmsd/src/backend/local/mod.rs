//! The local backend: master keys in files under `key_dir`, one per key.
//!
//! For development, CI and single nodes. Keys are held in memory after
//! startup; every change is written to disk (atomically and durably) before
//! it becomes visible, so a client never sees a key that a crash could lose.

mod aliases;
mod convert;
mod error;
mod file;
mod sealing;
mod update;

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use arc_swap::ArcSwap;
use time::OffsetDateTime;
use zeroize::Zeroizing;

pub use self::error::LocalError;
pub use self::sealing::{MIN_PASSPHRASE_LEN, STATE_DIR, SealDomain, Sealer, SealingSecret};
use self::{
    convert::{load_key, to_file},
    file::{KEY_FILE_FORMAT, KEY_FILE_SUFFIX, KeyFile, PlainMaterial, VersionFile},
};
use super::{
    GeneratedKey, KeyBackend, KeyMetadata, KeyState, NewKey, Opened, Sealed, StateChange, Sweep,
    VersionInfo,
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
    keys: ArcSwap<BTreeMap<KeyId, Entry>>,
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
            .field("keys", &self.keys.load().len())
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
enum Entry {
    Ready(Arc<LocalKey>),
    /// The file exists but could not be read; the reason was logged.
    Unreadable,
}

struct LocalKey {
    meta: KeyMetadata,
    /// Index `v - 1` holds version `v`.
    versions: Vec<Arc<LocalVersion>>,
}

struct LocalVersion {
    wrapping: WrappingKey,
    stored: Stored,
}

enum Stored {
    Plain(Zeroizing<[u8; KEY_LEN]>),
    Sealed(Vec<u8>),
}

impl LocalKey {
    fn version(&self, version: u32) -> Option<&LocalVersion> {
        let index = usize::try_from(version).ok()?.checked_sub(1)?;
        self.versions.get(index).map(Arc::as_ref)
    }

    fn current(&self) -> Result<&LocalVersion, KmsError> {
        self.version(self.meta.current_version).ok_or_else(|| {
            KmsError::Internal(format!("key {} lost its current version", self.meta.key_id))
        })
    }
}

impl LocalBackend {
    /// Opens (creating if needed) the key directory and loads every key.
    /// Blocks on file I/O; call it from a blocking context.
    pub fn open(config: LocalConfig, clock: Arc<dyn Clock>) -> Result<Self, LocalError> {
        let dir = config.key_dir;
        let io_at = |path: &Path| {
            let path = path.to_owned();
            move |source| LocalError::Io { path, source }
        };
        file::ensure_private_dir(&dir).map_err(io_at(&dir))?;
        if file::loose_mode_bits(&dir).map_err(io_at(&dir))? != 0 {
            return Err(LocalError::LoosePermissions { path: dir });
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = fs::OpenOptions::new()
            .mode(0o600)
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_at(&lock_path))?;
        // A backend just replaced may still be finishing writes it started
        // (they hold its lock); they take milliseconds. Another process
        // holds it for good.
        let lock_deadline = std::time::Instant::now() + LOCK_WAIT;
        while lock.try_lock().is_err() {
            if std::time::Instant::now() >= lock_deadline {
                return Err(LocalError::Locked(dir));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }

        let mut key_files = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let entry = entry.map_err(io_at(&dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if file::is_temp_file(name) {
                // Left by a crash before its rename: never a committed key.
                tracing::info!(path = %entry.path().display(), "removing an interrupted write");
                match fs::remove_file(entry.path()) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io_at(&entry.path())(e));
                    }
                    _ => {}
                }
                continue;
            }
            let Some(stem) = name.strip_suffix(KEY_FILE_SUFFIX) else {
                continue;
            };
            match KeyId::parse(stem) {
                Ok(id) => key_files.push((id, entry.path())),
                Err(_) => {
                    tracing::warn!(path = %entry.path().display(), "ignoring a file whose name is not a valid key id");
                }
            }
        }

        let sealer = match (&config.sealing, sealing::is_sealed(&dir)) {
            (Some(secret), _) => Some(Sealer::open_or_init(&dir, secret, !key_files.is_empty())?),
            (None, true) => return Err(LocalError::SealedWithoutSecret(dir)),
            (None, false) => None,
        };

        let mut keys = BTreeMap::new();
        for (key_id, path) in key_files {
            if file::loose_mode_bits(&path).map_err(io_at(&path))? != 0 {
                return Err(LocalError::LoosePermissions { path });
            }
            let entry = match load_key(&path, &key_id, sealer.as_ref()) {
                Ok(key) => Entry::Ready(Arc::new(key)),
                Err(reason) => {
                    tracing::error!(path = %path.display(), %reason, "key file is unreadable; this key is unavailable, the others are served");
                    Entry::Unreadable
                }
            };
            keys.insert(key_id, entry);
        }
        tracing::info!(dir = %dir.display(), keys = keys.len(), sealed = sealer.is_some(), "local key directory loaded");
        let aliases = aliases::LocalAliases::load(&dir);
        Ok(Self {
            dir,
            keys: ArcSwap::from_pointee(keys),
            writer: tokio::sync::Mutex::new(()),
            sealer,
            clock,
            aliases,
            lock: Arc::new(lock),
        })
    }

    /// The key directory.
    pub fn key_dir(&self) -> &Path {
        &self.dir
    }

    /// Whether key files are sealed at rest.
    pub fn is_sealed(&self) -> bool {
        self.sealer.is_some()
    }

    fn key(&self, key_id: &KeyId) -> Result<Arc<LocalKey>, KmsError> {
        match self.keys.load().get(key_id) {
            Some(Entry::Ready(key)) => Ok(Arc::clone(key)),
            Some(Entry::Unreadable) => Err(KmsError::KeyUnreadable(key_id.clone())),
            None => Err(KmsError::KeyNotFound(key_id.clone())),
        }
    }

    fn new_version(&self, key_id: &KeyId, version: u32) -> Result<Arc<LocalVersion>, KmsError> {
        let material = Zeroizing::new(crypto::random_array::<KEY_LEN>().map_err(internal)?);
        let stored = match &self.sealer {
            Some(sealer) => {
                Stored::Sealed(sealer.seal(key_id, version, &material).map_err(internal)?)
            }
            None => Stored::Plain(material.clone()),
        };
        Ok(Arc::new(LocalVersion {
            wrapping: WrappingKey::new(&material, BLOB_DOMAIN),
            stored,
        }))
    }

    /// Writes the key's file, then makes the new state visible.
    async fn commit(&self, key: LocalKey) -> Result<KeyMetadata, KmsError> {
        let json = Zeroizing::new(
            serde_json::to_vec_pretty(&to_file(&key))
                .map_err(|e| KmsError::Internal(format!("encoding a key file: {e}")))?,
        );
        let dir = self.dir.clone();
        let name = format!("{}{KEY_FILE_SUFFIX}", key.meta.key_id);
        let lock = Arc::clone(&self.lock);
        tokio::task::spawn_blocking(move || {
            let _held = lock;
            file::write_atomic(&dir, &name, &json)
        })
        .await
        .map_err(|e| KmsError::Internal(format!("key writer task failed: {e}")))?
        .map_err(|e| {
            KmsError::Internal(format!("writing key file in {}: {e}", self.dir.display()))
        })?;
        let meta = key.meta.clone();
        let key = Arc::new(key);
        self.keys.rcu(|keys| {
            let mut keys = BTreeMap::clone(keys);
            keys.insert(meta.key_id.clone(), Entry::Ready(Arc::clone(&key)));
            keys
        });
        Ok(meta)
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
        key.current()?
            .wrapping
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
        let plaintext = version
            .wrapping
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
        if self.keys.load().contains_key(&new.key_id) {
            return Err(KmsError::KeyAlreadyExists(new.key_id));
        }
        let now = self.clock.now();
        let version = self.new_version(&new.key_id, 1)?;
        let key = LocalKey {
            meta: KeyMetadata {
                key_id: new.key_id,
                state: KeyState::Enabled,
                description: new.description,
                created_at: now,
                deletion_date: None,
                current_version: 1,
                versions: vec![VersionInfo {
                    version: 1,
                    created_at: now,
                }],
                backend: BackendKind::Local,
                tags: new.tags,
            },
            versions: vec![version],
        };
        self.commit(key).await
    }

    async fn describe_key(&self, key_id: &KeyId) -> Result<KeyMetadata, KmsError> {
        Ok(self.key(key_id)?.meta.clone())
    }

    async fn list_keys(
        &self,
        after: Option<&KeyId>,
        limit: usize,
    ) -> Result<Vec<KeyMetadata>, KmsError> {
        let keys = self.keys.load();
        let range = match after {
            Some(after) => keys
                .range::<KeyId, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => keys.range::<KeyId, _>(..),
        };
        Ok(range
            .filter_map(|(_, entry)| match entry {
                Entry::Ready(key) => Some(key.meta.clone()),
                Entry::Unreadable => None,
            })
            .take(limit)
            .collect())
    }

    async fn rotate_key(&self, key_id: &KeyId) -> Result<KeyMetadata, KmsError> {
        let _writing = self.writer.lock().await;
        let old = self.key(key_id)?;
        if old.meta.state == KeyState::PendingDeletion {
            return Err(KmsError::InvalidStateTransition {
                key_id: key_id.clone(),
                state: old.meta.state.as_str(),
                action: "rotate",
            });
        }
        let next = old.meta.current_version.checked_add(1).ok_or_else(|| {
            KmsError::InvalidArgument(format!("key {key_id} has reached its last version"))
        })?;
        let mut meta = old.meta.clone();
        meta.current_version = next;
        meta.versions.push(VersionInfo {
            version: next,
            created_at: self.clock.now(),
        });
        let mut versions = old.versions.clone();
        versions.push(self.new_version(key_id, next)?);
        self.commit(LocalKey { meta, versions }).await
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
        self.key(key_id)?.meta.check_usable()
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

impl LocalBackend {
    /// The deletion sweep; `destroyed` collects the keys as they go.
    async fn sweep(&self, now: OffsetDateTime, destroyed: &mut Vec<KeyId>) -> Result<(), KmsError> {
        let _writing = self.writer.lock().await;
        let due: Vec<KeyId> = self
            .keys
            .load()
            .iter()
            .filter_map(|(id, entry)| match entry {
                Entry::Ready(key)
                    if key.meta.state == KeyState::PendingDeletion
                        && key.meta.deletion_date.is_some_and(|d| d <= now) =>
                {
                    Some(id.clone())
                }
                _ => None,
            })
            .collect();
        for key_id in due {
            let dir = self.dir.clone();
            let path = file::key_path(&self.dir, &key_id);
            let lock = Arc::clone(&self.lock);
            tokio::task::spawn_blocking(move || {
                let _held = lock;
                file::remove_durably(&dir, &path)
            })
            .await
            .map_err(|e| KmsError::Internal(format!("key remover task failed: {e}")))?
            .map_err(|e| KmsError::Internal(format!("removing key file of {key_id}: {e}")))?;
            self.keys.rcu(|keys| {
                let mut keys = BTreeMap::clone(keys);
                keys.remove(&key_id);
                keys
            });
            tracing::info!(%key_id, "key destroyed: its deletion window has passed");
            destroyed.push(key_id);
        }
        Ok(())
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
