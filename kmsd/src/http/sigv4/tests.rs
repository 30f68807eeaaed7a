//! Fixed vectors: the AWS SigV4 test suite, the S3 documentation's
//! examples, the request awscurl was captured sending; and every refusal.

use super::*;

const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const S3_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn credentials(access_key: &str, secret: &str) -> Credentials {
    let mut c = Credentials::default();
    c.insert(access_key.into(), SecretString::new(secret.into()));
    c
}

fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

fn at(amz_date: &str) -> OffsetDateTime {
    parse_amz_date(amz_date).unwrap()
}

fn policy(service: &str) -> Policy {
    Policy {
        service: service.into(),
        ..Policy::default()
    }
}

/// `get-vanilla` from the AWS SigV4 test suite (service "service").
#[test]
fn aws_test_suite_get_vanilla() {
    let p = parts(
        "GET",
        "/",
        &[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
        ],
    );
    let canonical = canonical_request(&p, &["host", "x-amz-date"], EMPTY_SHA256).unwrap();
    assert_eq!(
        String::from_utf8(canonical.clone()).unwrap(),
        format!(
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY_SHA256}"
        )
    );
    assert_eq!(
        string_to_sign(
            "20150830T123600Z",
            "20150830/us-east-1/service/aws4_request",
            &canonical
        ),
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
    );
    let verified = verify(
        &p,
        b"",
        &credentials("AKIDEXAMPLE", AWS_SECRET),
        &policy("service"),
        at("20150830T123600Z"),
    )
    .unwrap();
    assert_eq!(verified.access_key, "AKIDEXAMPLE");
}

/// The four header-signing examples of the S3 SigV4 documentation.
#[test]
fn s3_documentation_examples() {
    let auth = |signed: &str, signature: &str| {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders={signed}, Signature={signature}"
        )
    };
    let host = ("host", "examplebucket.s3.amazonaws.com");
    let date = ("x-amz-date", "20130524T000000Z");
    let empty = ("x-amz-content-sha256", EMPTY_SHA256);
    let get_object = auth(
        "host;range;x-amz-content-sha256;x-amz-date",
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    );
    let put_object = auth(
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
    );
    let lifecycle = auth(
        "host;x-amz-content-sha256;x-amz-date",
        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
    );
    let list = auth(
        "host;x-amz-content-sha256;x-amz-date",
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
    );
    let put_body = b"Welcome to Amazon S3.";
    let cases: Vec<(Parts, &[u8])> = vec![
        (
            parts(
                "GET",
                "/test.txt",
                &[
                    host,
                    ("range", "bytes=0-9"),
                    empty,
                    date,
                    ("authorization", &get_object),
                ],
            ),
            b"",
        ),
        (
            parts(
                "PUT",
                "/test$file.text",
                &[
                    host,
                    ("date", "Fri, 24 May 2013 00:00:00 GMT"),
                    date,
                    ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                    (
                        "x-amz-content-sha256",
                        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
                    ),
                    ("authorization", &put_object),
                ],
            ),
            put_body,
        ),
        (
            parts(
                "GET",
                "/?lifecycle",
                &[host, empty, date, ("authorization", &lifecycle)],
            ),
            b"",
        ),
        (
            parts(
                "GET",
                "/?max-keys=2&prefix=J",
                &[host, empty, date, ("authorization", &list)],
            ),
            b"",
        ),
    ];
    let creds = credentials("AKIAIOSFODNN7EXAMPLE", S3_SECRET);
    for (p, body) in cases {
        let result = verify(&p, body, &creds, &Policy::default(), at("20130524T000000Z"));
        assert!(result.is_ok(), "{} {}: {result:?}", p.method, p.uri);
    }
}

