//! What is persisted with an SSE object (or multipart upload) so it can be
//! read back: never a key, only sealed keys, salts and a fingerprint.

use std::collections::BTreeMap;

use base64::Engine as _;

use super::{CustomerKey, SseError, object::encode_context};
use crate::{
    EncryptionContext,
    metadata::{self, keys as meta_keys},
    stream::Layout,
};

/// The metadata names, next to kms-client's `x-kms-*` object metadata
/// ([`crate::metadata::keys`]). Readers match them case-insensitively and
/// refuse unknown `x-kms-sse-` names.
pub mod keys {
    /// The prefix of the names below.
    pub const PREFIX: &str = "x-kms-sse-";
    /// `SSE-S3`, `SSE-KMS` or `SSE-C`.
    pub const MODE: &str = "x-kms-sse-mode";
    /// SSE-KMS: the client's encryption context, as the header carried it
    /// (base64 JSON); absent when the client gave none.
    pub const CONTEXT: &str = "x-kms-sse-context";
    /// Bucket keys: the 32-byte salt (hex) that derives this object's key
    /// from the bucket key sealed in `x-kms-sealed-key`.
    pub const BUCKET_KEY_SALT: &str = "x-kms-sse-bucket-key-salt";
    /// SSE-C: the 32-byte salt (hex) of the key fingerprint and derivation.
    pub const CUSTOMER_SALT: &str = "x-kms-sse-customer-salt";
    /// SSE-C: HMAC-SHA-256 of the salt under the customer key (hex).
    pub const CUSTOMER_FINGERPRINT: &str = "x-kms-sse-customer-fingerprint";
}

/// A data key sealed by kmsd, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedKey {
    /// kmsd's blob (`x-kms-sealed-key`): the object's data key, or the
    /// bucket key when `bucket_key_salt` is set.
    pub blob: Vec<u8>,
    /// The master key that sealed it (`x-kms-key-id`).
    pub key_id: String,
    /// Set when the blob is a bucket key: the salt of this object's key.
    pub bucket_key_salt: Option<[u8; 32]>,
}

/// The stored encryption of one object or multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredSse {
    /// SSE-S3.
    S3(SealedKey),
    /// SSE-KMS, with the client's context (possibly empty).
    Kms(SealedKey, EncryptionContext),
    /// SSE-C: how to recognise the customer's key.
    Customer {
        /// The per-object salt.
        salt: [u8; 32],
        /// [`CustomerKey::fingerprint`] of the salt.
        fingerprint: [u8; 32],
    },
}

impl StoredSse {
    /// The metadata entries (without the layout).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        let mut sealed = |mode: &str, key: &SealedKey| {
            map.insert(keys::MODE.into(), mode.into());
            map.insert(
                meta_keys::SEALED_KEY.into(),
                base64::engine::general_purpose::STANDARD.encode(&key.blob),
            );
            map.insert(meta_keys::KEY_ID.into(), key.key_id.clone());
            if let Some(salt) = &key.bucket_key_salt {
                map.insert(keys::BUCKET_KEY_SALT.into(), hex::encode(salt));
            }
        };
        match self {
            StoredSse::S3(key) => sealed("SSE-S3", key),
            StoredSse::Kms(key, context) => {
                sealed("SSE-KMS", key);
                if !context.is_empty() {
                    map.insert(keys::CONTEXT.into(), encode_context(context));
                }
            }
            StoredSse::Customer { salt, fingerprint } => {
                map.insert(keys::MODE.into(), "SSE-C".into());
                map.insert(keys::CUSTOMER_SALT.into(), hex::encode(salt));
                map.insert(keys::CUSTOMER_FINGERPRINT.into(), hex::encode(fingerprint));
            }
        }
        map
    }

    /// Reads the entries back; `Ok(None)` when the object is not SSE
    /// (no `x-kms-sse-mode`). Other keys are ignored.
    pub fn from_map<K: AsRef<str>, V: AsRef<str>>(
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Option<Self>, SseError> {
        let found = collect_known(entries)?;
        let Some(mode) = found.get(keys::MODE) else {
            return Ok(None);
        };
        refuse_foreign(mode, &found)?;
        let hex32 = |name: &'static str| hex32(&found, name);
        let sealed = || -> Result<SealedKey, SseError> {
            let blob = found
                .get(meta_keys::SEALED_KEY)
                .ok_or(corrupt("the sealed key is missing"))?;
            Ok(SealedKey {
                blob: base64::engine::general_purpose::STANDARD
                    .decode(blob)
                    .map_err(|_| corrupt("the sealed key is not base64"))?,
                key_id: found
                    .get(meta_keys::KEY_ID)
                    .ok_or(corrupt("the key id is missing"))?
                    .clone(),
                bucket_key_salt: hex32(keys::BUCKET_KEY_SALT)?,
            })
        };
        let stored = match mode.as_str() {
            "SSE-S3" => StoredSse::S3(sealed()?),
            "SSE-KMS" => {
                let context = found
                    .get(keys::CONTEXT)
                    .map(|value| super::object::decode_context(value))
                    .transpose()
                    .map_err(|_| corrupt("the stored context is invalid"))?
                    .unwrap_or_default();
                StoredSse::Kms(sealed()?, context)
            }
            "SSE-C" => StoredSse::Customer {
                salt: hex32(keys::CUSTOMER_SALT)?.ok_or(corrupt("the SSE-C salt is missing"))?,
                fingerprint: hex32(keys::CUSTOMER_FINGERPRINT)?
                    .ok_or(corrupt("the SSE-C fingerprint is missing"))?,
            },
            _ => return Err(corrupt("unknown mode")),
        };
        Ok(Some(stored))
    }

    /// Checks a request's SSE-C key against this object (HEAD needs no
    /// more; GET and UploadPart go on to [`SseKeys::open`](super::SseKeys::open)):
    /// an SSE-C object needs the right key, any other object none.
    pub fn check_customer_key(
        &self,
        customer: Option<&CustomerKey>,
        slot: super::KeySlot,
    ) -> Result<(), SseError> {
        match (self, customer) {
            (StoredSse::Customer { salt, fingerprint }, Some(key)) => {
                if key.matches(salt, fingerprint) {
                    Ok(())
                } else {
                    Err(SseError::CustomerKeyMismatch { slot })
                }
            }
            (StoredSse::Customer { .. }, None) => Err(SseError::CustomerKeyRequired { slot }),
            (_, Some(_)) => Err(SseError::CustomerKeyNotApplicable { slot }),
            (_, None) => Ok(()),
        }
    }
}

