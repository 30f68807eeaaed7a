//! The Vault backend's aliases: one KV v2 secret per alias at
//! `<kv_mount>/data/<key_path_prefix>/_aliases/<name>` (`_aliases` cannot
//! be a key id, which starts with a letter or digit, so it never collides
//! with a key record). Writes are check-and-set, so two kmsd creating or
//! retargeting one alias never lose an update.
//!
//! Resolution is cached for the metadata TTL (`cache_ttl_seconds`), like
//! key metadata: a retarget made through this kmsd is seen here at once,
//! one made through another kmsd of the same Vault within one TTL.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use super::{
    client::VaultClient,
    kv::{CAS_ATTEMPTS, Folder, Written},
};
use crate::{
    alias::{AliasEntry, AliasName, AliasWrite},
    clock::Clock,
    error::KmsError,
    key_id::KeyId,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::time::Instant;

/// The folder under the key prefix that holds the aliases.
pub(super) const ALIAS_FOLDER: &str = "_aliases";
/// The record format this kmsd writes.
const ALIAS_FORMAT: u32 = 1;
/// Most resolutions cached; beyond, the cache starts over (aliases are
/// few, so this only bounds memory against a flood of distinct names).
const MAX_CACHED: usize = 10_000;

#[derive(Debug, Serialize, Deserialize)]
struct AliasRecord {
    format: u32,
    alias_name: String,
    target_key_id: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
}

impl AliasRecord {
    fn entry(&self, name: &AliasName) -> Result<AliasEntry, String> {
        if self.format != ALIAS_FORMAT {
            return Err(format!("unknown alias record format {}", self.format));
        }
        if self.alias_name != name.name() {
            return Err(format!("the record names alias {:?}", self.alias_name));
        }
        Ok(AliasEntry {
            name: name.clone(),
            target: KeyId::parse(&self.target_key_id).map_err(|e| e.to_string())?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// The alias records under one prefix, and the resolution cache.
pub(super) struct VaultAliases {
    folder: Folder,
    ttl: Duration,
    // A std lock: never held across an await.
    cache: Mutex<HashMap<AliasName, (KeyId, Instant)>>,
}

impl std::fmt::Debug for VaultAliases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultAliases")
            .field("folder", &self.folder)
            .finish_non_exhaustive()
    }
}

impl VaultAliases {
    /// Aliases at `<mount>/data/<key_prefix>/_aliases/`, resolutions cached
    /// for `ttl`.
    pub(super) fn new(client: VaultClient, mount: String, key_prefix: &str, ttl: Duration) -> Self {
        Self {
            folder: Folder::new(client, mount, format!("{key_prefix}/{ALIAS_FOLDER}")),
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, name: &AliasName) -> Option<KeyId> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(name)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(target, _)| target.clone())
    }

    pub(super) fn remember(&self, name: &AliasName, target: Option<&KeyId>) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        match target {
            Some(target) if !self.ttl.is_zero() => {
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
                cache.insert(name.clone(), (target.clone(), Instant::now()));
            }
            _ => {
                cache.remove(name);
            }
        }
    }

    /// Drops every cached resolution; returns how many there were.
    pub(super) fn clear(&self) -> usize {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let n = cache.len();
        cache.clear();
        n
    }

    /// The alias and its KV version, if it exists.
    async fn read(&self, name: &AliasName) -> Result<Option<(AliasEntry, u64)>, KmsError> {
        let Some((data, version)) = self.folder.read(name.name()).await? else {
            return Ok(None);
        };
        let entry = serde_json::from_value::<AliasRecord>(data)
            .map_err(|e| e.to_string())
            .and_then(|record| record.entry(name))
            .map_err(|reason| {
                tracing::error!(alias = %name, %reason, "an alias record in Vault is damaged");
                KmsError::Internal(format!("the record of {name} in Vault is damaged"))
            })?;
        Ok(Some((entry, version)))
    }

    /// Writes `entry` if the secret is still at `version` (0: absent);
    /// false if someone else wrote first.
    async fn write(&self, entry: &AliasEntry, version: u64) -> Result<bool, KmsError> {
        let record = AliasRecord {
            format: ALIAS_FORMAT,
            alias_name: entry.name.name().to_owned(),
            target_key_id: entry.target.to_string(),
            created_at: entry.created_at,
            updated_at: entry.updated_at,
        };
        let written = self
            .folder
            .write(entry.name.name(), &record, version)
            .await?;
        Ok(written == Written::Done)
    }

    async fn names(&self) -> Result<Vec<AliasName>, KmsError> {
        Ok(self
            .folder
            .list()
            .await?
            .iter()
            .filter_map(|name| AliasName::parse(name).ok())
            .collect())
    }
}

/// The alias operations of [`crate::backend::MetadataStore`].
impl VaultAliases {
    /// Creates or updates `name` (check-and-set); `clock` dates it.
    pub(super) async fn put(
        &self,
        name: &AliasName,
        target: &KeyId,
        write: AliasWrite,
        clock: &dyn Clock,
    ) -> Result<AliasEntry, KmsError> {
        for _ in 0..CAS_ATTEMPTS {
            let now = clock.now();
            let (entry, version) = match (write, self.read(name).await?) {
                (AliasWrite::Create, Some(_)) => {
                    return Err(KmsError::AliasAlreadyExists(name.clone()));
                }
                (AliasWrite::Update, None) => return Err(KmsError::AliasNotFound(name.clone())),
                (AliasWrite::Update, Some((old, _))) if old.target == *target => {
                    self.remember(name, Some(target));
                    return Ok(old);
                }
                (AliasWrite::Update, Some((old, version))) => (
                    AliasEntry {
                        target: target.clone(),
                        updated_at: now,
                        ..old
                    },
                    version,
                ),
                (AliasWrite::Create, None) => (
                    AliasEntry {
                        name: name.clone(),
                        target: target.clone(),
                        created_at: now,
                        updated_at: now,
                    },
                    0,
                ),
            };
            if self.write(&entry, version).await? {
                self.remember(name, Some(target));
                return Ok(entry);
            }
            if write == AliasWrite::Create {
                return Err(KmsError::AliasAlreadyExists(name.clone()));
            }
        }
        Err(KmsError::BackendUnavailable {
            backend: "vault",
            detail: format!("{name} kept changing under concurrent updates; try again"),
        })
    }

    pub(super) async fn delete(&self, name: &AliasName) -> Result<(), KmsError> {
        if self.read(name).await?.is_none() {
            return Err(KmsError::AliasNotFound(name.clone()));
        }
        self.remember(name, None);
        Ok(self.folder.delete(name.name()).await?)
    }

    pub(super) async fn list(&self) -> Result<Vec<AliasEntry>, KmsError> {
        let mut names = self.names().await?;
        names.sort();
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            // Deleted between the listing and the read: not listed.
            if let Some((entry, _)) = self.read(&name).await? {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    pub(super) async fn resolve(&self, name: &AliasName) -> Result<KeyId, KmsError> {
        if let Some(target) = self.cached(name) {
            return Ok(target);
        }
        match self.read(name).await? {
            Some((entry, _)) => {
                self.remember(name, Some(&entry.target));
                Ok(entry.target)
            }
            None => Err(KmsError::AliasNotFound(name.clone())),
        }
    }
}
