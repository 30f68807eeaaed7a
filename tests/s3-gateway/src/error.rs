//! kms-client's errors as S3 errors.

use kms_client::sse::SseError;
use s3s::{S3Error, S3ErrorCode};

/// The S3 error for an SSE error: code, status and message as kms-client
/// decided them (docs/sse.md); the message never holds key material.
pub(crate) fn sse(error: SseError) -> S3Error {
    let code =
        S3ErrorCode::from_bytes(error.s3_code().as_bytes()).unwrap_or(S3ErrorCode::InternalError);
    if error.http_status() >= 500 {
        tracing::error!(%error, "SSE failure");
    }
    let mut out = S3Error::with_message(code, error.to_string());
    if let Ok(status) = http::StatusCode::from_u16(error.http_status()) {
        out.set_status_code(status);
    }
    out
}

/// A failure of the gateway's own files: logged, answered as 500.
pub(crate) fn internal(error: impl std::fmt::Display) -> S3Error {
    tracing::error!(%error, "gateway storage failure");
    S3Error::with_message(S3ErrorCode::InternalError, "internal gateway error")
}
