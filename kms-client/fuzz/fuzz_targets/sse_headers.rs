//! Fuzzes the S3 SSE parsers: the request headers of a write, a read and a
//! copy source (lines of `name: value`), and the PutBucketEncryption XML
//! (the whole input as text). Anything may be refused, but only as an S3
//! error with a 4xx status (S3's 501 for `aws:kms:dsse`); bucket
//! configurations that parse must round-trip through their XML.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use kms_client::sse::{
    BucketEncryption, SseError, Transport, parse_copy_source_headers, parse_read_headers,
    parse_write_headers,
};
use libfuzzer_sys::fuzz_target;

fn check<T>(result: Result<T, SseError>) {
    if let Err(e) = result {
        let status = e.http_status();
        assert!(!e.s3_code().is_empty());
        assert!((400..500).contains(&status) || (status == 501 && e.s3_code() == "NotImplemented"));
    }
}

fuzz_target!(|input: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in input.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    for transport in [Transport::Secure, Transport::Insecure] {
        check(parse_write_headers(&headers, transport));
        check(parse_read_headers(&headers, transport));
        check(parse_copy_source_headers(&headers, transport));
    }
    if let Ok(text) = std::str::from_utf8(input) {
        let parsed = BucketEncryption::from_xml(text);
        if let Ok(config) = &parsed {
            assert_eq!(
                BucketEncryption::from_xml(&config.to_xml()).ok().as_ref(),
                Some(config)
            );
        }
        check(parsed);
    }
});
