//! CreateMultipartUpload, UploadPart and CompleteMultipartUpload.
//!
//! The data key is made and sealed once, at CreateMultipartUpload, and
//! stored with the upload; every UploadPart opens it again and writes its
//! part as an OSE1 stream of its own (a fresh salt per attempt, so a
//! retried part never reuses a nonce); CompleteMultipartUpload seals the
//! layout of the parts listed and writes the object.

use std::{io::Write, path::PathBuf};

use http::HeaderMap;
use kms_client::{
    sse::{self, KeySlot, ObjectId, Operation, StoredObject, StoredSse},
    stream::{Encryptor, Layout, PartId, PartInfo, PartNumber},
};
use ring::rand::{SecureRandom, SystemRandom};

use crate::{
    Headers, ObjectStore, S3Error,
    disk::{Metadata, read_metadata, write_atomic, write_metadata},
};

const BUCKET: &str = "objstore-bucket";
const KEY: &str = "objstore-key";

impl ObjectStore {
    /// CreateMultipartUpload: decides the encryption and makes the data key.
    pub async fn create_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        headers: &HeaderMap,
    ) -> Result<(String, Headers), S3Error> {
        let request = sse::parse_write_headers(headers, self.transport)?;
        let decision = sse::decide(request, self.bucket_default(bucket)?.as_ref());
        if !decision.encrypts() {
            return Err(S3Error::new(
                "NotImplemented",
                501,
                "this example stores only encrypted multipart uploads",
            ));
        }
        let object = ObjectId::new(bucket, key);
        let sealing = self
            .sse
            .seal(&decision, &object)
            .await?
            .ok_or_else(|| std::io::Error::other("no sealing for an encrypting decision"))?;
        let mut id = [0u8; 16];
        SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| std::io::Error::other("no randomness"))?;
        let id = hex::encode(id);
        let mut metadata = sealing.stored.to_map();
        metadata.insert(BUCKET.into(), bucket.into());
        metadata.insert(KEY.into(), key.into());
        write_metadata(&self.disk.upload_dir(&id).join("meta"), &metadata)?;
        Ok((
            id,
            sealing.response.headers(Operation::CreateMultipartUpload),
        ))
    }

    /// UploadPart `n` (1–10,000) of upload `id`.
    pub async fn upload_part(
        &self,
        id: &str,
        n: u32,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Headers, S3Error> {
        let customer = sse::parse_read_headers(headers, self.transport)?;
        let (stored, bucket, key) = self.upload(id)?;
        let object = ObjectId::new(&bucket, &key);
        let opened = self
            .sse
            .open(&stored, customer.as_ref(), KeySlot::Object, &object)
            .await?;
        let part = PartNumber::multipart(n).map_err(sse::SseError::from)?;
        let encryptor = Encryptor::new(&opened.key, &object.binding(), part, self.chunk_size)
            .map_err(sse::SseError::from)?;
        let dir = self.disk.upload_dir(id);
        let mut info = None;
        write_atomic(&dir.join(format!("part-{n}")), |file| {
            let mut writer = encryptor.writer(file);
            writer.write_all(body)?;
            info = Some(writer.finish()?.1);
            Ok(())
        })?;
        let info = info.ok_or_else(|| std::io::Error::other("no part info"))?;
        // Like an ETag: what CompleteMultipartUpload needs of this attempt.
        write_atomic(&dir.join(format!("part-{n}.info")), |file| {
            write!(file, "{} {}", info.plaintext_size, hex::encode(info.id.0))
        })?;
        Ok(opened.response.headers(Operation::UploadPart))
    }

    /// CompleteMultipartUpload with the listed part numbers, in order.
    pub async fn complete_multipart_upload(
        &self,
        id: &str,
        parts: &[u32],
        headers: &HeaderMap,
    ) -> Result<Headers, S3Error> {
        let customer = sse::parse_read_headers(headers, self.transport)?;
        let (stored, bucket, key) = self.upload(id)?;
        let object = ObjectId::new(&bucket, &key);
        // The layout tag is keyed by the data key: SSE-C needs its key here.
        let opened = self
            .sse
            .open(&stored, customer.as_ref(), KeySlot::Object, &object)
            .await?;
        let dir = self.disk.upload_dir(id);
        let invalid_part = || S3Error::new("InvalidPart", 400, "a listed part was not uploaded");
        let mut infos = Vec::new();
        for &n in parts {
            let text = std::fs::read_to_string(dir.join(format!("part-{n}.info")))
                .map_err(|_| invalid_part())?;
            let (size, part_id) = text.split_once(' ').ok_or_else(invalid_part)?;
            let part_id = hex::decode(part_id).ok().and_then(|b| b.try_into().ok());
            infos.push(PartInfo {
                part: PartNumber::multipart(n).map_err(sse::SseError::from)?,
                chunk_size: self.chunk_size,
                plaintext_size: size.parse().map_err(|_| invalid_part())?,
                id: PartId(part_id.ok_or_else(invalid_part)?),
            });
        }
        let layout =
            Layout::seal(&opened.key, &object.binding(), infos).map_err(sse::SseError::from)?;
        // The object's payload is the parts' streams, back to back.
        write_atomic(&self.disk.data_path(&bucket, &key), |file| {
            for &n in parts {
                std::io::copy(
                    &mut std::fs::File::open(dir.join(format!("part-{n}")))?,
                    file,
                )?;
            }
            Ok(())
        })?;
        let object_metadata = StoredObject {
            sse: stored,
            layout,
        }
        .to_map();
        write_metadata(&self.disk.meta_path(&bucket, &key), &object_metadata)?;
        std::fs::remove_dir_all(&dir)?;
        Ok(opened.response.headers(Operation::CompleteMultipartUpload))
    }

    fn upload(&self, id: &str) -> Result<(StoredSse, String, String), S3Error> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(S3Error::no_such_upload());
        }
        let metadata: Metadata = read_metadata(&self.disk.upload_dir(id).join("meta"))?
            .ok_or_else(S3Error::no_such_upload)?;
        let stored = StoredSse::from_map(&metadata)?.ok_or_else(S3Error::no_such_upload)?;
        let name = |entry| {
            metadata
                .get(entry)
                .cloned()
                .ok_or_else(S3Error::no_such_upload)
        };
        Ok((stored, name(BUCKET)?, name(KEY)?))
    }
}

/// Every upload in progress: (bucket, key, metadata file).
pub(crate) fn all_uploads(store: &ObjectStore) -> std::io::Result<Vec<(String, String, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(store.disk.uploads_dir()) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let meta = entry?.path().join("meta");
        if let Some(metadata) = read_metadata(&meta)?
            && let (Some(bucket), Some(key)) = (metadata.get(BUCKET), metadata.get(KEY))
        {
            found.push((bucket.clone(), key.clone(), meta));
        }
    }
    Ok(found)
}
