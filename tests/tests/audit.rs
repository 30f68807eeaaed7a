//! The audit log through the real binary: the failure rule
//! (`[audit] on_failure`), the lines of refusals that happen before any
//! backend call, and writes that never hold up the runtime.

// Test code: a failed unwrap is a failed test, with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use kms_client::{KmsClient, RetryPolicy, proto};
use kmsd_tests::{Kmsd, KmsdOptions, binary, ctx, free_port, private_dir, rest::AdminClient};

fn rpc<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, kms_client::Error> {
    r.map(tonic::Response::into_inner)
        .map_err(kms_client::Error::from)
}

/// A kmsd whose audit lines go to /dev/full (every write fails with
/// ENOSPC) with `on_failure`; returns it once it answers, and its client.
async fn on_full_disk(on_failure: &str) -> (Kmsd, KmsClient) {
    let kmsd = Kmsd::spawn_only(KmsdOptions {
        extra_toml: format!("[audit]\noutput = \"/dev/full\"\non_failure = \"{on_failure}\"\n"),
        ..KmsdOptions::local()
    });
    // Not Kmsd::wait_ready: with "refuse" even Status is refused.
    let started = Instant::now();
    loop {
        if kmsd.socket().exists()
            && let Ok(client) = KmsClient::connect(kmsd.endpoint()).await
        {
            match rpc(client.admin().status(proto::StatusRequest {}).await) {
                Ok(_) => break,
                Err(e) if e.reason() == Some("AUDIT_UNAVAILABLE") => break,
                Err(_) => {}
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "kmsd did not start:\n{}",
            kmsd.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = kmsd.client_with(|c| c.retry = RetryPolicy::NEVER).await;
    (kmsd, client)
}

/// kmsd answers nothing it cannot audit by default ("refuse", as Vault
/// does); with "continue" it answers as if the line had been written. On
/// main the key did not exist and every request succeeded unaudited.
#[tokio::test]
async fn a_request_that_cannot_be_audited_is_refused_or_answered_as_configured() {
    let context = ctx(&[("bucket", "b")]);
    let (_refusing, client) = on_full_disk("refuse").await;
    let err = client.generate_data_key(None, &context).await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::Unavailable), "{err}");
    assert_eq!(err.reason(), Some("AUDIT_UNAVAILABLE"), "{err}");
    assert!(err.to_string().contains("No space left on device"), "{err}");
    assert!(err.is_transient(), "a full disk can be fixed: retry");
    // An error is answered as it was (it hands nothing out).
    let err = client.decrypt(b"junk", &context, None).await.unwrap_err();
    assert_eq!(err.reason(), Some("MALFORMED_CIPHERTEXT"));

    let (_continuing, client) = on_full_disk("continue").await;
    let generated = client.generate_data_key(None, &context).await.unwrap();
    client
        .decrypt(&generated.blob, &context, None)
        .await
        .unwrap();
}

/// CreateKey's own validation (description, tags, reserved id) answered
/// before the audit line was written; now every refusal is audited. Also
/// prints what a request costs with a line written per request.
#[tokio::test]
async fn create_key_refusals_are_audited() {
    let kmsd = Kmsd::start(KmsdOptions {
        extra_toml: "[audit]\noutput = \"{dir}/audit.log\"\n".into(),
        ..KmsdOptions::local()
    })
    .await;
    let client = kmsd.client().await;
    let create = |key_id: &str, description: String| proto::CreateKeyRequest {
        key_id: key_id.into(),
        description,
        ..Default::default()
    };
    let admin = client.key_admin();
    let err = rpc(admin
        .clone()
        .create_key(create("long", "x".repeat(2000)))
        .await)
    .unwrap_err();
    assert_eq!(err.reason(), Some("INVALID_ARGUMENT"));
    let err = rpc(admin
        .clone()
        .create_key(create("kmsd-internal-x", String::new()))
        .await)
    .unwrap_err();
    assert_eq!(err.reason(), Some("RESERVED_KEY_ID"));

    let calls = 300;
    let started = Instant::now();
    for _ in 0..calls {
        client.generate_data_key(None, &ctx(&[])).await.unwrap();
    }
    println!(
        "one request in flight, audit line per request to a file: {:?} per GenerateDataKey",
        started.elapsed() / calls
    );

    let text = std::fs::read_to_string(kmsd.dir().join("audit.log")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let creates: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["operation"] == "CreateKey")
        .map(|l| {
            (
                l["key_id"].as_str().unwrap(),
                l["reason"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        creates,
        [
            ("long", "INVALID_ARGUMENT"),
            ("kmsd-internal-x", "RESERVED_KEY_ID")
        ]
    );
}

/// Audit lines to a stdout nobody reads: once the pipe is full, requests
/// wait for their lines (none is answered unaudited), but the runtime's
/// workers are free: liveness and metrics still answer. On main the lines
/// were written on the worker threads, which all blocked in write(2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_audit_pipe_holds_up_only_the_requests_it_must() {
    let dir = private_dir();
    let port = free_port();
    let config = dir.path().join("kmsd.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nunix_socket = \"{d}/kmsd.sock\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n[backend]\nbackend_type = \"local\"\nkey_dir = \"{d}/keys\"\ndefault_key_id = \"default\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(binary("kmsd"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let endpoint = kms_client::Endpoint::Unix(dir.path().join("kmsd.sock"));
    let started = Instant::now();
    let client = loop {
        if let Ok(client) = KmsClient::connect(endpoint.clone()).await
            && client.admin().status(proto::StatusRequest {}).await.is_ok()
        {
            break client;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "kmsd did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // About 400 bytes a line: 400 requests overflow a 64 KiB pipe.
    let requests: Vec<_> = (0..400)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let context = ctx(&[("object", &format!("object-{i:04}-{}", "x".repeat(64)))]);
                client.generate_data_key(None, &context).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = requests.iter().filter(|r| !r.is_finished()).count();
    assert!(waiting > 0, "the pipe never filled up");
    let http = AdminClient::new(port, "", "");
    for path in ["/health/live", "/metrics"] {
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            http.send(http.unsigned("GET", path, "")),
        )
        .await
        .unwrap_or_else(|_| panic!("{path} did not answer: the runtime is blocked"));
        assert_eq!(reply.status, 200, "{path}");
    }
    println!("{waiting} requests waited for the stuck audit pipe; the runtime kept serving");

    // Drained, every request completes, each with its line.
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    for request in requests {
        request.await.unwrap().unwrap();
    }
    let _ = child.kill();
    let _ = child.wait();
    let out = reader.join().unwrap();
    let lines = String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| l.contains("\"operation\":\"GenerateDataKey\""))
        .count();
    assert_eq!(lines, 400);
}
