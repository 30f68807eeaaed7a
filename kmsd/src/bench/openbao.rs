//! The baseline: OpenBao's (or Vault's) `transit/datakey/plaintext/<key>`
//! called directly, over kept-alive HTTP/1.1 connections, by the same
//! callers that drive kmsd.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use kms_client::SecretString;

/// A Transit data-key endpoint and the token to call it with.
#[derive(Clone)]
pub struct OpenBaoTarget {
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
    /// Shared by the clones (one per client task), never copied.
    token: std::sync::Arc<SecretString>,
}

impl std::fmt::Debug for OpenBaoTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenBaoTarget")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl OpenBaoTarget {
    /// `address` like `http://127.0.0.1:8200`, Transit mounted at `mount`.
    pub fn new(address: &str, mount: &str, key: &str, token: SecretString) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .build(connector);
        Self {
            client,
            url: format!(
                "{}/v1/{mount}/datakey/plaintext/{key}",
                address.trim_end_matches('/')
            ),
            token: std::sync::Arc::new(token),
        }
    }

    /// One data key; whether it succeeded.
    pub(super) async fn datakey(&self) -> bool {
        let Ok(request) = http::Request::post(&self.url)
            .header("x-vault-token", self.token.expose_secret())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
        else {
            return false;
        };
        match self.client.request(request).await {
            Ok(response) => {
                let ok = response.status().is_success();
                // Read the body so the connection goes back to the pool.
                ok && response.into_body().collect().await.is_ok()
            }
            Err(_) => false,
        }
    }
}
