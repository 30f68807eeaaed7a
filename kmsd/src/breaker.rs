//! A circuit breaker in front of a remote backend (Vault): once the backend
//! is known to be down, attempts to reach it fail at once instead of each
//! waiting for its own deadline, while one probe task checks the backend
//! and closes the breaker as soon as it answers again.
//!
//! It sits under the backend, around each network attempt, not around the
//! service's calls: a call that needs no round trip (an intermediate key
//! in memory, key metadata read a moment ago) is still served while the
//! breaker is open.
//!
//! When it opens:
//! - on the first attempt that times out while other attempts are in
//!   flight: they are stuck behind the same unresponsive server, and are
//!   released at once with the breaker's error rather than left to run
//!   out their own deadlines;
//! - after `failure_threshold` consecutive failed attempts otherwise (a
//!   refused connection, a sealed Vault, a lone timeout).
//!
//! Only failures of the backend itself count; any answer (even "permission
//! denied" or "bad request") shows the backend is up.

use std::{
    future::Future,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::watch;

use crate::metrics::Metrics;

/// When the breaker opens and how fast it probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failed attempts that open the breaker (0 disables it).
    pub failure_threshold: u32,
    /// How often the backend is probed while the breaker is open.
    pub probe_interval: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            probe_interval: Duration::from_millis(200),
        }
    }
}

/// What one attempt to reach the backend came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The backend answered (whatever it said).
    Answered,
    /// It could not be reached or is not serving (refused, reset, sealed).
    Failed(String),
    /// It did not answer within the attempt's deadline.
    TimedOut(String),
}

/// The breaker is open: why, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// When it opened.
    pub since: Instant,
    /// The failure that opened it (or the last one seen).
    pub cause: String,
}

impl std::fmt::Display for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "circuit breaker open for {} (last failure: {}); kmsd probes the backend in the background",
            crate::clock::Secs(self.since.elapsed()),
            self.cause
        )
    }
}

/// The breaker of one backend instance.
#[derive(Debug)]
pub struct Breaker {
    backend: &'static str,
    settings: BreakerSettings,
    failures: AtomicU32,
    in_flight: AtomicU32,
    /// `Some(since)` while open; a watch so attempts in flight can be
    /// released the moment it opens.
    state: watch::Sender<Option<Instant>>,
    /// What the backend's last failure was: callers refused by the open
    /// breaker learn the cause (say, "Vault is sealed"). Written only on
    /// failures.
    last_failure: Mutex<String>,
    metrics: Metrics,
}

