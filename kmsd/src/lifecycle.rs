//! The service's lifecycle, the active backend behind an atomic swap, and
//! the runtime transitions of the admin API.
//!
//! Every request loads the current [`Runtime`] once (one atomic load) and
//! keeps its `Arc<Active>` until it finishes, so a request in flight always
//! completes on the backend it started on, whatever a transition does
//! meanwhile. Transitions are serialised by one async mutex and publish a
//! new `Runtime` only after the new backend is built and healthy.
//!
//! A transition is atomic with its persistence: it computes the next
//! control state on a copy, persists that (when the admin API owns the
//! configuration), and only then commits it and publishes. If persisting
//! fails, nothing changed: the control state, what is published and
//! `runtime.json` still agree, and a backend built for the transition is
//! dropped.
//!
//! ```text
//! NotConfigured --Configure--> Configured --Start--> Running --Stop--> Stopped
//!                                  ^   |               |  ^             |
//!                                  |   +--(fails)--> Error |             |
//!                                  +----Configure----------+--Start------+
//! Reconfigure: Running -> Running with the new backend (the old one stays
//! for decryption), or the error and nothing changed.
//! ```

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::{
    backend::{Backend, KeyBackend},
    blob::BackendKind,
    config::{BackendConfig, BackendSettings},
    daemon::{BuildEnv, BuildError, build_backend},
    error::KmsError,
    fingerprint::ConfigFingerprint,
    key_id::KeyId,
    persist::{DesiredState, RuntimeStore},
};

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
    /// The last attempt to start a backend failed.
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

/// A built backend with the settings it was built from.
#[derive(Debug)]
pub struct Active {
    /// The backend (shared when a reconfiguration keeps the same store).
    pub backend: Arc<Backend>,
    /// Used when a request names no key.
    pub default_key_id: Option<KeyId>,
    /// Non-secret settings shown by status (e.g. `key_dir`, `sealed`).
    pub summary: Vec<(&'static str, String)>,
}

impl Active {
    /// Which backend this is.
    pub fn kind(&self) -> BackendKind {
        self.backend.kind()
    }
}

/// One consistent view of the lifecycle.
#[derive(Debug)]
pub struct Runtime {
    /// The state.
    pub state: ServiceState,
    /// The backend new blobs are sealed with, when running.
    pub active: Option<Arc<Active>>,
    /// Backends kept for decryption only, newest first.
    pub previous: Vec<Arc<Active>>,
    /// What went wrong, in the Error state.
    pub error: Option<String>,
    /// The configured backend's type and default key, in every state but
    /// NotConfigured.
    pub configured: Option<(&'static str, Option<KeyId>)>,
    /// The configuration fingerprint (docs/operations.md, "Several
    /// sidecars").
    pub fingerprint: Arc<ConfigFingerprint>,
}

#[derive(Debug, Clone)]
struct Installed {
    raw: BackendConfig,
    settings: BackendSettings,
    active: Arc<Active>,
}

#[derive(Debug, Default, Clone)]
struct Control {
    config: Option<(BackendConfig, BackendSettings)>,
    active: Option<Installed>,
    previous: Vec<Installed>,
    /// The admin API owns the backend configuration: it was restored from
    /// `runtime.json` or changed through Configure, Start, Stop or
    /// Reconfigure. Until then the config file does, and nothing is
    /// persisted, so an edit of the file takes effect at the next start.
    admin_owned: bool,
}

/// The lifecycle holder.
#[derive(Debug)]
pub struct Lifecycle {
    current: ArcSwap<Runtime>,
    control: tokio::sync::Mutex<Control>,
    env: BuildEnv,
    store: Option<RuntimeStore>,
}

fn invalid(state: ServiceState, action: &'static str) -> KmsError {
    KmsError::InvalidServiceState {
        state: state.as_str(),
        action,
    }
}

fn build_failed(e: BuildError) -> KmsError {
    KmsError::BackendStartFailed(e.to_string())
}

impl Lifecycle {
    /// NotConfigured; changes are persisted in `store` when given.
    pub fn new(env: BuildEnv, store: Option<RuntimeStore>) -> Self {
        env.metrics.set_state(ServiceState::NotConfigured);
        let fingerprint = ConfigFingerprint::compute(None, &[], &env.cache);
        env.metrics.set_config_fingerprint(&fingerprint);
        Self {
            current: ArcSwap::from_pointee(Runtime {
                state: ServiceState::NotConfigured,
                active: None,
                previous: Vec::new(),
                error: None,
                configured: None,
                fingerprint: Arc::new(fingerprint),
            }),
            control: tokio::sync::Mutex::new(Control::default()),
            env,
            store,
        }
    }

    /// Whether transitions survive a restart.
    pub fn is_persisted(&self) -> bool {
        self.store.is_some()
    }

