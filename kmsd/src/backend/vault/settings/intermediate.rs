//! `[backend.intermediate_key]`: intermediate-key caching (docs/vault.md,
//! "Intermediate keys"). Off unless `enabled = true`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// `ttl_seconds` when unset: five minutes of exposure bounds what a memory
/// dump of kmsd can open without Vault.
const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// `max_uses` when unset.
const DEFAULT_MAX_USES: u64 = 1_000_000;
/// Each wrap derives a fresh key from a 256-bit seed, so the bound is about
/// exposure, not the cipher; 2^32 keeps one intermediate key's blast radius
/// in the range of GCM's own random-nonce limit.
const MAX_USES_LIMIT: u64 = 1 << 32;

/// The table as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntermediateKey {
    /// Turns the mode on (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How long one intermediate key wraps new data keys, and how long an
    /// opened one is kept for decrypts (default 300, 1..=86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// Wraps per intermediate key before a new one is made (default
    /// 1,000,000; 1..=2^32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u64>,
}

/// The validated settings; present only when the mode is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntermediateKeySettings {
    /// Lifetime of one intermediate key, for wrapping and for the cache of
    /// opened ones.
    pub ttl: Duration,
    /// Wraps per intermediate key.
    pub max_uses: u64,
}

impl RawIntermediateKey {
    /// `None` when the mode is off.
    pub fn validate(&self) -> Result<Option<IntermediateKeySettings>, ConfigError> {
        let invalid = |m: &str| ConfigError::Invalid(m.to_owned());
        let ttl = self.ttl_seconds.map_or(DEFAULT_TTL, Duration::from_secs);
        if ttl.is_zero() || ttl > Duration::from_secs(86_400) {
            return Err(invalid(
                "backend.intermediate_key.ttl_seconds must be between 1 and 86400",
            ));
        }
        let max_uses = self.max_uses.unwrap_or(DEFAULT_MAX_USES);
        if max_uses == 0 || max_uses > MAX_USES_LIMIT {
            return Err(invalid(
                "backend.intermediate_key.max_uses must be between 1 and 4294967296",
            ));
        }
        Ok(self
            .enabled
            .unwrap_or(false)
            .then_some(IntermediateKeySettings { ttl, max_uses }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_bounded() {
        assert_eq!(RawIntermediateKey::default().validate().unwrap(), None);
        let on = RawIntermediateKey {
            enabled: Some(true),
            ..Default::default()
        };
        assert_eq!(
            on.validate().unwrap(),
            Some(IntermediateKeySettings {
                ttl: DEFAULT_TTL,
                max_uses: DEFAULT_MAX_USES
            })
        );
        for bad in [
            RawIntermediateKey {
                ttl_seconds: Some(0),
                ..on.clone()
            },
            RawIntermediateKey {
                ttl_seconds: Some(86_401),
                ..on.clone()
            },
            RawIntermediateKey {
                max_uses: Some(0),
                ..on.clone()
            },
            RawIntermediateKey {
                max_uses: Some(MAX_USES_LIMIT + 1),
                ..on.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
