//! The operator CLI and dev mode against a running kmsd.

use super::*;

fn run_cli(endpoint: &str, args: &[&str]) -> (bool, serde_json::Value, String) {
    let output = Command::new(binary("kmsd"))
        .args(args)
        .env("KMSD_ENDPOINT", endpoint)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (
        output.status.success(),
        json,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_manages_keys_on_a_running_kmsd() {
    let kmsd = Kmsd::start_local().await;
    let endpoint = kmsd.endpoint().to_string();
    let cli = |args: &[&str]| {
        let (ok, json, stderr) = run_cli(&endpoint, args);
        assert!(ok, "kmsd {args:?} failed: {stderr}");
        json
    };
    let created = cli(&[
        "key",
        "create",
        "cli-key",
        "--description",
        "from the CLI",
        "--tag",
        "team=storage",
    ]);
    assert_eq!(created["key_id"], "cli-key");
    assert_eq!(created["key_state"], "Enabled");
    assert_eq!(created["tags"]["team"], "storage");
    assert_eq!(cli(&["key", "rotate", "cli-key"])["current_version"], 2);
    assert_eq!(cli(&["key", "disable", "cli-key"])["key_state"], "Disabled");
    assert_eq!(cli(&["key", "enable", "cli-key"])["key_state"], "Enabled");
    let scheduled = cli(&["key", "schedule-deletion", "cli-key", "--days", "7"]);
    assert_eq!(scheduled["key_state"], "PendingDeletion");
    assert!(scheduled["deletion_date"].is_string());
    assert_eq!(
        cli(&["key", "cancel-deletion", "cli-key"])["key_state"],
        "Disabled"
    );
    assert_eq!(
        cli(&["key", "describe", "cli-key"])["description"],
        "from the CLI"
    );
    let listed = cli(&["key", "list"]);
    let ids: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["cli-key", "default"]);

    let datakey = cli(&["datakey", "--context", "bucket=b1"]);
    assert_eq!(datakey["key_id"], "default");
    let plaintext = B64.decode(datakey["plaintext"].as_str().unwrap()).unwrap();
    assert_eq!(plaintext.len(), 32);
    let blob = datakey["ciphertext_blob"].as_str().unwrap();
    let opened = cli(&["decrypt", blob, "--context", "bucket=b1"]);
    assert_eq!(
        B64.decode(opened["plaintext"].as_str().unwrap()).unwrap(),
        plaintext
    );
    let sealed_only = cli(&["datakey", "--without-plaintext"]);
    assert!(sealed_only.get("plaintext").is_none());

    let status = cli(&["status"]);
    assert_eq!(status["status"], "Running");
    assert_eq!(status["backend"]["backend_type"], "local");

    let (ok, _, stderr) = run_cli(&endpoint, &["key", "describe", "missing"]);
    assert!(!ok);
    assert!(stderr.contains("key missing not found"), "{stderr}");
    let (ok, _, stderr) = run_cli(&endpoint, &["decrypt", blob, "--context", "bucket=b2"]);
    assert!(!ok);
    assert!(stderr.contains("did not authenticate"), "{stderr}");
    let (ok, _, stderr) = run_cli("unix:/nonexistent/kmsd.sock", &["status"]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot connect to kmsd at unix:/nonexistent/kmsd.sock"),
        "{stderr}"
    );
}

/// The README's first command: `kmsd serve --dev` needs no config, prints
/// where it listens, and serves a default key that survives a restart.
#[tokio::test]
async fn dev_mode_needs_no_config_and_prints_its_endpoints() {
    let dir = private_dir();
    let data_dir = dir.path().join("data");
    let port = free_port();
    let mut first_key = None;
    for _ in 0..2 {
        let mut child = Command::new(binary("kmsd"))
            .args([
                "serve",
                "--dev",
                "--tcp",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(&data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut endpoints = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(endpoint) = line.trim().strip_prefix("listening:") {
                endpoints.push(endpoint.trim().to_owned());
            }
            if line.starts_with("try it:") {
                break;
            }
        }
        let socket = data_dir.canonicalize().unwrap().join("kmsd.sock");
        assert_eq!(
            endpoints,
            [
                format!("unix:{}", socket.display()),
                format!("http://127.0.0.1:{port}")
            ]
        );
        for endpoint in &endpoints {
            let (ok, json, stderr) = run_cli(endpoint, &["key", "describe", "default"]);
            assert!(ok, "{stderr}");
            let created_at = json["creation_date"].as_str().unwrap().to_owned();
            // The second start finds the key made by the first.
            assert_eq!(first_key.get_or_insert(created_at.clone()), &created_at);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[tokio::test]
async fn kmsd_bench_drives_a_running_kmsd_without_errors() {
    let kmsd = Kmsd::start_local().await;
    let endpoint = kmsd.endpoint().to_string();
    for (workload, threads) in [("gdk", "1"), ("mix", "2")] {
        let (ok, report, stderr) = run_cli(
            &endpoint,
            &[
                "bench",
                "--json",
                "--workload",
                workload,
                "-c",
                "4",
                "-m",
                "2",
                "--threads",
                threads,
                "--duration",
                "0.3",
                "--warmup",
                "0.1",
            ],
        );
        assert!(ok, "kmsd bench --workload {workload} failed: {stderr}");
        assert_eq!(report["errors"], 0, "{report}");
        assert_eq!(report["concurrency"], 4);
        assert_eq!(report["connections"], 2);
        let requests = report["requests"].as_u64().unwrap();
        assert!(requests > 0, "{report}");
        let p50 = report["p50_us"].as_f64().unwrap();
        let p99 = report["p99_us"].as_f64().unwrap();
        assert!(0.0 < p50 && p50 <= p99, "{report}");
    }
    // The body it writes for h2load is one gRPC frame: a flag byte, a
    // big-endian length, then exactly that many bytes of protobuf.
    let dir = private_dir();
    let body = dir.path().join("request.bin");
    let status = Command::new(binary("kmsd"))
        .args(["bench", "--write-request-body"])
        .arg(&body)
        .status()
        .unwrap();
    assert!(status.success());
    let frame = std::fs::read(&body).unwrap();
    assert_eq!(frame[0], 0, "uncompressed");
    let len = u32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize;
    assert_eq!(frame.len(), 5 + len);
}

/// Runs `kmsd <args>` with stdout a pipe whose reader has already gone, as
/// in `kmsd status | head -0`: the status and stderr.
fn run_into_closed_pipe(endpoint: &str, args: &[&str]) -> (std::process::ExitStatus, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = Command::new(binary("kmsd"))
        .args(args)
        .env("KMSD_ENDPOINT", endpoint)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `kmsd status | head -5` panicked with "failed printing to stdout:
/// Broken pipe". Every command that prints exits 0, quietly, when its
/// reader has gone.
#[tokio::test]
async fn every_command_exits_quietly_on_a_closed_pipe() {
    let kmsd = Kmsd::start_local().await;
    let endpoint = kmsd.endpoint().to_string();
    let (ok, datakey, stderr) = run_cli(&endpoint, &["datakey"]);
    assert!(ok, "{stderr}");
    let blob = datakey["ciphertext_blob"].as_str().unwrap().to_owned();
    let config = kmsd.config_path().display().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["key", "list"],
        vec!["key", "describe", "default"],
        vec!["key", "create", "piped"],
        vec!["key", "rotate", "piped"],
        vec!["datakey"],
        vec!["datakey", "--without-plaintext"],
        vec!["decrypt", &blob],
        vec!["admin", "clear-cache"],
        vec![
            "bench",
            "--duration",
            "0.2",
            "--warmup",
            "0",
            "-c",
            "1",
            "--threads",
            "1",
        ],
        vec!["serve", "--check-config", "--config", &config],
        vec!["--help"],
        vec!["--version"],
    ];
    for args in commands {
        let (status, stderr) = run_into_closed_pipe(&endpoint, &args);
        assert!(
            status.success(),
            "kmsd {args:?} | head -0 exited with {status}: {stderr}"
        );
        assert!(
            stderr.is_empty(),
            "kmsd {args:?} | head -0 printed: {stderr}"
        );
    }
}
