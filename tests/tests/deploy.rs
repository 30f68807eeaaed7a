//! The files in `deploy/`, checked by the tools that consume them and
//! against the real kmsd, so that they cannot rot:
//!
//! - systemd: `systemd-analyze verify` with no output at all (unknown keys
//!   only warn), `systemd-analyze security` at or below 2.0 ("OK"), the
//!   sysusers and tmpfiles snippets applied to a scratch root, and the
//!   unit's `SystemCallFilter=` / `RestrictAddressFamilies=` compared with
//!   what kmsd actually calls under strace;
//! - the Containerfile: hadolint at its strictest threshold;
//! - Kubernetes: `kubernetes-validate --strict` on every manifest, and the
//!   cross-references no schema can check (ports, paths, labels, uids);
//! - Prometheus: `promtool check rules` and `promtool test rules` (every
//!   alert fired), and every metric the rules and the Grafana dashboard
//!   query is one a running kmsd exports;
//! - every `*.toml` under `deploy/` and the kmsd.toml embedded in the
//!   ConfigMap: `kmsd serve --check-config`, and for local-backend samples a
//!   real start with every path moved into a temporary directory (secrets
//!   generated, listeners on loopback) that must come up ready and clean.
//!
//! The tools are installed by `scripts/setup-test-env.sh`; a missing one
//! fails the test with that hint. Nothing here is skipped.

// Test code: a failed unwrap is a failed test, with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use kms_client::proto;
use kmsd_tests::{
    Kmsd, KmsdOptions, binary, ctx, free_port, private_dir, rest::AdminClient, workspace_root,
};
use serde_json::Value;

// === tools ===

/// A validator, from the test venv or the system; a missing tool fails the
/// test with how to install it.
fn tool(name: &str) -> PathBuf {
    let venv = workspace_root().join(".venv/bin").join(name);
    if venv.exists() {
        return venv;
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{name} is not installed: run scripts/setup-test-env.sh (it installs every validator these tests use)")
    })
}

