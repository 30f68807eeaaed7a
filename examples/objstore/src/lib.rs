//! A minimal object store on the local filesystem that encrypts with S3
//! server-side encryption through kms-client and kmsd: the code
//! docs/integration.md walks through, written the way a storage server
//! (RustFS, say) would write it.
//!
//! Requests arrive as S3 would hand them over: a bucket, a key, the HTTP
//! headers and the body. [`ObjectStore`] answers PutObject, GetObject
//! (whole or a range), HeadObject, CopyObject and the three multipart calls
//! under SSE-S3, SSE-KMS (with bucket keys) and SSE-C, with the S3 error
//! code of every failure ([`S3Error`]), and re-wraps every stored sealed
//! key after a key rotation ([`ObjectStore::rewrap`]). Payloads are OSE1
//! streams next to a metadata file; kmsd sees only data-key requests.
//!
//! Bodies are byte slices here to keep the example short; kms-client's
//! stream adapters ([`kms_client::stream::Encryptor::writer`],
//! `async_writer`) encrypt while the body streams in, with memory bounded
//! by one chunk.

#![forbid(unsafe_code)]

mod disk;
mod error;
mod multipart;
mod rewrap;

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    ops::Range,
    path::PathBuf,
};

use http::HeaderMap;
use kms_client::{
    KmsClient,
    bucket_key::BucketKeyPolicy,
    sse::{
        self, BucketEncryption, CustomerKey, KeySlot, ObjectId, Operation, SseKeys, SseResponse,
        StoredObject, Transport,
    },
    stream::{ChunkSize, Encryptor, PartNumber},
};

use self::disk::{Disk, Metadata, read_metadata, write_atomic, write_metadata};
pub use self::{error::S3Error, rewrap::RewrapSummary};

/// This store's own metadata entry: the plaintext size of a plain object.
const SIZE: &str = "objstore-size";

