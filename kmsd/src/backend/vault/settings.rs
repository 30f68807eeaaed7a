//! The vault backend's configuration: the `[backend]` table as written (the
//! field names of the RustFS configure JSON) and the validated form the
//! backend is built from.
//!
//! Secrets (a token, an AppRole secret id) may be written inline, as the
//! seed's JSON does, but the intended form names a file or an environment
//! variable; either way they live in [`SecretString`]s, whose `Debug` never
//! shows them. Files and variables are read when the backend is built (and
//! re-read on every AppRole login or token reload), never here.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use kms_core::SecretString;
use reqwest::Url;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use self::paths::{mount, parse_address, vault_path};
pub use self::{
    auth::read_secret,
    intermediate::{IntermediateKeySettings, RawIntermediateKey},
};
use crate::{config::ConfigError, key_id::KeyId};

/// `timeout_seconds` when unset: the deadline of one Vault operation,
/// retries included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// `attempt_timeout_ms` when unset: the deadline of one attempt. A Vault
/// that does not answer within it is given up on (and, with other attempts
/// in flight, the circuit breaker opens), whatever the caller's deadline.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// `hedge_after_ms` when unset. With several addresses, a Transit crypto
/// call the first node has not answered after this long is also sent to
/// the next node, and the first answer wins: a frozen active node (or a
/// standby forwarding to one) then costs this, not `attempt_timeout_ms`.
/// Far above a healthy Transit call (a few milliseconds, tens under heavy
/// load), so a healthy cluster sees almost no duplicates.
pub const DEFAULT_HEDGE_AFTER: Duration = Duration::from_millis(250);
/// `cache_ttl_seconds` when unset: how long key metadata read from Vault is
/// used before it is read again, which bounds how long a key disabled
/// through another kmsd keeps working here (docs/vault.md, "The metadata
/// cache").
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(5);
/// `max_cached_keys` when unset.
pub const DEFAULT_MAX_CACHED_KEYS: usize = 1000;

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

/// The validated vault settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultSettings {
    /// Vault's addresses (scheme, host, port, optional path): one, or
    /// the nodes of an HA cluster. Never empty.
    pub addresses: Vec<Url>,
    /// Sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// The Transit mount.
    pub transit_mount: String,
    /// The KV v2 mount.
    pub kv_mount: String,
    /// The KV folder of key records.
    pub key_path_prefix: String,
    /// How kmsd authenticates.
    pub auth: AuthSettings,
    /// TLS towards Vault.
    pub tls: TlsSettings,
    /// Deadline of one Vault operation, retries included.
    pub timeout: Duration,
    /// Deadline of one attempt.
    pub attempt_timeout: Duration,
    /// When a Transit crypto call is also sent to the next node (`None`:
    /// never; always `None` with one address).
    pub hedge_after: Option<Duration>,
    /// Retries of idempotent calls.
    pub retry: RetryPolicy,
    /// The metadata cache.
    pub cache_ttl: Duration,
    /// Its bound.
    pub max_cached_keys: usize,
    /// Intermediate-key caching, when on.
    pub intermediate_key: Option<IntermediateKeySettings>,
}

/// How kmsd authenticates to Vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSettings {
    /// A token given to kmsd (renewed while renewable; re-read from its
    /// file or variable when Vault rejects it).
    Token(SecretSource),
    /// AppRole login (renewed, and logged in again when renewal ends).
    AppRole {
        /// The auth mount.
        mount: String,
        /// The role id.
        role_id: SecretSource,
        /// The secret id.
        secret_id: SecretSource,
    },
}

impl AuthSettings {
    /// A description without secrets, for status and logs.
    pub fn describe(&self) -> String {
        match self {
            AuthSettings::Token(source) => format!("token ({})", source.describe()),
            AuthSettings::AppRole {
                mount, secret_id, ..
            } => format!(
                "approle (mount {mount}, secret id {})",
                secret_id.describe()
            ),
        }
    }
}

