//! The steps every transition shares: install a backend (reusing an open
//! one where the store is the same), commit the next control state only
//! once it is persisted, and publish the view requests load.

use std::sync::Arc;

use super::{Control, Installed, Lifecycle, Runtime, ServiceState, build_failed};
use crate::{
    backend::KeyBackend,
    config::{BackendConfig, BackendSettings},
    daemon::{build_backend, ensure_default_key},
    error::KmsError,
    fingerprint::ConfigFingerprint,
    lifecycle::Active,
    persist::{DesiredState, PersistedRuntime},
};

impl Lifecycle {
    /// Reuses a backend already built from identical settings (a local key
    /// directory can be opened by one instance only), or builds and checks a
    /// new one.
    pub(super) async fn install(
        &self,
        control: &Control,
        raw: BackendConfig,
    ) -> Result<Installed, KmsError> {
        let settings = BackendSettings::from_raw(raw.clone())
            .map_err(|e| KmsError::InvalidConfig(e.to_string()))?;
        let existing = control
            .active
            .iter()
            .chain(&control.previous)
            .find(|i| i.settings.same_store(&settings));
        let active = match existing {
            Some(existing) if existing.settings == settings => {
                return Ok(Installed {
                    raw,
                    settings,
                    active: Arc::clone(&existing.active),
                });
            }
            Some(existing) if existing.settings.protection_differs(&settings) => {
                return Err(KmsError::InvalidConfig(
                    "this key store is open with other protection settings (sealing); they cannot change while it is open".into(),
                ));
            }
            // Same store, other options (the default key): share the open
            // backend under the new options.
            Some(existing) => Active {
                backend: Arc::clone(&existing.active.backend),
                default_key_id: settings.default_key_id.clone(),
                summary: existing.active.summary.clone(),
            },
            None => build_backend(&settings, &self.env)
                .await
                .map_err(build_failed)?,
        };
        active.backend.health().await?;
        ensure_default_key(&active.backend, &settings)
            .await
            .map_err(build_failed)?;
        Ok(Installed {
            raw,
            settings,
            active: Arc::new(active),
        })
    }

    /// Persists `next` and only then makes it the control state; on
    /// failure `control` is left as it was (and whatever `next` alone held,
    /// such as a backend just built, is dropped).
    pub(super) fn commit(
        &self,
        control: &mut Control,
        mut next: Control,
        state: DesiredState,
    ) -> Result<(), KmsError> {
        self.persist(&mut next, state)?;
        *control = next;
        Ok(())
    }

    fn persist(&self, control: &mut Control, state: DesiredState) -> Result<(), KmsError> {
        if !control.admin_owned {
            return Ok(());
        }
        // Inline secrets are sealed by the store (persist.rs); one it could
        // not seal was refused by check_persistable before any change.
        let (Some(store), Some((raw, _))) = (&self.store, &control.config) else {
            return Ok(());
        };
        let previous_backends: Vec<BackendConfig> =
            control.previous.iter().map(|p| p.raw.clone()).collect();
        store
            .save(&PersistedRuntime {
                format: 1,
                state,
                backend: raw.clone(),
                previous_backends: previous_backends.clone(),
            })
            .map_err(|e| match e {
                crate::persist::PersistError::Unsealable { .. } => {
                    KmsError::InvalidConfig(e.to_string())
                }
                other => KmsError::Internal(format!("saving the runtime state: {other}")),
            })?;
        let referenced: Vec<_> = std::iter::once(raw)
            .chain(&previous_backends)
            .flat_map(BackendConfig::secret_files)
            .collect();
        store.prune_secrets(&referenced);
        Ok(())
    }

    pub(super) fn publish(&self, control: &Control, state: ServiceState, error: Option<String>) {
        let active = match state {
            ServiceState::Running => control.active.as_ref().map(|i| Arc::clone(&i.active)),
            _ => None,
        };
        let configured = control
            .config
            .as_ref()
            .map(|(_, settings)| (settings.kind_name(), settings.default_key_id.clone()));
        let previous: Vec<&BackendSettings> =
            control.previous.iter().map(|p| &p.settings).collect();
        let fingerprint = ConfigFingerprint::compute(
            control.config.as_ref().map(|(_, settings)| settings),
            &previous,
            &self.env.cache,
        );
        self.env.metrics.set_config_fingerprint(&fingerprint);
        self.current.store(Arc::new(Runtime {
            state,
            active,
            previous: control
                .previous
                .iter()
                .map(|p| Arc::clone(&p.active))
                .collect(),
            error,
            configured,
            fingerprint: Arc::new(fingerprint),
        }));
        self.env.metrics.set_state(state);
        tracing::info!(state = state.as_str(), "service state");
    }
}
