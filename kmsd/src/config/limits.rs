//! `[limits]` of the TCP listeners: connection limits and timeouts
//! (`daemon/accept.rs` enforces them).

use std::time::Duration;

use super::ListenerLimits;
use super::{ConfigError, RawLimits};

/// Validates the listener part of `[limits]`: counts and durations of at
/// least 1.
pub(super) fn listener_limits(raw: &RawLimits) -> Result<ListenerLimits, ConfigError> {
    let defaults = ListenerLimits::default();
    let count = |value: Option<usize>, default: usize, name: &str| match value {
        Some(0) => Err(ConfigError::Invalid(format!(
            "limits.{name} must be at least 1"
        ))),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    let seconds = |value: Option<u64>, default: Duration, name: &str| match value {
        Some(0) => Err(ConfigError::Invalid(format!(
            "limits.{name} must be at least 1"
        ))),
        Some(v) => Ok(Duration::from_secs(v)),
        None => Ok(default),
    };
    Ok(ListenerLimits {
        max_tcp_connections: count(
            raw.max_tcp_connections,
            defaults.max_tcp_connections,
            "max_tcp_connections",
        )?,
        max_admin_connections: count(
            raw.max_admin_connections,
            defaults.max_admin_connections,
            "max_admin_connections",
        )?,
        max_metrics_connections: count(
            raw.max_metrics_connections,
            defaults.max_metrics_connections,
            "max_metrics_connections",
        )?,
        max_tls_handshakes: count(
            raw.max_tls_handshakes,
            defaults.max_tls_handshakes,
            "max_tls_handshakes",
        )?,
        header_read_timeout: seconds(
            raw.header_read_timeout_secs,
            defaults.header_read_timeout,
            "header_read_timeout_secs",
        )?,
        idle_timeout: seconds(
            raw.idle_timeout_secs,
            defaults.idle_timeout,
            "idle_timeout_secs",
        )?,
    })
}
