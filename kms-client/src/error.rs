//! The one error type of this crate.

use tonic::Code;
use tonic_types::StatusExt;

/// Why a call to kmsd failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint string could not be understood.
    #[error("invalid kmsd endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No connection could be made.
    #[error("cannot connect to kmsd at {endpoint}: {source}")]
    Connect {
        /// The endpoint that was dialled.
        endpoint: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The TLS settings cannot be used.
    #[error("TLS settings: {0}")]
    Tls(String),
    /// kmsd answered with an error status.
    #[error("kmsd refused the call ({code:?}{}): {message}", reason.as_deref().map(|r| format!(", {r}")).unwrap_or_default())]
    Rpc {
        /// The gRPC status code.
        code: Code,
        /// The machine-readable reason from the status details, such as
        /// `KEY_NOT_FOUND` or `INVALID_CIPHERTEXT` (see docs/api.md).
        reason: Option<String>,
        /// kmsd's message; it never contains a secret.
        message: String,
    },
    /// kmsd answered with something this client cannot use.
    #[error("unexpected response from kmsd: {0}")]
    Protocol(&'static str),
    /// An object stream, layout or range was refused.
    #[error(transparent)]
    Stream(#[from] crate::stream::StreamError),
    /// Object metadata could not be read.
    #[error(transparent)]
    Metadata(#[from] crate::metadata::MetadataError),
}

impl Error {
    /// The gRPC code, if kmsd answered with an error status.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The machine-readable reason, if kmsd gave one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Error::Rpc { reason, .. } => reason.as_deref(),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: the daemon or its backend
    /// was unreachable or overloaded. Bad input, missing keys, disabled keys
    /// and ciphertexts that do not authenticate are never transient.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { .. } => true,
            // kmsd never answers CANCELLED itself: the client's transport
            // reports it for a request the server refused unstarted (a
            // stream above the last one in a GOAWAY while kmsd drains), so
            // retrying cannot run the request twice.
            Error::Rpc { code, .. } => matches!(
                code,
                Code::Unavailable
                    | Code::ResourceExhausted
                    | Code::DeadlineExceeded
                    | Code::Aborted
                    | Code::Cancelled
            ),
            Error::InvalidEndpoint { .. }
            | Error::Tls(_)
            | Error::Protocol(_)
            | Error::Stream(_)
            | Error::Metadata(_) => false,
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        let reason = status.get_details_error_info().map(|info| info.reason);
        Error::Rpc {
            code: status.code(),
            reason,
            message: status.message().to_owned(),
        }
    }
}
