//! Sending one logical Vault call over the transport: retries with backoff
//! and full jitter for calls that may be repeated, all within one
//! deadline, through the circuit breaker; and the nodes' health poll.
//! Below authentication: the caller passes the token, if any.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use zeroize::Zeroizing;

use super::{
    error::VaultError, nodes::POLL_INTERVAL, request::VaultRequest, settings::RetryPolicy,
    transport::Transport,
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

/// Polls the nodes' health every [`POLL_INTERVAL`] while the
/// backend lives.
pub(crate) async fn watch(sender: std::sync::Weak<Sender>) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(sender) = sender.upgrade() else {
            return;
        };
        // Errors are recorded per node; the breaker's own probe decides
        // about the breaker.
        let _ = sender.transport.health(sender.attempt_timeout).await;
    }
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
}
