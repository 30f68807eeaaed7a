//! Where objects live on disk. Every file is written to a temporary name,
//! synced, then renamed into place, so a crash leaves the old or the new
//! version, never a torn one.
//!
//! ```text
//! <root>/buckets/<bucket>/encryption.xml          bucket default (PutBucketEncryption)
//! <root>/buckets/<bucket>/objects/<hex key>.data  the stored payload (OSE1 for SSE objects)
//! <root>/buckets/<bucket>/objects/<hex key>.meta  its metadata, one `name: value` per line
//! <root>/uploads/<id>/meta, part-<n>              multipart uploads in progress
//! ```

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{self, Write},
    path::{Path, PathBuf},
};

/// An object's metadata: kms-client's `StoredObject::to_map` plus the
/// store's own entries (`size`, `bucket`, `key`).
pub(crate) type Metadata = BTreeMap<String, String>;

#[derive(Debug, Clone)]
pub(crate) struct Disk {
    root: PathBuf,
}

impl Disk {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.join("buckets").join(bucket)
    }

    fn object_base(&self, bucket: &str, key: &str) -> PathBuf {
        self.bucket_dir(bucket)
            .join("objects")
            .join(hex::encode(key))
    }

    pub(crate) fn data_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.object_base(bucket, key).with_extension("data")
    }

    pub(crate) fn meta_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.object_base(bucket, key).with_extension("meta")
    }

    pub(crate) fn upload_dir(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    pub(crate) fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    /// Every object's metadata file, sorted by bucket then key: the stable
    /// order a resumable re-wrap needs.
    pub(crate) fn all_objects(&self) -> io::Result<Vec<(String, String, PathBuf)>> {
        let mut found = Vec::new();
        for bucket in sorted_dir(&self.root.join("buckets"))? {
            let bucket_name = bucket.file_name().map(|n| n.to_string_lossy().into_owned());
            let Some(bucket_name) = bucket_name else {
                continue;
            };
            for file in sorted_dir(&bucket.join("objects"))? {
                let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
                let Some(stem) = name.as_deref().and_then(|n| n.strip_suffix(".meta")) else {
                    continue;
                };
                let Some(key) = hex::decode(stem)
                    .ok()
                    .and_then(|k| String::from_utf8(k).ok())
                else {
                    continue;
                };
                found.push((bucket_name.clone(), key, file));
            }
        }
        found.sort();
        Ok(found)
    }
}

fn sorted_dir(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut entries = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<Vec<_>>>()?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    entries.sort();
    Ok(entries)
}

/// Writes `path` atomically and durably: temporary file, fsync, rename,
/// fsync of the directory.
pub(crate) fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("no parent directory"))?;
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = File::create(&tmp)?;
    write(&mut file)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

pub(crate) fn write_metadata(path: &Path, metadata: &Metadata) -> io::Result<()> {
    write_atomic(path, |file| {
        for (name, value) in metadata {
            writeln!(file, "{name}: {value}")?;
        }
        Ok(())
    })
}

/// `Ok(None)` when the file does not exist.
pub(crate) fn read_metadata(path: &Path) -> io::Result<Option<Metadata>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut metadata = Metadata::new();
    for line in text.lines() {
        let (name, value) = line
            .split_once(": ")
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed metadata line"))?;
        metadata.insert(name.to_owned(), value.to_owned());
    }
    Ok(Some(metadata))
}
