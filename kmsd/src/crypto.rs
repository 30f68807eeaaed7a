//! The one module that touches ring (and the argon2 KDF).
//!
//! Everything here is built around one construction, used for sealed data
//! keys and for key files sealed at rest alike:
//!
//! ```text
//! PRK  = HKDF-Extract(salt = domain label, IKM = 32-byte key material)  (once per key)
//! K    = HKDF-Expand(PRK, info = seed, 32)                               (once per message)
//! out  = AES-256-GCM(K, nonce = 0^96, aad, plaintext) = ciphertext || tag
//! ```
//!
//! `seed` is 32 fresh random bytes per message, so every message is sealed
//! under its own key and a (key, nonce) pair can never repeat: the number of
//! messages per master-key version is bounded by seed collisions (2^-128 at
//! 2^64 messages), not by GCM's 2^32 random-nonce limit.

use std::fmt;

use kms_client::SecretBytes;
use ring::{aead, digest, hkdf, hmac, rand::SecureRandom};
use zeroize::Zeroizing;

/// Bytes of random seed per sealed message.
pub const SEED_LEN: usize = 32;
/// Bytes of GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes of key material.
pub const KEY_LEN: usize = 32;

/// Why a cryptographic operation failed. Deliberately vague: the caller
/// learns nothing about which byte was wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The operating system's random generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// The ciphertext, tag or authenticated data did not verify.
    #[error("authentication failed")]
    Authentication,
    /// The passphrase-based KDF rejected its parameters.
    #[error("invalid key-derivation parameters")]
    KdfParameters,
}

/// Fills `buf` from the operating system's CSPRNG with one `getrandom` call.
pub fn fill_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| CryptoError::Random)
}

/// `N` fresh random bytes.
pub fn random_array<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    fill_random(&mut out)?;
    Ok(out)
}

/// SHA-256.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// HMAC-SHA-256 (used by the SigV4 verifier and key fingerprints).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A key that seals messages under a fresh derived key each time.
///
/// ring keeps the HKDF state in its own types, which it does not wipe on
/// drop; the raw material stays in a `Zeroizing` buffer owned by the caller
/// (see docs/security.md, "memory hygiene").
pub struct WrappingKey {
    prk: hkdf::Prk,
}

impl fmt::Debug for WrappingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WrappingKey([secret elided])")
    }
}

impl WrappingKey {
    /// Derives the PRK of `material` for one purpose, named by `domain`.
    pub fn new(material: &[u8; KEY_LEN], domain: &'static [u8]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, domain).extract(material);
        Self { prk }
    }

    fn message_key(&self, seed: &[u8; SEED_LEN]) -> aead::LessSafeKey {
        let info = [seed.as_slice()];
        // Invariant: AES_256_GCM's key length (32) is far below HKDF-SHA256's
        // output limit (255 * 32), the only way expand can fail.
        let okm = self
            .prk
            .expand(&info, &aead::AES_256_GCM)
            .unwrap_or_else(|_| unreachable!("HKDF output length is within limits"));
        aead::LessSafeKey::new(aead::UnboundKey::from(okm))
    }

