//! Master-key endpoints and data-key generation, with the RustFS admin
//! API's paths and bodies (and its legacy aliases).

use std::collections::BTreeMap;

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State, rejection::PathRejection},
    http::{StatusCode, Uri},
    response::Response,
    routing::{delete, get, post},
};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{
    admin_path,
    auth::Caller,
    error::{ApiError, json_response, parse_body, parse_query},
    key_view::{ImpactView, KEY_USAGE, KeyView},
};
use crate::{
    alias::KeyRef,
    backend::{KeyMetadata, StateChange},
    clock::rfc3339,
    context::EncryptionContext,
    error::KmsError,
    key_id::KeyId,
    request::{Operation, RequestContext},
    service::{Kms, MAX_DELETION_WINDOW_DAYS, MIN_DELETION_WINDOW_DAYS},
};

pub(super) fn routes() -> Router<Kms> {
    Router::new()
        .route(admin_path!("/kms/keys"), post(create_key).get(list_keys))
        .route(admin_path!("/kms/create-key"), post(create_key))
        .route(admin_path!("/kms/key/create"), post(create_key))
        .route(admin_path!("/kms/list-keys"), get(list_keys))
        .route(admin_path!("/kms/keys/{key_id}"), get(describe_key_path))
        .route(admin_path!("/kms/describe-key"), get(describe_key_query))
        .route(admin_path!("/kms/key/status"), get(describe_key_query))
        .route(admin_path!("/kms/keys/enable"), post(enable_key))
        .route(admin_path!("/kms/keys/disable"), post(disable_key))
        .route(admin_path!("/kms/keys/rotate"), post(rotate_key))
        .route(admin_path!("/kms/keys/delete"), delete(schedule_deletion))
        .route(
            admin_path!("/kms/keys/cancel-deletion"),
            post(cancel_deletion),
        )
        .route(
            admin_path!("/kms/generate-data-key"),
            post(generate_data_key),
        )
}

#[derive(Debug, Serialize)]
struct KeyJson {
    key_id: String,
    key_metadata: KeyView,
}

pub(super) fn key_response(status: StatusCode, meta: KeyMetadata) -> Response {
    json_response(
        status,
        &KeyJson {
            key_id: meta.key_id.to_string(),
            key_metadata: meta.into(),
        },
    )
}

/// `key_id` is kmsd's field; the RustFS API names the key with the `name`
/// tag instead, so that works too (and stays a tag).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKeyBody {
    key_id: Option<String>,
    key_usage: Option<String>,
    description: Option<String>,
    tags: Option<BTreeMap<String, String>>,
}

async fn create_key(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: CreateKeyBody = parse_body(&body)?;
    if let Some(usage) = &body.key_usage
        && usage != KEY_USAGE
    {
        return Err(KmsError::InvalidArgument(format!(
            "key_usage must be {KEY_USAGE:?}: kmsd keys are symmetric encryption keys"
        ))
        .into());
    }
    let tags = body.tags.unwrap_or_default();
    let key_id = match (body.key_id.as_deref(), tags.get("name").map(String::as_str)) {
        (Some(id), Some(name)) if id != name => {
            return Err(KmsError::InvalidArgument(
                "key_id and the name tag name different keys".into(),
            )
            .into());
        }
        (Some(id), _) | (None, Some(id)) => Some(KeyId::parse(id)?),
        (None, None) => None,
    };
    let meta = kms
        .create_key(&cx, key_id, body.description.unwrap_or_default(), tags)
        .await?;
    Ok(key_response(StatusCode::CREATED, meta))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
    marker: Option<String>,
}

#[derive(Debug, Serialize)]
struct ListJson {
    keys: Vec<KeyView>,
    truncated: bool,
    next_marker: Option<String>,
}

/// `limit` 1-1000 (default 100); `marker` is the `next_marker` of the
/// previous page, opaque.
async fn list_keys(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    uri: Uri,
) -> Result<Response, ApiError> {
    let query: ListQuery = parse_query(&uri)?;
    if query.limit == Some(0) {
        return Err(KmsError::InvalidArgument("limit must be at least 1".into()).into());
    }
    let page = kms
        .list_keys(
            &cx,
            query.limit.unwrap_or(0),
            query.marker.as_deref().unwrap_or(""),
        )
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &ListJson {
            keys: page.keys.into_iter().map(Into::into).collect(),
            truncated: page.next_page_token.is_some(),
            next_marker: page.next_page_token,
        },
    ))
}