/// What a command printed, as text.
struct Ran {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn run(command: &mut Command) -> Ran {
    let output: Output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    Ran {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn deploy_dir() -> PathBuf {
    workspace_root().join("deploy")
}

/// Every file under `dir` whose name ends with `suffix`, sorted.
fn files_under(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The documents of a YAML file as JSON, parsed by the venv's PyYAML (the
/// parser kubernetes-validate itself uses).
fn yaml_documents(path: &Path) -> Vec<Value> {
    let script = "import json, sys, yaml\n\
                  docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
                  json.dump(docs, sys.stdout)";
    let ran = run(Command::new(tool("python3")).args(["-c", script]).arg(path));
    assert!(ran.success, "{} is not valid YAML: {ran}", path.display());
    let Value::Array(docs) = serde_json::from_str(&ran.stdout).unwrap() else {
        panic!("a YAML stream is a list of documents")
    };
    docs
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} is not a string in {value:#}"))
}

// === systemd ===

fn systemd_dir() -> PathBuf {
    deploy_dir().join("systemd")
}

/// The unit with ExecStart pointing at the built binary (verify checks that
/// it exists and is executable), in a fresh directory; with `drop_ins`, the
/// unit's `kmsd.service.d/` too.
fn rendered_unit(drop_ins: bool) -> (tempfile::TempDir, PathBuf) {
    let dir = private_dir();
    let unit = fs::read_to_string(systemd_dir().join("kmsd.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/kmsd "),
        "the unit runs /usr/local/bin/kmsd"
    );
    let kmsd = binary("kmsd");
    let rendered = unit.replace("/usr/local/bin/kmsd", &kmsd.display().to_string());
    let path = dir.path().join("kmsd.service");
    fs::write(&path, rendered).unwrap();
    if drop_ins {
        let source = systemd_dir().join("kmsd.service.d");
        let target = dir.path().join("kmsd.service.d");
        fs::create_dir(&target).unwrap();
        let confs = files_under(&source, ".conf");
        assert!(!confs.is_empty(), "kmsd.service.d/ holds drop-ins");
        for conf in confs {
            fs::copy(&conf, target.join(conf.file_name().unwrap())).unwrap();
        }
    }
    (dir, path)
}

#[test]
fn systemd_unit_verifies_without_a_single_warning() {
    for drop_ins in [false, true] {
        let (_dir, unit) = rendered_unit(drop_ins);
        let ran = run(Command::new(tool("systemd-analyze"))
            .arg("verify")
            .arg(&unit));
        // Unknown keys and bad values are only warnings (exit 0): any
        // output at all is a failure.
        assert!(
            ran.success && ran.stdout.is_empty() && ran.stderr.is_empty(),
            "systemd-analyze verify (drop-ins: {drop_ins}): {ran}"
        );
    }
}

/// The overall exposure and its rating, from the last line of
/// `systemd-analyze security`.
fn exposure(ran: &Ran) -> (f64, String) {
    let line = ran
        .stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .unwrap_or_else(|| panic!("no overall exposure line: {ran}"));
    let rest = line.split(": ").nth(1).unwrap();
    let mut words = rest.split_whitespace();
    let score = words.next().unwrap().parse().unwrap();
    (score, words.next().unwrap().to_owned())
}

#[test]
fn systemd_unit_is_rated_ok_or_better() {
    for drop_ins in [false, true] {
        let (_dir, unit) = rendered_unit(drop_ins);
        // --threshold is the score times ten: fail above 2.0.
        let ran = run(Command::new(tool("systemd-analyze"))
            .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
            .arg(&unit));
        assert!(ran.success, "systemd-analyze security: {ran}");
        let (score, rating) = exposure(&ran);
        assert!(
            score <= 2.0 && ["PERFECT", "SAFE", "OK"].contains(&rating.as_str()),
            "exposure {score} {rating} (drop-ins: {drop_ins}):\n{}",
            ran.stdout
        );
        eprintln!("systemd-analyze security (drop-ins: {drop_ins}): {score} {rating}");
    }
}

/// The unit's `Key=value` settings (last one wins, as for systemd; lists
/// kept whole per line).
fn unit_settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn systemd_unit_keeps_the_settings_operations_rely_on() {
    let unit = fs::read_to_string(systemd_dir().join("kmsd.service")).unwrap();
    let settings = unit_settings(&unit);
    let has = |key: &str, value: &str| settings.iter().any(|(k, v)| k == key && v == value);
    for (key, value) in [
        ("Type", "notify"),
        ("User", "kmsd"),
        ("Group", "kmsd"),
        ("StateDirectory", "kmsd"),
        ("RuntimeDirectory", "kmsd"),
        ("UMask", "0077"),
        ("LimitCORE", "0"),
        ("CapabilityBoundingSet", ""),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("RestartPreventExitStatus", "78"),
    ] {
        assert!(has(key, value), "kmsd.service lacks {key}={value}");
    }
    assert!(
        settings
            .iter()
            .any(|(k, v)| k == "WatchdogSec" && !v.is_empty()),
        "kmsd pets the watchdog: the unit must ask for it"
    );
    // The sample config names paths the unit provides.
    let config = fs::read_to_string(systemd_dir().join("kmsd.toml")).unwrap();
    let config: toml::Table = toml::from_str(&config).unwrap();
    let path = |table: &str, key: &str| -> String {
        let mut value = &config[table];
        for part in key.split('.') {
            value = &value[part];
        }
        value.as_str().unwrap().to_owned()
    };
    assert!(path("server", "unix_socket").starts_with("/run/kmsd/"));
    assert!(path("server", "state_dir").starts_with("/var/lib/kmsd/"));
    assert!(path("backend", "key_dir").starts_with("/var/lib/kmsd/"));
    let passphrase = path("backend", "sealing.passphrase_file");
    let credential = passphrase
        .strip_prefix("/run/credentials/kmsd.service/")
        .expect("the passphrase is a systemd credential of kmsd.service");
    assert!(
        settings
            .iter()
            .any(|(k, v)| k == "LoadCredential" && v.starts_with(&format!("{credential}:"))),
        "kmsd.service loads the credential {credential}"
    );
}

#[test]
fn sysusers_and_tmpfiles_snippets_apply_to_a_scratch_root() {
    let root = private_dir();
    fs::create_dir(root.path().join("etc")).unwrap();
    let ran = run(Command::new(tool("systemd-sysusers"))
        .arg(format!("--root={}", root.path().display()))
        .arg(systemd_dir().join("kmsd.sysusers.conf")));
    assert!(
        ran.success && ran.stderr.lines().all(|l| l.starts_with("Creating ")),
        "systemd-sysusers: {ran}"
    );
    let passwd = fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let kmsd_user: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("kmsd:"))
        .unwrap_or_else(|| panic!("no kmsd user in {passwd}"))
        .split(':')
        .collect();
    assert_eq!(kmsd_user[5], "/var/lib/kmsd", "home is the state directory");
    assert_eq!(kmsd_user[6], "/usr/sbin/nologin", "no login shell");
    let group = fs::read_to_string(root.path().join("etc/group")).unwrap();
    let gid: u32 = group
        .lines()
        .find(|l| l.starts_with("kmsd:"))
        .and_then(|l| l.split(':').nth(2))
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("no kmsd group in {group}"));

    let ran = run(Command::new(tool("systemd-tmpfiles"))
        .arg(format!("--root={}", root.path().display()))
        .arg("--create")
        .arg(systemd_dir().join("kmsd.tmpfiles.conf")));
    assert!(
        ran.success && ran.stderr.is_empty() && ran.stdout.is_empty(),
        "systemd-tmpfiles: {ran}"
    );
    let etc_kmsd = fs::metadata(root.path().join("etc/kmsd")).unwrap();
    assert_eq!(etc_kmsd.mode() & 0o7777, 0o750, "/etc/kmsd is 0750");
    assert_eq!(
        (etc_kmsd.uid(), etc_kmsd.gid()),
        (0, gid),
        "/etc/kmsd is root:kmsd"
    );
}

/// The syscalls a `SystemCallFilter=` group stands for, nested groups
/// expanded, as systemd-analyze lists them.
fn syscall_group(group: &str, cache: &mut BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    if let Some(known) = cache.get(group) {
        return known.clone();
    }
    let ran = run(Command::new(tool("systemd-analyze")).args(["syscall-filter", group]));
    assert!(ran.success, "systemd-analyze syscall-filter {group}: {ran}");
    let mut calls = BTreeSet::new();
    for line in ran.stdout.lines().skip(1).map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('@') {
            calls.extend(syscall_group(line, cache));
        } else {
            calls.insert(line.to_owned());
        }
    }
    cache.insert(group.to_owned(), calls.clone());
    calls
}

/// A kmsd process that is killed if the test fails before it ends.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn the_units_seccomp_and_socket_filters_allow_what_kmsd_calls() {
    let unit = fs::read_to_string(systemd_dir().join("kmsd.service")).unwrap();
    let settings = unit_settings(&unit);
    let mut cache = BTreeMap::new();
    let mut allowed = BTreeSet::new();
    for (_, value) in settings.iter().filter(|(k, _)| k == "SystemCallFilter") {
        match value.strip_prefix('~') {
            Some(denied) => {
                for item in denied.split_whitespace() {
                    let calls = if item.starts_with('@') {
                        syscall_group(item, &mut cache)
                    } else {
                        BTreeSet::from([item.to_owned()])
                    };
                    allowed.retain(|c| !calls.contains(c));
                }
            }
            None => {
                for item in value.split_whitespace() {
                    if item.starts_with('@') {
                        allowed.extend(syscall_group(item, &mut cache));
                    } else {
                        allowed.insert(item.to_owned());
                    }
                }
            }
        }
    }
    assert!(allowed.len() > 100, "the filter resolved to {allowed:?}");
    let families: BTreeSet<String> = settings
        .iter()
        .filter(|(k, _)| k == "RestrictAddressFamilies")
        .flat_map(|(_, v)| v.split_whitespace().map(str::to_owned))
        .collect();

