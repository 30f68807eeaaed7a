//! Rows K*: kmsd's errors as S3 reports them.

use super::*;

fn kms_error(code: tonic::Code, reason: &str) -> SseError {
    SseError::Kms(rpc(code, reason))
}

#[test]
fn k1_to_k7_kmsd_errors() {
    use tonic::Code;
    for (error, code, status) in [
        (
            kms_error(Code::NotFound, "KEY_NOT_FOUND"),
            "KMS.NotFoundException",
            400,
        ),
        (
            kms_error(Code::InvalidArgument, "INVALID_KEY_ID"),
            "KMS.NotFoundException",
            400,
        ),
        (
            kms_error(Code::FailedPrecondition, "NO_DEFAULT_KEY"),
            "KMS.NotFoundException",
            400,
        ),
        (
            kms_error(Code::FailedPrecondition, "KEY_DISABLED"),
            "KMS.DisabledException",
            400,
        ),
        (
            kms_error(Code::FailedPrecondition, "KEY_PENDING_DELETION"),
            "KMS.KMSInvalidStateException",
            400,
        ),
        (
            kms_error(Code::Unavailable, "BACKEND_UNAVAILABLE"),
            "ServiceUnavailable",
            503,
        ),
        (
            kms_error(Code::ResourceExhausted, "OVERLOADED"),
            "ServiceUnavailable",
            503,
        ),
        (
            kms_error(Code::InvalidArgument, "INVALID_CIPHERTEXT"),
            "InternalError",
            500,
        ),
        (
            kms_error(Code::PermissionDenied, "PERMISSION_DENIED"),
            "AccessDenied",
            403,
        ),
        (
            kms_error(Code::InvalidArgument, "INVALID_ENCRYPTION_CONTEXT"),
            "InvalidArgument",
            400,
        ),
    ] {
        assert_eq!(
            (error.s3_code(), error.http_status()),
            (code, status),
            "{error}"
        );
    }
}

#[tokio::test]
async fn k1_an_unknown_key_fails_the_write() {
    let keys = SseKeys::new(FakeKms::default(), Default::default());
    let decision = Decision::Kms {
        key_id: Some("missing".into()),
        context: EncryptionContext::new(),
        bucket_key: false,
    };
    assert_s3(
        keys.seal(&decision, &ObjectId::new("b", "k")).await,
        "KMS.NotFoundException",
        400,
    );
}

#[test]
fn m2_a_tampered_payload_is_a_server_error() {
    let error =
        SseError::from(crate::stream::StreamError::ChunkAuthentication { part: 0, index: 3 });
    assert_eq!(
        (error.s3_code(), error.http_status()),
        ("InternalError", 500)
    );
}
