//! S3 server-side encryption end to end: a real kmsd, the kms-s3-gateway
//! binary (s3s + s3s-fs + kms-client), and real S3 clients nobody here
//! wrote: boto3 (`client.py` beside this file) and the AWS CLI, both from
//! PyPI in `.venv/` (scripts/setup-test-env.sh). Missing clients fail the
//! tests; they are never skipped.
//!
//! - `boto3`: every mode through PUT/HEAD/GET/range/copy/multipart, the
//!   error codes, bucket default encryption, ciphertext on disk, and a
//!   sealed key moved to another object name.
//! - `bucket_keys`: 1,000 PUTs cost a handful of GenerateDataKey calls
//!   (kmsd's metrics), and every object reads back, also after a restart
//!   and after the cache expired.
//! - `cli`: the AWS CLI's high-level `s3 cp` (multipart, ranged parallel
//!   downloads, server-side copy) and `s3api` calls.

// Test code: a failed unwrap is a failed test, with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use kms_client::proto;
use kmsd_tests::{Kmsd, KmsdOptions, binary, free_port, metrics, private_dir, workspace_root};

mod boto3;
mod bucket_keys;
mod cli;

const ACCESS_KEY: &str = "gateway-test";
const SECRET_KEY: &str = "gateway-test-secret-5f2e9b";

/// A kmsd with a metrics listener and the key `app-key`.
async fn start_kmsd() -> (Kmsd, u16) {
    let port = free_port();
    let mut options = KmsdOptions::local();
    options.extra_toml = format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let kmsd = Kmsd::start(options).await;
    kmsd.client()
        .await
        .key_admin()
        .create_key(proto::CreateKeyRequest {
            key_id: "app-key".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    (kmsd, port)
}

/// The value of one series of kmsd's metrics (0 if not exported yet).
async fn metric(port: u16, series: &str) -> f64 {
    metrics::series(&metrics::scrape(port).await, series).unwrap_or(0.0)
}

/// `kmsd_requests_total` of an operation that succeeded.
async fn ok_calls(port: u16, operation: &str) -> f64 {
    metric(
        port,
        &format!("kmsd_requests_total{{code=\"OK\",operation=\"{operation}\"}}"),
    )
    .await
}

/// A running kms-s3-gateway, killed on drop.
struct Gateway {
    child: Child,
    port: u16,
    logs: tempfile::TempDir,
}

impl Gateway {
    /// Starts the gateway on `root` against `kmsd`, with extra flags. It
    /// binds port 0 and prints the port it got, so parallel tests never
    /// race for a port.
    fn start(kmsd: &Kmsd, root: &Path, extra: &[&str]) -> Self {
        let logs = private_dir();
        let child = Command::new(binary("kms-s3-gateway"))
            .arg("--kmsd")
            .arg(format!("unix:{}", kmsd.socket().display()))
            .arg("--root")
            .arg(root)
            .args(["--port", "0", "--access-key", ACCESS_KEY])
            // 64 KiB chunks: small objects still span several chunks.
            .args(["--chunk-size", "65536"])
            .args(extra)
            .env("KMS_GATEWAY_SECRET_KEY", SECRET_KEY)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(fs::File::create(logs.path().join("stdout")).unwrap())
            .stderr(fs::File::create(logs.path().join("stderr")).unwrap())
            .spawn()
            .expect("spawn kms-s3-gateway");
        let mut gateway = Self {
            child,
            port: 0,
            logs,
        };
        gateway.wait_ready();
        gateway
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let stdout = fs::read_to_string(self.logs.path().join("stdout")).unwrap_or_default();
            let port = stdout
                .lines()
                .find_map(|line| line.strip_prefix("kms-s3-gateway listening on http://127.0.0.1:"))
                .and_then(|port| port.trim().parse().ok());
            if let Some(port) = port {
                self.port = port;
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the gateway exited with {status}:\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not listen:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn logs(&self) -> String {
        let read = |name| fs::read_to_string(self.logs.path().join(name)).unwrap_or_default();
        format!(
            "--- stdout ---\n{}--- stderr ---\n{}",
            read("stdout"),
            read("stderr")
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PyPI tool installed in `.venv/bin` by scripts/setup-test-env.sh.
fn venv_tool(name: &str) -> PathBuf {
    let path = workspace_root().join(".venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup-test-env.sh (it installs boto3 and awscli from scripts/requirements-test.txt)",
        path.display()
    );
    path
}

/// A command with AWS credentials for the gateway and no user config.
fn aws_command(program: PathBuf, config_dir: &Path) -> Command {
    let config = config_dir.join("aws-config");
    fs::write(&config, "[default]\ns3 =\n  addressing_style = path\n").unwrap();
    let mut command = Command::new(program);
    command
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", &config)
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            config_dir.join("no-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .stdin(Stdio::null());
    command
}

/// Runs a scenario of client.py against `gateway`; returns its stdout.
fn boto3(gateway: &Gateway, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3/client.py");
    let output = aws_command(venv_tool("python"), gateway.logs.path())
        .arg(script)
        .arg(gateway.endpoint())
        .args(args)
        .output()
        .expect("python runs");
    check(&output, &format!("client.py {args:?}"), gateway);
    String::from_utf8(output.stdout).unwrap()
}

#[track_caller]
fn check(output: &Output, what: &str, gateway: &Gateway) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        gateway.logs()
    );
}

/// The last line of a scenario's stdout, as JSON.
fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap()
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Whether any file under `dir` contains `needle`.
fn on_disk(dir: &Path, needle: &[u8]) -> bool {
    files(dir).iter().any(|path| {
        fs::read(path)
            .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
    })
}
