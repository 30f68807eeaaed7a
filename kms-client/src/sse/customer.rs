//! SSE-C: the customer's key, checked as S3 checks it, and the salted
//! fingerprint that is stored instead of it.

use std::fmt;

use base64::Engine as _;

use super::{KeySlot, SseError};
use crate::{
    DataKey,
    crypto::{self, KEY_LEN},
    secret::DATA_KEY_LEN,
};

/// The only SSE-C algorithm S3 defines.
pub const CUSTOMER_ALGORITHM: &str = "AES256";

/// Bytes of the per-object salt of an SSE-C fingerprint.
pub const FINGERPRINT_SALT_LEN: usize = 32;

const LABEL_FINGERPRINT: &[u8] = b"kms-sse/v1/sse-c-fingerprint\0";
const LABEL_OBJECT_KEY: &[u8] = b"kms-sse/v1/sse-c-object-key\0";

/// A customer-provided key (SSE-C), validated: 32 bytes whose MD5 matched
/// the one the client sent.
///
/// The key is wiped on drop and never printed. It is never stored either:
/// objects keep a salted HMAC of it ([`CustomerKey::fingerprint`]) to tell a
/// wrong key from the right one, and are encrypted under a key derived from
/// it and that salt.
pub struct CustomerKey {
    key: DataKey,
    md5: String,
}

impl CustomerKey {
    /// Parses the three header values of one slot. `Ok(None)` when all three
    /// are absent; every other combination is checked in the order S3
    /// reports problems: algorithm, key present, MD5 present, key shape,
    /// MD5 match.
    pub fn from_header_values(
        slot: KeySlot,
        algorithm: Option<&str>,
        key: Option<&str>,
        key_md5: Option<&str>,
    ) -> Result<Option<Self>, SseError> {
        if algorithm.is_none() && key.is_none() && key_md5.is_none() {
            return Ok(None);
        }
        let missing = |missing| SseError::IncompleteCustomerKey { slot, missing };
        let algorithm = algorithm.ok_or(missing("a valid encryption algorithm"))?;
        if algorithm != CUSTOMER_ALGORITHM {
            return Err(SseError::InvalidCustomerAlgorithm { slot });
        }
        let key = key.ok_or(missing("an appropriate secret key"))?;
        let key_md5 = key_md5.ok_or(missing("the client-calculated MD5 of the secret key"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|_| SseError::InvalidCustomerKey { slot })?;
        let key = DataKey::take_from_vec(bytes).ok_or(SseError::InvalidCustomerKey { slot })?;
        let expected = base64::engine::general_purpose::STANDARD
            .decode(key_md5.trim())
            .map_err(|_| SseError::CustomerKeyMd5Mismatch { slot })?;
        let computed = crypto::md5(key.expose_secret());
        if !crypto::constant_time_eq(&expected, &computed) {
            return Err(SseError::CustomerKeyMd5Mismatch { slot });
        }
        Ok(Some(Self {
            key,
            md5: base64::engine::general_purpose::STANDARD.encode(computed),
        }))
    }

    /// Wraps raw key bytes (for a server that receives them some other
    /// way, and for tests).
    pub fn from_bytes(bytes: [u8; DATA_KEY_LEN]) -> Self {
        let key = DataKey::from_bytes(bytes);
        let md5 =
            base64::engine::general_purpose::STANDARD.encode(crypto::md5(key.expose_secret()));
        Self { key, md5 }
    }

    /// The key's MD5, base64: what S3 echoes in
    /// `x-amz-server-side-encryption-customer-key-MD5`. It is sent by the
    /// client with every request, so echoing it reveals nothing new; it is
    /// never stored.
    pub fn key_md5(&self) -> &str {
        &self.md5
    }

    /// HMAC-SHA-256 of the salt under the customer key: stored with the
    /// object so a later request's key can be checked before any byte is
    /// decrypted. Salted per object, so equal keys on two objects do not
    /// show (unlike an MD5 of the key).
    pub fn fingerprint(&self, salt: &[u8; FINGERPRINT_SALT_LEN]) -> [u8; KEY_LEN] {
        crypto::hmac_sha256(self.key.expose_secret(), &[LABEL_FINGERPRINT, salt])
    }

    /// Whether `fingerprint` was made by this key with `salt`.
    pub fn matches(&self, salt: &[u8; FINGERPRINT_SALT_LEN], fingerprint: &[u8]) -> bool {
        crypto::constant_time_eq(&self.fingerprint(salt), fingerprint)
    }

    /// The object's data key: HKDF-SHA-256 of the customer key with the
    /// object's salt, bound to the object's `binding`.
    pub(crate) fn object_key(&self, salt: &[u8; FINGERPRINT_SALT_LEN], binding: &[u8]) -> DataKey {
        let binding_len = (binding.len() as u32).to_be_bytes();
        let okm = crypto::hkdf_sha256(
            salt,
            self.key.expose_secret(),
            &[LABEL_OBJECT_KEY, &binding_len, binding],
        );
        DataKey::from_bytes(*okm)
    }
}

impl fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CustomerKey([secret elided])")
    }
}
