//! The admin access keys, read at startup and again on reload, and the
//! middleware that lets only SigV4-signed requests through to the admin
//! routes.

use std::{os::unix::fs::PermissionsExt, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use axum::{
    body::Body,
    extract::{FromRequestParts, Request, State},
    http::request::Parts,
    middleware::Next,
    response::{IntoResponse, Response},
};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use kms_core::SecretString;

use super::{
    error::ApiError,
    sigv4::{self, AuthError, Credentials, HostPolicy, Policy, ReplayCache},
};
use crate::{
    clock::Clock,
    config::{AdminConfig, AdminSecretSource},
    request::{Identity, RequestContext},
};

/// How long a client may take to send a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Secrets shorter than this draw a warning at startup.
const SHORT_SECRET: usize = 16;

/// How long before this process started a state-changing request may have
/// been signed: a little slack for a client clock a few seconds behind.
/// Anything older could have been captured before a restart emptied the
/// replay cache.
const BEFORE_START_SLACK: time::Duration = time::Duration::seconds(5);

/// Why an admin secret key could not be read. Never holds the secret.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read the secret key of admin access key {access_key:?} ({source_desc:?}): {reason}"
)]
pub struct SecretError {
    access_key: String,
    source_desc: AdminSecretSource,
    reason: String,
}

/// Everything the SigV4 middleware needs.
#[derive(Debug, Clone)]
pub struct AdminAuth {
    credentials: AdminCredentials,
    policy: Arc<Policy>,
    clock: Arc<dyn Clock>,
    replay: Arc<ReplayCache>,
    started_at: time::OffsetDateTime,
}

/// The admin access keys in force, replaced whole by a reload; requests
/// being verified keep the set they started with.
#[derive(Debug, Clone)]
pub struct AdminCredentials(Arc<ArcSwap<Credentials>>);

impl AdminCredentials {
    /// Reads every access key's secret named by `config`; nothing changes
    /// until [`Self::replace`].
    pub fn read(config: &AdminConfig) -> Result<Credentials, SecretError> {
        let mut credentials = Credentials::default();
        for key in &config.access_keys {
            let secret = read_secret(&key.access_key, &key.secret)?;
            if secret.expose_secret().len() < SHORT_SECRET {
                tracing::warn!(
                    access_key = %key.access_key,
                    "the admin secret key is shorter than {SHORT_SECRET} bytes: acceptable for development only"
                );
            }
            credentials.insert(key.access_key.clone(), secret);
        }
        Ok(credentials)
    }

    /// Puts `credentials` in force for every request verified from now on.
    pub fn replace(&self, credentials: Credentials) {
        self.0.store(Arc::new(credentials));
    }
}

/// The caller of an authenticated admin request, for the service's policy
/// and audit: taken from the request extension the middleware sets.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub(crate) RequestContext);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Only routes behind `require_sigv4` use this extractor; without its
        // extension the request was not authenticated, so refuse it.
        parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .map(Caller)
            .ok_or(ApiError::Auth(sigv4::AuthError::Missing))
    }
}

impl AdminAuth {
    /// Checks requests against `credentials` and `policy`, with `clock`
    /// as the time reference for the 15-minute window.
    pub fn new(credentials: Credentials, policy: Policy, clock: Arc<dyn Clock>) -> Self {
        let started_at = clock.now();
        Self {
            credentials: AdminCredentials(Arc::new(ArcSwap::from_pointee(credentials))),
            policy: Arc::new(policy),
            clock,
            replay: Arc::new(ReplayCache::default()),
            started_at,
        }
    }

    /// Accepts only requests signed for one of `hosts` (known once the
    /// listener is bound).
    pub fn with_hosts(mut self, hosts: HostPolicy) -> Self {
        Arc::make_mut(&mut self.policy).hosts = Some(hosts);
        self
    }

    /// Reads every access key's secret named by `config`.
    pub fn load(config: &AdminConfig, clock: Arc<dyn Clock>) -> Result<Self, SecretError> {
        let credentials = AdminCredentials::read(config)?;
        let policy = Policy {
            region: Some(config.region.clone()),
            ..Policy::default()
        };
        Ok(Self::new(credentials, policy, clock))
    }

