//! Encryption contexts: validation and the canonical encoding that is bound
//! to every blob as authenticated data.
//!
//! Canonical form (also in docs/format.md):
//! `u32be(n) || for each pair in ascending byte order of keys:
//!  u32be(len(k)) || k || u32be(len(v)) || v`.
//! Length prefixes make the encoding injective: no two different maps share
//! an encoding, whatever bytes their keys and values hold.

use std::collections::BTreeMap;

use crate::error::KmsError;

/// The most pairs a context may hold.
pub const MAX_CONTEXT_ENTRIES: usize = 64;
/// The most bytes all keys and values together may hold.
pub const MAX_CONTEXT_BYTES: usize = 8192;

/// A validated encryption context with its canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionContext {
    entries: BTreeMap<String, String>,
    canonical: Vec<u8>,
}

impl EncryptionContext {
    /// Validates a context received from a caller.
    pub fn new(entries: BTreeMap<String, String>) -> Result<Self, KmsError> {
        if entries.len() > MAX_CONTEXT_ENTRIES {
            return Err(KmsError::InvalidContext(format!(
                "{} entries; at most {MAX_CONTEXT_ENTRIES} are allowed",
                entries.len()
            )));
        }
        let mut total = 0usize;
        for (key, value) in &entries {
            if key.is_empty() {
                return Err(KmsError::InvalidContext("a key is empty".into()));
            }
            total += key.len() + value.len();
        }
        if total > MAX_CONTEXT_BYTES {
            return Err(KmsError::InvalidContext(format!(
                "{total} bytes of keys and values; at most {MAX_CONTEXT_BYTES} are allowed"
            )));
        }
        let mut canonical = Vec::with_capacity(4 + 8 * entries.len() + total);
        canonical.extend_from_slice(&len_u32(entries.len()).to_be_bytes());
        for (key, value) in &entries {
            // BTreeMap<String, _> iterates in byte order of the keys, which
            // is the order the format prescribes.
            for part in [key, value] {
                canonical.extend_from_slice(&len_u32(part.len()).to_be_bytes());
                canonical.extend_from_slice(part.as_bytes());
            }
        }
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
    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.entries
    }

    /// Hex SHA-256 of the canonical encoding: what the audit log records
    /// instead of the context itself.
    pub fn digest_hex(&self) -> String {
        hex::encode(crate::crypto::sha256(&self.canonical))
    }
}

fn len_u32(n: usize) -> u32 {
    // Invariant: callers passed the limits above, so every length fits.
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        EncryptionContext::new(
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
        assert_eq!(
            EncryptionContext::empty().canonical_bytes(),
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
        let many: BTreeMap<_, _> = (0..=MAX_CONTEXT_ENTRIES)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(EncryptionContext::new(many).is_err());
        let big = BTreeMap::from([("k".to_string(), "v".repeat(MAX_CONTEXT_BYTES))]);
        assert!(EncryptionContext::new(big).is_err());
        let empty_key = BTreeMap::from([(String::new(), "v".to_string())]);
        assert!(EncryptionContext::new(empty_key).is_err());
    }
}
