//! A circuit breaker in front of a backend: after a run of consecutive
//! "backend unavailable" failures, calls fail fast instead of each waiting
//! for its own timeout, while one background task probes the backend and
//! closes the breaker as soon as it answers again.
//!
//! Only failures of the backend itself count; a bad blob, a missing key or
//! a disabled key says nothing about the backend's health.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use crate::{error::KmsError, metrics::Metrics};

/// When the breaker opens and how fast it probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive backend failures that open the breaker (0 disables it).
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

/// The breaker of one backend instance.
#[derive(Debug)]
pub struct Breaker {
    backend: &'static str,
    settings: BreakerSettings,
    failures: AtomicU32,
    open: AtomicBool,
    /// What the backend said last time it failed: callers refused by the
    /// open breaker learn the cause (say, "Vault is sealed"), not only that
    /// the breaker is open. Written only on failures.
    last_failure: std::sync::Mutex<String>,
    metrics: Metrics,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(backend: &'static str, settings: BreakerSettings, metrics: Metrics) -> Self {
        metrics.set_breaker_open(backend, false);
        Self {
            backend,
            settings,
            failures: AtomicU32::new(0),
            open: AtomicBool::new(false),
            last_failure: std::sync::Mutex::new(String::new()),
            metrics,
        }
    }

    /// Fails fast while open.
    pub fn admit(&self) -> Result<(), KmsError> {
        if self.open.load(Ordering::Acquire) {
            let cause = self
                .last_failure
                .lock()
                .map(|c| c.clone())
                .unwrap_or_default();
            return Err(KmsError::BackendUnavailable {
                backend: self.backend,
                detail: format!(
                    "circuit breaker open after repeated failures (last: {cause}); retrying in the background"
                ),
            });
        }
        Ok(())
    }

    /// Whether the breaker is open.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Records a call's outcome. Returns `true` when this failure opened
    /// the breaker: the caller then starts [`Self::probe_until_closed`].
    pub fn record<T>(&self, result: &Result<T, KmsError>) -> bool {
        match result {
            Err(KmsError::BackendUnavailable { detail, .. })
                if self.settings.failure_threshold > 0 =>
            {
                if let Ok(mut last) = self.last_failure.lock() {
                    last.clone_from(detail);
                }
                let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
                if failures >= self.settings.failure_threshold
                    && !self.open.swap(true, Ordering::AcqRel)
                {
                    tracing::warn!(backend = self.backend, failures, "circuit breaker opened");
                    self.metrics.set_breaker_open(self.backend, true);
                    return true;
                }
                false
            }
            Err(_) => false,
            Ok(_) => {
                // Skip the store when there is nothing to reset, so the hot
                // path does not write a shared cache line.
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
                false
            }
        }
    }

    /// Probes with `check` every probe interval until it succeeds, then
    /// closes the breaker.
    pub async fn probe_until_closed<F, Fut>(self: Arc<Self>, check: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), KmsError>>,
    {
        loop {
            tokio::time::sleep(self.settings.probe_interval).await;
            if check().await.is_ok() {
                self.failures.store(0, Ordering::Relaxed);
                self.open.store(false, Ordering::Release);
                self.metrics.set_breaker_open(self.backend, false);
                tracing::info!(
                    backend = self.backend,
                    "circuit breaker closed: the backend answers again"
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    fn unavailable() -> Result<(), KmsError> {
        Err(KmsError::BackendUnavailable {
            backend: "vault",
            detail: "down".into(),
        })
    }

    #[tokio::test]
    async fn opens_after_the_threshold_and_closes_when_the_probe_succeeds() {
        let breaker = Arc::new(Breaker::new(
            "vault",
            BreakerSettings {
                failure_threshold: 3,
                probe_interval: Duration::from_millis(10),
            },
            Metrics::new(),
        ));
        assert!(!breaker.record(&unavailable()));
        assert!(!breaker.record(&Err::<(), _>(KmsError::InvalidCiphertext)));
        assert!(!breaker.record(&unavailable()));
        breaker.admit().unwrap();
        assert!(breaker.record(&unavailable()), "the third failure opens it");
        let refused = breaker.admit().unwrap_err().to_string();
        assert!(refused.contains("last: down"), "{refused}");
        assert!(!breaker.record(&unavailable()), "it opens once");

        let up = Arc::new(AtomicBool::new(false));
        let probe = {
            let up = Arc::clone(&up);
            tokio::spawn(Arc::clone(&breaker).probe_until_closed(move || {
                let up = up.load(Ordering::Relaxed);
                async move { if up { Ok(()) } else { unavailable() } }
            }))
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(breaker.is_open());
        up.store(true, Ordering::Relaxed);
        probe.await.unwrap();
        breaker.admit().unwrap();
    }

    #[test]
    fn successes_reset_the_count() {
        let breaker = Breaker::new("vault", BreakerSettings::default(), Metrics::new());
        for _ in 0..4 {
            breaker.record(&unavailable());
        }
        breaker.record(&Ok::<(), KmsError>(()));
        for _ in 0..4 {
            assert!(!breaker.record(&unavailable()));
        }
    }
}
