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
//! Layers, each importing only the ones below it (checked by
//! `tests/tests/layering.rs`):
//!
//! 1. configuration and errors: `settings`, `error`;
//! 2. transport: `request` (the wire form of a call: vaultrs endpoints,
//!    plus one typed helper for what vaultrs lacks), `nodes`, `transport`
//!    (one HTTP client, hedging, failover), `sender` (retries, deadline,
//!    circuit breaker);
//! 3. authenticated client: `auth` (the token and its lifecycle; the one
//!    place a token is attached) and `client` (one re-login on 403);
//! 4. endpoints: `transit`, `kv`, `aliases` (the two engines and the alias
//!    records), with `batch`, `cache`, `byok` (Transit's key import) and
//!    `intermediate`;
//! 5. keys: `metadata` (`Keys`: engines + cache), `wrap`
//!    (sealing and opening), `sweep` (the deletion sweep);
//! 6. the backend: this file, `connect`, `update`, `rotation` and
//!    `summary`, which compose the rest into [`KeyBackend`].

mod aliases;
mod auth;
mod batch;
mod byok;
mod cache;
mod client;
mod connect;
mod error;
mod intermediate;
mod kv;
mod metadata;
mod nodes;
mod request;
mod rotation;
mod sender;
pub mod settings;
mod summary;
mod sweep;
mod transit;
mod transport;
mod update;
mod usage;
mod wrap;

#[cfg(test)]
mod tests;

use std::{sync::Arc, time::Duration};

use kms_core::DataKey;
use time::OffsetDateTime;
use zeroize::Zeroizing;

pub use self::{
    auth::AuthStats,
    connect::VaultBuildError,
    error::VaultError,
    settings::{RawSecret, RawVaultConfig, VaultSettings},
    transport::TransportError,
};
use self::{
    client::VaultClient,
    connect::TaskGuard,
    kv::{CAS_ATTEMPTS, KeyRecord, RECORD_FORMAT, Written},
    metadata::{Keys, compose},
};
use super::{
    GeneratedKey, KeyBackend, KeyMetadata, KeyOrigin, KeyState, NewKey, Opened, Sealed,
    StateChange, Sweep,
};
use crate::{
    blob::{BackendKind, ParsedBlob},
    clock::Clock,
    context::EncryptionContext,
    crypto,
    error::KmsError,
    key_id::KeyId,
};

/// The vault backend.
pub struct VaultBackend {
    client: VaultClient,
    // Boxed: moka's caches make it the larger part of `Backend::Vault`.
    keys: Box<Keys>,
    aliases: aliases::VaultAliases,
    usage: usage::VaultUsage,
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
            .field("cache", &self.keys.cache)
            .finish_non_exhaustive()
    }
}

impl VaultBackend {
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
        self.keys.forget_intermediates(None);
        self.keys.cache.clear() + self.aliases.clear()
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
    /// intermediate-key TTL when that mode is on.
    pub fn offline_window(&self) -> Option<Duration> {
        self.keys.offline_window()
    }

    /// Forgets what is cached about `key_id` (its metadata, its
    /// intermediate keys): the next request reads Vault.
    pub fn forget_key(&self, key_id: &KeyId) {
        self.keys.cache.remove(key_id);
        self.keys.forget_intermediates(Some(key_id));
    }
}

