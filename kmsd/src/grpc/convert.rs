//! Internal types to and from their `kms.v1` messages.

use kms_proto::v1 as pb;
use time::OffsetDateTime;

use crate::{
    alias::AliasEntry,
    backend::{KeyMetadata, KeyState},
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
    pb::KeyMetadata {
        key_id: meta.key_id.to_string(),
        state: key_state(meta.state).into(),
        description: meta.description,
        created_at: Some(timestamp(meta.created_at)),
        deletion_date: meta.deletion_date.map(timestamp),
        current_version: meta.current_version,
        versions: meta
            .versions
            .into_iter()
            .map(|v| pb::KeyVersion {
                version: v.version,
                created_at: Some(timestamp(v.created_at)),
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

pub(crate) fn alias(entry: AliasEntry) -> pb::Alias {
    pb::Alias {
        alias_name: entry.name.to_string(),
        target_key_id: entry.target.to_string(),
        created_at: Some(timestamp(entry.created_at)),
        updated_at: Some(timestamp(entry.updated_at)),
    }
}
