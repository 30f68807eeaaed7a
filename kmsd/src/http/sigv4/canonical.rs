//! The SigV4 canonical request, string to sign and signing key, from the
//! specification (see the rules in the parent module).

use http::request::Parts;
use kms_core::SecretString;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};
use zeroize::Zeroizing;

use super::{ALGORITHM, AuthError};
use crate::crypto;

/// RFC 3986 unreserved characters stay; everything else is `%XX`.
pub(super) const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The canonical URI: every segment of the path as sent, decoded once and
/// encoded once (S3 semantics).
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    path.split('/')
        .map(|segment| {
            let decoded: Vec<u8> = percent_decode_str(segment).collect();
            percent_encode(&decoded, UNRESERVED).to_string()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The canonical query string: pairs decoded, strictly re-encoded, sorted
/// by name then value; a bare name gets an empty value. `+` is a literal
/// plus, as SigV4 signs the query as sent.
pub fn canonical_query(query: Option<&str>) -> String {
    let encode = |s: &str| {
        let decoded: Vec<u8> = percent_decode_str(s).collect();
        percent_encode(&decoded, UNRESERVED).to_string()
    };
    let mut pairs: Vec<(String, String)> = query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (encode(name), encode(value))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// One canonical header value: each value trimmed, inner runs of spaces
/// collapsed, repeated headers joined with `,`.
fn canonical_value<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, value) in values.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let value = value.trim_ascii();
        let mut previous_space = false;
        for &b in value {
            if b == b' ' && previous_space {
                continue;
            }
            previous_space = b == b' ';
            out.push(b);
        }
    }
    out
}

/// The canonical request of `parts` for the headers in `signed` (bytes,
/// since header values need not be UTF-8).
pub fn canonical_request(
    parts: &Parts,
    signed: &[&str],
    payload_hash: &str,
) -> Result<Vec<u8>, AuthError> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(parts.uri.path()).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query(parts.uri.query()).as_bytes());
    out.push(b'\n');
    for name in signed {
        let mut values = parts.headers.get_all(*name).iter().peekable();
        let value = if values.peek().is_some() {
            canonical_value(values.map(|v| v.as_bytes()))
        } else if *name == "host" {
            // HTTP/2 carries the host in :authority, which hyper puts in
            // the URI rather than in a Host header.
            match parts.uri.authority() {
                Some(authority) => authority.as_str().as_bytes().to_vec(),
                None => return Err(AuthError::MissingSignedHeader("host".into())),
            }
        } else {
            return Err(AuthError::MissingSignedHeader((*name).to_owned()));
        };
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&value);
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed.join(";").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    Ok(out)
}

/// The string to sign.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(crypto::sha256(canonical_request))
    )
}

/// The signing key: HMAC-SHA256 chained over date, region, service and
/// `aws4_request`, starting from `"AWS4" + secret`.
pub fn signing_key(
    secret: &SecretString,
    date: &str,
    region: &str,
    service: &str,
) -> Zeroizing<[u8; 32]> {
    let mut seed = Zeroizing::new(Vec::with_capacity(4 + secret.expose_secret().len()));
    seed.extend_from_slice(b"AWS4");
    seed.extend_from_slice(secret.expose_secret().as_bytes());
    let mut key = Zeroizing::new(crypto::hmac_sha256(&seed, &[date.as_bytes()]));
    for part in [region, service, "aws4_request"] {
        key = Zeroizing::new(crypto::hmac_sha256(key.as_slice(), &[part.as_bytes()]));
    }
    key
}
