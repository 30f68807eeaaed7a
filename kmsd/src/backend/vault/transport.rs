//! The one HTTP client kmsd talks to Vault through: built once, shared by
//! every request, keeping its connections alive (HTTP/2 over TLS when
//! Vault offers it), with rustls on the ring provider.
//!
//! Why not `vaultrs::client::VaultClient`: it keeps the token in a plain
//! `String` of a `Debug`-printable settings struct, fills unset settings
//! from `VAULT_*` environment variables (including CA and client-key
//! paths), needs `&mut` to change the token, logs every Vault error at
//! ERROR level, and folds transport errors into a form that no longer
//! tells "connection refused" from "timed out". kmsd needs each of those
//! to behave otherwise, so it sends vaultrs' typed endpoints (paths, bodies,
//! response types; see `request.rs`) through this transport instead.

use std::time::Duration;

use reqwest::{
    Method,
    header::{HeaderMap, HeaderName, HeaderValue},
};
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::{
    error::VaultError,
    nodes::{Node, NodeHealth, Nodes},
    request::{VaultRequest, has_batch_results, status_error},
    settings::VaultSettings,
};
use crate::metrics::Metrics;

/// `X-Vault-Token`.
pub(crate) const TOKEN_HEADER: HeaderName = HeaderName::from_static("x-vault-token");
const NAMESPACE_HEADER: HeaderName = HeaderName::from_static("x-vault-namespace");
const REQUEST_HEADER: HeaderName = HeaderName::from_static("x-vault-request");

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A TLS file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file did not parse.
    #[error("{what} {path} is not usable PEM: {reason}")]
    Pem {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: String,
        /// The parser's reason.
        reason: String,
    },
    /// reqwest refused the configuration.
    #[error("cannot build the Vault HTTP client: {0}")]
    Build(String),
}

