//! kmsd's Vault token and its lifecycle.
//!
//! - A background task renews the token (`auth/token/renew-self`) at two
//!   thirds of its lease. When Vault caps a renewal (the token nears its
//!   max TTL) or refuses it, an AppRole login replaces the token; a token
//!   given to kmsd is re-read from its file or variable instead.
//! - A 403 may mean a dead token or a policy that forbids the call. The
//!   first request that sees it takes a lock, asks Vault whether the token
//!   is alive (`lookup-self`) and logs in again only if it is not; every
//!   other request that failed with the same token waits on that lock and
//!   then retries with whatever token the first one left. One 403 storm,
//!   one login.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use kms_core::SecretString;
use reqwest::header::HeaderValue;
use serde::Deserialize;
use tokio::{sync::Notify, time::Instant};
use zeroize::{Zeroize, Zeroizing};

use super::{
    error::VaultError,
    request::{self, VaultRequest},
    sender::Sender,
    settings::{AuthSettings, RawSecret, read_secret},
};

/// A given token whose renewals Vault caps below this is left to expire
/// (kmsd cannot log in by itself).
const MIN_RENEWABLE_LEASE: Duration = Duration::from_secs(2);

/// What the renewal task does next.
enum Next {
    /// Keep renewing the (possibly new) current token.
    Renew,
    /// Wait until a request replaces the token.
    Idle,
}

/// After a 403 was found to come from a live token (a policy denial),
/// further 403s within this window are not re-checked.
const DENIAL_RECHECK: Duration = Duration::from_secs(1);

/// One token and what Vault said about its lease.
pub(crate) struct TokenState {
    token: SecretString,
    /// The header value sent with every request, built once per token and
    /// marked sensitive so no HTTP log prints it.
    header: HeaderValue,
    generation: u64,
    /// `None`: the token never expires (a root or periodic-less service
    /// token with no TTL).
    lease: Option<Duration>,
    /// The lease the token was issued with: what renewals ask for.
    issued_lease: Option<Duration>,
    renewable: bool,
    /// When the current lease started.
    since: Instant,
}

impl std::fmt::Debug for TokenState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenState")
            .field("generation", &self.generation)
            .field("lease", &self.lease)
            .field("renewable", &self.renewable)
            .finish_non_exhaustive()
    }
}

impl TokenState {
    fn new(
        token: SecretString,
        lease: u64,
        renewable: bool,
        generation: u64,
    ) -> Result<Self, VaultError> {
        let mut header = HeaderValue::from_str(token.expose_secret()).map_err(|_| {
            VaultError::Auth("the token holds characters a header cannot carry".into())
        })?;
        header.set_sensitive(true);
        let lease = (lease > 0).then(|| Duration::from_secs(lease));
        Ok(Self {
            token,
            header,
            generation,
            lease,
            issued_lease: lease,
            renewable,
            since: Instant::now(),
        })
    }

    /// Sends `req` with this token: the one place a token is attached to
    /// a request (the transport puts it in `X-Vault-Token`).
    pub(crate) async fn send(
        &self,
        sender: &Sender,
        req: &VaultRequest,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        sender.send(req, Some(&self.header)).await
    }

    /// Changes each time the token is replaced (not when renewed).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    fn expires_at(&self) -> Option<Instant> {
        self.lease.map(|lease| self.since + lease)
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthStats {
    /// Tokens obtained after the first (AppRole logins, token reloads).
    pub relogins: u64,
    /// Successful renewals.
    pub renewals: u64,
    /// Time left on the current token; `None` if it does not expire.
    pub token_ttl: Option<Duration>,
}

/// The token holder.
pub(crate) struct Auth {
    method: AuthSettings,
    state: ArcSwap<TokenState>,
    /// Serialises token replacement; holds when a 403 was last found to be
    /// a policy denial.
    refresh: tokio::sync::Mutex<Option<Instant>>,
    /// Wakes the renewal task when the token is replaced.
    changed: Notify,
    relogins: AtomicU64,
    renewals: AtomicU64,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("method", &self.method.describe())
            .field("state", &*self.state.load())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct AuthBlock {
    client_token: RawSecret,
    lease_duration: u64,
    renewable: bool,
}

#[derive(Deserialize)]
struct AuthEnvelope {
    auth: Option<AuthBlock>,
}

/// The fields of `lookup-self` kmsd needs (not `id`, the token itself).
#[derive(Deserialize)]
struct LookupSelf {
    // Root tokens carry neither.
    #[serde(default)]
    ttl: u64,
    #[serde(default)]
    renewable: bool,
}

impl Auth {
    /// Obtains the first token: logs in, or checks the given token.
    pub(crate) async fn establish(
        method: AuthSettings,
        sender: &Sender,
    ) -> Result<Self, VaultError> {
        let state = fetch_token(&method, sender, 0).await?;
        tracing::info!(method = %method.describe(), ttl = ?state.lease, renewable = state.renewable, "authenticated to Vault");
        Ok(Self {
            method,
            state: ArcSwap::from_pointee(state),
            refresh: tokio::sync::Mutex::new(None),
            changed: Notify::new(),
            relogins: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
        })
    }