#[derive(Debug, Serialize)]
struct DescribeJson {
    key_metadata: KeyView,
    #[serde(skip_serializing_if = "Option::is_none")]
    impact: Option<ImpactView>,
}

async fn describe(kms: &Kms, cx: &RequestContext, key_id: &str) -> Result<Response, ApiError> {
    let meta = kms.describe_key_ref(cx, KeyRef::parse(key_id)?).await?;
    Ok(json_response(
        StatusCode::OK,
        &DescribeJson {
            key_metadata: meta.into(),
            impact: None,
        },
    ))
}

/// The query of `GET /kms/keys/{id}`: `?impact=true` adds the deletion
/// impact (issue 20).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DescribeQuery {
    #[serde(default)]
    impact: bool,
}

async fn describe_key_path(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let Path(key_id) = path
        .map_err(|e| KmsError::InvalidArgument(format!("key id in the path: {}", e.body_text())))?;
    let query: DescribeQuery = match uri.query() {
        Some(q) if !q.is_empty() => parse_query(&uri)?,
        _ => DescribeQuery::default(),
    };
    if !query.impact {
        return describe(&kms, &cx, &key_id).await;
    }
    let (meta, impact) = kms
        .describe_key_with_impact(&cx, KeyRef::parse(&key_id)?)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &DescribeJson {
            key_metadata: meta.into(),
            impact: Some(impact.into()),
        },
    ))
}

/// The query form of a key id: RustFS's `keyId`, or `key_id`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyIdQuery {
    #[serde(alias = "keyId")]
    key_id: Option<String>,
}

async fn describe_key_query(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    uri: Uri,
) -> Result<Response, ApiError> {
    let query: KeyIdQuery = parse_query(&uri)?;
    let key_id = query
        .key_id
        .ok_or_else(|| KmsError::InvalidArgument("keyId is missing from the query".into()))?;
    describe(&kms, &cx, &key_id).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyIdBody {
    key_id: String,
}

async fn change(
    kms: &Kms,
    cx: &RequestContext,
    body: &[u8],
    change: StateChange,
) -> Result<Response, ApiError> {
    let body: KeyIdBody = parse_body(body)?;
    let meta = kms
        .change_state(cx, &KeyId::parse(&body.key_id)?, change)
        .await?;
    Ok(key_response(StatusCode::OK, meta))
}

async fn enable_key(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    change(&kms, &cx, &body, StateChange::Enable).await
}

async fn disable_key(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    change(&kms, &cx, &body, StateChange::Disable).await
}

async fn rotate_key(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: KeyIdBody = parse_body(&body)?;
    let meta = kms.rotate_key(&cx, &KeyId::parse(&body.key_id)?).await?;
    Ok(key_response(StatusCode::OK, meta))
}

/// Schedule deletion, as a JSON body or (RustFS's query form) as
/// `?keyId=&pending_window_in_days=`, not both.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteRequest {
    #[serde(alias = "keyId")]
    key_id: Option<String>,
    pending_window_in_days: Option<u32>,
    /// Refused when true: kmsd always keeps a pending window.
    #[serde(default)]
    force_immediate: bool,
    /// When given, must repeat `key_id` (a guard against deleting the
    /// wrong key).
    confirm_key_id: Option<String>,
    /// Schedule even a key used within the deletion guard window
    /// (otherwise 409 KEY_STILL_REFERENCED).
    #[serde(default)]
    force: bool,
}

#[derive(Debug, Serialize)]
struct DeletionJson {
    key_id: String,
    deletion_date: Option<String>,
    key_metadata: KeyView,
    impact: ImpactView,
}

