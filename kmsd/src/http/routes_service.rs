//! Service lifecycle endpoints: configure, reconfigure, start, stop,
//! status, config, clear-cache, reload. Bodies are the RustFS admin API's.

use std::collections::BTreeMap;

use axum::{
    Extension, Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::Response,
    routing::{get, post},
};
use serde::{Deserialize, Serialize};

use super::{
    admin_path,
    auth::Caller,
    error::{ApiError, json_response, parse_body},
};
use crate::{
    backend::capabilities::Capabilities,
    clock::rfc3339,
    cluster::{ClusterConfig, Peers},
    config::redact_json_error,
    error::KmsError,
    service::{Kms, ReloadReport},
    status::{self, BackendSummary, StatusReport},
};

pub(super) fn routes() -> Router<Kms> {
    Router::new()
        .route(admin_path!("/kms/configure"), post(configure))
        .route(admin_path!("/kms/reconfigure"), post(reconfigure))
        .route(admin_path!("/kms/start"), post(start))
        .route(admin_path!("/kms/stop"), post(stop))
        .route(admin_path!("/kms/status"), get(status).post(status))
        .route(admin_path!("/kms/service-status"), get(status))
        .route(admin_path!("/kms/config"), get(config))
        .route(admin_path!("/kms/clear-cache"), post(clear_cache))
        .route(admin_path!("/kms/reload"), post(reload))
}

/// A backend without secrets: the settings its builder chose to show.
#[derive(Debug, Serialize)]
struct BackendJson {
    backend_type: &'static str,
    default_key_id: Option<String>,
    settings: BTreeMap<&'static str, String>,
}

impl From<BackendSummary> for BackendJson {
    fn from(b: BackendSummary) -> Self {
        Self {
            backend_type: b.backend_type,
            default_key_id: b.default_key_id.map(|k| k.to_string()),
            settings: b.settings.into_iter().collect(),
        }
    }
}

#[derive(Debug, Serialize)]
struct StatusJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
    status: &'static str,
    healthy: bool,
    backend_type: Option<&'static str>,
    default_key_id: Option<String>,
    backend: Option<BackendJson>,
    previous_backends: Vec<BackendJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    degraded: Option<String>,
    version: &'static str,
    started_at: String,
    persisted: bool,
    config_fingerprint: String,
    config_fields: BTreeMap<&'static str, String>,
    /// What the active (or configured) backend can do, as RustFS reports
    /// it.
    #[serde(skip_serializing_if = "Option::is_none")]
    capabilities: Option<Capabilities>,
    /// With `[cluster] peers`: whether the sidecars agree (RustFS's shape).
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_config: Option<ClusterConfig>,
}

impl StatusJson {
    fn new(report: StatusReport, message: Option<&'static str>) -> Self {
        let backend = report.backend.map(BackendJson::from);
        let capabilities = backend
            .as_ref()
            .and_then(|b| Capabilities::of_type(b.backend_type));
        Self {
            message,
            status: report.state.as_str(),
            healthy: report.healthy,
            backend_type: backend.as_ref().map(|b| b.backend_type),
            default_key_id: backend.as_ref().and_then(|b| b.default_key_id.clone()),
            backend,
            previous_backends: report
                .previous_backends
                .into_iter()
                .map(BackendJson::from)
                .collect(),
            error: report.error,
            degraded: report.degraded,
            version: report.version,
            started_at: rfc3339(report.started_at),
            persisted: report.persisted,
            config_fingerprint: report.fingerprint.hash.clone(),
            config_fields: report.fingerprint.fields.clone(),
            capabilities,
            cluster_config: None,
        }
    }
}

fn status_response(kms: &Kms, message: Option<&'static str>) -> Response {
    let report = status::report(kms);
    json_response(StatusCode::OK, &StatusJson::new(report, message))
}

/// The configure body is a backend configuration as JSON.
/// The body as JSON text; the service parses it once the caller is
/// authorised.
fn backend_config(body: &[u8]) -> Result<&str, KmsError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| KmsError::InvalidConfig("the body is not UTF-8 JSON".into()))?;
    if text.trim().is_empty() {
        return Err(KmsError::InvalidConfig(
            "the body is empty: send the backend configuration as JSON".into(),
        ));
    }
    Ok(text)
}

async fn configure(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    kms.configure(&cx, backend_config(&body)?).await?;
    Ok(status_response(
        &kms,
        Some("configured; start it to serve keys"),
    ))
}