/// Response headers (name, value).
pub type Headers = Vec<(&'static str, String)>;

/// The store: one per process, shared by every request (it holds the kmsd
/// client, whose clones share one connection, and the bucket-key cache).
#[derive(Debug)]
pub struct ObjectStore {
    disk: Disk,
    sse: SseKeys<KmsClient>,
    chunk_size: ChunkSize,
    transport: Transport,
}

/// What GetObject returns.
#[derive(Debug)]
pub struct Object {
    /// The plaintext (of the range, when one was asked for).
    pub body: Vec<u8>,
    /// The object's plaintext size (`Content-Length` of HEAD).
    pub size: u64,
    /// The SSE response headers.
    pub headers: Headers,
    /// Stored bytes read from disk (a range reads only its chunks).
    pub fetched: u64,
}

impl ObjectStore {
    /// A store under `root`, encrypting through `client`.
    ///
    /// `transport` says whether requests reach this server over TLS; SSE-C
    /// is refused over [`Transport::Insecure`] because its key crossed the
    /// network in clear. The command-line example passes `Secure`: its
    /// requests never leave the machine.
    pub fn new(root: PathBuf, client: KmsClient, transport: Transport) -> Self {
        Self {
            disk: Disk::new(root),
            sse: SseKeys::new(client, BucketKeyPolicy::default()),
            chunk_size: ChunkSize::DEFAULT,
            transport,
        }
    }

    /// The kmsd client, for calls of its own.
    pub fn client(&self) -> &KmsClient {
        self.sse.source()
    }

    /// PutBucketEncryption: the bucket's default encryption, as S3's XML.
    pub fn put_bucket_encryption(&self, bucket: &str, xml: &str) -> Result<(), S3Error> {
        BucketEncryption::from_xml(xml)?;
        let path = self.disk.bucket_dir(bucket).join("encryption.xml");
        write_atomic(&path, |file| {
            std::io::Write::write_all(file, xml.as_bytes())
        })?;
        Ok(())
    }

    fn bucket_default(&self, bucket: &str) -> Result<Option<BucketEncryption>, S3Error> {
        let path = self.disk.bucket_dir(bucket).join("encryption.xml");
        match std::fs::read_to_string(path) {
            Ok(xml) => Ok(Some(BucketEncryption::from_xml(&xml)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// PutObject.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Headers, S3Error> {
        let response = self.write(bucket, key, headers, body).await?;
        Ok(response
            .map(|r| r.headers(Operation::PutObject))
            .unwrap_or_default())
    }

    /// Writes a new object (PutObject, CopyObject); its SSE response.
    async fn write(
        &self,
        bucket: &str,
        key: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Option<SseResponse>, S3Error> {
        // The request's SSE headers, else the bucket default, decide.
        let request = sse::parse_write_headers(headers, self.transport)?;
        let decision = sse::decide(request, self.bucket_default(bucket)?.as_ref());
        let object = ObjectId::new(bucket, key);
        let Some(sealing) = self.sse.seal(&decision, &object).await? else {
            // No encryption asked for: stored as sent.
            write_atomic(&self.disk.data_path(bucket, key), |f| {
                std::io::Write::write_all(f, body)
            })?;
            let metadata = Metadata::from([(SIZE.to_owned(), body.len().to_string())]);
            write_metadata(&self.disk.meta_path(bucket, key), &metadata)?;
            return Ok(None);
        };
        // Encrypt as one OSE1 stream bound to bucket/key, straight to disk.
        let binding = object.binding();
        let encryptor = Encryptor::new(&sealing.key, &binding, PartNumber::SINGLE, self.chunk_size)
            .map_err(sse::SseError::from)?;
        let mut info = None;
        write_atomic(&self.disk.data_path(bucket, key), |file| {
            let mut writer = encryptor.writer(file);
            std::io::Write::write_all(&mut writer, body)?;
            info = Some(writer.finish()?.1);
            Ok(())
        })?;
        let info = info.ok_or_else(|| std::io::Error::other("no part info"))?;
        // Persist the sealed key and the authenticated layout next to it.
        let layout = kms_client::stream::Layout::seal(&sealing.key, &binding, [info])
            .map_err(sse::SseError::from)?;
        let stored = StoredObject {
            sse: sealing.stored,
            layout,
        };
        write_metadata(&self.disk.meta_path(bucket, key), &stored.to_map())?;
        Ok(Some(sealing.response))
    }

    /// HeadObject: no kmsd call, not even for SSE-KMS.
    pub fn head_object(
        &self,
        bucket: &str,
        key: &str,
        headers: &HeaderMap,
    ) -> Result<(u64, Headers), S3Error> {
        let customer = sse::parse_read_headers(headers, self.transport)?;
        let metadata = self.metadata(bucket, key)?;
        match StoredObject::from_map(&metadata)? {
            Some(stored) => {
                let response = SseKeys::<KmsClient>::head(&stored.sse, customer.as_ref())?;
                Ok((
                    stored.layout.plaintext_size(),
                    response.headers(Operation::HeadObject),
                ))
            }
            None => {
                sse::check_plain_object(customer.as_ref(), KeySlot::Object)?;
                Ok((plain_size(&metadata)?, Vec::new()))
            }
        }
    }

    /// GetObject, whole or `range` (end exclusive).
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        headers: &HeaderMap,
        range: Option<Range<u64>>,
    ) -> Result<Object, S3Error> {
        let customer = sse::parse_read_headers(headers, self.transport)?;
        let (object, response) = self
            .read(bucket, key, customer.as_ref(), KeySlot::Object, range)
            .await?;
        Ok(Object {
            headers: response
                .map(|r| r.headers(Operation::GetObject))
                .unwrap_or_default(),
            ..object
        })
    }

    /// CopyObject: the source is decrypted (with its SSE-C key from the
    /// `x-amz-copy-source-server-side-encryption-customer-*` headers) and
    /// written as a new object under the destination's encryption, so the
    /// payload is always re-encrypted under a fresh key and binding.
    pub async fn copy_object(
        &self,
        (source_bucket, source_key): (&str, &str),
        (bucket, key): (&str, &str),
        headers: &HeaderMap,
    ) -> Result<Headers, S3Error> {
        let source_customer = sse::parse_copy_source_headers(headers, self.transport)?;
        let (source, _) = self
            .read(
                source_bucket,
                source_key,
                source_customer.as_ref(),
                KeySlot::CopySource,
                None,
            )
            .await?;
        let response = self.write(bucket, key, headers, &source.body).await?;
        Ok(response
            .map(|r| r.headers(Operation::CopyObject))
            .unwrap_or_default())
    }

    /// The master key and version that seal this object's data key (what
    /// an operator checks after a re-wrap); `None` for SSE-C and plain
    /// objects. Read from the stored blob's header, without kmsd.
    pub fn sealed_key(&self, bucket: &str, key: &str) -> Result<Option<(String, u32)>, S3Error> {
        let metadata = self.metadata(bucket, key)?;
        Ok(match sse::StoredSse::from_map(&metadata)? {
            Some(sse::StoredSse::S3(sealed) | sse::StoredSse::Kms(sealed, _)) => {
                kms_client::rewrap::sealed_by(&sealed.blob)
                    .map(|(key_id, version)| (key_id.to_owned(), version))
            }
            _ => None,
        })
    }

    fn metadata(&self, bucket: &str, key: &str) -> Result<Metadata, S3Error> {
        read_metadata(&self.disk.meta_path(bucket, key))?.ok_or_else(S3Error::no_such_key)
    }

    async fn read(
        &self,
        bucket: &str,
        key: &str,
        customer: Option<&CustomerKey>,
        slot: KeySlot,
        range: Option<Range<u64>>,
    ) -> Result<(Object, Option<SseResponse>), S3Error> {
        let metadata = self.metadata(bucket, key)?;
        let mut file = File::open(self.disk.data_path(bucket, key))?;
        let Some(stored) = StoredObject::from_map(&metadata)? else {
            sse::check_plain_object(customer, slot)?;
            let size = plain_size(&metadata)?;
            let range = range.unwrap_or(0..size);
            if range.start > range.end || range.end > size {
                return Err(S3Error::new(
                    "InvalidRange",
                    416,
                    "The requested range is not satisfiable",
                ));
            }
            let body = read_range(&mut file, &range)?;
            let fetched = body.len() as u64;
            return Ok((
                Object {
                    body,
                    size,
                    headers: Vec::new(),
                    fetched,
                },
                None,
            ));
        };
        // One kmsd Decrypt (none for SSE-C, none for a cached bucket key).
        let object = ObjectId::new(bucket, key);
        let opened = self.sse.open(&stored.sse, customer, slot, &object).await?;
        let decryptor = opened.decryptor(&object, &stored.layout)?;
        let plan = match range {
            None => stored.layout.plan_all(),
            Some(range) => stored
                .layout
                .plan_range(range)
                .map_err(sse::SseError::from)?,
        };
        // Only the chunks that cover the range are read from disk.
        let mut fetched = Vec::new();
        for stored_range in plan.fetch_ranges() {
            fetched.extend(read_range(&mut file, stored_range)?);
        }
        let mut body = Vec::new();
        decryptor
            .range_reader(&plan, &fetched[..])
            .map_err(sse::SseError::from)?
            .read_to_end(&mut body)?;
        let object = Object {
            body,
            size: stored.layout.plaintext_size(),
            headers: Vec::new(),
            fetched: plan.fetch_len(),
        };
        Ok((object, Some(opened.response)))
    }
}

fn plain_size(metadata: &Metadata) -> Result<u64, S3Error> {
    metadata
        .get(SIZE)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no size").into())
}

fn read_range(file: &mut File, range: &Range<u64>) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(range.start))?;
    let mut bytes = Vec::new();
    file.take(range.end - range.start).read_to_end(&mut bytes)?;
    Ok(bytes)
}
