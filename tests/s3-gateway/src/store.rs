//! The gateway's own files under `<root>/.kms/`, beside s3s-fs's: the
//! encryption metadata of each SSE object and multipart upload, and each
//! bucket's default encryption. s3s-fs never sees them (bucket names
//! cannot start with a dot), and clients never see them as user metadata.
//!
//! Every write goes to a temporary file that is renamed into place, so a
//! reader sees the old file or the new one. The object file (s3s-fs) and
//! its metadata file are two files, though: a reader racing a writer may
//! pair new bytes with old metadata, which the layout tag then refuses —
//! an error, never wrong plaintext.

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use kms_client::{
    sse::{BucketEncryption, StoredObject, StoredSse},
    stream::{PartInfo, PartNumber},
};

/// The files of one gateway root.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    counter: AtomicU64,
}

type Map = BTreeMap<String, String>;

/// A name for (bucket, key) that fits any file system: S3 keys run to
/// 1,024 bytes, far beyond a file name.
fn object_name(bucket: &str, key: &str) -> String {
    let mut input = Vec::new();
    input.extend_from_slice(&(bucket.len() as u32).to_be_bytes());
    input.extend_from_slice(bucket.as_bytes());
    input.extend_from_slice(key.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA256, &input);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Upload ids come from s3s-fs (UUIDs) but reach us from the client: keep
/// only what a UUID may contain before using one in a path.
fn upload_name(upload_id: &str) -> io::Result<String> {
    if !upload_id.is_empty()
        && upload_id.len() <= 64
        && upload_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-')
    {
        Ok(upload_id.to_owned())
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidInput, "bad upload id"))
    }
}

fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn remove_optional(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

impl Store {
    pub(crate) fn open(root: &Path) -> io::Result<Self> {
        let dir = root.join(".kms");
        for sub in ["objects", "uploads", "buckets", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        Ok(Self {
            dir,
            counter: AtomicU64::new(0),
        })
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{}.{n}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    }

    fn write_map(&self, path: &Path, map: &Map) -> io::Result<()> {
        let json = serde_json::to_vec(map).map_err(io::Error::other)?;
        self.write(path, &json)
    }

    fn read_map(path: &Path) -> io::Result<Option<Map>> {
        read_optional(path)?
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|_| invalid("metadata is not JSON"))
            })
            .transpose()
    }

    fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.dir.join("objects").join(object_name(bucket, key))
    }

    /// The stored metadata of an SSE object, `None` for a plain one.
    pub(crate) fn object(&self, bucket: &str, key: &str) -> io::Result<Option<Map>> {
        Self::read_map(&self.object_path(bucket, key))
    }

    pub(crate) fn put_object(
        &self,
        bucket: &str,
        key: &str,
        object: &StoredObject,
    ) -> io::Result<()> {
        self.write_map(&self.object_path(bucket, key), &object.to_map())
    }

    pub(crate) fn remove_object(&self, bucket: &str, key: &str) -> io::Result<()> {
        remove_optional(&self.object_path(bucket, key))
    }

    fn upload_path(&self, upload_id: &str) -> io::Result<PathBuf> {
        Ok(self
            .dir
            .join("uploads")
            .join(format!("{}.json", upload_name(upload_id)?)))
    }

    fn part_path(&self, upload_id: &str, part: PartNumber) -> io::Result<PathBuf> {
        Ok(self.dir.join("uploads").join(format!(
            "{}.part-{}",
            upload_name(upload_id)?,
            part.get()
        )))
    }

    /// The encryption of an SSE multipart upload.
    pub(crate) fn put_upload(&self, upload_id: &str, sse: &StoredSse) -> io::Result<()> {
        self.write_map(&self.upload_path(upload_id)?, &sse.to_map())
    }

    pub(crate) fn upload(&self, upload_id: &str) -> io::Result<Option<Map>> {
        Self::read_map(&self.upload_path(upload_id)?)
    }

    /// What one encrypted part turned out to be (the last upload of a part
    /// number wins, as in S3).
    pub(crate) fn put_part(&self, upload_id: &str, info: &PartInfo) -> io::Result<()> {
        let line = format!(
            "{}:{}:{}:{}",
            info.part.get(),
            info.chunk_size.bytes(),
            info.plaintext_size,
            info.id
        );
        self.write(&self.part_path(upload_id, info.part)?, line.as_bytes())
    }

    pub(crate) fn part(&self, upload_id: &str, part: PartNumber) -> io::Result<Option<PartInfo>> {
        let Some(bytes) = read_optional(&self.part_path(upload_id, part)?)? else {
            return Ok(None);
        };
        let text = String::from_utf8(bytes).map_err(|_| invalid("part record"))?;
        let fields: Vec<&str> = text.split(':').collect();
        let [n, chunk, size, id] = fields.as_slice() else {
            return Err(invalid("part record"));
        };
        let number = n.parse().map_err(|_| invalid("part number"))?;
        let mut id_bytes = [0u8; 16];
        for (i, byte) in id_bytes.iter_mut().enumerate() {
            *byte = id
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid("part id"))?;
        }
        Ok(Some(PartInfo {
            part: PartNumber::multipart(number).map_err(|_| invalid("part number"))?,
            chunk_size: chunk
                .parse()
                .ok()
                .and_then(|c| kms_client::stream::ChunkSize::from_bytes(c).ok())
                .ok_or_else(|| invalid("chunk size"))?,
            plaintext_size: size.parse().map_err(|_| invalid("part size"))?,
            id: kms_client::stream::PartId(id_bytes),
        }))
    }

    /// Forgets an upload and its parts.
    pub(crate) fn remove_upload(&self, upload_id: &str) -> io::Result<()> {
        let name = upload_name(upload_id)?;
        remove_optional(&self.upload_path(upload_id)?)?;
        for entry in std::fs::read_dir(self.dir.join("uploads"))? {
            let entry = entry?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&format!("{name}.part-")))
            {
                remove_optional(&entry.path())?;
            }
        }
        Ok(())
    }

    fn bucket_path(&self, bucket: &str) -> PathBuf {
        // s3s has validated the name: [a-z0-9.-], starting with a letter
        // or digit, so it is a safe file name.
        self.dir.join("buckets").join(format!("{bucket}.xml"))
    }

    /// The bucket's default encryption, kept as the XML AWS returns.
    pub(crate) fn bucket_encryption(&self, bucket: &str) -> io::Result<Option<BucketEncryption>> {
        read_optional(&self.bucket_path(bucket))?
            .map(|bytes| {
                let xml = String::from_utf8(bytes).map_err(|_| invalid("bucket encryption"))?;
                BucketEncryption::from_xml(&xml).map_err(|e| invalid(&e.to_string()))
            })
            .transpose()
    }

    pub(crate) fn put_bucket_encryption(
        &self,
        bucket: &str,
        encryption: &BucketEncryption,
    ) -> io::Result<()> {
        self.write(&self.bucket_path(bucket), encryption.to_xml().as_bytes())
    }

    pub(crate) fn remove_bucket_encryption(&self, bucket: &str) -> io::Result<()> {
        remove_optional(&self.bucket_path(bucket))
    }
}