/// Where a secret comes from.
pub enum SecretSource {
    /// Written in the config.
    Inline(SecretString),
    /// A file (trailing newline ignored).
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

/// Cloned with the settings; an inline secret through the explicit
/// [`SecretString::clone_secret`].
impl Clone for SecretSource {
    fn clone(&self) -> Self {
        match self {
            SecretSource::Inline(secret) => SecretSource::Inline(secret.clone_secret()),
            SecretSource::File(path) => SecretSource::File(path.clone()),
            SecretSource::Env(name) => SecretSource::Env(name.clone()),
        }
    }
}

impl SecretSource {
    /// Where the secret comes from, never the secret itself.
    pub fn describe(&self) -> String {
        match self {
            SecretSource::Inline(_) => "inline in the config".into(),
            SecretSource::File(path) => format!("file {}", path.display()),
            SecretSource::Env(var) => format!("environment variable {var}"),
        }
    }
}

impl PartialEq for SecretSource {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (SecretSource::Inline(a), SecretSource::Inline(b)) => {
                a.expose_secret() == b.expose_secret()
            }
            (SecretSource::File(a), SecretSource::File(b)) => a == b,
            (SecretSource::Env(a), SecretSource::Env(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for SecretSource {}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// Trust only the CAs of this bundle.
    pub ca_cert_path: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// Accept any certificate.
    pub danger_skip_verify: bool,
}

/// Retries with exponential backoff and full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub attempts: u32,
    /// The first backoff ceiling.
    pub initial_backoff: Duration,
    /// The largest backoff ceiling.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// What `[backend]` validates to, besides the settings.
#[derive(Debug)]
pub struct ValidatedVault {
    /// The default key.
    pub default_key_id: Option<KeyId>,
    /// Whether to create it.
    pub create_default_key: bool,
    /// The rest.
    pub settings: VaultSettings,
}

pub(super) fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

impl RawVaultConfig {
    /// Validates the table.
    pub fn validate(self) -> Result<ValidatedVault, ConfigError> {
        let allow_http = self.danger_allow_http.unwrap_or(false);
        let addresses = self
            .address
            .iter()
            .map(|a| parse_address(a, allow_http))
            .collect::<Result<Vec<_>, _>>()?;
        if addresses.is_empty() {
            return Err(invalid("backend.address: the list names no address"));
        }
        let mut seen = std::collections::HashSet::new();
        if !addresses.iter().all(|a| seen.insert(a.as_str())) {
            return Err(invalid("backend.address: an address is listed twice"));
        }
        let namespace = self
            .namespace
            .map(|ns| vault_path("backend.namespace", &ns))
            .transpose()?
            .filter(|ns| !ns.is_empty());
        let transit_mount = mount("backend.mount_path", self.mount_path, "transit")?;
        let kv_mount = mount("backend.kv_mount", self.kv_mount, "secret")?;
        let key_path_prefix = mount(
            "backend.key_path_prefix",
            self.key_path_prefix,
            "rustfs/kms/keys",
        )?;
        let default_key_id = self
            .default_key_id
            .as_deref()
            .map(|id| crate::config::default_key_id("backend.default_key_id", id))
            .transpose()?;
        let tls = self.tls.unwrap_or_default();
        let client_identity = match (tls.client_cert_path, tls.client_key_path) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "backend.tls: client_cert_path and client_key_path go together",
                ));
            }
        };
        let timeout =
            Duration::from_secs(self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT.as_secs()));
        if timeout.is_zero() || timeout > Duration::from_secs(300) {
            return Err(invalid("backend.timeout_seconds must be between 1 and 300"));
        }
        let attempt_timeout = self
            .attempt_timeout_ms
            .map_or(DEFAULT_ATTEMPT_TIMEOUT, Duration::from_millis)
            .min(timeout);
        if attempt_timeout < Duration::from_millis(50) {
            return Err(invalid("backend.attempt_timeout_ms must be at least 50"));
        }
        let hedge_after = match self.hedge_after_ms {
            Some(0) => None,
            Some(ms) if ms < 10 || Duration::from_millis(ms) >= attempt_timeout => {
                return Err(invalid(
                    "backend.hedge_after_ms must be 0 (off) or at least 10 and below attempt_timeout_ms",
                ));
            }
            ms => Some(ms.map_or(DEFAULT_HEDGE_AFTER, Duration::from_millis)),
        }
        .filter(|_| addresses.len() > 1);
        let defaults = RetryPolicy::default();
        let retry = RetryPolicy {
            attempts: self.retry_attempts.unwrap_or(defaults.attempts),
            initial_backoff: self
                .retry_initial_backoff_ms
                .map_or(defaults.initial_backoff, Duration::from_millis),
            max_backoff: self
                .retry_max_backoff_ms
                .map_or(defaults.max_backoff, Duration::from_millis),
        };
        if retry.attempts > 10
            || retry.initial_backoff.is_zero()
            || retry.max_backoff < retry.initial_backoff
        {
            return Err(invalid(
                "backend.retry_attempts must be at most 10, and 0 < retry_initial_backoff_ms <= retry_max_backoff_ms",
            ));
        }
        let cache_ttl = self
            .cache_ttl_seconds
            .map_or(DEFAULT_CACHE_TTL, Duration::from_secs);
        if cache_ttl > Duration::from_secs(3600) {
            return Err(invalid("backend.cache_ttl_seconds must be at most 3600"));
        }
        let max_cached_keys = self.max_cached_keys.unwrap_or(DEFAULT_MAX_CACHED_KEYS);
        if max_cached_keys == 0 {
            return Err(invalid("backend.max_cached_keys must be at least 1"));
        }
        let intermediate_key = self
            .intermediate_key
            .as_ref()
            .map(RawIntermediateKey::validate)
            .transpose()?
            .flatten();
        Ok(ValidatedVault {
            default_key_id,
            create_default_key: self.create_default_key.unwrap_or(true),
            settings: VaultSettings {
                addresses,
                namespace,
                transit_mount,
                kv_mount,
                key_path_prefix,
                auth: self.auth_method.validate()?,
                tls: TlsSettings {
                    ca_cert_path: tls.ca_cert_path,
                    client_identity,
                    danger_skip_verify: tls.danger_skip_tls_verify.unwrap_or(false),
                },
                timeout,
                attempt_timeout,
                hedge_after,
                retry,
                cache_ttl,
                max_cached_keys,
                intermediate_key,
            },
        })
    }
}

mod auth;
mod intermediate;
mod paths;
#[cfg(test)]
mod tests;
