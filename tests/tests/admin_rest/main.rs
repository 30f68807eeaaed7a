//! The RustFS-compatible admin REST API against the real kmsd binary:
//! the seed's awscurl commands run verbatim, every endpoint through a
//! client that signs with the `aws-sigv4` crate (`keys`, `lifecycle`),
//! every refusal a 403 (`auth`), and every error a non-2xx status with a
//! JSON body.

// Test code: a failed unwrap is a failed test, with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use kmsd_tests::{
    ChildGuard, Kmsd, KmsdOptions, binary, ctx, free_port, private_dir,
    rest::{AdminClient, Reply, run_awscurl, with_admin},
};

mod auth;
mod backup;
mod keys;
mod lifecycle;

const ACCESS_KEY: &str = "ops";
const SECRET: &str = "rest-test-secret-8c1f2a";

/// NotConfigured, with a state directory and the admin listener.
fn not_configured() -> KmsdOptions {
    KmsdOptions {
        backend_toml: None,
        server_toml: "state_dir = \"{dir}/state\"".into(),
        ..KmsdOptions::local()
    }
}

async fn start(options: KmsdOptions) -> (Kmsd, AdminClient) {
    let (options, port) = with_admin(options, ACCESS_KEY, SECRET);
    let kmsd = Kmsd::start(options).await;
    (kmsd, AdminClient::new(port, ACCESS_KEY, SECRET))
}

fn local_json(kmsd: &Kmsd, dir: &str) -> String {
    format!(
        r#"{{"backend_type": "local", "key_dir": "{}/{dir}", "default_key_id": "default"}}"#,
        kmsd.dir().display()
    )
}

#[track_caller]
fn expect(reply: &Reply, status: u16, code: &str) {
    assert_eq!(
        (reply.status, reply.code()),
        (status, code),
        "{}",
        reply.text
    );
    assert!(
        !reply.json["message"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
}

#[track_caller]
fn ok(reply: Reply, status: u16) -> serde_json::Value {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(
        reply.headers["content-type"], "application/json",
        "{}",
        reply.text
    );
    reply.json
}

/// The seed's commands, exactly as written but for host, port and key_dir.
#[tokio::test]
async fn the_seed_awscurl_commands_work_unchanged() {
    let (options, port) = with_admin(not_configured(), "admin", "admin");
    let kmsd = Kmsd::start(options).await;
    let key_dir = kmsd.dir().join("kms-keys");
    let body = format!(
        r#"{{
    "backend_type": "local",
    "key_dir": "{}",
    "default_key_id": "rustfs-master"
  }}"#,
        key_dir.display()
    );
    let url = |path: &str| format!("http://localhost:{port}/rustfs/admin/v3/kms/{path}");
    let seed = ["--service", "s3", "--region", "us-east-1"];
    let admin = ["--access_key", "admin", "--secret_key", "admin"];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = seed.iter().chain(&admin).chain(extra).copied().collect();
        let out = run_awscurl(&args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stdout, stderr)
    };

    let (code, stdout, stderr) = run(&["-X", "POST", "-d", &body, &url("configure")]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(r#""status": "Configured""#), "{stdout}");

    let (code, stdout, stderr) = run(&["-X", "POST", &url("start")]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    let (code, stdout, stderr) = run(&[&url("status")]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(r#""status": "Running""#), "{stdout}");
    assert!(
        stdout.contains(r#""default_key_id": "rustfs-master""#),
        "{stdout}"
    );
    assert!(stdout.contains(&key_dir.display().to_string()), "{stdout}");
    assert!(key_dir.is_dir(), "start created the seed's key directory");

    // Failures are never 200: with --fail-with-body awscurl exits 22 and
    // still prints the JSON error.
    let (code, stdout, _) = run(&["--fail-with-body", &url("keys/no-such-key")]);
    assert_eq!(code, Some(22), "{stdout}");
    assert!(stdout.contains(r#""code": "KEY_NOT_FOUND""#), "{stdout}");
    let status_url = url("status");
    let wrong: Vec<&str> = seed
        .iter()
        .copied()
        .chain(["--access_key", "admin", "--secret_key", "wrong"])
        .chain(["--fail-with-body", status_url.as_str()])
        .collect();
    let out = run_awscurl(&wrong);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(22), "{stdout}");
    assert!(stdout.contains("SignatureDoesNotMatch"), "{stdout}");
}

#[tokio::test]
async fn dev_mode_prints_credentials_the_seed_commands_accept() {
    let dir = private_dir();
    let data_dir = dir.path().join("data");
    let (grpc, admin_port) = (free_port(), free_port());
    let stdout = dir.path().join("stdout.log");
    let child = Command::new(binary("kmsd"))
        .args(["serve", "--dev", "--data-dir"])
        .arg(&data_dir)
        .args(["--tcp", &format!("127.0.0.1:{grpc}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let _guard = ChildGuard(child);
    let admin = AdminClient::new(admin_port, "admin", "admin");
    let deadline = Instant::now() + Duration::from_secs(20);
    let printed = loop {
        let text = std::fs::read_to_string(&stdout).unwrap_or_default();
        if text.contains("admin keys:") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "kmsd --dev did not start: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        printed.contains(r#"access key "admin", secret key "admin""#),
        "{printed}"
    );
    let status = ok(admin.get("/kms/status").await, 200);
    assert_eq!(status["status"], "Running");
    assert_eq!(status["default_key_id"], "default");
}
