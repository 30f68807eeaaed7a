//! Responses of the HTTP API: JSON bodies, and errors as
//! `{"code": "...", "message": "..."}` with a status that is never 2xx.
//!
//! Errors of the service come from the same [`KmsError`] the gRPC API
//! uses, with the status of [`KmsError::http_status`] and the reason of
//! [`KmsError::code_and_reason`]; only transport-level refusals (auth,
//! unknown route, oversized body) are decided here.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};

use super::{MAX_BODY_BYTES, sigv4::AuthError};
use crate::{
    config::{redact_json_error, redact_message},
    error::KmsError,
};

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// The service refused or failed.
    Kms(KmsError),
    /// The request is not authenticated.
    Auth(AuthError),
    /// No such route.
    RouteNotFound,
    /// The route exists, not with this method.
    MethodNotAllowed,
    /// The body is larger than [`MAX_BODY_BYTES`].
    PayloadTooLarge,
    /// The body did not arrive in time.
    BodyTimeout,
    /// The body could not be read.
    BodyUnreadable,
}

impl From<KmsError> for ApiError {
    fn from(err: KmsError) -> Self {
        ApiError::Kms(err)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::Kms(err) => {
                if let KmsError::Internal(detail) = &err {
                    tracing::error!(%detail, "internal error");
                }
                let (_, reason) = err.code_and_reason();
                // REST errors never quote a value of the request (it may be
                // a misplaced secret); gRPC echoes a short key-id prefix.
                let message = match &err {
                    KmsError::InvalidKeyId { reason, .. } => format!("invalid key id: {reason}"),
                    other => other.public_message(),
                };
                (err.http_status(), reason, message)
            }
            ApiError::Auth(err) => (err.http_status(), err.s3_code(), err.public_message()),
            ApiError::RouteNotFound => (
                StatusCode::NOT_FOUND,
                "ROUTE_NOT_FOUND",
                "no such endpoint; see docs/admin-api.md".to_owned(),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "this endpoint does not take this method; see docs/admin-api.md".to_owned(),
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            ),
            ApiError::BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                "the body did not arrive in time".to_owned(),
            ),
            ApiError::BodyUnreadable => (
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "the body could not be read".to_owned(),
            ),
        };
        json_response(status, &ErrorBody { code, message })
    }
}

/// A JSON response: pretty-printed (operators read these through awscurl)
/// and never cached, since some carry plaintext data keys.
pub(crate) fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let mut text = match serde_json::to_string_pretty(body) {
        Ok(text) => text,
        Err(e) => {
            // Serialising plain structs and maps of strings cannot fail;
            // should it ever, the caller still gets a JSON error.
            tracing::error!(error = %e, "cannot serialise a response");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"code": "INTERNAL", "message": "internal error; see the kmsd log"}"#,
            )
                .into_response();
        }
    };
    text.push('\n');
    let mut response = (status, text).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Parses a JSON request body; an empty body is `{}`, so endpoints whose
/// fields are all optional take no body at all.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, KmsError> {
    let body = if body.trim_ascii().is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| KmsError::InvalidArgument(format!("request body: {}", redact_json_error(&e))))
}

/// Parses the query string.
pub(crate) fn parse_query<T: DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, KmsError> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| {
            KmsError::InvalidArgument(format!("query string: {}", redact_message(&e.body_text())))
        })
}

pub(crate) async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
