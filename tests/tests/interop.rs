//! Stock gRPC clients nobody here wrote, against the real kmsd: Python
//! grpcio (C-core) with stubs generated from proto/ by grpcio-tools, and
//! Node @grpc/grpc-js with @grpc/proto-loader. Each runs, over the unix
//! socket and over TCP with mutual TLS and default client options: a data
//! key and its Decrypt, a Decrypt with the wrong context
//! (INVALID_ARGUMENT, reason INVALID_CIPHERTEXT in google.rpc.ErrorInfo),
//! a call the policy denies (PERMISSION_DENIED), grpc.health.v1 Check, and
//! the service list through reflection v1. The same scenario runs with
//! kms-client, and the snippets of docs/clients.md are checked to be the
//! code these clients run.
//!
//! grpcio sends the unix socket's path as `:authority`; before kmsd
//! rewrote it (kmsd/src/daemon/uds_authority), every grpcio call over the
//! socket failed with RST_STREAM(PROTOCOL_ERROR).
//!
//! The clients are installed by scripts/setup-test-env.sh (.venv/ from
//! scripts/requirements-test.txt; tests/interop/node/node_modules from its
//! package-lock.json).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use kmsd_tests::{
    Kmsd, KmsdOptions, free_port,
    pki::{Ca, Issued},
    workspace_root,
};

/// What every client must list through reflection.
const SERVICES: &str = "grpc.health.v1.Health grpc.reflection.v1.ServerReflection \
                        kms.v1.Admin kms.v1.KeyAdmin kms.v1.KeyManagement";

