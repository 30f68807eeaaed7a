//! Why a SigV4 request was refused, and what the caller is told.

use super::ALGORITHM;

/// Why a request was not authenticated. Every variant is a 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No Authorization header.
    #[error("the request is not signed: send an AWS Signature Version 4 Authorization header")]
    Missing,
    /// Query-string authentication.
    #[error(
        "presigned (query-string) authentication is not supported; sign with the Authorization header"
    )]
    Presigned,
    /// Temporary credentials.
    #[error(
        "temporary credentials (x-amz-security-token) are not supported; sign with an admin access key"
    )]
    SessionToken,
    /// Another scheme than AWS4-HMAC-SHA256.
    #[error("unsupported authorization scheme: only {ALGORITHM} is accepted")]
    Algorithm,
    /// The Authorization header does not parse.
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    /// The credential scope is not one kmsd accepts.
    #[error("invalid credential scope: {0}")]
    Scope(String),
    /// `x-amz-date` is missing or malformed.
    #[error("x-amz-date {0}")]
    Date(&'static str),
    /// The request is too old or too far in the future.
    #[error(
        "the request time {request} differs from the server time {server} by more than 15 minutes"
    )]
    Skewed {
        /// The request's x-amz-date.
        request: String,
        /// The server's clock, in the same form.
        server: String,
    },
    /// The access key id is not configured. Answered exactly like
    /// [`AuthError::SignatureMismatch`]; the difference is only logged.
    #[error("the access key id {0:?} is not known to this kmsd")]
    UnknownAccessKey(String),
    /// The request was signed for a host this kmsd does not answer to.
    #[error(
        "the request was signed for host {0:?}, which this kmsd does not answer to (see [admin] hosts)"
    )]
    Host(String),
    /// The signature was already used (a replay, or an identical request
    /// sent twice within one second).
    #[error(
        "this signature was already used: sign every request anew (an identical request sent within the same second has the same signature)"
    )]
    Replayed,
    /// The request was signed before this kmsd started, so the replay
    /// cache, which lives in memory, cannot vouch for it.
    #[error(
        "the request was signed before this kmsd started; sign it again (check the client's clock)"
    )]
    BeforeStart,
    /// The replay cache is full of unexpired signatures.
    #[error("too many admin requests in the last 15 minutes; retry later")]
    ReplayCacheFull,
    /// A header listed in SignedHeaders is not in the request.
    #[error("header {0} is listed in SignedHeaders but missing from the request")]
    MissingSignedHeader(String),
    /// A header that must be signed is not.
    #[error("header {0} is present but not signed")]
    UnsignedHeader(String),
    /// `UNSIGNED-PAYLOAD` or a streaming payload.
    #[error(
        "unsigned and streaming payloads are not accepted: set x-amz-content-sha256 to the SHA-256 of the body"
    )]
    UnsignedPayload,
    /// `x-amz-content-sha256` is not a hex SHA-256.
    #[error("x-amz-content-sha256 is not a hex SHA-256")]
    MalformedContentSha256,
    /// The body does not hash to the signed payload hash.
    #[error("the body does not match the signed x-amz-content-sha256")]
    ContentSha256Mismatch,
    /// The signature is wrong.
    #[error(
        "the signature does not match: check the access key, the secret key, the region and how the request was signed"
    )]
    SignatureMismatch,
}

impl AuthError {
    /// The S3 error code of the refusal.
    pub fn s3_code(&self) -> &'static str {
        match self {
            AuthError::Missing
            | AuthError::Presigned
            | AuthError::SessionToken
            | AuthError::Date(_)
            | AuthError::MissingSignedHeader(_)
            | AuthError::UnsignedHeader(_)
            | AuthError::UnsignedPayload => "AccessDenied",
            AuthError::Algorithm | AuthError::Malformed(_) | AuthError::Scope(_) => {
                "AuthorizationHeaderMalformed"
            }
            AuthError::Skewed { .. } | AuthError::BeforeStart => "RequestTimeTooSkewed",
            AuthError::MalformedContentSha256 | AuthError::ContentSha256Mismatch => {
                "XAmzContentSHA256Mismatch"
            }
            AuthError::UnknownAccessKey(_) | AuthError::SignatureMismatch => {
                "SignatureDoesNotMatch"
            }
            AuthError::Host(_) | AuthError::Replayed => "AccessDenied",
            AuthError::ReplayCacheFull => "SlowDown",
        }
    }

    /// The HTTP status of the refusal: 403, but 503 for a full replay
    /// cache (nothing is wrong with the request itself).
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            AuthError::ReplayCacheFull => http::StatusCode::SERVICE_UNAVAILABLE,
            _ => http::StatusCode::FORBIDDEN,
        }
    }

    /// The message the caller sees: an unknown access key reads exactly
    /// like a wrong signature.
    pub fn public_message(&self) -> String {
        match self {
            AuthError::UnknownAccessKey(_) => AuthError::SignatureMismatch.to_string(),
            other => other.to_string(),
        }
    }
}
