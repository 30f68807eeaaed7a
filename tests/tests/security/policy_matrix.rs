//! The per-identity policy matrix: every operation, called by every
//! identity of the test policy, is allowed or denied exactly as the policy
//! says, and every denial is audited.

use kms_client::{KmsClient, proto};
use kmsd_tests::ctx;
use tonic::Code;

use super::{setup, tls_client};

fn map<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<(), kms_client::Error> {
    r.map(|_| ()).map_err(kms_client::Error::from)
}

/// One call per operation; its result tells allowed (anything but
/// PERMISSION_DENIED) from denied.
async fn call(
    client: &KmsClient,
    op: &str,
    blob: &[u8],
    n: usize,
) -> Result<(), kms_client::Error> {
    let key = "alice-1".to_owned();
    let mut admin = client.key_admin();
    let mut runtime = client.admin();
    let local = r#"{"backend_type": "local", "key_dir": "KEYDIR", "default_key_id": "default"}"#;
    match op {
        "GenerateDataKey" => client
            .generate_data_key(Some(&key), &ctx(&[]))
            .await
            .map(|_| ()),
        "GenerateDataKeyWithoutPlaintext" => client
            .generate_data_key_without_plaintext(Some(&key), &ctx(&[]))
            .await
            .map(|_| ()),
        "Encrypt" => client
            .encrypt(Some(&key), b"x", &ctx(&[]))
            .await
            .map(|_| ()),
        "Decrypt" => client.decrypt(blob, &ctx(&[]), None).await.map(|_| ()),
        "ReEncrypt" => client
            .re_encrypt(blob, &ctx(&[]), None, None)
            .await
            .map(|_| ()),
        "CreateKey" => map(admin
            .create_key(proto::CreateKeyRequest {
                key_id: format!("alice-new-{n}"),
                ..Default::default()
            })
            .await),
        "DescribeKey" => map(admin
            .describe_key(proto::DescribeKeyRequest {
                key_id: key,
                ..Default::default()
            })
            .await),
        "ListKeys" => map(admin.list_keys(proto::ListKeysRequest::default()).await),
        "RotateKey" => map(admin
            .rotate_key(proto::RotateKeyRequest { key_id: key })
            .await),
        "DisableKey" => map(admin
            .disable_key(proto::DisableKeyRequest { key_id: key })
            .await),
        "EnableKey" => map(admin
            .enable_key(proto::EnableKeyRequest { key_id: key })
            .await),
        "ScheduleKeyDeletion" => map(admin
            .schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
                key_id: key,
                pending_window_in_days: 7,
                // The deletion guard (issue 20) is not what this tests.
                force: true,
            })
            .await),
        "CancelKeyDeletion" => map(admin
            .cancel_key_deletion(proto::CancelKeyDeletionRequest { key_id: key })
            .await),
        "UpdateKeyDescription" => map(admin
            .update_key_description(proto::UpdateKeyDescriptionRequest {
                key_id: key,
                description: "d".into(),
            })
            .await),
        "TagKey" => map(admin
            .tag_key(proto::TagKeyRequest {
                key_id: key,
                tags: [("t".to_owned(), "v".to_owned())].into(),
            })
            .await),
        "UntagKey" => map(admin
            .untag_key(proto::UntagKeyRequest {
                key_id: key,
                tag_keys: vec!["t".into()],
            })
            .await),
        "CreateAlias" => map(admin
            .create_alias(proto::CreateAliasRequest {
                alias_name: format!("alias/a-{n}"),
                target_key_id: key,
            })
            .await),
        "UpdateAlias" => map(admin
            .update_alias(proto::UpdateAliasRequest {
                alias_name: format!("alias/a-{n}"),
                target_key_id: key,
            })
            .await),
        "ListAliases" => map(admin
            .list_aliases(proto::ListAliasesRequest::default())
            .await),
        "DeleteAlias" => map(admin
            .delete_alias(proto::DeleteAliasRequest {
                alias_name: format!("alias/a-{n}"),
            })
            .await),
        "EnableKeyRotation" => map(admin
            .enable_key_rotation(proto::EnableKeyRotationRequest {
                key_id: key,
                rotation_period_in_days: 90,
                rotation_period_seconds: 0,
            })
            .await),
        "DisableKeyRotation" => map(admin
            .disable_key_rotation(proto::DisableKeyRotationRequest { key_id: key })
            .await),
        "GetKeyRotationStatus" => map(admin
            .get_key_rotation_status(proto::GetKeyRotationStatusRequest { key_id: key })
            .await),
        "GetParametersForImport" => map(admin
            .get_parameters_for_import(proto::GetParametersForImportRequest {
                key_id: format!("alice-imp-{n}"),
            })
            .await),
        // A token kmsd never issued: allowed callers hear NOT_FOUND.
        "ImportKey" => map(admin
            .import_key(proto::ImportKeyRequest {
                import_token: "imp-none".into(),
                key_id: format!("alice-imp-{n}"),
                encrypted_key_material: vec![0; 384],
                ..Default::default()
            })
            .await),
        "Status" => map(runtime.status(proto::StatusRequest {}).await),
        "ClearCache" => map(runtime.clear_cache(proto::ClearCacheRequest {}).await),
        "Configure" => map(runtime
            .configure(proto::ConfigureRequest {
                backend_config_json: local.into(),
            })
            .await),
        "Reconfigure" => map(runtime
            .reconfigure(proto::ReconfigureRequest {
                backend_config_json: "{}".into(),
                discard_previous: false,
                decrypt_only: false,
            })
            .await),
        "Stop" => map(runtime.stop(proto::StopRequest {}).await),
        "Start" => map(runtime.start(proto::StartRequest {}).await),
        other => panic!("unknown operation {other}"),
    }
}

