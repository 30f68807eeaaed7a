//! Key records in KV v2: what Transit cannot hold (state, description,
//! tags, creation and deletion dates), one secret per key at
//! `<kv_mount>/data/<key_path_prefix>/<key id>`.
//!
//! A record's existence is the key's existence: Transit keys without one
//! are not kmsd keys. Every change is a check-and-set write against the
//! version that was read, so two kmsd instances changing one key never
//! lose an update.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use vaultrs::api::kv2::{
    requests::{
        DeleteSecretMetadataRequest, ListSecretsRequest, ReadSecretRequest, SetSecretRequest,
        SetSecretRequestOptions,
    },
    responses::{ListSecretsResponse, ReadSecretResponse},
};

use super::{client::VaultClient, error::VaultError};
use crate::{
    backend::{KeyOrigin, KeyState, RotationSchedule},
    key_id::KeyId,
};

/// The record format this kmsd writes.
pub(crate) const RECORD_FORMAT: u32 = 1;
/// How often a check-and-set write (a key record, an alias) retries after
/// losing a race.
pub(crate) const CAS_ATTEMPTS: usize = 5;

/// One key's record. Unknown fields are ignored, so a newer kmsd may add
/// some without locking older ones out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyRecord {
    /// [`RECORD_FORMAT`].
    pub(crate) format: u32,
    /// The key id (also the secret's name; checked on read).
    pub(crate) key_id: String,
    /// The lifecycle state.
    pub(crate) state: KeyState,
    /// Free text.
    #[serde(default)]
    pub(crate) description: String,
    /// Free labels.
    #[serde(default)]
    pub(crate) tags: BTreeMap<String, String>,
    /// When the key was created.
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) created_at: OffsetDateTime,
    /// Set exactly while pending deletion.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub(crate) deletion_date: Option<OffsetDateTime>,
    /// `External` for imported keys; absent (kmsd) otherwise. Transit's
    /// own `imported_key` flag cannot say it: a rotation clears it.
    #[serde(default, skip_serializing_if = "KeyOrigin::is_kmsd")]
    pub(crate) origin: KeyOrigin,
    /// Automatic rotation, when on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rotation: Option<RotationSchedule>,
    /// Set while a kmsd rotates the key under a claim (`rotation.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rotation_claim: Option<RotationClaim>,
}

/// A kmsd's claim to rotate a key: written by check-and-set before the
/// Transit rotation and removed after it, so that of several kmsd sharing
/// one Vault only the one whose claim was written rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RotationClaim {
    /// When it was written; an old claim is a claimer that died.
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) at: OffsetDateTime,
    /// The Transit version the claimer rotates from: a later claimer
    /// finding Transit past it knows the rotation happened.
    pub(crate) from_version: u32,
}

/// A record and the KV version it was read at (for check-and-set).
#[derive(Debug, Clone)]
pub(crate) struct Versioned {
    /// The record.
    pub(crate) record: KeyRecord,
    /// Its KV version.
    pub(crate) version: u64,
}

/// What a check-and-set write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// The write happened.
    Done,
    /// Someone else wrote first.
    Conflict,
}

/// The secrets of one KV v2 folder: reads, check-and-set writes, listing
/// and deletion, shared by the key records and the aliases.
#[derive(Debug, Clone)]
pub(crate) struct Folder {
    client: VaultClient,
    mount: String,
    folder: String,
}

