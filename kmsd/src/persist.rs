//! The runtime configuration applied through the admin API, persisted in
//! `<state_dir>/runtime.json` so a restart comes back in the same state with
//! the same backend.
//!
//! Secrets are never in this file: backend configurations reference them by
//! file path or environment variable. An inline secret given to the admin
//! API (the seed's `"auth_method": {"token": "…"}`) is first written to a
//! 0600 file under `<state_dir>/secrets/` and referenced from there; files
//! no configuration references any more are removed.

use std::{
    io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use kms_client::SecretString;

use crate::{config::BackendConfig, fsutil};

const FILE: &str = "runtime.json";

/// The state the daemon should return to after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DesiredState {
    /// Configured, not serving.
    Configured,
    /// Serving.
    Running,
    /// Stopped on request.
    Stopped,
}

/// What is persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistedRuntime {
    /// Always 1.
    pub format: u32,
    /// The state to return to.
    pub state: DesiredState,
    /// The backend.
    pub backend: BackendConfig,
    /// Decrypt-only backends kept after reconfigurations, newest first.
    #[serde(default)]
    pub previous_backends: Vec<BackendConfig>,
}

/// Reads and writes `runtime.json`.
#[derive(Debug, Clone)]
pub struct RuntimeStore {
    dir: PathBuf,
}

/// Why the persisted runtime cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// A file-system call failed.
    #[error("{path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What.
        #[source]
        source: io::Error,
    },
    /// The file is damaged.
    #[error("{path} is not a valid runtime state file: {reason}")]
    Invalid {
        /// Where.
        path: PathBuf,
        /// What.
        reason: String,
    },
}

impl RuntimeStore {
    /// Uses `dir` (created with mode 0700 if missing).
    pub fn open(dir: &Path) -> Result<Self, PersistError> {
        fsutil::ensure_private_dir(dir).map_err(|source| PersistError::Io {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// The persisted runtime, if any.
    pub fn load(&self) -> Result<Option<PersistedRuntime>, PersistError> {
        let path = self.path();
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(PersistError::Io { path, source }),
        };
        let runtime: PersistedRuntime =
            serde_json::from_slice(&text).map_err(|e| PersistError::Invalid {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if runtime.format != 1 {
            return Err(PersistError::Invalid {
                path,
                reason: format!("unknown format {}", runtime.format),
            });
        }
        Ok(Some(runtime))
    }

    /// Replaces the persisted runtime, atomically and durably.
    pub fn save(&self, runtime: &PersistedRuntime) -> Result<(), PersistError> {
        let json = serde_json::to_vec_pretty(runtime).map_err(|e| PersistError::Invalid {
            path: self.path(),
            reason: e.to_string(),
        })?;
        fsutil::write_atomic(&self.dir, FILE, &json).map_err(|source| PersistError::Io {
            path: self.path(),
            source,
        })
    }

    fn secrets_dir(&self) -> PathBuf {
        self.dir.join("secrets")
    }

    /// Writes a secret given inline to the admin API into a new private
    /// file (`<state_dir>/secrets/`, mode 0600 in a 0700 directory) and
    /// returns its path, which the persisted configuration references.
    pub fn store_secret(&self, secret: &SecretString) -> Result<PathBuf, PersistError> {
        let dir = self.secrets_dir();
        let io = |source| PersistError::Io {
            path: dir.clone(),
            source,
        };
        fsutil::ensure_private_dir(&dir).map_err(io)?;
        let name = format!(
            "secret-{}",
            hex::encode(
                crate::crypto::random_array::<8>().map_err(|e| io(std::io::Error::other(e)))?
            )
        );
        fsutil::write_atomic(&dir, &name, secret.expose_secret().as_bytes()).map_err(io)?;
        Ok(dir.join(name))
    }

    /// Removes stored secrets no configuration references any more.
    pub fn prune_secrets(&self, referenced: &[PathBuf]) {
        let dir = self.secrets_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !referenced.contains(&path)
                && let Err(e) = fsutil::remove_durably(&dir, &path)
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an unused stored secret");
            }
        }
    }

    /// Forgets the persisted runtime.
    pub fn clear(&self) -> Result<(), PersistError> {
        fsutil::remove_durably(&self.dir, &self.path()).map_err(|source| PersistError::Io {
            path: self.path(),
            source,
        })
    }
}