/// The shared HTTP client and what every request carries.
pub(crate) struct Transport {
    http: reqwest::Client,
    /// The configured nodes: one address, or an HA cluster's.
    pub(crate) nodes: Nodes,
    namespace: Option<HeaderValue>,
    hedge_after: Option<Duration>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("nodes", &self.nodes.describe())
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Builds the client. Reads the TLS files (off the runtime).
    pub(crate) async fn build(
        settings: &VaultSettings,
        metrics: Metrics,
    ) -> Result<Self, TransportError> {
        // The build's one crypto provider. An error only says a provider is
        // installed already, and ring is the only one compiled in.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = &settings.tls;
        let mut builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .user_agent(concat!("kmsd/", env!("CARGO_PKG_VERSION")))
            // A redirect would send the token to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(settings.attempt_timeout.min(Duration::from_secs(5)));
        match &tls.ca_cert_path {
            Some(path) => {
                let pem = read(path).await?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    TransportError::Pem {
                        what: "tls.ca_cert_path",
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    }
                })?;
                builder = builder.tls_certs_only(certs);
            }
            // Plain HTTP needs no trust store; building the platform's one
            // can fail on hosts without CA certificates.
            None if settings.addresses.iter().all(|a| a.scheme() == "http") => {
                builder = builder.tls_certs_only(Vec::new());
            }
            None => {}
        }
        if let Some((cert, key)) = &tls.client_identity {
            let mut pem = Zeroizing::new(read(cert).await?);
            pem.push(b'\n');
            pem.extend_from_slice(&Zeroizing::new(read(key).await?));
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| TransportError::Pem {
                what: "tls.client_cert_path/client_key_path",
                path: format!("{} + {}", cert.display(), key.display()),
                reason: e.to_string(),
            })?;
            builder = builder.identity(identity);
        }
        if tls.danger_skip_verify {
            tracing::warn!(
                address = %settings.addresses[0],
                "tls.danger_skip_tls_verify is set: Vault's certificate is NOT verified; anyone on the network path can read kmsd's token and every data key. Never use this in production."
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| TransportError::Build(root_cause(&e)))?;
        let nodes = Nodes::new(&settings.addresses, metrics).map_err(TransportError::Build)?;
        let namespace = settings
            .namespace
            .as_deref()
            .map(HeaderValue::from_str)
            .transpose()
            .map_err(|e| TransportError::Build(format!("namespace: {e}")))?;
        Ok(Self {
            http,
            nodes,
            namespace,
            hedge_after: settings.hedge_after,
        })
    }

    /// The address of the node kmsd sends to first.
    pub(crate) fn address(&self) -> &str {
        self.nodes.serving()
    }

    /// Sends one request: to the preferred node, and on to the next one
    /// while a node certainly did not act on it (refused, sealed, a
    /// redirecting or electing standby) or, for a call that may be
    /// repeated, did not answer in `per_node`. Nothing follows a 307: its
    /// `Location` names the active node as the standby last knew it, which
    /// during an election is the dead one; the other configured nodes are
    /// tried instead. `token` is the `X-Vault-Token` value (marked
    /// sensitive, so no HTTP log shows it).
    ///
    /// A hedgeable call ([`VaultRequest::hedge`]) the first node has not
    /// answered within `hedge_after_ms` is also sent down the rest of the
    /// order, and the first success wins (the other is dropped): a node that
    /// hangs (frozen, or forwarding to a frozen active node) costs that,
    /// not a whole attempt deadline. The winner becomes the preferred node
    /// until the next health poll chooses again.
    pub(crate) async fn send(
        &self,
        req: &VaultRequest,
        token: Option<&HeaderValue>,
        per_node: Duration,
        deadline: Instant,
    ) -> Result<Vec<u8>, VaultError> {
        let order = self.nodes.order();
        let first = order.first().copied().unwrap_or(0);
        let hedge_after = self.hedge_after.filter(|_| req.hedge && order.len() > 1);
        let Some(hedge_after) = hedge_after else {
            let (node, body) = self
                .send_in_order(req, token, per_node, deadline, &order)
                .await?;
            if node != first {
                self.nodes.prefer(node);
            }
            return Ok(body);
        };
        let primary = self.send_in_order(req, token, per_node, deadline, &order);
        tokio::pin!(primary);
        tokio::select! {
            result = &mut primary => {
                let (node, body) = result?;
                if node != first {
                    self.nodes.prefer(node);
                }
                return Ok(body);
            }
            () = tokio::time::sleep(hedge_after) => {}
        }
        tracing::debug!(op = %req.op(), node = %self.nodes.get(first).address, "no answer yet: hedging to the next Vault node");
        let hedge = self.send_in_order(req, token, per_node, deadline, &order[1..]);
        tokio::pin!(hedge);
        let (mut primary_error, mut hedge_failed) = (None, false);
        loop {
            tokio::select! {
                result = &mut primary, if primary_error.is_none() => match result {
                    Ok((node, body)) => {
                        if node != first {
                            self.nodes.prefer(node);
                        }
                        return Ok(body);
                    }
                    Err(e) => primary_error = Some(e),
                },
                result = &mut hedge, if !hedge_failed => match result {
                    Ok((node, body)) => {
                        self.nodes.prefer(node);
                        return Ok(body);
                    }
                    Err(_) => hedge_failed = true,
                },
            }
            // Both failed: the first node's error says most.
            if hedge_failed && let Some(e) = primary_error.take() {
                return Err(e);
            }
        }
    }

    /// Sends `req` to the nodes of `order` in turn, moving on while a node
    /// certainly did not act on it or, for a call that may be repeated, did
    /// not answer; the node that answered, and its answer.
    async fn send_in_order(
        &self,
        req: &VaultRequest,
        token: Option<&HeaderValue>,
        per_node: Duration,
        deadline: Instant,
        order: &[usize],
    ) -> Result<(usize, Vec<u8>), VaultError> {
        let mut last = None;
        for (tried, &i) in order.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            if tried > 0 && left.is_zero() {
                break;
            }
            let node = self.nodes.get(i);
            let result = self.send_to(node, req, token, per_node.min(left)).await;
            match result {
                Ok(body) => {
                    self.nodes.record(i, NodeHealth::Answering);
                    return Ok((i, body));
                }
                Err(e) => {
                    self.nodes.record(i, NodeHealth::after(&e));
                    let next_may_serve = e.not_processed()
                        || (req.idempotent
                            && matches!(
                                e,
                                VaultError::Unreachable { .. }
                                    | VaultError::Timeout { .. }
                                    | VaultError::Status { status: 500.., .. }
                            ));
                    if !next_may_serve {
                        return Err(e);
                    }
                    if order.len() > 1 {
                        tracing::debug!(op = %req.op(), node = %node.address, error = %e, "trying the next Vault node");
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| VaultError::Timeout {
            address: self.address().to_owned(),
            op: req.op(),
            after: per_node,
        }))
    }

    /// Sends one request to one node, once.
    async fn send_to(
        &self,
        node: &Node,
        req: &VaultRequest,
        token: Option<&HeaderValue>,
        timeout: Duration,
    ) -> Result<Vec<u8>, VaultError> {
        let mut url = node.base.join(&req.path).map_err(|e| VaultError::Decode {
            op: req.op(),
            reason: format!("bad path: {e}"),
        })?;
        url.set_query(req.query.as_deref());
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(REQUEST_HEADER, HeaderValue::from_static("true"));
        if let Some(token) = token {
            headers.insert(TOKEN_HEADER, token.clone());
        }
        if let Some(ns) = &self.namespace {
            headers.insert(NAMESPACE_HEADER, ns.clone());
        }
        let mut builder = self
            .http
            .request(req.method.clone(), url)
            .headers(headers)
            .timeout(timeout);
        if let Some(body) = &req.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let response = builder
            .send()
            .await
            .map_err(|e| transport_error(node, &e, req, timeout))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(node, &e, req, timeout))?;
        if status.is_success() || (req.batch && status == 400 && has_batch_results(&bytes)) {
            return Ok(bytes.to_vec());
        }
        Err(status_error(status, &bytes, req.op()))
    }

    /// `GET sys/health` of every node, unauthenticated: Ok when one
    /// serves requests (active, or a standby that forwards them). Records
    /// each node's health and prefers the active one.
    pub(crate) async fn health(&self, timeout: Duration) -> Result<(), VaultError> {
        let mut first_error = None;
        let mut serves = false;
        // All at once: a frozen node costs the poll one timeout, not one per
        // node behind it.
        let answers = futures_util::future::join_all(
            (0..self.nodes.len()).map(|i| self.node_health(self.nodes.get(i), timeout)),
        )
        .await;
        for (i, answer) in answers.into_iter().enumerate() {
            match answer {
                Ok(health) => {
                    self.nodes.record(i, health);
                    serves = true;
                }
                Err(e) => {
                    self.nodes.record(i, NodeHealth::after(&e));
                    if i == self.nodes.preferred() || first_error.is_none() {
                        first_error = Some(e);
                    }
                }
            }
        }
        self.nodes.choose();
        match (serves, first_error) {
            (false, Some(e)) => Err(e),
            _ => Ok(()),
        }
    }

    async fn node_health(&self, node: &Node, timeout: Duration) -> Result<NodeHealth, VaultError> {
        let req = VaultRequest {
            method: Method::GET,
            path: "sys/health".into(),
            query: None,
            body: None,
            idempotent: true,
            batch: false,
            hedge: false,
        };
        match self.send_to(node, &req, None, timeout).await {
            Ok(_) => Ok(NodeHealth::Active),
            // 429 standby, 472 DR secondary, 473 performance standby.
            Err(VaultError::Status {
                status: 429 | 472 | 473,
                ..
            }) => Ok(NodeHealth::Standby),
            Err(VaultError::Status {
                status: 501, op, ..
            }) => Err(VaultError::Status {
                status: 501,
                op,
                message: "Vault is not initialized".into(),
            }),
            Err(e) => Err(e),
        }
    }
}

fn transport_error(
    node: &Node,
    e: &reqwest::Error,
    req: &VaultRequest,
    timeout: Duration,
) -> VaultError {
    if e.is_timeout() {
        return VaultError::Timeout {
            address: node.address.clone(),
            op: req.op(),
            after: timeout,
        };
    }
    VaultError::Unreachable {
        address: node.address.clone(),
        reason: root_cause(e),
        before_sending: e.is_connect(),
    }
}

async fn read(path: &std::path::Path) -> Result<Vec<u8>, TransportError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| TransportError::Read {
            path: path.display().to_string(),
            source,
        })
}

/// The innermost cause: "Connection refused (os error 111)" rather than
/// "error sending request for url (...)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