/// The request from the body or else the query; giving both is an error
/// (which one would win is not obvious).
fn body_or_query<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    uri: &Uri,
) -> Result<T, KmsError> {
    let has_query = uri.query().is_some_and(|q| !q.is_empty());
    match (body.trim_ascii().is_empty(), has_query) {
        (false, true) => Err(KmsError::InvalidArgument(
            "give the request as a JSON body or as a query string, not both".into(),
        )),
        (false, false) => parse_body(body),
        (true, true) => parse_query(uri),
        (true, false) => Ok(T::default()),
    }
}

async fn schedule_deletion(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: DeleteRequest = body_or_query(&body, &uri)?;
    let key_id = request
        .key_id
        .ok_or_else(|| KmsError::InvalidArgument("key_id is missing".into()))?;
    if request.force_immediate {
        return Err(KmsError::InvalidArgument(format!(
            "immediate deletion is not supported: a key is destroyed only after a pending window of {MIN_DELETION_WINDOW_DAYS}-{MAX_DELETION_WINDOW_DAYS} days, which can be cancelled"
        ))
        .into());
    }
    if request
        .confirm_key_id
        .as_ref()
        .is_some_and(|c| *c != key_id)
    {
        return Err(KmsError::InvalidArgument("confirm_key_id differs from key_id".into()).into());
    }
    // 0 would mean "the default" to the service; here it is more likely a
    // request for immediate deletion, so it is refused like any other
    // out-of-range window.
    let days = match request.pending_window_in_days {
        None => MAX_DELETION_WINDOW_DAYS,
        Some(days) if days >= MIN_DELETION_WINDOW_DAYS => days,
        Some(days) => {
            return Err(KmsError::InvalidArgument(format!(
                "pending_window_in_days is {days}; it must be between {MIN_DELETION_WINDOW_DAYS} and {MAX_DELETION_WINDOW_DAYS}"
            ))
            .into());
        }
    };
    let (meta, impact) = kms
        .schedule_key_deletion(&cx, &KeyId::parse(&key_id)?, days, request.force)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &DeletionJson {
            key_id: meta.key_id.to_string(),
            deletion_date: meta.deletion_date.map(rfc3339),
            key_metadata: meta.into(),
            impact: impact.into(),
        },
    ))
}

async fn cancel_deletion(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: KeyIdQuery = body_or_query(&body, &uri)?;
    let key_id = request
        .key_id
        .ok_or_else(|| KmsError::InvalidArgument("key_id is missing".into()))?;
    let meta = kms
        .change_state(&cx, &KeyId::parse(&key_id)?, StateChange::CancelDeletion)
        .await?;
    Ok(key_response(StatusCode::OK, meta))
}

/// `key_spec` is RustFS's `Aes256` (or AWS's `AES_256`); kmsd issues
/// 256-bit data keys only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateDataKeyBody {
    key_id: Option<String>,
    key_spec: Option<String>,
    encryption_context: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize)]
struct DataKeyJson {
    key_id: String,
    key_version: u32,
    #[serde(serialize_with = "serialize_secret")]
    plaintext_key: Zeroizing<String>,
    ciphertext_blob: String,
}

fn serialize_secret<S: serde::Serializer>(
    secret: &Zeroizing<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret)
}

async fn generate_data_key(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: GenerateDataKeyBody = parse_body(&body)?;
    match body.key_spec.as_deref() {
        None | Some("Aes256" | "AES_256") => {}
        Some(_) => {
            return Err(KmsError::InvalidArgument(
                "key_spec must be \"Aes256\": kmsd issues 256-bit data keys only".into(),
            )
            .into());
        }
    }
    let key_id = body.key_id.as_deref().map(KeyRef::parse).transpose()?;
    let context = EncryptionContext::new(body.encryption_context.unwrap_or_default())?;
    let generated = kms
        .generate_data_key(&cx, Operation::GenerateDataKey, key_id, &context)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &DataKeyJson {
            key_id: generated.sealed.key_id.to_string(),
            key_version: generated.sealed.key_version,
            // The encoded copy is wiped on drop; the response buffer that
            // hyper owns afterwards is not (as with the gRPC API).
            plaintext_key: Zeroizing::new(B64.encode(generated.key.expose_secret())),
            ciphertext_blob: B64.encode(&generated.sealed.blob),
        },
    ))
}
