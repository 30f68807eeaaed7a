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
    responses::ReadSecretResponse,
};

use super::{client::VaultClient, error::VaultError};
use crate::{backend::KeyState, key_id::KeyId};

/// The record format this kmsd writes.
pub(crate) const RECORD_FORMAT: u32 = 1;

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

/// The key records under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Records {
    client: VaultClient,
    mount: String,
    prefix: String,
}

impl Records {
    /// Records at `<mount>/data/<prefix>/`.
    pub(crate) fn new(client: VaultClient, mount: String, prefix: String) -> Self {
        Self {
            client,
            mount,
            prefix,
        }
    }

    fn path(&self, key_id: &KeyId) -> String {
        format!("{}/{key_id}", self.prefix)
    }

    /// The record of `key_id`, if the key exists. A record that does not
    /// parse is a [`VaultError::Decode`].
    pub(crate) async fn read(&self, key_id: &KeyId) -> Result<Option<Versioned>, VaultError> {
        let endpoint = ReadSecretRequest {
            mount: self.mount.clone(),
            path: self.path(key_id),
            version: None,
        };
        let secret: ReadSecretResponse = match self.client.data(&endpoint, true).await {
            Ok(secret) => secret,
            Err(VaultError::NotFound { routed: true, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let op = || format!("GET {}/data/{}", self.mount, self.path(key_id));
        let record: KeyRecord =
            serde_json::from_value(secret.data).map_err(|e| VaultError::Decode {
                op: op(),
                reason: format!("not a kmsd key record: {e}"),
            })?;
        if record.key_id != key_id.as_str() {
            return Err(VaultError::Decode {
                op: op(),
                reason: format!("the record names key {:?}", record.key_id),
            });
        }
        Ok(Some(Versioned {
            record,
            version: secret.metadata.version,
        }))
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
        let cas = u32::try_from(version).map_err(|_| VaultError::Decode {
            op: "kv write".into(),
            reason: format!("KV version {version} does not fit check-and-set"),
        })?;
        let endpoint = SetSecretRequest {
            mount: self.mount.clone(),
            path: self.path(&key_id),
            data: serde_json::to_value(record).map_err(|e| VaultError::Decode {
                op: "kv write".into(),
                reason: e.to_string(),
            })?,
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

    /// Every key id with a record, in no particular order. Entries that
    /// are not valid key ids (sub-folders, foreign secrets) are skipped.
    pub(crate) async fn list(&self) -> Result<Vec<KeyId>, VaultError> {
        let endpoint = ListSecretsRequest {
            mount: self.mount.clone(),
            path: format!("{}/", self.prefix),
        };
        let listed: vaultrs::api::kv2::responses::ListSecretsResponse =
            match self.client.data(&endpoint, true).await {
                Ok(listed) => listed,
                // An empty folder does not exist in KV.
                Err(VaultError::NotFound { routed: true, .. }) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
        Ok(listed
            .keys
            .iter()
            .filter_map(|name| KeyId::parse(name).ok())
            .collect())
    }

    /// Deletes the record and all its versions.
    pub(crate) async fn delete(&self, key_id: &KeyId) -> Result<(), VaultError> {
        let endpoint = DeleteSecretMetadataRequest {
            mount: self.mount.clone(),
            path: self.path(key_id),
        };
        match self.client.exec(&endpoint, true).await {
            Ok(()) | Err(VaultError::NotFound { routed: true, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
