//! Backup and restore of a key directory through a bundle (`bundle.rs`,
//! docs/operations.md "Backup and restore"). Every key is in the bundle
//! but kmsd's reserved ones (the self-probe's), which kmsd makes again.
//!
//! A backup is one consistent point in time: it is taken under the writer
//! lock, so no key changes while its records are copied. A restore writes
//! each key as every other change does (atomically and durably, under the
//! writer lock and the directory's flock), re-sealed under this
//! directory's own sealing, if any.
//!
//! Conflicts: a key of the bundle that this directory already holds with
//! the same versions and material is *identical* and left alone, so a
//! restore can be run again after a failure. Any other key that exists
//! here (changed, rotated further, or unreadable) is a *conflict*: with
//! [`OnConflict::Fail`] (the default) the restore writes nothing and names
//! them; with [`OnConflict::Skip`] it keeps the keys held here and restores
//! the rest. A dry run answers the same report and writes nothing.
//!
//! Aliases travel with the keys (storage servers configured with
//! `alias/<name>` need them for new writes). An alias held here that
//! points at the same key is identical; one that points elsewhere is a
//! conflict, under the same policy as keys. A restored alias keeps its
//! dates.

use std::collections::BTreeSet;

use super::{
    aliases::{self, AliasMap, AliasRecord},
    bundle::{self, BundleError, Contents},
    convert::check_shape,
    *,
};
use crate::alias::AliasName;

/// What a restore does with a key that exists and differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnConflict {
    /// Restore nothing and say which keys conflict.
    #[default]
    Fail,
    /// Keep the keys held here; restore the others.
    Skip,
}

impl OnConflict {
    /// Parses `fail` or `skip`.
    pub fn parse(s: &str) -> Result<Self, KmsError> {
        match s {
            "fail" => Ok(Self::Fail),
            "skip" => Ok(Self::Skip),
            other => Err(KmsError::InvalidArgument(format!(
                "on_conflict must be \"fail\" or \"skip\", not {other:?}"
            ))),
        }
    }
}

/// What a restore did (or, in a dry run, would do). Its JSON form is the
/// answer of `POST /kms/restore` and `kmsd key restore`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RestoreReport {
    /// Nothing was written.
    pub dry_run: bool,
    /// How many keys the bundle holds.
    pub keys_in_bundle: usize,
    /// Keys written from the bundle.
    #[serde(serialize_with = "as_strings")]
    pub restored: Vec<KeyId>,
    /// Keys already held here with the same versions and material.
    #[serde(serialize_with = "as_strings")]
    pub identical: Vec<KeyId>,
    /// Keys held here that differ, left as they are.
    #[serde(serialize_with = "as_strings")]
    pub skipped: Vec<KeyId>,
    /// Aliases written from the bundle.
    #[serde(serialize_with = "as_strings")]
    pub aliases_restored: Vec<AliasName>,
    /// Aliases already held here, pointing at the same key.
    #[serde(serialize_with = "as_strings")]
    pub aliases_identical: Vec<AliasName>,
    /// Aliases held here that point at another key, left as they are.
    #[serde(serialize_with = "as_strings")]
    pub aliases_skipped: Vec<AliasName>,
}

impl LocalBackend {
    /// Every key and version, sealed into a bundle under `secret`.
    pub async fn backup(&self, secret: SealingSecret) -> Result<Vec<u8>, KmsError> {
        let contents = {
            let _writing = self.writer.lock().await;
            let mut records = Vec::with_capacity(self.keys.len());
            for cell in self.keys.cells_after(None) {
                let key_id = cell.key().clone();
                if key_id.is_reserved() {
                    // kmsd's own (the self-probe's): made again on start.
                    continue;
                }
                // Keys not in use are read for the backup but not kept:
                // a backup must not pin every key's material in memory.
                let key = match &*cell.value().load_full() {
                    Entry::Ready(key) => Arc::clone(key),
                    Entry::Unloaded | Entry::Listed(_) => match self.read_key(&key_id) {
                        Entry::Ready(key) => key,
                        _ => return Err(KmsError::KeyUnreadable(key_id)),
                    },
                    // A backup that silently lacked a key would be found
                    // out only when it is needed.
                    Entry::Unreadable => return Err(KmsError::KeyUnreadable(key_id)),
                };
                records.push(self.plain_record(&key)?);
            }
            let aliases: Vec<AliasRecord> = self.aliases.read(|map| {
                aliases::to_records(map.values().filter(|a| !a.target.is_reserved()))
            })?;
            Contents {
                keys: records,
                aliases,
            }
        };
        let now = self.clock.now();
        let keys = contents.keys.len();
        let aliases = contents.aliases.len();
        let bundle = tokio::task::spawn_blocking(move || bundle::seal(contents, &secret, now))
            .await
            .map_err(|e| KmsError::Internal(format!("backup task failed: {e}")))?
            .map_err(bundle_error)?;
        tracing::info!(dir = %self.dir.display(), keys, aliases, "key directory backed up");
        Ok(bundle)
    }

