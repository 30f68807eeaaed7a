//! The one error type of this crate.

use tonic::Code;
use tonic_types::StatusExt;

use crate::ErrorReason;

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

    /// The reason as an [`ErrorReason`], if kmsd gave one this client
    /// knows (a newer kmsd may answer reasons it does not).
    pub fn reason_kind(&self) -> Option<ErrorReason> {
        self.reason()?.parse().ok()
    }

    /// Whether trying again later may succeed: the daemon or its backend
    /// was unreachable or overloaded. Bad input, missing keys, disabled keys
    /// and ciphertexts that do not authenticate are never transient.
    ///
    /// RESOURCE_EXHAUSTED is transient only with the reason `OVERLOADED`
    /// (too many requests in flight): the same code without it refuses a
    /// request message over kmsd's size limit, which no retry can fix.
    /// docs/api.md's error table lists the same, and a test keeps the two
    /// in step.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { .. } => true,
            Error::Rpc {
                code: Code::ResourceExhausted,
                reason,
                ..
            } => reason.as_deref() == Some(ErrorReason::Overloaded.as_str()),
            // kmsd never answers CANCELLED itself: the client's transport
            // reports it for a request the server refused unstarted (a
            // stream above the last one in a GOAWAY while kmsd drains), so
            // retrying cannot run the request twice.
            Error::Rpc { code, .. } => matches!(
                code,
                Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Cancelled
            ),
            Error::InvalidEndpoint { .. }
            | Error::Tls(_)
            | Error::Protocol(_)
            | Error::Stream(_)
            | Error::Metadata(_) => false,
        }
    }
}

impl Error {
    /// A copy of an error several callers share (one failed call answered
    /// to every request that waited for it). A connection error cannot be
    /// cloned; its copy is an UNAVAILABLE status with the same message,
    /// which is as transient as the original.
    pub(crate) fn shared_copy(&self) -> Error {
        match self {
            Error::InvalidEndpoint { endpoint, reason } => Error::InvalidEndpoint {
                endpoint: endpoint.clone(),
                reason,
            },
            Error::Connect { .. } => Error::Rpc {
                code: Code::Unavailable,
                reason: None,
                message: self.to_string(),
            },
            Error::Tls(message) => Error::Tls(message.clone()),
            Error::Rpc {
                code,
                reason,
                message,
            } => Error::Rpc {
                code: *code,
                reason: reason.clone(),
                message: message.clone(),
            },
            Error::Protocol(what) => Error::Protocol(what),
            Error::Stream(error) => Error::Stream(error.clone()),
            Error::Metadata(error) => Error::Metadata(error.clone()),
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        if let Some(message) = broken_transport(&status) {
            return Error::Rpc {
                code: Code::Unavailable,
                reason: None,
                message: message.into(),
            };
        }
        let reason = status.get_details_error_info().map(|info| info.reason);
        Error::Rpc {
            code: status.code(),
            reason,
            message: status.message().to_owned(),
        }
    }
}

/// Transport failures tonic reports with a code that hides what happened,
/// reported here as UNAVAILABLE, as gRPC clients in other languages do
/// (and as docs/api.md promises), so that they are retried:
/// - a stream above the last stream id of a graceful GOAWAY (NO_ERROR),
///   which the server never started (RFC 9113 §6.8); tonic says INTERNAL,
///   which would make a draining kmsd look broken;
/// - a connection reset or closed under a request (kmsd exited with the
///   request unread in its socket buffer, say); tonic says UNKNOWN.
fn broken_transport(status: &tonic::Status) -> Option<&'static str> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            let refused =
                h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR);
            return refused.then_some("kmsd is draining (GOAWAY) and did not start this request");
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{
                BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof,
            };
            let broke = matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            );
            return broke.then_some("the connection to kmsd broke under the request");
        }
        source = error.source();
    }
    None
}