    /// The current token.
    pub(crate) fn current(&self) -> Arc<TokenState> {
        self.state.load_full()
    }

    /// Counters and the token's remaining TTL.
    pub(crate) fn stats(&self) -> AuthStats {
        AuthStats {
            relogins: self.relogins.load(Ordering::Relaxed),
            renewals: self.renewals.load(Ordering::Relaxed),
            token_ttl: self
                .current()
                .expires_at()
                .map(|at| at.saturating_duration_since(Instant::now())),
        }
    }

    /// Called after a 403 with the token of `generation`. Returns whether
    /// the request should be sent again with the (new) current token.
    pub(crate) async fn recover_from_denial(
        &self,
        sender: &Sender,
        generation: u64,
    ) -> Result<bool, VaultError> {
        let mut genuine_at = self.refresh.lock().await;
        let current = self.current();
        if current.generation != generation {
            return Ok(true);
        }
        if genuine_at.is_some_and(|at| at.elapsed() < DENIAL_RECHECK) {
            return Ok(false);
        }
        match lookup_self(sender, &current).await {
            Ok(_) => {
                *genuine_at = Some(Instant::now());
                Ok(false)
            }
            Err(VaultError::Denied { .. }) => {
                tracing::warn!(
                    "Vault rejected kmsd's token (expired or revoked); obtaining a new one"
                );
                if self.replace(sender).await? {
                    Ok(true)
                } else {
                    Err(VaultError::Auth(format!(
                        "Vault rejects kmsd's token (expired or revoked) and its source ({}) holds no other; give kmsd a valid token",
                        self.method.describe()
                    )))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Obtains a new token and makes it current. `Ok(false)`: the token was
    /// given to kmsd and its file or variable still holds the same one, so
    /// there is nothing to switch to.
    async fn replace(&self, sender: &Sender) -> Result<bool, VaultError> {
        let old = self.current();
        if let AuthSettings::Token(source) = &self.method {
            let token = read_secret(source).await.map_err(VaultError::Auth)?;
            if token.expose_secret() == old.token.expose_secret() {
                return Ok(false);
            }
        }
        let new = fetch_token(&self.method, sender, old.generation + 1).await?;
        self.state.store(Arc::new(new));
        self.relogins.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_one();
        Ok(true)
    }

    /// Renews the token, or replaces it when renewal cannot keep it alive.
    async fn renew_or_replace(
        &self,
        sender: &Sender,
        state: &TokenState,
    ) -> Result<Next, VaultError> {
        let can_login = matches!(self.method, AuthSettings::AppRole { .. });
        if !state.renewable {
            return self.replace_or_idle(sender, state).await;
        }
        let increment = state.issued_lease.map(|l| format!("{}s", l.as_secs()));
        let endpoint = vaultrs::api::token::requests::RenewTokenSelfRequest { increment };
        let req = request::request(&endpoint, true)?;
        let renewed = match state.send(sender, &req).await {
            Ok(body) => parse_auth(&req.op(), &body)?,
            Err(VaultError::Denied { .. } | VaultError::BadRequest { .. }) => {
                tracing::info!("Vault no longer renews kmsd's token; obtaining a new one");
                return self.replace_or_idle(sender, state).await;
            }
            Err(e) => return Err(e),
        };
        let lease = Duration::from_secs(renewed.lease_duration);
        self.renewals.fetch_add(1, Ordering::Relaxed);
        self.refresh_lease(state.generation, lease);
        // Vault caps a renewal at the token's max TTL: past that point only
        // a new token keeps kmsd authenticated.
        if state.issued_lease.is_some_and(|issued| lease < issued) {
            if can_login {
                tracing::info!(?lease, "kmsd's token nears its max TTL; logging in again");
                return self.replace_or_idle(sender, state).await;
            }
            if lease < MIN_RENEWABLE_LEASE {
                return self.replace_or_idle(sender, state).await;
            }
        }
        Ok(Next::Renew)
    }

    async fn replace_or_idle(
        &self,
        sender: &Sender,
        state: &TokenState,
    ) -> Result<Next, VaultError> {
        if self.replace(sender).await? {
            return Ok(Next::Renew);
        }
        let left = state
            .expires_at()
            .map(|at| at.saturating_duration_since(Instant::now()));
        tracing::warn!(
            token_ttl = ?left,
            source = %self.method.describe(),
            "kmsd's Vault token cannot be renewed any further; give kmsd a new one (its source is re-read whenever Vault rejects the current token)"
        );
        Ok(Next::Idle)
    }

    fn refresh_lease(&self, generation: u64, lease: Duration) {
        self.state.rcu(|st| {
            if st.generation != generation {
                return Arc::clone(st);
            }
            Arc::new(TokenState {
                token: st.token.clone_secret(),
                header: st.header.clone(),
                generation,
                lease: Some(lease),
                issued_lease: st.issued_lease,
                renewable: st.renewable,
                since: Instant::now(),
            })
        });
    }

    /// Keeps the token alive until the task is aborted (when the backend
    /// is dropped).
    pub(crate) async fn maintain(self: Arc<Self>, sender: Arc<Sender>) {
        loop {
            let state = self.current();
            let Some(lease) = state.lease else {
                // A token without TTL needs nothing until it is replaced.
                self.changed.notified().await;
                continue;
            };
            // The floor keeps a lease Vault cut to nothing from spinning.
            let renew_at = (state.since + lease.mul_f64(2.0 / 3.0))
                .max(Instant::now() + Duration::from_millis(100));
            tokio::select! {
                () = tokio::time::sleep_until(renew_at) => {}
                () = self.changed.notified() => continue,
            }
            if self.current().generation != state.generation {
                continue;
            }
            match self.renew_or_replace(&sender, &state).await {
                Ok(Next::Renew) => {}
                // Nothing to do until a 403 makes a request replace it.
                Ok(Next::Idle) => self.changed.notified().await,
                Err(e) => {
                    let left = state.expires_at().map_or(Duration::ZERO, |at| {
                        at.saturating_duration_since(Instant::now())
                    });
                    tracing::warn!(error = %e, token_ttl = ?left, "keeping kmsd's Vault token alive failed; retrying");
                    let pause =
                        (left / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// A token for `method`: an AppRole login, or the configured token checked
/// with `lookup-self`.
async fn fetch_token(
    method: &AuthSettings,
    sender: &Sender,
    generation: u64,
) -> Result<TokenState, VaultError> {
    match method {
        AuthSettings::AppRole {
            mount,
            role_id,
            secret_id,
        } => {
            let role_id = read_secret(role_id).await.map_err(VaultError::Auth)?;
            let secret_id = read_secret(secret_id).await.map_err(VaultError::Auth)?;
            let mut endpoint = vaultrs::api::auth::approle::requests::LoginWithApproleRequest {
                mount: mount.clone(),
                role_id: role_id.expose_secret().to_owned(),
                secret_id: secret_id.expose_secret().to_owned(),
            };
            let req = request::request(&endpoint, true);
            // vaultrs keeps the secret id in a plain String: wipe it now
            // that the (zeroizing) body holds it.
            endpoint.secret_id.zeroize();
            let req = req?;
            let auth = match sender.send(&req, None).await {
                Ok(body) => parse_auth(&req.op(), &body)?,
                Err(VaultError::BadRequest { message, .. }) => {
                    return Err(VaultError::Auth(format!(
                        "AppRole login at auth/{mount} refused: {message}"
                    )));
                }
                Err(e) => return Err(e),
            };
            TokenState::new(
                auth.client_token.0,
                auth.lease_duration,
                auth.renewable,
                generation,
            )
        }
        AuthSettings::Token(source) => {
            let token = read_secret(source).await.map_err(VaultError::Auth)?;
            let probe = TokenState::new(token, 0, false, generation)?;
            let info = match lookup_self(sender, &probe).await {
                Ok(info) => info,
                Err(VaultError::Denied { .. }) => {
                    return Err(VaultError::Auth(format!(
                        "Vault rejects the token from {} (expired, revoked, or lacking auth/token/lookup-self)",
                        source.describe()
                    )));
                }
                Err(e) => return Err(e),
            };
            TokenState::new(probe.token, info.ttl, info.renewable, generation)
        }
    }
}

async fn lookup_self(sender: &Sender, token: &TokenState) -> Result<LookupSelf, VaultError> {
    let req = request::request(
        &vaultrs::api::token::requests::LookupTokenSelfRequest {},
        true,
    )?;
    let body = token.send(sender, &req).await?;
    request::data(&req.op(), &body)
}

fn parse_auth(op: &str, body: &[u8]) -> Result<AuthBlock, VaultError> {
    serde_json::from_slice::<AuthEnvelope>(body)
        .ok()
        .and_then(|e| e.auth)
        .ok_or_else(|| VaultError::Decode {
            op: op.to_owned(),
            reason: "no auth block in the answer".into(),
        })
}