    // The systemd sample, under strace, through what a service does: start
    // (sealed key directory), serve data keys, answer a scrape, reload on
    // SIGHUP, stop on SIGTERM.
    let sample = Sample::from_file(&systemd_dir().join("kmsd.toml"));
    let staged = sample.stage();
    let trace = staged.root.path().join("strace.log");
    let kmsd = binary("kmsd");
    let strace_args = [
        "-f".as_ref(),
        "-qq".as_ref(),
        "-o".as_ref(),
        trace.as_os_str(),
        kmsd.as_os_str(),
    ];
    let mut guard = staged.spawn(&tool("strace"), &strace_args);
    staged.wait_ready(&mut guard).await;
    // root is the sample policy's operator: it may use every call.
    let client = kms_client::KmsClient::connect(kms_client::Endpoint::Unix(staged.socket()))
        .await
        .unwrap();
    let context = ctx(&[("bucket", "b")]);
    let key = client.generate_data_key(None, &context).await.unwrap();
    client.decrypt(&key.blob, &context, None).await.unwrap();
    staged.get("/metrics").await;
    let pid = guard.0.as_ref().unwrap().id();
    // strace's child is kmsd; signal it, not strace.
    let kmsd_pid = wait_for_child_pid(pid);
    signal(kmsd_pid, "HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(kmsd_pid, "TERM");
    let status = guard.0.take().unwrap().wait().unwrap();
    assert!(
        status.success(),
        "kmsd under strace failed:\n{}",
        staged.log()
    );

    let trace = fs::read_to_string(&trace).unwrap();
    let mut called = BTreeSet::new();
    let mut opened_families = BTreeSet::new();
    for line in trace.lines() {
        // "<pid> name(args…" (resumed and signal lines do not match).
        let Some(call) = line.split_once(' ').map(|(_, rest)| rest.trim_start()) else {
            continue;
        };
        let name: String = call
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() || !call[name.len()..].starts_with('(') {
            continue;
        }
        if name == "socket"
            && let Some(family) = call["socket(".len()..].split([',', ')']).next()
        {
            opened_families.insert(family.to_owned());
        }
        called.insert(name);
    }
    // execve is strace starting kmsd, before any filter would apply.
    called.remove("execve");
    assert!(called.len() > 20, "strace saw too little: {called:?}");
    let refused: Vec<_> = called.difference(&allowed).collect();
    assert!(
        refused.is_empty(),
        "kmsd makes syscalls the unit's SystemCallFilter refuses: {refused:?}"
    );
    let refused: Vec<_> = opened_families.difference(&families).collect();
    assert!(
        refused.is_empty(),
        "kmsd opens sockets of families RestrictAddressFamilies refuses: {refused:?}"
    );
}

fn wait_for_child_pid(parent: u32) -> u32 {
    let path = format!("/proc/{parent}/task/{parent}/children");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "strace started no child");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: u32, name: &str) {
    let ran = run(Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string()));
    assert!(ran.success, "kill -{name} {pid}: {ran}");
}

