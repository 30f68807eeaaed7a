//! The authenticated client: every call carries the current token, and a
//! 403 gets one token refresh. Above the transport and `auth`; below the
//! Transit and KV endpoints, which send through it.

use std::sync::Arc;

use rustify::endpoint::Endpoint;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::{
    auth::Auth,
    error::VaultError,
    request::{self, VaultRequest},
    sender::Sender,
};

/// An authenticated view of Vault: every call carries the current token.
#[derive(Debug, Clone)]
pub(crate) struct VaultClient {
    /// Transport, retries and deadline.
    pub(crate) sender: Arc<Sender>,
    /// The token and its lifecycle.
    pub(crate) auth: Arc<Auth>,
}

impl VaultClient {
    /// Sends `req` with the current token. A 403 gets one chance: the
    /// token is checked (once for all requests that failed with it) and,
    /// if it is dead, replaced; then the request is sent again.
    pub(crate) async fn call(&self, req: &VaultRequest) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let token = self.auth.current();
        match token.send(&self.sender, req).await {
            Err(VaultError::Denied { op }) => {
                if self
                    .auth
                    .recover_from_denial(&self.sender, token.generation())
                    .await?
                {
                    self.auth.current().send(&self.sender, req).await
                } else {
                    Err(VaultError::Denied { op })
                }
            }
            other => other,
        }
    }

    /// Sends `req` and returns the `data` of the answer: the typed helper
    /// for the requests vaultrs has no endpoint for.
    pub(crate) async fn call_data<T: DeserializeOwned>(
        &self,
        req: &VaultRequest,
    ) -> Result<T, VaultError> {
        let body = self.call(req).await?;
        request::data(&req.op(), &body)
    }

    /// Sends a vaultrs endpoint and returns its `data`.
    pub(crate) async fn data<E, T>(&self, endpoint: &E, idempotent: bool) -> Result<T, VaultError>
    where
        E: Endpoint,
        T: DeserializeOwned,
    {
        self.call_data(&request::request(endpoint, idempotent)?)
            .await
    }

    /// Sends a vaultrs endpoint whose answer carries nothing kmsd needs.
    pub(crate) async fn exec<E: Endpoint>(
        &self,
        endpoint: &E,
        idempotent: bool,
    ) -> Result<(), VaultError> {
        let req = request::request(endpoint, idempotent)?;
        self.call(&req).await.map(drop)
    }
}
