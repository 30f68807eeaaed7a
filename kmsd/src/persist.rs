//! The runtime configuration applied through the admin API, persisted in
//! `<state_dir>/runtime.json` so a restart comes back in the same state with
//! the same backend.
//!
//! Secrets never sit in this directory in the clear. A secret given inline
//! to the admin API (the seed's `"auth_method": {"token": "…"}`) is sealed
//! into `runtime.json` itself, as `{"sealed": "<base64>"}`, under a key
//! derived from `[server.state_sealing]` (a passphrase or key file the
//! operator provides; the same construction as sealed key directories, its
//! own domain, its parameters in `<state_dir>/.kmsd-sealing.json`). Without
//! `[server.state_sealing]`, an inline secret that would be persisted is
//! refused before anything changes ([`RuntimeStore::check_persistable`]).
//! Nothing is written before a transition succeeds, so a failed
//! reconfigure leaves no trace.
//!
//! Earlier versions wrote inline secrets to 0600 files under
//! `<state_dir>/secrets/`; with sealing configured they are read back,
//! sealed into `runtime.json` and removed at the first start.

use std::{
    io,
    path::{Path, PathBuf},
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use kms_core::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    backend::{
        local::{STATE_DIR, Sealer, SealingSecret},
        vault::RawSecret,
    },
    config::BackendConfig,
    fsutil,
};

const FILE: &str = "runtime.json";
/// The legacy directory of clear secret files.
const SECRETS_DIR: &str = "secrets";
/// Where inline secrets sit in a (vault) backend configuration, as JSON
/// pointers; also their sealing's associated data.
const SECRET_POINTERS: [&str; 2] = ["/auth_method/token", "/auth_method/approle/secret_id"];

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
    /// 1, or 2 when the file holds sealed secrets (so an older kmsd refuses
    /// it with a clear error instead of misreading it).
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
pub struct RuntimeStore {
    dir: PathBuf,
    sealer: Option<Sealer>,
}

impl std::fmt::Debug for RuntimeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeStore")
            .field("dir", &self.dir)
            .field("sealed", &self.sealer.is_some())
            .finish()
    }
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
    /// The state sealing could not be opened or set up.
    #[error("state directory sealing ({path}): {reason}")]
    Sealing {
        /// The state directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An inline secret would have to be persisted, and nothing seals it.
    #[error(
        "{field} is an inline secret and kmsd would persist it in server.state_dir; configure [server.state_sealing] so it is sealed at rest, or give the secret by file or variable in the config file"
    )]
    Unsealable {
        /// The field, e.g. `backend.auth_method.token`.
        field: String,
    },
}