fn corrupt(what: &str) -> SseError {
    SseError::CorruptMetadata(what.to_owned())
}

/// The entries [`StoredSse::from_map`] reads, by lower-case name: an
/// unknown `x-kms-sse-` name, or a name given twice, is refused.
fn collect_known<K: AsRef<str>, V: AsRef<str>>(
    entries: impl IntoIterator<Item = (K, V)>,
) -> Result<BTreeMap<String, String>, SseError> {
    const KNOWN: [&str; 7] = [
        keys::MODE,
        keys::CONTEXT,
        keys::BUCKET_KEY_SALT,
        keys::CUSTOMER_SALT,
        keys::CUSTOMER_FINGERPRINT,
        meta_keys::SEALED_KEY,
        meta_keys::KEY_ID,
    ];
    let mut found = BTreeMap::new();
    for (key, value) in entries {
        let key = key.as_ref().to_ascii_lowercase();
        let known = KNOWN.contains(&key.as_str());
        if key.starts_with(keys::PREFIX) && !known {
            return Err(SseError::CorruptMetadata(format!("unknown key {key}")));
        }
        if known
            && found
                .insert(key.clone(), value.as_ref().to_owned())
                .is_some()
        {
            return Err(SseError::CorruptMetadata(format!("{key} twice")));
        }
    }
    Ok(found)
}

/// Keys of another mode mean the entries were mixed up: refuse them.
fn refuse_foreign(mode: &str, found: &BTreeMap<String, String>) -> Result<(), SseError> {
    let foreign: &[&str] = match mode {
        "SSE-C" => &[
            keys::CONTEXT,
            keys::BUCKET_KEY_SALT,
            meta_keys::SEALED_KEY,
            meta_keys::KEY_ID,
        ],
        "SSE-S3" => &[
            keys::CONTEXT,
            keys::CUSTOMER_SALT,
            keys::CUSTOMER_FINGERPRINT,
        ],
        _ => &[keys::CUSTOMER_SALT, keys::CUSTOMER_FINGERPRINT],
    };
    match foreign.iter().find(|name| found.contains_key(**name)) {
        Some(name) => Err(SseError::CorruptMetadata(format!(
            "{name} does not belong to {mode}"
        ))),
        None => Ok(()),
    }
}

/// A 32-byte value stored as hex, if present.
fn hex32(
    found: &BTreeMap<String, String>,
    name: &'static str,
) -> Result<Option<[u8; 32]>, SseError> {
    found
        .get(name)
        .map(|value| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(value, &mut out)
                .map_err(|_| corrupt(&format!("{name} is not 64 hex digits")))?;
            Ok(out)
        })
        .transpose()
}

/// An SSE object as stored: its encryption and its payload layout.
///
/// Why not [`metadata::ObjectMetadata`]: that is the envelope of a client
/// sealing its own objects, where a sealed data key is always present.
/// Here the key may be a bucket key plus a salt, or (SSE-C) not kept at
/// all, and the S3 mode and context are stored too. The names they share
/// (`x-kms-sealed-key`, `x-kms-key-id`, the layout) are written by the
/// same code ([`metadata::keys`], [`metadata::layout_to_map`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// How its key is kept.
    pub sse: StoredSse,
    /// The OSE1 layout of its payload.
    pub layout: Layout,
}

impl StoredObject {
    /// All metadata entries: [`StoredSse::to_map`] plus the layout's.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut map = metadata::layout_to_map(&self.layout);
        map.extend(self.sse.to_map());
        map
    }

    /// Reads an object's metadata; `Ok(None)` for an object without SSE.
    pub fn from_map<K: AsRef<str>, V: AsRef<str>>(
        entries: impl IntoIterator<Item = (K, V)> + Clone,
    ) -> Result<Option<Self>, SseError> {
        let Some(sse) = StoredSse::from_map(entries.clone())? else {
            return Ok(None);
        };
        let layout = metadata::layout_from_map(entries)
            .map_err(|error| SseError::CorruptMetadata(error.to_string()))?;
        Ok(Some(Self { sse, layout }))
    }
}

/// A check [`check_customer_key`](StoredSse::check_customer_key) applies
/// to objects that are not SSE at all: an SSE-C key is not applicable.
pub fn check_plain_object(
    customer: Option<&CustomerKey>,
    slot: super::KeySlot,
) -> Result<(), SseError> {
    match customer {
        Some(_) => Err(SseError::CustomerKeyNotApplicable { slot }),
        None => Ok(()),
    }
}
