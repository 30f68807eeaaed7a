//! Encryption contexts: validation and the canonical encoding that is bound
//! to every blob as authenticated data.
//!
//! Canonical form (also in docs/format.md):
//! `u32be(n) || for each pair in ascending byte order of keys:
//!  u32be(len(k)) || k || u32be(len(v)) || v`.
//! Length prefixes make the encoding injective: no two different maps share
//! an encoding, whatever bytes their keys and values hold.
//!
//! A client builds an [`EncryptionContext`] (plain pairs); kmsd validates
//! what it receives into a [`CanonicalContext`], which carries the encoding.

use std::collections::BTreeMap;

/// An encryption context: non-secret key-value pairs bound to a blob as
/// authenticated data. The same pairs must be given to open it.
pub type EncryptionContext = BTreeMap<String, String>;

/// The most pairs a context may hold.
pub const MAX_CONTEXT_ENTRIES: usize = 64;
/// The most bytes all keys and values together may hold.
pub const MAX_CONTEXT_BYTES: usize = 8192;

/// Why a context was refused; the message is written for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// More pairs than [`MAX_CONTEXT_ENTRIES`].
    #[error("{0} entries; at most {MAX_CONTEXT_ENTRIES} are allowed")]
    TooManyEntries(usize),
    /// A key is the empty string.
    #[error("a key is empty")]
    EmptyKey,
    /// More bytes than [`MAX_CONTEXT_BYTES`].
    #[error("{0} bytes of keys and values; at most {MAX_CONTEXT_BYTES} are allowed")]
    TooManyBytes(usize),
}

/// A validated encryption context with its canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalContext {
    entries: EncryptionContext,
    canonical: Vec<u8>,
}

impl CanonicalContext {
    /// Validates a context received from a caller.
    pub fn new(entries: EncryptionContext) -> Result<Self, ContextError> {
        if entries.len() > MAX_CONTEXT_ENTRIES {
            return Err(ContextError::TooManyEntries(entries.len()));
        }
        let mut total = 0usize;
        for (key, value) in &entries {
            if key.is_empty() {
                return Err(ContextError::EmptyKey);
            }
            total += key.len() + value.len();
        }
        if total > MAX_CONTEXT_BYTES {
            return Err(ContextError::TooManyBytes(total));
        }
        let canonical = canonical_encoding(&entries);
        Ok(Self { entries, canonical })
    }

    /// The empty context.
    pub fn empty() -> Self {
        Self {
            entries: BTreeMap::new(),
            canonical: 0u32.to_be_bytes().to_vec(),
        }
    }

    /// The canonical encoding bound as authenticated data.
    pub fn canonical_bytes(&self) -> &[u8] {
        &self.canonical
    }

    /// The pairs.
    pub fn entries(&self) -> &EncryptionContext {
        &self.entries
    }

    /// Hex SHA-256 of the canonical encoding: what the audit log records
    /// instead of the context itself.
    pub fn digest_hex(&self) -> String {
        hex::encode(crate::crypto::sha256(&self.canonical))
    }
}

/// The canonical byte form of a context (docs/format.md, "Canonical
/// encryption context"), for binding one as authenticated data or into a
/// key derivation. It does not check the limits; [`CanonicalContext::new`]
/// does.
pub fn canonical_encoding(context: &EncryptionContext) -> Vec<u8> {
    let bytes: usize = context.iter().map(|(k, v)| k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(4 + 8 * context.len() + bytes);
    out.extend_from_slice(&len_u32(context.len()).to_be_bytes());
    for (key, value) in context {
        // BTreeMap<String, _> iterates in byte order of the keys, which
        // is the order the format prescribes.
        for part in [key, value] {
            out.extend_from_slice(&len_u32(part.len()).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    out
}

fn len_u32(n: usize) -> u32 {
    // Invariant: a validated context is far below 4 GiB; an unvalidated
    // one that is not cannot be held in memory to be sent either.
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> CanonicalContext {
        CanonicalContext::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn canonical_form_is_the_documented_one() {
        let c = ctx(&[("bucket", "b1"), ("a", "")]);
        let mut expected = vec![0, 0, 0, 2];
        expected.extend([0, 0, 0, 1, b'a', 0, 0, 0, 0]);
        expected.extend([0, 0, 0, 6]);
        expected.extend(b"bucket");
        expected.extend([0, 0, 0, 2, b'b', b'1']);
        assert_eq!(c.canonical_bytes(), expected);
        assert_eq!(canonical_encoding(c.entries()), expected);
        assert_eq!(
            CanonicalContext::empty().canonical_bytes(),
            ctx(&[]).canonical_bytes()
        );
    }

    #[test]
    fn encoding_is_injective_where_naive_joins_are_not() {
        assert_ne!(
            ctx(&[("a", "b=c")]).canonical_bytes(),
            ctx(&[("a=b", "c")]).canonical_bytes()
        );
        assert_ne!(
            ctx(&[("ab", "")]).canonical_bytes(),
            ctx(&[("a", "b")]).canonical_bytes()
        );
    }

    #[test]
    fn limits_are_enforced() {
        let many: EncryptionContext = (0..=MAX_CONTEXT_ENTRIES)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert_eq!(
            CanonicalContext::new(many).unwrap_err().to_string(),
            "65 entries; at most 64 are allowed"
        );
        let big = BTreeMap::from([("k".to_string(), "v".repeat(MAX_CONTEXT_BYTES))]);
        assert_eq!(
            CanonicalContext::new(big).unwrap_err().to_string(),
            "8193 bytes of keys and values; at most 8192 are allowed"
        );
        let empty_key = BTreeMap::from([(String::new(), "v".to_string())]);
        assert_eq!(
            CanonicalContext::new(empty_key).unwrap_err(),
            ContextError::EmptyKey
        );
    }
}
