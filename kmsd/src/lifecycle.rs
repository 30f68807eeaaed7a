//! The service's lifecycle and the active backend behind an atomic swap.
//!
//! Every request loads the current [`Runtime`] once (one atomic load) and
//! keeps its `Arc<Active>` until it finishes, so a request in flight always
//! completes on the backend it started on, whatever happens meanwhile.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::{backend::Backend, blob::BackendKind, error::KmsError, key_id::KeyId};

/// Where the service is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    /// No backend configuration yet.
    NotConfigured,
    /// Configured, not serving keys.
    Configured,
    /// Serving keys.
    Running,
    /// Stopped on request; can be started again.
    Stopped,
    /// The last attempt to build a backend failed.
    Error,
}

impl ServiceState {
    /// The state's name, as shown in status responses.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::NotConfigured => "NotConfigured",
            ServiceState::Configured => "Configured",
            ServiceState::Running => "Running",
            ServiceState::Stopped => "Stopped",
            ServiceState::Error => "Error",
        }
    }
}

/// A backend that is serving, with the settings it was built from.
#[derive(Debug)]
pub struct Active {
    /// The backend.
    pub backend: Backend,
    /// Used when a request names no key.
    pub default_key_id: Option<KeyId>,
    /// Non-secret settings shown by status (e.g. `key_dir`, `sealed`).
    pub summary: Vec<(&'static str, String)>,
}

impl Active {
    /// Which backend this is.
    pub fn kind(&self) -> BackendKind {
        crate::backend::KeyBackend::kind(&self.backend)
    }
}

/// One consistent view of the lifecycle.
#[derive(Debug)]
pub struct Runtime {
    /// The state.
    pub state: ServiceState,
    /// The backend, when running.
    pub active: Option<Arc<Active>>,
    /// What went wrong, in the Error state.
    pub error: Option<String>,
}

/// The lifecycle holder.
#[derive(Debug)]
pub struct Lifecycle {
    current: ArcSwap<Runtime>,
}

impl Lifecycle {
    /// Nothing configured yet.
    pub fn not_configured() -> Self {
        Self {
            current: ArcSwap::from_pointee(Runtime {
                state: ServiceState::NotConfigured,
                active: None,
                error: None,
            }),
        }
    }

    /// Serving `active`.
    pub fn running(active: Arc<Active>) -> Self {
        Self {
            current: ArcSwap::from_pointee(Runtime {
                state: ServiceState::Running,
                active: Some(active),
                error: None,
            }),
        }
    }

    /// The backend to serve a request with, or `Unavailable` naming the
    /// state.
    pub fn active(&self) -> Result<Arc<Active>, KmsError> {
        let runtime = self.current.load();
        match (&runtime.state, &runtime.active) {
            (ServiceState::Running, Some(active)) => Ok(Arc::clone(active)),
            (state, _) => Err(KmsError::NotRunning(state.as_str())),
        }
    }

    /// The current view.
    pub fn snapshot(&self) -> Arc<Runtime> {
        self.current.load_full()
    }
}
