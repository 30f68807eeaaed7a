//! AWS Signature Version 4 verification (header form), as the admin REST
//! API accepts it from `awscurl --service s3` and the AWS SDKs.
//!
//! Written from the SigV4 specification and the S3 rules it adds; the
//! `aws-sigv4` crate only signs. What is accepted, and why:
//!
//! - Only the `Authorization: AWS4-HMAC-SHA256 ...` form. Presigned query
//!   strings and `x-amz-security-token` (temporary credentials) are refused:
//!   kmsd has no STS, so a token could never be checked.
//! - The credential scope must name service `s3` (what the RustFS admin API
//!   and its tools sign with) and the configured region (`us-east-1`
//!   unless `[admin] region` says otherwise).
//! - The signed `Host` must be one this kmsd answers to ([`HostPolicy`]):
//!   a request signed for another node is refused, so a captured request
//!   cannot be replayed there.
//! - An unknown access key and a wrong signature are refused alike (same
//!   code, same message, an HMAC computed either way), so a caller cannot
//!   probe which access keys exist.
//! - `x-amz-date` must be signed and within 15 minutes of the server clock.
//! - `host` must be signed, and so must every `x-amz-*` header sent (S3's
//!   rule), so nothing that changes the meaning of a request rides along
//!   unsigned.
//! - The payload is always signed: `x-amz-content-sha256` must be the hex
//!   SHA-256 of the body (when absent, the body's hash is used, as plain
//!   SigV4 does). `UNSIGNED-PAYLOAD` and streaming payloads are refused:
//!   admin bodies are small and carry configuration, so they are bound to
//!   the signature.
//! - The path is canonicalised the S3 way: each segment is decoded once and
//!   encoded once (no double encoding, no `.`/`..` normalisation).
//!
//! Errors name what was wrong with the request; they never contain the
//! secret key, the signing key or the expected signature.

use std::time::Duration;

use http::{HeaderMap, request::Parts};
use kms_core::SecretString;
use time::{OffsetDateTime, PrimitiveDateTime, macros::format_description};
use zeroize::Zeroizing;

#[cfg(test)]
use self::canonical::{canonical_query, canonical_uri};
pub use self::canonical::{canonical_request, signing_key, string_to_sign};
use crate::crypto;

mod canonical;
mod scope;

pub use self::scope::{Credentials, HostPolicy, Policy};

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service the credential scope must name.
pub const SERVICE: &str = "s3";
/// How far the request time may be from the server clock, either way.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

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

/// The parsed `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    /// The access key id.
    pub access_key: &'a str,
    /// `YYYYMMDD`.
    pub date: &'a str,
    /// The region.
    pub region: &'a str,
    /// The service.
    pub service: &'a str,
    /// Lowercase header names, sorted.
    pub signed_headers: Vec<&'a str>,
    /// The 32 signature bytes.
    pub signature: [u8; 32],
}

/// Parses `AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/SERVICE/aws4_request,
/// SignedHeaders=a;b, Signature=hex` (the separators may carry spaces).
pub fn parse_authorization(value: &str) -> Result<Authorization<'_>, AuthError> {
    let (algorithm, rest) = value.split_once(' ').ok_or(AuthError::Malformed(
        "expected `AWS4-HMAC-SHA256 Credential=...`",
    ))?;
    if algorithm != ALGORITHM {
        return Err(AuthError::Algorithm);
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or(AuthError::Malformed("expected name=value pairs"))?;
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(AuthError::Malformed("unknown field")),
        };
        if slot.replace(value).is_some() {
            return Err(AuthError::Malformed("a field is given twice"));
        }
    }
    let credential = credential.ok_or(AuthError::Malformed("Credential is missing"))?;
    let signed = signed.ok_or(AuthError::Malformed("SignedHeaders is missing"))?;
    let signature = signature.ok_or(AuthError::Malformed("Signature is missing"))?;

    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, terminator] = scope[..] else {
        return Err(AuthError::Malformed(
            "Credential must be <access key>/<YYYYMMDD>/<region>/<service>/aws4_request",
        ));
    };
    if access_key.is_empty() {
        return Err(AuthError::Malformed("the access key id is empty"));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::Malformed("the credential date is not YYYYMMDD"));
    }
    if region.is_empty() || service.is_empty() || terminator != "aws4_request" {
        return Err(AuthError::Malformed(
            "Credential must be <access key>/<YYYYMMDD>/<region>/<service>/aws4_request",
        ));
    }

    let signed_headers: Vec<&str> = signed.split(';').collect();
    for name in &signed_headers {
        let token = !name.is_empty()
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
            });
        if !token {
            return Err(AuthError::Malformed(
                "SignedHeaders must list lowercase header names separated by ';'",
            ));
        }
    }
    if !signed_headers.windows(2).all(|w| w[0] < w[1]) {
        return Err(AuthError::Malformed(
            "SignedHeaders must be sorted and without repeats",
        ));
    }

    let mut bytes = [0u8; 32];
    let lower_hex = signature.len() == 64
        && signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !lower_hex || hex::decode_to_slice(signature, &mut bytes).is_err() {
        return Err(AuthError::Malformed(
            "Signature must be 64 lowercase hex digits",
        ));
    }
    Ok(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers,
        signature: bytes,
    })
}

/// Parses `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(value: &str) -> Option<OffsetDateTime> {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    if value.len() != 16 {
        return None;
    }
    PrimitiveDateTime::parse(value, format)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

