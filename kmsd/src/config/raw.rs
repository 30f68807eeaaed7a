//! The configuration file's raw shape, exactly as serde reads it (and as
//! the admin API's JSON writes it back); validated in [`super::Config`].

use std::{net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::{RawAdmin, RawCluster};
use crate::backend::vault::RawVaultConfig;

/// The TOML file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[server]`.
    #[serde(default)]
    pub server: RawServer,
    /// `[log]`.
    #[serde(default)]
    pub log: RawLog,
    /// `[backend]`; absent means kmsd starts NotConfigured.
    pub backend: Option<BackendConfig>,
    /// `[keys]`.
    #[serde(default)]
    pub keys: RawKeys,
    /// `[audit]`.
    #[serde(default)]
    pub audit: RawAudit,
    /// `[limits]`.
    #[serde(default)]
    pub limits: RawLimits,
    /// `[cache]`.
    #[serde(default)]
    pub cache: RawCache,
    /// `[breaker]`.
    #[serde(default)]
    pub breaker: RawBreaker,
    /// `[health]`.
    #[serde(default)]
    pub health: RawHealth,
    /// `[policy]`.
    #[serde(default)]
    pub policy: RawPolicy,
    /// `[security]`.
    #[serde(default)]
    pub security: RawSecurity,
    /// `[admin]`.
    #[serde(default)]
    pub admin: RawAdmin,
    /// `[metrics]`.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// `[cluster]`.
    #[serde(default)]
    pub cluster: RawCluster,
    /// `[usage]` (issue 20).
    #[serde(default)]
    pub usage: RawUsage,
}

/// `[usage]`: how usage figures are persisted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUsage {
    /// How often each node writes its figures to the key store, in
    /// seconds (default 60; they are written at shutdown too).
    pub flush_interval_secs: Option<u64>,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Where to serve `/metrics`, `/health/live` and `/health/ready` over
    /// plain HTTP. They reveal no key or secret, so this may face the pod
    /// or host network for probes and scrapers.
    pub listen: Option<SocketAddr>,
}

/// `[audit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// `stdout` (default), `off`, or an absolute file path.
    pub output: Option<String>,
    /// Record the encryption context itself, not only its digest.
    pub include_context: Option<bool>,
    /// What a request whose audit line cannot be written gets: `refuse`
    /// (default: an error) or `continue` (its answer).
    pub on_failure: Option<String>,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Requests served at once (default 1024).
    pub max_concurrent_requests: Option<usize>,
    /// Deadline of each backend call, in seconds (default 10).
    pub backend_timeout_secs: Option<u64>,
    /// Connections at once on the gRPC TCP listener (default 1024).
    pub max_tcp_connections: Option<usize>,
    /// Connections at once on the admin HTTP listener (default 64).
    pub max_admin_connections: Option<usize>,
    /// Connections at once on the metrics listener (default 64).
    pub max_metrics_connections: Option<usize>,
    /// TLS handshakes under way at once, per TLS listener (default 64).
    pub max_tls_handshakes: Option<usize>,
    /// Time a TCP connection has for its first bytes, its TLS handshake
    /// and HTTP/1 request headers, in seconds (default 10).
    pub header_read_timeout_secs: Option<u64>,
    /// A TCP connection without a byte either way for this long is closed,
    /// in seconds (default 300).
    pub idle_timeout_secs: Option<u64>,
    /// How long an import token can be used, in seconds (default 600).
    pub import_token_ttl_secs: Option<u64>,
    /// Import tokens pending at once (default 16).
    pub max_pending_imports: Option<usize>,
}

/// `[cache]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// How long an opened data key is served from memory (default 30; 0
    /// turns the cache off).
    pub data_key_ttl_secs: Option<u64>,
    /// Most cached data keys (default 10000; 0 turns the cache off).
    pub max_data_keys: Option<u64>,
    /// How much longer a cached data key may be served while the backend is
    /// unreachable (default 0: fail closed).
    pub offline_secs: Option<u64>,
}

/// `[breaker]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    /// Consecutive backend failures that open the breaker (default 5; 0
    /// disables it).
    pub failure_threshold: Option<u32>,
    /// How often an open breaker probes the backend, in milliseconds
    /// (default 200).
    pub probe_interval_ms: Option<u64>,
}

