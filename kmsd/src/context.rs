//! Encryption contexts as the daemon receives them.
//!
//! The validation, the limits and the canonical encoding bound to every
//! blob as authenticated data are kms-core's ([`kms_core::context`], also
//! in docs/format.md); this wrapper only turns a refused context into the
//! daemon's error.

use kms_core::context::CanonicalContext;

use crate::error::KmsError;

/// A validated encryption context with its canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionContext(CanonicalContext);

impl EncryptionContext {
    /// Validates a context received from a caller.
    pub fn new(entries: kms_core::EncryptionContext) -> Result<Self, KmsError> {
        CanonicalContext::new(entries)
            .map(Self)
            .map_err(|e| KmsError::InvalidContext(e.to_string()))
    }

    /// The empty context.
    pub fn empty() -> Self {
        Self(CanonicalContext::empty())
    }

    /// The canonical encoding bound as authenticated data.
    pub fn canonical_bytes(&self) -> &[u8] {
        self.0.canonical_bytes()
    }

    /// The pairs.
    pub fn entries(&self) -> &kms_core::EncryptionContext {
        self.0.entries()
    }

    /// Hex SHA-256 of the canonical encoding: what the audit log records
    /// instead of the context itself.
    pub fn digest_hex(&self) -> String {
        self.0.digest_hex()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_refused_context_is_an_invalid_context_error() {
        let empty_key = BTreeMap::from([(String::new(), "v".to_string())]);
        assert!(matches!(
            EncryptionContext::new(empty_key),
            Err(KmsError::InvalidContext(message)) if message == "a key is empty"
        ));
        assert_eq!(
            EncryptionContext::new(BTreeMap::new()).unwrap(),
            EncryptionContext::empty()
        );
    }
}
