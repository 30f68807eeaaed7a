//! Rows B* and the precedence of the bucket default (D*).

use super::*;

const NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

fn doc(rule: &str) -> String {
    format!(
        "<ServerSideEncryptionConfiguration xmlns=\"{NS}\">{rule}</ServerSideEncryptionConfiguration>"
    )
}

fn rule(algorithm: &str, key: Option<&str>, bucket_key: Option<&str>) -> String {
    let key = key
        .map(|k| format!("<KMSMasterKeyID>{k}</KMSMasterKeyID>"))
        .unwrap_or_default();
    let bk = bucket_key
        .map(|b| format!("<BucketKeyEnabled>{b}</BucketKeyEnabled>"))
        .unwrap_or_default();
    format!(
        "<Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>{algorithm}</SSEAlgorithm>{key}</ApplyServerSideEncryptionByDefault>{bk}</Rule>"
    )
}

/// Found by the `sse_headers` fuzz target: text split by an entity lost
/// the spaces next to it, so a key id did not survive `to_xml`.
#[test]
fn spaces_next_to_entities_survive_a_round_trip() {
    let parsed = BucketEncryption::from_xml(&doc(&rule(
        "aws:kms",
        Some("  alias/a &amp; b: &quot;c&quot; \n"),
        None,
    )))
    .unwrap();
    assert_eq!(
        parsed.algorithm,
        DefaultAlgorithm::Kms {
            key_id: Some("alias/a & b: \"c\"".into())
        }
    );
    assert_eq!(
        BucketEncryption::from_xml(&parsed.to_xml()).unwrap(),
        parsed
    );
}

#[test]
fn valid_documents_parse_and_round_trip() {
    let parsed =
        BucketEncryption::from_xml(&doc(&rule("aws:kms", Some("k&amp;1"), Some("true")))).unwrap();
    assert_eq!(
        parsed,
        BucketEncryption {
            algorithm: DefaultAlgorithm::Kms {
                key_id: Some("k&1".into())
            },
            bucket_key_enabled: true,
        }
    );
    assert_eq!(
        BucketEncryption::from_xml(&parsed.to_xml()).unwrap(),
        parsed
    );
    let s3 = BucketEncryption::from_xml(&doc(&rule("AES256", None, None))).unwrap();
    assert_eq!(s3.algorithm, DefaultAlgorithm::S3);
    assert!(!s3.bucket_key_enabled);
    assert_eq!(BucketEncryption::from_xml(&s3.to_xml()).unwrap(), s3);
    // Unknown elements (newer AWS fields) are skipped.
    let newer = doc(&rule("AES256", None, None).replace(
        "</Rule>",
        "<BlockedEncryptionTypes><EncryptionType>NONE</EncryptionType></BlockedEncryptionTypes></Rule>",
    ));
    assert!(BucketEncryption::from_xml(&newer).is_ok());
}

#[test]
fn b1_malformed_documents() {
    let two_rules = doc(&format!(
        "{}{}",
        rule("AES256", None, None),
        rule("AES256", None, None)
    ));
    let twice = doc(&rule("AES256", None, None).replace(
        "</SSEAlgorithm>",
        "</SSEAlgorithm><SSEAlgorithm>AES256</SSEAlgorithm>",
    ));
    for bad in [
        "not xml <".to_owned(),
        "<Other/>".to_owned(),
        "<ServerSideEncryptionConfiguration/>".to_owned(),
        doc(""),
        two_rules,
        twice,
        doc("<Rule><BucketKeyEnabled>true</BucketKeyEnabled></Rule>"),
        doc(
            "<Rule><ApplyServerSideEncryptionByDefault></ApplyServerSideEncryptionByDefault></Rule>",
        ),
        doc(&rule("AES256", None, Some("yes"))),
        doc(&rule("AES256", None, None)).replace("</ServerSideEncryptionConfiguration>", ""),
    ] {
        assert_s3(BucketEncryption::from_xml(&bad), "MalformedXML", 400);
    }
}

#[test]
fn b2_unknown_algorithm() {
    assert_s3(
        BucketEncryption::from_xml(&doc(&rule("SM4", None, None))),
        "InvalidArgument",
        400,
    );
}

#[test]
fn b3_key_id_needs_aws_kms() {
    assert_s3(
        BucketEncryption::from_xml(&doc(&rule("AES256", Some("k"), None))),
        "InvalidArgument",
        400,
    );
}

#[test]
fn b4_dsse_is_not_implemented() {
    assert_s3(
        BucketEncryption::from_xml(&doc(&rule("aws:kms:dsse", None, None))),
        "NotImplemented",
        501,
    );
}

fn decide_with(pairs: &[(&str, &str)], default: Option<&BucketEncryption>) -> Decision {
    decide(
        parse_write_headers(&headers(pairs), Transport::Secure).unwrap(),
        default,
    )
}

#[test]
fn d1_no_headers_and_no_default_is_plain() {
    assert!(matches!(decide_with(&[], None), Decision::None));
    assert!(!decide_with(&[], None).encrypts());
}

#[test]
fn d2_the_bucket_default_applies_without_headers() {
    let kms = BucketEncryption::new("aws:kms", Some("bk"), Some(true)).unwrap();
    match decide_with(&[], Some(&kms)) {
        Decision::Kms {
            key_id,
            context,
            bucket_key,
        } => {
            assert_eq!(key_id.as_deref(), Some("bk"));
            assert!(context.is_empty());
            assert!(bucket_key);
        }
        other => panic!("{other:?}"),
    }
    let s3 = BucketEncryption::new("AES256", None, None).unwrap();
    assert!(matches!(decide_with(&[], Some(&s3)), Decision::S3));
}

#[test]
fn d3_request_headers_win_over_the_default() {
    let kms = BucketEncryption::new("aws:kms", Some("bk"), Some(true)).unwrap();
    assert!(matches!(
        decide_with(&[(names::SSE, "AES256")], Some(&kms)),
        Decision::S3
    ));
    let triple = customer_headers(KeySlot::Object, &KEY_A);
    let pairs: Vec<(&str, &str)> = triple.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert!(matches!(
        decide_with(&pairs, Some(&kms)),
        Decision::Customer(_)
    ));
    // The bucket-key header alone overrides the bucket's setting.
    match decide_with(&[(names::BUCKET_KEY_ENABLED, "false")], Some(&kms)) {
        Decision::Kms { bucket_key, .. } => assert!(!bucket_key),
        other => panic!("{other:?}"),
    }
    // An explicit aws:kms takes the bucket's BucketKeyEnabled.
    match decide_with(&[(names::SSE, "aws:kms")], Some(&kms)) {
        Decision::Kms {
            key_id, bucket_key, ..
        } => {
            assert_eq!(key_id, None);
            assert!(bucket_key);
        }
        other => panic!("{other:?}"),
    }
}
