//! How a call to Vault can fail, which failures are worth a retry, and
//! what each one means to kmsd's caller.
//!
//! Messages name the Vault operation (`POST transit/encrypt/<key>`), never
//! a token, a secret id or a plaintext: the request carries those, the
//! error is built from the method, the path and Vault's own error text.

use std::time::Duration;

use crate::error::KmsError;

const BACKEND: &str = "vault";

/// A failed call to Vault.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VaultError {
    /// No connection, a TLS failure, or the connection broke.
    #[error("cannot reach Vault at {address}: {reason}")]
    Unreachable {
        /// Vault's address.
        address: String,
        /// The lowest-level cause.
        reason: String,
        /// True when the request never left kmsd (connecting failed), so a
        /// retry is safe whatever the call.
        before_sending: bool,
    },
    /// No answer before the deadline.
    #[error("Vault at {address} did not answer {op} within {}", crate::clock::Secs(*after))]
    Timeout {
        /// Vault's address.
        address: String,
        /// The operation.
        op: String,
        /// The deadline.
        after: Duration,
    },
    /// Not sent: the circuit breaker is open (Vault is known to be down),
    /// or it opened while this request waited for an answer.
    #[error("Vault at {address} is unavailable: {open}")]
    CircuitOpen {
        /// Vault's address.
        address: String,
        /// Why and since when.
        open: crate::breaker::Open,
    },
    /// HTTP 503: the answer of a sealed (or standby-in-trouble) Vault.
    #[error(
        "Vault is sealed or down for maintenance (HTTP 503 to {op}); kmsd recovers once it is unsealed"
    )]
    Sealed {
        /// The operation.
        op: String,
    },
    /// HTTP 403 that a fresh login did not cure.
    #[error(
        "Vault denied {op} (permission denied): the policy of kmsd's token must allow it, see docs/vault.md"
    )]
    Denied {
        /// The operation.
        op: String,
    },
    /// HTTP 404.
    #[error("{}", if *.routed { format!("{op}: not found in Vault") } else { format!("Vault has no handler for {op}: is the mount configured (mount_path, kv_mount)?") })]
    NotFound {
        /// The operation.
        op: String,
        /// False when Vault said the route itself does not exist (a
        /// missing mount), not just the object.
        routed: bool,
    },
    /// HTTP 400.
    #[error("Vault refused {op} (HTTP 400): {message}")]
    BadRequest {
        /// The operation.
        op: String,
        /// Vault's error text.
        message: String,
    },
    /// Any other status.
    #[error("Vault answered HTTP {status} to {op}: {message}")]
    Status {
        /// The status.
        status: u16,
        /// The operation.
        op: String,
        /// Vault's error text.
        message: String,
    },
    /// The answer did not have the expected shape.
    #[error("unexpected answer from Vault to {op}: {reason}")]
    Decode {
        /// The operation.
        op: String,
        /// What was wrong.
        reason: String,
    },
    /// kmsd could not obtain a token (a secret file unreadable, a login
    /// refused).
    #[error("cannot authenticate to Vault: {0}")]
    Auth(String),
}

impl VaultError {
    /// Whether Vault certainly did not act on the request, so that even a
    /// write may be sent again (to this node or another): nothing was
    /// sent (connection refused), the node is sealed, it is a standby
    /// that redirects (307) or answers 429, or it is a standby that does
    /// not know the new active node yet (the 500 of an election).
    pub fn not_processed(&self) -> bool {
        match self {
            VaultError::Unreachable { before_sending, .. } => *before_sending,
            VaultError::Sealed { .. } => true,
            VaultError::Status {
                status: 307 | 429, ..
            } => true,
            VaultError::Status {
                status: 500,
                message,
                ..
            } => is_election_500(message),
            _ => false,
        }
    }

    /// Whether another attempt may succeed and is safe. Calls that change
    /// state in a way a repeat would change again (rotate, a
    /// check-and-set write) are only retried when the request never left.
    pub fn retryable(&self, idempotent: bool) -> bool {
        if self.not_processed() {
            return true;
        }
        match self {
            VaultError::Unreachable {
                before_sending: true,
                ..
            } => true,
            VaultError::Unreachable { .. }
            | VaultError::Timeout { .. }
            | VaultError::Sealed { .. } => idempotent,
            // Every attempt would meet the open breaker until a probe
            // closes it.
            VaultError::CircuitOpen { .. } => false,
            VaultError::Status { status, .. } => idempotent && (*status >= 500 || *status == 429),
            VaultError::Denied { .. }
            | VaultError::NotFound { .. }
            | VaultError::BadRequest { .. }
            | VaultError::Decode { .. }
            | VaultError::Auth(_) => false,
        }
    }

