//! JSON shapes printed by the client subcommands.

use kms_client::proto;
use serde::Serialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

pub(crate) fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn time(ts: Option<prost_types::Timestamp>) -> Option<String> {
    let ts = ts?;
    OffsetDateTime::from_unix_timestamp(ts.seconds)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

#[derive(Serialize)]
pub(crate) struct KeyOut {
    key_id: String,
    state: &'static str,
    description: String,
    created_at: Option<String>,
    deletion_date: Option<String>,
    current_version: u32,
    versions: Vec<VersionOut>,
    backend: String,
    tags: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
struct VersionOut {
    version: u32,
    created_at: Option<String>,
}

pub(crate) fn key(meta: proto::KeyMetadata) -> KeyOut {
    let state = match meta.state() {
        proto::KeyState::Enabled => "Enabled",
        proto::KeyState::Disabled => "Disabled",
        proto::KeyState::PendingDeletion => "PendingDeletion",
        proto::KeyState::Unspecified => "Unspecified",
    };
    KeyOut {
        key_id: meta.key_id,
        state,
        description: meta.description,
        created_at: time(meta.created_at),
        deletion_date: time(meta.deletion_date),
        current_version: meta.current_version,
        versions: meta
            .versions
            .into_iter()
            .map(|v| VersionOut {
                version: v.version,
                created_at: time(v.created_at),
            })
            .collect(),
        backend: meta.backend,
        tags: meta.tags,
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