    /// The backend to seal with, or `Unavailable` naming the state.
    pub fn active(&self) -> Result<Arc<Active>, KmsError> {
        let runtime = self.current.load();
        match (&runtime.state, &runtime.active) {
            (ServiceState::Running, Some(active)) => Ok(Arc::clone(active)),
            (state, _) => Err(KmsError::NotRunning(state.as_str())),
        }
    }

    /// The current view when running, or `Unavailable` naming the state.
    pub fn running(&self) -> Result<Arc<Runtime>, KmsError> {
        let runtime = self.current.load_full();
        match runtime.state {
            ServiceState::Running if runtime.active.is_some() => Ok(runtime),
            state => Err(KmsError::NotRunning(state.as_str())),
        }
    }

    /// The current view.
    pub fn snapshot(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// Restores the persisted runtime if there is one, otherwise applies
    /// the config file's backend (and starts it). A persisted runtime wins
    /// over the config file: once an operator has used the admin API, that
    /// is the source of truth until `kmsd serve --reset-runtime-state`.
    pub async fn initialize(&self, from_file: Option<BackendConfig>) -> Result<(), KmsError> {
        let persisted = match &self.store {
            Some(store) => store
                .load()
                .map_err(|e| KmsError::InvalidConfig(e.to_string()))?,
            None => None,
        };
        let (backend, previous, desired, from_admin) = match persisted {
            Some(p) => {
                tracing::info!(state = ?p.state, "restoring the runtime state saved by the admin API");
                (p.backend, p.previous_backends, p.state, true)
            }
            None => match from_file {
                Some(backend) => (backend, Vec::new(), DesiredState::Running, false),
                None => return Ok(()),
            },
        };
        let mut control = self.control.lock().await;
        control.admin_owned = from_admin;
        for raw in previous {
            match self.install(&control, raw.clone()).await {
                Ok(installed) => control.previous.push(installed),
                Err(e) => {
                    tracing::warn!(error = %e, "a previous (decrypt-only) backend cannot be restored")
                }
            }
        }
        let settings = BackendSettings::from_raw(backend.clone())
            .map_err(|e| KmsError::InvalidConfig(e.to_string()))?;
        control.config = Some((backend, settings));
        match desired {
            DesiredState::Running => self.start_locked(&mut control, false).await,
            DesiredState::Configured => {
                self.publish(&control, ServiceState::Configured, None);
                Ok(())
            }
            DesiredState::Stopped => {
                self.publish(&control, ServiceState::Stopped, None);
                Ok(())
            }
        }
    }

    /// Refuses a transition that would persist an inline secret nothing
    /// seals (no `[server.state_sealing]`), before it changes anything:
    /// `extra` is the configuration being applied, the rest is what is
    /// already held (a config-file backend may carry an inline token).
    fn check_persistable(
        &self,
        control: &Control,
        extra: Option<&BackendConfig>,
    ) -> Result<(), KmsError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        control
            .config
            .iter()
            .map(|(raw, _)| raw)
            .chain(control.previous.iter().map(|p| &p.raw))
            .chain(extra)
            .try_for_each(|raw| store.check_persistable(raw))
            .map_err(|e| KmsError::InvalidConfig(e.to_string()))
    }

    /// Validates and stores a configuration without starting it.
    pub async fn configure(&self, raw: BackendConfig) -> Result<(), KmsError> {
        let settings = BackendSettings::from_raw(raw.clone())
            .map_err(|e| KmsError::InvalidConfig(e.to_string()))?;
        let mut control = self.control.lock().await;
        self.check_persistable(&control, Some(&raw))?;
        let state = self.current.load().state;
        if state == ServiceState::Running {
            return Err(invalid(state, "configure (use Reconfigure, or Stop first)"));
        }
        let mut next = control.clone();
        next.config = Some((raw, settings));
        next.admin_owned = true;
        self.commit(&mut control, next, DesiredState::Configured)?;
        self.publish(&control, ServiceState::Configured, None);
        Ok(())
    }

    /// Builds and starts the configured backend.
    pub async fn start(&self) -> Result<(), KmsError> {
        let mut control = self.control.lock().await;
        match self.current.load().state {
            ServiceState::Running => Ok(()),
            ServiceState::NotConfigured => Err(invalid(ServiceState::NotConfigured, "start")),
            _ => {
                self.check_persistable(&control, None)?;
                self.start_locked(&mut control, true).await
            }
        }
    }

