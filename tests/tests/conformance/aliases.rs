//! Aliases (issue 20): an alias retargeted to a new key moves new writes
//! while older objects keep opening, over gRPC, the admin REST API and the
//! CLI, within one kmsd and across two sidecars on one Vault.

use kms_client::{
    KmsClient, proto,
    sse::{Decision, ObjectId, SseKeys, StoredSse},
};
use kmsd_tests::{assert_error, ctx};
use serde_json::json;
use tonic::Code;

use crate::{
    Fixture,
    lifecycle::{audited, cli, describe, rpc},
};

async fn alias_call(
    client: &KmsClient,
    create: bool,
    alias_name: &str,
    target: &str,
) -> Result<proto::Alias, kms_client::Error> {
    let mut admin = client.key_admin();
    let (alias_name, target_key_id) = (alias_name.to_owned(), target.to_owned());
    let alias = if create {
        rpc(admin
            .create_alias(proto::CreateAliasRequest {
                alias_name,
                target_key_id,
            })
            .await)?
        .alias
    } else {
        rpc(admin
            .update_alias(proto::UpdateAliasRequest {
                alias_name,
                target_key_id,
            })
            .await)?
        .alias
    };
    Ok(alias.expect("alias"))
}

/// An object's SSE-KMS data key and the key id its metadata records.
async fn seal_object(
    sse: &SseKeys<KmsClient>,
    decision: &Decision,
    object: &ObjectId<'_>,
) -> (String, kms_client::sse::Sealing) {
    let sealing = sse.seal(decision, object).await.unwrap().unwrap();
    let StoredSse::Kms(sealed, _) = &sealing.stored else {
        panic!("not SSE-KMS: {:?}", sealing.stored);
    };
    (sealed.key_id.clone(), sealing)
}

