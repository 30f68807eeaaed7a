//! The Transit engine: master keys (`aes256-gcm96`, never exportable) and
//! the wrap and unwrap of data keys and small secrets.
//!
//! Every call vaultrs has an endpoint for goes through it (key management,
//! a single decrypt). The rest go through [`VaultRequest::post_json`] and
//! [`VaultRequest::get`]: `batch_input` and `config/keys`, which vaultrs
//! lacks, and encrypt, whose vaultrs endpoint keeps the plaintext in a
//! plain `String` with a derived `Debug`, where kmsd wants it in
//! zeroizing memory.

use std::{collections::HashMap, sync::Arc};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use kms_core::SecretBytes;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use time::OffsetDateTime;
use vaultrs::api::transit::{
    KeyType,
    requests::{
        CreateKeyRequest, DecryptDataRequest, DeleteKeyRequest, ReadKeyRequest, RotateKeyRequest,
        UpdateKeyConfigurationRequest,
    },
};
use zeroize::Zeroizing;

use super::{
    batch::Batcher,
    client::VaultClient,
    error::VaultError,
    request::{self, VaultRequest},
};
use crate::{backend::VersionInfo, key_id::KeyId};

/// The only key type kmsd creates or adopts.
pub(crate) const KEY_TYPE: &str = "aes256-gcm96";

/// What Transit says about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TransitKey {
    /// `aes256-gcm96` for keys kmsd may use.
    pub(crate) key_type: String,
    /// Per-context derived keys (kmsd does not use them).
    pub(crate) derived: bool,
    /// Whether the key material may be exported.
    pub(crate) exportable: bool,
    /// The newest version.
    pub(crate) latest_version: u32,
    /// The versions that can decrypt, oldest first.
    pub(crate) versions: Vec<VersionInfo>,
}

impl TransitKey {
    /// Why kmsd must not use this key, if it must not.
    pub(crate) fn unsuitable(&self) -> Option<String> {
        (self.key_type != KEY_TYPE || self.derived || self.exportable).then(|| {
            format!(
                "type {}, derived {}, exportable {}; kmsd only uses {KEY_TYPE} keys that are neither derived nor exportable",
                self.key_type, self.derived, self.exportable
            )
        })
    }
}

#[derive(Deserialize)]
struct KeyData {
    #[serde(rename = "type")]
    key_type: String,
    #[serde(default)]
    derived: bool,
    #[serde(default)]
    exportable: bool,
    latest_version: u32,
    /// Version -> creation time (unix seconds) for symmetric keys.
    keys: HashMap<String, serde_json::Value>,
}

/// One item of a batch (and the body of a single encrypt).
#[derive(Serialize)]
struct EncryptItem {
    plaintext: Zeroizing<String>,
    associated_data: String,
}

#[derive(Serialize)]
struct DecryptItem {
    ciphertext: String,
    associated_data: String,
}

#[derive(Serialize)]
struct EncryptBatchBody<'a> {
    batch_input: &'a [EncryptItem],
    key_version: u32,
}

#[derive(Serialize)]
struct DecryptBatchBody<'a> {
    batch_input: &'a [DecryptItem],
}

#[derive(Deserialize)]
struct BatchData<T> {
    batch_results: Vec<T>,
}

/// One item's answer in a batch: its value, or its error.
trait BatchResult {
    fn error(&self) -> Option<String>;
}

#[derive(Deserialize)]
struct EncryptResult {
    #[serde(default)]
    ciphertext: String,
    #[serde(default)]
    error: String,
}

#[derive(Deserialize)]
struct DecryptResult {
    #[serde(default)]
    plaintext: Zeroizing<String>,
    #[serde(default)]
    error: String,
}

impl BatchResult for EncryptResult {
    fn error(&self) -> Option<String> {
        (!self.error.is_empty()).then(|| self.error.clone())
    }
}

impl BatchResult for DecryptResult {
    fn error(&self) -> Option<String> {
        (!self.error.is_empty()).then(|| self.error.clone())
    }
}

/// The batchers of one Transit mount.
#[derive(Debug, Default)]
struct Batches {
    encrypt: Arc<Batcher<(KeyId, u32), EncryptItem, String>>,
    decrypt: Arc<Batcher<KeyId, DecryptItem, SecretBytes>>,
}

#[derive(Serialize)]
struct EncryptBody<'a> {
    plaintext: &'a str,
    associated_data: &'a str,
    key_version: u32,
}

#[derive(Deserialize)]
struct EncryptData {
    ciphertext: String,
}

#[derive(Deserialize)]
struct DecryptData {
    plaintext: Zeroizing<String>,
}

#[derive(Deserialize)]
struct KeysConfig {
    #[serde(default)]
    disable_upsert: bool,
}

/// Transit at one mount.
#[derive(Debug, Clone)]
pub(crate) struct Transit {
    client: VaultClient,
    /// Shared: every Transit call clones this value (see `batch`).
    mount: Arc<str>,
    batches: Arc<Batches>,
}

