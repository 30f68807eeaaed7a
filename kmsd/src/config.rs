//! Configuration: the TOML file's raw shape, and the validated form the
//! daemon runs on. Parsing happens once, in [`Config::from_raw`]; nothing
//! downstream re-checks a field.
//!
//! Secrets are never written into the file itself: the file names a path or
//! an environment variable, read when the backend is built (docs/configuration.md).

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

pub use self::{
    admin::{
        AccessKeyConfig, AddressRule, AdminConfig, AdminPlaneRules, AdminSecretSource,
        DEFAULT_REGION, RawAccessKey, RawAdmin, RawAdminTls,
    },
    cluster::{ClusterSettings, RawCluster},
    raw::*,
    service::{ListenerLimits, ServiceOptions},
};
use crate::{
    audit::AuditSettings, backend::vault::VaultSettings, breaker::BreakerSettings, key_id::KeyId,
    tls::TlsSettings,
};

mod admin;
mod admin_plane;
mod cluster;
mod limits;
mod raw;
mod redact;
mod sections;
mod service;

pub use self::redact::{redact_json_error, redact_message, redact_toml_error};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line and column but without the
        /// source line or any quoted value (`redact_toml_error`).
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: Listen,
    /// Logging.
    pub log: LogConfig,
    /// The backend, if configured.
    pub backend: Option<BackendSettings>,
    /// The same backend as written, for persisting it.
    pub backend_raw: Option<BackendConfig>,
    /// Where admin-API changes are persisted (`None`: they are not).
    pub state_dir: Option<PathBuf>,
    /// What inline secrets persisted in `state_dir` are sealed with.
    pub state_sealing: Option<SealingSource>,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// The audit log.
    pub audit: AuditSettings,
    /// The service core's tunables.
    pub service: ServiceOptions,
    /// The breaker in front of each backend.
    pub breaker: BreakerSettings,
    /// How often the self-probe runs.
    pub probe_interval: Duration,
    /// The policy file, if any.
    pub policy_file: Option<PathBuf>,
    /// Lock memory.
    pub mlock: bool,
    /// How often the deletion sweeper runs.
    pub deletion_sweep_interval: Duration,
    /// How often the rotation sweep runs.
    pub rotation_sweep_interval: Duration,
    /// The admin HTTP listener, if configured.
    pub admin: Option<AdminConfig>,
    /// Where to serve metrics and health probes alone.
    pub metrics_listen: Option<SocketAddr>,
    /// The other sidecars of this deployment, for drift detection.
    pub cluster: ClusterSettings,
    /// Connection limits and timeouts of the TCP listeners.
    pub listeners: ListenerLimits,
}

/// Listeners; at least one is set.
#[derive(Debug, Clone)]
pub struct Listen {
    /// The unix socket and its mode.
    pub unix: Option<(PathBuf, u32)>,
    /// Unix peers allowed to connect (empty lists: any).
    pub unix_allowed: (Vec<u32>, Vec<u32>),
    /// The TCP address.
    pub tcp: Option<SocketAddr>,
    /// Mutual TLS on `tcp`; `None` only with `danger_plaintext_tcp`.
    pub tls: Option<TlsSettings>,
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The filter.
    pub level: String,
    /// The format.
    pub format: LogFormat,
}

/// A validated backend configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSettings {
    /// Used when a request names no key.
    pub default_key_id: Option<KeyId>,
    /// Create the default key if missing.
    pub create_default_key: bool,
    /// The backend-specific part.
    pub kind: BackendKindSettings,
}

/// The backend-specific part of [`BackendSettings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendKindSettings {
    /// Key files on disk.
    Local {
        /// The key directory.
        key_dir: PathBuf,
        /// The sealing secret's source.
        sealing: Option<SealingSource>,
    },
    /// Vault or OpenBao.
    Vault(Box<VaultSettings>),
}

/// Where a sealing secret is read from, when the backend is built.
#[derive(Clone, PartialEq, Eq)]
pub enum SealingSource {
    /// A passphrase file.
    PassphraseFile(PathBuf),
    /// A passphrase in an environment variable.
    PassphraseEnv(String),
    /// A key file.
    KeyFile(PathBuf),
}

impl fmt::Debug for SealingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealingSource::PassphraseFile(p) => write!(f, "passphrase file {}", p.display()),
            SealingSource::PassphraseEnv(v) => write!(f, "passphrase in ${v}"),
            SealingSource::KeyFile(p) => write!(f, "key file {}", p.display()),
        }
    }
}

