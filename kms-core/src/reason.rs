//! The machine-readable reasons of kmsd's errors.
//!
//! kmsd puts one in the `google.rpc.ErrorInfo` of every error status it
//! answers (domain `kmsd`); kms-client reads it back to decide what to
//! retry and how to answer an S3 request. docs/api.md's error table lists
//! them, and a test in kmsd keeps the table and this enum in step.

use std::{fmt, str::FromStr};

/// Declares the enum, its wire strings and the list of all of them at once,
/// so the three cannot disagree.
macro_rules! reasons {
    ($($(#[doc = $doc:literal])+ $variant:ident => $wire:literal,)+) => {
        /// Why kmsd refused a request, as its status details name it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ErrorReason {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl ErrorReason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [ErrorReason] = &[$(ErrorReason::$variant,)+];

            /// The reason as it travels (`SCREAMING_SNAKE_CASE`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorReason::$variant => $wire,)+
                }
            }
        }

        impl FromStr for ErrorReason {
            type Err = UnknownReason;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($wire => Ok(ErrorReason::$variant),)+
                    _ => Err(UnknownReason),
                }
            }
        }
    };
}

reasons! {
    /// A key id is not of the accepted form.
    InvalidKeyId => "INVALID_KEY_ID",
    /// The id is reserved for kmsd's own keys.
    ReservedKeyId => "RESERVED_KEY_ID",
    /// An encryption context breaks a limit.
    InvalidEncryptionContext => "INVALID_ENCRYPTION_CONTEXT",
    /// Another field is out of range.
    InvalidArgument => "INVALID_ARGUMENT",
    /// The blob cannot be decoded.
    MalformedCiphertext => "MALFORMED_CIPHERTEXT",
    /// The blob did not authenticate.
    InvalidCiphertext => "INVALID_CIPHERTEXT",
    /// The blob names another key than the caller expected.
    IncorrectKey => "INCORRECT_KEY",
    /// No key id was given and no default is configured.
    NoDefaultKey => "NO_DEFAULT_KEY",
    /// The key does not exist.
    KeyNotFound => "KEY_NOT_FOUND",
    /// The key exists but not this version.
    KeyVersionNotFound => "KEY_VERSION_NOT_FOUND",
    /// The key id is taken.
    KeyAlreadyExists => "KEY_ALREADY_EXISTS",
    /// The key is disabled.
    KeyDisabled => "KEY_DISABLED",
    /// The key is scheduled for deletion.
    KeyPendingDeletion => "KEY_PENDING_DELETION",
    /// The requested state change does not apply to the key's state.
    InvalidKeyState => "INVALID_KEY_STATE",
    /// The key's stored form is damaged.
    KeyUnreadable => "KEY_UNREADABLE",
    /// The backend cannot be reached or is not serving.
    BackendUnavailable => "BACKEND_UNAVAILABLE",
    /// The backend refused kmsd's own credentials.
    BackendPermissionDenied => "BACKEND_PERMISSION_DENIED",
    /// The blob was sealed by a backend this kmsd does not have configured.
    BackendNotConfigured => "BACKEND_NOT_CONFIGURED",
    /// A backend configuration is invalid.
    InvalidConfig => "INVALID_CONFIG",
    /// A backend could not be built or failed its health check.
    BackendStartFailed => "BACKEND_START_FAILED",
    /// The lifecycle transition does not apply to the current state.
    InvalidServiceState => "INVALID_SERVICE_STATE",
    /// kmsd is not in the Running state.
    NotRunning => "NOT_RUNNING",
    /// The caller's identity may not make this call.
    PermissionDenied => "PERMISSION_DENIED",
    /// Too many requests are in flight.
    Overloaded => "OVERLOADED",
    /// The request's audit line could not be written.
    AuditUnavailable => "AUDIT_UNAVAILABLE",
    /// A bug or an unexpected local failure.
    Internal => "INTERNAL",
    /// An alias name is not of the accepted form.
    InvalidAliasName => "INVALID_ALIAS_NAME",
    /// The alias does not exist.
    AliasNotFound => "ALIAS_NOT_FOUND",
    /// The alias name is taken.
    AliasAlreadyExists => "ALIAS_ALREADY_EXISTS",
    /// A reload found a broken file; the previous settings stay in force.
    ReloadFailed => "RELOAD_FAILED",
    /// No pending import token has this id (never issued, or spent).
    ImportTokenNotFound => "IMPORT_TOKEN_NOT_FOUND",
    /// The import token's time to live has passed.
    ImportTokenExpired => "IMPORT_TOKEN_EXPIRED",
    /// ScheduleKeyDeletion without force, of a key used within the
    /// deletion guard window.
    KeyStillReferenced => "KEY_STILL_REFERENCED",
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason string that is not an [`ErrorReason`] (from a newer kmsd, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown error reason")]
pub struct UnknownReason;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_parses_back() {
        for reason in ErrorReason::ALL {
            assert_eq!(reason.as_str().parse::<ErrorReason>(), Ok(*reason));
            assert_eq!(reason.to_string(), reason.as_str());
        }
        assert_eq!("key_not_found".parse::<ErrorReason>(), Err(UnknownReason));
        let distinct: std::collections::BTreeSet<_> =
            ErrorReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(distinct.len(), ErrorReason::ALL.len());
    }
}
