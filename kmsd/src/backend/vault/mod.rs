//! The vault backend: master keys are Transit keys in Vault or OpenBao and
//! never leave it; kmsd's own key records (state, description, tags,
//! dates) live in KV v2. See docs/vault.md for the policy, the setup and
//! the failure behaviour.
//!
//! A blob is `header || Transit ciphertext` (docs/format.md): Transit
//! encrypts the data key with `associated_data = header-without-version ||
//! canonical context` and an explicit `key_version`, the current version
//! from the metadata cache, so the header's version is the one Transit
//! used; decrypt checks that the two agree before asking Transit.
//!
//! ReEncrypt is decrypt-then-encrypt inside kmsd, not Transit `rewrap`:
//! `rewrap` takes no `associated_data` (OpenBao 2.x, Vault 1.x), so it
//! cannot open a ciphertext bound to a context. The plaintext stays in
//! zeroizing memory for the one round trip.
//!
//! Layers: `transport` (one HTTP client), `client` (retries, deadline, one
//! re-login on 403), `auth` (token lifecycle), `transit` and `kv` (the two
//! engines), `cache` (metadata), `intermediate` (intermediate keys), `wrap`
//! (sealing and opening data keys), and this file, which composes them into
//! [`KeyBackend`].

mod aliases;
mod auth;
mod batch;
mod cache;
mod client;
mod error;
mod intermediate;
mod kv;
mod metadata;
mod nodes;
pub mod settings;
mod summary;
mod transit;
mod transport;
mod update;
mod wrap;

#[cfg(test)]
mod tests;

use std::{sync::Arc, time::Duration};

use kms_core::DataKey;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use self::{
    auth::Auth,
    cache::MetadataCache,
    client::{Sender, VaultClient},
    intermediate::Intermediates,
    kv::{KeyRecord, RECORD_FORMAT, Records, Written},
    metadata::{compose, has_version},
    transit::Transit,
    transport::Transport,
};
pub use self::{
    auth::AuthStats,
    error::VaultError,
    settings::{RawSecret, RawVaultConfig, VaultSettings},
    transport::TransportError,
};
use super::{
    GeneratedKey, KeyBackend, KeyMetadata, KeyState, NewKey, Opened, Sealed, StateChange, Sweep,
};
use crate::{
    blob::{self, BackendKind, ParsedBlob, VaultIntermediatePayload},
    breaker::{Breaker, BreakerSettings},
    clock::Clock,
    context::EncryptionContext,
    crypto,
    error::KmsError,
    key_id::KeyId,
    metrics::Metrics,
};

/// When Transit refuses a blob, a cached entry older than this is re-read
/// to tell a bad blob from a key destroyed or a version unknown (another
/// kmsd may have changed the key). Younger entries are trusted, so a flood
/// of bad blobs cannot become a flood of Vault reads.
const REVALIDATE_AFTER: Duration = Duration::from_secs(1);
/// How often a state change retries after losing a check-and-set race.
const CAS_ATTEMPTS: usize = 5;

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
struct TaskGuard(tokio::task::AbortHandle);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The vault backend.
pub struct VaultBackend {
    client: VaultClient,
    transit: Transit,
    records: Records,
    cache: MetadataCache,
    aliases: aliases::VaultAliases,
    /// Intermediate-key caching, when on.
    intermediates: Option<Box<Intermediates>>,
    clock: Arc<dyn Clock>,
    summary: Vec<(&'static str, String)>,
    // Held for its Drop, which stops the renewal task.
    _renewal: TaskGuard,
    // Held for its Drop: the breaker's probe lives as long as the backend.
    _probe: TaskGuard,
    // Held for its Drop: the nodes' health poll, with several addresses.
    _watch: Option<TaskGuard>,
}

impl std::fmt::Debug for VaultBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultBackend")
            .field("summary", &self.summary)
            .field("auth", &self.client.auth)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
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
            TaskGuard(tokio::spawn(nodes::watch(sender)).abort_handle())
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
        Ok(Self {
            records: Records::new(
                client.clone(),
                settings.kv_mount.clone(),
                settings.key_path_prefix.clone(),
            ),
            aliases: aliases::VaultAliases::new(
                client.clone(),
                settings.kv_mount.clone(),
                &settings.key_path_prefix,
                settings.cache_ttl,
            ),
            summary: summary::summary(&settings),
            cache: MetadataCache::new(settings.cache_ttl, settings.max_cached_keys),
            intermediates: settings
                .intermediate_key
                .map(|s| Box::new(Intermediates::new(s))),
            client,
            transit,
            clock,
            _renewal: TaskGuard(renewal.abort_handle()),
            _probe: probe,
            _watch: watch,
        })
    }

    /// Non-secret settings for `kmsd status`.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        self.summary.clone()
    }

    /// What changes while kmsd runs, for `kmsd status`: the node kmsd
    /// sends to first and every node's last known health.
    pub fn node_summary(&self) -> Vec<(&'static str, String)> {
        let nodes = &self.client.sender.transport.nodes;
        vec![
            ("serving_node", nodes.serving().to_owned()),
            ("nodes", nodes.describe()),
        ]
    }

    /// Token counters and the token's remaining TTL (for metrics).
    pub fn auth_stats(&self) -> AuthStats {
        self.client.auth.stats()
    }

    /// Stops the token renewal task, so a test can let the token expire.
    #[cfg(test)]
    fn stop_renewal(&self) {
        self._renewal.0.abort();
    }

    /// Drops the key-metadata cache and the resolved aliases (the admin
    /// API's ClearCache); returns how many entries there were.
    pub fn clear_cache(&self) -> usize {
        if let Some(intermediates) = &self.intermediates {
            intermediates.forget(None);
        }
        self.cache.clear() + self.aliases.clear()
    }

    /// How long the current token has left; `None` if it does not expire.
    pub fn token_ttl(&self) -> Option<Duration> {
        self.auth_stats().token_ttl
    }

    /// Why Vault is unavailable, while the circuit breaker is open.
    pub fn unavailable(&self) -> Option<crate::breaker::Open> {
        self.client.sender.breaker.open()
    }

    /// How long this backend can go on serving without reaching Vault: the
    /// intermediate-key TTL when that mode is on (an intermediate key
    /// wraps and unwraps for that long, under the key state last read).
    pub fn offline_window(&self) -> Option<Duration> {
        self.intermediates.as_ref().map(|i| i.ttl())
    }

    /// Forgets what is cached about `key_id` (its metadata, its
    /// intermediate keys): the next request reads Vault.
    pub fn forget_key(&self, key_id: &KeyId) {
        self.cache.remove(key_id);
        if let Some(intermediates) = &self.intermediates {
            intermediates.forget(Some(key_id));
        }
    }
}

