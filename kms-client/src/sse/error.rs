//! Why an SSE request was refused, with the S3 error code and HTTP status
//! that AWS S3 answers (docs/sse.md has the table and the sources).

use std::fmt;

use crate::stream::StreamError;

/// Which triple of SSE-C headers a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySlot {
    /// `x-amz-server-side-encryption-customer-*`: the object written or read.
    Object,
    /// `x-amz-copy-source-server-side-encryption-customer-*`: the source of
    /// a CopyObject or UploadPartCopy.
    CopySource,
}

impl fmt::Display for KeySlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeySlot::Object => "x-amz-server-side-encryption-customer",
            KeySlot::CopySource => "x-amz-copy-source-server-side-encryption-customer",
        })
    }
}

/// An SSE request that cannot be served.
///
/// [`s3_code`](Self::s3_code) and [`http_status`](Self::http_status) give
/// what a storage server answers; the message (`Display`) is safe to send
/// to the client: it never contains key material.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    /// `x-amz-server-side-encryption` is neither `AES256` nor `aws:kms`.
    #[error("the server-side encryption algorithm {0:?} is not valid; use AES256 or aws:kms")]
    UnknownAlgorithm(String),
    /// `aws:kms:dsse` (dual-layer SSE-KMS) is deliberately not implemented.
    #[error("aws:kms:dsse (dual-layer server-side encryption) is not implemented; use aws:kms")]
    DsseNotImplemented,
    /// A KMS-only header came without `x-amz-server-side-encryption: aws:kms`.
    #[error("{header} requires x-amz-server-side-encryption: aws:kms")]
    RequiresKms {
        /// The offending header.
        header: &'static str,
    },
    /// `x-amz-server-side-encryption-context` is not base64 of a JSON object
    /// whose values are strings.
    #[error(
        "x-amz-server-side-encryption-context must be a base64-encoded UTF-8 string holding a JSON object of strings ({0})"
    )]
    InvalidContext(&'static str),
    /// The client's encryption context uses a key reserved for the server.
    #[error("encryption context keys starting with \"aws:\" are reserved (found {0:?})")]
    ReservedContextKey(String),
    /// `x-amz-server-side-encryption-bucket-key-enabled` is not a boolean.
    #[error("x-amz-server-side-encryption-bucket-key-enabled must be true or false")]
    InvalidBucketKeyFlag,
    /// A header that only applies when an object is written came with a
    /// read (GET, HEAD) or a part upload.
    #[error("{header} is not supported for this operation")]
    NotAllowedHere {
        /// The offending header.
        header: &'static str,
    },
    /// One header of an SSE-C triple is missing.
    #[error("requests with {slot} headers must provide {missing}")]
    IncompleteCustomerKey {
        /// Which triple.
        slot: KeySlot,
        /// What is missing, in words.
        missing: &'static str,
    },
    /// The SSE-C algorithm is not `AES256`.
    #[error("the {slot}-algorithm is not valid; the only valid value is AES256")]
    InvalidCustomerAlgorithm {
        /// Which triple.
        slot: KeySlot,
    },
    /// The SSE-C key is not base64 of 32 bytes.
    #[error("the {slot}-key was invalid for the specified algorithm (expected base64 of 32 bytes)")]
    InvalidCustomerKey {
        /// Which triple.
        slot: KeySlot,
    },
    /// The SSE-C key's MD5 differs from the one the client sent.
    #[error("the calculated MD5 of the {slot}-key did not match the {slot}-key-MD5 provided")]
    CustomerKeyMd5Mismatch {
        /// Which triple.
        slot: KeySlot,
    },
    /// SSE-C headers together with SSE-S3 or SSE-KMS headers.
    #[error(
        "server-side encryption with customer-provided keys is incompatible with the encryption method specified"
    )]
    CustomerKeyWithManagedSse,
    /// SSE-C headers over a connection the server does not consider secure:
    /// the key has crossed the network in the clear.
    #[error(
        "requests specifying server-side encryption with customer-provided keys must be made over a secure connection"
    )]
    InsecureTransport,
    /// The object (or upload, or copy source) is SSE-C and the request
    /// carries no key.
    #[error(
        "the object was stored using a form of server-side encryption; the correct {slot} parameters must be provided"
    )]
    CustomerKeyRequired {
        /// Which triple is needed.
        slot: KeySlot,
    },
    /// SSE-C headers for an object that is not SSE-C.
    #[error("the {slot} parameters are not applicable to this object")]
    CustomerKeyNotApplicable {
        /// Which triple was sent.
        slot: KeySlot,
    },
    /// The SSE-C key is not the one the object (or upload) was written with.
    #[error("access denied: the {slot}-key does not match the object's key")]
    CustomerKeyMismatch {
        /// Which triple.
        slot: KeySlot,
    },
    /// The PutBucketEncryption document is not the expected XML.
    #[error("the bucket encryption configuration is malformed: {0}")]
    MalformedBucketEncryption(&'static str),
    /// The PutBucketEncryption document is well formed but invalid.
    #[error("the bucket encryption configuration is invalid: {0}")]
    InvalidBucketEncryption(&'static str),
    /// kmsd refused or failed the call that gets or opens the data key.
    #[error("the key management service failed: {0}")]
    Kms(#[source] crate::Error),
    /// The stored SSE metadata of an object is damaged or from a newer
    /// version (a server-side problem, never the client's).
    #[error("the object's encryption metadata is invalid: {0}")]
    CorruptMetadata(String),
    /// The payload, its layout or a range could not be used.
    #[error(transparent)]
    Stream(#[from] StreamError),
}

impl SseError {
    /// The S3 error code (`<Code>` of the XML error body).
    pub fn s3_code(&self) -> &'static str {
        self.code_and_status().0
    }

    /// The HTTP status code.
    pub fn http_status(&self) -> u16 {
        self.code_and_status().1
    }

    fn code_and_status(&self) -> (&'static str, u16) {
        const INVALID_ARGUMENT: (&str, u16) = ("InvalidArgument", 400);
        const INVALID_REQUEST: (&str, u16) = ("InvalidRequest", 400);
        const INTERNAL: (&str, u16) = ("InternalError", 500);
        match self {
            SseError::UnknownAlgorithm(_)
            | SseError::RequiresKms { .. }
            | SseError::InvalidContext(_)
            | SseError::ReservedContextKey(_)
            | SseError::InvalidBucketKeyFlag
            | SseError::NotAllowedHere { .. }
            | SseError::IncompleteCustomerKey { .. }
            | SseError::InvalidCustomerKey { .. }
            | SseError::CustomerKeyMd5Mismatch { .. }
            | SseError::CustomerKeyWithManagedSse
            | SseError::InvalidBucketEncryption(_) => INVALID_ARGUMENT,
            SseError::DsseNotImplemented => ("NotImplemented", 501),
            SseError::InvalidCustomerAlgorithm { .. } => ("InvalidEncryptionAlgorithmError", 400),
            SseError::InsecureTransport
            | SseError::CustomerKeyRequired { .. }
            | SseError::CustomerKeyNotApplicable { .. } => INVALID_REQUEST,
            SseError::CustomerKeyMismatch { .. } => ("AccessDenied", 403),
            SseError::MalformedBucketEncryption(_) => ("MalformedXML", 400),
            SseError::Kms(error) => kms_code_and_status(error),
            SseError::CorruptMetadata(_) => INTERNAL,
            SseError::Stream(StreamError::RangeOutOfBounds { .. }) => ("InvalidRange", 416),
            SseError::Stream(_) => INTERNAL,
        }
    }
}

/// S3 reports KMS failures with the KMS exception name behind `KMS.`.
fn kms_code_and_status(error: &crate::Error) -> (&'static str, u16) {
    if error.is_transient() {
        return ("ServiceUnavailable", 503);
    }
    use crate::ErrorReason as R;
    match error.reason_kind() {
        Some(R::KeyNotFound | R::InvalidKeyId | R::NoDefaultKey | R::KeyVersionNotFound) => {
            ("KMS.NotFoundException", 400)
        }
        Some(R::KeyDisabled) => ("KMS.DisabledException", 400),
        Some(R::KeyPendingDeletion | R::InvalidKeyState) => ("KMS.KMSInvalidStateException", 400),
        Some(R::InvalidEncryptionContext) => ("InvalidArgument", 400),
        Some(R::PermissionDenied) => ("AccessDenied", 403),
        // A stored sealed key that does not open under the object's context
        // (moved to another name, or damaged) is the server's problem.
        _ => ("InternalError", 500),
    }
}