    /// What the caller of kmsd sees when nothing more specific applies.
    pub fn into_kms(self) -> KmsError {
        let detail = self.to_string();
        match self {
            VaultError::Unreachable { .. }
            | VaultError::Timeout { .. }
            | VaultError::Sealed { .. }
            | VaultError::CircuitOpen { .. }
            | VaultError::NotFound { routed: false, .. } => KmsError::BackendUnavailable {
                backend: BACKEND,
                detail,
            },
            VaultError::Status { status, .. }
                if status >= 500 || status == 429 || status == 307 =>
            {
                KmsError::BackendUnavailable {
                    backend: BACKEND,
                    detail,
                }
            }
            VaultError::Denied { .. } | VaultError::Auth(_) => KmsError::BackendPermissionDenied {
                backend: BACKEND,
                detail,
            },
            VaultError::NotFound { routed: true, .. }
            | VaultError::BadRequest { .. }
            | VaultError::Status { .. }
            | VaultError::Decode { .. } => KmsError::Internal(detail),
        }
    }
}

impl VaultError {
    /// What the attempt that ended in `self` tells the circuit breaker.
    pub(crate) fn breaker_outcome(&self) -> crate::breaker::Outcome {
        use crate::breaker::Outcome;
        match self {
            VaultError::Timeout { .. } => Outcome::TimedOut(self.to_string()),
            VaultError::Unreachable { .. } | VaultError::Sealed { .. } => {
                Outcome::Failed(self.to_string())
            }
            // A standby in an election answers: the cluster is there, a
            // new active node is a moment away.
            VaultError::Status {
                status, message, ..
            } if *status >= 500 && !is_election_500(message) => Outcome::Failed(self.to_string()),
            VaultError::CircuitOpen { .. }
            | VaultError::Status { .. }
            | VaultError::Denied { .. }
            | VaultError::NotFound { .. }
            | VaultError::BadRequest { .. }
            | VaultError::Decode { .. }
            | VaultError::Auth(_) => Outcome::Answered,
        }
    }
}

/// The brief 500 of a standby that does not know the new active node yet
/// ("local node not active but active cluster node not found").
pub(crate) fn is_election_500(message: &str) -> bool {
    message.contains("active cluster node not found") || message.contains("local node not active")
}

impl From<VaultError> for KmsError {
    fn from(e: VaultError) -> Self {
        e.into_kms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_failures_are_retried() {
        let refused = VaultError::Unreachable {
            address: "a".into(),
            reason: "refused".into(),
            before_sending: true,
        };
        let broken = VaultError::Unreachable {
            address: "a".into(),
            reason: "reset".into(),
            before_sending: false,
        };
        let sealed = VaultError::Sealed { op: "x".into() };
        let status = |status| VaultError::Status {
            status,
            op: "x".into(),
            message: String::new(),
        };
        assert!(refused.retryable(false));
        assert!(!broken.retryable(false) && broken.retryable(true));
        // Sealed, redirected, standby, election: certainly not processed.
        assert!(sealed.retryable(false) && sealed.retryable(true));
        assert!(status(307).retryable(false) && status(429).retryable(false));
        let election = VaultError::Status {
            status: 500,
            op: "x".into(),
            message: "local node not active but active cluster node not found".into(),
        };
        assert!(election.retryable(false));
        assert!(!status(500).retryable(false) && status(500).retryable(true));
        assert!(status(502).retryable(true) && status(429).retryable(true));
        assert!(!status(502).retryable(false) && !status(405).retryable(true));
        assert!(!VaultError::Denied { op: "x".into() }.retryable(true));
    }

    #[test]
    fn kms_errors_keep_the_path_and_say_sealed() {
        let e = KmsError::from(VaultError::Sealed {
            op: "POST transit/encrypt/k".into(),
        });
        assert!(
            matches!(&e, KmsError::BackendUnavailable { detail, .. } if detail.contains("sealed"))
        );
        let e = KmsError::from(VaultError::Denied {
            op: "POST transit/keys/k/rotate".into(),
        });
        assert!(
            matches!(&e, KmsError::BackendPermissionDenied { detail, .. } if detail.contains("transit/keys/k/rotate"))
        );
        let e = KmsError::from(VaultError::NotFound {
            op: "GET nope/keys/k".into(),
            routed: false,
        });
        assert!(
            matches!(&e, KmsError::BackendUnavailable { detail, .. } if detail.contains("mount"))
        );
    }
}
