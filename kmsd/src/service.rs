//! The core every front end (gRPC, REST, CLI tests) calls: resolve the key,
//! check the input, pick the backend, seal or open.

use std::{collections::BTreeMap, sync::Arc};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64URL};
use time::{Duration, OffsetDateTime};

use crate::{
    backend::{GeneratedKey, KeyBackend, KeyMetadata, NewKey, Opened, Sealed, StateChange},
    blob,
    clock::Clock,
    config::BackendConfig,
    context::EncryptionContext,
    crypto,
    error::KmsError,
    key_id::KeyId,
    lifecycle::{Active, Lifecycle, Runtime},
};

/// Encrypt takes at most this many bytes of plaintext.
pub const MAX_PLAINTEXT_LEN: usize = 4096;
/// ListKeys pages hold this many keys unless asked otherwise.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// ListKeys pages hold at most this many keys.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// The shortest deletion window, in days.
pub const MIN_DELETION_WINDOW_DAYS: u32 = 7;
/// The longest deletion window, in days (also the default).
pub const MAX_DELETION_WINDOW_DAYS: u32 = 30;
/// Longest key description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Most tags on a key.
pub const MAX_TAGS: usize = 50;

/// The service core. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct Kms {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    lifecycle: Lifecycle,
    clock: Arc<dyn Clock>,
    started_at: OffsetDateTime,
}

/// The result of ReEncrypt.
#[derive(Debug)]
pub struct ReEncrypted {
    /// The key and version that had sealed the source blob.
    pub source_key_id: KeyId,
    /// Its version.
    pub source_key_version: u32,
    /// The new blob.
    pub sealed: Sealed,
}

/// One page of keys.
#[derive(Debug)]
pub struct KeyPage {
    /// The keys, by id.
    pub keys: Vec<KeyMetadata>,
    /// The token of the next page; `None` on the last.
    pub next_page_token: Option<String>,
}

impl Kms {
    /// A service over `lifecycle`.
    pub fn new(lifecycle: Lifecycle, clock: Arc<dyn Clock>) -> Self {
        let started_at = clock.now();
        Self {
            inner: Arc::new(Inner {
                lifecycle,
                clock,
                started_at,
            }),
        }
    }

    /// The lifecycle.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    /// When the service was created.
    pub fn started_at(&self) -> OffsetDateTime {
        self.inner.started_at
    }

