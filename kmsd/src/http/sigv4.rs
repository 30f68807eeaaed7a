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
mod error;
mod scope;

pub use self::{
    error::AuthError,
    scope::{Credentials, HostPolicy, Policy},
};

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service the credential scope must name.
pub const SERVICE: &str = "s3";
/// How far the request time may be from the server clock, either way.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

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
    refuse_unsupported(parts)?;
    let header = single_header(&parts.headers, "authorization")?.ok_or(AuthError::Missing)?;
    let auth = parse_authorization(header)?;
    check_scope(parts, &auth, policy)?;
    let (amz_date, time) = check_date(parts, &auth, policy, now)?;
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
    let payload_hash = payload_hash(parts, &body_hash)?;
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

/// Refuses what kmsd does not take: presigned URLs and session tokens.
fn refuse_unsupported(parts: &Parts) -> Result<(), AuthError> {
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
    Ok(())
}

/// Checks the credential scope's service and region, and that `host`,
/// `x-amz-date` and every `x-amz-*` header present are signed.
fn check_scope(parts: &Parts, auth: &Authorization<'_>, policy: &Policy) -> Result<(), AuthError> {
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
    Ok(())
}

/// The request's `x-amz-date` and the time it names, which must be the
/// credential scope's day and within the allowed skew of `now`.
fn check_date<'p>(
    parts: &'p Parts,
    auth: &Authorization<'_>,
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<(&'p str, OffsetDateTime), AuthError> {
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
    Ok((amz_date, time))
}

/// The payload hash the signature covers: `x-amz-content-sha256`, or the
/// body's own hash when the header is absent. Unsigned and streaming
/// payloads are refused.
fn payload_hash(parts: &Parts, body_hash: &str) -> Result<String, AuthError> {
    match single_header(&parts.headers, "x-amz-content-sha256")? {
        Some(v) if v == "UNSIGNED-PAYLOAD" || v.starts_with("STREAMING-") => {
            Err(AuthError::UnsignedPayload)
        }
        Some(v) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(v.to_owned()),
        Some(_) => Err(AuthError::MalformedContentSha256),
        None => Ok(body_hash.to_owned()),
    }
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
