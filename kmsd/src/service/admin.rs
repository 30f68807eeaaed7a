//! The runtime admin operations, audited like every other operation.

use std::time::Instant;

use super::{Kms, observe::Audit};
use crate::{
    config::BackendConfig,
    error::KmsError,
    request::{Operation, RequestContext},
};

impl Kms {
    /// Parses a backend configuration sent to the admin API and checks it
    /// against the `[admin]` rules, before anything is read or connected
    /// to (see `config/admin_plane.rs`).
    fn parse_backend(&self, json: &str) -> Result<BackendConfig, KmsError> {
        let backend =
            BackendConfig::from_json(json).map_err(|e| KmsError::InvalidConfig(e.to_string()))?;
        self.inner
            .admin_rules
            .check(&backend)
            .map_err(|e| KmsError::InvalidConfig(e.to_string()))?;
        Ok(backend)
    }

    pub(super) async fn admin_op<T>(
        &self,
        cx: &RequestContext,
        op: Operation,
        call: impl AsyncFnOnce() -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let started = Instant::now();
        let result = async {
            self.authorize(cx, op, None)?;
            call().await
        }
        .await;
        self.finish(cx, op, started, &Audit::default(), result)
            .await
    }

    /// Admin: the caller may read the status (policy check and audit).
    pub async fn authorize_status(&self, cx: &RequestContext) -> Result<(), KmsError> {
        let started = Instant::now();
        let result = self.authorize(cx, Operation::Status, None);
        self.finish(cx, Operation::Status, started, &Audit::default(), result)
            .await
    }

    /// Admin: store a backend configuration, given as JSON (parsed only
    /// once the caller is authorised).
    pub async fn configure(&self, cx: &RequestContext, backend_json: &str) -> Result<(), KmsError> {
        self.admin_op(cx, Operation::Configure, async || {
            let backend = self.parse_backend(backend_json)?;
            self.inner.lifecycle.configure(backend).await
        })
        .await
    }

    /// Admin: start serving.
    pub async fn start(&self, cx: &RequestContext) -> Result<(), KmsError> {
        self.admin_op(cx, Operation::Start, async || {
            self.inner.lifecycle.start().await
        })
        .await
    }

    /// Admin: stop serving.
    pub async fn stop(&self, cx: &RequestContext) -> Result<(), KmsError> {
        self.admin_op(cx, Operation::Stop, async || {
            let result = self.inner.lifecycle.stop().await;
            self.inner.cache.clear();
            result
        })
        .await
    }

    /// Admin: replace the backend with no restart.
    pub async fn reconfigure(
        &self,
        cx: &RequestContext,
        backend_json: &str,
        discard_previous: bool,
    ) -> Result<(), KmsError> {
        self.admin_op(cx, Operation::Reconfigure, async || {
            let backend = self.parse_backend(backend_json)?;
            let result = self
                .inner
                .lifecycle
                .reconfigure(backend, discard_previous)
                .await;
            // A dropped backend's blobs must stop opening from the cache too.
            if result.is_ok() {
                self.inner.cache.clear();
            }
            result
        })
        .await
    }

    /// Admin: add a backend for decryption only; the active one keeps
    /// sealing (the first pass of a rolling reconfiguration).
    pub async fn add_decrypt_only(
        &self,
        cx: &RequestContext,
        backend_json: &str,
    ) -> Result<(), KmsError> {
        self.admin_op(cx, Operation::Reconfigure, async || {
            let backend = self.parse_backend(backend_json)?;
            self.inner.lifecycle.add_decrypt_only(backend).await
        })
        .await
    }

    /// Admin: drop every cached data key and the backend's metadata cache;
    /// returns how many entries there were.
    pub async fn clear_cache(&self, cx: &RequestContext) -> Result<u64, KmsError> {
        self.admin_op(cx, Operation::ClearCache, async || {
            let backend = self
                .inner
                .lifecycle
                .active()
                .map(|active| active.backend.clear_cache())
                .unwrap_or(0);
            Ok(self.inner.cache.clear() + u64::try_from(backend).unwrap_or(u64::MAX))
        })
        .await
    }
}
