//! A key in memory and its file: what is written for a [`LocalKey`], and
//! how a file read back (and unsealed) becomes one.

use super::*;

pub(super) fn to_file(key: &LocalKey) -> KeyFile {
    KeyFile {
        format: KEY_FILE_FORMAT,
        key_id: key.meta.key_id.to_string(),
        state: key.meta.state,
        description: key.meta.description.clone(),
        tags: key.meta.tags.clone(),
        created_at: key.meta.created_at,
        deletion_date: key.meta.deletion_date,
        current_version: key.meta.current_version,
        origin: key.meta.origin,
        versions: key
            .meta
            .versions
            .iter()
            .zip(&key.versions)
            .map(|(info, version)| VersionFile {
                version: info.version,
                created_at: info.created_at,
                material: match &version.stored {
                    Stored::Plain(material) => Some(PlainMaterial(material.clone())),
                    Stored::Sealed(_) => None,
                },
                sealed_material: match &version.stored {
                    Stored::Plain(_) => None,
                    Stored::Sealed(sealed) => Some(sealed.to_vec()),
                },
            })
            .collect(),
        rotation: key.meta.rotation,
    }
}

/// Reads and checks one key file. The error is a reason for the log.
pub(super) fn load_key(
    path: &Path,
    key_id: &KeyId,
    sealer: Option<&Sealer>,
) -> Result<LocalKey, String> {
    let bytes = Zeroizing::new(fs::read(path).map_err(|e| format!("cannot read: {e}"))?);
    let file: KeyFile =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a valid key file: {e}"))?;
    if file.format != KEY_FILE_FORMAT {
        return Err(format!("unknown key-file format {}", file.format));
    }
    if file.key_id != key_id.as_str() {
        return Err(format!(
            "the file names key {:?}, not {key_id}",
            file.key_id
        ));
    }
    check_shape(&file)?;
    let mut versions = Vec::with_capacity(file.versions.len());
    let mut infos = Vec::with_capacity(file.versions.len());
    for v in file.versions {
        let stored = match (sealer, v.material, v.sealed_material) {
            (None, Some(PlainMaterial(material)), None) => Stored::Plain(material),
            (Some(sealer), None, Some(sealed)) => {
                // Unsealed once here only to check it, so a damaged version
                // makes the key unreadable when it is read, as before keys
                // were read lazily; the plaintext is dropped (wiped) at
                // once and unsealed again when the version is first used.
                sealer
                    .open(key_id, v.version, &sealed)
                    .map_err(|_| format!("version {} does not unseal", v.version))?;
                Stored::Sealed(sealed.into_boxed_slice())
            }
            (None, _, Some(_)) => {
                return Err("holds sealed material but the directory is not sealed".into());
            }
            (Some(_), Some(_), _) => {
                return Err("holds plaintext material in a sealed directory".into());
            }
            (_, None, None) => return Err(format!("version {} has no material", v.version)),
        };
        versions.push(Arc::new(LocalVersion::new(stored)));
        infos.push(VersionInfo {
            version: v.version,
            created_at: v.created_at,
        });
    }
    Ok(LocalKey {
        meta: KeyMetadata {
            key_id: key_id.clone(),
            state: file.state,
            description: file.description,
            created_at: file.created_at,
            deletion_date: file.deletion_date,
            current_version: file.current_version,
            versions: infos,
            backend: BackendKind::Local,
            tags: file.tags,
            rotation: file.rotation,
            origin: file.origin,
            usage: Default::default(),
        },
        versions,
    })
}

/// The rules every key record keeps, in a file or a backup bundle:
/// versions run from 1 to the current one, and a deletion date is set
/// exactly while the key is pending deletion.
pub(super) fn check_shape(file: &KeyFile) -> Result<(), String> {
    // Compared in place: a record claiming version 4 billion must not
    // make kmsd allocate a list that long.
    let runs = file
        .versions
        .iter()
        .zip(1u32..)
        .all(|(v, expected)| v.version == expected);
    let last = file.versions.last().map(|v| v.version);
    if !runs || last.is_none() || last != Some(file.current_version) {
        let found: Vec<u32> = file.versions.iter().map(|v| v.version).collect();
        return Err(format!(
            "versions {found:?} do not run from 1 to the current version {}",
            file.current_version
        ));
    }
    if (file.state == KeyState::PendingDeletion) != file.deletion_date.is_some() {
        return Err("a deletion date must be set exactly when the key is pending deletion".into());
    }
    Ok(())
}
