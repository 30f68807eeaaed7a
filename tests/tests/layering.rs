//! The workspace's dependency rules, checked by reading `use` lines
//! (issue 17; README.md, "Repository"):
//!
//! - kms-core depends on neither kms-client nor kmsd;
//! - kmsd's library takes its own types from kms-core, not kms-client:
//!   only the operator CLI (`cli/`) and `kmsd bench` (`bench/`), which are
//!   clients of a kmsd, and tests may name kms-client;
//! - `backend/` never reaches up into `service/`, `grpc/`, `http/`,
//!   `daemon/` or `cli/`, and the configuration (`config.rs`, `config/`)
//!   sits below all of those too;
//! - inside `backend/vault/`, each layer imports only the ones below it
//!   (transport → authenticated client → Transit/KV → keys → backend).
//!
//! A rule that breaks fails here with the file and line of every offence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    fs,
    path::{Path, PathBuf},
};

use kmsd_tests::workspace_root;

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A test module (`tests.rs`, or anything under a `tests/` directory):
/// tests are clients too and may use kms-client.
fn is_test_file(relative: &Path) -> bool {
    relative
        .components()
        .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "tests.rs")
}

/// The lines of `path` with `//` comments removed, numbered from 1.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let code = match line.find("//") {
                Some(at) => &line[..at],
                None => line,
            };
            (i + 1, code.to_owned())
        })
        .collect()
}

/// The first-level modules of `crate::` that `path` names, with the line
/// where each is named: in paths (`crate::service::Kms`) and in grouped
/// imports (`use crate::{audit::X, service::Y}`).
fn crate_modules(path: &Path) -> Vec<(usize, String)> {
    names_after(path, "crate::")
}

/// The first names after `prefix` (`crate::`, `super::`) in `path`, in
/// paths and in grouped imports, with their lines.
fn names_after(path: &Path, prefix: &str) -> Vec<(usize, String)> {
    let grouped = format!("{prefix}{{");
    let lines = code_lines(path);
    let mut found = Vec::new();
    for (number, line) in &lines {
        let mut rest = line.as_str();
        while let Some(at) = rest.find(prefix) {
            let before = &rest[..at];
            rest = &rest[at + prefix.len()..];
            // `kms_core::crate::` cannot occur; `$crate::` is a macro's.
            if before.ends_with('$') || before.ends_with(|c: char| c.is_alphanumeric() || c == '_')
            {
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((*number, name));
            }
        }
    }
    // Grouped imports: `use crate::{` up to the matching `}`, maybe over
    // several lines.
    let joined: Vec<(usize, char)> = lines
        .iter()
        .flat_map(|(n, l)| l.chars().chain(['\n']).map(move |c| (*n, c)))
        .collect();
    let text: String = joined.iter().map(|(_, c)| c).collect();
    let mut search = 0;
    while let Some(at) = text[search..].find(&grouped) {
        let start = search + at + grouped.len();
        let mut depth = 1;
        let mut item = String::new();
        let mut item_line = 0;
        let mut top_level = true;
        for (offset, c) in text[start..].char_indices() {
            let line = joined[text[..start + offset].chars().count()].0;
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                // A bare name ends at the comma or brace after it
                // (`use super::{VaultBackend, kv}`).
                ',' if depth == 1 => {
                    if !item.is_empty() {
                        found.push((item_line, std::mem::take(&mut item)));
                    }
                    top_level = true;
                    continue;
                }
                _ => {}
            }
            if depth == 0 {
                if !item.is_empty() {
                    found.push((item_line, std::mem::take(&mut item)));
                }
                break;
            }
            if depth == 1 && top_level {
                if c.is_alphanumeric() || c == '_' {
                    if item.is_empty() {
                        item_line = line;
                    }
                    item.push(c);
                } else if !item.is_empty() {
                    found.push((item_line, std::mem::take(&mut item)));
                    top_level = false;
                }
            }
        }
        search = start;
    }
    found
}

fn relative<'a>(path: &'a Path, root: &Path) -> &'a Path {
    path.strip_prefix(root).unwrap_or(path)
}

#[test]
fn dependencies_point_one_way() {
    let root = workspace_root();
    let mut offences = Vec::new();

    // kms-core: the bottom of the workspace.
    let manifest = fs::read_to_string(root.join("kms-core/Cargo.toml")).expect("kms-core manifest");
    for crate_name in ["kms-client", "kmsd", "kms-proto"] {
        if manifest
            .lines()
            .any(|l| l.trim_start().starts_with(crate_name) && l.contains('='))
        {
            offences.push(format!("kms-core/Cargo.toml depends on {crate_name}"));
        }
    }
    let core = root.join("kms-core/src");
    for file in rust_files(&core) {
        for (number, line) in code_lines(&file) {
            for name in ["kms_client", "kmsd::", "kms_proto"] {
                if line.contains(name) {
                    offences.push(format!(
                        "{}:{number} names {name}",
                        relative(&file, &root).display()
                    ));
                }
            }
        }
    }

    // kmsd's library: kms-client only in the CLI, the bench and tests.
    let kmsd = root.join("kmsd/src");
    for file in rust_files(&kmsd) {
        let inside = relative(&file, &kmsd);
        if inside.starts_with("cli") || inside.starts_with("bench") || is_test_file(inside) {
            continue;
        }
        for (number, line) in code_lines(&file) {
            if line.contains("kms_client") {
                offences.push(format!(
                    "{}:{number} uses kms_client; take the type from kms_core",
                    relative(&file, &root).display()
                ));
            }
        }
    }

    // Layers inside kmsd: the backends and the configuration sit below
    // the service, the front ends, the daemon and the CLI.
    let upper = ["service", "grpc", "http", "daemon", "cli"];
    for file in rust_files(&kmsd) {
        let inside = relative(&file, &kmsd);
        let lower = inside.starts_with("backend")
            || inside.starts_with("config")
            || inside == Path::new("config.rs");
        if !lower || is_test_file(inside) {
            continue;
        }
        for (number, module) in crate_modules(&file) {
            if upper.contains(&module.as_str()) {
                offences.push(format!(
                    "{}:{number} reaches up into crate::{module}",
                    relative(&file, &root).display()
                ));
            }
        }
    }

    offences.extend(vault_layer_offences(&kmsd.join("backend/vault")));

    assert!(
        offences.is_empty(),
        "dependency rules broken:\n{}",
        offences.join("\n")
    );
}

