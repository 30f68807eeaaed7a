//! PutObject, GetObject, HeadObject, CopyObject and listings.

use kms_client::{
    sse::{
        self, CustomerKey, Decision, KeySlot, ObjectId, Operation, SseKeys, SseResponse,
        StoredObject, Transport,
    },
    stream::{Encryptor, Layout, PartNumber},
};
use s3s::{S3, S3Request, S3Response, S3Result, dto::*, s3_error};

use crate::{
    body::{self, Checks},
    error,
    gateway::{Gateway, sub_request},
};

/// The gateway serves 127.0.0.1 only: headers never cross a network, so
/// SSE-C keys are accepted over plain HTTP (docs/sse.md, "The gateway").
pub(crate) const TRANSPORT: Transport = Transport::Secure;

/// The response header that reports how many stored bytes a GET read, so
/// the tests can see that a range read fetched only its chunks.
pub(crate) const FETCHED_HEADER: &str = "x-kms-gateway-fetched-bytes";

/// Copies the SSE fields of `$sse` (an [`SseResponse`] already narrowed to
/// the operation) into an s3s output struct.
macro_rules! set_sse_fields {
    ($out:expr, $sse:expr) => {{
        let sse: SseResponse = $sse;
        $out.server_side_encryption = sse
            .server_side_encryption
            .map(ServerSideEncryption::from_static);
        $out.ssekms_key_id = sse.kms_key_id;
        $out.bucket_key_enabled = sse.bucket_key_enabled;
        $out.sse_customer_algorithm = sse.customer_algorithm.map(str::to_owned);
        $out.sse_customer_key_md5 = sse.customer_key_md5;
        sse.context
    }};
}
pub(crate) use set_sse_fields;

/// Clears the checksum fields of an output: s3s-fs's would describe the
/// ciphertext.
macro_rules! clear_checksums {
    ($out:expr) => {{
        $out.checksum_crc32 = None;
        $out.checksum_crc32c = None;
        $out.checksum_sha1 = None;
        $out.checksum_sha256 = None;
        $out.checksum_crc64nvme = None;
    }};
}
pub(crate) use clear_checksums;

/// Takes the client's integrity values out of an input (so s3s-fs does not
/// check them against the ciphertext); [`body::encrypt`] checks them
/// against the plaintext.
macro_rules! take_checks {
    ($input:expr, $trailers:expr) => {
        Checks {
            content_md5: $input.content_md5.take(),
            expected: Checksum {
                checksum_crc32: $input.checksum_crc32.take(),
                checksum_crc32c: $input.checksum_crc32c.take(),
                checksum_sha1: $input.checksum_sha1.take(),
                checksum_sha256: $input.checksum_sha256.take(),
                checksum_crc64nvme: $input.checksum_crc64nvme.take(),
                ..Default::default()
            },
            algorithm: $input
                .checksum_algorithm
                .take()
                .map(|a| a.as_str().to_owned()),
            trailers: $trailers,
        }
    };
}
pub(crate) use take_checks;

/// A plaintext read of an object: the output (body decrypted, sizes and
/// ranges in plaintext), its encryption, and the stored bytes read.
pub(crate) struct Read {
    pub(crate) output: GetObjectOutput,
    pub(crate) sse: Option<SseResponse>,
    pub(crate) fetched: u64,
}

impl Gateway {
    pub(crate) fn bucket_default(&self, bucket: &str) -> S3Result<Option<sse::BucketEncryption>> {
        self.store
            .bucket_encryption(bucket)
            .map_err(error::internal)
    }

    pub(crate) fn stored_object(&self, bucket: &str, key: &str) -> S3Result<Option<StoredObject>> {
        let Some(map) = self.store.object(bucket, key).map_err(error::internal)? else {
            return Ok(None);
        };
        StoredObject::from_map(&map).map_err(error::sse)
    }

