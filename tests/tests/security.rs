//! Access control end to end: mutual TLS identities, unix-socket peers, the
//! per-identity policy matrix, certificate reload, and robustness against
//! malformed input.

// Test code: a failed unwrap is a failed test, with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kms_client::{ClientConfig, ClientIdentity, KmsClient, SecretBytes, TlsSettings, proto};
use kmsd_tests::{
    Kmsd, KmsdOptions, ctx, free_port,
    pki::{Ca, Issued},
};
use tonic::Code;

struct Setup {
    kmsd: Kmsd,
    port: u16,
    ca: Ca,
    alice: Issued,
    bob: Issued,
}

async fn tls_client(port: u16, ca_pem: &str, client: Option<&Issued>) -> Result<KmsClient, String> {
    let mut tls = TlsSettings::new(ca_pem.as_bytes().to_vec()).with_domain("localhost");
    if let Some(client) = client {
        tls = tls.with_identity(ClientIdentity::from_pem(
            client.cert_pem.clone().into_bytes(),
            SecretBytes::new(client.key_pem.clone().into_bytes()),
        ));
    }
    let mut config = ClientConfig::new(format!("https://127.0.0.1:{port}").parse().unwrap());
    config.tls = Some(tls);
    config.retry = kms_client::RetryPolicy::NEVER;
    KmsClient::connect_with(config)
        .await
        .map_err(|e| e.to_string())
}

fn policy(alice: &Issued, bob: &Issued) -> String {
    format!(
        r#"
[[identities]]
name = "alice"
spki_sha256 = "{}"
policies = ["data-alice"]

[[identities]]
name = "bob"
spki_sha256 = "{}"
policies = ["key-admin"]

[[identities]]
name = "root-socket"
unix_uid = 0
policies = ["everything"]

[[identities]]
name = "app"
unix_uid = 1000
policies = ["data-default"]

[policies.data-alice]
allow = ["data:*"]
keys = ["alice-*", "default"]
deny = ["Encrypt"]

[policies.key-admin]
allow = ["keys:*"]

[policies.everything]
allow = ["*"]

[policies.data-default]
allow = ["GenerateDataKey", "Decrypt"]
keys = ["default"]
"#,
        alice.spki_sha256, bob.spki_sha256
    )
}

async fn setup() -> Setup {
    let ca = Ca::new("kmsd test CA");
    let alice = ca.client("alice", false);
    let bob = ca.client("bob", false);
    let port = free_port();
    let mut options = KmsdOptions::local();
    options.server_toml = format!(
        "tcp = \"127.0.0.1:{port}\"\n[server.tls]\ncert_file = \"{{dir}}/server.crt\"\nkey_file = \"{{dir}}/server.key\"\nclient_ca_file = \"{{dir}}/ca.crt\"\n"
    );
    options.extra_toml =
        "[policy]\nfile = \"{dir}/policy.toml\"\n[audit]\noutput = \"{dir}/audit.log\"\n".into();
    let mut kmsd = Kmsd::spawn_only(options);
    // The files must exist before kmsd reads its config; the first spawn
    // above fails on their absence, so write them and start again.
    ca.server().write(kmsd.dir(), "server");
    std::fs::write(kmsd.dir().join("ca.crt"), ca.cert_pem()).unwrap();
    std::fs::write(kmsd.dir().join("policy.toml"), policy(&alice, &bob)).unwrap();
    kmsd.respawn();
    kmsd.wait_ready().await;
    Setup {
        kmsd,
        port,
        ca,
        alice,
        bob,
    }
}

#[tokio::test]
async fn clients_without_a_valid_certificate_cannot_complete_a_handshake() {
    let s = setup().await;
    let other_ca = Ca::new("another CA");
    let mallory = other_ca.client("mallory", false);
    let expired = s.ca.client("expired", true);
    let no_cert = tls_client(s.port, &s.ca.cert_pem(), None).await;
    let foreign = tls_client(s.port, &s.ca.cert_pem(), Some(&mallory)).await;
    let stale = tls_client(s.port, &s.ca.cert_pem(), Some(&expired)).await;
    for (who, attempt) in [
        ("no certificate", no_cert),
        ("another CA", foreign),
        ("expired", stale),
    ] {
        // The handshake fails either at connect or, with TLS 1.3's late
        // client-certificate check, on the first call.
        let refused = match attempt {
            Err(_) => true,
            Ok(client) => client
                .generate_data_key(None, &ctx(&[]))
                .await
                .is_err_and(|e| {
                    e.code() != Some(Code::PermissionDenied) && e.code() != Some(Code::Ok)
                }),
        };
        assert!(refused, "{who}: the handshake was accepted");
    }
    // A good certificate works.
    let alice = tls_client(s.port, &s.ca.cert_pem(), Some(&s.alice))
        .await
        .unwrap();
    alice.generate_data_key(None, &ctx(&[])).await.unwrap();
    assert!(s.kmsd.logs().contains("TLS handshake refused"));
}

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
            .describe_key(proto::DescribeKeyRequest { key_id: key })
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

