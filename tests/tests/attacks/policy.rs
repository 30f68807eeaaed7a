//! Item 3: ListKeys and DescribeKey show only the caller's keys; kmsd's
//! reserved keys are refused by every caller-facing RPC and REST route;
//! reflection is only for callers the policy allows something, health is
//! public; an unauthenticated caller gets no key with a policy file.

use std::{os::unix::fs::MetadataExt, time::Duration};

use bytes::Bytes;
use kms_client::{KmsClient, proto};
use kmsd_tests::{
    Kmsd, KmsdOptions, assert_error, ctx, free_port,
    rest::{AdminClient, Reply, with_admin, with_admin_rules},
};
use tonic::Code;

const SECRET: &str = "policy-test-secret-3f0a6b";
const PROBE: &str = "kmsd-internal-probe";

fn policy(uid: u32) -> String {
    format!(
        r#"
[[identities]]
name = "ops"
access_key = "admin"
policies = ["everything"]

[[identities]]
name = "storage"
unix_uid = {uid}
policies = ["rustfs"]

[[identities]]
name = "limited-rest"
access_key = "limited"
policies = ["rustfs"]

[policies.everything]
allow = ["*"]

[policies.rustfs]
allow = ["GenerateDataKey", "Decrypt", "ListKeys", "DescribeKey", "Status"]
keys = ["rustfs-*"]
"#
    )
}

/// kmsd with the policy above, the admin API (keys `admin` and `limited`)
/// and plaintext TCP (whose port is returned).
async fn with_policy() -> (Kmsd, AdminClient, AdminClient, u16) {
    let tcp = free_port();
    let mut options = KmsdOptions::local();
    options.server_toml = format!("tcp = \"127.0.0.1:{tcp}\"\ndanger_plaintext_tcp = true\n");
    options
        .extra_toml
        .push_str("[policy]\nfile = \"{dir}/policy.toml\"\n");
    options
        .env
        .push(("KMSD_TEST_LIMITED_SECRET".into(), SECRET.into()));
    let (options, port) = with_admin_rules(
        options,
        "admin",
        SECRET,
        "[[admin.access_keys]]\naccess_key = \"limited\"\nsecret_key_env = \"KMSD_TEST_LIMITED_SECRET\"",
    );
    let mut kmsd = Kmsd::spawn_only(options);
    let uid = std::fs::metadata(kmsd.dir()).unwrap().uid();
    std::fs::write(kmsd.dir().join("policy.toml"), policy(uid)).unwrap();
    kmsd.respawn();
    kmsd.wait_ready().await;
    let admin = AdminClient::new(port, "admin", SECRET);
    let limited = admin.with_credentials("limited", SECRET);
    (kmsd, admin, limited, tcp)
}

