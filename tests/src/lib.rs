//! The end-to-end harness: starts the real `kmsd` binary on a unix socket
//! (and optionally TCP) in a private temporary directory, and hands out
//! clients for it. Every process is killed when its handle drops.
//!
//! This is the support crate of the test binaries under `tests/tests/`,
//! so each helper is written once: [`rest`] (the SigV4-signing admin REST
//! client), [`metrics`] (scraping a metrics listener), [`pki`] (test
//! certificates) and [`raft`] (OpenBao Raft clusters).
//!
//! The binaries are built by `cargo build --workspace --all-targets` (the
//! test script runs it first; [`binary`] runs it once per test process too,
//! so `cargo test` alone never tests a stale binary). `--all-targets`
//! resolves features exactly as `cargo test` does, so the two share every
//! artifact instead of rebuilding each other's.

#![forbid(unsafe_code)]
// A test harness: failing loudly, with context, is its job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::{
    fs,
    io::Read,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use kms_client::{ClientConfig, Endpoint, KmsClient, proto};

pub mod load;
pub mod metrics;
pub mod pki;
pub mod raft;
pub mod rest;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The path of a workspace binary, built (once per test process) if needed.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test knows its own path");
        // target/<profile>/deps/<test> -> target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("tests run from target/<profile>/deps")
            .to_path_buf();
        if std::env::var_os("KMSD_TESTS_SKIP_BUILD").is_none() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(workspace_root()).args([
                "build",
                "--workspace",
                "--all-targets",
                "--quiet",
            ]);
            // `cargo test` gives the test process the package's
            // CARGO_MANIFEST_DIR, CARGO_PKG_* ...; build scripts that watch
            // them (ring's does) would see a change and rebuild, and the
            // next top-level build would rebuild back. Build with the
            // environment a shell would have.
            for (key, _) in std::env::vars_os() {
                let key = key.to_string_lossy();
                if key.starts_with("CARGO_PKG_")
                    || key.starts_with("CARGO_BIN_")
                    || matches!(
                        key.as_ref(),
                        "CARGO_MANIFEST_DIR"
                            | "CARGO_MANIFEST_PATH"
                            | "CARGO_CRATE_NAME"
                            | "CARGO_PRIMARY_PACKAGE"
                            | "CARGO_TARGET_TMPDIR"
                    )
                {
                    cmd.env_remove(key.as_ref());
                }
            }
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("cargo runs");
            assert!(status.success(), "building the workspace binaries failed");
        }
        profile_dir
    });
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing; run `cargo build --workspace --all-targets`",
        path.display()
    );
    path
}

/// Every file under `dir`, concatenated (nothing if it does not exist):
/// what the secret sweeps search for planted secrets.
pub fn every_file(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return all;
    };
    for entry in entries {
        let path = entry.expect("a readable directory entry").path();
        if path.is_dir() {
            all.extend(every_file(&path));
        } else {
            all.extend(fs::read(path).expect("a readable file"));
        }
    }
    all
}

/// A temporary directory only this user can enter, as kmsd requires for
/// key directories.
pub fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kmsd-e2e-")
        .tempdir()
        .expect("a temporary directory");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod 0700");
    dir
}

/// How to start a kmsd.
#[derive(Debug, Clone)]
pub struct KmsdOptions {
    /// The `[backend]` table (and sub-tables), or `None` for NotConfigured.
    pub backend_toml: Option<String>,
    /// More lines for the `[server]` table.
    pub server_toml: String,
    /// More TOML appended to the config file.
    pub extra_toml: String,
    /// Also listen on 127.0.0.1:<free port>.
    pub tcp: bool,
    /// Environment variables for the process; an empty value removes the
    /// variable (`RUST_LOG`, so that the config file's `[log] level` applies).
    pub env: Vec<(String, String)>,
    /// Run kmsd with this RLIMIT_NOFILE (soft and hard), through
    /// `prlimit`.
    pub nofile: Option<u64>,
}

impl KmsdOptions {
    /// A local backend in `<dir>/keys` with default key `default`.
    pub fn local() -> Self {
        Self {
            backend_toml: Some(
                "[backend]\nbackend_type = \"local\"\nkey_dir = \"{dir}/keys\"\ndefault_key_id = \"default\"\n"
                    .into(),
            ),
            server_toml: String::new(),
            extra_toml: String::new(),
            tcp: false,
            env: Vec::new(),
            nofile: None,
        }
    }
}

/// A running kmsd process.
#[derive(Debug)]
pub struct Kmsd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    options: KmsdOptions,
    tcp_port: Option<u16>,
    starts: u32,
}

impl Kmsd {
    /// Starts kmsd and waits until it serves.
    pub async fn start(options: KmsdOptions) -> Self {
        let mut kmsd = Self::spawn_only(options);
        kmsd.wait_ready().await;
        kmsd
    }

    /// Starts kmsd with a local backend.
    pub async fn start_local() -> Self {
        Self::start(KmsdOptions::local()).await
    }