/// `[health]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// How often the self-probe wraps and unwraps a data key, in seconds
    /// (default 10).
    pub probe_interval_secs: Option<u64>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Path of the unix domain socket to serve gRPC on.
    pub unix_socket: Option<PathBuf>,
    /// Its permission bits, as an octal string (default "0660").
    pub unix_socket_mode: Option<String>,
    /// TCP address to serve gRPC on (plain HTTP/2).
    pub tcp: Option<SocketAddr>,
    /// Where runtime changes made through the admin API are persisted.
    pub state_dir: Option<PathBuf>,
    /// Seals inline secrets given to the admin API before they are
    /// persisted in `state_dir` (the shape of `[backend.sealing]`).
    pub state_sealing: Option<SealingConfig>,
    /// How long SIGTERM waits for requests in flight, in seconds (default 10).
    pub shutdown_grace_secs: Option<u64>,
    /// Unix peers (by uid) allowed to connect; empty means any peer the
    /// socket's permissions let in.
    #[serde(default)]
    pub unix_socket_allowed_uids: Vec<u32>,
    /// Unix peers (by gid) allowed to connect.
    #[serde(default)]
    pub unix_socket_allowed_gids: Vec<u32>,
    /// Mutual TLS for `tcp`.
    pub tls: Option<RawTls>,
    /// Serve `tcp` without TLS. Anyone who reaches the port can then use
    /// every key; for development on loopback only.
    #[serde(default)]
    pub danger_plaintext_tcp: bool,
}

/// `[server.tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// The server certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// CAs that client certificates must chain to (PEM).
    pub client_ca_file: PathBuf,
}

/// `[policy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// The policy file (docs/security.md); absent means every caller that
    /// reaches kmsd may do everything.
    pub file: Option<PathBuf>,
}

/// `[security]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecurity {
    /// Lock all memory (`mlockall`) so keys never reach swap; needs
    /// CAP_IPC_LOCK. Startup fails if it cannot be done.
    #[serde(default)]
    pub mlock: bool,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// A `tracing` filter such as `info` or `kmsd=debug` (`RUST_LOG` wins).
    pub level: Option<String>,
    /// `text` or `json`.
    pub format: Option<LogFormat>,
}

/// `[keys]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeys {
    /// How often to destroy keys whose deletion window has passed, in
    /// seconds (default 60).
    pub deletion_sweep_interval_secs: Option<u64>,
    // Automatic rotation.
    /// How often to rotate keys whose rotation is due, in seconds
    /// (default 60).
    pub rotation_sweep_interval_secs: Option<u64>,
    /// The shortest rotation period EnableKeyRotation accepts, in seconds
    /// (default 90 days, AWS KMS's minimum; shorter only for tests).
    pub min_rotation_period_secs: Option<u64>,
    /// Wraps per key version after which kmsd rotates the key (default
    /// 2^30; issue 20).
    pub wrap_budget: Option<u64>,
    /// ScheduleKeyDeletion refuses a key used within this many seconds
    /// unless forced (default 7 days; 0 turns the guard off).
    pub deletion_guard_window_secs: Option<u64>,
}

/// Log line format.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[backend]`, tagged by `backend_type` with the field names of the
/// RustFS admin API's configure body, so the same JSON configures both.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "backend_type", rename_all = "lowercase")]
pub enum BackendConfig {
    /// Key files on disk.
    Local(LocalBackendConfig),
    /// Vault or OpenBao (docs/vault.md).
    Vault(Box<RawVaultConfig>),
}

/// The local backend's settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalBackendConfig {
    /// The key directory (created with mode 0700 if missing).
    pub key_dir: PathBuf,
    /// The key used when a request names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_key_id: Option<String>,
    /// Create the default key at startup if it does not exist (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_default_key: Option<bool>,
    /// Seal key files at rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealing: Option<SealingConfig>,
}

/// Where the sealing secret comes from: exactly one field.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SealingConfig {
    /// A file holding the passphrase (trailing newline ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<PathBuf>,
    /// An environment variable holding the passphrase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_env: Option<String>,
    /// A file of at least 32 random bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}