/// A kmsd on a unix socket and on TCP with mutual TLS, whose policy lets
/// the test's own uid and the client certificate use data keys under
/// `default` (and read the status, which readiness checks call), and
/// nothing else.
struct Setup {
    kmsd: Kmsd,
    port: u16,
    tls_dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Self {
        let ca = Ca::new("kmsd interop CA");
        let client: Issued = ca.client("storage-server", false);
        let port = free_port();
        let mut options = KmsdOptions::local();
        options.server_toml = format!(
            "tcp = \"127.0.0.1:{port}\"\n[server.tls]\ncert_file = \"{{dir}}/server.crt\"\n\
             key_file = \"{{dir}}/server.key\"\nclient_ca_file = \"{{dir}}/ca.crt\"\n"
        );
        options.extra_toml = "[policy]\nfile = \"{dir}/policy.toml\"\n".into();
        let mut kmsd = Kmsd::spawn_only(options);
        let uid = std::fs::metadata(kmsd.dir()).unwrap().uid();
        ca.server().write(kmsd.dir(), "server");
        std::fs::write(kmsd.dir().join("ca.crt"), ca.cert_pem()).unwrap();
        std::fs::write(
            kmsd.dir().join("policy.toml"),
            format!(
                "[[identities]]\nname = \"storage-socket\"\nunix_uid = {uid}\npolicies = [\"storage\"]\n\
                 [[identities]]\nname = \"storage-tls\"\nspki_sha256 = \"{}\"\npolicies = [\"storage\"]\n\
                 [policies.storage]\nallow = [\"data:*\", \"Status\"]\nkeys = [\"default\"]\n",
                client.spki_sha256
            ),
        )
        .unwrap();
        // The first spawn found no certificates; start again with them.
        kmsd.respawn();
        kmsd.wait_ready().await;
        let tls_dir = tempfile::tempdir().unwrap();
        std::fs::write(tls_dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
        client.write(tls_dir.path(), "client");
        Self {
            kmsd,
            port,
            tls_dir,
        }
    }

    fn unix(&self) -> String {
        format!("unix:{}", self.kmsd.socket().display())
    }

    fn tls_args(&self) -> Vec<String> {
        let file = |name: &str| self.tls_dir.path().join(name).display().to_string();
        vec![
            format!("127.0.0.1:{}", self.port),
            "--ca".into(),
            file("ca.crt"),
            "--cert".into(),
            file("client.crt"),
            "--key".into(),
            file("client.key"),
        ]
    }
}

/// Runs a client and checks it went through the whole scenario.
fn run_client(kmsd: &Kmsd, what: &str, command: &mut Command) {
    let started = Instant::now();
    let output = command.output().unwrap_or_else(|e| {
        panic!("{what}: cannot run {command:?} ({e}); run scripts/setup-test-env.sh")
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{what} ({:.1?}):\n{stdout}", started.elapsed());
    assert!(
        output.status.success(),
        "{what} failed: {}\n{stdout}\n{stderr}\n{}",
        output.status,
        kmsd.logs()
    );
    for line in [
        "envelope ok: key default version 1",
        "wrong context ok: INVALID_ARGUMENT INVALID_CIPHERTEXT",
        "denied ok: PERMISSION_DENIED",
        "health ok: SERVING",
        &format!("services: {SERVICES}"),
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{what}: no {line:?} in\n{stdout}"
        );
    }
}

fn interop_dir(language: &str) -> PathBuf {
    workspace_root().join("tests/interop").join(language)
}

/// grpcio-tools' stubs for proto/, generated once per test run.
fn python_stubs(python: &Path) -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop-python-stubs");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let status = Command::new(python)
        .current_dir(workspace_root())
        .args(["-m", "grpc_tools.protoc", "-I", "proto"])
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .args(["kms/v1/kms.proto", "kms/v1/admin.proto"])
        .status()
        .expect("run grpc_tools.protoc; run scripts/setup-test-env.sh");
    assert!(status.success(), "grpc_tools.protoc failed");
    out
}

#[tokio::test]
async fn python_grpcio_works_over_the_unix_socket_and_mutual_tls() {
    let setup = Setup::start().await;
    let python = workspace_root().join(".venv/bin/python");
    let stubs = python_stubs(&python);
    let script = interop_dir("python").join("kmsd_client.py");
    for (what, args) in [
        ("grpcio over the unix socket", vec![setup.unix()]),
        ("grpcio over mutual TLS", setup.tls_args()),
    ] {
        run_client(
            &setup.kmsd,
            what,
            Command::new(&python)
                .arg(&script)
                .args(&args)
                .env("PYTHONPATH", &stubs),
        );
    }
}

#[tokio::test]
async fn node_grpc_js_works_over_the_unix_socket_and_mutual_tls() {
    let setup = Setup::start().await;
    let dir = interop_dir("node");
    assert!(
        dir.join("node_modules/@grpc/grpc-js").exists(),
        "the Node clients are not installed; run scripts/setup-test-env.sh"
    );
    let proto = workspace_root().join("proto");
    for (what, args) in [
        ("grpc-js over the unix socket", vec![setup.unix()]),
        ("grpc-js over mutual TLS", setup.tls_args()),
    ] {
        run_client(
            &setup.kmsd,
            what,
            Command::new("node")
                .current_dir(&dir)
                .arg("kmsd_client.js")
                .arg(&proto)
                .args(&args),
        );
    }
}

/// The same scenario with kms-client; its regions are the Rust snippets of
/// docs/clients.md.
#[tokio::test]
async fn kms_client_runs_the_same_scenario_over_both_transports()
-> Result<(), Box<dyn std::error::Error>> {
    let setup = Setup::start().await;
    let file = |name: &str| setup.tls_dir.path().join(name);
    let tls_endpoint = format!("https://127.0.0.1:{}", setup.port);
    for endpoint in [setup.unix(), tls_endpoint] {
        let (ca, cert, key) = (file("ca.crt"), file("client.crt"), file("client.key"));
        // [docs:rust-connect]
        use kms_client::{ClientConfig, ClientIdentity, KmsClient, SecretBytes, TlsSettings};

        // "unix:/run/kmsd/kmsd.sock", or "https://kmsd.internal:7373" with mutual TLS.
        let mut config = ClientConfig::new(endpoint.parse()?);
        config.timeout = std::time::Duration::from_secs(5); // per attempt, sent as grpc-timeout
        if endpoint.starts_with("https://") {
            let identity = ClientIdentity::from_pem(
                std::fs::read(&cert)?,
                SecretBytes::new(std::fs::read(&key)?),
            );
            config.tls = Some(TlsSettings::new(std::fs::read(&ca)?).with_identity(identity));
        }
        // One client per process: clones share its HTTP/2 connection.
        let client = KmsClient::connect_with(config).await?;
        // [/docs]
        run_rust_scenario(&client).await?;
    }
    Ok(())
}

async fn run_rust_scenario(
    client: &kms_client::KmsClient,
) -> Result<(), Box<dyn std::error::Error>> {
    // [docs:rust-envelope]
    let context = kms_client::EncryptionContext::from([
        ("bucket".to_owned(), "photos".to_owned()),
        ("object".to_owned(), "cat.jpg".to_owned()),
    ]);
    // PUT: a fresh data key; encrypt with .key, store .blob.
    let data_key = client.generate_data_key(None, &context).await?;
    // GET: the same context opens it again.
    let key = client.decrypt_data_key(&data_key.blob, &context).await?;
    assert_eq!(key.expose_secret(), data_key.key.expose_secret());
    // [/docs]

    // [docs:rust-errors]
    let other = kms_client::EncryptionContext::from([("bucket".to_owned(), "other".to_owned())]);
    match client.decrypt(&data_key.blob, &other, None).await {
        Err(error) => {
            assert_eq!(error.code(), Some(tonic::Code::InvalidArgument));
            assert_eq!(error.reason(), Some("INVALID_CIPHERTEXT"));
            assert!(!error.is_transient()); // retried by the client only when true
        }
        Ok(_) => panic!("a wrong context opened the blob"),
    }
    // [/docs]

    let denied = client
        .generate_data_key(Some("not-mine"), &context)
        .await
        .unwrap_err();
    assert_eq!(
        (denied.code(), denied.reason()),
        (
            Some(tonic::Code::PermissionDenied),
            Some("PERMISSION_DENIED")
        )
    );

    let mut health = tonic_health::pb::health_client::HealthClient::new(client.channel());
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "kms.v1.KeyManagement".into(),
        })
        .await?;
    assert_eq!(
        reply.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    Ok(())
}