#[tokio::test]
async fn list_and_describe_show_only_the_callers_keys() {
    let (kmsd, admin, limited, tcp) = with_policy().await;
    for (id, description) in [("rustfs-a", "objects"), ("secret-hr", "HR payroll")] {
        let body = format!(r#"{{"key_id": "{id}", "description": "{description}"}}"#);
        assert_eq!(admin.post("/kms/keys", &body).await.status, 201);
    }
    let listed = |reply: &Reply| -> Vec<String> {
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert!(
            !reply.text.contains("secret-hr") && !reply.text.contains("payroll"),
            "{}",
            reply.text
        );
        reply.json["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["key_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(listed(&limited.get("/kms/keys").await), ["rustfs-a"]);
    let everything = admin.get("/kms/keys").await;
    assert!(everything.text.contains("secret-hr"), "{}", everything.text);

    let client = kmsd.client().await;
    let page = client
        .key_admin()
        .list_keys(proto::ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = page.keys.iter().map(|k| k.key_id.as_str()).collect();
    assert_eq!(ids, ["rustfs-a"]);
    let err = client
        .key_admin()
        .describe_key(proto::DescribeKeyRequest {
            key_id: "secret-hr".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(limited.get("/kms/keys/secret-hr").await.status, 403);

    // Plain TCP is unauthenticated: with a policy file it gets nothing,
    // danger_plaintext_tcp notwithstanding.
    let endpoint = kms_client::Endpoint::Http(format!("http://127.0.0.1:{tcp}"));
    let anonymous = KmsClient::connect(endpoint).await.unwrap();
    assert_error(
        anonymous
            .generate_data_key(Some("rustfs-a"), &ctx(&[]))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
}

/// One gRPC call with a hand-made body over a raw HTTP/2 connection to
/// `port`; the grpc-status.
async fn raw_call(port: u16, path: &str, message: &[u8]) -> String {
    let io = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut sender, connection) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut stream) = sender.send_request(request, false).unwrap();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(message);
    stream.send_data(Bytes::from(frame), true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .unwrap()
        .unwrap();
    if let Some(status) = response.headers().get("grpc-status") {
        return status.to_str().unwrap().to_owned();
    }
    let mut body = response.into_body();
    while body.data().await.is_some() {}
    let trailers = body.trailers().await.unwrap().unwrap();
    trailers["grpc-status"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn reflection_is_gated_and_health_is_public() {
    let (_kmsd, _, _, port) = with_policy().await;
    // ServerReflectionRequest { list_services: "" } (field 7).
    let list_services = [0x3a, 0x00];
    let reflection = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
    // 7: PERMISSION_DENIED for the anonymous TCP caller.
    assert_eq!(raw_call(port, reflection, &list_services).await, "7");
    // Health answers anyone: probes need no identity.
    assert_eq!(
        raw_call(port, "/grpc.health.v1.Health/Check", &[]).await,
        "0"
    );
}

#[tokio::test]
async fn reserved_key_ids_are_refused_by_every_route() {
    let metrics = free_port();
    let mut options = KmsdOptions::local();
    options.extra_toml =
        format!("[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n[health]\nprobe_interval_secs = 1\n");
    let (options, port) = with_admin(options, "admin", SECRET);
    let kmsd = Kmsd::start(options).await;
    let admin = AdminClient::new(port, "admin", SECRET);
    let probe = AdminClient::new(metrics, "", "");
    let ready = || async {
        probe
            .send(probe.unsigned("GET", "/health/ready", ""))
            .await
            .status
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ready().await != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "kmsd never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let client = kmsd.client().await;
    let reserved = |r: Result<(), kms_client::Error>, what: &str| {
        let err = r.expect_err(what);
        assert_eq!(
            kmsd_tests::code_and_reason(&err),
            (Code::InvalidArgument, "RESERVED_KEY_ID".to_owned()),
            "{what}: {err}"
        );
    };
    fn map<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<(), kms_client::Error> {
        r.map(|_| ()).map_err(kms_client::Error::from)
    }
    let id = || PROBE.to_owned();
    let mut keys = client.key_admin();
    reserved(
        map(keys
            .disable_key(proto::DisableKeyRequest { key_id: id() })
            .await),
        "DisableKey",
    );
    reserved(
        map(keys
            .enable_key(proto::EnableKeyRequest { key_id: id() })
            .await),
        "EnableKey",
    );
    reserved(
        map(keys
            .rotate_key(proto::RotateKeyRequest { key_id: id() })
            .await),
        "RotateKey",
    );
    reserved(
        map(keys
            .describe_key(proto::DescribeKeyRequest {
                key_id: id(),
                ..Default::default()
            })
            .await),
        "DescribeKey",
    );
    reserved(
        map(keys
            .schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
                key_id: id(),
                pending_window_in_days: 7,
                // The deletion guard (issue 20) is not what this tests.
                force: true,
            })
            .await),
        "ScheduleKeyDeletion",
    );
    reserved(
        map(keys
            .cancel_key_deletion(proto::CancelKeyDeletionRequest { key_id: id() })
            .await),
        "CancelKeyDeletion",
    );
    let created = keys
        .create_key(proto::CreateKeyRequest {
            key_id: id(),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(kms_client::Error::from);
    reserved(created, "CreateKey");
    reserved(
        client
            .generate_data_key(Some(PROBE), &ctx(&[]))
            .await
            .map(|_| ()),
        "GenerateDataKey",
    );
    reserved(
        client
            .generate_data_key_without_plaintext(Some(PROBE), &ctx(&[]))
            .await
            .map(|_| ()),
        "GenerateDataKeyWithoutPlaintext",
    );
    reserved(
        client
            .encrypt(Some(PROBE), b"x", &ctx(&[]))
            .await
            .map(|_| ()),
        "Encrypt",
    );
    let blob = client
        .generate_data_key(None, &ctx(&[]))
        .await
        .unwrap()
        .blob;
    reserved(
        client
            .re_encrypt(&blob, &ctx(&[]), Some(PROBE), None)
            .await
            .map(|_| ()),
        "ReEncrypt",
    );

    let body = format!(r#"{{"key_id": "{PROBE}"}}"#);
    let replies = [
        admin.post("/kms/keys/disable", &body).await,
        admin.post("/kms/keys/enable", &body).await,
        admin.post("/kms/keys/rotate", &body).await,
        admin.post("/kms/keys/cancel-deletion", &body).await,
        admin.post("/kms/generate-data-key", &body).await,
        admin.post("/kms/keys", &body).await,
        admin.get(&format!("/kms/keys/{PROBE}")).await,
        admin.get(&format!("/kms/describe-key?keyId={PROBE}")).await,
        admin
            .delete(&format!("/kms/keys/delete?keyId={PROBE}"), "")
            .await,
    ];
    for reply in replies {
        assert_eq!(
            (reply.status, reply.code()),
            (400, "RESERVED_KEY_ID"),
            "{}",
            reply.text
        );
    }
    // The probe key is untouched: kmsd stays ready.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ready().await, 200);
}
