//! Validated master-key identifiers.
//!
//! A key id names a file in the local backend and a path segment in Vault,
//! so it is parsed once, here, and nothing that is not a valid id can reach
//! a backend: `../../etc/passwd` is an error, never a path.

use std::{fmt, str::FromStr};

use crate::error::KmsError;

/// The longest key id accepted.
pub const MAX_KEY_ID_LEN: usize = 128;

/// Key ids with this prefix are reserved for kmsd itself (the health
/// probe key) and cannot be created through the API.
pub const RESERVED_PREFIX: &str = "kmsd-internal-";

/// A key id: 1-128 characters from `[A-Za-z0-9._-]`, starting with a
/// letter or digit.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// Parses a key id from untrusted input.
    pub fn parse(s: &str) -> Result<Self, KmsError> {
        let reason = if s.is_empty() {
            Some("it is empty")
        } else if s.len() > MAX_KEY_ID_LEN {
            Some("it is longer than 128 characters")
        } else if !s.as_bytes()[0].is_ascii_alphanumeric() {
            Some("it must start with a letter or digit")
        } else if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            Some("only letters, digits, '.', '_' and '-' are allowed")
        } else {
            None
        };
        match reason {
            None => Ok(Self(s.to_owned())),
            Some(reason) => Err(KmsError::InvalidKeyId {
                shown: printable_prefix(s),
                reason,
            }),
        }
    }

    /// Parses an id that is allowed to be absent: empty means `None`.
    pub fn parse_optional(s: &str) -> Result<Option<Self>, KmsError> {
        if s.is_empty() {
            Ok(None)
        } else {
            Self::parse(s).map(Some)
        }
    }

    /// Whether the id is reserved for kmsd's own use.
    pub fn is_reserved(&self) -> bool {
        self.0.starts_with(RESERVED_PREFIX)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Echoing untrusted input into an error message is useful for the caller,
/// but only a short, printable prefix of it.
fn printable_prefix(s: &str) -> String {
    let mut shown: String = s
        .chars()
        .take(40)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    if s.chars().count() > 40 {
        shown.push('…');
    }
    shown
}

impl FromStr for KeyId {
    type Err = KmsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl AsRef<str> for KeyId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        for ok in [
            "a",
            "default",
            "rustfs-master",
            "tenant_1.key-2",
            &"k".repeat(128),
        ] {
            assert_eq!(KeyId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_paths_and_odd_characters() {
        for bad in [
            "",
            "../../etc/passwd",
            "..",
            ".hidden",
            "a/b",
            "a b",
            "-x",
            "ключ",
            "a\0b",
            &"k".repeat(129),
        ] {
            assert!(
                matches!(KeyId::parse(bad), Err(KmsError::InvalidKeyId { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn error_echo_is_short_and_printable() {
        let long = format!("{}\u{7}", "x".repeat(100));
        let Err(KmsError::InvalidKeyId { shown, .. }) = KeyId::parse(&long) else {
            panic!("expected an error");
        };
        assert!(shown.chars().count() <= 41);
        assert!(shown.chars().all(|c| c.is_ascii_graphic() || c == '…'));
    }
}
