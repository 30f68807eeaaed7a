//! Item 2: a captured admin request is accepted once, only on the node it
//! was signed for; the admin listener serves TLS; the seed's awscurl quick
//! start still works against dev mode (awscurl re-signs every call, and
//! identical GETs within a second are not replays).

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use http_body_util::Full;
use kmsd_tests::{
    ChildGuard, Kmsd, KmsdOptions, binary, free_port,
    pki::Ca,
    private_dir,
    rest::{AdminClient, awscurl, run_awscurl, with_admin},
};

const SECRET: &str = "replay-test-secret-41c9e0";

/// The same request again, byte for byte.
fn copy(request: &http::Request<Full<Bytes>>, body: &'static str) -> http::Request<Full<Bytes>> {
    let mut copy = http::Request::builder()
        .method(request.method())
        .uri(request.uri());
    for (name, value) in request.headers() {
        copy = copy.header(name, value);
    }
    copy.body(Full::new(Bytes::from(body))).unwrap()
}

#[tokio::test]
async fn a_captured_request_is_accepted_once_and_only_here() {
    let (options, port) = with_admin(KmsdOptions::local(), "admin", SECRET);
    let _kmsd = Kmsd::start(options).await;
    let admin = AdminClient::new(port, "admin", SECRET);
    let body = r#"{"key_id": "default"}"#;
    let captured = admin.signed_at("POST", "/kms/keys/rotate", body, SystemTime::now(), &[]);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let reply = admin.send(copy(&captured, body)).await;
        statuses.push((reply.status, reply.code().to_owned()));
    }
    assert_eq!(statuses[0].0, 200, "{statuses:?}");
    for refused in &statuses[1..] {
        assert_eq!(refused, &(403, "AccessDenied".to_owned()), "{statuses:?}");
    }
    let key = admin.get("/kms/keys/default").await;
    assert_eq!(key.status, 200, "{}", key.text);
    assert_eq!(
        key.json["key_metadata"]["current_version"], 2,
        "one rotation, not three: {}",
        key.text
    );

    // Signed for another node: refused here, whatever the signature.
    for host in ["other-node.example:7374", &format!("127.0.0.2:{port}")] {
        let request = admin.signed_for(host, "GET", "/kms/status", "", SystemTime::now(), &[]);
        let reply = admin.send(request).await;
        assert_eq!(
            (reply.status, reply.code()),
            (403, "AccessDenied"),
            "{host}: {}",
            reply.text
        );
    }
    // The names kmsd answers to by default: the listen address and
    // localhost (the machine's hostname too), with the port.
    let ok = admin.signed_for(
        &format!("localhost:{port}"),
        "GET",
        "/kms/status",
        "",
        SystemTime::now(),
        &[],
    );
    assert_eq!(admin.send(ok).await.status, 200);
}

/// `kmsd serve --dev`, and the seed's quick-start command exactly (but for
/// the port), several times in a row: awscurl re-signs every call, and
/// identical status polls within one second are not refused as replays.
#[tokio::test]
async fn the_seed_awscurl_quick_start_works_against_dev_mode() {
    let dir = private_dir();
    let (grpc, admin_port) = (free_port(), free_port());
    let stdout = dir.path().join("stdout.log");
    let child = Command::new(binary("kmsd"))
        .args(["serve", "--dev", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--tcp", &format!("127.0.0.1:{grpc}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let _guard = ChildGuard(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&stdout)
        .unwrap_or_default()
        .contains("admin keys:")
    {
        assert!(Instant::now() < deadline, "kmsd --dev did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = format!("http://127.0.0.1:{admin_port}/rustfs/admin/v3/kms/status");
    for _ in 0..3 {
        let out = run_awscurl(&[
            "--service",
            "s3",
            "--region",
            "us-east-1",
            "--access_key",
            "admin",
            "--secret_key",
            "admin",
            &url,
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(r#""status": "Running""#),
            "{text}"
        );
    }
}

/// `[admin.tls]`: the admin API over HTTPS, reachable with awscurl (its
/// requests library takes the CA from REQUESTS_CA_BUNDLE); plain HTTP to
/// the same port gets no answer.
#[tokio::test]
async fn the_admin_listener_serves_tls() {
    let ca = Ca::new("admin TLS CA");
    let mut options = KmsdOptions::local();
    options.extra_toml =
        "[admin.tls]\ncert_file = \"{dir}/admin.crt\"\nkey_file = \"{dir}/admin.key\"\n".into();
    let (options, port) = with_admin(options, "admin", SECRET);
    let mut kmsd = Kmsd::spawn_only(options);
    ca.server().write(kmsd.dir(), "admin");
    let ca_file = kmsd.dir().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    kmsd.respawn();
    kmsd.wait_ready().await;

    let url = format!("https://localhost:{port}/rustfs/admin/v3/kms/status");
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(awscurl())
        .args([
            "--service",
            "s3",
            "--region",
            "us-east-1",
            "--access_key",
            "admin",
            "--secret_key",
            SECRET,
            &url,
        ])
        .env("HOME", home.path())
        .env("REQUESTS_CA_BUNDLE", &ca_file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(r#""status": "Running""#),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let plain = AdminClient::new(port, "admin", SECRET);
    let request = plain.signed("GET", "/kms/status", "");
    let answered = tokio::time::timeout(Duration::from_secs(15), async {
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Full<Bytes>>()
            .request(request)
            .await
    })
    .await;
    assert!(
        !matches!(answered, Ok(Ok(ref r)) if r.status() == 200),
        "plain HTTP was answered on the TLS port"
    );
}
