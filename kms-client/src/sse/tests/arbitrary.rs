//! Arbitrary input through every SSE parser: no panic, and every refusal
//! is an S3 error with a 4xx status (or S3's 501 for `aws:kms:dsse`). The same inputs drive the
//! `sse_headers` fuzz target (docs/fuzzing.md); these run in CI.

use proptest::prelude::*;

use super::*;

const NAMES: [&str; 10] = [
    names::SSE,
    names::KMS_KEY_ID,
    names::CONTEXT,
    names::BUCKET_KEY_ENABLED,
    names::CUSTOMER_ALGORITHM,
    names::CUSTOMER_KEY,
    names::CUSTOMER_KEY_MD5,
    names::COPY_SOURCE_CUSTOMER_ALGORITHM,
    names::COPY_SOURCE_CUSTOMER_KEY,
    names::COPY_SOURCE_CUSTOMER_KEY_MD5,
];

/// Values near the valid ones as well as noise: algorithm names, base64 of
/// 16, 32 and 33 bytes, JSON contexts in base64, and printable junk.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("AES256".to_owned()),
        Just("aws:kms".to_owned()),
        Just("aws:kms:dsse".to_owned()),
        Just("true".to_owned()),
        Just(String::new()),
        prop::collection::vec(any::<u8>(), 15..34).prop_map(|bytes| b64(&bytes)),
        "[ -~]{0,24}".prop_map(|json| b64(json.as_bytes())),
        "[ -~]{0,48}",
    ]
}

fn header_map(pairs: &[(usize, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            // append, not insert: a repeated header is input too.
            map.append(NAMES[*name], value);
        }
    }
    map
}

fn refusal_is_an_s3_error<T>(result: Result<T, SseError>) -> Result<(), TestCaseError> {
    if let Err(e) = result {
        prop_assert!(!e.s3_code().is_empty());
        let client_error = (400..500).contains(&e.http_status());
        let dsse = e.http_status() == 501 && e.s3_code() == "NotImplemented";
        prop_assert!(client_error || dsse, "{e:?}");
    }
    Ok(())
}

proptest! {
    #[test]
    fn header_parsers_take_arbitrary_headers(
        pairs in prop::collection::vec((0..NAMES.len(), value()), 0..8),
        insecure in any::<bool>(),
    ) {
        let headers = header_map(&pairs);
        let transport = if insecure { Transport::Insecure } else { Transport::Secure };
        refusal_is_an_s3_error(parse_write_headers(&headers, transport))?;
        refusal_is_an_s3_error(parse_read_headers(&headers, transport))?;
        refusal_is_an_s3_error(parse_copy_source_headers(&headers, transport))?;
    }

    #[test]
    fn bucket_encryption_xml_takes_arbitrary_text(text in "(<[A-Za-z]{0,24}>|</[A-Za-z]{0,24}>|[ -~]{0,16}){0,24}") {
        let parsed = BucketEncryption::from_xml(&text);
        if let Ok(config) = &parsed {
            prop_assert_eq!(BucketEncryption::from_xml(&config.to_xml()).ok(), Some(config.clone()));
        }
        refusal_is_an_s3_error(parsed)?;
    }
}
