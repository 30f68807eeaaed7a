//! The HTTP listener (`[admin] listen`): the RustFS-compatible admin REST
//! API under `/rustfs/admin/v3/kms/`, authenticated with AWS SigV4, plus
//! public routes that need no credentials (docs/admin-api.md).
//!
//! ```text
//! router()
//!  ├─ admin_routes()   /rustfs/admin/v3/...   behind auth::require_sigv4
//!  │   ├─ routes_service   configure, start, stop, status, ...
//!  │   └─ routes_keys      keys, generate-data-key
//!  └─ public_routes()  /health/live, (/health/ready, /metrics: add here)
//! ```
//!
//! HTTP/1.1 and HTTP/2 without TLS (h2c, prior knowledge) are served on
//! the same port. The listener is plain HTTP and meant for loopback: see
//! `[admin] danger_allow_non_loopback`.

pub mod auth;
mod error;
mod routes_keys;
mod routes_service;
pub mod sigv4;

use std::{future::Future, io};

use axum::{
    Router,
    http::StatusCode,
    middleware,
    response::Response,
    routing::{any, get},
};
use tokio::net::TcpListener;

use self::{
    auth::AdminAuth,
    error::{json_response, method_not_allowed, route_not_found},
};
use crate::service::Kms;

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

/// Every route of the HTTP listener.
pub fn router(kms: Kms, auth: AdminAuth) -> Router {
    Router::new()
        .merge(admin_routes(kms, auth))
        .merge(public_routes())
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// The admin API. Every request, including one for an admin path that does
/// not exist, must be signed: unsigned callers learn nothing about routes.
fn admin_routes(kms: Kms, auth: AdminAuth) -> Router {
    Router::new()
        .merge(routes_service::routes())
        .merge(routes_keys::routes())
        .route(admin_path!("/{*rest}"), any(route_not_found))
        .route_layer(middleware::from_fn_with_state(auth, auth::require_sigv4))
        .with_state(kms)
}

/// Routes without authentication: only what an orchestrator's probes and
/// scrapers need, never anything that reveals keys or configuration.
fn public_routes() -> Router {
    Router::new().route("/health/live", get(live))
}

/// Liveness: the process is up and answering HTTP.
async fn live() -> Response {
    json_response(StatusCode::OK, &serde_json::json!({ "status": "live" }))
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_macro_uses_the_prefix() {
        assert_eq!(admin_path!(""), ADMIN_PREFIX);
    }
}
