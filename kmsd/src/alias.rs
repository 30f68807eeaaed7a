//! Aliases: names of the form `alias/<name>` that stand for a key id.
//!
//! An alias is resolved to its target key before anything else happens
//! (policy, the backend call, the blob's header), so blobs always name the
//! real key and keep opening after the alias is pointed elsewhere. That is
//! how an operator moves new writes to a new key without touching the
//! storage servers' configuration: retarget the alias they name.

use std::fmt;

use time::OffsetDateTime;

use crate::{
    error::KmsError,
    key_id::{KeyId, MAX_KEY_ID_LEN, RESERVED_PREFIX},
};

/// What every alias starts with, as in AWS KMS.
pub const ALIAS_PREFIX: &str = "alias/";

/// The name of an alias, without its `alias/` prefix: 1-128 characters
/// from `[A-Za-z0-9._-]`, starting with a letter or digit (the rules of a
/// key id, so a name is also a safe file or KV path segment). AWS also
/// allows `/` in names; kmsd does not (docs/admin-api.md).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AliasName(String);

impl AliasName {
    /// Parses `alias/<name>`, or a bare `<name>` where the context says it
    /// is an alias (CreateAlias, the alias routes).
    pub fn parse(s: &str) -> Result<Self, KmsError> {
        let name = s.strip_prefix(ALIAS_PREFIX).unwrap_or(s);
        let invalid = |reason| KmsError::InvalidAliasName {
            shown: s.chars().take(40).map(printable).collect(),
            reason,
        };
        if name.starts_with(RESERVED_PREFIX) {
            return Err(invalid("names starting kmsd-internal- are reserved"));
        }
        match KeyId::parse(name) {
            Ok(_) if name.len() <= MAX_KEY_ID_LEN => Ok(Self(name.to_owned())),
            Ok(_) => Err(invalid("the name is longer than 128 characters")),
            Err(KmsError::InvalidKeyId { reason, .. }) => Err(invalid(reason)),
            Err(_) => Err(invalid("it is not a valid name")),
        }
    }

    /// The name without the prefix (a file or KV path segment).
    pub fn name(&self) -> &str {
        &self.0
    }
}

fn printable(c: char) -> char {
    if c.is_ascii_graphic() { c } else { '?' }
}

impl fmt::Display for AliasName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ALIAS_PREFIX}{}", self.0)
    }
}

impl fmt::Debug for AliasName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AliasName({self})")
    }
}

/// What a caller names a key with: its id or one of its aliases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// A key id.
    Key(KeyId),
    /// `alias/<name>`.
    Alias(AliasName),
}

impl KeyRef {
    /// Parses a key id or, with the `alias/` prefix, an alias.
    pub fn parse(s: &str) -> Result<Self, KmsError> {
        if s.starts_with(ALIAS_PREFIX) {
            AliasName::parse(s).map(Self::Alias)
        } else {
            KeyId::parse(s).map(Self::Key)
        }
    }

    /// As [`Self::parse`], with empty meaning none given.
    pub fn parse_optional(s: &str) -> Result<Option<Self>, KmsError> {
        if s.is_empty() {
            Ok(None)
        } else {
            Self::parse(s).map(Some)
        }
    }
}

impl From<KeyId> for KeyRef {
    fn from(key_id: KeyId) -> Self {
        KeyRef::Key(key_id)
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRef::Key(key_id) => key_id.fmt(f),
            KeyRef::Alias(alias) => alias.fmt(f),
        }
    }
}

/// An alias and where it points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasEntry {
    /// The name.
    pub name: AliasName,
    /// The key it resolves to.
    pub target: KeyId,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it was last pointed at a key.
    pub updated_at: OffsetDateTime,
}

/// Whether a write of an alias creates it or retargets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasWrite {
    /// CreateAlias: the name must be free.
    Create,
    /// UpdateAlias: the alias must exist.
    Update,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_or_without_the_prefix() {
        assert_eq!(AliasName::parse("alias/photos").unwrap().name(), "photos");
        assert_eq!(
            AliasName::parse("photos").unwrap().to_string(),
            "alias/photos"
        );
        for bad in [
            "alias/",
            "alias/a/b",
            "alias/../x",
            "alias/kmsd-internal-probe",
            "",
            &format!("alias/{}", "a".repeat(129)),
        ] {
            assert!(
                matches!(
                    AliasName::parse(bad),
                    Err(KmsError::InvalidAliasName { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn key_refs_tell_aliases_from_ids() {
        assert_eq!(
            KeyRef::parse("alias/a").unwrap(),
            KeyRef::Alias(AliasName::parse("a").unwrap())
        );
        assert_eq!(
            KeyRef::parse("a").unwrap(),
            KeyRef::Key(KeyId::parse("a").unwrap())
        );
        assert!(matches!(
            KeyRef::parse("alias/"),
            Err(KmsError::InvalidAliasName { .. })
        ));
        assert!(matches!(
            KeyRef::parse("other/a"),
            Err(KmsError::InvalidKeyId { .. })
        ));
        assert_eq!(KeyRef::parse_optional("").unwrap(), None);
    }
}