/// One attempt in flight; counted until dropped.
#[derive(Debug)]
pub struct Flight<'a> {
    breaker: &'a Breaker,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.breaker.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Breaker {
    /// A closed breaker.
    pub fn new(backend: &'static str, settings: BreakerSettings, metrics: Metrics) -> Self {
        metrics.set_breaker_open(backend, false);
        Self {
            backend,
            settings,
            failures: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            state: watch::Sender::new(None),
            last_failure: Mutex::new(String::new()),
            metrics,
        }
    }

    /// Lets an attempt through while closed; fails at once while open.
    pub fn admit(&self) -> Result<Flight<'_>, Open> {
        if let Some(open) = self.open() {
            return Err(open);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Ok(Flight { breaker: self })
    }

    /// Why and since when the breaker is open, if it is.
    pub fn open(&self) -> Option<Open> {
        let since = (*self.state.borrow())?;
        Some(Open {
            since,
            cause: self.last_failure(),
        })
    }

    /// Whether the breaker is open.
    #[cfg(test)]
    pub fn is_open(&self) -> bool {
        self.state.borrow().is_some()
    }

    fn last_failure(&self) -> String {
        self.last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Resolves once the breaker is open (at once if it is): an attempt in
    /// flight races its answer against this.
    pub fn opened(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut state = self.state.subscribe();
        async move {
            if state.wait_for(Option::is_some).await.is_err() {
                // The breaker is gone, so is whoever waits on it.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Records what an attempt came to.
    pub fn record(&self, flight: Flight<'_>, outcome: Outcome) {
        // Others in flight besides this one.
        let others = self.in_flight.load(Ordering::Acquire).saturating_sub(1);
        drop(flight);
        let (detail, timed_out) = match outcome {
            Outcome::Answered => {
                // Skip the store when there is nothing to reset, so the hot
                // path does not write a shared cache line.
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
                return;
            }
            Outcome::Failed(detail) => (detail, false),
            Outcome::TimedOut(detail) => (detail, true),
        };
        if self.settings.failure_threshold == 0 {
            return;
        }
        *self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = detail;
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if (timed_out && others > 0) || failures >= self.settings.failure_threshold {
            self.trip(failures, others);
        }
    }

    fn trip(&self, failures: u32, in_flight: u32) {
        let opened = self.state.send_if_modified(|state| {
            if state.is_some() {
                return false;
            }
            *state = Some(Instant::now());
            true
        });
        if opened {
            tracing::warn!(
                backend = self.backend,
                failures,
                in_flight,
                cause = %self.last_failure(),
                "circuit breaker opened: calls that need the backend fail at once until it answers again"
            );
            self.metrics.set_breaker_open(self.backend, true);
        }
    }

    /// Closes the breaker: the backend answered a health check.
    pub fn close(&self) {
        self.failures.store(0, Ordering::Relaxed);
        let closed = self.state.send_if_modified(|state| state.take().is_some());
        if closed {
            self.metrics.set_breaker_open(self.backend, false);
            tracing::info!(
                backend = self.backend,
                "circuit breaker closed: the backend answers again"
            );
        }
    }

    /// Waits for the breaker to open, probes with `check` every probe
    /// interval until it succeeds, closes the breaker, and starts over;
    /// forever. Spawn it with the lifetime of the backend that owns the
    /// breaker (and abort it when the backend goes), so it never keeps the
    /// backend or what it holds alive.
    ///
    /// A failed probe becomes the breaker's cause, so callers refused while
    /// it is open learn what is wrong now (say, "sealed" after a restart),
    /// not what opened it.
    pub async fn probe_while_open<F, Fut, E>(&self, check: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        loop {
            self.opened().await;
            loop {
                tokio::time::sleep(self.settings.probe_interval).await;
                match check().await {
                    Ok(()) => {
                        self.close();
                        break;
                    }
                    Err(e) => {
                        *self
                            .last_failure
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = e.to_string();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use super::*;

    fn breaker(threshold: u32) -> Arc<Breaker> {
        Arc::new(Breaker::new(
            "vault",
            BreakerSettings {
                failure_threshold: threshold,
                probe_interval: Duration::from_millis(10),
            },
            Metrics::new(),
        ))
    }

    fn fail(breaker: &Breaker) {
        let flight = breaker.admit().unwrap();
        breaker.record(flight, Outcome::Failed("down".into()));
    }

    #[tokio::test]
    async fn opens_after_the_threshold_and_closes_when_the_probe_succeeds() {
        let breaker = breaker(3);
        fail(&breaker);
        let flight = breaker.admit().unwrap();
        breaker.record(flight, Outcome::Answered);
        fail(&breaker);
        fail(&breaker);
        assert!(!breaker.is_open(), "an answer reset the count");
        fail(&breaker);
        let refused = breaker.admit().unwrap_err().to_string();
        assert!(refused.contains("last failure: down"), "{refused}");

        let up = Arc::new(AtomicBool::new(false));
        let probe = {
            let (breaker, up) = (Arc::clone(&breaker), Arc::clone(&up));
            tokio::spawn(async move {
                breaker
                    .probe_while_open(|| {
                        let up = up.load(Ordering::Relaxed);
                        async move { if up { Ok(()) } else { Err("down") } }
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(breaker.is_open());
        up.store(true, Ordering::Relaxed);
        while breaker.is_open() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        breaker.admit().unwrap();
        probe.abort();
    }

    #[tokio::test]
    async fn a_timeout_with_others_in_flight_opens_it_at_once_and_releases_them() {
        let breaker = breaker(5);
        // A lone timeout counts as one failure.
        let flight = breaker.admit().unwrap();
        breaker.record(flight, Outcome::TimedOut("slow".into()));
        assert!(!breaker.is_open());

        let stuck = breaker.admit().unwrap();
        let released = tokio::spawn(breaker.opened());
        let flight = breaker.admit().unwrap();
        breaker.record(flight, Outcome::TimedOut("no answer".into()));
        assert!(breaker.is_open(), "a timeout while another attempt waits");
        tokio::time::timeout(Duration::from_secs(5), released)
            .await
            .expect("the waiting attempt is released")
            .unwrap();
        drop(stuck);
        assert!(breaker.admit().is_err());
    }

    #[test]
    fn a_zero_threshold_never_opens() {
        let breaker = breaker(0);
        for _ in 0..10 {
            let other = breaker.admit().unwrap();
            let flight = breaker.admit().unwrap();
            breaker.record(flight, Outcome::TimedOut("t".into()));
            drop(other);
        }
        assert!(!breaker.is_open());
    }
}
