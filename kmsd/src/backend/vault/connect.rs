//! Building the backend: the transport and the circuit breaker in front
//! of it, authentication, the background tasks (token renewal, the
//! breaker's probe, the nodes' health poll), then the engines on top.

use std::sync::Arc;

use super::{
    VaultBackend,
    aliases::VaultAliases,
    auth::Auth,
    cache::MetadataCache,
    client::VaultClient,
    error::VaultError,
    intermediate::Intermediates,
    kv::Records,
    metadata::Keys,
    sender::{self, Sender},
    settings::VaultSettings,
    summary,
    transit::Transit,
    transport::{Transport, TransportError},
};
use crate::{
    breaker::{Breaker, BreakerSettings},
    clock::Clock,
    metrics::Metrics,
};

/// Why the backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum VaultBuildError {
    /// The HTTP client could not be built.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Vault refused or could not be reached.
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// Aborts a background task (token renewal, the breaker's probe) when the
/// backend goes away.
pub(super) struct TaskGuard(pub(super) tokio::task::AbortHandle);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl VaultBackend {
    /// Connects with the default circuit breaker and metrics of its own
    /// (tests, tools): see [`Self::connect_with`].
    pub async fn connect(
        settings: VaultSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, VaultBuildError> {
        Self::connect_with(settings, clock, BreakerSettings::default(), Metrics::new()).await
    }

    /// Connects: builds the HTTP client and the circuit breaker in front of
    /// it, authenticates, and starts the token renewal task and the
    /// breaker's probe, both stopped when the backend is dropped.
    pub async fn connect_with(
        settings: VaultSettings,
        clock: Arc<dyn Clock>,
        breaker: BreakerSettings,
        metrics: Metrics,
    ) -> Result<Self, VaultBuildError> {
        let transport = Transport::build(&settings, metrics.clone()).await?;
        let sender = Arc::new(Sender {
            transport,
            retry: settings.retry,
            timeout: settings.timeout,
            attempt_timeout: settings.attempt_timeout,
            breaker: Arc::new(Breaker::new("vault", breaker, metrics)),
        });
        let probe = tokio::spawn({
            let sender = Arc::clone(&sender);
            async move {
                sender.breaker.probe_while_open(|| sender.health()).await;
            }
        });
        let probe = TaskGuard(probe.abort_handle());
        // With several nodes, learn which one is active (and how each one
        // is) once a second; one address needs no poll.
        let watch = (settings.addresses.len() > 1).then(|| {
            let sender = Arc::downgrade(&sender);
            TaskGuard(tokio::spawn(sender::watch(sender)).abort_handle())
        });
        let auth = Arc::new(Auth::establish(settings.auth.clone(), &sender).await?);
        let renewal = tokio::spawn(Arc::clone(&auth).maintain(Arc::clone(&sender)));
        let client = VaultClient { sender, auth };
        let transit = Transit::new(client.clone(), settings.transit_mount.clone());
        let mount = &settings.transit_mount;
        match transit.upsert_disabled().await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "Transit at {mount} creates a missing key on encrypt: a key destroyed through one kmsd could be silently re-created by another that still caches it. Set `bao write {mount}/config/keys disable_upsert=true` (docs/vault.md)"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check {mount}/config/keys; make sure disable_upsert=true (docs/vault.md)")
            }
        }
        let keys = Keys {
            records: Records::new(
                client.clone(),
                settings.kv_mount.clone(),
                settings.key_path_prefix.clone(),
            ),
            cache: MetadataCache::new(settings.cache_ttl, settings.max_cached_keys),
            intermediates: settings
                .intermediate_key
                .map(|s| Box::new(Intermediates::new(s))),
            transit,
        };
        Ok(Self {
            usage: super::usage::VaultUsage::new(
                client.clone(),
                settings.kv_mount.clone(),
                &settings.key_path_prefix,
            ),
            aliases: VaultAliases::new(
                client.clone(),
                settings.kv_mount.clone(),
                &settings.key_path_prefix,
                settings.cache_ttl,
            ),
            summary: summary::summary(&settings),
            keys: Box::new(keys),
            client,
            clock,
            _renewal: TaskGuard(renewal.abort_handle()),
            _probe: probe,
            _watch: watch,
        })
    }
}
