//! A key's metadata as JSON: the one view the admin REST API answers and
//! the operator CLI prints (which reads it from a `kms.v1.KeyMetadata`).
//!
//! The field names are the RustFS admin API's `key_metadata` shape
//! (`key_state`, `creation_date`, …; docs/admin-api.md) plus kmsd's
//! versions and backend: RustFS reads them, so they do not change. The
//! gRPC message (`grpc/convert.rs`) is a wire format, not this view.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{backend::KeyMetadata, clock::rfc3339, usage::DeletionImpact};

/// The one kind of key kmsd makes (RustFS's `key_usage`).
pub(crate) const KEY_USAGE: &str = "EncryptDecrypt";

/// One version of a key.
#[derive(Debug, Serialize)]
pub(crate) struct VersionView {
    pub(crate) version: u32,
    /// RFC 3339 UTC; `None` (JSON `null`) only when a gRPC answer lacks it.
    pub(crate) creation_date: Option<String>,
    /// Usage figures (issue 20): approximate, merged over the nodes.
    pub(crate) wraps: u64,
    pub(crate) decrypts: u64,
    /// RFC 3339 UTC; `null`: never seen.
    pub(crate) last_wrap_at: Option<String>,
    pub(crate) last_decrypt_at: Option<String>,
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
    /// The last wrap or decrypt under any version; `null`: never seen.
    pub(crate) last_used_at: Option<String>,
    /// Wraps of every version.
    pub(crate) total_wraps: u64,
}

impl From<KeyMetadata> for KeyView {
    fn from(m: KeyMetadata) -> Self {
        let usage = &m.usage;
        Self {
            last_used_at: usage.last_used_at().map(rfc3339),
            total_wraps: usage.total_wraps(),
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
                .map(|v| {
                    let u = usage.version(v.version);
                    VersionView {
                        version: v.version,
                        creation_date: Some(rfc3339(v.created_at)),
                        wraps: u.wraps,
                        decrypts: u.decrypts,
                        last_wrap_at: u.last_wrap_at.map(rfc3339),
                        last_decrypt_at: u.last_decrypt_at.map(rfc3339),
                    }
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

/// One version in a deletion impact.
#[derive(Debug, Serialize)]
pub(crate) struct VersionUsageView {
    pub(crate) version: u32,
    pub(crate) wraps: u64,
    pub(crate) decrypts: u64,
    pub(crate) last_wrap_at: Option<String>,
    pub(crate) last_decrypt_at: Option<String>,
}

/// What deleting a key would affect, as far as kmsd has seen (issue 20):
/// evidence, not proof, since kmsd cannot see the stored objects.
#[derive(Debug, Serialize)]
pub(crate) struct ImpactView {
    pub(crate) last_used_at: Option<String>,
    pub(crate) total_wraps: u64,
    pub(crate) total_decrypts: u64,
    pub(crate) versions: Vec<VersionUsageView>,
    pub(crate) versions_decrypted_within_window: Vec<u32>,
    pub(crate) window_seconds: u64,
    pub(crate) used_within_window: bool,
}

impl From<DeletionImpact> for ImpactView {
    fn from(i: DeletionImpact) -> Self {
        Self {
            last_used_at: i.usage.last_used_at().map(rfc3339),
            total_wraps: i.usage.total_wraps(),
            total_decrypts: i.usage.total_decrypts(),
            versions: i
                .usage
                .versions
                .iter()
                .map(|v| VersionUsageView {
                    version: v.version,
                    wraps: v.wraps,
                    decrypts: v.decrypts,
                    last_wrap_at: v.last_wrap_at.map(rfc3339),
                    last_decrypt_at: v.last_decrypt_at.map(rfc3339),
                })
                .collect(),
            versions_decrypted_within_window: i.versions_decrypted_within_window,
            window_seconds: i.window.as_secs(),
            used_within_window: i.used_within_window,
        }
    }
}