fn format_amz_date(t: OffsetDateTime) -> String {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    t.format(format)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Who signed an accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id.
    pub access_key: String,
    /// The signature (the replay cache's key).
    pub signature: [u8; 32],
    /// When the request was signed (`x-amz-date`).
    pub signed_at: OffsetDateTime,
}

fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::Malformed(
            "a header that may appear once is repeated",
        ));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| AuthError::Malformed("a header is not ASCII"))
}

/// Verifies the SigV4 signature of a request whose body is `body`, at time
/// `now`.
pub fn verify(
    parts: &Parts,
    body: &[u8],
    credentials: &Credentials,
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<Verified, AuthError> {
    let presigned = parts.uri.query().is_some_and(|q| {
        q.split('&').any(|pair| {
            let name = pair.split('=').next().unwrap_or(pair);
            name.eq_ignore_ascii_case("X-Amz-Signature")
                || name.eq_ignore_ascii_case("X-Amz-Credential")
        })
    });
    if presigned {
        return Err(AuthError::Presigned);
    }
    if parts.headers.contains_key("x-amz-security-token") {
        return Err(AuthError::SessionToken);
    }
    let header = single_header(&parts.headers, "authorization")?.ok_or(AuthError::Missing)?;
    let auth = parse_authorization(header)?;

    if auth.service != policy.service {
        return Err(AuthError::Scope(format!(
            "service {:?}; kmsd accepts {:?}",
            printable(auth.service),
            policy.service
        )));
    }
    if let Some(region) = &policy.region
        && auth.region != region
    {
        return Err(AuthError::Scope(format!(
            "region {:?}; this kmsd accepts {region:?}",
            printable(auth.region)
        )));
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.contains(&required) {
            return Err(AuthError::UnsignedHeader(required.to_owned()));
        }
    }
    for name in parts.headers.keys() {
        if name.as_str().starts_with("x-amz-") && !auth.signed_headers.contains(&name.as_str()) {
            return Err(AuthError::UnsignedHeader(name.as_str().to_owned()));
        }
    }

    let amz_date = single_header(&parts.headers, "x-amz-date")?
        .ok_or(AuthError::MissingSignedHeader("x-amz-date".into()))?;
    let time = parse_amz_date(amz_date).ok_or(AuthError::Date("is not YYYYMMDDTHHMMSSZ"))?;
    if !amz_date.starts_with(auth.date) {
        return Err(AuthError::Date(
            "and the credential scope name different days",
        ));
    }
    if (now - time).unsigned_abs() > policy.max_skew {
        return Err(AuthError::Skewed {
            request: amz_date.to_owned(),
            server: format_amz_date(now),
        });
    }

    if let Some(hosts) = &policy.hosts {
        let host = signed_host(parts).unwrap_or_default();
        if !hosts.allows(&host) {
            return Err(AuthError::Host(printable(&host)));
        }
    }

    // An unknown access key costs the same HMAC as a known one, and is
    // reported like a wrong signature (see `AuthError::public_message`).
    let unknown = SecretString::new(String::from("kmsd: no such access key"));
    let (secret, known) = match credentials.secret(auth.access_key) {
        Some(secret) => (secret, true),
        None => (&unknown, false),
    };

    let body_hash = hex::encode(crypto::sha256(body));
    let payload_hash = match single_header(&parts.headers, "x-amz-content-sha256")? {
        Some(v) if v == "UNSIGNED-PAYLOAD" || v.starts_with("STREAMING-") => {
            return Err(AuthError::UnsignedPayload);
        }
        Some(v) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => v.to_owned(),
        Some(_) => return Err(AuthError::MalformedContentSha256),
        None => body_hash.clone(),
    };

    let canonical = canonical_request(parts, &auth.signed_headers, &payload_hash)?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let to_sign = string_to_sign(amz_date, &scope, &canonical);
    let key = signing_key(secret, auth.date, auth.region, auth.service);
    let expected = Zeroizing::new(crypto::hmac_sha256(key.as_slice(), &[to_sign.as_bytes()]));
    if !known {
        return Err(AuthError::UnknownAccessKey(printable(auth.access_key)));
    }
    if !crypto::constant_time_eq(expected.as_slice(), &auth.signature) {
        tracing::debug!(
            access_key = auth.access_key,
            canonical_request = %String::from_utf8_lossy(&canonical),
            "SigV4 signature mismatch (the canonical request kmsd computed)"
        );
        return Err(AuthError::SignatureMismatch);
    }
    // Checked after the signature: a correctly signed request whose body
    // changed on the way is reported as exactly that.
    if !payload_hash.eq_ignore_ascii_case(&body_hash) {
        return Err(AuthError::ContentSha256Mismatch);
    }
    Ok(Verified {
        access_key: auth.access_key.to_owned(),
        signature: auth.signature,
        signed_at: time,
    })
}

/// The host a request was signed for: its `Host` header, or the
/// `:authority` of an HTTP/2 request (as the canonical request takes it).
fn signed_host(parts: &Parts) -> Option<String> {
    match parts.headers.get("host") {
        Some(value) => value.to_str().ok().map(str::to_owned),
        None => parts.uri.authority().map(|a| a.as_str().to_owned()),
    }
}

/// A short printable prefix of untrusted text, for error messages.
fn printable(s: &str) -> String {
    s.chars().take(64).filter(|c| !c.is_control()).collect()
}

mod replay;
pub use self::replay::ReplayCache;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
