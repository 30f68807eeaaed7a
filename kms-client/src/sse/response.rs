//! The SSE response headers, per S3 operation.

use super::{CUSTOMER_ALGORITHM, headers::names};

/// The S3 operations that answer with SSE headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// PutObject.
    PutObject,
    /// GetObject.
    GetObject,
    /// HeadObject.
    HeadObject,
    /// CopyObject (the destination's encryption).
    CopyObject,
    /// CreateMultipartUpload.
    CreateMultipartUpload,
    /// UploadPart and UploadPartCopy.
    UploadPart,
    /// CompleteMultipartUpload.
    CompleteMultipartUpload,
}

/// How an object is encrypted, as S3 reports it. Build it with
/// [`SseKeys`](super::SseKeys) and narrow it with
/// [`for_operation`](Self::for_operation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseResponse {
    /// `x-amz-server-side-encryption`: `AES256` or `aws:kms` (absent for
    /// SSE-C and plain objects).
    pub server_side_encryption: Option<&'static str>,
    /// `x-amz-server-side-encryption-aws-kms-key-id` (SSE-KMS).
    pub kms_key_id: Option<String>,
    /// `x-amz-server-side-encryption-context`: the client's context, base64
    /// JSON (SSE-KMS with a context).
    pub context: Option<String>,
    /// `x-amz-server-side-encryption-bucket-key-enabled` (SSE-KMS).
    pub bucket_key_enabled: Option<bool>,
    /// `x-amz-server-side-encryption-customer-algorithm` (SSE-C).
    pub customer_algorithm: Option<&'static str>,
    /// `x-amz-server-side-encryption-customer-key-MD5` (SSE-C): the MD5 of
    /// the key the client sent with this request.
    pub customer_key_md5: Option<String>,
}

impl SseResponse {
    /// SSE-C, for a key with this MD5.
    pub(crate) fn customer(key_md5: &str) -> Self {
        Self {
            customer_algorithm: Some(CUSTOMER_ALGORITHM),
            customer_key_md5: Some(key_md5.to_owned()),
            ..Self::default()
        }
    }

    /// Only the fields AWS returns for `operation`: the context only on
    /// writes (PutObject, CopyObject, CreateMultipartUpload), the SSE-C
    /// fields on everything but CompleteMultipartUpload.
    pub fn for_operation(&self, operation: Operation) -> Self {
        let mut out = self.clone();
        match operation {
            Operation::PutObject | Operation::CopyObject | Operation::CreateMultipartUpload => {}
            Operation::GetObject | Operation::HeadObject | Operation::UploadPart => {
                out.context = None;
            }
            Operation::CompleteMultipartUpload => {
                out.context = None;
                out.customer_algorithm = None;
                out.customer_key_md5 = None;
            }
        }
        out
    }

    /// The headers for `operation`, lower-case names.
    pub fn headers(&self, operation: Operation) -> Vec<(&'static str, String)> {
        let this = self.for_operation(operation);
        let mut out = Vec::new();
        let mut push = |name, value: Option<String>| {
            if let Some(value) = value {
                out.push((name, value));
            }
        };
        push(names::SSE, this.server_side_encryption.map(str::to_owned));
        push(names::KMS_KEY_ID, this.kms_key_id);
        push(names::CONTEXT, this.context);
        push(
            names::BUCKET_KEY_ENABLED,
            this.bucket_key_enabled.map(|b| b.to_string()),
        );
        push(
            names::CUSTOMER_ALGORITHM,
            this.customer_algorithm.map(str::to_owned),
        );
        push(names::CUSTOMER_KEY_MD5, this.customer_key_md5);
        out
    }
}