    /// Reads `bucket/key` (a `range` of it) as plaintext, checking the
    /// request's SSE-C key of `slot`. For an SSE object only the chunks that
    /// cover the range are read from disk.
    pub(crate) async fn read_object<T>(
        &self,
        base: &S3Request<T>,
        bucket: &str,
        key: &str,
        customer: Option<&CustomerKey>,
        slot: KeySlot,
        range: Option<Range>,
    ) -> S3Result<Read> {
        let get = |range| GetObjectInput {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            range,
            ..Default::default()
        };
        let Some(stored) = self.stored_object(bucket, key)? else {
            sse::check_plain_object(customer, slot).map_err(error::sse)?;
            let output = self
                .fs
                .get_object(sub_request(base, get(range)))
                .await?
                .output;
            let fetched = output.content_length.unwrap_or_default() as u64;
            return Ok(Read {
                output,
                sse: None,
                fetched,
            });
        };
        let object = ObjectId::new(bucket, key);
        let opened = self
            .sse
            .open(&stored.sse, customer, slot, &object)
            .await
            .map_err(error::sse)?;
        let decryptor = opened
            .decryptor(&object, &stored.layout)
            .map_err(error::sse)?;
        let size = stored.layout.plaintext_size();
        let plan = match &range {
            None => stored.layout.plan_all(),
            Some(range) => {
                let range = range.check(size)?;
                stored
                    .layout
                    .plan_range(range)
                    .map_err(|e| error::sse(e.into()))?
            }
        };
        let mut first: Option<GetObjectOutput> = None;
        let mut sources = Vec::new();
        for fetch in plan.fetch_ranges() {
            let stored_range = Range::Int {
                first: fetch.start,
                last: Some(fetch.end - 1),
            };
            let mut output = self
                .fs
                .get_object(sub_request(base, get(Some(stored_range))))
                .await?
                .output;
            sources.push(output.body.take().ok_or_else(|| s3_error!(InternalError))?);
            first.get_or_insert(output);
        }
        let mut output = first.ok_or_else(|| s3_error!(InternalError))?;
        let plaintext = plan.plaintext_range();
        output.body = Some(body::decrypt(&decryptor, &plan, sources)?);
        output.content_length = Some((plaintext.end - plaintext.start) as i64);
        output.content_range = range.map(|_| {
            format!(
                "bytes {}-{}/{size}",
                plaintext.start,
                plaintext.end.saturating_sub(1)
            )
        });
        clear_checksums!(output);
        Ok(Read {
            output,
            sse: Some(opened.response),
            fetched: plan.fetch_len(),
        })
    }

