//! Usage figures (issue 20): how often each key version wrapped and
//! unwrapped, and when it was last used, counted on the data-plane hot path
//! by [`UsageTracker`] and persisted by the backends
//! ([`crate::backend::UsageStore`]).
//!
//! The figures are approximate by design: counts since the last flush are
//! lost if kmsd dies, and with several kmsd nodes on one Vault each node's
//! share is as fresh as its last flush. They are evidence of use, never
//! proof of non-use: kmsd cannot see the stored objects its blobs protect.

mod tracker;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use self::tracker::UsageTracker;
use crate::key_id::KeyId;

/// The persisted format this kmsd writes.
pub const USAGE_FORMAT: u32 = 1;

/// One version's figures as persisted: counts and Unix seconds (0 or
/// absent: never).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionFigures {
    /// Wraps: GenerateDataKey, Encrypt, ReEncrypt's sealing.
    #[serde(default)]
    pub wraps: u64,
    /// Decrypts: Decrypt, ReEncrypt's opening.
    #[serde(default)]
    pub decrypts: u64,
    /// The last wrap, Unix seconds.
    #[serde(default)]
    pub last_wrap_at: i64,
    /// The last decrypt, Unix seconds.
    #[serde(default)]
    pub last_decrypt_at: i64,
}

impl VersionFigures {
    /// Adds `other`'s counts and keeps the later times.
    pub fn merge(&mut self, other: &VersionFigures) {
        self.wraps = self.wraps.saturating_add(other.wraps);
        self.decrypts = self.decrypts.saturating_add(other.decrypts);
        self.last_wrap_at = self.last_wrap_at.max(other.last_wrap_at);
        self.last_decrypt_at = self.last_decrypt_at.max(other.last_decrypt_at);
    }
}

/// Figures by key id and version.
pub type Figures = BTreeMap<KeyId, BTreeMap<u32, VersionFigures>>;

/// Adds `from` into `into` (see [`VersionFigures::merge`]).
pub fn merge_figures(into: &mut Figures, from: &Figures) {
    for (key_id, versions) in from {
        let mine = into.entry(key_id.clone()).or_default();
        for (version, figures) in versions {
            mine.entry(*version).or_default().merge(figures);
        }
    }
}

/// One node's persisted figures (`usage.json` in a local key directory,
/// `_usage/<node>` in Vault's KV). Unknown fields are ignored, so a newer
/// kmsd may add some.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsageRecord {
    /// [`USAGE_FORMAT`].
    pub format: u32,
    /// The node that counted them (`[cluster] node_name`).
    pub node: String,
    /// When the node last wrote them.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Its counts since the key store was first used by it, by key id
    /// and version.
    #[serde(default)]
    pub keys: BTreeMap<String, BTreeMap<u32, VersionFigures>>,
}

impl UsageRecord {
    /// `node`'s record of `own`, written at `now`.
    pub fn new(node: &str, own: &Figures, now: OffsetDateTime) -> Self {
        Self {
            format: USAGE_FORMAT,
            node: node.to_owned(),
            updated_at: now,
            keys: own
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                .collect(),
        }
    }

    /// The figures, without entries whose name is not a key id (which no
    /// kmsd writes).
    pub fn figures(&self) -> Figures {
        self.keys
            .iter()
            .filter_map(|(k, v)| Some((KeyId::parse(k).ok()?, v.clone())))
            .collect()
    }
}

/// What a store holds: this node's own figures, to continue counting
/// from, and every other node's, merged.
#[derive(Debug, Default)]
pub struct StoredUsage {
    /// This node's.
    pub own: Figures,
    /// Every other node's, merged.
    pub others: Figures,
}

/// One version's figures, merged over the nodes, as DescribeKey shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionUsage {
    /// The version.
    pub version: u32,
    /// Wraps under it.
    pub wraps: u64,
    /// Decrypts under it.
    pub decrypts: u64,
    /// The last wrap.
    pub last_wrap_at: Option<OffsetDateTime>,
    /// The last decrypt.
    pub last_decrypt_at: Option<OffsetDateTime>,
}

/// A key's figures, merged over the nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyUsage {
    /// Per version, oldest first; versions never used are absent.
    pub versions: Vec<VersionUsage>,
}

impl KeyUsage {
    /// The figures of `version`, zero if it was never used.
    pub fn version(&self, version: u32) -> VersionUsage {
        self.versions
            .iter()
            .find(|v| v.version == version)
            .copied()
            .unwrap_or(VersionUsage {
                version,
                wraps: 0,
                decrypts: 0,
                last_wrap_at: None,
                last_decrypt_at: None,
            })
    }

    /// Wraps of every version.
    pub fn total_wraps(&self) -> u64 {
        self.versions.iter().map(|v| v.wraps).sum()
    }

    /// Decrypts of every version.
    pub fn total_decrypts(&self) -> u64 {
        self.versions.iter().map(|v| v.decrypts).sum()
    }

    /// The last wrap or decrypt under any version.
    pub fn last_used_at(&self) -> Option<OffsetDateTime> {
        self.versions
            .iter()
            .flat_map(|v| [v.last_wrap_at, v.last_decrypt_at])
            .flatten()
            .max()
    }
}

/// What deleting a key would affect, as far as kmsd has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionImpact {
    /// The key's figures.
    pub usage: KeyUsage,
    /// The guard window.
    pub window: std::time::Duration,
    /// Versions seen in a Decrypt within the window.
    pub versions_decrypted_within_window: Vec<u32>,
    /// Whether the key was used at all within the window.
    pub used_within_window: bool,
}

/// `[usage]` and the usage part of `[keys]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSettings {
    /// Wraps per version after which the key is rotated.
    pub wrap_budget: u64,
    /// ScheduleKeyDeletion refuses keys used within this window (zero:
    /// never refuses).
    pub deletion_guard_window: std::time::Duration,
    /// How often figures are persisted.
    pub flush_interval: std::time::Duration,
    /// The name this node persists its figures under.
    pub node_name: String,
}

/// The default wrap budget: 2^30, a quarter of the 2^32 random 96-bit
/// nonces after which AES-GCM's collision bound is exhausted (NIST SP
/// 800-38D, 8.3), leaving room for counts lost in crashes and for several
/// nodes counting between flushes.
pub const DEFAULT_WRAP_BUDGET: u64 = 1 << 30;

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            wrap_budget: DEFAULT_WRAP_BUDGET,
            deletion_guard_window: std::time::Duration::from_secs(7 * 24 * 3600),
            flush_interval: std::time::Duration::from_secs(60),
            node_name: "local".into(),
        }
    }
}

/// Unix seconds as a time; 0 (never) as `None`.
pub fn from_unix(seconds: i64) -> Option<OffsetDateTime> {
    (seconds > 0)
        .then(|| OffsetDateTime::from_unix_timestamp(seconds).ok())
        .flatten()
}
