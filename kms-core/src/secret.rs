//! Types that hold secrets: they wipe their memory when dropped and never
//! print their contents through `Debug`.
//!
//! Reading the secret takes an explicit `expose_secret()` call, so every
//! place that touches key material is easy to find.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// Length in bytes of a data key (AES-256).
pub const DATA_KEY_LEN: usize = 32;

/// A 256-bit data key in plaintext.
///
/// Dropping it overwrites the bytes. It cannot be cloned by accident:
/// [`DataKey::clone_secret`] is the explicit way.
///
/// ```compile_fail
/// fn cloneable<T: Clone>() {}
/// cloneable::<kms_core::DataKey>();
/// ```
pub struct DataKey(Zeroizing<[u8; DATA_KEY_LEN]>);

impl DataKey {
    /// Wraps 32 bytes of key material.
    pub fn from_bytes(bytes: [u8; DATA_KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Copies key material out of `bytes` and wipes `bytes`, or returns
    /// `None` (still wiping `bytes`) if it is not exactly 32 bytes long.
    pub fn take_from_vec(mut bytes: Vec<u8>) -> Option<Self> {
        let key = <[u8; DATA_KEY_LEN]>::try_from(bytes.as_slice())
            .ok()
            .map(Self::from_bytes);
        bytes.zeroize();
        key
    }

    /// The key bytes.
    pub fn expose_secret(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }

    /// A second copy of the key, also wiped on drop.
    pub fn clone_secret(&self) -> Self {
        Self::from_bytes(*self.0)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([secret elided])")
    }
}

/// Secret bytes of any length (a decrypted small secret, a passphrase, a
/// token), wiped on drop.
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`; they are wiped when the value drops.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret bytes.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// The number of bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([{} secret bytes elided])", self.0.len())
    }
}

/// A secret string (a Vault token, a passphrase), wiped on drop.
///
/// It cannot be cloned by accident: [`SecretString::clone_secret`] is the
/// explicit way.
///
/// ```compile_fail
/// fn cloneable<T: Clone>() {}
/// cloneable::<kms_core::SecretString>();
/// ```
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Takes ownership of `s`; it is wiped when the value drops.
    pub fn new(s: String) -> Self {
        Self(Zeroizing::new(s))
    }

    /// The secret text.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// A second copy of the secret, also wiped on drop.
    pub fn clone_secret(&self) -> Self {
        Self::new(self.expose_secret().to_owned())
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([secret elided])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let key = DataKey::from_bytes([0xAB; DATA_KEY_LEN]);
        let bytes = SecretBytes::new(b"hunter2-hunter2".to_vec());
        let text = SecretString::new("s.token-value".into());
        let printed = format!("{key:?} {bytes:?} {text:?}");
        assert!(!printed.contains("ab"), "{printed}");
        assert!(!printed.contains("171"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("token-value"), "{printed}");
    }

    #[test]
    fn clone_secret_copies_the_text() {
        let text = SecretString::new("s.token-value".into());
        assert_eq!(text.clone_secret().expose_secret(), "s.token-value");
    }

    #[test]
    fn take_from_vec_checks_the_length() {
        assert!(DataKey::take_from_vec(vec![1; 31]).is_none());
        assert!(DataKey::take_from_vec(vec![1; 33]).is_none());
        let key = DataKey::take_from_vec(vec![7; 32]).map(|k| *k.expose_secret());
        assert_eq!(key, Some([7; 32]));
    }
}
