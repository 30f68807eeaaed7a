//! Sending one logical Vault call: vaultrs' typed endpoint turned into a
//! request, retries with backoff and full jitter for calls that may be
//! repeated, all within one deadline, and one token refresh when Vault
//! answers 403.

use std::{sync::Arc, time::Duration};

use reqwest::Method;
use rustify::endpoint::Endpoint;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::{
    auth::Auth,
    error::VaultError,
    settings::RetryPolicy,
    transport::{Transport, VaultRequest},
};
use crate::breaker::Breaker;

/// The transport with its retry policy, deadlines and circuit breaker.
#[derive(Debug)]
pub(crate) struct Sender {
    /// The HTTP client.
    pub(crate) transport: Transport,
    /// Retries of failed attempts.
    pub(crate) retry: RetryPolicy,
    /// The deadline of one call, retries included.
    pub(crate) timeout: Duration,
    /// The deadline of one attempt: an unresponsive Vault is given up on
    /// after this, whatever the caller's own deadline.
    pub(crate) attempt_timeout: Duration,
    /// Fails attempts at once while Vault is known to be down.
    pub(crate) breaker: Arc<Breaker>,
}

impl Sender {
    /// Sends `req` with `token`, retrying what [`VaultError::retryable`]
    /// allows until the attempts or the deadline run out.
    pub(crate) async fn send(
        &self,
        req: &VaultRequest,
        token: Option<&reqwest::header::HeaderValue>,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let deadline = Instant::now() + self.timeout;
        let mut attempt = 0u32;
        loop {
            let err = match self.attempt(req, token, deadline).await {
                Ok(body) => return Ok(Zeroizing::new(body)),
                Err(e) => e,
            };
            // The last node of a cluster redirecting (307) or electing
            // (500): an election (1-3 s) is under way. Retry until the
            // deadline, not the attempts, with short pauses.
            let election = self.transport.nodes.len() > 1
                && matches!(err, VaultError::Status { .. })
                && err.not_processed();
            if (attempt >= self.retry.attempts && !election) || !err.retryable(req.idempotent) {
                return Err(err);
            }
            let pause = backoff(&self.retry, if election { attempt.min(2) } else { attempt });
            if Instant::now() + pause >= deadline {
                return Err(err);
            }
            tracing::debug!(op = %req.op(), attempt, error = %err, ?pause, "retrying a Vault call");
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// One attempt, through the breaker, within the attempt deadline (and
    /// what is left of the call's). An attempt waiting for an answer when
    /// the breaker opens (another attempt timed out meanwhile) gives up at
    /// once.
    async fn attempt(
        &self,
        req: &VaultRequest,
        token: Option<&reqwest::header::HeaderValue>,
        deadline: Instant,
    ) -> Result<Vec<u8>, VaultError> {
        let circuit_open = |open| VaultError::CircuitOpen {
            address: self.transport.address().to_owned(),
            open,
        };
        let flight = self.breaker.admit().map_err(circuit_open)?;
        let limit = self
            .attempt_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let opened = self.breaker.opened();
        // Each node gets the attempt deadline; with several nodes one
        // attempt may try them in turn, within the call's deadline.
        tokio::select! {
            biased;
            result = self.transport.send(req, token, self.attempt_timeout, deadline) => {
                let outcome = match &result {
                    Ok(_) => crate::breaker::Outcome::Answered,
                    // With several nodes a timeout is not the cluster being
                    // gone: a frozen active node hangs what standbys forward
                    // to it while they serve reads themselves. Releasing
                    // every attempt in flight would fail those reads; the
                    // breaker opens after `failure_threshold` failures in a
                    // row instead (every node silent).
                    Err(e @ VaultError::Timeout { .. }) if self.transport.nodes.len() > 1 => {
                        crate::breaker::Outcome::Failed(e.to_string())
                    }
                    Err(e) => e.breaker_outcome(),
                };
                self.breaker.record(flight, outcome);
                result
            }
            () = opened => {
                drop(flight);
                Err(match self.breaker.open() {
                    Some(open) => circuit_open(open),
                    None => VaultError::Timeout {
                        address: self.transport.address().to_owned(),
                        op: req.op(),
                        after: limit,
                    },
                })
            }
        }
    }

    /// `GET sys/health` of every node within the attempt deadline, outside
    /// the breaker (it is what the breaker's probe uses); a healthy answer
    /// closes the breaker.
    pub(crate) async fn health(&self) -> Result<(), VaultError> {
        self.transport.health(self.attempt_timeout).await?;
        self.breaker.close();
        Ok(())
    }
}

/// Full jitter: a uniformly random pause below an exponentially growing
/// ceiling, so kmsd instances that failed together do not retry together.
pub(crate) fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    // `attempt` counts from 0: the pause before the first retry is below
    // the initial backoff.
    kms_core::Backoff {
        base: policy.initial_backoff,
        max: policy.max_backoff,
    }
    .full_jitter(attempt.saturating_add(1))
}

/// An authenticated view of Vault: every call carries the current token.
#[derive(Debug, Clone)]
pub(crate) struct VaultClient {
    /// Transport, retries and deadline.
    pub(crate) sender: Arc<Sender>,
    /// The token and its lifecycle.
    pub(crate) auth: Arc<Auth>,
}

impl VaultClient {
    /// Sends `req` with the current token. A 403 gets one chance: the
    /// token is checked (once for all requests that failed with it) and,
    /// if it is dead, replaced; then the request is sent again.
    pub(crate) async fn call(&self, req: &VaultRequest) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let token = self.auth.current();
        match self.sender.send(req, Some(token.header())).await {
            Err(VaultError::Denied { op }) => {
                if self
                    .auth
                    .recover_from_denial(&self.sender, token.generation())
                    .await?
                {
                    let token = self.auth.current();
                    self.sender.send(req, Some(token.header())).await
                } else {
                    Err(VaultError::Denied { op })
                }
            }
            other => other,
        }
    }