/// The canonical request of the configure call awscurl was captured sending
/// (docs: awscurl-sigv4 note, request #1).
#[test]
fn awscurl_configure_canonical_request() {
    let body = br#"{"backend_type":"local","key_dir":"/var/lib/rustfs/kms-keys","default_key_id":"rustfs-master"}"#;
    assert_eq!(body.len(), 94);
    let hash = hex::encode(crypto::sha256(body));
    assert_eq!(
        hash,
        "46790833daa91f4c70455bdf434348022b979e32d6194bbcedb4c4691ae7d461"
    );
    let p = parts(
        "POST",
        "http://127.0.0.1:18777/rustfs/admin/v3/kms/configure",
        &[
            ("host", "127.0.0.1:18777"),
            ("user-agent", "python-requests/2.34.2"),
            ("accept-encoding", "gzip, deflate"),
            ("accept", "application/xml"),
            ("connection", "keep-alive"),
            ("content-type", "application/json"),
            ("x-amz-date", "20261128T160037Z"),
            ("x-amz-content-sha256", &hash),
            ("content-length", "94"),
        ],
    );
    let signed = ["content-type", "host", "x-amz-content-sha256", "x-amz-date"];
    let canonical = canonical_request(&p, &signed, &hash).unwrap();
    assert_eq!(
        String::from_utf8(canonical).unwrap(),
        "POST
/rustfs/admin/v3/kms/configure

content-type:application/json
host:127.0.0.1:18777
x-amz-content-sha256:46790833daa91f4c70455bdf434348022b979e32d6194bbcedb4c4691ae7d461
x-amz-date:20261128T160037Z

content-type;host;x-amz-content-sha256;x-amz-date
46790833daa91f4c70455bdf434348022b979e32d6194bbcedb4c4691ae7d461"
    );
}

#[test]
fn canonical_uri_decodes_once_and_encodes_once() {
    for (wire, canonical) in [
        ("", "/"),
        ("/", "/"),
        ("/rustfs/admin/v3/kms/keys", "/rustfs/admin/v3/kms/keys"),
        ("/a%20b", "/a%20b"),
        ("/a%2fb/c", "/a%2Fb/c"),
        ("/%c3%a9", "/%C3%A9"),
        ("/test$file.text", "/test%24file.text"),
        ("/:@+=,!$'()*;", "/%3A%40%2B%3D%2C%21%24%27%28%29%2A%3B"),
        ("/a%2520b", "/a%2520b"),
        ("/~-._", "/~-._"),
        ("/a//b/", "/a//b/"),
        ("/../x/./y", "/../x/./y"),
    ] {
        assert_eq!(canonical_uri(wire), canonical, "{wire}");
    }
}

#[test]
fn canonical_query_sorts_and_reencodes() {
    for (wire, canonical) in [
        (None, ""),
        (Some(""), ""),
        (Some("limit=10&marker=abc"), "limit=10&marker=abc"),
        (Some("b=2&a=1&a=0"), "a=0&a=1&b=2"),
        (Some("acl"), "acl="),
        (Some("a=b+c"), "a=b%2Bc"),
        (Some("a=%7e%2b"), "a=~%2B"),
        (Some("k=%C3%A9"), "k=%C3%A9"),
        (Some("a=b=c"), "a=b%3Dc"),
        (Some("x=1&&y=2"), "x=1&y=2"),
    ] {
        assert_eq!(canonical_query(wire), canonical, "{wire:?}");
    }
}

#[test]
fn header_values_are_trimmed_collapsed_and_joined() {
    let p = parts(
        "GET",
        "/",
        &[("x-a", "  one   two  "), ("x-a", "three"), ("host", "h")],
    );
    let canonical = canonical_request(&p, &["host", "x-a"], EMPTY_SHA256).unwrap();
    let text = String::from_utf8(canonical).unwrap();
    assert!(text.contains("\nx-a:one two,three\n"), "{text}");
}

