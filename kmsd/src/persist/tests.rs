use std::os::unix::fs::PermissionsExt;

use kms_core::SecretBytes;

use super::*;
use crate::persist::DesiredState;

const TOKEN: &str = "hvs.inline-token-7f3a9c";
const SECRET_ID: &str = "approle-secret-id-51d0e2";

fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn key(byte: u8) -> SealingSecret {
    SealingSecret::KeyFile(SecretBytes::new(vec![byte; 32]))
}

fn runtime(previous: Vec<BackendConfig>) -> PersistedRuntime {
    let vault = BackendConfig::from_json(&format!(
        r#"{{"backend_type": "vault", "address": "https://v:8200", "auth_method": {{"approle": {{"role_id": "r", "secret_id": "{SECRET_ID}"}}}}}}"#
    ))
    .unwrap();
    PersistedRuntime {
        format: 1,
        state: DesiredState::Running,
        backend: vault,
        previous_backends: previous,
    }
}

fn token_backend() -> BackendConfig {
    BackendConfig::from_json(&format!(
        r#"{{"backend_type": "vault", "address": "https://v:8200", "auth_method": {{"token": "{TOKEN}"}}}}"#
    ))
    .unwrap()
}

fn every_file(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(every_file(&path));
        } else {
            all.extend(std::fs::read(path).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn inline_secrets_are_sealed_and_come_back() {
    let dir = private_dir();
    let store = RuntimeStore::open(dir.path(), Some(&key(7))).unwrap();
    store.save(&runtime(vec![token_backend()])).unwrap();
    let on_disk = every_file(dir.path());
    assert!(!contains(&on_disk, TOKEN) && !contains(&on_disk, SECRET_ID));
    assert!(contains(&on_disk, "\"sealed\""));

    let reopened = RuntimeStore::open(dir.path(), Some(&key(7))).unwrap();
    let loaded = reopened.load().unwrap().unwrap();
    assert_eq!(loaded.format, 2);
    let BackendConfig::Vault(vault) = &loaded.backend else {
        panic!("not vault")
    };
    let secret_id = &vault.auth_method.approle.as_ref().unwrap().secret_id;
    assert_eq!(secret_id.as_ref().unwrap().0.expose_secret(), SECRET_ID);
    let BackendConfig::Vault(previous) = &loaded.previous_backends[0] else {
        panic!("not vault")
    };
    assert_eq!(
        previous
            .auth_method
            .token
            .as_ref()
            .unwrap()
            .0
            .expose_secret(),
        TOKEN
    );
}

#[test]
fn a_wrong_or_missing_sealing_secret_is_refused() {
    let dir = private_dir();
    RuntimeStore::open(dir.path(), Some(&key(7)))
        .unwrap()
        .save(&runtime(Vec::new()))
        .unwrap();
    assert!(RuntimeStore::open(dir.path(), Some(&key(8))).is_err());
    let unsealed = RuntimeStore::open(dir.path(), None).unwrap();
    let err = unsealed.load().unwrap_err().to_string();
    assert!(err.contains("state_sealing"), "{err}");
}

#[test]
fn without_sealing_an_inline_secret_is_never_written() {
    let dir = private_dir();
    let store = RuntimeStore::open(dir.path(), None).unwrap();
    let err = store.check_persistable(&token_backend()).unwrap_err();
    assert!(
        err.to_string().contains("backend.auth_method.token"),
        "{err}"
    );
    assert!(store.save(&runtime(Vec::new())).is_err());
    assert!(!contains(&every_file(dir.path()), SECRET_ID));
    let local = BackendConfig::from_json(r#"{"backend_type": "local", "key_dir": "/k"}"#).unwrap();
    store.check_persistable(&local).unwrap();
}

#[test]
fn legacy_clear_secret_files_are_sealed_and_removed() {
    let dir = private_dir();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let legacy = secrets.join("secret-0011223344556677");
    std::fs::write(&legacy, TOKEN).unwrap();
    std::fs::write(
        dir.path().join("runtime.json"),
        format!(
            r#"{{"format": 1, "state": "Running", "backend": {{"backend_type": "vault", "address": "https://v", "auth_method": {{"token_file": "{}"}}}}}}"#,
            legacy.display()
        ),
    )
    .unwrap();
    let store = RuntimeStore::open(dir.path(), Some(&key(1))).unwrap();
    let loaded = store.load().unwrap().unwrap();
    let BackendConfig::Vault(vault) = &loaded.backend else {
        panic!("not vault")
    };
    assert_eq!(
        vault.auth_method.token.as_ref().unwrap().0.expose_secret(),
        TOKEN
    );
    assert!(!legacy.exists());
    assert!(!contains(&every_file(dir.path()), TOKEN));
}
