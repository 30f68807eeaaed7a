//! Drift between the sidecars of one deployment: each kmsd publishes its
//! configuration fingerprint (`kmsd_config_info` on the public `/metrics`);
//! a kmsd with `[cluster] peers` reads theirs for the `cluster_config`
//! block of `/kms/status`, in RustFS's shape
//! `{consistent, nodes[{host, config_fingerprint, error}]}`.
//!
//! Peers are asked on their `[metrics]` listener because that is the one
//! listener meant to face the pod network, and it needs no credentials:
//! the fingerprint is a hash of non-secret settings and already public
//! there as a metric label. The fields behind it are not published there;
//! `kmsd cluster check` gets them through each sidecar's authenticated
//! Admin `Status` to say how sidecars differ.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde::Serialize;

use crate::config::ClusterSettings;

/// The largest `/metrics` page read from a peer.
const MAX_METRICS_BYTES: usize = 4 << 20;

/// The `cluster_config` block.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Every node answered and all fingerprints are equal.
    pub consistent: bool,
    /// This node first, then the peers in configuration order.
    pub nodes: Vec<NodeFingerprint>,
}

/// One node of [`ClusterConfig`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeFingerprint {
    /// The node's name (`[cluster] node_name`) or peer address.
    pub host: String,
    /// Its fingerprint; empty when it could not be read.
    pub config_fingerprint: String,
    /// Why the fingerprint could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ClusterConfig {
    /// Whether every node answered with the same fingerprint.
    pub fn from_nodes(nodes: Vec<NodeFingerprint>) -> Self {
        let consistent = nodes.iter().all(|n| n.error.is_none())
            && nodes
                .windows(2)
                .all(|w| w[0].config_fingerprint == w[1].config_fingerprint);
        Self { consistent, nodes }
    }
}

/// The peers of `[cluster]`, asked on every status call that reports
/// `cluster_config`.
#[derive(Debug, Clone)]
pub struct Peers {
    settings: Arc<ClusterSettings>,
}

impl Peers {
    /// Peers from `[cluster]`.
    pub fn new(settings: ClusterSettings) -> Self {
        Self {
            settings: Arc::new(settings),
        }
    }

    /// The `cluster_config` block, or `None` when no peers are configured.
    /// Peers are asked in parallel, each within `peer_timeout`.
    pub async fn cluster_config(&self, own_fingerprint: &str) -> Option<ClusterConfig> {
        if self.settings.peers.is_empty() {
            return None;
        }
        let mut asks = tokio::task::JoinSet::new();
        for (index, peer) in self.settings.peers.iter().enumerate() {
            let (peer, timeout) = (peer.clone(), self.settings.peer_timeout);
            asks.spawn(async move { (index, fetch_fingerprint(&peer, timeout).await) });
        }
        let mut answers: Vec<Option<Result<String, String>>> =
            vec![None; self.settings.peers.len()];
        while let Some(joined) = asks.join_next().await {
            if let Ok((index, answer)) = joined
                && let Some(slot) = answers.get_mut(index)
            {
                *slot = Some(answer);
            }
        }
        let own = NodeFingerprint {
            host: self.settings.node_name.clone(),
            config_fingerprint: own_fingerprint.to_owned(),
            error: None,
        };
        let peers = self
            .settings
            .peers
            .iter()
            .zip(answers)
            .map(|(peer, answer)| {
                let answer = answer.unwrap_or_else(|| Err("the request task failed".to_owned()));
                match answer {
                    Ok(fingerprint) => NodeFingerprint {
                        host: peer.clone(),
                        config_fingerprint: fingerprint,
                        error: None,
                    },
                    Err(error) => NodeFingerprint {
                        host: peer.clone(),
                        config_fingerprint: String::new(),
                        error: Some(error),
                    },
                }
            });
        Some(ClusterConfig::from_nodes(
            std::iter::once(own).chain(peers).collect(),
        ))
    }
}

