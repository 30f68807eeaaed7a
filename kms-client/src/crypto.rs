//! The one module that calls the cryptographic backend.
//!
//! Everything else in this crate goes through the handful of functions and
//! types below, so the backend can be swapped by a cargo feature: `ring` by
//! default, `aws-lc-rs` with the `aws-lc` feature (same API, about twice as
//! fast at AES-GCM on VAES/AVX-512 machines). Nothing outside this file
//! names either crate. MD5, which S3's SSE-C protocol requires and neither
//! backend offers, comes from RustCrypto's `md-5`, also only here.

use std::fmt;

#[cfg(feature = "aws-lc")]
use aws_lc_rs as backend;
#[cfg(not(feature = "aws-lc"))]
use ring as backend;

use backend::{
    aead, hkdf, hmac,
    rand::{SecureRandom, SystemRandom},
};
use zeroize::Zeroizing;

/// Bytes of an AES-GCM tag.
pub(crate) const TAG_LEN: usize = 16;
/// Bytes of an AES-GCM nonce.
pub(crate) const NONCE_LEN: usize = 12;
/// Bytes of a derived key and of an HMAC-SHA-256 output.
pub(crate) const KEY_LEN: usize = 32;

/// The operating system's random generator failed; nothing else here can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RandomFailed;

/// A tag or MAC did not verify. Deliberately carries no detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unauthentic;

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), RandomFailed> {
    SystemRandom::new().fill(buf).map_err(|_| RandomFailed)
}

/// HKDF-SHA-256: extract with `salt` from `ikm`, then expand `info` (the
/// concatenation of its parts) to a 32-byte key.
pub(crate) fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Zeroizing<[u8; KEY_LEN]> {
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

/// HMAC-SHA-256 over the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; KEY_LEN] {
    let mut context = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key));
    for part in parts {
        context.update(part);
    }
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(context.sign().as_ref());
    out
}

/// MD5, only because S3 makes clients send the MD5 of an SSE-C key (to catch
/// transmission errors, not as a security check). Never use it for anything
/// else: nothing here stores or trusts an MD5.
pub(crate) fn md5(data: &[u8]) -> [u8; 16] {
    use md5::Digest as _;
    md5::Md5::digest(data).into()
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An AES-256-GCM key.
///
/// The raw bytes live only in a zeroizing buffer while the key schedule is
/// built; the backend keeps its own expanded schedule, which it does not
/// wipe (neither ring nor aws-lc-rs offers that).
pub(crate) struct AeadKey(aead::LessSafeKey);

impl AeadKey {
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
        // AES-256 accepts every 32-byte string, so construction cannot fail.
        match aead::UnboundKey::new(&aead::AES_256_GCM, key) {
            Ok(unbound) => Self(aead::LessSafeKey::new(unbound)),
            Err(_) => unreachable!("AES-256-GCM takes any 32-byte key"),
        }
    }

    /// Encrypts `in_out` in place and returns the tag.
    pub(crate) fn seal_in_place(
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
    pub(crate) fn open_in_place(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<usize, Unauthentic> {
        let nonce = aead::Nonce::assume_unique_for_key(nonce);
        self.0
            .open_in_place(nonce, aead::Aad::from(aad), in_out)
            .map(|plaintext| plaintext.len())
            .map_err(|_| Unauthentic)
    }
}

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AeadKey([secret elided])")
    }
}

/// A uniformly random `u64`, for retry jitter.
pub(crate) fn random_u64() -> Result<u64, RandomFailed> {
    let mut bytes = [0u8; 8];
    fill_random(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 5869 test case 1, truncated to our 32-byte output.
    #[test]
    fn hkdf_matches_rfc5869() {
        let ikm = [0x0b; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let okm = hkdf_sha256(&salt, &ikm, &[&info[..4], &info[4..]]);
        assert_eq!(
            hex::encode(okm.as_ref()),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        );
    }

    // RFC 4231 test case 2.
    #[test]
    fn hmac_matches_rfc4231() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn seal_then_open_and_reject_a_flip() {
        let key = AeadKey::new(&[7; KEY_LEN]);
        let mut buf = b"hello, world".to_vec();
        let tag = key.seal_in_place([1; NONCE_LEN], b"aad", &mut buf);
        buf.extend_from_slice(&tag);
        let mut copy = buf.clone();
        assert_eq!(key.open_in_place([1; NONCE_LEN], b"aad", &mut copy), Ok(12));
        assert_eq!(&copy[..12], b"hello, world");
        buf[3] ^= 1;
        assert_eq!(
            key.open_in_place([1; NONCE_LEN], b"aad", &mut buf),
            Err(Unauthentic)
        );
    }

    // RFC 1321, appendix A.5.
    #[test]
    fn md5_matches_rfc1321() {
        assert_eq!(hex::encode(md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