    /// Starts the configured backend; `by_admin` when the admin API asked
    /// (the configuration is then the admin API's, and persisted).
    async fn start_locked(&self, control: &mut Control, by_admin: bool) -> Result<(), KmsError> {
        let Some((raw, _)) = control.config.clone() else {
            return Err(invalid(ServiceState::NotConfigured, "start"));
        };
        match self.install(control, raw).await {
            Ok(installed) => {
                let mut next = control.clone();
                next.admin_owned |= by_admin;
                next.previous.retain(|p| p.settings != installed.settings);
                next.active = Some(installed);
                self.commit(control, next, DesiredState::Running)?;
                self.publish(control, ServiceState::Running, None);
                Ok(())
            }
            Err(e) => {
                self.publish(control, ServiceState::Error, Some(e.to_string()));
                Err(e)
            }
        }
    }

    /// Stops serving keys.
    pub async fn stop(&self) -> Result<(), KmsError> {
        let mut control = self.control.lock().await;
        match self.current.load().state {
            ServiceState::Stopped => Ok(()),
            ServiceState::Running => {
                self.check_persistable(&control, None)?;
                let mut next = control.clone();
                next.active = None;
                next.admin_owned = true;
                self.commit(&mut control, next, DesiredState::Stopped)?;
                self.publish(&control, ServiceState::Stopped, None);
                Ok(())
            }
            state => Err(invalid(state, "stop")),
        }
    }

    /// Replaces the backend: build and check the new one first; only then
    /// swap. On failure nothing changes.
    pub async fn reconfigure(
        &self,
        raw: BackendConfig,
        discard_previous: bool,
    ) -> Result<(), KmsError> {
        let settings = BackendSettings::from_raw(raw.clone())
            .map_err(|e| KmsError::InvalidConfig(e.to_string()))?;
        let mut control = self.control.lock().await;
        self.check_persistable(&control, Some(&raw))?;
        let installed = self.install(&control, raw.clone()).await?;
        let mut next = control.clone();
        let outgoing = next.active.take();
        next.previous.retain(|p| p.settings != settings);
        if let Some(old) = outgoing
            && old.settings != settings
            && !discard_previous
        {
            next.previous.retain(|p| p.settings != old.settings);
            next.previous.insert(0, old);
        }
        next.config = Some((raw, settings));
        next.active = Some(installed);
        next.admin_owned = true;
        self.commit(&mut control, next, DesiredState::Running)?;
        if discard_previous {
            tracing::info!("the replaced backend is dropped (discard_previous)");
        }
        self.publish(&control, ServiceState::Running, None);
        Ok(())
    }

    /// Adds a backend for decryption only, first among the previous
    /// backends, and leaves the active one sealing: the first pass of a
    /// rolling reconfiguration (docs/operations.md), after which a later
    /// [`Self::reconfigure`] to it reuses the backend already built. Only
    /// while Running; on failure nothing changes.
    pub async fn add_decrypt_only(&self, raw: BackendConfig) -> Result<(), KmsError> {
        let settings = BackendSettings::from_raw(raw.clone())
            .map_err(|e| KmsError::InvalidConfig(e.to_string()))?;
        let mut control = self.control.lock().await;
        self.check_persistable(&control, Some(&raw))?;
        let state = self.current.load().state;
        if state != ServiceState::Running {
            return Err(invalid(state, "add a decrypt-only backend (start first)"));
        }
        if control
            .active
            .as_ref()
            .is_some_and(|a| a.settings == settings)
        {
            return Err(KmsError::InvalidConfig(
                "this is the active backend; a decrypt-only backend is another one".into(),
            ));
        }
        let installed = self.install(&control, raw).await?;
        let mut next = control.clone();
        next.previous.retain(|p| p.settings != settings);
        next.previous.insert(0, installed);
        next.admin_owned = true;
        self.commit(&mut control, next, DesiredState::Running)?;
        self.publish(&control, ServiceState::Running, None);
        Ok(())
    }

    /// Rebuilds the active backend from its current settings so that the
    /// files it read when built (Vault CA and client certificates, a token
    /// file) are read again: a reload's "Vault client TLS". The new one is
    /// health-checked before the swap; on failure the current one keeps
    /// serving. Requests in flight finish on the old one. A local backend
    /// reads nothing a reload changes (and its directory can be open once
    /// only), so it is left alone. Returns whether a backend was rebuilt.
    pub async fn refresh_active(&self) -> Result<bool, KmsError> {
        let mut control = self.control.lock().await;
        let Some(current) = control.active.clone() else {
            return Ok(false);
        };
        if current.settings.kind_name() != "vault"
            || self.current.load().state != ServiceState::Running
        {
            return Ok(false);
        }
        let active = build_backend(&current.settings, &self.env)
            .await
            .map_err(build_failed)?;
        active.backend.health().await?;
        let mut next = control.clone();
        next.active = Some(Installed {
            active: Arc::new(active),
            ..current
        });
        self.commit(&mut control, next, DesiredState::Running)?;
        self.publish(&control, ServiceState::Running, None);
        Ok(true)
    }
}

mod transition;
