//! The local backend's aliases: one JSON file, `aliases.json` in the key
//! directory, held in memory and rewritten whole (atomically and durably,
//! under the backend's writer lock) on every change. Aliases are not
//! secret, so the file is plain JSON even when key files are sealed.

use std::{collections::BTreeMap, fs, io, path::Path, sync::Arc};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{LocalBackend, file};
use crate::{
    alias::{AliasEntry, AliasName, AliasWrite},
    error::KmsError,
    key_id::KeyId,
};

/// The file's name in the key directory (not a `.key` file, so key
/// loading passes it by).
pub(super) const ALIASES_FILE: &str = "aliases.json";
/// The format this kmsd writes.
const ALIASES_FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct AliasesFile {
    format: u32,
    aliases: Vec<AliasRecord>,
}

/// One alias as stored: in this file and in backup bundles.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct AliasRecord {
    alias_name: String,
    target_key_id: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
}

pub(super) type AliasMap = BTreeMap<AliasName, AliasEntry>;

/// The aliases as loaded, or why the file could not be read (then every
/// alias call fails, and no write replaces what may be a repairable file).
pub(super) struct LocalAliases {
    map: ArcSwap<Result<AliasMap, String>>,
}

impl LocalAliases {
    /// Reads the file, if there is one. Blocks; called while opening.
    pub(super) fn load(dir: &Path) -> Self {
        let path = dir.join(ALIASES_FILE);
        let loaded = match fs::read(&path) {
            Ok(bytes) => parse(&bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AliasMap::new()),
            Err(e) => Err(format!("reading it failed: {}", e.kind())),
        };
        if let Err(reason) = &loaded {
            tracing::error!(path = %path.display(), %reason, "the aliases file is unreadable; alias calls fail until it is repaired");
        }
        Self {
            map: ArcSwap::from_pointee(loaded),
        }
    }

    /// `f` of the aliases, unless the file was unreadable.
    pub(super) fn read<T>(&self, f: impl FnOnce(&AliasMap) -> T) -> Result<T, KmsError> {
        match self.map.load().as_ref() {
            Ok(map) => Ok(f(map)),
            Err(_) => Err(KmsError::Internal(format!(
                "{ALIASES_FILE} in the key directory is unreadable (see the kmsd log)"
            ))),
        }
    }
}

fn parse(bytes: &[u8]) -> Result<AliasMap, String> {
    let file: AliasesFile =
        serde_json::from_slice(bytes).map_err(|e| format!("not an aliases file: {e}"))?;
    if file.format != ALIASES_FORMAT {
        return Err(format!("unknown format {}", file.format));
    }
    from_records(file.aliases)
}

/// The aliases of stored records, or the first invalid one.
pub(super) fn from_records(records: Vec<AliasRecord>) -> Result<AliasMap, String> {
    records
        .into_iter()
        .map(|r| {
            let name = AliasName::parse(&r.alias_name).map_err(|e| e.to_string())?;
            let target = KeyId::parse(&r.target_key_id).map_err(|e| e.to_string())?;
            let entry = AliasEntry {
                name: name.clone(),
                target,
                created_at: r.created_at,
                updated_at: r.updated_at,
            };
            Ok((name, entry))
        })
        .collect()
}

/// `entries` as stored records.
pub(super) fn to_records<'a>(
    entries: impl IntoIterator<Item = &'a AliasEntry>,
) -> Vec<AliasRecord> {
    entries
        .into_iter()
        .map(|e| AliasRecord {
            alias_name: e.name.name().to_owned(),
            target_key_id: e.target.to_string(),
            created_at: e.created_at,
            updated_at: e.updated_at,
        })
        .collect()
}

fn encode(map: &AliasMap) -> Result<Vec<u8>, KmsError> {
    let file = AliasesFile {
        format: ALIASES_FORMAT,
        aliases: to_records(map.values()),
    };
    serde_json::to_vec_pretty(&file)
        .map_err(|e| KmsError::Internal(format!("encoding the aliases file: {e}")))
}

impl LocalBackend {
    /// Writes `map` to the file, then makes it visible. The caller holds
    /// the writer lock.
    pub(super) async fn commit_aliases(&self, map: AliasMap) -> Result<(), KmsError> {
        let bytes = encode(&map)?;
        let dir = self.dir.clone();
        // Held until written: see `LocalBackend::lock`.
        let lock = Arc::clone(&self.lock);
        tokio::task::spawn_blocking(move || {
            let _held = lock;
            file::write_atomic(&dir, ALIASES_FILE, &bytes)
        })
        .await
        .map_err(|e| KmsError::Internal(format!("alias writer task failed: {e}")))?
        .map_err(|e| {
            KmsError::Internal(format!(
                "writing {ALIASES_FILE} in {}: {e}",
                self.dir.display()
            ))
        })?;
        self.aliases.map.store(Arc::new(Ok(map)));
        Ok(())
    }

    pub(super) async fn put_alias_locally(
        &self,
        name: &AliasName,
        target: &KeyId,
        write: AliasWrite,
    ) -> Result<AliasEntry, KmsError> {
        let _writing = self.writer.lock().await;
        let mut map = self.aliases.read(AliasMap::clone)?;
        let now = self.clock.now();
        let entry = match (write, map.get(name)) {
            (AliasWrite::Create, Some(_)) => {
                return Err(KmsError::AliasAlreadyExists(name.clone()));
            }
            (AliasWrite::Update, None) => return Err(KmsError::AliasNotFound(name.clone())),
            (AliasWrite::Update, Some(old)) if old.target == *target => return Ok(old.clone()),
            (AliasWrite::Update, Some(old)) => AliasEntry {
                target: target.clone(),
                updated_at: now,
                ..old.clone()
            },
            (AliasWrite::Create, None) => AliasEntry {
                name: name.clone(),
                target: target.clone(),
                created_at: now,
                updated_at: now,
            },
        };
        map.insert(name.clone(), entry.clone());
        self.commit_aliases(map).await?;
        Ok(entry)
    }

    pub(super) async fn delete_alias_locally(&self, name: &AliasName) -> Result<(), KmsError> {
        let _writing = self.writer.lock().await;
        let mut map = self.aliases.read(AliasMap::clone)?;
        if map.remove(name).is_none() {
            return Err(KmsError::AliasNotFound(name.clone()));
        }
        self.commit_aliases(map).await
    }

    pub(super) fn list_aliases_locally(&self) -> Result<Vec<AliasEntry>, KmsError> {
        self.aliases.read(|map| map.values().cloned().collect())
    }

    pub(super) fn resolve_alias_locally(&self, name: &AliasName) -> Result<KeyId, KmsError> {
        self.aliases
            .read(|map| map.get(name).map(|e| e.target.clone()))?
            .ok_or_else(|| KmsError::AliasNotFound(name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_and_damage_is_reported() {
        let name = AliasName::parse("photos").unwrap();
        let entry = AliasEntry {
            name: name.clone(),
            target: KeyId::parse("k1").unwrap(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        };
        let map: AliasMap = [(name, entry)].into();
        assert_eq!(parse(&encode(&map).unwrap()).unwrap(), map);
        assert!(parse(b"{").is_err());
        assert!(parse(br#"{"format":2,"aliases":[]}"#).is_err());
        assert!(
            parse(br#"{"format":1,"aliases":[{"alias_name":"../x","target_key_id":"k","created_at":"1970-01-01T00:00:00Z","updated_at":"1970-01-01T00:00:00Z"}]}"#)
                .is_err()
        );
    }
}