/// An operator retargets an alias to a new key: new writes through an
/// unchanged client configuration (the SSE-KMS key id `alias/<name>`) land
/// under the new key, and the objects written before still open.
pub(crate) async fn aliases_move_new_writes(mut f: Fixture) {
    let old_key = f.new_key("alias-old").await;
    let new_key = f.new_key("alias-new").await;
    let alias = format!("alias/app-{}", std::process::id());
    let created = alias_call(&f.client, true, &alias, &old_key).await.unwrap();
    assert_eq!(
        (created.alias_name.as_str(), created.target_key_id.as_str()),
        (alias.as_str(), old_key.as_str())
    );

    // The storage server's configuration: SSE-KMS under the alias.
    let sse = SseKeys::new(f.client.clone(), Default::default());
    let decision = Decision::Kms {
        key_id: Some(alias.clone()),
        context: ctx(&[("tenant", "a")]),
        bucket_key: false,
    };
    let object = ObjectId::new("photos", "cat.jpg");
    let (first_key, first) = seal_object(&sse, &decision, &object).await;
    // The object records the real key, never the alias.
    assert_eq!(first_key, old_key);
    let small = f
        .client
        .encrypt(Some(&alias), b"s", &ctx(&[]))
        .await
        .unwrap();
    assert_eq!(small.key_id, old_key);

    // The operator retargets the alias (REST, as RustFS tooling would).
    let reply = f
        .rest()
        .post(
            "/kms/aliases/update",
            &json!({"alias_name": alias, "target_key_id": new_key}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["alias"]["target_key_id"], new_key);

    let (second_key, second) = seal_object(&sse, &decision, &object).await;
    assert_eq!(second_key, new_key);
    // Both objects open, each under its own key.
    for sealing in [&first, &second] {
        let opened = sse
            .open(
                &sealing.stored,
                None,
                kms_client::sse::KeySlot::Object,
                &object,
            )
            .await
            .unwrap();
        assert_eq!(
            opened.key.expose_secret(),
            sealing.key.expose_secret(),
            "an object no longer opens"
        );
    }
    let opened = f
        .client
        .decrypt(&small.blob, &ctx(&[]), None)
        .await
        .unwrap();
    assert_eq!(opened.key_id, old_key);
    // As an expected key, an alias stands for its target now (as in AWS):
    // the old blob no longer matches it.
    assert_error(
        f.client.decrypt(&small.blob, &ctx(&[]), Some(&alias)).await,
        Code::InvalidArgument,
        "INCORRECT_KEY",
    );
    // ReEncrypt's destination and DescribeKey take the alias too.
    let moved = f
        .client
        .re_encrypt(&small.blob, &ctx(&[]), Some(&alias), None)
        .await
        .unwrap();
    assert_eq!(moved.blob.key_id, new_key);
    f.client
        .decrypt(&moved.blob.blob, &ctx(&[]), Some(&alias))
        .await
        .unwrap();
    assert_eq!(describe(&f.client, &alias).await.key_id, new_key);
    let reply = f
        .rest()
        .get(&format!("/kms/describe-key?keyId={alias}"))
        .await;
    assert_eq!(
        reply.json["key_metadata"]["key_id"], new_key,
        "{}",
        reply.text
    );
    let reply = f
        .rest()
        .post(
            "/kms/generate-data-key",
            &json!({"key_id": alias}).to_string(),
        )
        .await;
    assert_eq!(reply.json["key_id"], new_key, "{}", reply.text);

    // Listing, over gRPC and REST.
    let listed = rpc(f
        .client
        .key_admin()
        .list_aliases(proto::ListAliasesRequest {
            key_id: new_key.clone(),
            ..Default::default()
        })
        .await)
    .unwrap();
    assert_eq!(listed.aliases.len(), 1);
    assert_eq!(listed.aliases[0].alias_name, alias);
    let reply = f
        .rest()
        .get(&format!("/kms/aliases?key_id={old_key}"))
        .await;
    assert_eq!(reply.json["aliases"], json!([]), "{}", reply.text);

    // Errors.
    assert_error(
        alias_call(&f.client, true, &alias, &new_key).await,
        Code::AlreadyExists,
        "ALIAS_ALREADY_EXISTS",
    );
    assert_error(
        alias_call(&f.client, false, "alias/nobody", &new_key).await,
        Code::NotFound,
        "ALIAS_NOT_FOUND",
    );
    assert_error(
        f.client
            .generate_data_key(Some("alias/nobody"), &ctx(&[]))
            .await,
        Code::NotFound,
        "ALIAS_NOT_FOUND",
    );
    assert_error(
        f.client
            .generate_data_key(Some("alias/a/b"), &ctx(&[]))
            .await,
        Code::InvalidArgument,
        "INVALID_ALIAS_NAME",
    );
    assert_error(
        alias_call(&f.client, true, "alias/dangling", "no-such-key").await,
        Code::NotFound,
        "KEY_NOT_FOUND",
    );

    // The alias survives a restart; the CLI lists and deletes it.
    f.restart().await;
    let generated = f
        .client
        .generate_data_key(Some(&alias), &ctx(&[]))
        .await
        .unwrap();
    assert_eq!(generated.key_id, new_key);
    let listed = cli(&f, &["alias", "list"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["alias_name"] == alias && a["target_key_id"] == new_key),
        "{listed}"
    );
    cli(&f, &["alias", "delete", &alias]);
    assert_error(
        f.client.generate_data_key(Some(&alias), &ctx(&[])).await,
        Code::NotFound,
        "ALIAS_NOT_FOUND",
    );
    // Deleting the alias leaves the keys and their blobs alone.
    f.client
        .decrypt(&generated.blob, &ctx(&[]), None)
        .await
        .unwrap();

    // REST create and delete; the audit lines name the alias.
    let reply = f
        .rest()
        .post(
            "/kms/aliases",
            &json!({"alias_name": "rest-made", "target_key_id": old_key}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["alias"]["alias_name"], "alias/rest-made");
    let reply = f
        .rest()
        .delete(
            "/kms/aliases/delete",
            r#"{"alias_name": "alias/rest-made"}"#,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let update = audited(&f, "UpdateAlias", &old_key).expect("an UpdateAlias line");
    assert_eq!(update["alias"], alias);
    assert_eq!(update["destination_key_id"], new_key);
    let use_line = f
        .audit_lines()
        .into_iter()
        .find(|l| l["operation"] == "GenerateDataKey" && l["alias"] == alias)
        .expect("a GenerateDataKey line through the alias");
    assert!(use_line["key_id"] == old_key || use_line["key_id"] == new_key);
}

/// Two sidecars on one Vault: an alias retargeted through one moves the
/// other's new writes within its metadata TTL (`cache_ttl_seconds`, 1 s
/// here), with no restart and no configuration change on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retarget_through_one_sidecar_reaches_another() {
    use kmsd_openbao_testkit::{OpenBao, documented_policy};
    use kmsd_tests::{Kmsd, KmsdOptions};

    let bao = OpenBao::dev().await;
    bao.write_policy("kmsd", &documented_policy()).await;
    let token = bao.create_token(&["kmsd"], "1h").await;
    let backend = bao.backend_toml(&token, "default").replace(
        "[backend.auth_method]",
        "cache_ttl_seconds = 1\n[backend.auth_method]",
    );
    let options = KmsdOptions {
        backend_toml: Some(backend),
        ..KmsdOptions::local()
    };
    let a_kmsd = Kmsd::start(options.clone()).await;
    let a = a_kmsd.client().await;
    let b_kmsd = Kmsd::start(options).await;
    let b = b_kmsd.client().await;
    for key_id in ["side-old", "side-new"] {
        rpc(a
            .key_admin()
            .create_key(proto::CreateKeyRequest {
                key_id: key_id.into(),
                ..Default::default()
            })
            .await)
        .unwrap();
    }
    alias_call(&a, true, "alias/shared", "side-old")
        .await
        .unwrap();
    let before = b
        .generate_data_key(Some("alias/shared"), &ctx(&[]))
        .await
        .unwrap();
    assert_eq!(before.key_id, "side-old");

    alias_call(&a, false, "alias/shared", "side-new")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let after = loop {
        let generated = b
            .generate_data_key(Some("alias/shared"), &ctx(&[]))
            .await
            .unwrap();
        if generated.key_id == "side-new" {
            break generated;
        }
        assert_eq!(generated.key_id, "side-old");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the other sidecar never saw the retarget"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    println!(
        "the other sidecar moved to the new key {:?} after the retarget (cache_ttl_seconds = 1)",
        started.elapsed()
    );
    for (generated, key_id) in [(&before, "side-old"), (&after, "side-new")] {
        let opened = b.decrypt(&generated.blob, &ctx(&[]), None).await.unwrap();
        assert_eq!(opened.key_id, key_id);
        assert_eq!(
            opened.plaintext.expose_secret(),
            generated.key.expose_secret()
        );
    }
}
