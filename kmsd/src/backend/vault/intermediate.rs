//! Intermediate keys (docs/vault.md, "Intermediate keys"; docs/format.md,
//! "Vault intermediate-key payload").
//!
//! With the mode on, kmsd asks Transit to wrap a random 256-bit
//! intermediate key once, then wraps data keys locally under it, exactly as
//! the local backend does under its master key: a fresh key per message
//! derived with HKDF from a 256-bit seed, so no (key, nonce) pair repeats
//! however many wraps share one intermediate key. An intermediate key wraps
//! for at most `ttl` and `max_uses`, then a new one is made; opened ones
//! are kept for `ttl`, so decrypts of recent objects cost no round trip.
//!
//! The Transit ciphertext of an intermediate key is bound to
//! [`kek_aad`], which starts with bytes no blob header can start with: a
//! wrapped intermediate key pasted into an ordinary Vault blob never opens
//! through Decrypt, so it can never be handed out as a data key.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use zeroize::Zeroizing;

use super::{error::VaultError, settings::IntermediateKeySettings, transit, transit::Transit};
use crate::{blob::ParsedBlob, context::EncryptionContext, crypto, error::KmsError, key_id::KeyId};

/// HKDF domain of data-key wraps under an intermediate key.
const WRAP_DOMAIN: &[u8] = b"kmsd/v1/vault-intermediate-wrap";
/// Opened intermediate keys kept at most (each is one 32-byte secret).
const MAX_OPENED: u64 = 10_000;

/// The authenticated data Transit binds to an intermediate key of `key_id`.
/// Blob headers start with "km" 0x01; this starts with "kmsd", so neither
/// can stand for the other.
pub(super) fn kek_aad(key_id: &KeyId) -> Vec<u8> {
    let mut aad = b"kmsd/v1/intermediate-key\0".to_vec();
    aad.extend_from_slice(key_id.as_str().as_bytes());
    aad
}

/// One intermediate key.
pub(super) struct Intermediate {
    wrapping: crypto::WrappingKey,
    key_id: KeyId,
    /// Transit's ciphertext of the key, `vault:v<N>:…`.
    wrapped: String,
    version: u32,
    /// Short id for logs and the audit log (see [`intermediate_id`]).
    id: String,
    wraps_until: Instant,
    uses: AtomicU64,
}

impl std::fmt::Debug for Intermediate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intermediate")
            .field("key_id", &self.key_id)
            .field("version", &self.version)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Intermediate {
    fn new(
        key_id: &KeyId,
        version: u32,
        material: &[u8; 32],
        wrapped: String,
        ttl: Duration,
    ) -> Self {
        Self {
            wrapping: crypto::WrappingKey::new(material, WRAP_DOMAIN),
            key_id: key_id.clone(),
            id: crate::blob::intermediate_id(wrapped.as_bytes()),
            wrapped,
            version,
            wraps_until: Instant::now() + ttl,
            uses: AtomicU64::new(0),
        }
    }

    /// Takes one use if the key may still wrap under `version`.
    fn take_use(&self, version: u32, max_uses: u64) -> bool {
        self.version == version
            && Instant::now() < self.wraps_until
            && self.uses.fetch_add(1, Ordering::Relaxed) < max_uses
    }

    /// Seals `plaintext` after `header` (encoded), binding `context`.
    pub(super) fn seal_after(
        &self,
        header: Vec<u8>,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>, KmsError> {
        let mut out = header;
        let aad = crate::blob::aad(&out, context);
        let seed: [u8; crypto::SEED_LEN] =
            crypto::random_array().map_err(|e| KmsError::Internal(e.to_string()))?;
        crate::blob::VaultIntermediatePayload::encode_prefix(
            self.wrapped.as_bytes(),
            &seed,
            &mut out,
        )?;
        self.wrapping
            .seal_append(&seed, &aad, plaintext, &mut out)
            .map_err(|e| KmsError::Internal(e.to_string()))?;
        Ok(out)
    }

    /// Opens a data key sealed by [`Self::seal_after`].
    pub(super) fn open(
        &self,
        blob: &ParsedBlob<'_>,
        payload: &crate::blob::VaultIntermediatePayload<'_>,
        context: &EncryptionContext,
    ) -> Result<kms_core::SecretBytes, KmsError> {
        let aad = crate::blob::aad(blob.header_bytes, context);
        self.wrapping
            .open(payload.seed, &aad, payload.sealed)
            .map_err(|_| KmsError::InvalidCiphertext)
    }

    /// The audit id.
    pub(super) fn id(&self) -> &str {
        &self.id
    }
}

/// The intermediate keys of one backend.
pub(super) struct Intermediates {
    settings: IntermediateKeySettings,
    /// The key wrapping new data keys, per master key.
    current: Mutex<HashMap<KeyId, Arc<Intermediate>>>,
    /// One creation at a time, so a burst after expiry makes one key.
    creating: tokio::sync::Mutex<()>,
    /// Opened keys by the SHA-256 of their Transit ciphertext.
    opened: moka::sync::Cache<[u8; 32], Arc<Intermediate>>,
}

impl std::fmt::Debug for Intermediates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intermediates")
            .field("settings", &self.settings)
            .field("opened", &self.opened.entry_count())
            .finish_non_exhaustive()
    }
}