    /// The access keys in force, for a reload to replace.
    pub fn credentials(&self) -> AdminCredentials {
        self.credentials.clone()
    }
}

fn read_secret(access_key: &str, source: &AdminSecretSource) -> Result<SecretString, SecretError> {
    let fail = |reason: &str| SecretError {
        access_key: access_key.to_owned(),
        source_desc: source.clone(),
        reason: reason.to_owned(),
    };
    let text = match source {
        AdminSecretSource::File(path) => {
            let metadata = std::fs::metadata(path).map_err(|e| fail(&e.to_string()))?;
            if metadata.permissions().mode() & 0o004 != 0 {
                tracing::warn!(
                    access_key,
                    path = %path.display(),
                    "the admin secret key file is readable by every user; restrict it (chmod 600)"
                );
            }
            let mut bytes = std::fs::read(path).map_err(|e| fail(&e.to_string()))?;
            // Editors add a final newline; it is not part of the secret.
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            String::from_utf8(bytes).map_err(|e| {
                let mut bytes = e.into_bytes();
                zeroize::Zeroize::zeroize(&mut bytes);
                fail("the file is not UTF-8 text")
            })?
        }
        AdminSecretSource::Env(var) => match std::env::var(var) {
            Ok(value) => value,
            Err(std::env::VarError::NotPresent) => return Err(fail("the variable is not set")),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(fail("the variable is not UTF-8 text"));
            }
        },
    };
    let secret = SecretString::new(text);
    if secret.expose_secret().is_empty() {
        return Err(fail("the secret key is empty"));
    }
    Ok(secret)
}

/// Buffers the body (at most [`super::MAX_BODY_BYTES`], a restore's more; within
/// [`BODY_TIMEOUT`]),
/// verifies the signature over it, and passes the request on with the
/// body restored; refuses with 403 otherwise.
pub(crate) async fn require_sigv4(
    State(auth): State<AdminAuth>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let collected = tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(body, super::routes_backup::body_limit(parts.uri.path())).collect(),
    )
    .await;
    let bytes = match collected {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            return ApiError::PayloadTooLarge.into_response();
        }
        Ok(Err(_)) => return ApiError::BodyUnreadable.into_response(),
        Err(_) => return ApiError::BodyTimeout.into_response(),
    };
    let now = auth.clock.now();
    let credentials = auth.credentials.0.load();
    let verified = sigv4::verify(&parts, &bytes, &credentials, &auth.policy, now)
        .and_then(|verified| fresh(&auth, &parts.method, &verified, now).map(|()| verified));
    match verified {
        Ok(verified) => {
            tracing::info!(
                access_key = %verified.access_key,
                method = %parts.method,
                path = parts.uri.path(),
                "admin request"
            );
            parts
                .extensions
                .insert(RequestContext::from(Identity::AdminKey(
                    verified.access_key,
                )));
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => {
            tracing::warn!(
                code = e.s3_code(),
                reason = %e,
                method = %parts.method,
                path = parts.uri.path(),
                "admin request refused"
            );
            ApiError::Auth(e).into_response()
        }
    }
}

/// Refuses a state-changing request whose signature was used before, or
/// that was signed before this process started (the replay cache lives in
/// memory, so it cannot vouch for those). GET and HEAD change nothing and
/// answer the sender only; they are exempt, because identical polls within
/// one second (awscurl in a loop) carry the same signature.
fn fresh(
    auth: &AdminAuth,
    method: &axum::http::Method,
    verified: &sigv4::Verified,
    now: time::OffsetDateTime,
) -> Result<(), AuthError> {
    if matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD) {
        return Ok(());
    }
    if verified.signed_at + BEFORE_START_SLACK < auth.started_at {
        return Err(AuthError::BeforeStart);
    }
    let expires = verified.signed_at + auth.policy.max_skew;
    auth.replay.check_and_insert(
        verified.signature,
        expires.unix_timestamp(),
        now.unix_timestamp(),
    )
}
