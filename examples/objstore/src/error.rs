//! The S3 error a request answers with.

use kms_client::sse::SseError;

/// An S3 error: the `<Code>` of the XML body and the HTTP status.
#[derive(Debug, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct S3Error {
    /// The S3 error code, e.g. `NoSuchKey`, `KMS.DisabledException`.
    pub code: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// For the client's eyes: never a key, never a path on disk.
    pub message: String,
}

impl S3Error {
    pub(crate) fn new(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            status,
            message: message.into(),
        }
    }

    pub(crate) fn no_such_key() -> Self {
        Self::new("NoSuchKey", 404, "The specified key does not exist.")
    }

    pub(crate) fn no_such_upload() -> Self {
        Self::new("NoSuchUpload", 404, "The specified upload does not exist.")
    }
}

/// kms-client decides the S3 code of every SSE failure (docs/sse.md,
/// "Errors"): bad SSE headers are 400s, a wrong SSE-C key 403, kmsd
/// unreachable or overloaded 503 `ServiceUnavailable` (worth retrying), a
/// disabled key `KMS.DisabledException`, a stored key or payload that does
/// not authenticate 500 `InternalError`.
impl From<SseError> for S3Error {
    fn from(error: SseError) -> Self {
        Self::new(error.s3_code(), error.http_status(), error.to_string())
    }
}

/// A local I/O failure: 500, with the detail left to the server's log.
impl From<std::io::Error> for S3Error {
    fn from(error: std::io::Error) -> Self {
        eprintln!("objstore: I/O error: {error}");
        Self::new("InternalError", 500, "We encountered an internal error.")
    }
}
