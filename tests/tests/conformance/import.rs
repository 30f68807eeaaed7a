//! Import of key material (GetParametersForImport, ImportKey) through
//! gRPC, REST and the CLI, with the caller's side done by Python's
//! `cryptography` (tests/interop/python/import_byok.py): the material is
//! wrapped there, and blobs kmsd seals under the imported key are opened
//! there too, from the material alone, to show kmsd really uses it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use kms_client::{KmsClient, proto};
use kmsd_tests::{Kmsd, KmsdOptions, assert_error, binary, ctx, workspace_root};
use ring::rand::SecureRandom;
use tonic::Code;

use crate::Fixture;

/// The deadline of calls that may wait for an RSA key generation.
const PATIENT: std::time::Duration = std::time::Duration::from_secs(60);

fn rpc<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, kms_client::Error> {
    r.map(tonic::Response::into_inner)
        .map_err(kms_client::Error::from)
}

fn unique(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

fn random_material() -> [u8; 32] {
    let mut material = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut material).unwrap();
    material
}

/// Runs import_byok.py; its trimmed stdout.
fn python(args: &[&str]) -> String {
    let script = workspace_root().join("tests/interop/python/import_byok.py");
    let output = Command::new(workspace_root().join(".venv/bin/python"))
        .arg(script)
        .args(args)
        .output()
        .expect("run .venv/bin/python (scripts/setup-test-env.sh installs it)");
    assert!(
        output.status.success(),
        "import_byok.py {:?}: {}",
        args.first(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// `material` wrapped by Python under the PEM public key.
fn wrap(dir: &Path, public_key_pem: &str, material: &[u8]) -> Vec<u8> {
    let pem: PathBuf = dir.join(format!("{}.pem", unique("wrapping")));
    std::fs::write(&pem, public_key_pem).unwrap();
    let wrapped = python(&["wrap", pem.to_str().unwrap(), &hex::encode(material)]);
    B64.decode(wrapped).unwrap()
}

/// The plaintext of a version-1 blob, opened by Python from the material.
fn open_independently(material: &[u8], blob: &[u8], context_json: &str) -> Vec<u8> {
    hex::decode(python(&[
        "open",
        &hex::encode(material),
        &B64.encode(blob),
        context_json,
    ]))
    .unwrap()
}

async fn parameters(
    client: &KmsClient,
    key_id: &str,
) -> Result<proto::GetParametersForImportResponse, kms_client::Error> {
    rpc(client
        .key_admin()
        .get_parameters_for_import(proto::GetParametersForImportRequest {
            key_id: key_id.into(),
        })
        .await)
}

async fn import(
    client: &KmsClient,
    import_token: &str,
    key_id: &str,
    encrypted_key_material: Vec<u8>,
) -> Result<proto::KeyMetadata, kms_client::Error> {
    rpc(client
        .key_admin()
        .import_key(proto::ImportKeyRequest {
            import_token: import_token.into(),
            key_id: key_id.into(),
            encrypted_key_material,
            description: "imported".into(),
            tags: [("source".to_owned(), "hsm".to_owned())].into(),
        })
        .await)
    .map(|r| r.key_metadata.expect("metadata"))
}

/// The whole flow through gRPC, REST and the CLI on one backend: the
/// imported material is what kmsd seals with, it survives a restart, and
/// rotation adds generated versions.
pub(crate) async fn imported_material_is_the_key(mut fx: Fixture) {
    let dir = fx.kmsd.dir().to_path_buf();
    let context = ctx(&[("bucket", "photos"), ("object", "cat.jpg")]);
    let context_json = r#"{"bucket": "photos", "object": "cat.jpg"}"#;
    let material = random_material();
    // The first import parameters wait for an RSA key generation, which a
    // busy test host can stretch past the client's default 5 s.
    let patient = fx.kmsd.client_with(|c| c.timeout = PATIENT).await;

    // gRPC.
    let key_id = unique("byok");
    let params = parameters(&patient, &key_id).await.unwrap();
    assert_eq!(params.wrapping_algorithm, "RSAES_OAEP_SHA_256");
    assert_eq!(params.key_id, key_id);
    assert!(params.import_token.starts_with("imp-"));
    assert!(!params.public_key.is_empty());
    let wrapped = wrap(&dir, &params.public_key_pem, &material);
    assert_eq!(wrapped.len(), 384, "RSA-3072");
    let meta = import(&patient, &params.import_token, "", wrapped)
        .await
        .unwrap();
    assert_eq!(meta.key_id, key_id, "the id the token was bound to");
    assert_eq!(meta.origin, "EXTERNAL");
    assert_eq!(meta.current_version, 1);
    assert_eq!(meta.description, "imported");
    assert_eq!(meta.tags["source"], "hsm");

    let generated = fx
        .client
        .generate_data_key(Some(&key_id), &context)
        .await
        .unwrap();
    assert_eq!(
        open_independently(&material, &generated.blob, context_json),
        generated.key.expose_secret(),
        "kmsd sealed under the imported material"
    );

    // REST, the same material under a second key.
    let rest_key = unique("byok-rest");
    let reply = fx
        .rest()
        .post(
            "/kms/keys/import-parameters",
            &serde_json::json!({ "key_id": rest_key }).to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["wrapping_algorithm"], "RSAES_OAEP_SHA_256");
    let wrapped = wrap(
        &dir,
        reply.json["public_key_pem"].as_str().unwrap(),
        &material,
    );
    let body = serde_json::json!({
        "import_token": reply.json["import_token"],
        "key_id": rest_key,
        "encrypted_key_material": B64.encode(wrapped),
        "description": "over REST",
    });
    let reply = fx.rest().post("/kms/keys/import", &body.to_string()).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["key_metadata"]["origin"], "EXTERNAL");
    let sealed = fx
        .client
        .encrypt(Some(&rest_key), b"same material", &context)
        .await
        .unwrap();
    assert_eq!(
        open_independently(&material, &sealed.blob, context_json),
        b"same material"
    );
    // The same token again: spent.
    let reply = fx.rest().post("/kms/keys/import", &body.to_string()).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(reply.code(), "IMPORT_TOKEN_NOT_FOUND");

    // The CLI does the whole flow with a file of raw material.
    let cli_key = unique("byok-cli");
    let material_file = dir.join("material.bin");
    std::fs::write(&material_file, material).unwrap();
    let output = Command::new(binary("kmsd"))
        .args(["key", "import", &cli_key, "--material-file"])
        .arg(&material_file)
        .args(["--tag", "via=cli"])
        .env("KMSD_ENDPOINT", fx.kmsd.endpoint().to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["key_id"], cli_key.as_str());
    assert_eq!(printed["origin"], "EXTERNAL");
    assert_eq!(printed["tags"]["via"], "cli");
    let sealed = fx
        .client
        .encrypt(Some(&cli_key), b"from the cli", &context)
        .await
        .unwrap();
    assert_eq!(
        open_independently(&material, &sealed.blob, context_json),
        b"from the cli"
    );

    // Counted (before the restart below resets the counters).
    let metrics = fx
        .rest()
        .send(fx.rest().unsigned("GET", "/metrics", ""))
        .await
        .text;
    let ok = kmsd_tests::metrics::series(&metrics, "kmsd_key_imports_total{result=\"ok\"}");
    assert_eq!(ok, Some(3.0), "{metrics}");
    let spent = kmsd_tests::metrics::series(
        &metrics,
        "kmsd_key_imports_total{result=\"token_not_found\"}",
    );
    assert_eq!(spent, Some(1.0));

    // Rotation adds a generated version; the origin stays, old blobs open.
    let rotated = rpc(fx
        .client
        .key_admin()
        .rotate_key(proto::RotateKeyRequest {
            key_id: key_id.clone(),
        })
        .await)
    .unwrap()
    .key_metadata
    .unwrap();
    assert_eq!(rotated.current_version, 2);
    assert_eq!(rotated.origin, "EXTERNAL");

    // Survives a restart.
    fx.restart().await;
    let described = rpc(fx
        .client
        .key_admin()
        .describe_key(proto::DescribeKeyRequest {
            key_id: key_id.clone(),
            ..Default::default()
        })
        .await)
    .unwrap()
    .key_metadata
    .unwrap();
    assert_eq!(described.origin, "EXTERNAL");
    let opened = fx
        .client
        .decrypt(&generated.blob, &context, Some(&key_id))
        .await
        .unwrap();
    assert_eq!(
        opened.plaintext.expose_secret(),
        generated.key.expose_secret()
    );
    // A generated key says so.
    let plain = fx.new_key("generated").await;
    let described = rpc(fx
        .client
        .key_admin()
        .describe_key(proto::DescribeKeyRequest {
            key_id: plain,
            ..Default::default()
        })
        .await)
    .unwrap()
    .key_metadata
    .unwrap();
    assert_eq!(described.origin, "KMSD");

    // Audited without the token or the material; counted.
    let lines = fx.audit_lines();
    let imports: Vec<_> = lines
        .iter()
        .filter(|l| l["operation"] == "ImportKey" && l["key_id"] == key_id.as_str())
        .collect();
    assert_eq!(imports.len(), 1, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l["operation"] == "GetParametersForImport" && l["key_id"] == key_id.as_str())
    );
    let log = std::fs::read_to_string(dir.join("audit.log")).unwrap();
    assert!(!log.contains(&params.import_token));
    assert!(!log.contains(&hex::encode(material)));
    assert!(!log.contains(&B64.encode(material)));
}

/// Tokens: single use (even when the import fails), bound to their key,
/// short-lived and capped; material of the wrong length and ids that
/// cannot be created are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_tokens_are_single_use_bound_short_lived_and_capped() {
    let mut options = KmsdOptions::local();
    options.extra_toml = "[limits]\nimport_token_ttl_secs = 5\nmax_pending_imports = 2\n".into();
    let kmsd = Kmsd::start(options).await;
    let client = kmsd.client_with(|c| c.timeout = PATIENT).await;
    let dir = kmsd.dir().to_path_buf();

    // Wrong length: refused, and the token is spent.
    let p = parameters(&client, "").await.unwrap();
    assert!(p.key_id.is_empty());
    let short = wrap(&dir, &p.public_key_pem, &[7u8; 16]);
    let err = assert_error(
        import(&client, &p.import_token, "short", short).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert!(err.to_string().contains("32 bytes"), "{err}");
    let good = wrap(&dir, &p.public_key_pem, &random_material());
    assert_error(
        import(&client, &p.import_token, "short", good).await,
        Code::NotFound,
        "IMPORT_TOKEN_NOT_FOUND",
    );

    // Bound to the key it was asked for.
    let p = parameters(&client, "bound").await.unwrap();
    let wrapped = wrap(&dir, &p.public_key_pem, &random_material());
    assert_error(
        import(&client, &p.import_token, "other", wrapped).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );

    // Material wrapped for another token does not decrypt.
    let a = parameters(&client, "").await.unwrap();
    let b = parameters(&client, "").await.unwrap();
    // Two pending: the cap.
    assert_error(
        parameters(&client, "").await,
        Code::ResourceExhausted,
        "OVERLOADED",
    );
    let for_a = wrap(&dir, &a.public_key_pem, &random_material());
    assert_error(
        import(&client, &b.import_token, "crossed", for_a).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    // An id that exists, or is reserved, cannot be imported into.
    client
        .key_admin()
        .create_key(proto::CreateKeyRequest {
            key_id: "taken".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let wrapped = wrap(&dir, &a.public_key_pem, &random_material());
    assert_error(
        import(&client, &a.import_token, "taken", wrapped.clone()).await,
        Code::AlreadyExists,
        "KEY_ALREADY_EXISTS",
    );
    assert_error(
        parameters(&client, "kmsd-internal-x").await,
        Code::InvalidArgument,
        "RESERVED_KEY_ID",
    );

    // Expiry.
    let late = parameters(&client, "late").await.unwrap();
    let wrapped = wrap(&dir, &late.public_key_pem, &random_material());
    tokio::time::sleep(std::time::Duration::from_millis(5200)).await;
    assert_error(
        import(&client, &late.import_token, "late", wrapped).await,
        Code::FailedPrecondition,
        "IMPORT_TOKEN_EXPIRED",
    );
    // Expired tokens no longer count against the cap.
    let fresh = parameters(&client, "fresh").await.unwrap();
    let wrapped = wrap(&dir, &fresh.public_key_pem, &random_material());
    let meta = import(&client, &fresh.import_token, "", wrapped)
        .await
        .unwrap();
    assert_eq!(meta.key_id, "fresh");
    assert_error(
        import(&client, "imp-never-issued", "x", vec![0; 384]).await,
        Code::NotFound,
        "IMPORT_TOKEN_NOT_FOUND",
    );
}