/// The default unix socket of a production install.
pub const DEFAULT_UNIX_SOCKET: &str = "/run/kmsd/kmsd.sock";

impl RawConfig {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        // toml's own message quotes the offending source line, which may
        // hold an inline token: only the position and a redacted message.
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: redact_toml_error(&e, &text),
        })
    }
}

impl Config {
    /// Validates a raw configuration.
    pub fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        let unix = sections::unix_socket(&raw.server)?;
        let interval = raw.keys.deletion_sweep_interval_secs.unwrap_or(60);
        if interval == 0 {
            return Err(ConfigError::Invalid(
                "keys.deletion_sweep_interval_secs must be at least 1".into(),
            ));
        }
        let audit = sections::audit(&raw.audit)?;
        let service = sections::service_options(&raw.limits, &raw.cache)?;
        let breaker = sections::breaker(&raw.breaker)?;
        let probe_interval = Duration::from_secs(sections::at_least_one(
            raw.health.probe_interval_secs,
            10,
            "health.probe_interval_secs",
        )?);
        let shutdown_grace = Duration::from_secs(raw.server.shutdown_grace_secs.unwrap_or(10));
        let tls = sections::server_tls(&raw.server)?;
        let listeners = limits::listener_limits(&raw.limits)?;
        let state_sealing = sections::state_sealing(&raw.server)?;
        let (admin, admin_rules) = AdminConfig::from_raw(raw.admin)?;
        let (rotation_sweep_interval, min_rotation_period) = rotation_settings(&raw.keys)?;
        let cluster = ClusterSettings::from_raw(raw.cluster)?;
        let usage = sections::usage(&raw.keys, &raw.usage, &cluster.node_name)?;
        let service = ServiceOptions {
            admin_rules,
            min_rotation_period,
            usage,
            ..service
        };
        Ok(Self {
            shutdown_grace,
            audit,
            service,
            breaker,
            probe_interval,
            policy_file: raw.policy.file,
            mlock: raw.security.mlock,
            listen: Listen {
                unix,
                unix_allowed: (
                    raw.server.unix_socket_allowed_uids,
                    raw.server.unix_socket_allowed_gids,
                ),
                tcp: raw.server.tcp,
                tls,
            },
            log: LogConfig {
                level: raw.log.level.unwrap_or_else(|| "info".into()),
                format: raw.log.format.unwrap_or_default(),
            },
            backend: raw
                .backend
                .clone()
                .map(BackendSettings::from_raw)
                .transpose()?,
            backend_raw: raw.backend,
            state_dir: raw.server.state_dir,
            state_sealing,
            deletion_sweep_interval: Duration::from_secs(interval),
            rotation_sweep_interval,
            admin,
            metrics_listen: raw.metrics.listen,
            cluster,
            listeners,
        })
    }
}

/// `[keys] rotation_sweep_interval_secs` and `min_rotation_period_secs`.
fn rotation_settings(keys: &RawKeys) -> Result<(Duration, Duration), ConfigError> {
    use crate::backend::rotation::{
        MAX_ROTATION_PERIOD_DAYS, MIN_ROTATION_PERIOD_DAYS, SECS_PER_DAY,
    };
    let interval = sections::at_least_one(
        keys.rotation_sweep_interval_secs,
        60,
        "keys.rotation_sweep_interval_secs",
    )?;
    let max = u64::from(MAX_ROTATION_PERIOD_DAYS) * SECS_PER_DAY;
    let min = keys
        .min_rotation_period_secs
        .unwrap_or(u64::from(MIN_ROTATION_PERIOD_DAYS) * SECS_PER_DAY);
    if min == 0 || min > max {
        return Err(ConfigError::Invalid(format!(
            "keys.min_rotation_period_secs is {min}; it must be between 1 and {max} ({MAX_ROTATION_PERIOD_DAYS} days)"
        )));
    }
    Ok((Duration::from_secs(interval), Duration::from_secs(min)))
}