/// The Vault backend's modules from the bottom up (`backend/vault/mod.rs`
/// describes the layers): each may import only modules listed before it.
/// The backend itself (`mod.rs`, `connect`, `update`: `VaultBackend`)
/// sits on top and may import any of them.
const VAULT_LAYERS: &[&str] = &[
    // configuration and errors
    "error",
    "settings",
    // transport
    "request",
    "nodes",
    "transport",
    "sender",
    // authenticated client
    "auth",
    "client",
    // endpoints
    "batch",
    "cache",
    "kv",
    "aliases",
    "usage",
    "transit",
    "byok",
    "intermediate",
    // keys
    "metadata",
    "wrap",
    "sweep",
    "summary",
];
/// What the backend layer is made of: anything naming these reaches up.
const VAULT_BACKEND: &[&str] = &["VaultBackend", "connect", "update", "rotation", "TaskGuard"];

/// Every `super::` import of a lower Vault module that names a module at
/// its own level or above, or the backend.
fn vault_layer_offences(vault: &Path) -> Vec<String> {
    let root = workspace_root();
    let mut offences = Vec::new();
    for (rank, module) in VAULT_LAYERS.iter().enumerate() {
        // Submodules (settings/) name their parent's items through
        // `super::`; their own imports stay inside settings.
        let file = vault.join(format!("{module}.rs"));
        assert!(file.exists(), "{} is listed but missing", file.display());
        for (number, name) in names_after(&file, "super::") {
            let reaches_up = VAULT_BACKEND.contains(&name.as_str())
                || VAULT_LAYERS[rank..].contains(&name.as_str()) && name != *module;
            if reaches_up {
                offences.push(format!(
                    "{}:{number} ({module}) imports super::{name}, which is not below it",
                    relative(&file, &root).display()
                ));
            }
        }
    }
    // Every Vault module is placed: a new one must be given a layer.
    for file in rust_files(vault) {
        let inside = relative(&file, vault);
        if inside.components().count() != 1 || inside == Path::new("mod.rs") {
            continue;
        }
        let name = inside.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if !VAULT_LAYERS.contains(&name) && !VAULT_BACKEND.contains(&name) {
            offences.push(format!(
                "{} has no place in VAULT_LAYERS (tests/tests/layering.rs)",
                relative(&file, &root).display()
            ));
        }
    }
    offences
}

/// The Vault rule catches a lower module importing a higher one, or the
/// backend.
#[test]
fn the_vault_rule_sees_a_lower_layer_reaching_up() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for module in VAULT_LAYERS {
        fs::write(dir.path().join(format!("{module}.rs")), "").expect("write");
    }
    fs::write(
        dir.path().join("transport.rs"),
        "use super::{error::VaultError, nodes::Nodes};\n",
    )
    .expect("write");
    assert!(vault_layer_offences(dir.path()).is_empty());
    fs::write(
        dir.path().join("kv.rs"),
        "use super::{VaultBackend, client::VaultClient};\nfn f(_: super::metadata::Keys) {}\n",
    )
    .expect("write");
    fs::write(
        dir.path().join("cache.rs"),
        "use super::{REVALIDATE_AFTER, VaultBackend, wrap};\n",
    )
    .expect("write");
    let offences = vault_layer_offences(dir.path());
    assert_eq!(offences.len(), 4, "{offences:?}");
    for name in [
        "(kv) imports super::VaultBackend",
        "(kv) imports super::metadata",
        "(cache) imports super::VaultBackend",
        "(cache) imports super::wrap",
    ] {
        assert!(offences.iter().any(|o| o.contains(name)), "{offences:?}");
    }
}

/// The checker itself finds what it looks for, in both forms of import.
#[test]
fn the_checker_sees_paths_and_grouped_imports() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("sample.rs");
    fs::write(
        &file,
        "use crate::{\n    audit::Audit,\n    service::{Kms, ServiceOptions},\n};\n\
         // crate::grpc in a comment does not count\n\
         fn f() -> crate::http::Router { todo!() }\n\
         macro_rules! m { () => { $crate::cli::x() } }\n",
    )
    .expect("write sample");
    let mut modules = crate_modules(&file);
    modules.sort();
    assert_eq!(
        modules,
        [
            (2, "audit".to_owned()),
            (3, "service".to_owned()),
            (6, "http".to_owned())
        ]
    );
}
