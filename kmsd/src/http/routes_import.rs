//! Import of key material over REST: `POST /kms/keys/import-parameters`
//! and `POST /kms/keys/import` (the gRPC GetParametersForImport and
//! ImportKey; docs/admin-api.md, "Import").

use std::collections::BTreeMap;

use axum::{
    Router, body::Bytes, extract::State, http::StatusCode, response::Response, routing::post,
};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde::{Deserialize, Serialize};

use super::{
    admin_path,
    auth::Caller,
    error::{ApiError, json_response, parse_body},
    routes_keys::key_response,
};
use crate::{
    clock::rfc3339,
    error::KmsError,
    import::WRAPPING_ALGORITHM,
    key_id::KeyId,
    service::{ImportRequest, Kms},
};

pub(super) fn routes() -> Router<Kms> {
    Router::new()
        .route(
            admin_path!("/kms/keys/import-parameters"),
            post(import_parameters),
        )
        .route(admin_path!("/kms/keys/import"), post(import_key))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParametersBody {
    key_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct ParametersJson {
    import_token: String,
    /// DER SubjectPublicKeyInfo, base64.
    public_key: String,
    public_key_pem: String,
    wrapping_algorithm: &'static str,
    expires_at: String,
    key_id: Option<String>,
}

/// The body is optional: no body (or `{}`) asks for an unbound token.
async fn import_parameters(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: ParametersBody = if body.is_empty() {
        ParametersBody::default()
    } else {
        parse_body(&body)?
    };
    let key_id = body.key_id.as_deref().map(KeyId::parse).transpose()?;
    let params = kms.get_parameters_for_import(&cx, key_id).await?;
    Ok(json_response(
        StatusCode::OK,
        &ParametersJson {
            import_token: params.token,
            public_key: B64.encode(&params.public_key_der),
            public_key_pem: params.public_key_pem,
            wrapping_algorithm: WRAPPING_ALGORITHM,
            expires_at: rfc3339(params.expires_at),
            key_id: params.key_id.map(|k| k.to_string()),
        },
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    import_token: String,
    key_id: Option<String>,
    /// Base64 of the RSA-OAEP-SHA256 ciphertext.
    encrypted_key_material: String,
    description: Option<String>,
    tags: Option<BTreeMap<String, String>>,
}

async fn import_key(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: ImportBody = parse_body(&body)?;
    let encrypted_key_material = B64.decode(&body.encrypted_key_material).map_err(|_| {
        KmsError::InvalidArgument("encrypted_key_material is not valid base64".into())
    })?;
    let request = ImportRequest {
        import_token: body.import_token,
        key_id: body.key_id.as_deref().map(KeyId::parse).transpose()?,
        encrypted_key_material,
        description: body.description.unwrap_or_default(),
        tags: body.tags.unwrap_or_default(),
    };
    let meta = kms.import_key(&cx, request).await?;
    Ok(key_response(StatusCode::CREATED, meta))
}
