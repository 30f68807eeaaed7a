//! Building a backend from validated settings.

use std::sync::Arc;

use kms_core::SecretBytes;

use crate::{
    backend::{
        Backend, KeyBackend,
        local::{LocalBackend, LocalConfig, LocalError, SealingSecret},
        vault::{VaultBackend, VaultBuildError, VaultSettings},
    },
    breaker::BreakerSettings,
    cache::CacheSettings,
    clock::Clock,
    config::{BackendKindSettings, BackendSettings, SealingSource},
    error::KmsError,
    lifecycle::Active,
    metrics::Metrics,
};

/// Why a backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The local key directory could not be opened.
    #[error(transparent)]
    Local(#[from] LocalError),
    /// Vault could not be reached or refused kmsd.
    #[error("vault backend: {0}")]
    Vault(#[from] VaultBuildError),
    /// The sealing secret could not be read.
    #[error("cannot read the sealing secret ({source_desc}): {reason}")]
    SealingSecret {
        /// Where it was to come from.
        source_desc: String,
        /// Why it could not be used.
        reason: String,
    },
    /// The default key could not be created or read.
    #[error("the default key is not usable: {0}")]
    DefaultKey(#[source] KmsError),
    /// A background task failed.
    #[error("backend setup task failed: {0}")]
    Task(String),
}

/// What building a backend needs besides its settings.
#[derive(Debug, Clone)]
pub struct BuildEnv {
    /// The clock keys are dated with.
    pub clock: Arc<dyn Clock>,
    /// Where backend metrics go.
    pub metrics: Metrics,
    /// The circuit breaker in front of each remote backend.
    pub breaker: BreakerSettings,
    /// The data-key cache's settings, for the configuration fingerprint.
    pub cache: CacheSettings,
}

/// Builds the backend described by `settings`. Secrets named by path or
/// environment variable are read now, so a changed secret file is picked up
/// by the next build.
pub async fn build_backend(
    settings: &BackendSettings,
    env: &BuildEnv,
) -> Result<Active, BuildError> {
    let clock = Arc::clone(&env.clock);
    let (backend, summary) = match &settings.kind {
        BackendKindSettings::Local { key_dir, sealing } => {
            let sealing = sealing.as_ref().map(read_sealing_secret).transpose()?;
            let config = LocalConfig {
                key_dir: key_dir.clone(),
                sealing,
            };
            let backend = tokio::task::spawn_blocking(move || LocalBackend::open(config, clock))
                .await
                .map_err(|e| BuildError::Task(e.to_string()))??;
            let summary = vec![
                ("key_dir", backend.key_dir().display().to_string()),
                ("sealed", backend.is_sealed().to_string()),
            ];
            (Backend::Local(backend), summary)
        }
        BackendKindSettings::Vault(vault) => {
            let backend = VaultBackend::connect_with(
                VaultSettings::clone(vault),
                clock,
                env.breaker,
                env.metrics.clone(),
            )
            .await?;
            let summary = backend.summary();
            (Backend::Vault(backend), summary)
        }
    };
    Ok(Active {
        backend: Arc::new(backend),
        default_key_id: settings.default_key_id.clone(),
        summary,
    })
}

/// Creates the default key if it is missing and the settings ask for it,
/// and checks that it can be described otherwise.
pub async fn ensure_default_key(
    backend: &Backend,
    settings: &BackendSettings,
) -> Result<(), BuildError> {
    let Some(default) = &settings.default_key_id else {
        return Ok(());
    };
    match backend.describe_key(default).await {
        Ok(_) => Ok(()),
        Err(KmsError::KeyNotFound(_)) if settings.create_default_key => {
            backend
                .create_key(crate::backend::NewKey {
                    key_id: default.clone(),
                    description: "default key, created by kmsd at startup".into(),
                    tags: Default::default(),
                })
                .await
                .map_err(BuildError::DefaultKey)?;
            tracing::info!(key_id = %default, "created the default key");
            Ok(())
        }
        Err(e) => Err(BuildError::DefaultKey(e)),
    }
}

/// Reads a sealing secret (a key directory's or the state directory's). A
/// file that others may read or write is refused; one its group may read
/// draws a warning (a Kubernetes Secret under `fsGroup` is 0440).
pub(crate) fn read_sealing_secret(source: &SealingSource) -> Result<SealingSecret, BuildError> {
    let fail = |reason: String| BuildError::SealingSecret {
        source_desc: format!("{source:?}"),
        reason,
    };
    if let SealingSource::PassphraseFile(path) | SealingSource::KeyFile(path) = source {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| fail(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o006 != 0 {
            return Err(fail(format!(
                "other users may read or write it (mode {:o}); restrict it (chmod o-rwx)",
                mode & 0o777
            )));
        }
        if mode & 0o060 != 0 {
            tracing::warn!(
                "the sealing secret {source:?} is accessible to its group (mode {:o}); prefer 0400 or 0600",
                mode & 0o777
            );
        }
    }
    match source {
        SealingSource::PassphraseFile(path) => {
            let mut bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
            // Editors add a final newline; it is not part of the passphrase.
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            let secret = SecretBytes::new(bytes);
            if secret.is_empty() {
                return Err(fail("the file is empty".into()));
            }
            Ok(SealingSecret::Passphrase(secret))
        }
        SealingSource::PassphraseEnv(var) => {
            let value =
                std::env::var_os(var).ok_or_else(|| fail("the variable is not set".into()))?;
            let secret = SecretBytes::new(value.into_encoded_bytes());
            if secret.is_empty() {
                return Err(fail("the variable is empty".into()));
            }
            Ok(SealingSecret::Passphrase(secret))
        }
        SealingSource::KeyFile(path) => {
            let secret = SecretBytes::new(std::fs::read(path).map_err(|e| fail(e.to_string()))?);
            if secret.len() < 32 {
                return Err(fail("a key file must hold at least 32 random bytes".into()));
            }
            Ok(SealingSecret::KeyFile(secret))
        }
    }
}
