//! Every sample config under deploy/ loads, and the local ones start.

use kmsd_tests::{binary, free_port, private_dir, rest::AdminClient, workspace_root};
use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::*;

/// A TOML file under deploy/ or a `*.toml` entry of a ConfigMap, with the
/// files next to it (same directory, or the same ConfigMap).
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    name: String,
    text: String,
    siblings: BTreeMap<String, String>,
}

impl Sample {
    pub(crate) fn from_file(path: &Path) -> Self {
        let dir = path.parent().unwrap();
        let siblings = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    fs::read_to_string(&p).unwrap_or_default(),
                )
            })
            .collect();
        Self {
            name: path
                .strip_prefix(workspace_root())
                .unwrap()
                .display()
                .to_string(),
            text: fs::read_to_string(path).unwrap(),
            siblings,
        }
    }

    fn table(&self) -> toml::Table {
        toml::from_str(&self.text).unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    /// A policy file rather than a kmsd configuration.
    fn is_policy(&self) -> bool {
        let table = self.table();
        !table.is_empty() && table.keys().all(|k| k == "identities" || k == "policies")
    }

    fn backend_type(&self) -> Option<String> {
        self.table()
            .get("backend")
            .and_then(|b| b.get("backend_type"))
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
    }

    /// The sample with every absolute path moved under a private directory
    /// (parents created, as systemd's RuntimeDirectory/StateDirectory or
    /// the pod's volumes would), listeners on free loopback ports, referenced
    /// files copied from the sample's siblings and secrets generated.
    pub(crate) fn stage(&self) -> Staged {
        let root = private_dir();
        let mut table = self.table();
        let mut env = Vec::new();
        let mut socket = None;
        stage_table(&mut table, root.path(), self, &mut env, &mut socket);
        let metrics = table
            .get("metrics")
            .and_then(|m| m.get("listen"))
            .and_then(toml::Value::as_str)
            .map(|l| l.rsplit(':').next().unwrap().parse().unwrap());
        let config = root.path().join("kmsd.toml");
        fs::write(&config, toml::to_string(&table).unwrap()).unwrap();
        Staged {
            root,
            config,
            env,
            metrics,
            socket,
        }
    }
}

fn stage_table(
    table: &mut toml::Table,
    root: &Path,
    sample: &Sample,
    env: &mut Vec<(String, String)>,
    socket: &mut Option<PathBuf>,
) {
    for (key, value) in table.iter_mut() {
        match value {
            toml::Value::Table(inner) => {
                stage_table(inner, root, sample, env, socket);
            }
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(inner) = item {
                        stage_table(inner, root, sample, env, socket);
                    }
                }
            }
            toml::Value::String(text) if text.parse::<std::net::SocketAddr>().is_ok() => {
                *text = format!("127.0.0.1:{}", free_port());
            }
            toml::Value::String(text) if text.starts_with('/') => {
                let original = PathBuf::from(text.as_str());
                let staged = root.join(text.trim_start_matches('/'));
                let parent = staged.parent().unwrap();
                fs::create_dir_all(parent).unwrap();
                for dir in parent.ancestors().take_while(|d| d.starts_with(root)) {
                    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
                }
                if key.ends_with("_file") || key == "file" {
                    let name = original.file_name().unwrap().to_string_lossy();
                    let contents = match sample.siblings.get(name.as_ref()) {
                        Some(sibling) => sibling.clone().into_bytes(),
                        None if key == "key_file" => random_bytes(32),
                        None => format!("{}\n", hex(&random_bytes(24))).into_bytes(),
                    };
                    fs::write(&staged, contents).unwrap();
                    fs::set_permissions(&staged, fs::Permissions::from_mode(0o600)).unwrap();
                }
                if key == "unix_socket" {
                    *socket = Some(staged.clone());
                }
                *text = staged.display().to_string();
            }
            toml::Value::String(text) if key.ends_with("_env") => {
                env.push((text.clone(), hex(&random_bytes(24))));
            }
            _ => {}
        }
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).unwrap();
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A sample laid out in a private directory, ready to start.
#[derive(Debug)]
pub(crate) struct Staged {
    pub(crate) root: tempfile::TempDir,
    pub(crate) config: PathBuf,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) metrics: Option<u16>,
    pub(crate) socket: Option<PathBuf>,
}

