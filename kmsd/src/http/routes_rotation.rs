//! Automatic rotation in the RustFS admin API's style (RustFS has no such
//! routes; kmsd's own, next to `keys/rotate`): `keys/rotation/enable`,
//! `keys/rotation/disable` and `keys/rotation/status` (docs/admin-api.md).

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, Uri},
    response::Response,
    routing::{get, post},
};
use serde::{Deserialize, Serialize};

use super::{
    admin_path,
    auth::Caller,
    error::{ApiError, json_response, parse_body, parse_query},
    routes_keys::key_response,
};
use crate::{
    backend::rotation::SECS_PER_DAY, clock::rfc3339, error::KmsError, key_id::KeyId, service::Kms,
};

pub(super) fn routes() -> Router<Kms> {
    Router::new()
        .route(
            admin_path!("/kms/keys/rotation/enable"),
            post(enable_rotation),
        )
        .route(
            admin_path!("/kms/keys/rotation/disable"),
            post(disable_rotation),
        )
        .route(
            admin_path!("/kms/keys/rotation/status"),
            get(rotation_status),
        )
}

/// AWS's `RotationPeriodInDays`, or seconds for test deployments (not
/// both; neither: 365 days).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnableBody {
    key_id: String,
    rotation_period_in_days: Option<u32>,
    rotation_period_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyIdBody {
    key_id: String,
}

async fn enable_rotation(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: EnableBody = parse_body(&body)?;
    // An explicit 0 is a mistake, not "the default".
    if body.rotation_period_in_days == Some(0) || body.rotation_period_seconds == Some(0) {
        return Err(KmsError::InvalidArgument(
            "the rotation period must be positive; leave it out for the default of 365 days".into(),
        )
        .into());
    }
    let meta = kms
        .enable_key_rotation(
            &cx,
            &KeyId::parse(&body.key_id)?,
            body.rotation_period_in_days.unwrap_or(0),
            body.rotation_period_seconds.unwrap_or(0),
        )
        .await?;
    Ok(key_response(StatusCode::OK, meta))
}

async fn disable_rotation(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: KeyIdBody = parse_body(&body)?;
    let meta = kms
        .disable_key_rotation(&cx, &KeyId::parse(&body.key_id)?)
        .await?;
    Ok(key_response(StatusCode::OK, meta))
}

/// RustFS's `keyId`, or `key_id`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    #[serde(alias = "keyId")]
    key_id: Option<String>,
}

/// AWS GetKeyRotationStatus's fields, plus the period in seconds.
#[derive(Debug, Serialize)]
struct StatusJson {
    key_id: String,
    rotation_enabled: bool,
    rotation_period_in_days: Option<u64>,
    rotation_period_seconds: Option<u64>,
    next_rotation_date: Option<String>,
}

async fn rotation_status(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    uri: Uri,
) -> Result<Response, ApiError> {
    let query: StatusQuery = parse_query(&uri)?;
    let key_id = query
        .key_id
        .ok_or_else(|| KmsError::InvalidArgument("keyId is missing from the query".into()))?;
    let meta = kms
        .key_rotation_status(&cx, &KeyId::parse(&key_id)?)
        .await?;
    let rotation = meta.rotation;
    Ok(json_response(
        StatusCode::OK,
        &StatusJson {
            key_id: meta.key_id.to_string(),
            rotation_enabled: rotation.is_some(),
            rotation_period_in_days: rotation.map(|r| r.period_secs / SECS_PER_DAY),
            rotation_period_seconds: rotation.map(|r| r.period_secs),
            next_rotation_date: rotation.map(|r| rfc3339(r.next_rotation)),
        },
    ))
}
