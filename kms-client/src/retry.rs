//! Retries with capped exponential backoff and full jitter.
//!
//! Only errors that [`Error::is_transient`] calls transient are retried,
//! and only around data-plane calls (GenerateDataKey, Encrypt, Decrypt,
//! ReEncrypt): each is safe to repeat, because a repeat at worst mints one
//! more data key or blob that nobody stores. Admin calls that change state
//! (CreateKey, RotateKey, ...) are never retried: a timed-out RotateKey may
//! have happened, and repeating it would rotate twice.

use std::{future::Future, time::Duration};

use kms_core::Backoff;

use crate::Error;

/// When and how long to wait before retrying a transient failure.
///
/// Before retry `n` (1-based) the client sleeps a uniformly random time in
/// `[0, min(max_delay, base_delay × 2^(n−1))]` ("full jitter"): clients that
/// failed together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, including the first; 1 disables retries.
    pub max_attempts: u32,
    /// The cap of the first backoff.
    pub base_delay: Duration,
    /// The largest backoff.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// One attempt only.
    pub const NEVER: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    /// The upper bound of the backoff before retry `retry` (1-based).
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        self.schedule().ceiling(retry)
    }

    /// A random backoff before retry `retry`, within [`backoff_cap`](Self::backoff_cap).
    pub fn backoff(&self, retry: u32) -> Duration {
        self.schedule().full_jitter(retry)
    }

    fn schedule(&self) -> Backoff {
        Backoff {
            base: self.base_delay,
            max: self.max_delay,
        }
    }

    /// Runs `call` until it succeeds, fails for good, or runs out of
    /// attempts; the last error is returned.
    pub async fn run<T, F, Fut>(&self, mut call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Err(error) if error.is_transient() && attempt < self.max_attempts => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

impl Default for RetryPolicy {
    /// Four attempts, backoff capped at 50 ms, 100 ms, 200 ms: well under a
    /// second in all, so a caller's own deadline still dominates.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tonic::Code;

    use super::*;

    fn rpc(code: Code) -> Error {
        Error::Rpc {
            code,
            reason: None,
            message: String::new(),
        }
    }

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        }
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let caps: Vec<u128> = (1..=6).map(|n| policy.backoff_cap(n).as_millis()).collect();
        assert_eq!(caps, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.backoff_cap(u32::MAX), Duration::from_secs(1));
        for retry in 1..=6 {
            assert!(policy.backoff(retry) <= policy.backoff_cap(retry));
        }
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let result = quick(4)
            .run(|| async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(rpc(Code::Unavailable)),
                    1 => Err(Error::Rpc {
                        code: Code::ResourceExhausted,
                        reason: Some("OVERLOADED".into()),
                        message: String::new(),
                    }),
                    _ => Ok(7),
                }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn attempts_are_bounded() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = quick(3)
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(rpc(Code::Unavailable))
            })
            .await;
        assert_eq!(result.unwrap_err().code(), Some(Code::Unavailable));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        // RESOURCE_EXHAUSTED without the OVERLOADED reason is a request
        // over the size limit: it fails the same way every time.
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::ResourceExhausted,
        ] {
            let calls = AtomicU32::new(0);
            let result: Result<(), _> = quick(5)
                .run(|| async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(rpc(code))
                })
                .await;
            assert_eq!(result.unwrap_err().code(), Some(code));
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{code:?}");
        }
    }
}