/// Every snippet marker in docs/clients.md is followed by exactly the
/// region of the file it names (dedented), and every region of the client
/// files is shown.
#[test]
fn the_snippets_of_docs_clients_md_are_the_tested_code() {
    let root = workspace_root();
    let doc = std::fs::read_to_string(root.join("docs/clients.md")).unwrap();
    let mut shown = Vec::new();
    let lines: Vec<&str> = doc.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(target) = line
            .strip_prefix("<!-- snippet: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let (file, name) = target.split_once('#').expect("file#region");
        let fence = lines[i + 1];
        assert!(
            fence.starts_with("```"),
            "{target}: no code block after the marker"
        );
        let end = lines[i + 2..]
            .iter()
            .position(|l| *l == "```")
            .expect("a closing fence")
            + i
            + 2;
        let shown_code = lines[i + 2..end].join("\n");
        let source = std::fs::read_to_string(root.join(file)).unwrap();
        assert_eq!(
            shown_code,
            region(&source, name),
            "{target} differs from docs/clients.md"
        );
        shown.push(target.to_owned());
    }
    for file in [
        "tests/interop/python/kmsd_client.py",
        "tests/interop/node/kmsd_client.js",
        "tests/tests/interop.rs",
    ] {
        let source = std::fs::read_to_string(root.join(file)).unwrap();
        for line in source.lines() {
            if let Some(name) = line
                .trim()
                .split_once("[docs:")
                .and_then(|(_, rest)| rest.strip_suffix(']'))
                && !name.contains('"')
            {
                let target = format!("{file}#{name}");
                assert!(
                    shown.contains(&target),
                    "docs/clients.md does not show {target}"
                );
            }
        }
    }
}

/// The lines between `[docs:NAME]` and the next `[/docs]`, dedented.
fn region(source: &str, name: &str) -> String {
    let start_marker = format!("[docs:{name}]");
    let mut lines = source
        .lines()
        .skip_while(|l| !l.trim_end().ends_with(&start_marker));
    assert!(lines.next().is_some(), "no region {name}");
    let body: Vec<&str> = lines
        .take_while(|l| !l.trim_end().ends_with("[/docs]"))
        .collect();
    let indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    body.iter()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}