impl BackendSettings {
    /// Validates a backend configuration (from the config file or the
    /// admin API).
    pub fn from_raw(raw: BackendConfig) -> Result<Self, ConfigError> {
        match raw {
            BackendConfig::Local(local) => {
                if !local.key_dir.is_absolute() {
                    return Err(ConfigError::Invalid(
                        "backend.key_dir must be an absolute path".into(),
                    ));
                }
                let default_key_id = local
                    .default_key_id
                    .as_deref()
                    .map(|id| default_key_id("backend.default_key_id", id))
                    .transpose()?;
                let sealing = local
                    .sealing
                    .map(|s| SealingSource::from_raw(s, "backend.sealing"))
                    .transpose()?;
                Ok(Self {
                    default_key_id,
                    create_default_key: local.create_default_key.unwrap_or(true),
                    kind: BackendKindSettings::Local {
                        key_dir: local.key_dir,
                        sealing,
                    },
                })
            }
            BackendConfig::Vault(vault) => {
                let valid = vault.validate()?;
                Ok(Self {
                    default_key_id: valid.default_key_id,
                    create_default_key: valid.create_default_key,
                    kind: BackendKindSettings::Vault(Box::new(valid.settings)),
                })
            }
        }
    }
}

/// Parses a configured default key id. The message names the field and the
/// rule, never the value (admin-API bodies come through here, and a value
/// in the wrong field may be a secret); kmsd's reserved ids are refused.
pub(crate) fn default_key_id(field: &str, text: &str) -> Result<KeyId, ConfigError> {
    let id = KeyId::parse(text).map_err(|e| match e {
        crate::error::KmsError::InvalidKeyId { reason, .. } => {
            ConfigError::Invalid(format!("{field} is not a valid key id: {reason}"))
        }
        _ => ConfigError::Invalid(format!("{field} is not a valid key id")),
    })?;
    if id.is_reserved() {
        return Err(ConfigError::Invalid(format!(
            "{field}: ids starting with {:?} are reserved for kmsd's own keys",
            crate::key_id::RESERVED_PREFIX
        )));
    }
    Ok(id)
}

impl BackendConfig {
    /// Every file the configuration reads a secret from.
    pub fn secret_files(&self) -> Vec<PathBuf> {
        match self {
            BackendConfig::Local(local) => local
                .sealing
                .iter()
                .flat_map(|s| s.passphrase_file.iter().chain(s.key_file.iter()))
                .cloned()
                .collect(),
            BackendConfig::Vault(vault) => vault.secret_files(),
        }
    }

    /// Parses a backend configuration given as JSON (admin API bodies).
    ///
    /// serde's messages quote the offending value; a misplaced secret must
    /// not come back in an error, so quoted values are elided (field names,
    /// in backquotes, stay).
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(json).map_err(|e| ConfigError::Invalid(redact_json_error(&e)))
    }
}

impl BackendSettings {
    /// The backend's type name.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            BackendKindSettings::Local { .. } => "local",
            BackendKindSettings::Vault(_) => "vault",
        }
    }

    /// Whether both settings name the same key store (which can be open
    /// only once), whatever their other options.
    pub fn same_store(&self, other: &Self) -> bool {
        match (&self.kind, &other.kind) {
            (
                BackendKindSettings::Local { key_dir: a, .. },
                BackendKindSettings::Local { key_dir: b, .. },
            ) => a == b,
            // Vault backends are not exclusive; one is shared only when
            // every setting but the default key is the same.
            (BackendKindSettings::Vault(a), BackendKindSettings::Vault(b)) => a == b,
            _ => false,
        }
    }

    /// Whether the settings protect the same store differently (sealing),
    /// which cannot change while the store is open.
    pub fn protection_differs(&self, other: &Self) -> bool {
        match (&self.kind, &other.kind) {
            (
                BackendKindSettings::Local { sealing: a, .. },
                BackendKindSettings::Local { sealing: b, .. },
            ) => a != b,
            _ => false,
        }
    }
}

impl SealingSource {
    fn from_raw(raw: SealingConfig, table: &str) -> Result<Self, ConfigError> {
        match (raw.passphrase_file, raw.passphrase_env, raw.key_file) {
            (Some(path), None, None) => Ok(SealingSource::PassphraseFile(path)),
            (None, Some(var), None) => Ok(SealingSource::PassphraseEnv(var)),
            (None, None, Some(path)) => Ok(SealingSource::KeyFile(path)),
            _ => Err(ConfigError::Invalid(format!(
                "{table} needs exactly one of passphrase_file, passphrase_env, key_file"
            ))),
        }
    }
}

#[cfg(test)]
mod tests;
