//! The checks [`Config::from_raw`](super::Config::from_raw) makes, one
//! section of the file at a time: the `[server]` listeners and state,
//! `[audit]`, and the service core's `[limits]`, `[cache]` and `[breaker]`.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use super::{
    AdminPlaneRules, ConfigError, DEFAULT_UNIX_SOCKET, RawAudit, RawBreaker, RawCache, RawLimits,
    RawServer, SealingSource, ServiceOptions,
};
use crate::{
    audit::{AuditOutput, AuditSettings, OnFailure},
    breaker::BreakerSettings,
    cache::CacheSettings,
    tls::TlsSettings,
};

/// `value`, or `default` when unset; 0 is refused, naming the setting.
pub(super) fn at_least_one(
    value: Option<u64>,
    default: u64,
    name: &str,
) -> Result<u64, ConfigError> {
    match value {
        Some(0) => Err(ConfigError::Invalid(format!("{name} must be at least 1"))),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

/// The unix socket and its mode: the configured path, the default path
/// when there is no TCP listener either, or none.
pub(super) fn unix_socket(server: &RawServer) -> Result<Option<(PathBuf, u32)>, ConfigError> {
    let mode = match server.unix_socket_mode.as_deref() {
        None => 0o660,
        Some(text) => u32::from_str_radix(text.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "server.unix_socket_mode {text:?} is not an octal mode such as \"0660\""
                ))
            })?,
    };
    if mode & 0o007 != 0 {
        return Err(ConfigError::Invalid(
            "server.unix_socket_mode must not give others access (use 0660 or stricter)".into(),
        ));
    }
    Ok(match (&server.unix_socket, server.tcp) {
        (Some(path), _) => Some((path.clone(), mode)),
        (None, Some(_)) => None,
        (None, None) => Some((PathBuf::from(DEFAULT_UNIX_SOCKET), mode)),
    })
}

/// `[server.tls]`: mutual TLS on the TCP listener, required unless
/// `danger_plaintext_tcp`, and excluded by it.
pub(super) fn server_tls(server: &RawServer) -> Result<Option<TlsSettings>, ConfigError> {
    let tls = server.tls.clone().map(|t| TlsSettings {
        cert_file: t.cert_file,
        key_file: t.key_file,
        client_ca_file: Some(t.client_ca_file),
    });
    match (server.tcp, &tls, server.danger_plaintext_tcp) {
        (Some(_), None, false) => Err(ConfigError::Invalid(
            "server.tcp needs [server.tls] (mutual TLS), or danger_plaintext_tcp = true for development on loopback".into(),
        )),
        (Some(_), Some(_), true) => Err(ConfigError::Invalid(
            "server.danger_plaintext_tcp and [server.tls] exclude each other".into(),
        )),
        _ => Ok(tls),
    }
}

/// `[server.state_sealing]`, which only makes sense with a state directory.
pub(super) fn state_sealing(server: &RawServer) -> Result<Option<SealingSource>, ConfigError> {
    let state_sealing = server
        .state_sealing
        .clone()
        .map(|s| SealingSource::from_raw(s, "server.state_sealing"))
        .transpose()?;
    if state_sealing.is_some() && server.state_dir.is_none() {
        return Err(ConfigError::Invalid(
            "server.state_sealing needs server.state_dir (it seals the secrets kept there)".into(),
        ));
    }
    Ok(state_sealing)
}

/// `[audit]`.
pub(super) fn audit(audit: &RawAudit) -> Result<AuditSettings, ConfigError> {
    let output = match audit.output.as_deref() {
        None | Some("stdout") => AuditOutput::Stdout,
        Some("off") => AuditOutput::Off,
        Some(path) if Path::new(path).is_absolute() => AuditOutput::File(PathBuf::from(path)),
        Some(other) => {
            return Err(ConfigError::Invalid(format!(
                "audit.output {other:?} must be \"stdout\", \"off\" or an absolute path"
            )));
        }
    };
    let on_failure = match audit.on_failure.as_deref() {
        None => OnFailure::default(),
        Some(text) => OnFailure::parse(text).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "audit.on_failure {text:?} must be \"refuse\" or \"continue\""
            ))
        })?,
    };
    Ok(AuditSettings {
        output,
        include_context: audit.include_context.unwrap_or(false),
        on_failure,
    })
}

/// The service core's `[limits]` and `[cache]`; the admin-plane rules are
/// filled in from `[admin]` later.
pub(super) fn service_options(
    limits: &RawLimits,
    cache: &RawCache,
) -> Result<ServiceOptions, ConfigError> {
    let max_concurrent_requests = match limits.max_concurrent_requests {
        Some(0) => {
            return Err(ConfigError::Invalid(
                "limits.max_concurrent_requests must be at least 1".into(),
            ));
        }
        Some(n) => n,
        None => 1024,
    };
    Ok(ServiceOptions {
        max_concurrent_requests,
        backend_timeout: Duration::from_secs(at_least_one(
            limits.backend_timeout_secs,
            10,
            "limits.backend_timeout_secs",
        )?),
        cache: CacheSettings {
            max_entries: cache.max_data_keys.unwrap_or(10_000),
            ttl: Duration::from_secs(cache.data_key_ttl_secs.unwrap_or(30)),
            offline: Duration::from_secs(cache.offline_secs.unwrap_or(0)),
        },
        admin_rules: AdminPlaneRules::default(),
        imports: import_limits(limits)?,
        // Set from `[keys]` by the caller.
        ..ServiceOptions::default()
    })
}

/// `[limits] import_token_ttl_secs` and `max_pending_imports`.
fn import_limits(limits: &RawLimits) -> Result<crate::import::ImportLimits, ConfigError> {
    let defaults = crate::import::ImportLimits::default();
    Ok(crate::import::ImportLimits {
        token_ttl: Duration::from_secs(at_least_one(
            limits.import_token_ttl_secs,
            defaults.token_ttl.as_secs(),
            "limits.import_token_ttl_secs",
        )?),
        max_pending: match limits.max_pending_imports {
            Some(0) => {
                return Err(ConfigError::Invalid(
                    "limits.max_pending_imports must be at least 1".into(),
                ));
            }
            Some(n) => n,
            None => defaults.max_pending,
        },
    })
}

/// `[usage]` and the usage part of `[keys]` (issue 20); the node name is
/// `[cluster] node_name`.
pub(super) fn usage(
    keys: &super::RawKeys,
    usage: &super::RawUsage,
    node_name: &str,
) -> Result<crate::usage::UsageSettings, ConfigError> {
    let defaults = crate::usage::UsageSettings::default();
    Ok(crate::usage::UsageSettings {
        wrap_budget: at_least_one(keys.wrap_budget, defaults.wrap_budget, "keys.wrap_budget")?,
        deletion_guard_window: keys
            .deletion_guard_window_secs
            .map_or(defaults.deletion_guard_window, Duration::from_secs),
        flush_interval: Duration::from_secs(at_least_one(
            usage.flush_interval_secs,
            defaults.flush_interval.as_secs(),
            "usage.flush_interval_secs",
        )?),
        node_name: node_name.to_owned(),
    })
}

/// `[breaker]`.
pub(super) fn breaker(breaker: &RawBreaker) -> Result<BreakerSettings, ConfigError> {
    Ok(BreakerSettings {
        failure_threshold: breaker.failure_threshold.unwrap_or(5),
        probe_interval: Duration::from_millis(at_least_one(
            breaker.probe_interval_ms,
            200,
            "breaker.probe_interval_ms",
        )?),
    })
}