#[test]
fn authorization_header_parses_and_rejects() {
    let ok = parse_authorization(
        "AWS4-HMAC-SHA256 Credential=admin/20261128/us-east-1/s3/aws4_request,SignedHeaders=host;x-amz-date,Signature=0000000000000000000000000000000000000000000000000000000000000000",
    )
    .unwrap();
    assert_eq!(ok.access_key, "admin");
    assert_eq!(ok.signed_headers, ["host", "x-amz-date"]);
    let sig = "Signature=".to_owned() + &"0".repeat(64);
    for (value, expected) in [
        ("AWS admin:c2ln".to_owned(), AuthError::Algorithm),
        ("AWS4-HMAC-SHA256".to_owned(), AuthError::Malformed("")),
        (
            format!("AWS4-HMAC-SHA256 Credential=a/2026112/r/s3/aws4_request, SignedHeaders=host, {sig}"),
            AuthError::Malformed(""),
        ),
        (
            format!("AWS4-HMAC-SHA256 Credential=a/20261128/r/s3/aws5_request, SignedHeaders=host, {sig}"),
            AuthError::Malformed(""),
        ),
        (
            format!("AWS4-HMAC-SHA256 Credential=a/20261128/r/s3/aws4_request, SignedHeaders=x-amz-date;host, {sig}"),
            AuthError::Malformed(""),
        ),
        (
            format!("AWS4-HMAC-SHA256 Credential=a/20261128/r/s3/aws4_request, SignedHeaders=Host, {sig}"),
            AuthError::Malformed(""),
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20261128/r/s3/aws4_request, SignedHeaders=host, Signature=ABCD".to_owned(),
            AuthError::Malformed(""),
        ),
        (
            format!("AWS4-HMAC-SHA256 Credential=a/20261128/r/s3/aws4_request, SignedHeaders=host, {sig}, {sig}"),
            AuthError::Malformed(""),
        ),
    ] {
        let err = parse_authorization(&value).unwrap_err();
        assert_eq!(
            std::mem::discriminant(&err),
            std::mem::discriminant(&expected),
            "{value}: {err}"
        );
    }
}

/// Signs like awscurl (all four headers, the body's hash) with a signer of
/// our own, for the failure cases below.
fn signed_request(
    uri: &str,
    body: &[u8],
    amz_date: &str,
    secret: &str,
    extra: &[(&str, &str)],
) -> Parts {
    let hash = hex::encode(crypto::sha256(body));
    let mut headers = vec![
        ("host", "127.0.0.1:7374"),
        ("content-type", "application/json"),
        ("x-amz-content-sha256", hash.as_str()),
        ("x-amz-date", amz_date),
    ];
    headers.extend_from_slice(extra);
    let mut p = parts("POST", uri, &headers);
    let signed = ["content-type", "host", "x-amz-content-sha256", "x-amz-date"];
    let canonical = canonical_request(&p, &signed, &hash).unwrap();
    let scope = format!("{}/us-east-1/s3/aws4_request", &amz_date[..8]);
    let key = signing_key(
        &SecretString::new(secret.into()),
        &amz_date[..8],
        "us-east-1",
        "s3",
    );
    let signature = hex::encode(crypto::hmac_sha256(
        key.as_slice(),
        &[string_to_sign(amz_date, &scope, &canonical).as_bytes()],
    ));
    let value = format!(
        "AWS4-HMAC-SHA256 Credential=admin/{scope}, SignedHeaders={}, Signature={signature}",
        signed.join(";")
    );
    p.headers.insert("authorization", value.parse().unwrap());
    p
}