    /// Verifies `bundle` under `secret` and restores its keys.
    pub async fn restore(
        &self,
        bundle: Vec<u8>,
        secret: SealingSecret,
        dry_run: bool,
        on_conflict: OnConflict,
    ) -> Result<RestoreReport, KmsError> {
        let contents = tokio::task::spawn_blocking(move || bundle::open(&bundle, &secret))
            .await
            .map_err(|e| KmsError::Internal(format!("restore task failed: {e}")))?
            .map_err(bundle_error)?;
        let _writing = self.writer.lock().await;
        let mut report = RestoreReport {
            dry_run,
            keys_in_bundle: contents.keys.len(),
            ..RestoreReport::default()
        };
        let mut conflicts = Vec::new();
        let mut to_write = Vec::new();
        let mut in_bundle = BTreeSet::new();
        for record in contents.keys {
            let key = self.key_of_record(record)?;
            let key_id = key.meta.key_id.clone();
            in_bundle.insert(key_id.clone());
            match self.entry(&key_id).as_deref() {
                None => to_write.push(key),
                Some(Entry::Ready(held)) if self.same_material(held, &key)? => {
                    report.identical.push(key_id);
                }
                Some(_) => conflicts.push(key_id),
            }
        }
        let (new_aliases, alias_conflicts) =
            self.sort_aliases(contents.aliases, &in_bundle, &mut report)?;
        if (!conflicts.is_empty() || !alias_conflicts.is_empty()) && on_conflict == OnConflict::Fail
        {
            return Err(conflict_error(&conflicts, &alias_conflicts));
        }
        report.skipped = conflicts;
        report.aliases_skipped = alias_conflicts;
        for key in to_write {
            let key_id = key.meta.key_id.clone();
            if !dry_run {
                self.commit(key).await?;
            }
            report.restored.push(key_id);
        }
        if !new_aliases.is_empty() {
            report.aliases_restored = new_aliases.keys().cloned().collect();
            if !dry_run {
                let mut map = self.aliases.read(AliasMap::clone)?;
                map.extend(new_aliases);
                self.commit_aliases(map).await?;
            }
        }
        tracing::info!(
            dir = %self.dir.display(),
            dry_run,
            restored = report.restored.len(),
            identical = report.identical.len(),
            skipped = report.skipped.len(),
            aliases_restored = report.aliases_restored.len(),
            aliases_skipped = report.aliases_skipped.len(),
            "restore from a backup bundle"
        );
        Ok(report)
    }

    /// The bundle's aliases that are new here, and the names of those that
    /// point elsewhere here; identical ones go into `report`. Every alias
    /// of a bundle must point at one of its keys.
    fn sort_aliases(
        &self,
        records: Vec<AliasRecord>,
        in_bundle: &BTreeSet<KeyId>,
        report: &mut RestoreReport,
    ) -> Result<(AliasMap, Vec<AliasName>), KmsError> {
        let bad = |reason: String| {
            KmsError::InvalidArgument(format!(
                "the bundle holds an invalid alias record: {reason}"
            ))
        };
        if records.is_empty() {
            return Ok((AliasMap::new(), Vec::new()));
        }
        let incoming = aliases::from_records(records).map_err(bad)?;
        let held = self.aliases.read(AliasMap::clone)?;
        let mut new = AliasMap::new();
        let mut conflicts = Vec::new();
        for (name, entry) in incoming {
            if !in_bundle.contains(&entry.target) {
                return Err(bad(format!(
                    "{name} points at {}, which is not in the bundle",
                    entry.target
                )));
            }
            match held.get(&name) {
                None => {
                    new.insert(name, entry);
                }
                Some(here) if here.target == entry.target => report.aliases_identical.push(name),
                Some(_) => conflicts.push(name),
            }
        }
        Ok((new, conflicts))
    }

