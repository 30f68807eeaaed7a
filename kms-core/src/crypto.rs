//! The one module of the workspace that calls the cryptographic backend.
//!
//! kmsd and kms-client both go through the handful of functions and types
//! below, so the backend can be swapped by a cargo feature: `ring` by
//! default, `aws-lc-rs` with the `aws-lc` feature (same API, about twice as
//! fast at AES-GCM on VAES/AVX-512 machines). Nothing outside this file
//! names either crate. Three primitives neither backend offers come from
//! other well-kept crates, also only here: Argon2id (kmsd's passphrase KDF),
//! MD5 (which S3's SSE-C protocol requires) and constant-time equality
//! (`subtle`; ring deprecated its own).
//!
//! kmsd seals data keys and key files at rest with one construction,
//! [`WrappingKey`]:
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
//! 2^64 messages), not by GCM's 2^32 random-nonce limit. kms-client's
//! object streams use [`AeadKey`] with nonces they derive themselves
//! (docs/format.md).

use std::fmt;

#[cfg(feature = "aws-lc")]
use aws_lc_rs as backend;
#[cfg(not(feature = "aws-lc"))]
use ring as backend;

use backend::{
    aead, digest, hkdf, hmac,
    rand::{SecureRandom, SystemRandom},
};
use zeroize::Zeroizing;

use crate::secret::SecretBytes;

/// Bytes of an AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes of an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes of key material, of a derived key and of an HMAC-SHA-256 output.
pub const KEY_LEN: usize = 32;
/// Bytes of random seed per message sealed by a [`WrappingKey`].
pub const SEED_LEN: usize = 32;

/// Why a cryptographic operation failed. Deliberately vague: the caller
/// learns nothing about which byte was wrong.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
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

/// Fills `buf` from the operating system's CSPRNG with one call.
pub fn fill_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| CryptoError::Random)
}

/// `N` fresh random bytes.
pub fn random_array<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    fill_random(&mut out)?;
    Ok(out)
}

/// A uniformly random `u64`, for retry jitter.
pub fn random_u64() -> Result<u64, CryptoError> {
    random_array::<8>().map(u64::from_le_bytes)
}

/// SHA-256.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// HMAC-SHA-256 over the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; KEY_LEN] {
    let mut context = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key));
    for part in parts {
        context.update(part);
    }
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(context.sign().as_ref());
    out
}

/// HKDF-SHA-256: extract with `salt` from `ikm`, then expand `info` (the
/// concatenation of its parts) to a 32-byte key.
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Zeroizing<[u8; KEY_LEN]> {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            KEY_LEN
        }
    }
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let filled = prk
        .expand(info, Len32)
        .and_then(|okm| okm.fill(out.as_mut()));
    // HKDF-SHA-256 refuses only outputs longer than 255 * 32 bytes; ours is
    // 32. Panicking beats returning an all-zero key if that ever changed.
    if filled.is_err() {
        unreachable!("HKDF-SHA-256 expands to 32 bytes");
    }
    out
}

/// MD5, only because S3 makes clients send the MD5 of an SSE-C key (to catch
/// transmission errors, not as a security check). Never use it for anything
/// else: nothing here stores or trusts an MD5.
pub fn md5(data: &[u8]) -> [u8; 16] {
    use md5::Digest as _;
    md5::Md5::digest(data).into()
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    bool::from(a.ct_eq(b))
}

/// An AES-256-GCM key whose caller supplies unique nonces.
///
/// The raw bytes live only in a zeroizing buffer while the key schedule is
/// built; the backend keeps its own expanded schedule, which it does not
/// wipe (neither ring nor aws-lc-rs offers that).
pub struct AeadKey(aead::LessSafeKey);

impl AeadKey {
    /// The key schedule of `key`.
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        // AES-256 accepts every 32-byte string, so construction cannot fail.
        match aead::UnboundKey::new(&aead::AES_256_GCM, key) {
            Ok(unbound) => Self(aead::LessSafeKey::new(unbound)),
            Err(_) => unreachable!("AES-256-GCM takes any 32-byte key"),
        }
    }

    /// Encrypts `in_out` in place and returns the tag.
    pub fn seal_in_place(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let nonce = aead::Nonce::assume_unique_for_key(nonce);
        // Sealing fails only for inputs beyond GCM's 64 GiB limit, far above
        // the largest chunk (16 MiB).
        match self
            .0
            .seal_in_place_separate_tag(nonce, aead::Aad::from(aad), in_out)
        {
            Ok(tag) => {
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(tag.as_ref());
                out
            }
            Err(_) => unreachable!("a chunk is far below the GCM input limit"),
        }
    }

    /// Decrypts `in_out` (ciphertext followed by the tag) in place and
    /// returns the plaintext length. On failure the buffer holds garbage that
    /// must not be released.
    pub fn open_in_place(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<usize, CryptoError> {
        let nonce = aead::Nonce::assume_unique_for_key(nonce);
        self.0
            .open_in_place(nonce, aead::Aad::from(aad), in_out)
            .map(|plaintext| plaintext.len())
            .map_err(|_| CryptoError::Authentication)
    }
}

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AeadKey([secret elided])")
    }
}

/// A key that seals messages under a fresh derived key each time.
///
/// The backend keeps the HKDF state in its own types, which it does not
/// wipe on drop; the raw material stays in a `Zeroizing` buffer owned by
/// the caller (see docs/security.md, "memory hygiene").
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
    aead::Nonce::assume_unique_for_key([0u8; NONCE_LEN])
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
    hkdf_sha256(salt, contents, &[b"kmsd/v1/key-file-kek"])
}

#[cfg(test)]
mod tests;