impl Intermediates {
    pub(super) fn new(settings: IntermediateKeySettings) -> Self {
        Self {
            settings,
            current: Mutex::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
            opened: moka::sync::Cache::builder()
                .max_capacity(MAX_OPENED)
                .time_to_live(settings.ttl)
                .support_invalidation_closures()
                .build(),
        }
    }

    /// How long opened keys are kept.
    pub(super) fn ttl(&self) -> Duration {
        self.settings.ttl
    }

    fn current(&self, key_id: &KeyId, version: u32) -> Option<Arc<Intermediate>> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current
            .get(key_id)
            .filter(|k| k.take_use(version, self.settings.max_uses))
            .cloned()
    }

    /// The intermediate key to wrap a new data key of `key_id` at
    /// `version`, making one through Transit when there is none usable.
    pub(super) async fn for_wrap(
        &self,
        transit: &Transit,
        key_id: &KeyId,
        version: u32,
    ) -> Result<Arc<Intermediate>, VaultError> {
        if let Some(key) = self.current(key_id, version) {
            return Ok(key);
        }
        let _one_at_a_time = self.creating.lock().await;
        if let Some(key) = self.current(key_id, version) {
            return Ok(key);
        }
        let material: Zeroizing<[u8; 32]> =
            Zeroizing::new(crypto::random_array().map_err(|e| VaultError::Decode {
                op: "intermediate key".into(),
                reason: e.to_string(),
            })?);
        let wrapped = transit
            .encrypt(key_id, material.as_ref(), &kek_aad(key_id), version)
            .await?;
        if transit::ciphertext_version(&wrapped) != Some(version) {
            return Err(VaultError::Decode {
                op: format!("wrap an intermediate key of {key_id}"),
                reason: format!(
                    "Transit sealed under another version than the requested {version}"
                ),
            });
        }
        let key = Arc::new(Intermediate::new(
            key_id,
            version,
            &material,
            wrapped,
            self.settings.ttl,
        ));
        key.uses.store(1, Ordering::Relaxed);
        tracing::info!(%key_id, version, intermediate_key = key.id(), "intermediate key created");
        self.opened
            .insert(crypto::sha256(key.wrapped.as_bytes()), Arc::clone(&key));
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key_id.clone(), Arc::clone(&key));
        Ok(key)
    }

    /// An opened intermediate key of `key_id`, if one is cached for this
    /// ciphertext.
    pub(super) fn cached(&self, key_id: &KeyId, wrapped: &[u8]) -> Option<Arc<Intermediate>> {
        // The ciphertext names its key only through Transit's AAD check,
        // which a cache hit skips: the key id must match too.
        self.opened
            .get(&crypto::sha256(wrapped))
            .filter(|k| &k.key_id == key_id && k.wrapped.as_bytes() == wrapped)
    }

    /// Keeps an intermediate key opened through Transit.
    pub(super) fn remember(&self, key: Intermediate) -> Arc<Intermediate> {
        let key = Arc::new(key);
        self.opened
            .insert(crypto::sha256(key.wrapped.as_bytes()), Arc::clone(&key));
        key
    }

    /// Forgets every intermediate key of `key_id` (disabled, scheduled for
    /// deletion, destroyed) or, with `None`, all of them.
    pub(super) fn forget(&self, key_id: Option<&KeyId>) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match key_id {
            Some(key_id) => {
                current.remove(key_id);
                let key_id = key_id.clone();
                if self
                    .opened
                    .invalidate_entries_if(move |_, k| k.key_id == key_id)
                    .is_err()
                {
                    self.opened.invalidate_all();
                }
            }
            None => {
                current.clear();
                self.opened.invalidate_all();
            }
        }
    }
}

