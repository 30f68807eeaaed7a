//! The vault backend against real OpenBao servers (no mocks): each test
//! starts its own through [`kmsd_openbao_testkit::OpenBao`].

mod admin;
mod auth;
mod data_plane;
mod faults;
mod intermediate;
mod nodes;
mod rotation;
mod secrets;
mod shared;

use std::{collections::BTreeMap, sync::Arc};

use kmsd_openbao_testkit::OpenBao;
use time::OffsetDateTime;

use super::VaultBackend;
use crate::{
    backend::{Backend, GeneratedKey, KeyBackend, KeyMetadata, NewKey, Opened},
    blob,
    clock::ManualClock,
    config::{BackendKindSettings, Config, RawConfig},
    context::EncryptionContext,
    daemon::{self, RunningDaemon},
    error::KmsError,
    key_id::KeyId,
    request::{Operation, RequestContext},
};

/// kmsd's own identity: allowed every operation.
fn cx() -> RequestContext {
    RequestContext::internal()
}

fn id(s: &str) -> KeyId {
    KeyId::parse(s).unwrap()
}

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    EncryptionContext::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .unwrap()
}

fn clock() -> ManualClock {
    ManualClock::new(OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap())
}

/// `[auth_method] token = ...`.
fn token_auth(token: &str) -> String {
    format!("[backend.auth_method]\ntoken = \"{token}\"\n")
}

/// A kmsd config: TCP on a free loopback port, the vault backend at
/// `bao` with default key `default`, `extra` backend fields, then `auth`.
fn config(bao: &OpenBao, auth: &str, extra: &str) -> Config {
    let text = format!(
        "[server]\ntcp = \"127.0.0.1:0\"\ndanger_plaintext_tcp = true\n[audit]\noutput = \"off\"\n[backend]\nbackend_type = \"vault\"\naddress = \"{}\"\ndefault_key_id = \"default\"\n{extra}\n{auth}",
        bao.address()
    );
    let raw: RawConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Config::from_raw(raw).unwrap()
}

/// The backend alone (no default key is created).
async fn backend(bao: &OpenBao, auth: &str, extra: &str, clock: &ManualClock) -> VaultBackend {
    try_backend(bao, auth, extra, clock).await.unwrap()
}

async fn try_backend(
    bao: &OpenBao,
    auth: &str,
    extra: &str,
    clock: &ManualClock,
) -> Result<VaultBackend, super::VaultBuildError> {
    let settings = match config(bao, auth, extra).backend.unwrap().kind {
        BackendKindSettings::Vault(settings) => *settings,
        other => panic!("not vault: {other:?}"),
    };
    VaultBackend::connect(settings, Arc::new(clock.clone())).await
}

/// The whole daemon, in process.
async fn start_daemon(
    bao: &OpenBao,
    auth: &str,
    extra: &str,
    clock: &ManualClock,
) -> RunningDaemon {
    daemon::start(config(bao, auth, extra), Arc::new(clock.clone()))
        .await
        .unwrap()
}

/// The daemon's vault backend.
fn vault_of(daemon: &RunningDaemon) -> Arc<crate::lifecycle::Active> {
    let active = daemon.kms.runtime().active.clone().unwrap();
    assert!(matches!(*active.backend, Backend::Vault(_)));
    active
}

async fn create(backend: &impl KeyBackend, key: &str) -> KeyMetadata {
    backend
        .create_key(NewKey {
            key_id: id(key),
            description: format!("test key {key}"),
            tags: BTreeMap::from([("team".to_owned(), "storage".to_owned())]),
        })
        .await
        .unwrap()
}

async fn open(
    backend: &impl KeyBackend,
    sealed: &[u8],
    context: &EncryptionContext,
) -> Result<Opened, KmsError> {
    let parsed = blob::parse(sealed)?;
    backend.decrypt(&parsed, context).await
}

/// Opens `generated`'s blob and checks that it gives back its data key.
async fn opens_to_its_key(
    backend: &impl KeyBackend,
    generated: &GeneratedKey,
    context: &EncryptionContext,
) -> Opened {
    let opened = open(backend, &generated.sealed.blob, context)
        .await
        .unwrap();
    assert_eq!(
        opened.plaintext.expose_secret(),
        generated.key.expose_secret()
    );
    opened
}

/// A data key's blob, generated under `key`.
async fn generated_blob(
    backend: &impl KeyBackend,
    key: &str,
    context: &EncryptionContext,
) -> Vec<u8> {
    backend
        .generate_data_key(&id(key), context)
        .await
        .unwrap()
        .sealed
        .blob
}

/// `n` data keys generated under `key` at once; every one must succeed.
async fn generate_concurrently(backend: &Arc<VaultBackend>, key: &str, n: usize) {
    let context = ctx(&[]);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let backend = Arc::clone(backend);
        let context = context.clone();
        let key = id(key);
        tasks.spawn(async move { backend.generate_data_key(&key, &context).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
}

/// The Transit ciphertext of a vault blob.
fn payload(sealed: &[u8]) -> String {
    let parsed = blob::parse(sealed).unwrap();
    String::from_utf8(parsed.payload.to_vec()).unwrap()
}
