//! Key lifecycle parity with RustFS and AWS KMS (issue 20): metadata
//! updates and status capabilities, over gRPC, the admin REST API and the
//! CLI, with their audit lines (aliases: `aliases.rs`, which shares the
//! helpers here).

use std::{collections::BTreeMap, process::Command};

use kms_client::{KmsClient, proto};
use kmsd_tests::{assert_error, binary};
use serde_json::{Value, json};
use tonic::Code;

use crate::Fixture;

pub(crate) fn rpc<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, kms_client::Error> {
    r.map(tonic::Response::into_inner)
        .map_err(kms_client::Error::from)
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn tag(
    client: &KmsClient,
    key_id: &str,
    tags: BTreeMap<String, String>,
) -> Result<proto::KeyMetadata, kms_client::Error> {
    rpc(client
        .key_admin()
        .tag_key(proto::TagKeyRequest {
            key_id: key_id.into(),
            tags,
        })
        .await)
    .map(|r| r.key_metadata.expect("metadata"))
}

pub(crate) async fn describe(client: &KmsClient, key_id: &str) -> proto::KeyMetadata {
    rpc(client
        .key_admin()
        .describe_key(proto::DescribeKeyRequest {
            key_id: key_id.into(),
            ..Default::default()
        })
        .await)
    .unwrap()
    .key_metadata
    .unwrap()
}

/// Runs the `kmsd` CLI against the fixture's socket; its JSON output.
pub(crate) fn cli(f: &Fixture, args: &[&str]) -> Value {
    let output = Command::new(binary("kmsd"))
        .args(args)
        .env("KMSD_ENDPOINT", f.kmsd.endpoint().to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kmsd {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Whether the audit log has a successful line of `operation` on `key_id`.
pub(crate) fn audited(f: &Fixture, operation: &str, key_id: &str) -> Option<Value> {
    f.audit_lines()
        .into_iter()
        .find(|l| l["operation"] == operation && l["key_id"] == key_id && l["outcome"] == "ok")
}

pub(crate) async fn metadata_updates(mut f: Fixture) {
    let key = f.new_key("meta").await;
    let mut admin = f.client.key_admin();

    // gRPC: description, tags added and replaced, tags removed.
    let meta = rpc(admin
        .update_key_description(proto::UpdateKeyDescriptionRequest {
            key_id: key.clone(),
            description: "photos bucket".into(),
        })
        .await)
    .unwrap()
    .key_metadata
    .unwrap();
    assert_eq!(meta.description, "photos bucket");
    tag(
        &f.client,
        &key,
        tags(&[("team", "storage"), ("env", "dev")]),
    )
    .await
    .unwrap();
    let meta = tag(&f.client, &key, tags(&[("env", "prod")]))
        .await
        .unwrap();
    assert_eq!(meta.tags, tags(&[("env", "prod"), ("team", "storage")]));
    let meta = rpc(admin
        .untag_key(proto::UntagKeyRequest {
            key_id: key.clone(),
            tag_keys: vec!["env".into(), "absent".into()],
        })
        .await)
    .unwrap()
    .key_metadata
    .unwrap();
    assert_eq!(meta.tags, tags(&[("team", "storage")]));
    let listed = rpc(admin.list_keys(proto::ListKeysRequest::default()).await).unwrap();
    let listed = listed.keys.iter().find(|k| k.key_id == key).unwrap();
    assert_eq!(listed.tags, tags(&[("team", "storage")]));
    assert_eq!(listed.description, "photos bucket");

    // AWS's tag rules, each with a message that names it.
    let long_key = "k".repeat(129);
    let long_value = "v".repeat(257);
    for (bad, says) in [
        (tags(&[(&long_key, "v")]), "1-128 characters"),
        (tags(&[("k", &long_value)]), "at most 256"),
        (tags(&[("aws:owner", "x")]), "reserved"),
        (tags(&[("kmsd:x", "x")]), "reserved"),
        (tags(&[("name", "other")]), "cannot be changed"),
        (BTreeMap::new(), "at least one tag"),
    ] {
        let err = assert_error(
            tag(&f.client, &key, bad).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert!(err.to_string().contains(says), "{err}");
    }
    // 50 tags in all is the limit, counted after merging.
    let many: BTreeMap<String, String> = (0..49).map(|i| (format!("t{i}"), "x".into())).collect();
    let meta = tag(&f.client, &key, many).await.unwrap();
    assert_eq!(meta.tags.len(), 50);
    let err = assert_error(
        tag(&f.client, &key, tags(&[("one-more", "")])).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert!(err.to_string().contains("would have 51 tags"), "{err}");
    let untag_all: Vec<String> = (0..49).map(|i| format!("t{i}")).collect();
    rpc(admin
        .untag_key(proto::UntagKeyRequest {
            key_id: key.clone(),
            tag_keys: untag_all,
        })
        .await)
    .unwrap();
    assert_error(
        rpc(admin
            .update_key_description(proto::UpdateKeyDescriptionRequest {
                key_id: key.clone(),
                description: "d".repeat(1025),
            })
            .await),
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_error(
        tag(&f.client, "no-such-key", tags(&[("a", "b")])).await,
        Code::NotFound,
        "KEY_NOT_FOUND",
    );

    // REST, with RustFS's paths and field names.
    let rest = f.rest();
    let reply = rest
        .post(
            "/kms/keys/update-description",
            &json!({"key_id": key, "description": "via REST"}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["key_metadata"]["description"], "via REST");
    let reply = rest
        .post(
            "/kms/keys/tag",
            &json!({"key_id": key, "tags": {"cost-center": "42"}}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = rest
        .post(
            "/kms/keys/untag",
            &json!({"key_id": key, "tag_keys": ["team"]}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json["key_metadata"]["tags"],
        json!({"cost-center": "42"})
    );
    let reply = rest
        .post(
            "/kms/keys/tag",
            &json!({"key_id": key, "tags": {"aws:x": "1"}}).to_string(),
        )
        .await;
    assert_eq!((reply.status, reply.code()), (400, "INVALID_ARGUMENT"));
    let reply = rest.get(&format!("/kms/keys/{key}")).await;
    assert_eq!(
        reply.json["key_metadata"]["tags"],
        json!({"cost-center": "42"})
    );

    // The CLI.
    let out = cli(&f, &["key", "tag", &key, "--tag", "owner=ops"]);
    assert_eq!(out["tags"]["owner"], "ops");
    let out = cli(&f, &["key", "untag", &key, "--tag-key", "cost-center"]);
    assert_eq!(out["tags"], json!({"owner": "ops"}));
    let out = cli(&f, &["key", "update-description", &key, "from the CLI"]);
    assert_eq!(out["description"], "from the CLI");

    // Audit lines name the operation and the key.
    for op in ["UpdateKeyDescription", "TagKey", "UntagKey"] {
        assert!(audited(&f, op, &key).is_some(), "no {op} audit line");
    }

    // Status reports the backend's capabilities, over gRPC and REST.
    // RustFS's set in its order, then kmsd's own; only the local backend
    // has kmsd's backup (Vault's is its snapshot).
    let status = rpc(f.client.admin().status(proto::StatusRequest {}).await).unwrap();
    let backend = status.backend.unwrap();
    let is_local = backend.backend_type == "local";
    let mut expected = vec![
        "encrypt",
        "decrypt",
        "generate_data_key",
        "enable_disable",
        "rotate",
        "versioning",
        "rewrap",
        "schedule_deletion",
        "physical_delete",
        "update_key_metadata",
        "aliases",
        "automatic_rotation",
        "usage_figures",
        "import_key_material",
    ];
    if is_local {
        expected.push("backup");
    }
    assert_eq!(backend.capabilities, expected);
    let reply = f.rest().get("/kms/status").await;
    assert_eq!(reply.json["capabilities"]["update_key_metadata"], true);
    assert_eq!(reply.json["capabilities"]["rotate"], true);
    assert_eq!(reply.json["capabilities"]["automatic_rotation"], true);
    assert_eq!(reply.json["capabilities"]["backup"], is_local);

    // Changes survive a restart; a key pending deletion refuses them.
    f.restart().await;
    let meta = describe(&f.client, &key).await;
    assert_eq!(meta.description, "from the CLI");
    assert_eq!(meta.tags, tags(&[("owner", "ops")]));
    rpc(f
        .client
        .key_admin()
        .schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
            key_id: key.clone(),
            pending_window_in_days: 7,
            // The deletion guard (issue 20) is not what this tests.
            force: true,
        })
        .await)
    .unwrap();
    assert_error(
        tag(&f.client, &key, tags(&[("late", "x")])).await,
        Code::FailedPrecondition,
        "INVALID_KEY_STATE",
    );
}
