//! The tunables of the layers above the configuration: the service core
//! (`service/`) and the listeners (`daemon/`). They are defined here, below
//! their users, so that the configuration (which the backends read too)
//! never reaches up into the service or the daemon.

use std::time::Duration;

use crate::{cache::CacheSettings, config::AdminPlaneRules};

/// Tunables of the service core.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Requests served at once; more are refused with RESOURCE_EXHAUSTED.
    pub max_concurrent_requests: usize,
    /// Deadline of every backend call.
    pub backend_timeout: Duration,
    /// The data-key cache.
    pub cache: CacheSettings,
    /// What a backend configuration given to the admin API may name.
    pub admin_rules: AdminPlaneRules,
    /// The shortest automatic rotation period (`[keys]
    /// min_rotation_period_secs`).
    pub min_rotation_period: Duration,
    /// Import tokens: their TTL and how many may be pending.
    pub imports: crate::import::ImportLimits,
    /// Usage figures, the wrap budget and the deletion guard (issue 20).
    pub usage: crate::usage::UsageSettings,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 1024,
            backend_timeout: Duration::from_secs(10),
            cache: CacheSettings::default(),
            admin_rules: AdminPlaneRules::default(),
            min_rotation_period: Duration::from_secs(
                u64::from(crate::backend::rotation::MIN_ROTATION_PERIOD_DAYS)
                    * crate::backend::rotation::SECS_PER_DAY,
            ),
            imports: crate::import::ImportLimits::default(),
            usage: crate::usage::UsageSettings::default(),
        }
    }
}

/// The limits of the TCP listeners (`[limits]`, docs/configuration.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections at once on the gRPC TCP listener.
    pub max_tcp_connections: usize,
    /// Connections at once on the admin HTTP listener.
    pub max_admin_connections: usize,
    /// Connections at once on the metrics listener.
    pub max_metrics_connections: usize,
    /// TLS handshakes at once, per TLS listener.
    pub max_tls_handshakes: usize,
    /// Time to the first bytes, the TLS handshake, and HTTP/1 headers.
    pub header_read_timeout: Duration,
    /// A connection without a byte either way for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_tcp_connections: 1024,
            max_admin_connections: 64,
            max_metrics_connections: 64,
            max_tls_handshakes: 64,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}