const OPERATIONS: [&str; 31] = [
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "CreateKey",
    "DescribeKey",
    "ListKeys",
    "RotateKey",
    "DisableKey",
    "EnableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "UpdateKeyDescription",
    "TagKey",
    "UntagKey",
    "CreateAlias",
    "UpdateAlias",
    "ListAliases",
    "DeleteAlias",
    "EnableKeyRotation",
    "DisableKeyRotation",
    "GetKeyRotationStatus",
    "GetParametersForImport",
    "ImportKey",
    "Status",
    "ClearCache",
    "Configure",
    "Reconfigure",
    "Stop",
    "Start",
];

/// The policy file above, restated independently of kmsd's policy code.
fn expected(identity: &str, op: &str) -> bool {
    let data = matches!(
        op,
        "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" | "Encrypt" | "Decrypt" | "ReEncrypt"
    );
    let keys = matches!(
        op,
        "CreateKey"
            | "DescribeKey"
            | "ListKeys"
            | "RotateKey"
            | "DisableKey"
            | "EnableKey"
            | "ScheduleKeyDeletion"
            | "CancelKeyDeletion"
            | "UpdateKeyDescription"
            | "TagKey"
            | "UntagKey"
            | "CreateAlias"
            | "UpdateAlias"
            | "ListAliases"
            | "DeleteAlias"
            | "EnableKeyRotation"
            | "DisableKeyRotation"
            | "GetKeyRotationStatus"
            | "GetParametersForImport"
            | "ImportKey"
    );
    match identity {
        "alice" => data && op != "Encrypt",
        "bob" => keys,
        "root" => true,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_follows_the_policy_for_every_identity() {
    let s = setup().await;
    let root = s.kmsd.client().await;
    root.key_admin()
        .create_key(proto::CreateKeyRequest {
            key_id: "alice-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let blob = root
        .encrypt(Some("alice-1"), b"secret", &ctx(&[]))
        .await
        .unwrap()
        .blob;
    let alice = tls_client(s.port, &s.ca.cert_pem(), Some(&s.alice))
        .await
        .unwrap();
    let bob = tls_client(s.port, &s.ca.cert_pem(), Some(&s.bob))
        .await
        .unwrap();

    let mut denials = 0;
    for (n, (name, client)) in [("alice", &alice), ("bob", &bob), ("root", &root)]
        .into_iter()
        .enumerate()
    {
        for op in OPERATIONS {
            let result = call(client, op, &blob, n).await;
            let denied = result.as_ref().err().and_then(kms_client::Error::code)
                == Some(Code::PermissionDenied);
            assert_eq!(!denied, expected(name, op), "{name} {op}: {result:?}");
            if denied {
                denials += 1;
                // No hint whether the key exists.
                assert_eq!(
                    result.unwrap_err().to_string(),
                    "kmsd refused the call (PermissionDenied, PERMISSION_DENIED): permission denied"
                );
            }
        }
        // Put the key and the service back for the next identity.
        let _ = root.admin().start(proto::StartRequest {}).await;
        let _ = root
            .key_admin()
            .cancel_key_deletion(proto::CancelKeyDeletionRequest {
                key_id: "alice-1".into(),
            })
            .await;
        root.key_admin()
            .enable_key(proto::EnableKeyRequest {
                key_id: "alice-1".into(),
            })
            .await
            .unwrap();
    }
    // A denied key pattern: alice may use alice-* and default only.
    root.key_admin()
        .create_key(proto::CreateKeyRequest {
            key_id: "bobs-key".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let err = alice
        .generate_data_key(Some("bobs-key"), &ctx(&[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::PermissionDenied));
    let err = alice
        .generate_data_key(Some("no-such-key"), &ctx(&[]))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(Code::PermissionDenied),
        "a missing key must look like a forbidden one"
    );
    denials += 2;

    // Every denial is audited, with the identity's configured name.
    let audit = std::fs::read_to_string(s.kmsd.dir().join("audit.log")).unwrap();
    let audited = audit
        .lines()
        .filter(|l| l.contains("\"PERMISSION_DENIED\""))
        .count();
    assert_eq!(audited, denials);
    assert!(audit.contains("(alice)\""), "audit lines name the identity");
}