impl RuntimeStore {
    /// Uses `dir` (created with mode 0700 if missing), sealing inline
    /// secrets with `sealing` when given.
    pub fn open(dir: &Path, sealing: Option<&SealingSecret>) -> Result<Self, PersistError> {
        fsutil::ensure_private_dir(dir).map_err(|source| PersistError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let sealer = sealing
            .map(|secret| Sealer::open_or_init_in(dir, secret, false, &STATE_DIR))
            .transpose()
            .map_err(|e| PersistError::Sealing {
                path: dir.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            dir: dir.to_owned(),
            sealer,
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    fn invalid(&self, reason: impl Into<String>) -> PersistError {
        PersistError::Invalid {
            path: self.path(),
            reason: reason.into(),
        }
    }

    /// Refuses `backend` if it holds an inline secret this store could not
    /// seal: called before a transition changes anything.
    pub fn check_persistable(&self, backend: &BackendConfig) -> Result<(), PersistError> {
        match (&self.sealer, inline_secret_fields(backend).first()) {
            (None, Some(field)) => Err(PersistError::Unsealable {
                field: (*field).to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// The persisted runtime, if any, with sealed secrets opened (and
    /// legacy clear secret files moved into the sealed form).
    pub fn load(&self) -> Result<Option<PersistedRuntime>, PersistError> {
        let path = self.path();
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(PersistError::Io { path, source }),
        };
        let mut value: Value = serde_json::from_slice(&text)
            .map_err(|e| self.invalid(crate::config::redact_json_error(&e)))?;
        for backend in backends_mut(&mut value) {
            self.unseal(backend)?;
        }
        let mut runtime: PersistedRuntime = serde_json::from_value(value)
            .map_err(|e| self.invalid(crate::config::redact_json_error(&e)))?;
        if !matches!(runtime.format, 1 | 2) {
            return Err(self.invalid(format!("unknown format {}", runtime.format)));
        }
        if self.sealer.is_some() {
            let migrated = std::iter::once(&mut runtime.backend)
                .chain(&mut runtime.previous_backends)
                .map(|b| self.migrate_legacy(b))
                .collect::<Result<Vec<bool>, _>>()?;
            if migrated.contains(&true) {
                self.save(&runtime)?;
                let referenced: Vec<PathBuf> = std::iter::once(&runtime.backend)
                    .chain(&runtime.previous_backends)
                    .flat_map(BackendConfig::secret_files)
                    .collect();
                self.prune_secrets(&referenced);
                tracing::info!("moved clear secret files of the state directory into sealed form");
            }
        }
        Ok(Some(runtime))
    }

    /// Replaces the persisted runtime, atomically and durably, with every
    /// inline secret sealed.
    pub fn save(&self, runtime: &PersistedRuntime) -> Result<(), PersistError> {
        let mut sealed_any = false;
        let mut backend_value = |backend: &BackendConfig| -> Result<Value, PersistError> {
            let (value, sealed) = self.sealed_value(backend)?;
            sealed_any |= sealed;
            Ok(value)
        };
        let backend = backend_value(&runtime.backend)?;
        let previous = runtime
            .previous_backends
            .iter()
            .map(&mut backend_value)
            .collect::<Result<Vec<_>, _>>()?;
        let document = serde_json::json!({
            "format": if sealed_any { 2 } else { 1 },
            "state": runtime.state,
            "backend": backend,
            "previous_backends": previous,
        });
        let json = serde_json::to_vec_pretty(&document).map_err(|e| self.invalid(e.to_string()))?;
        fsutil::write_atomic(&self.dir, FILE, &json).map_err(|source| PersistError::Io {
            path: self.path(),
            source,
        })
    }

    /// `backend` as JSON with its inline secrets sealed; whether any was.
    fn sealed_value(&self, backend: &BackendConfig) -> Result<(Value, bool), PersistError> {
        let mut stripped = backend.clone();
        let mut secrets: Vec<(&str, SecretString)> = Vec::new();
        if let BackendConfig::Vault(vault) = &mut stripped {
            let auth = &mut vault.auth_method;
            if let Some(RawSecret(token)) = auth.token.take() {
                secrets.push((SECRET_POINTERS[0], token));
            }
            if let Some(approle) = &mut auth.approle
                && let Some(RawSecret(secret_id)) = approle.secret_id.take()
            {
                secrets.push((SECRET_POINTERS[1], secret_id));
            }
        }
        let mut value = serde_json::to_value(&stripped).map_err(|e| self.invalid(e.to_string()))?;
        let sealed = !secrets.is_empty();
        for (pointer, secret) in secrets {
            let Some(sealer) = &self.sealer else {
                return Err(PersistError::Unsealable {
                    field: field_name(pointer),
                });
            };
            let bytes = sealer
                .seal_value(pointer.as_bytes(), secret.expose_secret().as_bytes())
                .map_err(|e| self.invalid(format!("sealing a secret: {e}")))?;
            let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
            let slot = value
                .pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .ok_or_else(|| self.invalid("a secret's table is missing"))?;
            slot.insert(
                key.to_owned(),
                serde_json::json!({ "sealed": B64.encode(bytes) }),
            );
        }
        Ok((value, sealed))
    }

    /// Replaces each `{"sealed": …}` of one backend's JSON by the secret.
    fn unseal(&self, backend: &mut Value) -> Result<(), PersistError> {
        for pointer in SECRET_POINTERS {
            let Some(slot) = backend.pointer_mut(pointer) else {
                continue;
            };
            let Some(sealed) = slot.get("sealed").and_then(Value::as_str) else {
                continue;
            };
            let Some(sealer) = &self.sealer else {
                return Err(self.invalid(
                    "it holds sealed secrets: configure the [server.state_sealing] they were sealed with",
                ));
            };
            let bytes = B64
                .decode(sealed)
                .map_err(|_| self.invalid("a sealed secret is not base64"))?;
            let plain = sealer.open_value(pointer.as_bytes(), &bytes).map_err(|_| {
                self.invalid("a sealed secret does not open: wrong [server.state_sealing] secret, or the file was changed")
            })?;
            let text = String::from_utf8(plain.expose_secret().to_vec())
                .map_err(|_| self.invalid("a sealed secret is not text"))?;
            *slot = Value::String(text);
        }
        Ok(())
    }

    /// Reads a secret an earlier version left in `<state_dir>/secrets/` back
    /// inline (the next save seals it); whether anything moved.
    fn migrate_legacy(&self, backend: &mut BackendConfig) -> Result<bool, PersistError> {
        let BackendConfig::Vault(vault) = backend else {
            return Ok(false);
        };
        let legacy = self.dir.join(SECRETS_DIR);
        let read = |path: &Path| -> Result<RawSecret, PersistError> {
            let text = std::fs::read_to_string(path).map_err(|source| PersistError::Io {
                path: path.to_owned(),
                source,
            })?;
            Ok(RawSecret(SecretString::new(text)))
        };
        let mut moved = false;
        let auth = &mut vault.auth_method;
        if let Some(path) = auth.token_file.take_if(|p| p.starts_with(&legacy)) {
            auth.token = Some(read(&path)?);
            moved = true;
        }
        if let Some(approle) = &mut auth.approle
            && let Some(path) = approle.secret_id_file.take_if(|p| p.starts_with(&legacy))
        {
            approle.secret_id = Some(read(&path)?);
            moved = true;
        }
        Ok(moved)
    }

    /// Removes legacy secret files no configuration references any more.
    pub fn prune_secrets(&self, referenced: &[PathBuf]) {
        let dir = self.dir.join(SECRETS_DIR);
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

/// `backend.auth_method.token` for `/auth_method/token`.
fn field_name(pointer: &str) -> String {
    format!("backend{}", pointer.replace('/', "."))
}

/// The fields of `backend` that hold an inline secret.
pub fn inline_secret_fields(backend: &BackendConfig) -> Vec<&'static str> {
    let BackendConfig::Vault(vault) = backend else {
        return Vec::new();
    };
    let auth = &vault.auth_method;
    let mut fields = Vec::new();
    if auth.token.is_some() {
        fields.push("backend.auth_method.token");
    }
    if auth.approle.as_ref().is_some_and(|a| a.secret_id.is_some()) {
        fields.push("backend.auth_method.approle.secret_id");
    }
    fields
}

/// The backend objects of a runtime.json document.
fn backends_mut(value: &mut Value) -> Vec<&mut Value> {
    let Some(object) = value.as_object_mut() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in object.iter_mut() {
        match (key.as_str(), value) {
            ("backend", backend) => out.push(backend),
            ("previous_backends", Value::Array(list)) => out.extend(list.iter_mut()),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
