//! The `[backend]` table as written: the field names of the RustFS
//! configure JSON, before validation (see the parent module).

use std::{fmt, path::PathBuf};

use kms_core::SecretString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::RawIntermediateKey;

/// `[backend]` with `backend_type = "vault"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawVaultConfig {
    /// `https://vault.example.com:8200`, or the list of an HA cluster's
    /// nodes (`["https://v1:8200", "https://v2:8200", "https://v3:8200"]`).
    pub address: RawAddresses,
    /// How kmsd authenticates.
    pub auth_method: RawAuthMethod,
    /// Vault Enterprise / OpenBao namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Where the Transit engine is mounted (default `transit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    /// Where the KV v2 engine holding key metadata is mounted (default
    /// `secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_mount: Option<String>,
    /// The KV folder of key records (default `rustfs/kms/keys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path_prefix: Option<String>,
    /// The key used when a request names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_key_id: Option<String>,
    /// Create the default key at startup if it does not exist (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_default_key: Option<bool>,
    /// TLS towards Vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawTls>,
    /// Deadline of one Vault operation, retries included (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Deadline of one attempt, in milliseconds (default 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_timeout_ms: Option<u64>,
    /// With several addresses: send a Transit crypto call also to the next
    /// node when the first has not answered after this many milliseconds
    /// (default 250; 0 turns it off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge_after_ms: Option<u64>,
    /// Retries after the first attempt, for idempotent calls (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_attempts: Option<u32>,
    /// First backoff before a retry, in milliseconds (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_initial_backoff_ms: Option<u64>,
    /// Largest backoff before a retry, in milliseconds (default 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_max_backoff_ms: Option<u64>,
    /// How long key metadata is used before it is read again, in seconds
    /// (default 5): the bound of a change made through another kmsd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_ttl_seconds: Option<u64>,
    /// How many keys' metadata is cached at most (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cached_keys: Option<usize>,
    /// Allow `http://` to a host other than loopback: tokens would cross
    /// the network in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub danger_allow_http: Option<bool>,
    /// Intermediate-key caching (off by default; docs/vault.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_key: Option<RawIntermediateKey>,
}

/// `address`: one URL (the RustFS configure body's form) or a list of the
/// nodes of one Vault/OpenBao HA cluster.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum RawAddresses {
    /// One address.
    One(String),
    /// Several nodes of one cluster, in the order of preference.
    Many(Vec<String>),
}

impl RawAddresses {
    /// Every address, as written.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many): (Option<&String>, &[String]) = match self {
            RawAddresses::One(a) => (Some(a), &[]),
            RawAddresses::Many(list) => (None, list),
        };
        one.into_iter().chain(many).map(String::as_str)
    }
}

impl From<&str> for RawAddresses {
    fn from(address: &str) -> Self {
        RawAddresses::One(address.to_owned())
    }
}

/// `auth_method`: exactly one of its fields.
///
/// `{"token": "s.XYZ"}` is the seed's form; `token_file`, `token_env` and
/// the `approle` table keep the secret out of the config file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthMethod {
    /// A token, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<RawSecret>,
    /// A file holding the token (e.g. written by Vault Agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// An environment variable holding the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// AppRole login.
    #[serde(alias = "AppRole")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approle: Option<RawAppRole>,
}

/// `auth_method.approle`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAppRole {
    /// Where the AppRole auth method is mounted (default `approle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    /// The role id, inline (it is an identifier, not a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_id: Option<String>,
    /// A file holding the role id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_id_file: Option<PathBuf>,
    /// The secret id, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id: Option<RawSecret>,
    /// A file holding the secret id (re-read at every login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id_file: Option<PathBuf>,
    /// An environment variable holding the secret id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id_env: Option<String>,
}

/// `tls`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM bundle of the CAs that may sign Vault's certificate; when set,
    /// only these are trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_path: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_path: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_path: Option<PathBuf>,
    /// Accept any server certificate. Never in production: anyone on the
    /// path can then read every token and data key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub danger_skip_tls_verify: Option<bool>,
}

impl RawVaultConfig {
    /// Every file the configuration reads a secret from.
    pub fn secret_files(&self) -> Vec<PathBuf> {
        let auth = &self.auth_method;
        auth.token_file
            .iter()
            .chain(auth.approle.iter().flat_map(|a| a.secret_id_file.iter()))
            .cloned()
            .collect()
    }
}

/// A secret written inline in the config; redacted from `Debug`.
pub struct RawSecret(pub SecretString);

/// The configuration is cloned as a whole; its secrets are copied through
/// the explicit [`SecretString::clone_secret`], still wiped on drop.
impl Clone for RawSecret {
    fn clone(&self) -> Self {
        Self(self.0.clone_secret())
    }
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| RawSecret(SecretString::new(s)))
    }
}

/// An inline secret is never serialised in the clear: `persist.rs` takes
/// inline secrets out and seals them before it writes the runtime state,
/// so reaching this is a bug, and it fails rather than leak.
impl Serialize for RawSecret {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "an inline Vault secret (token or secret_id) is only ever written sealed",
        ))
    }
}

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret elided]")
    }
}