impl Staged {
    pub(crate) fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .expect("the sample serves a unix socket")
    }

    pub(crate) async fn get(&self, path: &str) -> kmsd_tests::rest::Reply {
        let port = self.metrics.expect("the sample has a [metrics] listener");
        let http = AdminClient::new(port, "", "");
        http.send(http.unsigned("GET", path, "")).await
    }

    /// Where the process started by [`Self::spawn`] logs.
    pub(crate) fn log_path(&self) -> PathBuf {
        self.root.path().join("kmsd.log")
    }

    pub(crate) fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts `program args… serve --config <staged config>`, logging to a
    /// file.
    pub(crate) fn spawn(&self, program: &Path, args: &[&std::ffi::OsStr]) -> Guard {
        let child = Command::new(program)
            .args(args)
            .args(["serve", "--config"])
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.log_path()).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Guard(Some(child))
    }

    /// Waits until /health/ready answers 200, failing with the log if the
    /// process exits first.
    pub(crate) async fn wait_ready(&self, guard: &mut Guard) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = self
            .metrics
            .expect("every sample has a [metrics] listener for its probes");
        loop {
            if let Some(status) = guard.0.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("kmsd exited during startup with {status}:\n{}", self.log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && self.get("/health/ready").await.status == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the sample did not become ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every sample: the TOML files under deploy/ and the `*.toml` entries of
/// every ConfigMap under deploy/.
fn samples() -> Vec<Sample> {
    let mut samples: Vec<Sample> = files_under(&deploy_dir(), ".toml")
        .iter()
        .map(|p| Sample::from_file(p))
        .collect();
    for file in files_under(&deploy_dir(), ".yaml") {
        for doc in yaml_documents(&file) {
            if doc["kind"] != "ConfigMap" {
                continue;
            }
            let data: BTreeMap<String, String> =
                serde_json::from_value(doc["data"].clone()).unwrap();
            for (key, text) in &data {
                if key.ends_with(".toml") {
                    samples.push(Sample {
                        name: format!(
                            "{} (ConfigMap {}, {key})",
                            file.strip_prefix(workspace_root()).unwrap().display(),
                            str_at(&doc, "/metadata/name")
                        ),
                        text: text.clone(),
                        siblings: data.clone(),
                    });
                }
            }
        }
    }
    samples
}

#[test]
fn every_sample_config_passes_check_config() {
    let samples = samples();
    let dir = private_dir();
    let mut configs = 0;
    let mut policies = 0;
    for (i, sample) in samples.iter().enumerate() {
        let file = dir.path().join(format!("sample-{i}.toml"));
        fs::write(&file, &sample.text).unwrap();
        if sample.is_policy() {
            // Policies are loaded by a real kmsd in the next test, through
            // the configs that name them; here, one referenced by none would
            // go unchecked, so each is referenced.
            let referenced = samples.iter().any(|s| {
                !s.is_policy()
                    && s.table()
                        .get("policy")
                        .and_then(|p| p.get("file"))
                        .and_then(toml::Value::as_str)
                        .is_some_and(|f| {
                            s.siblings.get(f.rsplit('/').next().unwrap()) == Some(&sample.text)
                        })
            });
            assert!(
                referenced,
                "{} is a policy no sample config uses",
                sample.name
            );
            policies += 1;
            continue;
        }
        // As shipped: no path rewritten (check-config reads no secret).
        let ran = run(Command::new(binary("kmsd"))
            .args(["serve", "--check-config", "--config"])
            .arg(&file));
        assert!(
            ran.success && ran.stdout.starts_with("configuration OK"),
            "{}: {ran}",
            sample.name
        );
        configs += 1;
    }
    assert!(
        configs >= 3 && policies >= 2,
        "{configs} configs, {policies} policies in {samples:?}"
    );
}

/// A sample with `[cluster] peers` names the other sidecars' metrics
/// listeners, which share the sample's own `[metrics]` port; and the
/// multi-node samples have peers at all.
#[test]
fn cluster_peers_of_samples_are_metrics_listeners() {
    let mut with_peers = Vec::new();
    for sample in samples() {
        let table = sample.table();
        let Some(peers) = table.get("cluster").and_then(|c| c.get("peers")) else {
            continue;
        };
        let port = table["metrics"]["listen"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        let peers = peers.as_array().unwrap();
        assert!(peers.len() >= 3, "{}: {peers:?}", sample.name);
        for peer in peers {
            let peer = peer.as_str().unwrap();
            assert!(
                peer.starts_with("http://") && peer.ends_with(&format!(":{port}")),
                "{}: peer {peer} is not http://host:{port}",
                sample.name
            );
        }
        with_peers.push(sample.name);
    }
    assert!(
        with_peers
            .iter()
            .any(|n| n.contains("openbao-ha/kmsd.toml"))
            && with_peers
                .iter()
                .any(|n| n.contains("openbao-ha/kubernetes")),
        "{with_peers:?}"
    );
}

#[tokio::test]
async fn local_backend_samples_start_ready_and_clean() {
    let mut started = Vec::new();
    for sample in samples() {
        if sample.is_policy() {
            continue;
        }
        // Other backends (Vault) need their server: check-config covers
        // them in the test above.
        if sample.backend_type().is_some_and(|t| t != "local") {
            continue;
        }
        let staged = sample.stage();
        let mut guard = staged.spawn(&binary("kmsd"), &[]);
        staged.wait_ready(&mut guard).await;
        let live = staged.get("/health/live").await;
        assert_eq!(live.status, 200, "{}", sample.name);
        let mut child = guard.0.take().unwrap();
        signal(child.id(), "TERM");
        let status = child.wait().unwrap();
        let log = staged.log();
        assert!(status.success(), "{}: exit {status}\n{log}", sample.name);
        // A production sample starts without a warning (no missing policy,
        // state directory or loose permission).
        let noisy: Vec<&str> = log
            .lines()
            .filter(|l| {
                [
                    "\"level\":\"WARN\"",
                    "\"level\":\"ERROR\"",
                    " WARN ",
                    " ERROR ",
                ]
                .iter()
                .any(|m| l.contains(m))
            })
            .collect();
        assert!(
            noisy.is_empty(),
            "{} warns:\n{}",
            sample.name,
            noisy.join("\n")
        );
        assert!(log.contains("kmsd ready"), "{}: {log}", sample.name);
        // Sealed as shipped: the key directory holds no key in the clear.
        let keys = staged.root.path().join(
            sample.table()["backend"]["key_dir"]
                .as_str()
                .unwrap()
                .trim_start_matches('/'),
        );
        assert!(
            keys.join(".kmsd-sealing.json").exists(),
            "{} is not sealed",
            sample.name
        );
        started.push(sample.name);
    }
    assert!(started.len() >= 2, "started: {started:?}");
}