impl Transit {
    /// Transit mounted at `mount`.
    pub(crate) fn new(client: VaultClient, mount: String) -> Self {
        Self {
            client,
            mount: Arc::from(mount),
            batches: Arc::default(),
        }
    }

    /// The authenticated client (for `byok`, which calls this mount too).
    pub(crate) fn client(&self) -> &VaultClient {
        &self.client
    }

    /// The mount path.
    pub(crate) fn mount(&self) -> &str {
        &self.mount
    }

    /// Creates the key, or does nothing if it exists (so a create that
    /// failed half-way can be retried).
    pub(crate) async fn create(&self, key_id: &KeyId) -> Result<(), VaultError> {
        let endpoint = CreateKeyRequest {
            mount: self.mount.to_string(),
            name: key_id.to_string(),
            key_type: Some(KeyType::Aes256Gcm96),
            exportable: Some(false),
            derived: Some(false),
            allow_plaintext_backup: Some(false),
            ..Default::default()
        };
        self.client.exec(&endpoint, true).await
    }

    /// The key's type and versions; `None` if there is no such key.
    pub(crate) async fn read(&self, key_id: &KeyId) -> Result<Option<TransitKey>, VaultError> {
        let endpoint = ReadKeyRequest {
            mount: self.mount.to_string(),
            name: key_id.to_string(),
        };
        let data: KeyData = match self.client.data(&endpoint, true).await {
            Ok(data) => data,
            Err(VaultError::NotFound { routed: true, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut versions: Vec<VersionInfo> = data
            .keys
            .iter()
            .filter_map(|(version, created)| {
                let version = version.parse::<u32>().ok()?;
                let created_at = created
                    .as_i64()
                    .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                Some(VersionInfo {
                    version,
                    created_at,
                })
            })
            .collect();
        versions.sort_by_key(|v| v.version);
        Ok(Some(TransitKey {
            key_type: data.key_type,
            derived: data.derived,
            exportable: data.exportable,
            latest_version: data.latest_version,
            versions,
        }))
    }

    /// Adds a version. Not repeated on a lost answer: that would add two.
    pub(crate) async fn rotate(&self, key_id: &KeyId) -> Result<(), VaultError> {
        let endpoint = RotateKeyRequest {
            mount: self.mount.to_string(),
            name: key_id.to_string(),
        };
        self.client.exec(&endpoint, false).await
    }

    /// Deletes the key for good: Transit refuses unless `deletion_allowed`
    /// was set first. A key that is already gone is not an error.
    pub(crate) async fn destroy(&self, key_id: &KeyId) -> Result<(), VaultError> {
        let allow = UpdateKeyConfigurationRequest {
            mount: self.mount.to_string(),
            name: key_id.to_string(),
            deletion_allowed: Some(true),
            ..Default::default()
        };
        match self.client.exec(&allow, true).await {
            Ok(()) => {}
            Err(VaultError::NotFound { routed: true, .. }) => return Ok(()),
            Err(VaultError::BadRequest { .. }) if self.read(key_id).await?.is_none() => {
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let delete = DeleteKeyRequest {
            mount: self.mount.to_string(),
            name: key_id.to_string(),
        };
        match self.client.exec(&delete, true).await {
            Ok(()) | Err(VaultError::NotFound { routed: true, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Encrypts `plaintext` under version `version`, binding `aad`.
    /// Returns Transit's `vault:v<N>:<base64>` ciphertext. Concurrent calls
    /// for one key and version share requests (see `batch`).
    pub(crate) async fn encrypt(
        &self,
        key_id: &KeyId,
        plaintext: &[u8],
        aad: &[u8],
        version: u32,
    ) -> Result<String, VaultError> {
        let job = EncryptItem {
            plaintext: Zeroizing::new(B64.encode(plaintext)),
            associated_data: B64.encode(aad),
        };
        let this = self.clone();
        self.batches
            .encrypt
            .submit(
                (key_id.clone(), version),
                job,
                move |(key_id, version), jobs| {
                    let this = this.clone();
                    async move { this.encrypt_batch(&key_id, version, jobs).await }
                },
            )
            .await
    }

    /// Decrypts a Transit ciphertext, checking `aad`; batched like
    /// [`Self::encrypt`].
    pub(crate) async fn decrypt(
        &self,
        key_id: &KeyId,
        ciphertext: &str,
        aad: &[u8],
    ) -> Result<SecretBytes, VaultError> {
        let job = DecryptItem {
            ciphertext: ciphertext.to_owned(),
            associated_data: B64.encode(aad),
        };
        let this = self.clone();
        self.batches
            .decrypt
            .submit(key_id.clone(), job, move |key_id, jobs| {
                let this = this.clone();
                async move { this.decrypt_batch(&key_id, jobs).await }
            })
            .await
    }

    async fn encrypt_batch(
        &self,
        key_id: &KeyId,
        version: u32,
        items: Vec<EncryptItem>,
    ) -> Vec<Result<String, VaultError>> {
        let path = format!("{}/encrypt/{key_id}", self.mount);
        if let [item] = items.as_slice() {
            let body = EncryptBody {
                plaintext: &item.plaintext,
                associated_data: &item.associated_data,
                key_version: version,
            };
            let single = async {
                let req = VaultRequest::post_json(path, &body, false)?;
                let data: EncryptData = self.client.call_data(&req).await?;
                Ok(data.ciphertext)
            };
            return vec![single.await];
        }
        let body = EncryptBatchBody {
            batch_input: &items,
            key_version: version,
        };
        self.send_batch(path, &body, items.len(), |r: EncryptResult| r.ciphertext)
            .await
    }

    async fn decrypt_batch(
        &self,
        key_id: &KeyId,
        items: Vec<DecryptItem>,
    ) -> Vec<Result<SecretBytes, VaultError>> {
        let path = format!("{}/decrypt/{key_id}", self.mount);
        let plaintext = |op: &str, b64: &str| {
            B64.decode(b64.as_bytes())
                .map(SecretBytes::new)
                .map_err(|e| VaultError::Decode {
                    op: op.to_owned(),
                    reason: format!("plaintext is not base64: {e}"),
                })
        };
        if let [item] = items.as_slice() {
            // vaultrs' endpoint: the request holds no secret; the answer
            // is read into zeroizing memory ([`DecryptData`]).
            let endpoint = DecryptDataRequest {
                mount: self.mount.to_string(),
                name: key_id.to_string(),
                ciphertext: item.ciphertext.clone(),
                associated_data: Some(item.associated_data.clone()),
                ..Default::default()
            };
            let single = async {
                let req = request::hedged(&endpoint)?;
                let data: DecryptData = self.client.call_data(&req).await?;
                plaintext(&req.op(), &data.plaintext)
            };
            return vec![single.await];
        }
        let op = format!("POST {path}");
        let body = DecryptBatchBody {
            batch_input: &items,
        };
        self.send_batch(path, &body, items.len(), |r: DecryptResult| r.plaintext)
            .await
            .into_iter()
            .map(|r| r.and_then(|p| plaintext(&op, &p)))
            .collect()
    }

    /// One `batch_input` request for `n` items: each item's answer, or its
    /// own error (Vault answers 400 with per-item errors when some fail),
    /// or the request's error for all.
    async fn send_batch<T, V>(
        &self,
        path: String,
        body: &impl Serialize,
        n: usize,
        value: impl Fn(T) -> V,
    ) -> Vec<Result<V, VaultError>>
    where
        T: DeserializeOwned + BatchResult,
    {
        let answer = async {
            let req = VaultRequest::post_json(path, body, true)?;
            let data: BatchData<T> = self.client.call_data(&req).await?;
            if data.batch_results.len() != n {
                return Err(VaultError::Decode {
                    op: req.op(),
                    reason: format!("{} results for {n} items", data.batch_results.len()),
                });
            }
            Ok((req.op(), data.batch_results))
        };
        match answer.await {
            Ok((op, results)) => results
                .into_iter()
                .map(|r| match r.error() {
                    Some(message) => Err(VaultError::BadRequest {
                        op: op.clone(),
                        message,
                    }),
                    None => Ok(value(r)),
                })
                .collect(),
            Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
        }
    }

    /// Whether `encrypt` refuses to create missing keys
    /// (`<mount>/config/keys`, `disable_upsert`).
    pub(crate) async fn upsert_disabled(&self) -> Result<bool, VaultError> {
        let req = VaultRequest::get(format!("{}/config/keys", self.mount));
        let config: KeysConfig = self.client.call_data(&req).await?;
        Ok(config.disable_upsert)
    }
}

/// The version of a Transit ciphertext `vault:v<N>:<base64>`, or `None` if
/// it does not have that form. Leading zeros are refused: Transit would
/// read `v01` as version 1, and a blob has exactly one spelling.
pub(crate) fn ciphertext_version(ciphertext: &str) -> Option<u32> {
    let rest = ciphertext.strip_prefix("vault:v")?;
    let (digits, data) = rest.split_once(':')?;
    if digits.is_empty()
        || digits.starts_with('0')
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || data.is_empty()
    {
        return None;
    }
    digits.parse::<u32>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciphertext_versions_have_one_spelling() {
        assert_eq!(ciphertext_version("vault:v1:abcd"), Some(1));
        assert_eq!(ciphertext_version("vault:v42:ab:cd"), Some(42));
        for bad in [
            "",
            "vault:v1:",
            "vault:v:ab",
            "vault:v01:ab",
            "vault:v0:ab",
            "vault:x1:ab",
            "Vault:v1:ab",
            "vault:v1",
            "vault:v-1:ab",
            "vault:v+1:ab",
            "vault:v99999999999:ab",
        ] {
            assert_eq!(ciphertext_version(bad), None, "{bad:?}");
        }
    }
}
