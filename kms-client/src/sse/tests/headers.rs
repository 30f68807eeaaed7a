//! Rows W*, C* and R1: the request headers alone.

use super::*;

fn write(pairs: &[(&str, &str)]) -> Result<WriteHeaders, SseError> {
    parse_write_headers(&headers(pairs), Transport::Secure)
}

fn with_customer(slot: KeySlot, key: &[u8], extra: &[(&str, &str)]) -> HeaderMap {
    let triple = customer_headers(slot, key);
    let mut pairs: Vec<(&str, &str)> = triple.iter().map(|(n, v)| (*n, v.as_str())).collect();
    pairs.extend_from_slice(extra);
    headers(&pairs)
}

#[test]
fn valid_writes_parse() {
    assert!(matches!(
        write(&[]).unwrap().requested,
        RequestedSse::Unspecified
    ));
    assert!(matches!(
        write(&[(names::SSE, "AES256")]).unwrap().requested,
        RequestedSse::S3
    ));
    let context = encode_context(&EncryptionContext::from([("team".into(), "blue".into())]));
    let parsed = write(&[
        (names::SSE, "aws:kms"),
        (names::KMS_KEY_ID, "app-key"),
        (names::CONTEXT, &context),
        (names::BUCKET_KEY_ENABLED, "TRUE"),
    ])
    .unwrap();
    assert_eq!(parsed.bucket_key, Some(true));
    match parsed.requested {
        RequestedSse::Kms { key_id, context } => {
            assert_eq!(key_id.as_deref(), Some("app-key"));
            assert_eq!(context["team"], "blue");
        }
        other => panic!("{other:?}"),
    }
    let parsed = parse_write_headers(
        &with_customer(KeySlot::Object, &KEY_A, &[]),
        Transport::Secure,
    )
    .unwrap();
    match parsed.requested {
        RequestedSse::Customer(key) => assert_eq!(key.key_md5(), b64(&crate::crypto::md5(&KEY_A))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn w1_unknown_algorithm() {
    assert_s3(write(&[(names::SSE, "AES128")]), "InvalidArgument", 400);
    assert_s3(write(&[(names::SSE, "aws:KMS")]), "InvalidArgument", 400);
}

#[test]
fn w2_dsse_is_not_implemented() {
    assert_s3(
        write(&[(names::SSE, "aws:kms:dsse")]),
        "NotImplemented",
        501,
    );
}

#[test]
fn w3_key_id_needs_aws_kms() {
    assert_s3(write(&[(names::KMS_KEY_ID, "k")]), "InvalidArgument", 400);
    assert_s3(
        write(&[(names::SSE, "AES256"), (names::KMS_KEY_ID, "k")]),
        "InvalidArgument",
        400,
    );
}

#[test]
fn w4_context_needs_aws_kms() {
    let context = encode_context(&EncryptionContext::from([("a".into(), "b".into())]));
    assert_s3(write(&[(names::CONTEXT, &context)]), "InvalidArgument", 400);
    assert_s3(
        write(&[(names::SSE, "AES256"), (names::CONTEXT, &context)]),
        "InvalidArgument",
        400,
    );
}

#[test]
fn w5_context_must_be_base64_json_of_strings() {
    for bad in [
        "not base64!".to_owned(),
        b64(b"not json"),
        b64(b"[\"a\"]"),
        b64(b"{\"a\": 1}"),
        b64(b"{\"\": \"x\"}"),
    ] {
        assert_s3(
            write(&[(names::SSE, "aws:kms"), (names::CONTEXT, &bad)]),
            "InvalidArgument",
            400,
        );
    }
}

#[test]
fn w6_context_keys_starting_with_aws_are_reserved() {
    let context = b64(b"{\"aws:s3:arn\": \"arn:aws:s3:::other/key\"}");
    let error = write(&[(names::SSE, "aws:kms"), (names::CONTEXT, &context)]).unwrap_err();
    assert!(matches!(error, SseError::ReservedContextKey(_)));
    assert_eq!(
        (error.s3_code(), error.http_status()),
        ("InvalidArgument", 400)
    );
}

#[test]
fn w7_bucket_key_flag_must_be_boolean() {
    assert_s3(
        write(&[(names::SSE, "aws:kms"), (names::BUCKET_KEY_ENABLED, "yes")]),
        "InvalidArgument",
        400,
    );
}

#[test]
fn w8_customer_key_excludes_managed_headers() {
    for extra in [
        (names::SSE, "AES256"),
        (names::SSE, "aws:kms"),
        (names::KMS_KEY_ID, "k"),
        (names::BUCKET_KEY_ENABLED, "true"),
    ] {
        let map = with_customer(KeySlot::Object, &KEY_A, &[extra]);
        assert_s3(
            parse_write_headers(&map, Transport::Secure),
            "InvalidArgument",
            400,
        );
    }
}

/// C1–C6 for both slots: the object's triple and the copy source's.
fn triple_rows(slot: KeySlot) {
    let [(alg, _), (key, key_value), (md5, md5_value)] =
        <[(&str, String); 3]>::try_from(customer_headers(slot, &KEY_A)).unwrap();
    let parse =
        |pairs: &[(&str, &str)]| parse_customer_key(&headers(pairs), slot, Transport::Secure);
    assert!(parse(&[]).unwrap().is_none());
    // C1: algorithm missing.
    assert_s3(
        parse(&[(key, &key_value), (md5, &md5_value)]),
        "InvalidArgument",
        400,
    );
    // C2: not AES256.
    assert_s3(
        parse(&[(alg, "AES128"), (key, &key_value), (md5, &md5_value)]),
        "InvalidEncryptionAlgorithmError",
        400,
    );
    // C3: key missing.
    assert_s3(
        parse(&[(alg, "AES256"), (md5, &md5_value)]),
        "InvalidArgument",
        400,
    );
    // C4: MD5 missing.
    assert_s3(
        parse(&[(alg, "AES256"), (key, &key_value)]),
        "InvalidArgument",
        400,
    );
    // C5: not base64, or not 32 bytes (the base64 text itself, 44 bytes, as
    // a CLI user who passes an encoded key sends it).
    for bad_key in ["%%%".to_owned(), b64(&[1; 16]), b64(key_value.as_bytes())] {
        let md5_of_bad = b64(&crate::crypto::md5(bad_key.as_bytes()));
        assert_s3(
            parse(&[(alg, "AES256"), (key, &bad_key), (md5, &md5_of_bad)]),
            "InvalidArgument",
            400,
        );
    }
    // C6: MD5 mismatch.
    let wrong_md5 = b64(&crate::crypto::md5(&KEY_B));
    let error = parse(&[(alg, "AES256"), (key, &key_value), (md5, &wrong_md5)]).unwrap_err();
    assert!(matches!(error, SseError::CustomerKeyMd5Mismatch { .. }));
    assert_eq!(error.s3_code(), "InvalidArgument");
    // C7: over an insecure transport, even when valid.
    let map = headers(&[(alg, "AES256"), (key, &key_value), (md5, &md5_value)]);
    assert_s3(
        parse_customer_key(&map, slot, Transport::Insecure),
        "InvalidRequest",
        400,
    );
}

#[test]
fn c1_to_c7_object_triple() {
    triple_rows(KeySlot::Object);
}

#[test]
fn c1_to_c7_copy_source_triple() {
    triple_rows(KeySlot::CopySource);
    let map = with_customer(KeySlot::CopySource, &KEY_A, &[]);
    assert!(
        parse_copy_source_headers(&map, Transport::Secure)
            .unwrap()
            .is_some()
    );
    // The copy source's key is not the destination's.
    assert!(matches!(
        parse_write_headers(&map, Transport::Secure)
            .unwrap()
            .requested,
        RequestedSse::Unspecified
    ));
}

#[test]
fn c7_insecure_transport_applies_to_writes() {
    let map = with_customer(KeySlot::Object, &KEY_A, &[]);
    assert_s3(
        parse_write_headers(&map, Transport::Insecure),
        "InvalidRequest",
        400,
    );
    assert_s3(
        parse_read_headers(&map, Transport::Insecure),
        "InvalidRequest",
        400,
    );
}

#[test]
fn r1_reads_refuse_write_only_headers() {
    for pair in [
        (names::SSE, "AES256"),
        (names::KMS_KEY_ID, "k"),
        (names::CONTEXT, "e30="),
        (names::BUCKET_KEY_ENABLED, "true"),
    ] {
        assert_s3(
            parse_read_headers(&headers(&[pair]), Transport::Secure),
            "InvalidArgument",
            400,
        );
    }
    let map = with_customer(KeySlot::Object, &KEY_A, &[]);
    assert!(
        parse_read_headers(&map, Transport::Secure)
            .unwrap()
            .is_some()
    );
}

#[test]
fn keys_never_print() {
    let key = customer(KEY_A);
    assert_eq!(format!("{key:?}"), "CustomerKey([secret elided])");
}