/// `GET <peer>/metrics` and the `config_fingerprint` label of
/// `kmsd_config_info`.
async fn fetch_fingerprint(peer: &str, timeout: Duration) -> Result<String, String> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("{peer}/metrics")
        .parse()
        .map_err(|_| "invalid peer address".to_owned())?;
    let ask = async {
        let response = client
            .get(uri)
            .await
            .map_err(|e| format!("unreachable: {}", root_cause(&e)))?;
        if !response.status().is_success() {
            return Err(format!(
                "/metrics answered HTTP {}",
                response.status().as_u16()
            ));
        }
        let body = Limited::new(response.into_body(), MAX_METRICS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading /metrics: {e}"))?
            .to_bytes();
        let text = std::str::from_utf8(&body).map_err(|_| "/metrics is not UTF-8".to_owned())?;
        fingerprint_from_metrics(text)
            .map(str::to_owned)
            .ok_or_else(|| {
                "no kmsd_config_info in /metrics (not a kmsd, or one without fingerprints)"
                    .to_owned()
            })
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The `config_fingerprint` label of the `kmsd_config_info` series in a
/// Prometheus text exposition.
pub fn fingerprint_from_metrics(text: &str) -> Option<&str> {
    text.lines()
        .filter_map(|line| line.strip_prefix("kmsd_config_info{"))
        .find_map(|labels| {
            let start = labels.find("config_fingerprint=\"")? + "config_fingerprint=\"".len();
            let value = &labels[start..];
            let end = value.find('"')?;
            Some(&value[..end])
        })
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_read_from_the_info_series() {
        let text = "# HELP kmsd_config_info x\n# TYPE kmsd_config_info gauge\nkmsd_config_info{backend_type=\"vault\",config_fingerprint=\"0123456789abcdef\"} 1\n";
        assert_eq!(fingerprint_from_metrics(text), Some("0123456789abcdef"));
        assert_eq!(
            fingerprint_from_metrics("kmsd_build_info{version=\"1\"} 1\n"),
            None
        );
        assert_eq!(
            fingerprint_from_metrics("kmsd_config_info{config_fingerprint=\"x\\\"y\"} 1\n"),
            None
        );
    }

    fn node(host: &str, fp: &str, error: Option<&str>) -> NodeFingerprint {
        NodeFingerprint {
            host: host.into(),
            config_fingerprint: fp.into(),
            error: error.map(Into::into),
        }
    }

    #[test]
    fn consistent_means_all_answered_and_agree() {
        assert!(
            ClusterConfig::from_nodes(vec![node("a", "1", None), node("b", "1", None)]).consistent
        );
        assert!(
            !ClusterConfig::from_nodes(vec![node("a", "1", None), node("b", "2", None)]).consistent
        );
        assert!(
            !ClusterConfig::from_nodes(vec![node("a", "1", None), node("b", "", Some("down"))])
                .consistent
        );
    }

    /// A peer that does not answer costs the timeout, not more, and is
    /// reported with its reason; so is one that is not a kmsd.
    #[tokio::test]
    async fn unreachable_or_foreign_peers_are_reported_as_errors() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        // Accepts and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        let _keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
            }
        });
        let peers = Peers::new(ClusterSettings {
            node_name: "me".into(),
            peers: vec![
                format!("http://127.0.0.1:{closed_port}"),
                format!("http://127.0.0.1:{silent_port}"),
            ],
            peer_timeout: Duration::from_millis(300),
        });
        let started = std::time::Instant::now();
        let report = peers.cluster_config("00ff").await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!report.consistent);
        assert_eq!(report.nodes[0], node("me", "00ff", None));
        assert!(
            report.nodes[1]
                .error
                .as_deref()
                .unwrap()
                .starts_with("unreachable"),
            "{report:?}"
        );
        assert_eq!(
            report.nodes[2].error.as_deref(),
            Some("no answer within 300 ms")
        );
        assert!(
            Peers::new(ClusterSettings::default())
                .cluster_config("00")
                .await
                .is_none()
        );
    }
}