impl Folder {
    /// The secrets at `<mount>/data/<folder>/`.
    pub(crate) fn new(client: VaultClient, mount: String, folder: String) -> Self {
        Self {
            client,
            mount,
            folder,
        }
    }

    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.folder)
    }

    /// `GET <mount>/data/<folder>/<name>`: the name of the read in errors.
    pub(crate) fn op(&self, name: &str) -> String {
        format!("GET {}/data/{}", self.mount, self.path(name))
    }

    /// The secret `name` and its KV version, if it exists.
    pub(crate) async fn read(
        &self,
        name: &str,
    ) -> Result<Option<(serde_json::Value, u64)>, VaultError> {
        let endpoint = ReadSecretRequest {
            mount: self.mount.clone(),
            path: self.path(name),
            version: None,
        };
        match self
            .client
            .data::<_, ReadSecretResponse>(&endpoint, true)
            .await
        {
            Ok(secret) => Ok(Some((secret.data, secret.metadata.version))),
            Err(VaultError::NotFound { routed: true, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `data` as `name` if the secret is still at `version` (0: if
    /// it does not exist).
    pub(crate) async fn write(
        &self,
        name: &str,
        data: &impl Serialize,
        version: u64,
    ) -> Result<Written, VaultError> {
        let bad = |reason: String| VaultError::Decode {
            op: "kv write".into(),
            reason,
        };
        let cas = u32::try_from(version)
            .map_err(|_| bad(format!("KV version {version} does not fit check-and-set")))?;
        let endpoint = SetSecretRequest {
            mount: self.mount.clone(),
            path: self.path(name),
            data: serde_json::to_value(data).map_err(|e| bad(e.to_string()))?,
            options: Some(SetSecretRequestOptions { cas }),
        };
        // A check-and-set write is not repeated on a lost answer: the
        // repeat would report a conflict with itself.
        match self.client.exec(&endpoint, false).await {
            Ok(()) => Ok(Written::Done),
            // KV v2 answers a check-and-set mismatch with 400.
            Err(VaultError::BadRequest { .. }) => Ok(Written::Conflict),
            Err(e) => Err(e),
        }
    }

    /// The names in the folder, in no particular order (sub-folders end
    /// in `/`).
    pub(crate) async fn list(&self) -> Result<Vec<String>, VaultError> {
        let endpoint = ListSecretsRequest {
            mount: self.mount.clone(),
            path: format!("{}/", self.folder),
        };
        match self
            .client
            .data::<_, ListSecretsResponse>(&endpoint, true)
            .await
        {
            Ok(listed) => Ok(listed.keys),
            // An empty folder does not exist in KV.
            Err(VaultError::NotFound { routed: true, .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Deletes the secret `name` and all its versions; a missing one is
    /// not an error.
    pub(crate) async fn delete(&self, name: &str) -> Result<(), VaultError> {
        let endpoint = DeleteSecretMetadataRequest {
            mount: self.mount.clone(),
            path: self.path(name),
        };
        match self.client.exec(&endpoint, true).await {
            Ok(()) | Err(VaultError::NotFound { routed: true, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The key records under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Records {
    folder: Folder,
}

impl Records {
    /// Records at `<mount>/data/<prefix>/`.
    pub(crate) fn new(client: VaultClient, mount: String, prefix: String) -> Self {
        Self {
            folder: Folder::new(client, mount, prefix),
        }
    }

    /// The record of `key_id`, if the key exists. A record that does not
    /// parse is a [`VaultError::Decode`].
    pub(crate) async fn read(&self, key_id: &KeyId) -> Result<Option<Versioned>, VaultError> {
        let Some((data, version)) = self.folder.read(key_id.as_str()).await? else {
            return Ok(None);
        };
        let op = || self.folder.op(key_id.as_str());
        let record: KeyRecord = serde_json::from_value(data).map_err(|e| VaultError::Decode {
            op: op(),
            reason: format!("not a kmsd key record: {e}"),
        })?;
        if record.key_id != key_id.as_str() {
            return Err(VaultError::Decode {
                op: op(),
                reason: format!("the record names key {:?}", record.key_id),
            });
        }
        Ok(Some(Versioned { record, version }))
    }

    /// Writes `record` if the secret is still at `version` (0: if it does
    /// not exist).
    pub(crate) async fn write(
        &self,
        record: &KeyRecord,
        version: u64,
    ) -> Result<Written, VaultError> {
        let key_id = KeyId::parse(&record.key_id).map_err(|e| VaultError::Decode {
            op: "kv write".into(),
            reason: e.to_string(),
        })?;
        self.folder.write(key_id.as_str(), record, version).await
    }

    /// Every key id with a record, in no particular order. Entries that
    /// are not valid key ids (sub-folders, foreign secrets) are skipped.
    pub(crate) async fn list(&self) -> Result<Vec<KeyId>, VaultError> {
        Ok(self
            .folder
            .list()
            .await?
            .iter()
            .filter_map(|name| KeyId::parse(name).ok())
            .collect())
    }

    /// Deletes the record and all its versions.
    pub(crate) async fn delete(&self, key_id: &KeyId) -> Result<(), VaultError> {
        self.folder.delete(key_id.as_str()).await
    }
}
