//! Backup and restore of the local backend's keys: kmsd's own admin
//! routes, which RustFS does not have (docs/admin-api.md, "Backup and
//! restore"). The backup secret arrives in the body, as every secret of
//! the admin API does; the listener is TLS or loopback.

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use kms_core::SecretBytes;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{
    MAX_BODY_BYTES, admin_path,
    auth::Caller,
    error::{ApiError, json_response, parse_body},
};
use crate::{
    backend::local::{MIN_PASSPHRASE_LEN, OnConflict, SealingSecret},
    error::KmsError,
    service::Kms,
};

/// The largest restore body: a bundle of about 100,000 keys with a
/// handful of versions each. Every other admin body stays under
/// [`MAX_BODY_BYTES`].
pub(super) const MAX_RESTORE_BYTES: usize = 64 * 1024 * 1024;

pub(super) fn routes() -> Router<Kms> {
    Router::new()
        .route(admin_path!("/kms/backup"), post(backup))
        .route(admin_path!("/kms/restore"), post(restore))
}

/// The body limit of the admin route at `path`.
pub(super) fn body_limit(path: &str) -> usize {
    if path == admin_path!("/kms/restore") {
        MAX_RESTORE_BYTES
    } else {
        MAX_BODY_BYTES
    }
}

/// The backup secret: a passphrase (Argon2id) or a key of at least 32
/// random bytes, base64 (HKDF).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupBody {
    passphrase: Option<Zeroizing<String>>,
    key: Option<Zeroizing<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    passphrase: Option<Zeroizing<String>>,
    key: Option<Zeroizing<String>>,
    bundle: serde_json::Value,
    #[serde(default)]
    dry_run: bool,
    on_conflict: Option<String>,
}

fn secret(
    passphrase: Option<Zeroizing<String>>,
    key: Option<Zeroizing<String>>,
) -> Result<SealingSecret, KmsError> {
    match (passphrase, key) {
        (Some(p), None) if !p.is_empty() => Ok(SealingSecret::Passphrase(SecretBytes::new(
            p.as_bytes().to_vec(),
        ))),
        (None, Some(k)) => {
            let bytes = Zeroizing::new(
                B64.decode(k.as_bytes())
                    .map_err(|_| KmsError::InvalidArgument("key: not valid base64".into()))?,
            );
            if bytes.len() < 32 {
                return Err(KmsError::InvalidArgument(
                    "key: a backup key must be at least 32 random bytes".into(),
                ));
            }
            Ok(SealingSecret::KeyFile(SecretBytes::new(bytes.to_vec())))
        }
        _ => Err(KmsError::InvalidArgument(format!(
            "give exactly one of \"passphrase\" (at least {MIN_PASSPHRASE_LEN} bytes) or \"key\" (base64 of at least 32 random bytes)"
        ))),
    }
}

async fn backup(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: BackupBody = parse_body(&body)?;
    let secret = secret(body.passphrase, body.key)?;
    let bundle = kms.backup(&cx, secret).await?;
    let mut response = (StatusCode::OK, bundle).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn restore(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: RestoreBody = parse_body(&body)?;
    let on_conflict = match &body.on_conflict {
        Some(s) => OnConflict::parse(s)?,
        None => OnConflict::default(),
    };
    let bundle = serde_json::to_vec(&body.bundle)
        .map_err(|e| KmsError::Internal(format!("re-encoding the bundle: {e}")))?;
    let secret = secret(body.passphrase, body.key)?;
    let report = kms
        .restore(&cx, bundle, secret, body.dry_run, on_conflict)
        .await?;
    Ok(json_response(StatusCode::OK, &report))
}
