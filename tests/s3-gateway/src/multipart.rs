//! Multipart uploads: the upload's data key is decided and sealed at
//! CreateMultipartUpload, every part is its own OSE1 stream (so parts can
//! be uploaded in any order and retried), and the layout that ties them
//! together is sealed at CompleteMultipartUpload.

use kms_client::{
    sse::{self, CustomerKey, KeySlot, ObjectId, Operation, SseResponse, StoredObject, StoredSse},
    stream::{Encryptor, Layout, PartNumber},
};
use s3s::{S3, S3Request, S3Response, S3Result, dto::*, s3_error};

use crate::{
    body::{self, Checks},
    error,
    gateway::{Gateway, sub_request},
    objects::{TRANSPORT, clear_checksums, set_sse_fields, take_checks},
};

/// S3's smallest part, but the last.
const MIN_PART: u64 = 5 * 1024 * 1024;

impl Gateway {
    fn stored_upload(&self, upload_id: &str) -> S3Result<Option<StoredSse>> {
        let Some(map) = self.store.upload(upload_id).map_err(error::internal)? else {
            return Ok(None);
        };
        match StoredSse::from_map(&map).map_err(error::sse)? {
            Some(stored) => Ok(Some(stored)),
            None => Err(error::internal("an upload record without a mode")),
        }
    }

    pub(crate) async fn create_multipart_upload_impl(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let write = sse::parse_write_headers(&req.headers, TRANSPORT).map_err(error::sse)?;
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let default = self.bucket_default(&bucket)?;
        let decision = sse::decide(write, default.as_ref());
        let sealing = self
            .sse
            .seal(&decision, &ObjectId::new(&bucket, &key))
            .await
            .map_err(error::sse)?;
        let mut response = self.fs.create_multipart_upload(req).await?;
        if let Some(sealing) = sealing {
            let upload_id = response
                .output
                .upload_id
                .clone()
                .ok_or_else(|| s3_error!(InternalError))?;
            self.store
                .put_upload(&upload_id, &sealing.stored)
                .map_err(error::internal)?;
            let output = &mut response.output;
            output.ssekms_encryption_context = set_sse_fields!(
                output,
                sealing
                    .response
                    .for_operation(Operation::CreateMultipartUpload)
            );
        }
        Ok(response)
    }