    /// Writes a new object under `decision`: encrypted and recorded, or
    /// (for [`Decision::None`]) forwarded as it is.
    pub(crate) async fn write_object(
        &self,
        mut req: S3Request<PutObjectInput>,
        decision: Decision,
        checks: Checks,
    ) -> S3Result<(PutObjectOutput, Option<SseResponse>)> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let object = ObjectId::new(&bucket, &key);
        let Some(sealing) = self
            .sse
            .seal(&decision, &object)
            .await
            .map_err(error::sse)?
        else {
            let output = self.fs.put_object(req).await?.output;
            self.store
                .remove_object(&bucket, &key)
                .map_err(error::internal)?;
            return Ok((output, None));
        };
        let binding = object.binding();
        let encryptor = Encryptor::new(&sealing.key, &binding, PartNumber::SINGLE, self.chunk_size)
            .map_err(|e| error::sse(e.into()))?;
        let plaintext = req
            .input
            .body
            .take()
            .ok_or_else(|| s3_error!(IncompleteBody))?;
        let (stored_body, outcome) = body::encrypt(plaintext, encryptor, checks)?;
        req.input.body = Some(stored_body);
        req.input.content_length = None;
        req.trailing_headers = None;
        let result = self.fs.put_object(req).await;
        let outcome = outcome.take();
        let output = match (result, outcome) {
            (Err(_), Some(Err(digest))) => return Err(digest),
            (Err(e), _) => return Err(e),
            (Ok(response), Some(Ok((info, checksum)))) => {
                let layout = Layout::seal(&sealing.key, &binding, [info])
                    .map_err(|e| error::sse(e.into()))?;
                self.store
                    .put_object(
                        &bucket,
                        &key,
                        &StoredObject {
                            sse: sealing.stored,
                            layout,
                        },
                    )
                    .map_err(error::internal)?;
                let mut output = response.output;
                output.checksum_crc32 = checksum.checksum_crc32;
                output.checksum_crc32c = checksum.checksum_crc32c;
                output.checksum_sha1 = checksum.checksum_sha1;
                output.checksum_sha256 = checksum.checksum_sha256;
                output.checksum_crc64nvme = checksum.checksum_crc64nvme;
                output
            }
            (Ok(_), _) => return Err(s3_error!(IncompleteBody)),
        };
        Ok((output, Some(sealing.response)))
    }

    pub(crate) async fn put_object_impl(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let write = sse::parse_write_headers(&req.headers, TRANSPORT).map_err(error::sse)?;
        if req.input.key.ends_with('/') {
            // A directory marker: no payload to encrypt.
            return self.fs.put_object(req).await;
        }
        let default = self.bucket_default(&req.input.bucket)?;
        let decision = sse::decide(write, default.as_ref());
        let trailers = req.trailing_headers.take();
        let checks = if decision.encrypts() {
            take_checks!(req.input, trailers)
        } else {
            req.trailing_headers = trailers;
            Checks::default()
        };
        let (mut output, sse) = self.write_object(req, decision, checks).await?;
        if let Some(sse) = sse {
            output.ssekms_encryption_context =
                set_sse_fields!(output, sse.for_operation(Operation::PutObject));
        }
        Ok(S3Response::new(output))
    }

    pub(crate) async fn get_object_impl(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let customer = sse::parse_read_headers(&req.headers, TRANSPORT).map_err(error::sse)?;
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let range = req.input.range;
        let read = self
            .read_object(
                &req,
                &bucket,
                &key,
                customer.as_ref(),
                KeySlot::Object,
                range,
            )
            .await?;
        let mut output = read.output;
        if let Some(sse) = read.sse {
            let _context = set_sse_fields!(output, sse.for_operation(Operation::GetObject));
        }
        let mut response = S3Response::new(output);
        response.headers.insert(FETCHED_HEADER, read.fetched.into());
        Ok(response)
    }

    pub(crate) async fn head_object_impl(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let customer = sse::parse_read_headers(&req.headers, TRANSPORT).map_err(error::sse)?;
        let stored = self.stored_object(&req.input.bucket, &req.input.key)?;
        let Some(stored) = stored else {
            sse::check_plain_object(customer.as_ref(), KeySlot::Object).map_err(error::sse)?;
            return self.fs.head_object(req).await;
        };
        let sse = SseKeys::<kms_client::KmsClient>::head(&stored.sse, customer.as_ref())
            .map_err(error::sse)?;
        let mut response = self.fs.head_object(req).await?;
        let output = &mut response.output;
        output.content_length = Some(stored.layout.plaintext_size() as i64);
        clear_checksums!(output);
        let _context = set_sse_fields!(output, sse.for_operation(Operation::HeadObject));
        Ok(response)
    }

    pub(crate) async fn copy_object_impl(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let write = sse::parse_write_headers(&req.headers, TRANSPORT).map_err(error::sse)?;
        let source_key =
            sse::parse_copy_source_headers(&req.headers, TRANSPORT).map_err(error::sse)?;
        let (source_bucket, source_object) = match &req.input.copy_source {
            CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
            _ => return Err(s3_error!(NotImplemented)),
        };
        // The source is decrypted and the destination written as a new
        // object: its key and stream binding name the destination, so the
        // payload is always re-encrypted, never copied.
        let source = self
            .read_object(
                &req,
                &source_bucket,
                &source_object,
                source_key.as_ref(),
                KeySlot::CopySource,
                None,
            )
            .await?
            .output;
        let input = &req.input;
        let default = self.bucket_default(&input.bucket)?;
        let decision = sse::decide(write, default.as_ref());
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let put = if replace {
            PutObjectInput {
                metadata: input.metadata.clone(),
                content_type: input.content_type.clone(),
                content_encoding: input.content_encoding.clone(),
                content_disposition: input.content_disposition.clone(),
                content_language: input.content_language.clone(),
                cache_control: input.cache_control.clone(),
                ..Default::default()
            }
        } else {
            PutObjectInput {
                metadata: source.metadata,
                content_type: source.content_type,
                content_encoding: source.content_encoding,
                content_disposition: source.content_disposition,
                content_language: source.content_language,
                cache_control: source.cache_control,
                ..Default::default()
            }
        };
        let put = PutObjectInput {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            body: source.body,
            ..put
        };
        let (written, sse) = self
            .write_object(sub_request(&req, put), decision, Checks::default())
            .await?;
        let mut output = CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: written.e_tag,
                last_modified: Some(Timestamp::from(std::time::SystemTime::now())),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Some(sse) = sse {
            output.ssekms_encryption_context =
                set_sse_fields!(output, sse.for_operation(Operation::CopyObject));
        }
        Ok(S3Response::new(output))
    }

    /// Listings report plaintext sizes (s3s-fs sees stored files).
    pub(crate) fn fix_sizes(
        &self,
        bucket: &str,
        objects: Option<&mut Vec<Object>>,
    ) -> S3Result<()> {
        for object in objects.into_iter().flatten() {
            let Some(key) = &object.key else { continue };
            if let Some(stored) = self.stored_object(bucket, key)? {
                object.size = Some(stored.layout.plaintext_size() as i64);
            }
        }
        Ok(())
    }
}