const OPERATIONS: [&str; 26] = [
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

#[tokio::test]
async fn unix_peers_are_identified_by_their_credentials() {
    use std::os::unix::{fs::PermissionsExt, process::CommandExt};
    let s = setup().await;
    // Let uid/gid 1000 reach the socket: traverse the directory, and own
    // the socket's group (its mode is 0660).
    std::fs::set_permissions(s.kmsd.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::os::unix::fs::chown(s.kmsd.socket(), None, Some(1000)).unwrap();
    let endpoint = s.kmsd.endpoint().to_string();
    let run_as_app = |args: &[&str]| {
        let output = std::process::Command::new(kmsd_tests::binary("kmsd"))
            .args(args)
            .arg("--endpoint")
            .arg(&endpoint)
            .uid(1000)
            .gid(1000)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, stderr) = run_as_app(&["datakey"]);
    assert!(
        ok,
        "uid 1000 may generate data keys under default: {stderr}"
    );
    for denied in [
        &["datakey", "--key-id", "alice-1"][..],
        &["key", "create", "x"],
        &["status"],
    ] {
        let (ok, stderr) = run_as_app(denied);
        assert!(
            !ok && stderr.contains("PERMISSION_DENIED"),
            "{denied:?}: {stderr}"
        );
    }
    let audit = std::fs::read_to_string(s.kmsd.dir().join("audit.log")).unwrap();
    assert!(audit.contains("unix:uid=1000,gid=1000 (app)"), "{audit}");
}

#[tokio::test]
async fn the_server_certificate_reloads_without_dropping_connections() {
    let s = setup().await;
    let alice = tls_client(s.port, &s.ca.cert_pem(), Some(&s.alice))
        .await
        .unwrap();
    alice.generate_data_key(None, &ctx(&[])).await.unwrap();

    // A server certificate from a new CA; clients of the new CA can connect
    // only once kmsd has reloaded.
    let new_ca = Ca::new("renewed CA");
    new_ca.server().write(s.kmsd.dir(), "server");
    s.kmsd.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(client) = tls_client(s.port, &new_ca.cert_pem(), Some(&s.alice)).await
            && client.generate_data_key(None, &ctx(&[])).await.is_ok()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection made before the reload still works.
    alice.generate_data_key(None, &ctx(&[])).await.unwrap();
    // New connections trusting only the old CA now fail.
    assert!(
        tls_client(s.port, &s.ca.cert_pem(), Some(&s.alice))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn plain_tcp_needs_an_explicit_danger_flag() {
    let dir = kmsd_tests::private_dir();
    let config = dir.path().join("kmsd.toml");
    std::fs::write(
        &config,
        format!("[server]\ntcp = \"127.0.0.1:{}\"\n", free_port()),
    )
    .unwrap();
    let output = std::process::Command::new(kmsd_tests::binary("kmsd"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("needs [server.tls]"));
}

#[tokio::test]
async fn the_cli_speaks_mutual_tls() {
    let s = setup().await;
    let dir = s.kmsd.dir();
    std::fs::write(dir.join("client-ca.crt"), s.ca.cert_pem()).unwrap();
    let (cert, key) = s.alice.write(dir, "alice");
    let output = std::process::Command::new(kmsd_tests::binary("kmsd"))
        .args([
            "datakey",
            "--endpoint",
            &format!("https://127.0.0.1:{}", s.port),
        ])
        .arg("--tls-ca")
        .arg(dir.join("client-ca.crt"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .output()
        .unwrap();
    // kmsd's certificate names localhost and 127.0.0.1, so the endpoint's
    // host verifies without an override.
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["key_id"], "default");
}