    /// The current lifecycle view.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.inner.lifecycle.snapshot()
    }

    fn active(&self) -> Result<Arc<Active>, KmsError> {
        self.inner.lifecycle.active()
    }

    fn resolve(active: &Active, key_id: Option<KeyId>) -> Result<KeyId, KmsError> {
        key_id
            .or_else(|| active.default_key_id.clone())
            .ok_or(KmsError::NoDefaultKey)
    }

    /// GenerateDataKey (and, dropping the plaintext, its WithoutPlaintext
    /// twin).
    pub async fn generate_data_key(
        &self,
        key_id: Option<KeyId>,
        context: &EncryptionContext,
    ) -> Result<GeneratedKey, KmsError> {
        let active = self.active()?;
        let key_id = Self::resolve(&active, key_id)?;
        active.backend.generate_data_key(&key_id, context).await
    }

    /// Encrypt.
    pub async fn encrypt(
        &self,
        key_id: Option<KeyId>,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Sealed, KmsError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(KmsError::InvalidArgument(format!(
                "plaintext is {} bytes; Encrypt takes at most {MAX_PLAINTEXT_LEN} (use GenerateDataKey for bulk data)",
                plaintext.len()
            )));
        }
        let active = self.active()?;
        let key_id = Self::resolve(&active, key_id)?;
        active.backend.encrypt(&key_id, plaintext, context).await
    }

    /// Decrypt.
    pub async fn decrypt(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
        expected_key_id: Option<&KeyId>,
    ) -> Result<Opened, KmsError> {
        let runtime = self.inner.lifecycle.running()?;
        Self::open(&runtime, blob, context, expected_key_id).await
    }

    /// Opens a blob with the active backend or, failing that, with the
    /// decrypt-only backends kept by reconfigurations, newest first.
    ///
    /// Two stores of the same kind may both hold a key of the blob's id
    /// (say `default` in two key directories), so a candidate that cannot
    /// open the blob does not end the search; the first success wins. If
    /// none succeeds, the answer is the first error that is not "no such
    /// key", so a disabled key or a wrong context is reported as such.
    async fn open(
        runtime: &Runtime,
        blob: &[u8],
        context: &EncryptionContext,
        expected_key_id: Option<&KeyId>,
    ) -> Result<Opened, KmsError> {
        let parsed = blob::parse(blob)?;
        if let Some(expected) = expected_key_id
            && *expected != parsed.header.key_id
        {
            return Err(KmsError::IncorrectKey {
                expected: expected.clone(),
                actual: parsed.header.key_id,
            });
        }
        let (mut first_error, mut not_found, mut tried) = (None, None, false);
        for candidate in runtime.active.iter().chain(runtime.previous.iter()) {
            if candidate.kind() != parsed.header.backend {
                continue;
            }
            tried = true;
            match candidate.backend.decrypt(&parsed, context).await {
                Ok(opened) => return Ok(opened),
                Err(e @ (KmsError::KeyNotFound(_) | KmsError::KeyVersionNotFound { .. })) => {
                    not_found.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if !tried {
            return Err(KmsError::BackendNotConfigured(
                parsed.header.backend.as_str(),
            ));
        }
        Err(first_error
            .or(not_found)
            .unwrap_or(KmsError::KeyNotFound(parsed.header.key_id)))
    }

    /// ReEncrypt: open, then seal under the destination key (the blob's own
    /// key when none is named) and context (the source context when none is
    /// given). The plaintext stays in this process.
    pub async fn re_encrypt(
        &self,
        blob: &[u8],
        source_context: &EncryptionContext,
        expected_source_key_id: Option<&KeyId>,
        destination_key_id: Option<KeyId>,
        destination_context: Option<&EncryptionContext>,
    ) -> Result<ReEncrypted, KmsError> {
        let runtime = self.inner.lifecycle.running()?;
        let Some(active) = runtime.active.clone() else {
            return Err(KmsError::NotRunning(runtime.state.as_str()));
        };
        let opened = Self::open(&runtime, blob, source_context, expected_source_key_id).await?;
        let destination = destination_key_id.unwrap_or_else(|| opened.key_id.clone());
        let context = destination_context.unwrap_or(source_context);
        let sealed = active
            .backend
            .encrypt(&destination, opened.plaintext.expose_secret(), context)
            .await?;
        Ok(ReEncrypted {
            source_key_id: opened.key_id,
            source_key_version: opened.key_version,
            sealed,
        })
    }

    /// CreateKey. Without an id, kmsd picks a random one.
    pub async fn create_key(
        &self,
        key_id: Option<KeyId>,
        description: String,
        tags: BTreeMap<String, String>,
    ) -> Result<KeyMetadata, KmsError> {
        if description.len() > MAX_DESCRIPTION_LEN {
            return Err(KmsError::InvalidArgument(format!(
                "description is longer than {MAX_DESCRIPTION_LEN} bytes"
            )));
        }
        validate_tags(&tags)?;
        let key_id = match key_id {
            Some(id) if id.is_reserved() => return Err(KmsError::ReservedKeyId(id)),
            Some(id) => id,
            None => random_key_id()?,
        };
        let active = self.active()?;
        active
            .backend
            .create_key(NewKey {
                key_id,
                description,
                tags,
            })
            .await
    }

    /// DescribeKey.
    pub async fn describe_key(&self, key_id: &KeyId) -> Result<KeyMetadata, KmsError> {
        self.active()?.backend.describe_key(key_id).await
    }

    /// ListKeys. `page_size` 0 means the default.
    pub async fn list_keys(&self, page_size: u32, page_token: &str) -> Result<KeyPage, KmsError> {
        let page_size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > MAX_PAGE_SIZE => {
                return Err(KmsError::InvalidArgument(format!(
                    "page_size {n} is above the maximum of {MAX_PAGE_SIZE}"
                )));
            }
            n => n,
        };
        let after = decode_page_token(page_token)?;
        let limit = usize::try_from(page_size).unwrap_or(usize::MAX);
        let active = self.active()?;
        // One extra key tells whether another page follows.
        let mut keys = active.backend.list_keys(after.as_ref(), limit + 1).await?;
        let next_page_token = if keys.len() > limit {
            keys.truncate(limit);
            keys.last().map(|k| B64URL.encode(k.key_id.as_str()))
        } else {
            None
        };
        Ok(KeyPage {
            keys,
            next_page_token,
        })
    }

    /// RotateKey.
    pub async fn rotate_key(&self, key_id: &KeyId) -> Result<KeyMetadata, KmsError> {
        self.active()?.backend.rotate_key(key_id).await
    }

    /// EnableKey, DisableKey and CancelKeyDeletion.
    pub async fn change_state(
        &self,
        key_id: &KeyId,
        change: StateChange,
    ) -> Result<KeyMetadata, KmsError> {
        self.active()?.backend.change_state(key_id, change).await
    }

    /// ScheduleKeyDeletion. `days` 0 means the maximum window (30).
    pub async fn schedule_key_deletion(
        &self,
        key_id: &KeyId,
        days: u32,
    ) -> Result<KeyMetadata, KmsError> {
        let days = match days {
            0 => MAX_DELETION_WINDOW_DAYS,
            d if (MIN_DELETION_WINDOW_DAYS..=MAX_DELETION_WINDOW_DAYS).contains(&d) => d,
            d => {
                return Err(KmsError::InvalidArgument(format!(
                    "pending_window_in_days is {d}; it must be between {MIN_DELETION_WINDOW_DAYS} and {MAX_DELETION_WINDOW_DAYS}"
                )));
            }
        };
        let deletion_date = self.inner.clock.now() + Duration::days(i64::from(days));
        self.change_state(key_id, StateChange::ScheduleDeletion { deletion_date })
            .await
    }

    /// Destroys the keys whose deletion window has passed.
    pub async fn sweep_deletions(&self) -> Result<Vec<KeyId>, KmsError> {
        let active = self.active()?;
        active
            .backend
            .destroy_due_keys(self.inner.clock.now())
            .await
    }

    /// Whether the active backend answers.
    pub async fn health(&self) -> Result<(), KmsError> {
        self.active()?.backend.health().await
    }

    /// Admin: drop every cached key and data key; returns how many
    /// entries were dropped.
    pub async fn clear_cache(&self) -> Result<u64, KmsError> {
        // The local backend keeps every key in memory by design (it is the
        // store, not a cache) and kmsd caches no data keys yet, so there is
        // nothing to drop; backends with caches report theirs here.
        Ok(0)
    }

    /// Admin: store a backend configuration.
    pub async fn configure(&self, backend: BackendConfig) -> Result<(), KmsError> {
        self.inner.lifecycle.configure(backend).await
    }

    /// Admin: start serving.
    pub async fn start(&self) -> Result<(), KmsError> {
        self.inner.lifecycle.start().await
    }

    /// Admin: stop serving.
    pub async fn stop(&self) -> Result<(), KmsError> {
        self.inner.lifecycle.stop().await
    }

    /// Admin: replace the backend with no restart.
    pub async fn reconfigure(
        &self,
        backend: BackendConfig,
        discard_previous: bool,
    ) -> Result<(), KmsError> {
        self.inner
            .lifecycle
            .reconfigure(backend, discard_previous)
            .await
    }
}

fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), KmsError> {
    if tags.len() > MAX_TAGS {
        return Err(KmsError::InvalidArgument(format!(
            "{} tags; at most {MAX_TAGS} are allowed",
            tags.len()
        )));
    }
    for (key, value) in tags {
        if key.is_empty() || key.len() > 128 || value.len() > 256 {
            return Err(KmsError::InvalidArgument(
                "tag keys must be 1-128 bytes and values at most 256 bytes".into(),
            ));
        }
    }
    Ok(())
}

fn decode_page_token(token: &str) -> Result<Option<KeyId>, KmsError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || KmsError::InvalidArgument("page_token is not one kmsd issued".into());
    let bytes = B64URL.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    KeyId::parse(&text).map(Some).map_err(|_| invalid())
}

/// A random key id in UUID v4 form.
fn random_key_id() -> Result<KeyId, KmsError> {
    let mut b = crypto::random_array::<16>().map_err(|e| KmsError::Internal(e.to_string()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    KeyId::parse(&format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}