/// Reconfigure takes the configure body plus an optional
/// `discard_previous` (drop the replaced backend instead of keeping it for
/// decryption) or `decrypt_only` (add the backend for decryption only).
async fn reconfigure(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| KmsError::InvalidConfig(format!("request body: {}", redact_json_error(&e))))?;
    let discard_previous = take_flag(&mut value, "discard_previous")?;
    let decrypt_only = take_flag(&mut value, "decrypt_only")?;
    let text = serde_json::to_string(&value)
        .map_err(|e| KmsError::Internal(format!("re-serialising a JSON value: {e}")))?;
    let config = backend_config(text.as_bytes())?;
    if decrypt_only {
        if discard_previous {
            return Err(KmsError::InvalidConfig(
                "decrypt_only and discard_previous exclude each other".into(),
            )
            .into());
        }
        kms.add_decrypt_only(&cx, config).await?;
        return Ok(status_response(
            &kms,
            Some("added for decryption only; the active backend still seals"),
        ));
    }
    kms.reconfigure(&cx, config, discard_previous).await?;
    Ok(status_response(
        &kms,
        Some("reconfigured; new requests use the new backend"),
    ))
}

/// Removes the optional boolean `name` from a reconfigure body (false when
/// absent).
fn take_flag(value: &mut serde_json::Value, name: &str) -> Result<bool, KmsError> {
    match value.as_object_mut().and_then(|o| o.remove(name)) {
        None => Ok(false),
        Some(serde_json::Value::Bool(b)) => Ok(b),
        Some(_) => Err(KmsError::InvalidConfig(format!(
            "{name} must be true or false"
        ))),
    }
}

/// `{"force": true}` is accepted for compatibility; starting is idempotent
/// so it changes nothing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    #[serde(default)]
    force: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyBody {}

async fn start(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: StartBody = parse_body(&body)?;
    if body.force {
        tracing::debug!("start: force has no effect (starting is idempotent)");
    }
    kms.start(&cx).await?;
    Ok(status_response(&kms, Some("running")))
}

async fn stop(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let _: EmptyBody = parse_body(&body)?;
    kms.stop(&cx).await?;
    Ok(status_response(
        &kms,
        Some("stopped; data-plane calls now answer 503"),
    ))
}

/// `GET` and `POST` `status`, and `GET service-status`: the state, health
/// and backend summary, and with `[cluster] peers` whether the sidecars'
/// configuration fingerprints agree.
async fn status(
    State(kms): State<Kms>,
    Extension(peers): Extension<Peers>,
    Caller(cx): Caller,
) -> Result<Response, ApiError> {
    kms.authorize_status(&cx).await?;
    let mut body = StatusJson::new(status::report(&kms), None);
    body.cluster_config = peers.cluster_config(&body.config_fingerprint).await;
    Ok(json_response(StatusCode::OK, &body))
}

#[derive(Debug, Serialize)]
struct ConfigJson {
    status: &'static str,
    backend_type: Option<&'static str>,
    default_key_id: Option<String>,
    backend: Option<BackendJson>,
}

/// The active (or configured) backend's non-secret settings.
async fn config(State(kms): State<Kms>, Caller(cx): Caller) -> Result<Response, ApiError> {
    kms.authorize_status(&cx).await?;
    let report = status::report(&kms);
    let backend = report.backend.map(BackendJson::from);
    Ok(json_response(
        StatusCode::OK,
        &ConfigJson {
            status: report.state.as_str(),
            backend_type: backend.as_ref().map(|b| b.backend_type),
            default_key_id: backend.as_ref().and_then(|b| b.default_key_id.clone()),
            backend,
        },
    ))
}

#[derive(Debug, Serialize)]
struct ClearCacheJson {
    status: &'static str,
    message: &'static str,
    entries_cleared: u64,
}

async fn clear_cache(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let _: EmptyBody = parse_body(&body)?;
    let entries_cleared = kms.clear_cache(&cx).await?;
    Ok(json_response(
        StatusCode::OK,
        &ClearCacheJson {
            status: "success",
            message: "cache cleared successfully",
            entries_cleared,
        },
    ))
}

#[derive(Debug, Serialize)]
struct ReloadJson {
    status: &'static str,
    #[serde(flatten)]
    report: ReloadReport,
}

/// Re-reads what can change while serving, as SIGHUP does.
async fn reload(
    State(kms): State<Kms>,
    Caller(cx): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let _: EmptyBody = parse_body(&body)?;
    let report = kms.reload(&cx).await?;
    Ok(json_response(
        StatusCode::OK,
        &ReloadJson {
            status: "success",
            report,
        },
    ))
}
