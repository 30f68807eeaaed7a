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

use self::paths::{mount, parse_address, vault_path};
pub use self::{
    auth::read_secret,
    intermediate::{IntermediateKeySettings, RawIntermediateKey},
    raw::{RawAddresses, RawAppRole, RawAuthMethod, RawSecret, RawTls, RawVaultConfig},
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
mod raw;
#[cfg(test)]
mod tests;
