//! The daemon's error type and its one mapping to gRPC statuses.
//!
//! Messages are written for the caller: they say what was wrong with the
//! request and never contain key material, plaintexts, tokens or passphrases.
//! Internal details (I/O errors, paths) go to the log, not to the caller.

use std::collections::HashMap;

use http::StatusCode;
use kms_core::ErrorReason;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{alias::AliasName, key_id::KeyId};

/// Everything that can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// A key id is not of the accepted form.
    #[error("invalid key id {shown:?}: {reason}")]
    InvalidKeyId {
        /// A short printable prefix of what was given.
        shown: String,
        /// What rule it broke.
        reason: &'static str,
    },
    /// The id is reserved for kmsd's own keys.
    #[error("key id {0} is reserved for kmsd's own use")]
    ReservedKeyId(KeyId),
    /// An alias name is not of the accepted form.
    #[error("invalid alias name {shown:?}: {reason}")]
    InvalidAliasName {
        /// A short printable prefix of what was given.
        shown: String,
        /// What rule it broke.
        reason: &'static str,
    },
    /// An encryption context breaks a limit.
    #[error("invalid encryption context: {0}")]
    InvalidContext(String),
    /// Another field is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The blob cannot be decoded.
    #[error("malformed ciphertext blob: {0}")]
    MalformedBlob(&'static str),
    /// The blob did not authenticate: wrong context, or changed bytes.
    #[error(
        "the ciphertext did not authenticate: the encryption context differs from the one it was sealed with, or the blob was altered"
    )]
    InvalidCiphertext,
    /// The blob names another key than the caller expected.
    #[error("the blob was sealed under key {actual}, not the expected key {expected}")]
    IncorrectKey {
        /// What the caller expected.
        expected: KeyId,
        /// What the blob names.
        actual: KeyId,
    },
    /// No key id was given and no default is configured.
    #[error("no key id was given and no default key is configured")]
    NoDefaultKey,
    /// The key does not exist.
    #[error("key {0} not found")]
    KeyNotFound(KeyId),
    /// The key exists but not this version.
    #[error("key {key_id} has no version {version}")]
    KeyVersionNotFound {
        /// The key.
        key_id: KeyId,
        /// The missing version.
        version: u32,
    },
    /// The key id is taken.
    #[error("key {0} already exists")]
    KeyAlreadyExists(KeyId),
    /// No alias has this name.
    #[error("{0} not found")]
    AliasNotFound(AliasName),
    /// The alias name is taken.
    #[error("{0} already exists")]
    AliasAlreadyExists(AliasName),
    /// The key is disabled.
    #[error("key {0} is disabled")]
    KeyDisabled(KeyId),
    /// The key is scheduled for deletion.
    #[error("key {key_id} is pending deletion (scheduled for {deletion_date})")]
    KeyPendingDeletion {
        /// The key.
        key_id: KeyId,
        /// When it will be destroyed (RFC 3339).
        deletion_date: String,
    },
    /// The requested state change does not apply to the key's state.
    #[error("cannot {action} key {key_id}: it is {state}")]
    InvalidStateTransition {
        /// The key.
        key_id: KeyId,
        /// Its current state.
        state: &'static str,
        /// What was asked.
        action: &'static str,
    },
    /// The key's stored form is damaged; other keys are unaffected.
    #[error("key {0} cannot be read: its stored form is damaged (see the kmsd log)")]
    KeyUnreadable(KeyId),
    /// The backend cannot be reached or is not serving.
    #[error("{backend} backend unavailable: {detail}")]
    BackendUnavailable {
        /// Which backend.
        backend: &'static str,
        /// What happened, without secrets.
        detail: String,
    },
    /// The backend refused kmsd's own credentials.
    #[error("{backend} backend denied access: {detail}")]
    BackendPermissionDenied {
        /// Which backend.
        backend: &'static str,
        /// What was denied (a path, never a token).
        detail: String,
    },
    /// The blob was sealed by a backend this kmsd does not have configured.
    #[error("the blob was sealed by the {0} backend, which this kmsd does not have configured")]
    BackendNotConfigured(&'static str),
    /// A backend configuration is invalid.
    #[error("invalid backend configuration: {0}")]
    InvalidConfig(String),
    /// A backend could not be built or failed its health check.
    #[error("reload refused, the previous settings stay in force: {0}")]
    ReloadFailed(String),

    #[error("the backend could not be started: {0}")]
    BackendStartFailed(String),
    /// The lifecycle transition does not apply to the current state.
    #[error("cannot {action}: kmsd is {state}")]
    InvalidServiceState {
        /// The current state.
        state: &'static str,
        /// What was asked.
        action: &'static str,
    },
    /// kmsd is not in the Running state.
    #[error("kmsd is not serving keys: its state is {0}")]
    NotRunning(&'static str),
    /// The caller's identity may not make this call.
    #[error("permission denied")]
    PermissionDenied,
    /// Too many requests are in flight.
    #[error("kmsd is overloaded: {0}")]
    Overloaded(String),
    /// The request's audit line could not be written, and kmsd refuses
    /// what it cannot audit (`[audit] on_failure = "refuse"`).
    #[error(
        "the audit log cannot be written ({0}); kmsd refuses requests it cannot audit (audit.on_failure = \"refuse\")"
    )]
    AuditUnavailable(String),
    /// No pending import token has this id: never issued, or already
    /// spent (each is good for one ImportKey).
    #[error("import token not found: it was never issued or has been used")]
    ImportTokenNotFound,
    /// The import token's time to live has passed.
    #[error("the import token has expired; get new import parameters")]
    ImportTokenExpired,
    /// A bug or an unexpected local failure; the detail is only logged.
    #[error("internal error: {0}")]
    Internal(String),
    /// ScheduleKeyDeletion without `force` of a key kmsd saw used within
    /// the deletion guard window (`[keys] deletion_guard_window_secs`).
    #[error(
        "key {key_id} was last used at {last_used_at}, within the deletion guard window of {window_secs} s; schedule its deletion with force to override"
    )]
    KeyStillReferenced {
        /// The key.
        key_id: KeyId,
        /// Its last wrap or decrypt seen (RFC 3339).
        last_used_at: String,
        /// The guard window, in seconds.
        window_secs: u64,
    },
}

