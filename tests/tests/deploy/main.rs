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

use kmsd_tests::workspace_root;
use serde_json::Value;
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

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

mod backup;
mod container;
mod kubernetes;
mod prometheus;
mod samples;
mod systemd;

use self::{
    samples::Sample,
    systemd::{Guard, signal},
};