// === container ===

#[test]
fn containerfile_is_hadolint_clean() {
    let file = deploy_dir().join("container/Containerfile");
    let ran = run(Command::new(tool("hadolint"))
        .args(["--no-color", "--failure-threshold", "style"])
        .arg(&file));
    assert!(
        ran.success && ran.stdout.trim().is_empty(),
        "hadolint: {ran}"
    );
    // What hadolint does not judge: the final stage runs as non-root and
    // needs no shell to start.
    let text = fs::read_to_string(&file).unwrap();
    let final_stage = text.rsplit("\nFROM ").next().unwrap();
    let user = final_stage
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the final stage sets USER");
    assert!(
        !["0", "root"].contains(&user.split(':').next().unwrap()),
        "USER {user} is root"
    );
    for directive in ["ENTRYPOINT [", "CMD ["] {
        assert!(
            final_stage.lines().any(|l| l.starts_with(directive)),
            "{directive}…] (exec form, no shell) in the final stage"
        );
    }
}

// === Kubernetes ===

fn kubernetes_dir() -> PathBuf {
    deploy_dir().join("kubernetes")
}

/// Kinds whose schema kubernetes-validate does not ship: their files are
/// checked by `kubernetes_manifests_agree_with_each_other` instead.
const CUSTOM_KINDS: &[&str] = &["ServiceMonitor"];

#[test]
fn kubernetes_manifests_pass_strict_validation() {
    let files = files_under(&kubernetes_dir(), ".yaml");
    assert!(files.len() >= 2, "manifests found: {files:?}");
    let mut validated = 0;
    for file in &files {
        let documents = yaml_documents(file);
        let ran = run(Command::new(tool("kubernetes-validate"))
            .arg("--strict")
            .arg(file));
        assert!(
            ran.success,
            "kubernetes-validate --strict {}: {ran}",
            file.display()
        );
        let output = format!("{}{}", ran.stdout, ran.stderr);
        for line in output.lines() {
            // An unknown kind only warns (and passes): allowed for the
            // custom kinds alone.
            let custom = CUSTOM_KINDS
                .iter()
                .any(|k| line.contains(&format!("Couldn't find schema for kind {k} ")));
            assert!(
                line.starts_with("INFO ") && line.contains(" passed for resource ") || custom,
                "kubernetes-validate: {line}"
            );
        }
        let core = documents
            .iter()
            .filter(|d| !CUSTOM_KINDS.contains(&str_at(d, "/kind")))
            .count();
        let passed = output.matches(" passed for resource ").count();
        assert_eq!(passed, core, "{}: {output}", file.display());
        validated += passed;
    }
    assert!(validated >= 4, "only {validated} resources validated");
}

fn kubernetes_resources() -> Vec<Value> {
    files_under(&kubernetes_dir(), ".yaml")
        .iter()
        .flat_map(|f| yaml_documents(f))
        .collect()
}