/// Opens an intermediate key's Transit ciphertext (a decrypt of a blob
/// whose intermediate key is not cached, or when the mode is off).
pub(super) async fn unwrap(
    transit: &Transit,
    key_id: &KeyId,
    version: u32,
    wrapped: &str,
    ttl: Duration,
) -> Result<Intermediate, VaultError> {
    let material = transit.decrypt(key_id, wrapped, &kek_aad(key_id)).await?;
    let material: Zeroizing<[u8; 32]> = Zeroizing::new(
        material
            .expose_secret()
            .try_into()
            .map_err(|_| VaultError::Decode {
                op: format!("open an intermediate key of {key_id}"),
                reason: "not 32 bytes".into(),
            })?,
    );
    Ok(Intermediate::new(
        key_id,
        version,
        &material,
        wrapped.to_owned(),
        ttl,
    ))
}

/// The known-answer vector of docs/format.md ("Vault intermediate-key
/// payload").
#[cfg(test)]
mod vector {
    use std::collections::BTreeMap;

    use super::*;
    use crate::blob::{BackendKind, BlobHeader, VaultIntermediatePayload};

    /// Intermediate key 0x00..0x1f, as Transit wrapped it (any text works:
    /// only Transit reads it), seed 0x20..0x3f, key "default" version 1,
    /// context {"bucket": "photos", "object": "cat.jpg"}, data key
    /// 0x40..0x5f.
    const WRAPPED: &str =
        "vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const BLOB: &str = "6b6d01020764656661756c74000000010100517661756c743a76313a414141414141414141414141414141414141414141414141414141414141414141414141414141414141414141414141414141414141414141414141414141414141414141414141202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f93887ac8d6830712afdcf88a828cb1f442357f15b2d79070383dbb2e31489f5633440289fa8b67289eec02a225cafa88";

    #[test]
    fn intermediate_blob_vector() {
        let material: [u8; 32] = std::array::from_fn(|i| i as u8);
        let seed: [u8; 32] = std::array::from_fn(|i| 0x20 + i as u8);
        let data_key: [u8; 32] = std::array::from_fn(|i| 0x40 + i as u8);
        let context = EncryptionContext::new(BTreeMap::from([
            ("bucket".to_owned(), "photos".to_owned()),
            ("object".to_owned(), "cat.jpg".to_owned()),
        ]))
        .unwrap();
        let key_id = KeyId::parse("default").unwrap();
        let mut blob = BlobHeader {
            backend: BackendKind::Vault,
            key_id: key_id.clone(),
            key_version: 1,
        }
        .encode(200);
        let aad = crate::blob::aad(&blob, &context);
        VaultIntermediatePayload::encode_prefix(WRAPPED.as_bytes(), &seed, &mut blob).unwrap();
        crypto::WrappingKey::new(&material, WRAP_DOMAIN)
            .seal_append(&seed, &aad, &data_key, &mut blob)
            .unwrap();
        println!("aad  {}", hex::encode(&aad));
        println!("blob {}", hex::encode(&blob));
        println!("id   {}", crate::blob::intermediate_id(WRAPPED.as_bytes()));
        assert_eq!(hex::encode(&blob), BLOB);

        // The code that opens real blobs opens the vector.
        let parsed = crate::blob::parse(&blob).unwrap();
        let payload = VaultIntermediatePayload::parse(parsed.payload)
            .unwrap()
            .unwrap();
        let key = Intermediate::new(&key_id, 1, &material, WRAPPED.to_owned(), Duration::ZERO);
        let opened = key.open(&parsed, &payload, &context).unwrap();
        assert_eq!(opened.expose_secret(), &data_key);
    }
}