    /// Stores one part: encrypted under the upload's key when the upload
    /// is SSE, as sent otherwise.
    #[allow(clippy::too_many_arguments)]
    async fn store_part<T>(
        &self,
        base: &S3Request<T>,
        input: UploadPartInput,
        trailers: Option<s3s::TrailingHeaders>,
        customer: Option<&CustomerKey>,
        checks: Checks,
    ) -> S3Result<(UploadPartOutput, Option<SseResponse>)> {
        let Some(stored) = self.stored_upload(&input.upload_id)? else {
            sse::check_plain_object(customer, KeySlot::Object).map_err(error::sse)?;
            let mut req = sub_request(base, input);
            req.trailing_headers = trailers;
            return Ok((self.fs.upload_part(req).await?.output, None));
        };
        let mut input = input;
        let (bucket, key, upload_id) = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        let object = ObjectId::new(&bucket, &key);
        let opened = self
            .sse
            .open(&stored, customer, KeySlot::Object, &object)
            .await
            .map_err(error::sse)?;
        let part = u32::try_from(input.part_number)
            .ok()
            .and_then(|n| PartNumber::multipart(n).ok())
            .ok_or_else(|| s3_error!(InvalidArgument, "part numbers run from 1 to 10000"))?;
        let binding = object.binding();
        let encryptor = Encryptor::new(&opened.key, &binding, part, self.chunk_size)
            .map_err(|e| error::sse(e.into()))?;
        let plaintext = input.body.take().ok_or_else(|| s3_error!(IncompleteBody))?;
        let (stored_body, outcome) = body::encrypt(plaintext, encryptor, checks)?;
        input.body = Some(stored_body);
        input.content_length = None;
        let result = self.fs.upload_part(sub_request(base, input)).await;
        let mut output = match (result, outcome.take()) {
            (Err(_), Some(Err(digest))) => return Err(digest),
            (Err(e), _) => return Err(e),
            (Ok(response), Some(Ok((info, checksum)))) => {
                self.store
                    .put_part(&upload_id, &info)
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
        let _context =
            set_sse_fields!(output, opened.response.for_operation(Operation::UploadPart));
        Ok((output, None))
    }

    pub(crate) async fn upload_part_impl(
        &self,
        mut req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let customer = sse::parse_read_headers(&req.headers, TRANSPORT).map_err(error::sse)?;
        let trailers = req.trailing_headers.take();
        let encrypted = self.stored_upload(&req.input.upload_id)?.is_some();
        let (checks, trailers) = if encrypted {
            (take_checks!(req.input, trailers), None)
        } else {
            (Checks::default(), trailers)
        };
        let input = std::mem::take(&mut req.input);
        let (output, _) = self
            .store_part(&req, input, trailers, customer.as_ref(), checks)
            .await?;
        Ok(S3Response::new(output))
    }

    pub(crate) async fn upload_part_copy_impl(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let customer = sse::parse_read_headers(&req.headers, TRANSPORT).map_err(error::sse)?;
        let source_key =
            sse::parse_copy_source_headers(&req.headers, TRANSPORT).map_err(error::sse)?;
        let input = &req.input;
        let (source_bucket, source_object) = match &input.copy_source {
            CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
            _ => return Err(s3_error!(NotImplemented)),
        };
        let range = input
            .copy_source_range
            .as_deref()
            .map(parse_copy_range)
            .transpose()?;
        // Whatever the source's encryption, its plaintext becomes the part,
        // encrypted as the upload says.
        let source = self
            .read_object(
                &req,
                &source_bucket,
                &source_object,
                source_key.as_ref(),
                KeySlot::CopySource,
                range,
            )
            .await?
            .output;
        let part = UploadPartInput {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            upload_id: input.upload_id.clone(),
            part_number: input.part_number,
            body: source.body,
            ..Default::default()
        };
        let (written, _) = self
            .store_part(&req, part, None, customer.as_ref(), Checks::default())
            .await?;
        let mut output = UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: written.e_tag,
                last_modified: Some(Timestamp::from(std::time::SystemTime::now())),
                ..Default::default()
            }),
            ..Default::default()
        };
        output.server_side_encryption = written.server_side_encryption;
        output.ssekms_key_id = written.ssekms_key_id;
        output.bucket_key_enabled = written.bucket_key_enabled;
        output.sse_customer_algorithm = written.sse_customer_algorithm;
        output.sse_customer_key_md5 = written.sse_customer_key_md5;
        Ok(S3Response::new(output))
    }

    pub(crate) async fn complete_multipart_upload_impl(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let customer = sse::parse_read_headers(&req.headers, TRANSPORT).map_err(error::sse)?;
        let (bucket, key, upload_id) = (
            req.input.bucket.clone(),
            req.input.key.clone(),
            req.input.upload_id.clone(),
        );
        let Some(stored) = self.stored_upload(&upload_id)? else {
            sse::check_plain_object(customer.as_ref(), KeySlot::Object).map_err(error::sse)?;
            let mut response = self.fs.complete_multipart_upload(req).await?;
            if let Some(future) = response.output.future.take() {
                response.output = future.await?;
            }
            self.store
                .remove_object(&bucket, &key)
                .map_err(error::internal)?;
            return Ok(response);
        };
        let object = ObjectId::new(&bucket, &key);
        // The layout tag is keyed by the data key: an SSE-C upload needs the
        // customer's key here too (boto3 and the AWS CLI send it).
        let opened = self
            .sse
            .open(&stored, customer.as_ref(), KeySlot::Object, &object)
            .await
            .map_err(error::sse)?;
        let numbers: Vec<i32> = req
            .input
            .multipart_upload
            .as_ref()
            .and_then(|upload| upload.parts.as_ref())
            .map(|parts| parts.iter().filter_map(|p| p.part_number).collect())
            .unwrap_or_default();
        let mut infos = Vec::with_capacity(numbers.len());
        for (i, number) in numbers.iter().enumerate() {
            // Checked here, before s3s-fs replaces the object, so a refused
            // completion never leaves the object without its metadata.
            if usize::try_from(*number).ok() != Some(i + 1) {
                return Err(s3_error!(InvalidPartOrder, "parts must be 1, 2, 3, …"));
            }
            let part = PartNumber::multipart(*number as u32).map_err(|_| s3_error!(InvalidPart))?;
            let info = self
                .store
                .part(&upload_id, part)
                .map_err(error::internal)?
                .ok_or_else(|| s3_error!(InvalidPart, "part {number} was not uploaded"))?;
            if i + 1 < numbers.len() && info.plaintext_size < MIN_PART {
                return Err(s3_error!(EntityTooSmall));
            }
            infos.push(info);
        }
        if infos.is_empty() {
            return Err(s3_error!(InvalidPart, "You must specify at least one part"));
        }
        let layout = Layout::seal(&opened.key, &object.binding(), infos)
            .map_err(|e| error::sse(e.into()))?;
        let mut response = self.fs.complete_multipart_upload(req).await?;
        if let Some(future) = response.output.future.take() {
            response.output = future.await?;
        }
        self.store
            .put_object(
                &bucket,
                &key,
                &StoredObject {
                    sse: stored,
                    layout,
                },
            )
            .map_err(error::internal)?;
        self.store
            .remove_upload(&upload_id)
            .map_err(error::internal)?;
        let output = &mut response.output;
        clear_checksums!(output);
        // AWS answers CompleteMultipartUpload without the SSE-C fields.
        let sse = opened
            .response
            .for_operation(Operation::CompleteMultipartUpload);
        output.server_side_encryption = sse
            .server_side_encryption
            .map(ServerSideEncryption::from_static);
        output.ssekms_key_id = sse.kms_key_id;
        output.bucket_key_enabled = sse.bucket_key_enabled;
        Ok(response)
    }
}

/// `bytes=first-last` of UploadPartCopy, in plaintext offsets.
fn parse_copy_range(text: &str) -> S3Result<Range> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "x-amz-copy-source-range must be bytes=first-last"
        )
    };
    let (first, last) = text
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    let first: u64 = first.parse().map_err(|_| bad())?;
    let last: u64 = last.parse().map_err(|_| bad())?;
    if last < first {
        return Err(bad());
    }
    Ok(Range::Int {
        first,
        last: Some(last),
    })
}