fn resource<'a>(all: &'a [Value], kind: &str, name: &str) -> &'a Value {
    all.iter()
        .find(|r| str_at(r, "/kind") == kind && str_at(r, "/metadata/name") == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

/// The kmsd.toml of the ConfigMap, parsed.
fn configmap_kmsd_toml(all: &[Value]) -> toml::Table {
    let configmap = resource(all, "ConfigMap", "kmsd-config");
    toml::from_str(str_at(configmap, "/data/kmsd.toml")).unwrap()
}

#[test]
fn kubernetes_manifests_agree_with_each_other() {
    let all = kubernetes_resources();
    let config = configmap_kmsd_toml(&all);
    let metrics_port: u16 = config["metrics"]["listen"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let sts = resource(&all, "StatefulSet", "storage");
    let pod = &sts["spec"]["template"];
    let spec = &pod["spec"];
    assert!(labels_match(
        &sts["spec"]["selector"]["matchLabels"],
        &pod["metadata"]["labels"]
    ));
    let containers: Vec<&Value> = spec["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(spec["containers"].as_array().unwrap())
        .collect();
    let kmsd = containers
        .iter()
        .find(|c| c["name"] == "kmsd")
        .expect("a kmsd container");
    let storage = containers
        .iter()
        .find(|c| c["name"] == "storage")
        .expect("a storage container");
    assert_eq!(kmsd["restartPolicy"], "Always", "kmsd is a native sidecar");

    // Security context and resources on every container.
    for container in &containers {
        let name = str_at(container, "/name");
        let sc = &container["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{name}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{name}"
        );
        assert!(
            sc["capabilities"].get("add").is_none(),
            "{name} adds capabilities"
        );
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        for kind in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    container["resources"][kind].get(resource).is_some(),
                    "{name} has no {kind}.{resource}"
                );
            }
        }
    }
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        spec["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    // fsGroup's recursive chmod would give the group access to the key
    // files on every mount, which kmsd refuses.
    assert_eq!(
        spec["securityContext"]["fsGroupChangePolicy"],
        "OnRootMismatch"
    );

    // The probes hit kmsd's metrics listener.
    let ports = kmsd["ports"].as_array().unwrap();
    let metrics = ports
        .iter()
        .find(|p| p["containerPort"] == metrics_port)
        .unwrap_or_else(|| panic!("kmsd exposes no port {metrics_port}"));
    let metrics_name = str_at(metrics, "/name");
    for (probe, path) in [
        ("startupProbe", "/health/ready"),
        ("readinessProbe", "/health/ready"),
        ("livenessProbe", "/health/live"),
    ] {
        assert_eq!(kmsd[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(kmsd[probe]["httpGet"]["port"], metrics_name, "{probe}");
    }
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], metrics_port.to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    // The paths in kmsd.toml are on the right volumes.
    let mount_of = |container: &Value, volume: &str| -> String {
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume)
            .map(|m| str_at(m, "/mountPath").to_owned())
            .unwrap_or_else(|| panic!("{} does not mount {volume}", container["name"]))
    };
    let volume = |name: &str| -> &Value {
        spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let socket = PathBuf::from(config["server"]["unix_socket"].as_str().unwrap());
    let socket_dir = socket.parent().unwrap().to_str().unwrap().to_owned();
    assert_eq!(mount_of(kmsd, "kmsd-socket"), socket_dir);
    assert_eq!(mount_of(storage, "kmsd-socket"), socket_dir);
    assert!(volume("kmsd-socket").get("emptyDir").is_some());
    let endpoint = storage["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "KMSD_ENDPOINT")
        .expect("the storage container is told where kmsd is");
    assert_eq!(endpoint["value"], format!("unix:{}", socket.display()));
    let keys_mount = mount_of(kmsd, "kmsd-keys");
    let key_dir = config["backend"]["key_dir"].as_str().unwrap();
    assert!(
        key_dir.starts_with(&format!("{keys_mount}/")),
        "backend.key_dir {key_dir} must be a subdirectory of the volume (its root is group-accessible under fsGroup)"
    );
    assert!(
        config["server"]["state_dir"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{keys_mount}/"))
    );
    assert!(
        sts["spec"]["volumeClaimTemplates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["metadata"]["name"] == "kmsd-keys"),
        "kmsd-keys is a persistent volume"
    );
    let secrets_mount = mount_of(kmsd, "kmsd-secrets");
    let passphrase = config["backend"]["sealing"]["passphrase_file"]
        .as_str()
        .unwrap();
    let secret_key = passphrase
        .strip_prefix(&format!("{secrets_mount}/"))
        .expect("the passphrase comes from the Secret volume");
    assert!(!secret_key.contains('/'));
    assert!(volume("kmsd-secrets").get("secret").is_some());
    let config_mount = mount_of(kmsd, "kmsd-config");
    let policy = config["policy"]["file"].as_str().unwrap();
    let policy_key = policy
        .strip_prefix(&format!("{config_mount}/"))
        .expect("the policy comes from the ConfigMap volume");
    let configmap = resource(&all, "ConfigMap", "kmsd-config");
    assert!(configmap["data"].get(policy_key).is_some());
    assert_eq!(
        str_at(&volume("kmsd-config")["configMap"], "/name"),
        "kmsd-config"
    );
    let args: Vec<&str> = kmsd["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        ["serve", "--config", &format!("{config_mount}/kmsd.toml")]
    );

    // The policy grants the storage container's uid the data plane.
    let policy: toml::Table =
        toml::from_str(str_at(configmap, &format!("/data/{policy_key}"))).unwrap();
    let storage_uid = storage["securityContext"]["runAsUser"].as_i64().unwrap();
    let identity = policy["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i.get("unix_uid").and_then(toml::Value::as_integer) == Some(storage_uid))
        .expect("the policy names the storage container's uid");
    let granted: Vec<&str> = identity["policies"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            policy["policies"][p.as_str().unwrap()]["allow"]
                .as_array()
                .unwrap()
        })
        .map(|op| op.as_str().unwrap())
        .collect();
    for op in ["GenerateDataKey", "Decrypt"] {
        assert!(
            granted.contains(&op),
            "the storage server may not {op}: {granted:?}"
        );
    }
    // The socket's group is the pod's fsGroup, which every container has.
    assert_eq!(
        config["server"]["unix_socket_mode"].as_str().unwrap(),
        "0660"
    );
    assert!(spec["securityContext"]["fsGroup"].is_i64());

    // The metrics Service and the ServiceMonitor find kmsd's port.
    let service = resource(&all, "Service", "kmsd-metrics");
    assert!(labels_match(
        &service["spec"]["selector"],
        &pod["metadata"]["labels"]
    ));
    let service_port = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["targetPort"] == metrics_name)
        .expect("kmsd-metrics targets kmsd's metrics port");
    let monitor = resource(&all, "ServiceMonitor", "kmsd");
    assert_eq!(str_at(monitor, "/apiVersion"), "monitoring.coreos.com/v1");
    assert!(labels_match(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service_port["name"]);
    assert_eq!(endpoint["path"], "/metrics");
    // The job the alert rules and the dashboard select.
    assert!(
        endpoint["relabelings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["targetLabel"] == "job" && r["replacement"] == "kmsd")
    );
}

// === Prometheus ===

fn prometheus_dir() -> PathBuf {
    deploy_dir().join("prometheus")
}

#[test]
fn alert_rules_pass_promtool_and_every_alert_is_unit_tested() {
    let dir = prometheus_dir();
    let ran = run(Command::new(tool("promtool"))
        .args(["check", "rules", "kmsd-alerts.yaml"])
        .current_dir(&dir));
    assert!(
        ran.success && ran.stdout.contains("SUCCESS"),
        "promtool check rules: {ran}"
    );
    let ran = run(Command::new(tool("promtool"))
        .args(["test", "rules", "kmsd-alerts.test.yaml"])
        .current_dir(&dir));
    assert!(
        ran.success && ran.stdout.contains("SUCCESS"),
        "promtool test rules: {ran}"
    );

    let rules = &yaml_documents(&dir.join("kmsd-alerts.yaml"))[0];
    let alerts: BTreeSet<&str> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for required in [
        "KmsdDown",
        "KmsdBackendUnavailable",
        "KmsdHighErrorRate",
        "KmsdHighLatency",
        "KmsdCircuitBreakerOpen",
        "KmsdVaultTokenExpiring",
        "KmsdKeysPendingDeletion",
        "KmsdSelfProbeFailing",
        "KmsdAuditWriteErrors",
    ] {
        assert!(alerts.contains(required), "no {required} alert");
    }
    let tests = &yaml_documents(&dir.join("kmsd-alerts.test.yaml"))[0];
    let fired: BTreeSet<&str> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .filter(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
        .map(|c| str_at(c, "/alertname"))
        .collect();
    let untested: Vec<_> = alerts.difference(&fired).collect();
    assert!(
        untested.is_empty(),
        "alerts never fired in kmsd-alerts.test.yaml: {untested:?}"
    );
}

/// Every PromQL expression of the dashboard (panel targets and variable
/// queries), with Grafana's variables replaced by values Prometheus takes.
fn dashboard_expressions() -> Vec<String> {
    let text = fs::read_to_string(prometheus_dir().join("kmsd-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    let mut exprs = Vec::new();
    let mut pending = vec![&dashboard];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    exprs.push(expr.clone());
                }
                pending.extend(map.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            // label_values(SELECTOR, label) queries SELECTOR.
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.rsplit_once(','))
                .map(|(selector, _)| selector.to_owned())
                .unwrap_or_else(|| query.to_owned());
            exprs.push(inner);
        }
    }
    assert!(exprs.len() >= 10, "the dashboard queries {exprs:?}");
    exprs
        .into_iter()
        .map(|e| {
            e.replace("$__rate_interval", "5m")
                .replace("$instance", ".*")
        })
        .collect()
}

/// The `kmsd_*` series names an expression uses.
fn kmsd_series(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("kmsd_") {
        let start = i + at;
        let boundary = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        };
        let end = start
            + expr[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(expr.len() - start);
        // Label values such as job="kmsd" never start with kmsd_.
        if boundary {
            names.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[test]
fn dashboard_expressions_are_valid_promql() {
    // promtool parses every expression of a rules file: wrap the
    // dashboard's as recording rules.
    let exprs = dashboard_expressions();
    let dir = private_dir();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:expr{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
        assert!(
            !kmsd_series(expr).is_empty() || expr.starts_with("up{"),
            "a dashboard query uses no kmsd metric: {expr}"
        );
    }
    let file = dir.path().join("dashboard-rules.yaml");
    fs::write(&file, rules).unwrap();
    let ran = run(Command::new(tool("promtool"))
        .args(["check", "rules"])
        .arg(&file));
    assert!(
        ran.success,
        "a dashboard expression is not valid PromQL: {ran}"
    );
}

/// Series only a kmsd with a remote (Vault) backend creates.
const REMOTE_BACKEND_ONLY: &[&str] = &["kmsd_cache_lookups_total", "kmsd_cache_evictions_total"];

#[tokio::test]
async fn dashboard_and_alerts_query_only_metrics_kmsd_exports() {
    let port = free_port();
    let mut options = KmsdOptions::local();
    options.extra_toml =
        format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n[health]\nprobe_interval_secs = 1\n");
    let kmsd = Kmsd::start(options).await;
    // Series of label vectors appear once used: use the data plane, the
    // cache and the key admin.
    let client = kmsd.client().await;
    let context = ctx(&[("bucket", "b")]);
    let key = client.generate_data_key(None, &context).await.unwrap();
    for _ in 0..2 {
        client.decrypt(&key.blob, &context, None).await.unwrap();
    }
    client
        .admin()
        .clear_cache(proto::ClearCacheRequest {})
        .await
        .unwrap();
    client
        .key_admin()
        .describe_key(proto::DescribeKeyRequest {
            key_id: "missing".into(),
        })
        .await
        .unwrap_err();
    let http = AdminClient::new(port, "", "");
    let deadline = Instant::now() + Duration::from_secs(10);
    let exported = loop {
        let reply = http.send(http.unsigned("GET", "/metrics", "")).await;
        assert_eq!(reply.status, 200);
        let names: BTreeSet<String> = reply
            .text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
            .collect();
        // The key counts are gathered by a background task.
        if names.contains("kmsd_keys") || Instant::now() > deadline {
            break names;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let mut used = BTreeMap::new();
    for expr in dashboard_expressions() {
        for name in kmsd_series(&expr) {
            used.insert(name, "kmsd-dashboard.json");
        }
    }
    let rules = &yaml_documents(&prometheus_dir().join("kmsd-alerts.yaml"))[0];
    for rule in rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
    {
        for name in kmsd_series(str_at(rule, "/expr")) {
            used.insert(name, "kmsd-alerts.yaml");
        }
    }
    assert!(used.len() >= 15, "queried: {used:?}");
    // The data-key cache serves remote backends only (a local unwrap is
    // cheaper than a lookup), so a local kmsd never creates these series.
    // They must still be registered by kmsd, and the list must not outlive
    // the reason: once exported here, a name has to leave it.
    let metrics_source = fs::read_to_string(workspace_root().join("kmsd/src/metrics.rs")).unwrap();
    for name in REMOTE_BACKEND_ONLY {
        assert!(
            metrics_source.contains(&format!("\"{name}\"")),
            "{name} is not a metric of kmsd/src/metrics.rs"
        );
        assert!(
            !exported.contains(*name),
            "{name} is exported by a local kmsd now: drop it from REMOTE_BACKEND_ONLY"
        );
    }
    let missing: Vec<_> = used
        .iter()
        .filter(|(name, _)| {
            !exported.contains(name.as_str()) && !REMOTE_BACKEND_ONLY.contains(&name.as_str())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "queried but not exported by kmsd: {missing:?}\nexported: {exported:?}"
    );
}

// === sample configurations ===

/// A TOML file under deploy/ or a `*.toml` entry of a ConfigMap, with the
/// files next to it (same directory, or the same ConfigMap).
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    text: String,
    siblings: BTreeMap<String, String>,
}

impl Sample {
    fn from_file(path: &Path) -> Self {
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
    fn stage(&self) -> Staged {
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
struct Staged {
    root: tempfile::TempDir,
    config: PathBuf,
    env: Vec<(String, String)>,
    metrics: Option<u16>,
    socket: Option<PathBuf>,
}

impl Staged {
    fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .expect("the sample serves a unix socket")
    }

    async fn get(&self, path: &str) -> kmsd_tests::rest::Reply {
        let port = self.metrics.expect("the sample has a [metrics] listener");
        let http = AdminClient::new(port, "", "");
        http.send(http.unsigned("GET", path, "")).await
    }

    /// Where the process started by [`Self::spawn`] logs.
    fn log_path(&self) -> PathBuf {
        self.root.path().join("kmsd.log")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts `program args… serve --config <staged config>`, logging to a
    /// file.
    fn spawn(&self, program: &Path, args: &[&std::ffi::OsStr]) -> Guard {
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
    async fn wait_ready(&self, guard: &mut Guard) {
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

// === the backup procedure of docs/operations.md ===

/// Copies `from` into `to` recursively, keeping modes.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    fs::set_permissions(to, fs::metadata(from).unwrap().permissions()).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

#[tokio::test]
async fn the_documented_consistent_backup_restores() {
    let mut options = KmsdOptions::local();
    options.server_toml = "state_dir = \"{dir}/state\"".into();
    options.backend_toml = Some(
        "[backend]\nbackend_type = \"local\"\nkey_dir = \"{dir}/keys\"\ndefault_key_id = \"default\"\n[backend.sealing]\npassphrase_file = \"{dir}/passphrase\"\n".into(),
    );
    let probe = private_dir();
    // The harness picks the directory when it spawns: the first start fails
    // for want of the passphrase, which is then put in place.
    let mut kmsd = Kmsd::spawn_only(options);
    let passphrase = kmsd.dir().join("passphrase");
    fs::write(&passphrase, "correct horse battery staple\n").unwrap();
    fs::set_permissions(&passphrase, fs::Permissions::from_mode(0o600)).unwrap();
    kmsd.restart().await;
    let client = kmsd.client().await;
    let context = ctx(&[("bucket", "photos")]);
    let before = client.generate_data_key(None, &context).await.unwrap();
    client
        .key_admin()
        .rotate_key(proto::RotateKeyRequest {
            key_id: "default".into(),
        })
        .await
        .unwrap();
    let after = client.generate_data_key(None, &context).await.unwrap();

    // While kmsd serves, the directory is locked; `kmsd admin stop`
    // releases it, so `flock --nonblock` (here: try_lock) proves the copy
    // is consistent.
    let lock = fs::File::open(kmsd.dir().join("keys/.kmsd.lock")).unwrap();
    assert!(
        lock.try_lock().is_err(),
        "kmsd holds the key directory's lock"
    );
    client.admin().stop(proto::StopRequest {}).await.unwrap();
    lock.try_lock().expect("admin stop releases the lock");
    let backup = probe.path().join("backup");
    copy_tree(&kmsd.dir().join("keys"), &backup.join("keys"));
    copy_tree(&kmsd.dir().join("state"), &backup.join("state"));
    lock.unlock().unwrap();
    client.admin().start(proto::StartRequest {}).await.unwrap();
    drop(client);

    // Disaster: the key directory is lost. Restore to the same paths.
    kmsd.kill9();
    fs::remove_dir_all(kmsd.dir().join("keys")).unwrap();
    fs::remove_dir_all(kmsd.dir().join("state")).unwrap();
    copy_tree(&backup.join("keys"), &kmsd.dir().join("keys"));
    copy_tree(&backup.join("state"), &kmsd.dir().join("state"));
    kmsd.respawn();
    kmsd.wait_ready().await;
    let client = kmsd.client().await;
    // The copy was taken while Stopped, and says so (as documented).
    let status = client
        .admin()
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.state, proto::ServiceState::Stopped as i32);
    client.admin().start(proto::StartRequest {}).await.unwrap();
    for key in [&before, &after] {
        let opened = client.decrypt(&key.blob, &context, None).await.unwrap();
        assert_eq!(
            opened.plaintext.expose_secret(),
            key.key.expose_secret().as_slice(),
            "a blob from before the backup opens from the restored copy"
        );
    }
}