impl VaultBackend {
    /// Refuses an id that already has a record (or a damaged one).
    async fn check_new(&self, key_id: &KeyId) -> Result<(), KmsError> {
        match self.keys.records.read(key_id).await {
            Ok(None) => Ok(()),
            Ok(Some(_)) | Err(VaultError::Decode { .. }) => {
                Err(KmsError::KeyAlreadyExists(key_id.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the record of a key whose Transit key now exists.
    async fn record_new(&self, new: NewKey, origin: KeyOrigin) -> Result<KeyMetadata, KmsError> {
        let key_id = new.key_id;
        let transit = self.keys.transit.read(&key_id).await?.ok_or_else(|| {
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
            rotation: None,
            rotation_claim: None,
            origin,
        };
        if self.keys.records.write(&record, 0).await? == Written::Conflict {
            return Err(KmsError::KeyAlreadyExists(key_id));
        }
        let meta = compose(&key_id, &record, &transit);
        self.keys.cache.put(meta.clone());
        Ok(meta)
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
        let cached = self.keys.usable(key_id).await?;
        // Generated here (one getrandom) rather than by transit/datakey,
        // which cannot bind associated data.
        let mut material = Zeroizing::new([0u8; crypto::KEY_LEN]);
        crypto::fill_random(material.as_mut()).map_err(|e| KmsError::Internal(e.to_string()))?;
        let key = DataKey::from_bytes(*material);
        let sealed = wrap::seal(
            &self.keys,
            key_id,
            &cached.meta,
            key.expose_secret(),
            context,
        )
        .await?;
        Ok(GeneratedKey { key, sealed })
    }

    async fn encrypt(
        &self,
        key_id: &KeyId,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Sealed, KmsError> {
        let cached = self.keys.usable(key_id).await?;
        wrap::seal(&self.keys, key_id, &cached.meta, plaintext, context).await
    }

    async fn decrypt(
        &self,
        blob: &ParsedBlob<'_>,
        context: &EncryptionContext,
    ) -> Result<Opened, KmsError> {
        wrap::open(&self.keys, blob, context).await
    }

    async fn create_key(&self, new: NewKey) -> Result<KeyMetadata, KmsError> {
        self.check_new(&new.key_id).await?;
        // Transit first: a record never points at a missing Transit key. A
        // failure between the two leaves a Transit key without a record,
        // which is not a kmsd key; creating the id again adopts it.
        self.keys.transit.create(&new.key_id).await?;
        self.record_new(new, KeyOrigin::Kmsd).await
    }

    async fn import_key(
        &self,
        new: NewKey,
        material: Zeroizing<[u8; crypto::KEY_LEN]>,
    ) -> Result<KeyMetadata, KmsError> {
        self.check_new(&new.key_id).await?;
        // Importing into an existing Transit key would add nothing kmsd
        // could tell apart from Transit's own material: refused.
        if self.keys.transit.read(&new.key_id).await?.is_some() {
            return Err(KmsError::KeyAlreadyExists(new.key_id));
        }
        byok::import(&self.keys.transit, &new.key_id, &material).await?;
        drop(material);
        self.record_new(new, KeyOrigin::External).await
    }

    async fn describe_key(&self, key_id: &KeyId) -> Result<KeyMetadata, KmsError> {
        self.keys.describe_fresh(key_id).await
    }

    async fn list_keys(
        &self,
        after: Option<&KeyId>,
        limit: usize,
    ) -> Result<Vec<KeyMetadata>, KmsError> {
        let mut ids = self.keys.records.list().await?;
        ids.sort();
        let start = after.map_or(0, |after| ids.partition_point(|id| id <= after));
        let mut keys = Vec::with_capacity(limit.min(ids.len()));
        for key_id in &ids[start..] {
            if keys.len() >= limit {
                break;
            }
            match self.keys.lookup(key_id, Duration::MAX).await {
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
        let meta = self.keys.describe_fresh(key_id).await?;
        if meta.state == KeyState::PendingDeletion {
            return Err(KmsError::InvalidStateTransition {
                key_id: key_id.clone(),
                state: meta.state.as_str(),
                action: "rotate",
            });
        }
        self.keys.transit.rotate(key_id).await?;
        self.keys.describe_fresh(key_id).await
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
                return self.keys.describe_fresh(key_id).await;
            }
            let mut record = current.record;
            record.state = state;
            record.deletion_date = deletion_date;
            if self.keys.records.write(&record, current.version).await? == Written::Done {
                if state != KeyState::Enabled {
                    self.keys.forget_intermediates(Some(key_id));
                }
                return self.keys.describe_fresh(key_id).await;
            }
        }
        Err(KmsError::BackendUnavailable {
            backend: "vault",
            detail: format!("key {key_id} kept changing under concurrent updates; try again"),
        })
    }

    async fn destroy_due_keys(&self, now: OffsetDateTime) -> Sweep {
        let mut sweep = Sweep::default();
        if let Err(e) = sweep::sweep(&self.keys, now, &mut sweep.destroyed).await {
            sweep.failed = Some(e);
        }
        sweep
    }

    async fn key_usable(&self, key_id: &KeyId) -> Result<(), KmsError> {
        self.keys.usable(key_id).await.map(drop)
    }

    async fn health(&self) -> Result<(), KmsError> {
        self.client.sender.health().await.map_err(KmsError::from)
    }
}

impl super::UsageStore for VaultBackend {
    async fn load_usage(&self, node: &str) -> Result<crate::usage::StoredUsage, KmsError> {
        Ok(self.usage.load(node).await?)
    }
    async fn store_usage(&self, node: &str, own: &crate::usage::Figures) -> Result<(), KmsError> {
        Ok(self.usage.store(node, own, self.clock.now()).await?)
    }
}
