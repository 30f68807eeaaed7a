//! Every lifecycle transition over REST, and the invalid ones.

use super::*;

#[tokio::test]
async fn every_lifecycle_transition_over_rest() {
    let passphrase = "sealing-passphrase-never-shown";
    let mut options = not_configured();
    options
        .env
        .push(("KMSD_TEST_PASSPHRASE".into(), passphrase.into()));
    // The sealed backend below names its passphrase variable, which the
    // admin API may do only because [admin] allowed_env_vars lists it.
    let (options, port) = kmsd_tests::rest::with_admin_rules(
        options,
        ACCESS_KEY,
        SECRET,
        "allowed_dirs = [\"{dir}\"]\nallowed_env_vars = [\"KMSD_TEST_PASSPHRASE\"]",
    );
    let kmsd = Kmsd::start(options).await;
    let admin = AdminClient::new(port, ACCESS_KEY, SECRET);

    let status = ok(admin.get("/kms/status").await, 200);
    assert_eq!(status["status"], "NotConfigured");
    assert_eq!(status["backend"], serde_json::Value::Null);
    expect(
        &admin.post("/kms/start", "").await,
        409,
        "INVALID_SERVICE_STATE",
    );
    expect(
        &admin.post("/kms/stop", "").await,
        409,
        "INVALID_SERVICE_STATE",
    );
    for bad in [
        "",
        "not json",
        r#"{"backend_type": "floppy"}"#,
        r#"{"backend_type": "local", "key_dir": "relative/path"}"#,
        r#"{"backend_type": "local", "key_dir": "/k", "tokn": "x"}"#,
    ] {
        expect(
            &admin.post("/kms/configure", bad).await,
            400,
            "INVALID_CONFIG",
        );
    }

    // A sealed backend: its passphrase must never come back.
    let sealed = format!(
        r#"{{"backend_type": "local", "key_dir": "{}/keys-a", "default_key_id": "default", "sealing": {{"passphrase_env": "KMSD_TEST_PASSPHRASE"}}}}"#,
        kmsd.dir().display()
    );
    let configured = ok(admin.post("/kms/configure", &sealed).await, 200);
    assert_eq!(configured["status"], "Configured");
    assert_eq!(configured["backend_type"], "local");
    expect(
        &admin.post("/kms/generate-data-key", "{}").await,
        503,
        "NOT_RUNNING",
    );

    let running = ok(admin.post("/kms/start", "").await, 200);
    assert_eq!(running["status"], "Running");
    // `healthy` is readiness: it turns true with the first passing
    // self-probe, which may come after start answers.
    assert!(running["healthy"].is_boolean());
    assert_eq!(running["persisted"], true);
    assert_eq!(running["backend"]["settings"]["sealed"], "true");
    ok(admin.post("/kms/start", r#"{"force": true}"#).await, 200);
    expect(
        &admin
            .post("/kms/configure", &local_json(&kmsd, "keys-b"))
            .await,
        409,
        "INVALID_SERVICE_STATE",
    );
    let key = ok(admin.post("/kms/generate-data-key", "{}").await, 200);
    let blob = B64
        .decode(key["ciphertext_blob"].as_str().unwrap())
        .unwrap();

    for path in ["/kms/status", "/kms/service-status", "/kms/config"] {
        let reply = admin.get(path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        assert!(!reply.text.contains(passphrase), "{path}: {}", reply.text);
        assert!(!reply.text.contains(SECRET), "{path}: {}", reply.text);
    }
    assert!(
        !admin
            .post("/kms/status", "")
            .await
            .text
            .contains(passphrase)
    );

    assert_eq!(
        ok(admin.post("/kms/stop", "").await, 200)["status"],
        "Stopped"
    );
    ok(admin.post("/kms/stop", "").await, 200);
    expect(
        &admin.post("/kms/generate-data-key", "{}").await,
        503,
        "NOT_RUNNING",
    );
    assert_eq!(
        ok(admin.post("/kms/start", "").await, 200)["status"],
        "Running"
    );

    // Reconfigure: the old backend stays for decryption unless discarded.
    let swapped = ok(
        admin
            .post("/kms/reconfigure", &local_json(&kmsd, "keys-b"))
            .await,
        200,
    );
    assert_eq!(swapped["status"], "Running");
    assert_eq!(swapped["previous_backends"].as_array().unwrap().len(), 1);
    let client = kmsd.client().await;
    client.decrypt(&blob, &ctx(&[]), None).await.unwrap();
    let discard = local_json(&kmsd, "keys-c").replace('}', r#", "discard_previous": true}"#);
    let discarded = ok(admin.post("/kms/reconfigure", &discard).await, 200);
    assert!(
        discarded["backend"]["settings"]["key_dir"]
            .as_str()
            .unwrap()
            .ends_with("keys-c")
    );
    assert_eq!(discarded["previous_backends"].as_array().unwrap().len(), 1);
    expect(
        &admin
            .post(
                "/kms/reconfigure",
                &local_json(&kmsd, "keys-c").replace('}', r#", "discard_previous": "yes"}"#),
            )
            .await,
        400,
        "INVALID_CONFIG",
    );

    // A backend that cannot be built: 503, the old one keeps serving.
    std::fs::write(kmsd.dir().join("a-file"), b"").unwrap();
    expect(
        &admin
            .post("/kms/reconfigure", &local_json(&kmsd, "a-file"))
            .await,
        503,
        "BACKEND_START_FAILED",
    );
    let after = ok(admin.get("/kms/status").await, 200);
    assert_eq!(after["status"], "Running");
    assert!(
        after["backend"]["settings"]["key_dir"]
            .as_str()
            .unwrap()
            .ends_with("keys-c")
    );

    // A failed start leaves Error, with the reason, and 503.
    ok(admin.post("/kms/stop", "").await, 200);
    ok(
        admin
            .post("/kms/configure", &local_json(&kmsd, "a-file"))
            .await,
        200,
    );
    expect(
        &admin.post("/kms/start", "").await,
        503,
        "BACKEND_START_FAILED",
    );
    let failed = ok(admin.get("/kms/status").await, 200);
    assert_eq!(failed["status"], "Error");
    assert!(failed["error"].as_str().unwrap().contains("a-file"));

    let cleared = ok(admin.post("/kms/clear-cache", "").await, 200);
    assert_eq!(cleared["status"], "success");
}