impl KmsError {
    /// The gRPC code and the machine-readable reason (docs/api.md).
    pub fn code_and_reason(&self) -> (Code, &'static str) {
        let (code, reason) = self.code_and_reason_kind();
        (code, reason.as_str())
    }

    /// [`Self::code_and_reason`] with the reason as kms-core's enum, which
    /// kms-client parses back.
    pub fn code_and_reason_kind(&self) -> (Code, ErrorReason) {
        use ErrorReason as R;
        match self {
            KmsError::InvalidKeyId { .. } => (Code::InvalidArgument, R::InvalidKeyId),
            KmsError::ReservedKeyId(_) => (Code::InvalidArgument, R::ReservedKeyId),
            KmsError::InvalidAliasName { .. } => (Code::InvalidArgument, R::InvalidAliasName),
            KmsError::InvalidContext(_) => (Code::InvalidArgument, R::InvalidEncryptionContext),
            KmsError::InvalidArgument(_) => (Code::InvalidArgument, R::InvalidArgument),
            KmsError::MalformedBlob(_) => (Code::InvalidArgument, R::MalformedCiphertext),
            KmsError::InvalidCiphertext => (Code::InvalidArgument, R::InvalidCiphertext),
            KmsError::IncorrectKey { .. } => (Code::InvalidArgument, R::IncorrectKey),
            KmsError::NoDefaultKey => (Code::FailedPrecondition, R::NoDefaultKey),
            KmsError::KeyNotFound(_) => (Code::NotFound, R::KeyNotFound),
            KmsError::KeyVersionNotFound { .. } => (Code::NotFound, R::KeyVersionNotFound),
            KmsError::KeyAlreadyExists(_) => (Code::AlreadyExists, R::KeyAlreadyExists),
            KmsError::AliasNotFound(_) => (Code::NotFound, R::AliasNotFound),
            KmsError::AliasAlreadyExists(_) => (Code::AlreadyExists, R::AliasAlreadyExists),
            KmsError::KeyDisabled(_) => (Code::FailedPrecondition, R::KeyDisabled),
            KmsError::KeyPendingDeletion { .. } => {
                (Code::FailedPrecondition, R::KeyPendingDeletion)
            }
            KmsError::InvalidStateTransition { .. } => {
                (Code::FailedPrecondition, R::InvalidKeyState)
            }
            KmsError::KeyUnreadable(_) => (Code::DataLoss, R::KeyUnreadable),
            KmsError::BackendUnavailable { .. } => (Code::Unavailable, R::BackendUnavailable),
            KmsError::BackendPermissionDenied { .. } => {
                (Code::PermissionDenied, R::BackendPermissionDenied)
            }
            KmsError::BackendNotConfigured(_) => {
                (Code::FailedPrecondition, R::BackendNotConfigured)
            }
            KmsError::InvalidConfig(_) => (Code::InvalidArgument, R::InvalidConfig),
            KmsError::BackendStartFailed(_) => (Code::FailedPrecondition, R::BackendStartFailed),
            KmsError::ReloadFailed(_) => (Code::FailedPrecondition, R::ReloadFailed),
            KmsError::InvalidServiceState { .. } => {
                (Code::FailedPrecondition, R::InvalidServiceState)
            }
            KmsError::NotRunning(_) => (Code::Unavailable, R::NotRunning),
            KmsError::PermissionDenied => (Code::PermissionDenied, R::PermissionDenied),
            KmsError::Overloaded(_) => (Code::ResourceExhausted, R::Overloaded),
            KmsError::AuditUnavailable(_) => (Code::Unavailable, R::AuditUnavailable),
            KmsError::ImportTokenNotFound => (Code::NotFound, R::ImportTokenNotFound),
            KmsError::ImportTokenExpired => (Code::FailedPrecondition, R::ImportTokenExpired),
            KmsError::Internal(_) => (Code::Internal, R::Internal),
            KmsError::KeyStillReferenced { .. } => {
                (Code::FailedPrecondition, R::KeyStillReferenced)
            }
        }
    }

