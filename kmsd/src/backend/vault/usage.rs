//! Usage figures in KV v2: one secret per kmsd node at
//! `<kv_mount>/data/<key_path_prefix>/_usage/<node name>`, each written
//! only by its node (check-and-set against the version it read, so two
//! nodes misconfigured with one name overwrite each other rather than
//! fail), and read all together: a node's figures plus every other's are
//! the cluster's.

use super::{
    client::VaultClient,
    error::VaultError,
    kv::{CAS_ATTEMPTS, Folder, Written},
};
use crate::usage::{Figures, StoredUsage, USAGE_FORMAT, UsageRecord, merge_figures};

/// The folder under the key prefix.
pub(super) const USAGE_FOLDER: &str = "_usage";

/// The nodes' usage records under one prefix.
#[derive(Debug, Clone)]
pub(super) struct VaultUsage {
    folder: Folder,
}

impl VaultUsage {
    /// Records at `<mount>/data/<key_prefix>/_usage/`.
    pub(super) fn new(client: VaultClient, mount: String, key_prefix: &str) -> Self {
        Self {
            folder: Folder::new(client, mount, format!("{key_prefix}/{USAGE_FOLDER}")),
        }
    }

    async fn read(&self, node: &str) -> Result<Option<(UsageRecord, u64)>, VaultError> {
        let Some((data, version)) = self.folder.read(node).await? else {
            return Ok(None);
        };
        match serde_json::from_value::<UsageRecord>(data) {
            Ok(record) if record.format == USAGE_FORMAT => Ok(Some((record, version))),
            // Figures are advisory: a record this kmsd cannot read counts
            // as none (and its own is overwritten at the next flush).
            Ok(_) | Err(_) => {
                tracing::warn!(
                    secret = %self.folder.op(node),
                    "ignoring a usage record this kmsd cannot read"
                );
                Ok(None)
            }
        }
    }

    /// Every node's figures: `node`'s own and the others' merged.
    pub(super) async fn load(&self, node: &str) -> Result<StoredUsage, VaultError> {
        let mut stored = StoredUsage::default();
        for name in self.folder.list().await? {
            if name.ends_with('/') {
                continue;
            }
            let Some((record, _)) = self.read(&name).await? else {
                continue;
            };
            if name == node {
                stored.own = record.figures();
            } else {
                merge_figures(&mut stored.others, &record.figures());
            }
        }
        Ok(stored)
    }

    /// Replaces `node`'s record with `record`.
    pub(super) async fn store(
        &self,
        node: &str,
        own: &Figures,
        now: time::OffsetDateTime,
    ) -> Result<(), VaultError> {
        let record = UsageRecord::new(node, own, now);
        for _ in 0..CAS_ATTEMPTS {
            let version = self.folder.read(node).await?.map_or(0, |(_, v)| v);
            if self.folder.write(node, &record, version).await? == Written::Done {
                return Ok(());
            }
        }
        Err(VaultError::Decode {
            op: self.folder.op(node),
            reason:
                "lost every check-and-set race: is [cluster] node_name shared by two kmsd nodes?"
                    .into(),
        })
    }
}