#[test]
fn every_refusal_has_its_reason() {
    let creds = credentials("admin", "admin");
    let now = at("20261128T160037Z");
    let body = br#"{"key_id":"k"}"#;
    let uri = "/rustfs/admin/v3/kms/keys/enable?x=1";
    let check = |p: &Parts, body: &[u8], now| verify(p, body, &creds, &Policy::default(), now);

    let good = signed_request(uri, body, "20261128T160037Z", "admin", &[]);
    assert!(check(&good, body, now).is_ok());
    // 14 minutes either way is fine; 16 is not.
    assert!(check(&good, body, now + time::Duration::minutes(14)).is_ok());
    for minutes in [-16, 16] {
        assert!(matches!(
            check(&good, body, now + time::Duration::minutes(minutes)),
            Err(AuthError::Skewed { .. })
        ));
    }
    assert_eq!(
        check(&good, br#"{"key_id":"K"}"#, now),
        Err(AuthError::ContentSha256Mismatch)
    );
    let wrong_secret = signed_request(uri, body, "20261128T160037Z", "wrong", &[]);
    assert_eq!(
        check(&wrong_secret, body, now),
        Err(AuthError::SignatureMismatch)
    );

    let mut tampered_query = good.clone();
    tampered_query.uri = "/rustfs/admin/v3/kms/keys/enable?x=2".parse().unwrap();
    assert_eq!(
        check(&tampered_query, body, now),
        Err(AuthError::SignatureMismatch)
    );
    let mut tampered_path = good.clone();
    tampered_path.uri = "/rustfs/admin/v3/kms/keys/disable?x=1".parse().unwrap();
    assert_eq!(
        check(&tampered_path, body, now),
        Err(AuthError::SignatureMismatch)
    );
    let mut tampered_method = good.clone();
    tampered_method.method = http::Method::PUT;
    assert_eq!(
        check(&tampered_method, body, now),
        Err(AuthError::SignatureMismatch)
    );
    // Changing the body and its hash header together breaks the signature.
    let mut rehashed = good.clone();
    let other = br#"{"key_id":"K"}"#;
    rehashed.headers.insert(
        "x-amz-content-sha256",
        hex::encode(crypto::sha256(other)).parse().unwrap(),
    );
    assert_eq!(
        check(&rehashed, other, now),
        Err(AuthError::SignatureMismatch)
    );

    let mut unsigned = good.clone();
    unsigned.headers.remove("authorization");
    assert_eq!(check(&unsigned, body, now), Err(AuthError::Missing));
    let mut unknown = good.clone();
    let value = good.headers["authorization"]
        .to_str()
        .unwrap()
        .replace("Credential=admin/", "Credential=nobody/");
    unknown
        .headers
        .insert("authorization", value.parse().unwrap());
    assert_eq!(
        check(&unknown, body, now),
        Err(AuthError::UnknownAccessKey("nobody".into()))
    );
    let token = signed_request(
        uri,
        body,
        "20261128T160037Z",
        "admin",
        &[("x-amz-security-token", "t")],
    );
    assert_eq!(check(&token, body, now), Err(AuthError::SessionToken));
    let extra = signed_request(
        uri,
        body,
        "20261128T160037Z",
        "admin",
        &[("x-amz-meta-x", "1")],
    );
    assert_eq!(
        check(&extra, body, now),
        Err(AuthError::UnsignedHeader("x-amz-meta-x".into()))
    );
    let mut unsigned_payload = good.clone();
    unsigned_payload
        .headers
        .insert("x-amz-content-sha256", "UNSIGNED-PAYLOAD".parse().unwrap());
    assert_eq!(
        check(&unsigned_payload, body, now),
        Err(AuthError::UnsignedPayload)
    );
    let presigned = parts("GET", "/x?X-Amz-Signature=00&X-Amz-Credential=a", &[]);
    assert_eq!(check(&presigned, b"", now), Err(AuthError::Presigned));

    let strict = Policy {
        region: Some("eu-west-1".into()),
        ..Policy::default()
    };
    assert!(matches!(
        verify(&good, body, &creds, &strict, now),
        Err(AuthError::Scope(_))
    ));
    assert!(matches!(
        verify(&good, body, &creds, &policy("kms"), now),
        Err(AuthError::Scope(_))
    ));
}

#[test]
fn messages_never_hold_the_secret_or_the_signature() {
    let secret = "s3cr3t-admin-key";
    let creds = credentials("admin", secret);
    let now = at("20261128T160037Z");
    let p = signed_request("/x", b"{}", "20261128T160037Z", "other-secret", &[]);
    let err = verify(&p, b"{}", &creds, &Policy::default(), now).unwrap_err();
    // What the right signature would have been:
    let good = signed_request("/x", b"{}", "20261128T160037Z", secret, &[]);
    let expected = good.headers["authorization"].to_str().unwrap();
    let expected_sig = expected.rsplit('=').next().unwrap();
    let text = format!("{err} {err:?} {creds:?}");
    assert!(!text.contains(secret), "{text}");
    assert!(!text.contains(expected_sig), "{text}");
}
