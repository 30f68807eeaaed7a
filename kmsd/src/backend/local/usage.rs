//! The local backend's usage figures: one JSON file, `usage.json` in the
//! key directory, replaced atomically and durably at every flush. One
//! kmsd holds a key directory at a time (its flock), so the file is this
//! node's alone and holds no other node's figures.

use std::{io, sync::Arc};

use super::{LocalBackend, file};
use crate::{
    backend::UsageStore,
    error::KmsError,
    usage::{Figures, StoredUsage, USAGE_FORMAT, UsageRecord},
};

/// The file's name in the key directory.
pub(super) const USAGE_FILE: &str = "usage.json";

impl UsageStore for LocalBackend {
    async fn load_usage(&self, _node: &str) -> Result<StoredUsage, KmsError> {
        let path = self.dir.join(USAGE_FILE);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(StoredUsage::default()),
            Err(e) => {
                return Err(KmsError::Internal(format!(
                    "reading {}: {e}",
                    path.display()
                )));
            }
        };
        // Figures are advisory: a damaged file is reported and counting
        // starts again rather than keeping kmsd from serving keys.
        match serde_json::from_slice::<UsageRecord>(&bytes) {
            Ok(record) if record.format == USAGE_FORMAT => Ok(StoredUsage {
                own: record.figures(),
                others: Figures::new(),
            }),
            Ok(record) => Err(KmsError::Internal(format!(
                "{} has format {}, this kmsd reads {USAGE_FORMAT}",
                path.display(),
                record.format
            ))),
            Err(e) => Err(KmsError::Internal(format!(
                "{} is not a usage file: {e}",
                path.display()
            ))),
        }
    }

    async fn store_usage(&self, node: &str, own: &Figures) -> Result<(), KmsError> {
        let record = UsageRecord::new(node, own, self.clock.now());
        let bytes = serde_json::to_vec_pretty(&record)
            .map_err(|e| KmsError::Internal(format!("encoding {USAGE_FILE}: {e}")))?;
        let dir = self.dir.clone();
        // Held until written: see `LocalBackend::lock`.
        let lock = Arc::clone(&self.lock);
        tokio::task::spawn_blocking(move || {
            let _held = lock;
            file::write_atomic(&dir, USAGE_FILE, &bytes)
        })
        .await
        .map_err(|e| KmsError::Internal(format!("usage writer task failed: {e}")))?
        .map_err(|e| {
            KmsError::Internal(format!(
                "writing {USAGE_FILE} in {}: {e}",
                self.dir.display()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        backend::local::LocalConfig, clock::ManualClock, key_id::KeyId, usage::VersionFigures,
    };

    #[tokio::test]
    async fn figures_survive_a_reopen_and_a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
        let open = || {
            LocalBackend::open(
                LocalConfig {
                    key_dir: keys.clone(),
                    sealing: None,
                },
                clock.clone(),
            )
            .unwrap()
        };
        let backend = open();
        assert!(backend.load_usage("n").await.unwrap().own.is_empty());
        let mut own = Figures::new();
        own.entry(KeyId::parse("k").unwrap()).or_default().insert(
            2,
            VersionFigures {
                wraps: 7,
                decrypts: 1,
                last_wrap_at: 100,
                last_decrypt_at: 0,
            },
        );
        backend.store_usage("n", &own).await.unwrap();
        drop(backend);
        let stored = open().load_usage("n").await.unwrap();
        assert_eq!(stored.own, own);
        assert!(stored.others.is_empty());
        std::fs::write(keys.join(USAGE_FILE), b"{not json").unwrap();
        assert!(open().load_usage("n").await.is_err());
    }
}
