//! Internal types to and from their `kms.v1` messages.

use kms_proto::v1 as pb;
use time::OffsetDateTime;

use crate::{
    alias::AliasEntry,
    backend::{KeyMetadata, KeyState},
    usage::DeletionImpact,
};

pub(crate) fn timestamp(t: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        // Invariant: nanoseconds within a second always fit in an i32.
        nanos: i32::try_from(t.nanosecond()).unwrap_or(0),
    }
}

pub(crate) fn key_state(state: KeyState) -> pb::KeyState {
    match state {
        KeyState::Enabled => pb::KeyState::Enabled,
        KeyState::Disabled => pb::KeyState::Disabled,
        KeyState::PendingDeletion => pb::KeyState::PendingDeletion,
    }
}

pub(crate) fn key_metadata(meta: KeyMetadata) -> pb::KeyMetadata {
    let rotation = meta.rotation;
    let usage = &meta.usage;
    pb::KeyMetadata {
        last_used_at: usage.last_used_at().map(timestamp),
        total_wraps: usage.total_wraps(),
        key_id: meta.key_id.to_string(),
        state: key_state(meta.state).into(),
        description: meta.description,
        created_at: Some(timestamp(meta.created_at)),
        deletion_date: meta.deletion_date.map(timestamp),
        current_version: meta.current_version,
        versions: meta
            .versions
            .into_iter()
            .map(|v| {
                let u = usage.version(v.version);
                pb::KeyVersion {
                    version: v.version,
                    created_at: Some(timestamp(v.created_at)),
                    wraps: u.wraps,
                    decrypts: u.decrypts,
                    last_wrap_at: u.last_wrap_at.map(timestamp),
                    last_decrypt_at: u.last_decrypt_at.map(timestamp),
                }
            })
            .collect(),
        backend: meta.backend.as_str().to_owned(),
        tags: meta.tags,
        origin: meta.origin.as_str().to_owned(),
        rotation_enabled: rotation.is_some(),
        rotation_period_seconds: rotation.map_or(0, |r| r.period_secs),
        next_rotation_date: rotation.map(|r| timestamp(r.next_rotation)),
    }
}

/// GetKeyRotationStatus's answer from the key's metadata.
pub(crate) fn rotation_status(meta: &KeyMetadata) -> pb::GetKeyRotationStatusResponse {
    let rotation = meta.rotation;
    let secs = rotation.map_or(0, |r| r.period_secs);
    pb::GetKeyRotationStatusResponse {
        key_id: meta.key_id.to_string(),
        rotation_enabled: rotation.is_some(),
        rotation_period_in_days: u32::try_from(secs / crate::backend::rotation::SECS_PER_DAY)
            .unwrap_or(u32::MAX),
        rotation_period_seconds: secs,
        next_rotation_date: rotation.map(|r| timestamp(r.next_rotation)),
    }
}

pub(crate) fn import_parameters(
    params: crate::import::ImportParameters,
) -> pb::GetParametersForImportResponse {
    pb::GetParametersForImportResponse {
        import_token: params.token,
        public_key: params.public_key_der,
        public_key_pem: params.public_key_pem,
        wrapping_algorithm: crate::import::WRAPPING_ALGORITHM.to_owned(),
        expires_at: Some(timestamp(params.expires_at)),
        key_id: params.key_id.map(|k| k.to_string()).unwrap_or_default(),
    }
}

/// A deletion impact (issue 20). Its versions carry no creation time:
/// they are the versions kmsd saw used, which the key's metadata dates.
pub(crate) fn deletion_impact(impact: DeletionImpact) -> pb::DeletionImpact {
    let usage = &impact.usage;
    pb::DeletionImpact {
        last_used_at: usage.last_used_at().map(timestamp),
        total_wraps: usage.total_wraps(),
        total_decrypts: usage.total_decrypts(),
        versions: usage
            .versions
            .iter()
            .map(|v| pb::KeyVersion {
                version: v.version,
                created_at: None,
                wraps: v.wraps,
                decrypts: v.decrypts,
                last_wrap_at: v.last_wrap_at.map(timestamp),
                last_decrypt_at: v.last_decrypt_at.map(timestamp),
            })
            .collect(),
        versions_decrypted_within_window: impact.versions_decrypted_within_window,
        window_seconds: impact.window.as_secs(),
        used_within_window: impact.used_within_window,
    }
}

pub(crate) fn alias(entry: AliasEntry) -> pb::Alias {
    pb::Alias {
        alias_name: entry.name.to_string(),
        target_key_id: entry.target.to_string(),
        created_at: Some(timestamp(entry.created_at)),
        updated_at: Some(timestamp(entry.updated_at)),
    }
}