    /// Writes the config and spawns the process without waiting.
    pub fn spawn_only(options: KmsdOptions) -> Self {
        let dir = private_dir();
        let tcp_port = options.tcp.then(free_port);
        let mut kmsd = Self {
            child: None,
            dir,
            options,
            tcp_port,
            starts: 0,
        };
        kmsd.spawn();
        kmsd
    }

    /// The private directory of this instance.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("kmsd.sock")
    }

    /// The endpoint over the unix socket.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::Unix(self.socket())
    }

    /// The TCP endpoint, when enabled.
    pub fn tcp_endpoint(&self) -> Option<Endpoint> {
        self.tcp_port
            .map(|port| Endpoint::Http(format!("http://127.0.0.1:{port}")))
    }

    /// The config file kmsd was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("kmsd.toml")
    }

    fn spawn(&mut self) {
        let dir = self.dir.path().display().to_string();
        let mut config = format!("[server]\nunix_socket = \"{dir}/kmsd.sock\"\n");
        if let Some(port) = self.tcp_port {
            config.push_str(&format!(
                "tcp = \"127.0.0.1:{port}\"\ndanger_plaintext_tcp = true\n"
            ));
        }
        config.push_str(&self.options.server_toml.replace("{dir}", &dir));
        config.push('\n');
        config.push_str(&self.options.extra_toml.replace("{dir}", &dir));
        config.push('\n');
        if let Some(backend) = &self.options.backend_toml {
            config.push_str(&backend.replace("{dir}", &dir));
        }
        fs::write(self.config_path(), config).expect("write config");
        self.starts += 1;
        let log = |name: &str| {
            fs::File::create(self.dir.path().join(format!("{name}.{}.log", self.starts)))
                .expect("log file")
        };
        let mut command = match self.options.nofile {
            Some(n) => {
                // prlimit sets the limit, then execs kmsd (same pid).
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(binary("kmsd"));
                c
            }
            None => Command::new(binary("kmsd")),
        };
        command
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            // The options' environment may override the log filter.
            .env("RUST_LOG", "kmsd=debug,info");
        for (name, value) in &self.options.env {
            match value.is_empty() {
                true => command.env_remove(name),
                false => command.env(name, value),
            };
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log("stdout"))
            .stderr(log("stderr"))
            .spawn()
            .expect("spawn kmsd");
        self.child = Some(child);
    }

    /// Waits until a Status call answers, failing with the log if the
    /// process exits first.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.try_exit_status() {
                panic!("kmsd exited during startup with {status}:\n{}", self.logs());
            }
            if self.socket().exists()
                && let Ok(client) = KmsClient::connect(self.endpoint()).await
                && client.admin().status(proto::StatusRequest {}).await.is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kmsd did not become ready:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A client over the unix socket.
    pub async fn client(&self) -> KmsClient {
        self.client_with(|_| {}).await
    }

    /// A client over the unix socket with an adjusted config.
    pub async fn client_with(&self, adjust: impl FnOnce(&mut ClientConfig)) -> KmsClient {
        let mut config = ClientConfig::new(self.endpoint());
        adjust(&mut config);
        KmsClient::connect_with(config)
            .await
            .expect("connect to kmsd")
    }

    /// The exit status, if the process has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "kmsd did not exit:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// Sends a signal (e.g. "TERM", "KILL") with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGKILL, and reap the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process (if running) and starts it again with the same
    /// config and directory, then waits until it serves.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_ready().await;
    }

    /// Starts it again (after it exited) without waiting.
    pub fn respawn(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Replaces the options for the next (re)start.
    pub fn set_options(&mut self, options: KmsdOptions) {
        self.options = options;
    }

    /// Everything the process wrote to stdout and stderr, across restarts.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for n in 1..=self.starts {
            for name in ["stdout", "stderr"] {
                let path = self.dir.path().join(format!("{name}.{n}.log"));
                let mut text = String::new();
                if let Ok(mut f) = fs::File::open(&path) {
                    let _ = f.read_to_string(&mut text);
                }
                all.push_str(&format!("--- {name} (start {n}) ---\n{text}"));
            }
        }
        all
    }
}

impl Drop for Kmsd {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Kills a process started outside the harness (`kmsd serve --dev`, say)
/// when the test ends, pass or fail.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The gRPC code and ErrorInfo reason of a failed call.
pub fn code_and_reason(err: &kms_client::Error) -> (tonic::Code, String) {
    (
        err.code().unwrap_or(tonic::Code::Unknown),
        err.reason().unwrap_or_default().to_owned(),
    )
}

/// Asserts that a call failed with `code` and `reason`.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, kms_client::Error>,
    code: tonic::Code,
    reason: &str,
) -> kms_client::Error {
    match result {
        Ok(v) => panic!("expected {code:?}/{reason}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(code_and_reason(&e), (code, reason.to_owned()), "{e}");
            e
        }
    }
}

/// Builds an encryption context from pairs.
pub fn ctx(pairs: &[(&str, &str)]) -> kms_client::EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
