//! Opening a key directory: its lock, its sealing, and every key file.

use super::*;

impl LocalBackend {
    /// Opens (creating if needed) the key directory and loads every key.
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
                Ok(id) => key_files.push((id, entry.path())),
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
        for (key_id, path) in key_files {
            if file::loose_mode_bits(&path).map_err(io_at(&path))? != 0 {
                return Err(LocalError::LoosePermissions { path });
            }
            let entry = match load_key(&path, &key_id, sealer.as_ref()) {
                Ok(key) => Entry::Ready(Arc::new(key)),
                Err(reason) => {
                    tracing::error!(path = %path.display(), %reason, "key file is unreadable; this key is unavailable, the others are served");
                    Entry::Unreadable
                }
            };
            keys.put(key_id, entry);
        }
        tracing::info!(dir = %dir.display(), keys = keys.len(), sealed = sealer.is_some(), "local key directory loaded");
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
