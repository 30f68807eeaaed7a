//! Who may do what: per-identity access policy.

use crate::{
    key_id::KeyId,
    request::{Identity, Operation},
};

/// An access policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    _private: (),
}

impl Policy {
    /// Allows every caller everything (no policy file configured).
    pub fn allow_all() -> Self {
        Self { _private: () }
    }

    /// Whether `caller` may perform `op` on `key_id`.
    pub fn allows(&self, _caller: &Identity, _op: Operation, _key_id: Option<&KeyId>) -> bool {
        true
    }
}