    /// `key`'s record with every version's material in the clear.
    fn plain_record(&self, key: &LocalKey) -> Result<KeyFile, KmsError> {
        let mut record = to_file(key);
        for (file, version) in record.versions.iter_mut().zip(&key.versions) {
            let material = self.material(&key.meta.key_id, file.version, &version.stored)?;
            file.material = Some(PlainMaterial(material));
            file.sealed_material = None;
        }
        Ok(record)
    }

    /// A key of a bundle, stored as this directory stores keys.
    fn key_of_record(&self, record: KeyFile) -> Result<LocalKey, KmsError> {
        let bad = |reason: String| {
            KmsError::InvalidArgument(format!("the bundle holds an invalid key record: {reason}"))
        };
        let key_id = KeyId::parse(&record.key_id)
            .map_err(|_| bad(format!("{:?} is not a key id", record.key_id)))?;
        if key_id.is_reserved() {
            return Err(bad(format!("{key_id} is one of kmsd's reserved ids")));
        }
        check_shape(&record).map_err(|reason| bad(format!("{key_id}: {reason}")))?;
        let mut versions = Vec::with_capacity(record.versions.len());
        let mut infos = Vec::with_capacity(record.versions.len());
        for v in record.versions {
            let Some(PlainMaterial(material)) = v.material else {
                return Err(bad(format!(
                    "{key_id}: version {} has no material",
                    v.version
                )));
            };
            let stored = match &self.sealer {
                Some(sealer) => Stored::Sealed(
                    sealer
                        .seal(&key_id, v.version, &material)
                        .map_err(internal)?
                        .into_boxed_slice(),
                ),
                None => Stored::Plain(material),
            };
            versions.push(Arc::new(LocalVersion::new(stored)));
            infos.push(VersionInfo {
                version: v.version,
                created_at: v.created_at,
            });
        }
        Ok(LocalKey {
            meta: KeyMetadata {
                key_id,
                state: record.state,
                description: record.description,
                created_at: record.created_at,
                deletion_date: record.deletion_date,
                current_version: record.current_version,
                versions: infos,
                backend: BackendKind::Local,
                tags: record.tags,
                rotation: record.rotation,
                origin: record.origin,
                usage: Default::default(),
            },
            versions,
        })
    }

    /// Whether `held` and `restored` have the same versions with the same
    /// material (metadata may differ: the material is what opens blobs).
    fn same_material(&self, held: &LocalKey, restored: &LocalKey) -> Result<bool, KmsError> {
        if held.versions.len() != restored.versions.len() {
            return Ok(false);
        }
        let key_id = &held.meta.key_id;
        for ((a, b), info) in held
            .versions
            .iter()
            .zip(&restored.versions)
            .zip(&held.meta.versions)
        {
            let a = self.material(key_id, info.version, &a.stored)?;
            let b = self.material(key_id, info.version, &b.stored)?;
            if !crypto::constant_time_eq(a.as_slice(), b.as_slice()) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Why a restore with `OnConflict::Fail` wrote nothing: the first few
/// conflicting keys and aliases by name.
fn conflict_error(keys: &[KeyId], aliases: &[AliasName]) -> KmsError {
    fn some<T: std::fmt::Display>(items: &[T], what: &str, differ: &str) -> Option<String> {
        if items.is_empty() {
            return None;
        }
        let shown: Vec<String> = items.iter().take(10).map(ToString::to_string).collect();
        let more = if items.len() > shown.len() {
            ", …"
        } else {
            ""
        };
        Some(format!(
            "{} {what} of the bundle {differ} ({}{more})",
            items.len(),
            shown.join(", ")
        ))
    }
    let parts: Vec<String> = [
        some(keys, "key(s)", "exist here with other material or versions"),
        some(aliases, "alias(es)", "exist here pointing at another key"),
    ]
    .into_iter()
    .flatten()
    .collect();
    KmsError::InvalidArgument(format!(
        "{}; nothing was restored (on_conflict \"skip\" keeps them and restores the rest)",
        parts.join("; ")
    ))
}

/// Ids and names as their strings, in JSON.
fn as_strings<S: serde::Serializer, T: std::fmt::Display>(
    items: &[T],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(items.iter().map(ToString::to_string))
}

fn bundle_error(e: BundleError) -> KmsError {
    match e {
        BundleError::Crypto(e) => internal(e),
        other => KmsError::InvalidArgument(other.to_string()),
    }
}

#[cfg(test)]
#[path = "backup_tests.rs"]
mod tests;