    /// Appends `ciphertext || tag` of `plaintext` to `out`.
    pub fn seal_append(
        &self,
        seed: &[u8; SEED_LEN],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let key = self.message_key(seed);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = key
            .seal_in_place_separate_tag(zero_nonce(), aead::Aad::from(aad), &mut out[start..])
            .map_err(|_| CryptoError::Authentication)?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens `ciphertext || tag`.
    pub fn open(
        &self,
        seed: &[u8; SEED_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<SecretBytes, CryptoError> {
        if sealed.len() < TAG_LEN {
            return Err(CryptoError::Authentication);
        }
        let key = self.message_key(seed);
        let mut buf = Zeroizing::new(sealed.to_vec());
        let plaintext_len = key
            .open_in_place(zero_nonce(), aead::Aad::from(aad), &mut buf)
            .map_err(|_| CryptoError::Authentication)?
            .len();
        let mut plaintext = std::mem::take(&mut *buf);
        plaintext.truncate(plaintext_len);
        Ok(SecretBytes::new(plaintext))
    }
}

/// Every message key seals exactly one message, so a constant nonce is
/// unique for its key.
fn zero_nonce() -> aead::Nonce {
    aead::Nonce::assume_unique_for_key([0u8; aead::NONCE_LEN])
}

/// Argon2id cost parameters, recorded next to sealed key files so they can
/// be raised later without breaking existing directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for Argon2Params {
    /// For new sealings: 64 MiB, 3 passes, 1 lane (RFC 9106's second
    /// recommended setting, with one lane as kmsd derives once at startup),
    /// well above OWASP's 19 MiB / 2-pass floor. The parameters are stored
    /// with each sealing, so directories sealed with older ones still open.
    fn default() -> Self {
        Self {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

/// Derives a 32-byte key-encryption key from a passphrase with Argon2id.
pub fn argon2id(
    passphrase: &[u8],
    salt: &[u8],
    params: Argon2Params,
) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    let params = argon2::Params::new(
        params.m_cost_kib,
        params.t_cost,
        params.p_cost,
        Some(KEY_LEN),
    )
    .map_err(|_| CryptoError::KdfParameters)?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    argon
        .hash_password_into(passphrase, salt, out.as_mut())
        .map_err(|_| CryptoError::KdfParameters)?;
    Ok(out)
}

/// Derives a 32-byte key-encryption key from a high-entropy key file with
/// HKDF (a memory-hard KDF adds nothing when the input is already random).
pub fn hkdf_key_file(contents: &[u8], salt: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(contents);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    // Invariant: 32 bytes is within HKDF-SHA256's output limit.
    prk.expand(&[b"kmsd/v1/key-file-kek"], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(out.as_mut()))
        .unwrap_or_else(|_| unreachable!("HKDF output length is within limits"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &[u8] = b"kmsd/test";

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let key = WrappingKey::new(&[1; KEY_LEN], DOMAIN);
        let seed = [2; SEED_LEN];
        let mut out = Vec::new();
        key.seal_append(&seed, b"aad", b"secret", &mut out).unwrap();
        assert_eq!(out.len(), 6 + TAG_LEN);
        assert_eq!(
            key.open(&seed, b"aad", &out).unwrap().expose_secret(),
            b"secret"
        );
        assert_eq!(
            key.open(&seed, b"aae", &out).unwrap_err(),
            CryptoError::Authentication
        );
        assert!(key.open(&[3; SEED_LEN], b"aad", &out).is_err());
        let other = WrappingKey::new(&[1; KEY_LEN], b"kmsd/other-domain");
        assert!(other.open(&seed, b"aad", &out).is_err());
        for i in 0..out.len() * 8 {
            let mut bad = out.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(key.open(&seed, b"aad", &bad).is_err(), "bit {i}");
        }
        assert!(key.open(&seed, b"aad", &out[..TAG_LEN - 1]).is_err());
    }

    #[test]
    fn different_seeds_give_different_ciphertexts() {
        let key = WrappingKey::new(&[1; KEY_LEN], DOMAIN);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        key.seal_append(&[0; SEED_LEN], b"", b"same", &mut a)
            .unwrap();
        key.seal_append(&[1; SEED_LEN], b"", b"same", &mut b)
            .unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn constant_time_eq_matches_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn argon2id_is_deterministic_and_salted() {
        let params = Argon2Params {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        };
        let a = argon2id(b"pw", b"saltsaltsaltsalt", params).unwrap();
        let b = argon2id(b"pw", b"saltsaltsaltsalt", params).unwrap();
        let c = argon2id(b"pw", b"SALTsaltsaltsalt", params).unwrap();
        assert_eq!(*a, *b);
        assert_ne!(*a, *c);
    }
}
