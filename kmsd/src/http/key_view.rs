//! A key's metadata as JSON: the one view the admin REST API answers and
//! the operator CLI prints (which reads it from a `kms.v1.KeyMetadata`).
//!
//! The field names are the RustFS admin API's `key_metadata` shape
//! (`key_state`, `creation_date`, …; docs/admin-api.md) plus kmsd's
//! versions and backend: RustFS reads them, so they do not change. The
//! gRPC message (`grpc/convert.rs`) is a wire format, not this view.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{backend::KeyMetadata, clock::rfc3339};

/// The one kind of key kmsd makes (RustFS's `key_usage`).
pub(crate) const KEY_USAGE: &str = "EncryptDecrypt";

/// One version of a key.
#[derive(Debug, Serialize)]
pub(crate) struct VersionView {
    pub(crate) version: u32,
    /// RFC 3339 UTC; `None` (JSON `null`) only when a gRPC answer lacks it.
    pub(crate) creation_date: Option<String>,
}

/// A key's metadata, in the RustFS `key_metadata` shape plus kmsd's
/// versions and backend.
#[derive(Debug, Serialize)]
pub(crate) struct KeyView {
    pub(crate) key_id: String,
    pub(crate) key_state: &'static str,
    pub(crate) key_usage: &'static str,
    pub(crate) description: String,
    /// RFC 3339 UTC; `None` (JSON `null`) only when a gRPC answer lacks it.
    pub(crate) creation_date: Option<String>,
    pub(crate) deletion_date: Option<String>,
    pub(crate) current_version: u32,
    pub(crate) versions: Vec<VersionView>,
    pub(crate) backend: String,
    pub(crate) tags: BTreeMap<String, String>,
    /// Automatic rotation: on or off, its period, the next rotation (RFC
    /// 3339 UTC); the last two are `null` while it is off.
    pub(crate) rotation_enabled: bool,
    pub(crate) rotation_period_seconds: Option<u64>,
    pub(crate) next_rotation_date: Option<String>,
    /// `KMSD` or `EXTERNAL` (imported), as AWS KMS's `Origin`.
    pub(crate) origin: String,
}

impl From<KeyMetadata> for KeyView {
    fn from(m: KeyMetadata) -> Self {
        Self {
            key_id: m.key_id.to_string(),
            key_state: m.state.as_str(),
            key_usage: KEY_USAGE,
            description: m.description,
            creation_date: Some(rfc3339(m.created_at)),
            deletion_date: m.deletion_date.map(rfc3339),
            current_version: m.current_version,
            versions: m
                .versions
                .into_iter()
                .map(|v| VersionView {
                    version: v.version,
                    creation_date: Some(rfc3339(v.created_at)),
                })
                .collect(),
            backend: m.backend.as_str().to_owned(),
            tags: m.tags,
            rotation_enabled: m.rotation.is_some(),
            rotation_period_seconds: m.rotation.map(|r| r.period_secs),
            next_rotation_date: m.rotation.map(|r| rfc3339(r.next_rotation)),
            origin: m.origin.as_str().to_owned(),
        }
    }
}