    /// Sends a vaultrs endpoint and returns its `data`.
    pub(crate) async fn data<E, T>(&self, endpoint: &E, idempotent: bool) -> Result<T, VaultError>
    where
        E: Endpoint,
        T: DeserializeOwned,
    {
        let req = request(endpoint, idempotent)?;
        let body = self.call(&req).await?;
        data(&req.op(), &body)
    }

    /// Sends a vaultrs endpoint whose answer carries nothing kmsd needs.
    pub(crate) async fn exec<E: Endpoint>(
        &self,
        endpoint: &E,
        idempotent: bool,
    ) -> Result<(), VaultError> {
        let req = request(endpoint, idempotent)?;
        self.call(&req).await.map(drop)
    }
}

/// Turns a vaultrs endpoint into a request.
pub(crate) fn request<E: Endpoint>(
    endpoint: &E,
    idempotent: bool,
) -> Result<VaultRequest, VaultError> {
    let path = endpoint.path();
    // Some vaultrs paths start with '/' (or, for renew-self, a tab); the
    // transport wants them relative to /v1/.
    let path = path.trim().trim_start_matches('/').to_owned();
    let bad = |reason: String| VaultError::Decode {
        op: path.clone(),
        reason,
    };
    let query = endpoint
        .query()
        .map_err(|e| bad(format!("cannot encode the query: {e}")))?;
    let body = endpoint
        .body()
        .map_err(|e| bad(format!("cannot encode the body: {e}")))?
        .filter(|b| !b.is_empty())
        .map(Zeroizing::new);
    let method: Method = endpoint.method().into();
    Ok(VaultRequest {
        // A read (key metadata above all) changes nothing, and standbys
        // answer it themselves: it may be hedged like Transit crypto.
        hedge: method == Method::GET,
        method,
        path,
        query,
        body,
        idempotent,
        batch: false,
    })
}

#[derive(serde::Deserialize)]
struct Envelope<T> {
    data: Option<T>,
}

/// The `data` of a Vault answer.
pub(crate) fn data<T: DeserializeOwned>(op: &str, body: &[u8]) -> Result<T, VaultError> {
    serde_json::from_slice::<Envelope<T>>(body)
        .map_err(|e| VaultError::Decode {
            op: op.to_owned(),
            reason: e.to_string(),
        })?
        .data
        .ok_or_else(|| VaultError::Decode {
            op: op.to_owned(),
            reason: "the answer has no data".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_a_growing_capped_ceiling() {
        let policy = RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        };
        for attempt in 0..20 {
            let ceiling =
                Duration::from_millis(10 * (1 << attempt.min(10))).min(policy.max_backoff);
            for _ in 0..50 {
                assert!(backoff(&policy, attempt) <= ceiling, "attempt {attempt}");
            }
        }
        // Jitter: the pauses of one attempt are not all equal.
        let pauses: std::collections::HashSet<_> = (0..20).map(|_| backoff(&policy, 3)).collect();
        assert!(pauses.len() > 1);
    }

    #[test]
    fn vaultrs_paths_become_relative() {
        let renew = vaultrs::api::token::requests::RenewTokenSelfRequest {
            increment: Some("60s".into()),
        };
        let req = request(&renew, true).unwrap();
        assert_eq!(req.path, "auth/token/renew-self");
        assert_eq!(req.method, reqwest::Method::POST);
        let body = req.body.unwrap();
        assert_eq!(&body[..], br#"{"increment":"60s"}"#);
        let list = vaultrs::api::kv2::requests::ListSecretsRequest {
            mount: "secret".into(),
            path: "a/b".into(),
        };
        let req = request(&list, true).unwrap();
        assert_eq!(req.op(), "LIST secret/metadata/a/b");
        assert!(req.body.is_none());
    }
}