    /// The HTTP status of the admin REST API (docs/admin-api.md). It
    /// follows the gRPC code of [`Self::code_and_reason`]: invalid input
    /// 400, missing 404, a conflict with the key's or the service's state
    /// 409 (412 is left to HTTP's own conditional requests), not running or
    /// backend unreachable 503.
    pub fn http_status(&self) -> StatusCode {
        match self {
            KmsError::InvalidKeyId { .. }
            | KmsError::ReservedKeyId(_)
            | KmsError::InvalidAliasName { .. }
            | KmsError::InvalidContext(_)
            | KmsError::InvalidArgument(_)
            | KmsError::MalformedBlob(_)
            | KmsError::InvalidCiphertext
            | KmsError::IncorrectKey { .. }
            | KmsError::InvalidConfig(_) => StatusCode::BAD_REQUEST,
            KmsError::KeyNotFound(_)
            | KmsError::KeyVersionNotFound { .. }
            | KmsError::AliasNotFound(_)
            | KmsError::ImportTokenNotFound => StatusCode::NOT_FOUND,
            KmsError::KeyAlreadyExists(_)
            | KmsError::AliasAlreadyExists(_)
            | KmsError::NoDefaultKey
            | KmsError::KeyDisabled(_)
            | KmsError::KeyPendingDeletion { .. }
            | KmsError::InvalidStateTransition { .. }
            | KmsError::BackendNotConfigured(_)
            | KmsError::InvalidServiceState { .. }
            | KmsError::ReloadFailed(_)
            | KmsError::ImportTokenExpired
            | KmsError::KeyStillReferenced { .. } => StatusCode::CONFLICT,
            // The caller's own credentials are fine; the key store refused
            // kmsd's, so this is an upstream failure, not a 403.
            KmsError::BackendPermissionDenied { .. } => StatusCode::BAD_GATEWAY,
            // A failed start leaves kmsd in the Error state, not serving.
            KmsError::BackendStartFailed(_)
            | KmsError::BackendUnavailable { .. }
            | KmsError::NotRunning(_)
            | KmsError::Overloaded(_)
            | KmsError::AuditUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            KmsError::PermissionDenied => StatusCode::FORBIDDEN,
            KmsError::KeyUnreadable(_) | KmsError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message the caller sees.
    pub fn public_message(&self) -> String {
        match self {
            // The detail may hold paths or library errors; it is logged
            // where the error is turned into a status.
            KmsError::Internal(_) => "internal error; see the kmsd log".to_owned(),
            other => other.to_string(),
        }
    }
}

impl From<KmsError> for Status {
    fn from(err: KmsError) -> Self {
        let (code, reason) = err.code_and_reason();
        if let KmsError::Internal(detail) = &err {
            tracing::error!(%detail, "internal error");
        }
        let details = ErrorDetails::with_error_info(reason, "kmsd", HashMap::new());
        Status::with_error_details(code, err.public_message(), details)
    }
}

#[cfg(test)]
mod tests;
