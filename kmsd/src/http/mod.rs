//! The HTTP listener (`[admin] listen`): the RustFS-compatible admin REST
//! API under `/rustfs/admin/v3/kms/`, authenticated with AWS SigV4, plus
//! public routes that need no credentials (docs/admin-api.md).
//!
//! ```text
//! router()
//!  ├─ admin_routes()   /rustfs/admin/v3/...   behind auth::require_sigv4
//!  │   ├─ routes_service   configure, start, stop, status, ...
//!  │   ├─ routes_keys      keys, generate-data-key
//!  │   ├─ routes_lifecycle keys/update-description, keys/tag, keys/untag,
//!  │   │                   aliases
//!  │   ├─ routes_rotation  keys/rotation/{enable,disable,status}
//!  │   └─ routes_backup    backup, restore
//!  └─ public_router()  /health/live, /health/ready, /health/backend, /metrics
//!                      (also served alone on the `[metrics]` listener)
//! ```
//!
//! HTTP/1.1 and HTTP/2 (h2c with prior knowledge, or ALPN over TLS) are
//! served on the same port, by `daemon/listen.rs` within the connection
//! limits and timeouts of `daemon/accept.rs`. Without `[admin.tls]` the
//! listener is plain HTTP and must be on loopback (or behind a local TLS
//! proxy: `[admin] danger_allow_non_loopback`).

pub mod auth;
mod error;
pub(crate) mod key_view;
mod routes_backup;
mod routes_import;
mod routes_keys;
mod routes_lifecycle;
mod routes_rotation;
mod routes_service;
pub mod sigv4;

use self::{
    auth::AdminAuth,
    error::{json_response, method_not_allowed, route_not_found},
};
use crate::{cluster::Peers, service::Kms};
use axum::{
    Extension, Router,
    extract::State,
    http::StatusCode,
    middleware,
    response::Response,
    routing::{any, get},
};

pub use self::auth::SecretError;

/// The prefix of every admin route.
pub const ADMIN_PREFIX: &str = "/rustfs/admin/v3";

/// The largest request body accepted. The largest legitimate body, a
/// backend configuration, is well under 4 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An admin route path: the prefix and `$tail`, at compile time.
macro_rules! admin_path {
    ($tail:literal) => {
        concat!("/rustfs/admin/v3", $tail)
    };
}
pub(crate) use admin_path;

/// Every route of the HTTP listener; `peers` are asked for the
/// `cluster_config` block of `status`.
pub fn router(kms: Kms, auth: AdminAuth, peers: Peers) -> Router {
    let kms_for_public = kms.clone();
    Router::new()
        .merge(admin_routes(kms, auth).layer(Extension(peers)))
        .merge(public_routes(kms_for_public))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// The admin API. Every request, including one for an admin path that does
/// not exist, must be signed: unsigned callers learn nothing about routes.
fn admin_routes(kms: Kms, auth: AdminAuth) -> Router {
    Router::new()
        .merge(routes_service::routes())
        .merge(routes_keys::routes())
        .merge(routes_lifecycle::routes())
        .merge(routes_rotation::routes())
        .merge(routes_backup::routes())
        .merge(routes_import::routes())
        .route(admin_path!("/{*rest}"), any(route_not_found))
        .route_layer(middleware::from_fn_with_state(auth, auth::require_sigv4))
        .with_state(kms)
}

/// Routes without authentication: only what an orchestrator's probes and
/// scrapers need, never anything that reveals keys or configuration. The
/// `[metrics]` listener serves these alone, so it may face the pod network.
pub fn public_router(kms: Kms) -> Router {
    public_routes(kms)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

fn public_routes(kms: Kms) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/health/backend", get(backend_health))
        .route("/metrics", get(metrics))
        .with_state(kms)
}

/// Liveness: the process is up and answering HTTP.
async fn live() -> Response {
    json_response(StatusCode::OK, &serde_json::json!({ "status": "live" }))
}

/// The backend's own health, apart from readiness: 503 while it cannot be
/// reached or its self-probe fails, even when kmsd still serves (for
/// alerting; a kubelet should probe `/health/ready`).
async fn backend_health(State(kms): State<Kms>) -> Response {
    if let Err(reason) = kms.running_state() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "not running", "reason": reason }),
        );
    }
    match kms.degraded() {
        None => json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
        Some(reason) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "degraded", "reason": reason }),
        ),
    }
}

/// Readiness: Running and able to serve what kmsd is asked (also while the
/// backend is down, if kmsd serves without it).
async fn ready(State(kms): State<Kms>) -> Response {
    match kms.readiness() {
        Ok(()) => json_response(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        Err(reason) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "not ready", "reason": reason }),
        ),
    }
}

/// The Prometheus text exposition.
async fn metrics(State(kms): State<Kms>) -> Response {
    let mut response = Response::new(axum::body::Body::from(kms.metrics().encode()));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_macro_uses_the_prefix() {
        assert_eq!(admin_path!(""), ADMIN_PREFIX);
    }
}
