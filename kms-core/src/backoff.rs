//! Capped exponential backoff with full jitter, for every retry loop of the
//! workspace (kms-client's calls to kmsd, kmsd's calls to Vault).
//!
//! Before retry `n` (1-based) the caller sleeps a uniformly random time in
//! `[0, min(max, base × 2^(n−1))]` ("full jitter"): clients that failed
//! together do not retry together.

use std::time::Duration;

use crate::crypto;

/// The two numbers of a backoff schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling before the first retry.
    pub base: Duration,
    /// The largest ceiling.
    pub max: Duration,
}

impl Backoff {
    /// The upper bound of the pause before retry `retry` (1-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// A random pause before retry `retry`, within [`ceiling`](Self::ceiling).
    pub fn full_jitter(&self, retry: u32) -> Duration {
        let cap = self.ceiling(retry);
        let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        match crypto::random_u64() {
            Ok(random) => Duration::from_nanos(random % cap_nanos.saturating_add(1)),
            // Without randomness, wait the longest: still bounded, and never
            // hammering the server.
            Err(_) => cap,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let backoff = Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(50),
        };
        let ceilings: Vec<u64> = (1..=5)
            .map(|n| backoff.ceiling(n).as_millis() as u64)
            .collect();
        assert_eq!(ceilings, [10, 20, 40, 50, 50]);
        assert_eq!(backoff.ceiling(0), Duration::from_millis(10));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_millis(50));
    }

    #[test]
    fn pauses_are_jittered_below_the_ceiling() {
        let backoff = Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(50),
        };
        for retry in 1..40 {
            for _ in 0..20 {
                assert!(backoff.full_jitter(retry) <= backoff.ceiling(retry));
            }
        }
        let pauses: std::collections::HashSet<_> =
            (0..20).map(|_| backoff.full_jitter(3)).collect();
        assert!(pauses.len() > 1, "the pauses of one retry differ");
        let zero = Backoff {
            base: Duration::ZERO,
            max: Duration::ZERO,
        };
        assert_eq!(zero.full_jitter(1), Duration::ZERO);
    }
}
