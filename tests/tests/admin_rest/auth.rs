//! Refusals: everything that is not a correctly signed, fresh, untampered
//! request is a 403 with an S3 error code.

use super::*;

#[tokio::test]
async fn unauthenticated_and_tampered_requests_are_403() {
    let (_kmsd, admin) = start(KmsdOptions::local()).await;
    let refused = |reply: &Reply, code: &str| {
        expect(reply, 403, code);
        assert!(!reply.text.contains(SECRET), "{}", reply.text);
    };
    ok(admin.get("/kms/status").await, 200);

    let unsigned = admin.unsigned("GET", "/rustfs/admin/v3/kms/status", "");
    refused(&admin.send(unsigned).await, "AccessDenied");
    let unsigned = admin.unsigned("GET", "/rustfs/admin/v3/kms/no-such-route", "");
    refused(&admin.send(unsigned).await, "AccessDenied");
    refused(
        &admin
            .with_credentials(ACCESS_KEY, "wrong-secret")
            .get("/kms/status")
            .await,
        "SignatureDoesNotMatch",
    );
    // An unknown access key reads exactly like a wrong secret: nobody can
    // probe which access keys exist.
    let unknown = admin
        .with_credentials("nobody", SECRET)
        .get("/kms/status")
        .await;
    refused(&unknown, "SignatureDoesNotMatch");
    let wrong = admin
        .with_credentials(ACCESS_KEY, "wrong-secret")
        .get("/kms/status")
        .await;
    assert_eq!(unknown.text, wrong.text);
    let minutes = |m: u64| Duration::from_secs(m * 60);
    for time in [
        SystemTime::now() - minutes(20),
        SystemTime::now() + minutes(20),
    ] {
        let request = admin.signed_at("GET", "/kms/status", "", time, &[]);
        refused(&admin.send(request).await, "RequestTimeTooSkewed");
    }

    // The body signed, another body sent (same length, same hash header).
    let mut request = admin.signed("POST", "/kms/keys", r#"{"key_id": "aaa"}"#);
    *request.body_mut() = r#"{"key_id": "bbb"}"#.to_owned().into();
    refused(&admin.send(request).await, "XAmzContentSHA256Mismatch");
    // The query signed, another query sent.
    let mut request = admin.signed("GET", "/kms/keys?limit=1", "");
    *request.uri_mut() = format!("{}/rustfs/admin/v3/kms/keys?limit=2", admin.base_url())
        .parse()
        .unwrap();
    refused(&admin.send(request).await, "SignatureDoesNotMatch");
    // A signed request replayed on another path.
    let mut request = admin.signed("POST", "/kms/keys/disable", r#"{"key_id": "default"}"#);
    *request.uri_mut() = format!("{}/rustfs/admin/v3/kms/keys/enable", admin.base_url())
        .parse()
        .unwrap();
    refused(&admin.send(request).await, "SignatureDoesNotMatch");
    // Temporary credentials are not supported.
    let request = admin.signed_at(
        "GET",
        "/kms/status",
        "",
        SystemTime::now(),
        &[("x-amz-security-token", "token")],
    );
    refused(&admin.send(request).await, "AccessDenied");
    // Unsigned payloads are not accepted.
    let mut request = admin.signed("POST", "/kms/keys", "{}");
    request
        .headers_mut()
        .insert("x-amz-content-sha256", "UNSIGNED-PAYLOAD".parse().unwrap());
    refused(&admin.send(request).await, "AccessDenied");
    // Only the configured region (us-east-1 by default) and service s3.
    refused(
        &admin.with_region("eu-west-3").get("/kms/status").await,
        "AuthorizationHeaderMalformed",
    );

    // Oversized bodies are refused before anything else.
    let big = format!(r#"{{"description": "{}"}}"#, "x".repeat(70 * 1024));
    let reply = admin.post("/kms/keys", &big).await;
    assert_eq!(reply.status, 413, "{}", reply.text);

    // Public routes need no signature.
    let live = admin.unsigned("GET", "/health/live", "");
    assert_eq!(admin.send(live).await.status, 200);
    let nowhere = admin.unsigned("GET", "/elsewhere", "");
    expect(&admin.send(nowhere).await, 404, "ROUTE_NOT_FOUND");
}