impl KeyBackend for VaultBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Vault
    }

    async fn generate_data_key(
        &self,
        key_id: &KeyId,
        context: &EncryptionContext,
    ) -> Result<GeneratedKey, KmsError> {
        let cached = self.usable(key_id).await?;
        // Generated here (one getrandom) rather than by transit/datakey,
        // which cannot bind associated data.
        let mut material = Zeroizing::new([0u8; crypto::KEY_LEN]);
        crypto::fill_random(material.as_mut()).map_err(|e| KmsError::Internal(e.to_string()))?;
        let key = DataKey::from_bytes(*material);
        let sealed = self
            .seal(key_id, &cached.meta, key.expose_secret(), context)
            .await?;
        Ok(GeneratedKey { key, sealed })
    }

    async fn encrypt(
        &self,
        key_id: &KeyId,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Sealed, KmsError> {
        let cached = self.usable(key_id).await?;
        self.seal(key_id, &cached.meta, plaintext, context).await
    }

    async fn decrypt(
        &self,
        blob: &ParsedBlob<'_>,
        context: &EncryptionContext,
    ) -> Result<Opened, KmsError> {
        if let Some(payload) = VaultIntermediatePayload::parse(blob.payload)? {
            return self.open_intermediate(blob, &payload, context).await;
        }
        let header = &blob.header;
        let key_id = &header.key_id;
        // The version sits outside the explicit AAD; Transit picks the key
        // version from its own prefix, so the two must agree.
        let ciphertext = std::str::from_utf8(blob.payload)
            .ok()
            .filter(|ct| transit::ciphertext_version(ct) == Some(header.key_version))
            .ok_or(KmsError::InvalidCiphertext)?;
        self.usable(key_id).await?;
        let aad = blob::aad(blob.header_bytes, context);
        match self.transit.decrypt(key_id, ciphertext, &aad).await {
            // A version this kmsd does not know yet was made by a rotation
            // through another kmsd: Transit knows it, which is enough.
            Ok(plaintext) => Ok(Opened {
                plaintext,
                key_id: key_id.clone(),
                key_version: header.key_version,
            }),
            Err(VaultError::BadRequest { .. }) => {
                Err(self.refused_open(key_id, header.key_version).await)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn create_key(&self, new: NewKey) -> Result<KeyMetadata, KmsError> {
        let key_id = new.key_id;
        match self.records.read(&key_id).await {
            Ok(None) => {}
            Ok(Some(_)) | Err(VaultError::Decode { .. }) => {
                return Err(KmsError::KeyAlreadyExists(key_id));
            }
            Err(e) => return Err(e.into()),
        }
        // Transit first: a record never points at a missing Transit key. A
        // failure between the two leaves a Transit key without a record,
        // which is not a kmsd key; creating the id again adopts it.
        self.transit.create(&key_id).await?;
        let transit = self.transit.read(&key_id).await?.ok_or_else(|| {
            KmsError::Internal(format!("Transit did not keep the new key {key_id}"))
        })?;
        if let Some(reason) = transit.unsuitable() {
            return Err(KmsError::InvalidArgument(format!(
                "a Transit key named {key_id} already exists and kmsd cannot adopt it: {reason}"
            )));
        }
        let record = KeyRecord {
            format: RECORD_FORMAT,
            key_id: key_id.to_string(),
            state: KeyState::Enabled,
            description: new.description,
            tags: new.tags,
            created_at: self.clock.now(),
            deletion_date: None,
        };
        if self.records.write(&record, 0).await? == Written::Conflict {
            return Err(KmsError::KeyAlreadyExists(key_id));
        }
        let meta = compose(&key_id, &record, &transit);
        self.cache.put(meta.clone());
        Ok(meta)
    }

    async fn describe_key(&self, key_id: &KeyId) -> Result<KeyMetadata, KmsError> {
        self.describe_fresh(key_id).await
    }

    async fn list_keys(
        &self,
        after: Option<&KeyId>,
        limit: usize,
    ) -> Result<Vec<KeyMetadata>, KmsError> {
        let mut ids = self.records.list().await?;
        ids.sort();
        let start = after.map_or(0, |after| ids.partition_point(|id| id <= after));
        let mut keys = Vec::with_capacity(limit.min(ids.len()));
        for key_id in &ids[start..] {
            if keys.len() >= limit {
                break;
            }
            match self.lookup(key_id, Duration::MAX).await {
                Ok(cached) => keys.push(KeyMetadata::clone(&cached.meta)),
                // Destroyed meanwhile, or damaged (logged): the others are
                // still listed.
                Err(KmsError::KeyNotFound(_) | KmsError::KeyUnreadable(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(keys)
    }

    async fn rotate_key(&self, key_id: &KeyId) -> Result<KeyMetadata, KmsError> {
        let meta = self.describe_fresh(key_id).await?;
        if meta.state == KeyState::PendingDeletion {
            return Err(KmsError::InvalidStateTransition {
                key_id: key_id.clone(),
                state: meta.state.as_str(),
                action: "rotate",
            });
        }
        self.transit.rotate(key_id).await?;
        self.describe_fresh(key_id).await
    }

    async fn change_state(
        &self,
        key_id: &KeyId,
        change: StateChange,
    ) -> Result<KeyMetadata, KmsError> {
        for _ in 0..CAS_ATTEMPTS {
            let current = self.record_for_change(key_id).await?;
            let (state, deletion_date) = change.apply(key_id, current.record.state)?;
            if state == current.record.state && deletion_date == current.record.deletion_date {
                return self.describe_fresh(key_id).await;
            }
            let mut record = current.record;
            record.state = state;
            record.deletion_date = deletion_date;
            if self.records.write(&record, current.version).await? == Written::Done {
                if state != KeyState::Enabled
                    && let Some(intermediates) = &self.intermediates
                {
                    intermediates.forget(Some(key_id));
                }
                return self.describe_fresh(key_id).await;
            }
        }
        Err(KmsError::BackendUnavailable {
            backend: "vault",
            detail: format!("key {key_id} kept changing under concurrent updates; try again"),
        })
    }

    async fn destroy_due_keys(&self, now: OffsetDateTime) -> Sweep {
        let mut sweep = Sweep::default();
        if let Err(e) = self.sweep(now, &mut sweep.destroyed).await {
            sweep.failed = Some(e);
        }
        sweep
    }

    async fn key_usable(&self, key_id: &KeyId) -> Result<(), KmsError> {
        self.usable(key_id).await.map(drop)
    }

    async fn health(&self) -> Result<(), KmsError> {
        self.client.sender.health().await.map_err(KmsError::from)
    }
}

impl VaultBackend {
    /// The deletion sweep; `destroyed` collects the keys as they go.
    async fn sweep(&self, now: OffsetDateTime, destroyed: &mut Vec<KeyId>) -> Result<(), KmsError> {
        let due = |state: KeyState, date: Option<OffsetDateTime>| {
            state == KeyState::PendingDeletion && date.is_some_and(|d| d <= now)
        };
        for key_id in self.records.list().await? {
            // A cached entry rules keys out cheaply (windows are days long,
            // the cache seconds); a fresh read confirms before destroying.
            if let Some(cached) = self.cache.get(&key_id)
                && !due(cached.meta.state, cached.meta.deletion_date)
            {
                continue;
            }
            let current = match self.records.read(&key_id).await {
                Ok(Some(current)) => current,
                Ok(None) => continue,
                Err(VaultError::Decode { reason, .. }) => {
                    tracing::error!(%key_id, %reason, "skipping an unreadable key record in the deletion sweep");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if !due(current.record.state, current.record.deletion_date) {
                continue;
            }
            // Transit key first: once it is gone the key is unusable even
            // if removing the record fails (the next sweep retries).
            self.transit.destroy(&key_id).await?;
            self.records.delete(&key_id).await?;
            self.cache.remove(&key_id);
            if let Some(intermediates) = &self.intermediates {
                intermediates.forget(Some(&key_id));
            }
            tracing::info!(%key_id, "key destroyed: its deletion window has passed (Transit key and KV record deleted)");
            destroyed.push(key_id);
        }
        Ok(())
    }
}
