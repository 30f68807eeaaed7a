//! Key metadata updates with the RustFS admin API's paths and bodies
//! (`keys/update-description`, `keys/tag`, `keys/untag`), and aliases,
//! which RustFS does not have: kmsd's own routes in the same style
//! (docs/admin-api.md).

use std::collections::BTreeMap;

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, Uri},
    response::Response,
    routing::{delete, post},
};
use serde::{Deserialize, Serialize};

use super::{
    admin_path,
    auth::Caller,
    error::{ApiError, json_response, parse_body, parse_query},
    routes_keys::key_response,
};
use crate::{
    alias::{AliasEntry, AliasName, AliasWrite},
    backend::MetadataChange,
    clock::rfc3339,
    error::KmsError,
    key_id::KeyId,
    request::RequestContext,
    service::Kms,
};

pub(super) fn routes() -> Router<Kms> {
    Router::new()
        .route(
            admin_path!("/kms/keys/update-description"),
            post(update_description),
        )
        .route(admin_path!("/kms/keys/tag"), post(tag_key))
        .route(admin_path!("/kms/keys/untag"), post(untag_key))
        .route(
            admin_path!("/kms/aliases"),
            post(create_alias).get(list_aliases),
        )
        .route(admin_path!("/kms/aliases/update"), post(update_alias))
        .route(admin_path!("/kms/aliases/delete"), delete(delete_alias))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DescriptionBody {
    key_id: String,
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagBody {
    key_id: String,
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UntagBody {
    key_id: String,
    tag_keys: Vec<String>,
}

async fn update(
    kms: &Kms,
    cx: &RequestContext,
    key_id: &str,
    change: MetadataChange,
) -> Result<Response, ApiError> {
    let meta = kms
        .update_key_metadata(cx, &KeyId::parse(key_id)?, change)
        .await?;
    Ok(key_response(StatusCode::OK, meta))
}

async fn update_description(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: DescriptionBody = parse_body(&body)?;
    let change = MetadataChange::Description(body.description);
    update(&kms, &cx, &body.key_id, change).await
}

async fn tag_key(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: TagBody = parse_body(&body)?;
    update(&kms, &cx, &body.key_id, MetadataChange::Tag(body.tags)).await
}

async fn untag_key(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: UntagBody = parse_body(&body)?;
    let change = MetadataChange::Untag(body.tag_keys);
    update(&kms, &cx, &body.key_id, change).await
}

/// An alias, with AWS's date names.
#[derive(Debug, Serialize)]
struct AliasJson {
    alias_name: String,
    target_key_id: String,
    creation_date: String,
    last_updated_date: String,
}

impl From<AliasEntry> for AliasJson {
    fn from(e: AliasEntry) -> Self {
        Self {
            alias_name: e.name.to_string(),
            target_key_id: e.target.to_string(),
            creation_date: rfc3339(e.created_at),
            last_updated_date: rfc3339(e.updated_at),
        }
    }
}

#[derive(Debug, Serialize)]
struct AliasResponse {
    alias: AliasJson,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasBody {
    alias_name: String,
    target_key_id: String,
}

async fn put(
    kms: &Kms,
    cx: &RequestContext,
    body: &[u8],
    write: AliasWrite,
) -> Result<Response, ApiError> {
    let body: AliasBody = parse_body(body)?;
    let alias = AliasName::parse(&body.alias_name)?;
    let target = KeyId::parse(&body.target_key_id)?;
    let entry = kms.put_alias(cx, alias, target, write).await?;
    let status = match write {
        AliasWrite::Create => StatusCode::CREATED,
        AliasWrite::Update => StatusCode::OK,
    };
    Ok(json_response(
        status,
        &AliasResponse {
            alias: entry.into(),
        },
    ))
}

async fn create_alias(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    put(&kms, &cx, &body, AliasWrite::Create).await
}

async fn update_alias(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    put(&kms, &cx, &body, AliasWrite::Update).await
}

/// Delete an alias, as a JSON body or as `?aliasName=`, not both.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteAliasRequest {
    #[serde(alias = "aliasName")]
    alias_name: Option<String>,
}

#[derive(Debug, Serialize)]
struct DeletedJson {
    alias_name: String,
}

async fn delete_alias(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let has_query = uri.query().is_some_and(|q| !q.is_empty());
    let request: DeleteAliasRequest = match (body.trim_ascii().is_empty(), has_query) {
        (false, true) => {
            return Err(KmsError::InvalidArgument(
                "give the request as a JSON body or as a query string, not both".into(),
            )
            .into());
        }
        (false, false) => parse_body(&body)?,
        (true, _) => parse_query(&uri)?,
    };
    let name = request
        .alias_name
        .ok_or_else(|| KmsError::InvalidArgument("alias_name is missing".into()))?;
    let alias = AliasName::parse(&name)?;
    kms.delete_alias(&cx, alias.clone()).await?;
    Ok(json_response(
        StatusCode::OK,
        &DeletedJson {
            alias_name: alias.to_string(),
        },
    ))
}

/// `key_id` (or `keyId`) filters by target; `limit` and `marker` page as
/// in the key listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(alias = "keyId")]
    key_id: Option<String>,
    limit: Option<u32>,
    marker: Option<String>,
}

#[derive(Debug, Serialize)]
struct ListJson {
    aliases: Vec<AliasJson>,
    truncated: bool,
    next_marker: Option<String>,
}

async fn list_aliases(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    uri: Uri,
) -> Result<Response, ApiError> {
    let query: ListQuery = parse_query(&uri)?;
    if query.limit == Some(0) {
        return Err(KmsError::InvalidArgument("limit must be at least 1".into()).into());
    }
    let key_id = query.key_id.as_deref().map(KeyId::parse).transpose()?;
    let page = kms
        .list_aliases(
            &cx,
            key_id,
            query.limit.unwrap_or(0),
            query.marker.as_deref().unwrap_or(""),
        )
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &ListJson {
            aliases: page.aliases.into_iter().map(Into::into).collect(),
            truncated: page.next_page_token.is_some(),
            next_marker: page.next_page_token,
        },
    ))
}
