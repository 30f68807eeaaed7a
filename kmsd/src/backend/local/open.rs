//! Opening a key directory: its lock, its sealing, and the list of its
//! key files (each is read on first use, see `lazy.rs`).

use super::*;

/// At most this many threads check key files while opening.
const MAX_CHECK_THREADS: usize = 8;
/// A directory with fewer files than this is checked by one thread: a
/// thread costs more than a few `stat`s.
const MIN_FILES_PER_THREAD: usize = 512;

impl LocalBackend {
    /// Opens (creating if needed) the key directory and lists its keys.
    /// Blocks on file I/O; call it from a blocking context.
    pub fn open(config: LocalConfig, clock: Arc<dyn Clock>) -> Result<Self, LocalError> {
        let dir = config.key_dir;
        let io_at = |path: &Path| {
            let path = path.to_owned();
            move |source| LocalError::Io { path, source }
        };
        file::ensure_private_dir(&dir).map_err(io_at(&dir))?;
        if file::loose_mode_bits(&dir).map_err(io_at(&dir))? != 0 {
            return Err(LocalError::LoosePermissions { path: dir });
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = fs::OpenOptions::new()
            .mode(0o600)
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_at(&lock_path))?;
        // A backend just replaced may still be finishing writes it started
        // (they hold its lock); they take milliseconds. Another process
        // holds it for good.
        let lock_deadline = std::time::Instant::now() + LOCK_WAIT;
        while lock.try_lock().is_err() {
            if std::time::Instant::now() >= lock_deadline {
                return Err(LocalError::Locked(dir));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }

        let mut key_files = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let entry = entry.map_err(io_at(&dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if file::is_temp_file(name) {
                // Left by a crash before its rename: never a committed key.
                tracing::info!(path = %entry.path().display(), "removing an interrupted write");
                match fs::remove_file(entry.path()) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io_at(&entry.path())(e));
                    }
                    _ => {}
                }
                continue;
            }
            let Some(stem) = name.strip_suffix(KEY_FILE_SUFFIX) else {
                continue;
            };
            match KeyId::parse(stem) {
                Ok(id) => key_files.push(id),
                Err(_) => {
                    tracing::warn!(path = %entry.path().display(), "ignoring a file whose name is not a valid key id");
                }
            }
        }

        let sealer = match (&config.sealing, sealing::is_sealed(&dir)) {
            (Some(secret), _) => Some(Sealer::open_or_init(&dir, secret, !key_files.is_empty())?),
            (None, true) => return Err(LocalError::SealedWithoutSecret(dir)),
            (None, false) => None,
        };

        let keys = KeyMap::default();
        // Nothing is read here (see `lazy.rs`): each key gets an unread
        // cell, all sharing one `Unloaded` (the loader's compare-and-swap
        // compares pointers, and nothing stores `Unloaded` after open, so
        // sharing it is safe and saves an allocation per key). The
        // permission check of every file stays: a loose key file must
        // still stop the start. A `stat` is a few microseconds, so the
        // files are shared out between threads only when there are many.
        let unloaded = Arc::new(Entry::Unloaded);
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(MAX_CHECK_THREADS);
        let per_thread = key_files.len().div_ceil(threads).max(MIN_FILES_PER_THREAD);
        // The ids move into the map rather than being copied: copies would
        // leave 100,000 freed strings scattered through the heap.
        let mut ids = key_files.into_iter().peekable();
        let mut chunks: Vec<Vec<KeyId>> = Vec::new();
        while ids.peek().is_some() {
            chunks.push(ids.by_ref().take(per_thread).collect());
        }
        let (dir_ref, unloaded, keys_ref) = (&dir, &unloaded, &keys);
        std::thread::scope(|scope| {
            let checkers: Vec<_> = chunks
                .into_iter()
                .map(|chunk| scope.spawn(move || list_files(dir_ref, chunk, unloaded, keys_ref)))
                .collect();
            checkers.into_iter().try_for_each(|checker| {
                checker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        })?;
        tracing::info!(dir = %dir.display(), keys = keys.len(), sealed = sealer.is_some(), "local key directory listed; keys are read on first use");
        let aliases = aliases::LocalAliases::load(&dir);
        Ok(Self {
            dir,
            keys,
            writer: tokio::sync::Mutex::new(()),
            sealer,
            clock,
            aliases,
            lock: Arc::new(lock),
        })
    }
}

/// Checks the permissions of `files` and gives each an unread cell in
/// `keys`. Loose permissions or a failed `stat` stop the whole open, as a
/// misconfigured directory should.
fn list_files(
    dir: &Path,
    files: Vec<KeyId>,
    unloaded: &Arc<Entry>,
    keys: &KeyMap,
) -> Result<(), LocalError> {
    for key_id in files {
        let path = file::key_path(dir, &key_id);
        let mode = file::loose_mode_bits(&path).map_err(|source| LocalError::Io {
            path: path.clone(),
            source,
        })?;
        if mode != 0 {
            return Err(LocalError::LoosePermissions { path });
        }
        keys.put(key_id, Arc::clone(unloaded));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, os::unix::fs::PermissionsExt};

    use super::*;
    use crate::clock::SystemClock;

    fn open(dir: &Path) -> Result<LocalBackend, LocalError> {
        LocalBackend::open(
            LocalConfig {
                key_dir: dir.to_owned(),
                sealing: None,
            },
            Arc::new(SystemClock),
        )
    }

    /// Enough files for several checker threads, one of them damaged.
    #[tokio::test]
    async fn many_files_are_listed_in_parallel_and_a_damaged_one_stays_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let backend = open(dir.path()).unwrap();
        backend
            .create_key(NewKey {
                key_id: KeyId::parse("k-0000").unwrap(),
                description: String::new(),
                tags: BTreeMap::new(),
            })
            .await
            .unwrap();
        drop(backend);
        let template = std::fs::read_to_string(dir.path().join("k-0000.key")).unwrap();
        let count = 3 * MIN_FILES_PER_THREAD + 7;
        for n in 1..count {
            let id = format!("k-{n:04}");
            let path = dir.path().join(format!("{id}.key"));
            let text = if n == 777 {
                "{ damaged".to_owned()
            } else {
                template.replace("\"k-0000\"", &format!("\"{id}\""))
            };
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }

        let backend = open(dir.path()).unwrap();
        let listed = backend.list_keys(None, 10_000).await.unwrap();
        assert_eq!(listed.len(), count - 1, "every readable key");
        assert!(listed.windows(2).all(|w| w[0].key_id < w[1].key_id));
        assert!(matches!(
            backend.describe_key(&KeyId::parse("k-0777").unwrap()).await,
            Err(KmsError::KeyUnreadable(_))
        ));
        drop(backend);

        let loose = dir.path().join("k-1200.key");
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            open(dir.path()),
            Err(LocalError::LoosePermissions { path }) if path == loose
        ));
    }
}
