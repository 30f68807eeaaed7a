//! What the subcommands print, and how: JSON shapes for the client
//! subcommands, and writes to stdout that fail instead of panicking.
//!
//! `println!` panics when stdout is a pipe whose reader has gone
//! (`kmsd status | head -5`: "failed printing to stdout: Broken pipe").
//! Everything here returns that as an error, which `cli::main` turns into
//! a quiet exit, as `cat` or `ls` do.

use std::{fmt::Display, io::Write};

use kms_client::proto;
use serde::Serialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::http::key_view::{ImpactView, KEY_USAGE, KeyView, VersionUsageView, VersionView};

/// Writes `text` and a newline to stdout.
pub(crate) fn print_line(text: impl Display) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// Whether `error` is stdout (or stderr) having been closed by its reader:
/// nothing to report, the reader has what it wanted.
pub(crate) fn is_closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `println!` for lines whose loss is no error (the banner of `kmsd serve
/// --dev`): a closed stdout must not stop the daemon.
macro_rules! say {
    ($($arg:tt)*) => {
        let _ = $crate::cli::output::print_line(format_args!($($arg)*));
    };
}
pub(crate) use say;

pub(crate) fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    print_line(serde_json::to_string_pretty(value)?)?;
    Ok(())
}

pub(crate) fn time(ts: Option<prost_types::Timestamp>) -> Option<String> {
    let ts = ts?;
    OffsetDateTime::from_unix_timestamp(ts.seconds)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// A key as `kmsd key …` prints it: the admin REST API's view, so a
/// script reads the same fields from either.
pub(crate) fn key(meta: proto::KeyMetadata) -> KeyView {
    let key_state = match meta.state() {
        proto::KeyState::Enabled => "Enabled",
        proto::KeyState::Disabled => "Disabled",
        proto::KeyState::PendingDeletion => "PendingDeletion",
        proto::KeyState::Unspecified => "Unspecified",
    };
    KeyView {
        last_used_at: time(meta.last_used_at),
        total_wraps: meta.total_wraps,
        key_id: meta.key_id,
        key_state,
        key_usage: KEY_USAGE,
        description: meta.description,
        creation_date: time(meta.created_at),
        deletion_date: time(meta.deletion_date),
        current_version: meta.current_version,
        versions: meta
            .versions
            .into_iter()
            .map(|v| VersionView {
                version: v.version,
                creation_date: time(v.created_at),
                wraps: v.wraps,
                decrypts: v.decrypts,
                last_wrap_at: time(v.last_wrap_at),
                last_decrypt_at: time(v.last_decrypt_at),
            })
            .collect(),
        backend: meta.backend,
        tags: meta.tags,
        rotation_enabled: meta.rotation_enabled,
        rotation_period_seconds: meta
            .rotation_enabled
            .then_some(meta.rotation_period_seconds),
        next_rotation_date: time(meta.next_rotation_date),
        // An older kmsd does not say: its keys are all its own.
        origin: if meta.origin.is_empty() {
            "KMSD".to_owned()
        } else {
            meta.origin
        },
    }
}

/// A deletion impact as `kmsd key describe --impact` and
/// `kmsd key schedule-deletion` print it: the admin REST API's view.
pub(crate) fn impact(i: proto::DeletionImpact) -> ImpactView {
    ImpactView {
        last_used_at: time(i.last_used_at),
        total_wraps: i.total_wraps,
        total_decrypts: i.total_decrypts,
        versions: i
            .versions
            .into_iter()
            .map(|v| VersionUsageView {
                version: v.version,
                wraps: v.wraps,
                decrypts: v.decrypts,
                last_wrap_at: time(v.last_wrap_at),
                last_decrypt_at: time(v.last_decrypt_at),
            })
            .collect(),
        versions_decrypted_within_window: i.versions_decrypted_within_window,
        window_seconds: i.window_seconds,
        used_within_window: i.used_within_window,
    }
}

#[derive(Serialize)]
pub(crate) struct StatusOut {
    status: &'static str,
    error: Option<String>,
    healthy: bool,
    version: String,
    started_at: Option<String>,
    backend: Option<BackendOut>,
    previous_backends: Vec<BackendOut>,
    persisted: bool,
    config_fingerprint: String,
    config_fields: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
struct BackendOut {
    backend_type: String,
    default_key_id: String,
    settings: std::collections::BTreeMap<String, String>,
}

pub(crate) fn state_name(state: proto::ServiceState) -> &'static str {
    match state {
        proto::ServiceState::NotConfigured => "NotConfigured",
        proto::ServiceState::Configured => "Configured",
        proto::ServiceState::Running => "Running",
        proto::ServiceState::Stopped => "Stopped",
        proto::ServiceState::Error => "Error",
        proto::ServiceState::Unspecified => "Unspecified",
    }
}

pub(crate) fn status(status: proto::StatusResponse) -> StatusOut {
    StatusOut {
        status: state_name(status.state()),
        error: Some(status.error).filter(|e| !e.is_empty()),
        healthy: status.healthy,
        version: status.version,
        started_at: time(status.started_at),
        backend: status.backend.map(backend),
        previous_backends: status.previous_backends.into_iter().map(backend).collect(),
        persisted: status.persisted,
        config_fingerprint: status.config_fingerprint,
        config_fields: status.config_fields.into_iter().collect(),
    }
}

fn backend(b: proto::BackendSummary) -> BackendOut {
    BackendOut {
        backend_type: b.backend_type,
        default_key_id: b.default_key_id,
        settings: b.settings,
    }
}
