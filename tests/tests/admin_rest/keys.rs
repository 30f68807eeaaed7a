//! Every key endpoint, its legacy aliases, and their errors.

use super::*;

#[tokio::test]
async fn creating_listing_and_describing_keys() {
    let (_kmsd, admin) = start(KmsdOptions::local()).await;

    // Create: RustFS's name tag, kmsd's key_id, the legacy paths, a random id.
    let created = ok(
        admin
            .post(
                "/kms/keys",
                r#"{"key_usage": "EncryptDecrypt", "description": "app", "tags": {"name": "app-key", "team": "x"}}"#,
            )
            .await,
        201,
    );
    assert_eq!(created["key_id"], "app-key");
    assert_eq!(created["key_metadata"]["key_state"], "Enabled");
    assert_eq!(created["key_metadata"]["tags"]["team"], "x");
    ok(
        admin
            .post("/kms/create-key", r#"{"key_id": "b-key"}"#)
            .await,
        201,
    );
    ok(
        admin
            .post("/kms/key/create", r#"{"key_id": "c-key"}"#)
            .await,
        201,
    );
    let random = ok(admin.post("/kms/keys", "").await, 201);
    assert_eq!(random["key_id"].as_str().unwrap().len(), 36);
    expect(
        &admin.post("/kms/keys", r#"{"key_id": "app-key"}"#).await,
        409,
        "KEY_ALREADY_EXISTS",
    );
    expect(
        &admin.post("/kms/keys", r#"{"key_id": "../etc"}"#).await,
        400,
        "INVALID_KEY_ID",
    );
    expect(
        &admin
            .post("/kms/keys", r#"{"key_id": "a", "tags": {"name": "b"}}"#)
            .await,
        400,
        "INVALID_ARGUMENT",
    );
    expect(
        &admin
            .post("/kms/keys", r#"{"key_usage": "SignVerify"}"#)
            .await,
        400,
        "INVALID_ARGUMENT",
    );
    expect(
        &admin.post("/kms/keys", r#"{"keyid": "x"}"#).await,
        400,
        "INVALID_ARGUMENT",
    );

    // List, page by page.
    let mut seen = Vec::new();
    let mut marker = String::new();
    loop {
        let path = if marker.is_empty() {
            "/kms/keys?limit=2".to_owned()
        } else {
            format!("/kms/keys?limit=2&marker={marker}")
        };
        let page = ok(admin.get(&path).await, 200);
        for key in page["keys"].as_array().unwrap() {
            seen.push(key["key_id"].as_str().unwrap().to_owned());
        }
        if page["truncated"] == false {
            assert_eq!(page["next_marker"], serde_json::Value::Null);
            break;
        }
        marker = page["next_marker"].as_str().unwrap().to_owned();
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let legacy = ok(admin.get("/kms/list-keys").await, 200);
    assert_eq!(legacy["keys"].as_array().unwrap().len(), 5);
    for bad in [
        "limit=0",
        "limit=abc",
        "limit=1001",
        "marker=%21%21",
        "status=x",
    ] {
        expect(
            &admin.get(&format!("/kms/keys?{bad}")).await,
            400,
            "INVALID_ARGUMENT",
        );
    }

    // Describe, by path and by query.
    let described = ok(admin.get("/kms/keys/app-key").await, 200);
    assert_eq!(described["key_metadata"]["description"], "app");
    ok(admin.get("/kms/describe-key?keyId=app-key").await, 200);
    ok(admin.get("/kms/key/status?key_id=app-key").await, 200);
    expect(&admin.get("/kms/keys/nope").await, 404, "KEY_NOT_FOUND");
    expect(
        &admin.get("/kms/describe-key").await,
        400,
        "INVALID_ARGUMENT",
    );
}

#[tokio::test]
async fn key_states_data_keys_and_deletion() {
    let (kmsd, admin) = start(KmsdOptions::local()).await;
    for id in ["app-key", "b-key"] {
        ok(
            admin
                .post("/kms/keys", &format!(r#"{{"key_id": "{id}"}}"#))
                .await,
            201,
        );
    }

    // Disable, enable, rotate; data keys follow the state and version.
    let disabled = ok(
        admin
            .post("/kms/keys/disable", r#"{"key_id": "app-key"}"#)
            .await,
        200,
    );
    assert_eq!(disabled["key_metadata"]["key_state"], "Disabled");
    expect(
        &admin
            .post("/kms/generate-data-key", r#"{"key_id": "app-key"}"#)
            .await,
        409,
        "KEY_DISABLED",
    );
    ok(
        admin
            .post("/kms/keys/enable", r#"{"key_id": "app-key"}"#)
            .await,
        200,
    );
    let rotated = ok(
        admin
            .post("/kms/keys/rotate", r#"{"key_id": "app-key"}"#)
            .await,
        200,
    );
    assert_eq!(rotated["key_metadata"]["current_version"], 2);
    expect(
        &admin
            .post("/kms/keys/rotate", r#"{"key_id": "nope"}"#)
            .await,
        404,
        "KEY_NOT_FOUND",
    );
    expect(
        &admin.post("/kms/keys/enable", "").await,
        400,
        "INVALID_ARGUMENT",
    );

    let generated = ok(
        admin
            .post(
                "/kms/generate-data-key",
                r#"{"key_id": "app-key", "key_spec": "Aes256", "encryption_context": {"bucket": "photos"}}"#,
            )
            .await,
        200,
    );
    assert_eq!(generated["key_id"], "app-key");
    assert_eq!(generated["key_version"], 2);
    let plaintext = B64
        .decode(generated["plaintext_key"].as_str().unwrap())
        .unwrap();
    assert_eq!(plaintext.len(), 32);
    // The REST data key opens through the gRPC data plane.
    let blob = B64
        .decode(generated["ciphertext_blob"].as_str().unwrap())
        .unwrap();
    let client = kmsd.client().await;
    let opened = client
        .decrypt(&blob, &ctx(&[("bucket", "photos")]), Some("app-key"))
        .await
        .unwrap();
    assert_eq!(opened.plaintext.expose_secret(), plaintext.as_slice());
    let default = ok(admin.post("/kms/generate-data-key", "").await, 200);
    assert_eq!(default["key_id"], "default");
    expect(
        &admin
            .post("/kms/generate-data-key", r#"{"key_spec": "Aes128"}"#)
            .await,
        400,
        "INVALID_ARGUMENT",
    );
    expect(
        &admin
            .post(
                "/kms/generate-data-key",
                r#"{"encryption_context": {"": "x"}}"#,
            )
            .await,
        400,
        "INVALID_ENCRYPTION_CONTEXT",
    );

    // Deletion: body and query forms, cancel both ways.
    let scheduled = ok(
        admin
            .delete(
                "/kms/keys/delete",
                r#"{"key_id": "b-key", "pending_window_in_days": 7}"#,
            )
            .await,
        200,
    );
    assert_eq!(scheduled["key_metadata"]["key_state"], "PendingDeletion");
    assert!(scheduled["deletion_date"].as_str().is_some());
    expect(
        &admin
            .delete("/kms/keys/delete", r#"{"key_id": "b-key"}"#)
            .await,
        409,
        "INVALID_KEY_STATE",
    );
    let cancelled = ok(
        admin
            .post("/kms/keys/cancel-deletion?keyId=b-key", "")
            .await,
        200,
    );
    assert_eq!(cancelled["key_metadata"]["key_state"], "Disabled");
    ok(
        admin
            .delete("/kms/keys/delete?keyId=b-key&pending_window_in_days=30", "")
            .await,
        200,
    );
    ok(
        admin
            .post("/kms/keys/cancel-deletion", r#"{"key_id": "b-key"}"#)
            .await,
        200,
    );
    expect(
        &admin
            .post("/kms/keys/cancel-deletion", r#"{"key_id": "b-key"}"#)
            .await,
        409,
        "INVALID_KEY_STATE",
    );
    for bad in [
        r#"{"key_id": "b-key", "pending_window_in_days": 3}"#,
        r#"{"key_id": "b-key", "pending_window_in_days": 0}"#,
        r#"{"key_id": "b-key", "force_immediate": true}"#,
        r#"{"key_id": "b-key", "confirm_key_id": "c-key"}"#,
        r#"{}"#,
    ] {
        expect(
            &admin.delete("/kms/keys/delete", bad).await,
            400,
            "INVALID_ARGUMENT",
        );
    }
    expect(
        &admin
            .delete("/kms/keys/delete?keyId=b-key", r#"{"key_id": "b-key"}"#)
            .await,
        400,
        "INVALID_ARGUMENT",
    );

    // Unknown routes and methods, behind authentication.
    expect(&admin.get("/kms/nope").await, 404, "ROUTE_NOT_FOUND");
    expect(
        &admin.post("/kms/keys/app-key", "").await,
        405,
        "METHOD_NOT_ALLOWED",
    );
}
