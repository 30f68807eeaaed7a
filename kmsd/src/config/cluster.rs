//! `[cluster]`: the other sidecars of this deployment, asked for their
//! configuration fingerprint so that `/kms/status` can report whether
//! they agree (docs/operations.md, "Several sidecars").

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// `peer_timeout_ms` when unset.
const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_millis(2000);
/// The most peers accepted: each status call asks every one.
const MAX_PEERS: usize = 256;

/// `[cluster]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// This sidecar's name in `cluster_config.nodes[].host` (default
    /// `local`).
    pub node_name: Option<String>,
    /// The `[metrics]` listeners of the other sidecars, e.g.
    /// `http://10.0.0.2:9464`: kmsd reads their `kmsd_config_info`.
    #[serde(default)]
    pub peers: Vec<String>,
    /// The deadline of asking one peer, in milliseconds (default 2000).
    pub peer_timeout_ms: Option<u64>,
}

/// The validated `[cluster]` section (no peers: drift is not checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// This sidecar's name in reports.
    pub node_name: String,
    /// `http://host:port` of each peer's metrics listener.
    pub peers: Vec<String>,
    /// The deadline of asking one peer.
    pub peer_timeout: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            node_name: "local".into(),
            peers: Vec::new(),
            peer_timeout: DEFAULT_PEER_TIMEOUT,
        }
    }
}

impl ClusterSettings {
    /// Validates `[cluster]`.
    pub fn from_raw(raw: RawCluster) -> Result<Self, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(m);
        let node_name = raw.node_name.unwrap_or_else(|| "local".into());
        if node_name.is_empty()
            || node_name.len() > 253
            || !node_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        {
            return Err(invalid(
                "cluster.node_name must be 1-253 characters of [A-Za-z0-9._:-]".into(),
            ));
        }
        if raw.peers.len() > MAX_PEERS {
            return Err(invalid(format!(
                "cluster.peers lists {} sidecars; at most {MAX_PEERS}",
                raw.peers.len()
            )));
        }
        let peers = raw
            .peers
            .iter()
            .map(|p| peer_address(p))
            .collect::<Result<Vec<_>, _>>()?;
        let peer_timeout = match raw.peer_timeout_ms {
            None => DEFAULT_PEER_TIMEOUT,
            Some(ms @ 50..=60_000) => Duration::from_millis(ms),
            Some(ms) => {
                return Err(invalid(format!(
                    "cluster.peer_timeout_ms = {ms}: must be 50..=60000"
                )));
            }
        };
        Ok(Self {
            node_name,
            peers,
            peer_timeout,
        })
    }
}

/// `http://host:port` with nothing else: the metrics listener is plain
/// HTTP and serves `/metrics` at the root.
fn peer_address(text: &str) -> Result<String, ConfigError> {
    let refuse = |why: &str| {
        ConfigError::Invalid(format!(
            "cluster.peers entry {text:?}: {why} (expected http://host:port of a peer's [metrics] listener)"
        ))
    };
    let uri: http::Uri = text.parse().map_err(|_| refuse("not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(refuse("the scheme must be http"));
    }
    let authority = uri.authority().ok_or_else(|| refuse("no host"))?;
    if authority.as_str().contains('@') {
        return Err(refuse("credentials do not belong in a peer address"));
    }
    if authority.port_u16().is_none() {
        return Err(refuse("no port"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(refuse("no path or query: /metrics is appended"));
    }
    Ok(format!("http://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_text: &str) -> Result<ClusterSettings, ConfigError> {
        ClusterSettings::from_raw(toml::from_str(toml_text).unwrap())
    }

    #[test]
    fn peers_are_http_host_port_of_metrics_listeners() {
        let ok = settings(
            "node_name = \"node-1\"\npeers = [\"http://10.0.0.2:9464\", \"http://[::1]:9464/\"]\npeer_timeout_ms = 500",
        )
        .unwrap();
        assert_eq!(ok.peers, ["http://10.0.0.2:9464", "http://[::1]:9464"]);
        assert_eq!(ok.peer_timeout, Duration::from_millis(500));
        assert_eq!(ok.node_name, "node-1");
        assert_eq!(settings("").unwrap(), ClusterSettings::default());
        for bad in [
            "peers = [\"https://10.0.0.2:9464\"]",
            "peers = [\"http://10.0.0.2\"]",
            "peers = [\"http://u:p@10.0.0.2:9464\"]",
            "peers = [\"http://10.0.0.2:9464/metrics\"]",
            "peers = [\"10.0.0.2:9464\"]",
            "peer_timeout_ms = 0",
            "node_name = \"a b\"",
        ] {
            assert!(settings(bad).is_err(), "{bad}");
        }
    }
}
