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

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::time::Instant;
use vaultrs::api::kv2::{
    requests::{
        DeleteSecretMetadataRequest, ListSecretsRequest, ReadSecretRequest, SetSecretRequest,
        SetSecretRequestOptions,
    },
    responses::{ListSecretsResponse, ReadSecretResponse},
};

use super::{VaultBackend, client::VaultClient, error::VaultError};
use crate::{
    alias::{AliasEntry, AliasName, AliasWrite},
    error::KmsError,
    key_id::KeyId,
};

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
    client: VaultClient,
    mount: String,
    folder: String,
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
            client,
            mount,
            folder: format!("{key_prefix}/{ALIAS_FOLDER}"),
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, name: &AliasName) -> String {
        format!("{}/{}", self.folder, name.name())
    }

    fn cached(&self, name: &AliasName) -> Option<KeyId> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(name)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(target, _)| target.clone())
    }

    fn remember(&self, name: &AliasName, target: Option<&KeyId>) {
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
        let endpoint = ReadSecretRequest {
            mount: self.mount.clone(),
            path: self.path(name),
            version: None,
        };
        let secret: ReadSecretResponse = match self.client.data(&endpoint, true).await {
            Ok(secret) => secret,
            Err(VaultError::NotFound { routed: true, .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let entry = serde_json::from_value::<AliasRecord>(secret.data)
            .map_err(|e| e.to_string())
            .and_then(|record| record.entry(name))
            .map_err(|reason| {
                tracing::error!(alias = %name, %reason, "an alias record in Vault is damaged");
                KmsError::Internal(format!("the record of {name} in Vault is damaged"))
            })?;
        Ok(Some((entry, secret.metadata.version)))
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
        let cas = u32::try_from(version).map_err(|_| {
            KmsError::Internal(format!("KV version {version} does not fit check-and-set"))
        })?;
        let endpoint = SetSecretRequest {
            mount: self.mount.clone(),
            path: self.path(&entry.name),
            data: serde_json::to_value(&record)
                .map_err(|e| KmsError::Internal(format!("encoding an alias record: {e}")))?,
            options: Some(SetSecretRequestOptions { cas }),
        };
        // Not repeated on a lost answer: the repeat would conflict with
        // itself (as for key records).
        match self.client.exec(&endpoint, false).await {
            Ok(()) => Ok(true),
            Err(VaultError::BadRequest { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn names(&self) -> Result<Vec<AliasName>, KmsError> {
        let endpoint = ListSecretsRequest {
            mount: self.mount.clone(),
            path: format!("{}/", self.folder),
        };
        let listed: ListSecretsResponse = match self.client.data(&endpoint, true).await {
            Ok(listed) => listed,
            Err(VaultError::NotFound { routed: true, .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        Ok(listed
            .keys
            .iter()
            .filter_map(|name| AliasName::parse(name).ok())
            .collect())
    }
}

impl VaultBackend {
    /// Forgets the cached resolution of `alias`.
    pub fn forget_alias(&self, alias: &AliasName) {
        self.aliases.remember(alias, None);
    }

    pub(super) async fn put_alias_record(
        &self,
        name: &AliasName,
        target: &KeyId,
        write: AliasWrite,
    ) -> Result<AliasEntry, KmsError> {
        for _ in 0..super::CAS_ATTEMPTS {
            let now = self.clock.now();
            let (entry, version) = match (write, self.aliases.read(name).await?) {
                (AliasWrite::Create, Some(_)) => {
                    return Err(KmsError::AliasAlreadyExists(name.clone()));
                }
                (AliasWrite::Update, None) => return Err(KmsError::AliasNotFound(name.clone())),
                (AliasWrite::Update, Some((old, _))) if old.target == *target => {
                    self.aliases.remember(name, Some(target));
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
            if self.aliases.write(&entry, version).await? {
                self.aliases.remember(name, Some(target));
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

    pub(super) async fn delete_alias_record(&self, name: &AliasName) -> Result<(), KmsError> {
        if self.aliases.read(name).await?.is_none() {
            return Err(KmsError::AliasNotFound(name.clone()));
        }
        let endpoint = DeleteSecretMetadataRequest {
            mount: self.aliases.mount.clone(),
            path: self.aliases.path(name),
        };
        self.aliases.remember(name, None);
        match self.aliases.client.exec(&endpoint, true).await {
            Ok(()) | Err(VaultError::NotFound { routed: true, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn list_alias_records(&self) -> Result<Vec<AliasEntry>, KmsError> {
        let mut names = self.aliases.names().await?;
        names.sort();
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            // Deleted between the listing and the read: not listed.
            if let Some((entry, _)) = self.aliases.read(&name).await? {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    pub(super) async fn resolve_alias_record(&self, name: &AliasName) -> Result<KeyId, KmsError> {
        if let Some(target) = self.aliases.cached(name) {
            return Ok(target);
        }
        match self.aliases.read(name).await? {
            Some((entry, _)) => {
                self.aliases.remember(name, Some(&entry.target));
                Ok(entry.target)
            }
            None => Err(KmsError::AliasNotFound(name.clone())),
        }
    }
}
