//! Property tests of the canonicalisation, and of the whole verifier
//! against an independent signer, the `aws-sigv4` crate.

use std::time::{Duration as StdDuration, SystemTime};

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use percent_encoding::{AsciiSet, percent_encode};
use proptest::prelude::*;

use super::{canonical::UNRESERVED, *};

fn credentials(access_key: &str, secret: &str) -> Credentials {
    let mut c = Credentials::default();
    c.insert(access_key.into(), SecretString::new(secret.into()));
    c
}

/// Signs with the `aws-sigv4` crate, set up as the AWS SDK signs for S3.
fn sign_with_aws_sigv4(
    method: &str,
    uri: &str,
    headers: &[(String, String)],
    body: &[u8],
    time: SystemTime,
) -> Parts {
    let identity =
        aws_credential_types::Credentials::new("admin", "admin", None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        method,
        uri,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut request = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let mut request = request.body(()).unwrap();
    instructions.apply_to_request_http1x(&mut request);
    request.into_parts().0
}

fn segment() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9._~ :@+=,!$'()*;é%/-]{0,12}").unwrap()
}

/// Only what a URI path segment cannot carry raw.
const MINIMAL: &AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'%')
    .add(b'/')
    .add(b'?')
    .add(b'#');

fn encode_all(s: &str) -> String {
    percent_encode(s.as_bytes(), UNRESERVED).to_string()
}

/// `%2F` -> `%2f`, leaving everything else alone.
fn lowercase_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut hex_left = 0;
    for c in s.chars() {
        if hex_left > 0 {
            out.push(c.to_ascii_lowercase());
            hex_left -= 1;
        } else {
            hex_left = if c == '%' { 2 } else { 0 };
            out.push(c);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the client leaves raw or escapes (and in which hex case),
    /// the canonical form is that of the fully escaped path.
    #[test]
    fn canonical_uri_ignores_how_the_path_was_escaped(
        segments in proptest::collection::vec(segment(), 0..5),
        lower in any::<bool>(),
    ) {
        let full = format!("/{}", segments.iter().map(|s| encode_all(s)).collect::<Vec<_>>().join("/"));
        // Escape only what a URI cannot carry raw.
        let minimal = format!("/{}", segments.iter().map(|s| {
            let e = percent_encode(s.as_bytes(), MINIMAL).to_string();
            if lower { lowercase_escapes(&e) } else { e }
        }).collect::<Vec<_>>().join("/"));
        prop_assert_eq!(canonical_uri(&minimal), canonical_uri(&full));
        prop_assert_eq!(canonical_uri(&full), full.clone());
        prop_assert_eq!(canonical_uri(&canonical_uri(&full)), full);
    }

    /// The order of query pairs on the wire does not matter.
    #[test]
    fn canonical_query_ignores_pair_order(
        pairs in proptest::collection::vec((segment(), segment()), 0..6),
        seed in any::<u64>(),
    ) {
        let wire: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", encode_all(k), encode_all(v))).collect();
        let mut shuffled = wire.clone();
        let n = shuffled.len().max(1);
        shuffled.rotate_left(usize::try_from(seed).unwrap_or(0) % n);
        shuffled.reverse();
        prop_assert_eq!(canonical_query(Some(&wire.join("&"))), canonical_query(Some(&shuffled.join("&"))));
    }

    /// Requests signed by the aws-sigv4 crate verify; the same request with
    /// one byte of body, path or query changed does not.
    #[test]
    fn requests_signed_by_aws_sigv4_verify(
        segments in proptest::collection::vec(segment(), 1..4),
        query in proptest::collection::vec((segment(), segment()), 0..4),
        header in "[ -~]{0,20}",
        body in proptest::collection::vec(any::<u8>(), 0..64),
        skew_secs in -800i64..800,
    ) {
        let path = format!("/{}", segments.iter().map(|s| encode_all(s)).collect::<Vec<_>>().join("/"));
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{}={}", encode_all(k), encode_all(v))).collect();
        let uri = if query.is_empty() { path.clone() } else { format!("{path}?{}", query.join("&")) };
        let headers = vec![
            ("host".to_owned(), "127.0.0.1:7374".to_owned()),
            ("x-amz-meta-note".to_owned(), header.trim().to_owned()),
        ];
        let time = SystemTime::UNIX_EPOCH + StdDuration::from_secs(1_795_000_000);
        let p = sign_with_aws_sigv4("POST", &uri, &headers, &body, time);
        let now = OffsetDateTime::from(time) + time::Duration::seconds(skew_secs);
        let creds = credentials("admin", "admin");
        let result = verify(&p, &body, &creds, &Policy::default(), now);
        prop_assert!(result.is_ok(), "{uri}: {result:?}");

        let mut other = body.clone();
        match other.first_mut() {
            Some(b) => *b ^= 1,
            None => other.push(0),
        }
        prop_assert!(verify(&p, &other, &creds, &Policy::default(), now).is_err());
        let mut moved = p.clone();
        moved.uri = format!("{path}x{}", uri.strip_prefix(&path).unwrap_or("")).parse().unwrap();
        prop_assert!(verify(&moved, &body, &creds, &Policy::default(), now).is_err());
        let mut requeried = p.clone();
        requeried.uri = format!("{uri}{}z=1", if query.is_empty() { "?" } else { "&" }).parse().unwrap();
        prop_assert!(verify(&requeried, &body, &creds, &Policy::default(), now).is_err());
    }
}
