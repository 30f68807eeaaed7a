//! The configured nodes of a Vault/OpenBao HA cluster as kmsd sees them:
//! each node's last known health, and which node kmsd sends to first.
//!
//! kmsd prefers the active node (writes need no forwarding, and a frozen
//! leader cannot hang a forwarded request). It learns which one that is
//! from `sys/health` (200 active, 429 standby, 503 sealed), polled once a
//! second when more than one address is configured, and from how requests
//! end: a node that answers becomes the preferred one when the preferred
//! one failed. The other nodes are tried in turn when the preferred one is
//! refused, sealed, a redirecting or electing standby, or too slow (for
//! calls that may be repeated); see `transport.rs`.

use std::{
    sync::atomic::{AtomicU8, AtomicUsize, Ordering},
    time::Duration,
};

use reqwest::Url;

use super::error::VaultError;
use crate::metrics::Metrics;

/// How often the nodes' health is polled (several addresses only).
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A node's last known health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeHealth {
    /// Not asked yet.
    Unknown,
    /// `sys/health` said active.
    Active,
    /// A standby (429, a redirect, the 500 of an election).
    Standby,
    /// It answered a request (active or standby, not known which).
    Answering,
    /// 503: sealed.
    Sealed,
    /// Refused, timed out, or otherwise not answering.
    Down,
}

impl NodeHealth {
    const ALL: [NodeHealth; 6] = [
        NodeHealth::Unknown,
        NodeHealth::Active,
        NodeHealth::Standby,
        NodeHealth::Answering,
        NodeHealth::Sealed,
        NodeHealth::Down,
    ];

    fn code(self) -> u8 {
        match self {
            NodeHealth::Unknown => 0,
            NodeHealth::Active => 1,
            NodeHealth::Standby => 2,
            NodeHealth::Answering => 3,
            NodeHealth::Sealed => 4,
            NodeHealth::Down => 5,
        }
    }

    fn from_code(code: u8) -> Self {
        Self::ALL
            .into_iter()
            .find(|h| h.code() == code)
            .unwrap_or(NodeHealth::Unknown)
    }

    /// Whether the node answers requests.
    pub(crate) fn up(self) -> bool {
        matches!(
            self,
            NodeHealth::Active | NodeHealth::Standby | NodeHealth::Answering
        )
    }

    fn name(self) -> &'static str {
        match self {
            NodeHealth::Unknown => "unknown",
            NodeHealth::Active => "active",
            NodeHealth::Standby => "standby",
            NodeHealth::Answering => "up",
            NodeHealth::Sealed => "sealed",
            NodeHealth::Down => "down",
        }
    }

    /// What a failed request says about the node that answered it.
    pub(crate) fn after(e: &VaultError) -> Self {
        match e {
            VaultError::Unreachable { .. } | VaultError::Timeout { .. } => NodeHealth::Down,
            VaultError::Sealed { .. } => NodeHealth::Sealed,
            VaultError::Status { status, .. } if *status == 429 || *status == 307 => {
                NodeHealth::Standby
            }
            e if e.not_processed() => NodeHealth::Standby,
            // Any other answer comes from a node that is up.
            _ => NodeHealth::Answering,
        }
    }
}

/// One configured node.
#[derive(Debug)]
pub(crate) struct Node {
    /// The address with `v1/` appended.
    pub(crate) base: Url,
    /// The address as configured, without a trailing slash.
    pub(crate) address: String,
    health: AtomicU8,
}

/// The configured nodes (one, or a cluster's).
#[derive(Debug)]
pub(crate) struct Nodes {
    list: Vec<Node>,
    preferred: AtomicUsize,
    metrics: Metrics,
}

impl Nodes {
    /// The nodes of `addresses`, in their order; the first is preferred
    /// until kmsd knows better.
    pub(crate) fn new(addresses: &[Url], metrics: Metrics) -> Result<Self, String> {
        let list = addresses
            .iter()
            .map(|a| {
                Ok(Node {
                    base: a.join("v1/").map_err(|e| format!("address: {e}"))?,
                    address: a.as_str().trim_end_matches('/').to_owned(),
                    health: AtomicU8::new(NodeHealth::Unknown.code()),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if list.is_empty() {
            return Err("no Vault address".into());
        }
        let nodes = Self {
            list,
            preferred: AtomicUsize::new(0),
            metrics,
        };
        nodes.metrics.reset_vault_nodes();
        nodes.publish();
        Ok(nodes)
    }

    /// How many nodes are configured.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Node `i`.
    pub(crate) fn get(&self, i: usize) -> &Node {
        &self.list[i % self.list.len()]
    }

    /// The order to try the nodes in: the preferred one, then those that
    /// answered last, then those not asked yet, then those that failed,
    /// each group in configuration order.
    pub(crate) fn order(&self) -> Vec<usize> {
        let preferred = self.preferred();
        let mut order: Vec<usize> = (0..self.list.len()).collect();
        order.sort_by_key(|&i| {
            let rank = match self.health(i) {
                h if h.up() => 0,
                NodeHealth::Unknown => 1,
                _ => 2,
            };
            (i != preferred, rank, i)
        });
        order
    }

    /// The node kmsd sends to first.
    pub(crate) fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed) % self.list.len()
    }

    /// The preferred node's address.
    pub(crate) fn serving(&self) -> &str {
        &self.get(self.preferred()).address
    }

    fn health(&self, i: usize) -> NodeHealth {
        NodeHealth::from_code(self.get(i).health.load(Ordering::Relaxed))
    }

    /// Records what node `i` just showed. A request that was answered
    /// keeps the role `sys/health` reported.
    pub(crate) fn record(&self, i: usize, health: NodeHealth) {
        let node = self.get(i);
        let before = self.health(i);
        let health = match (health, before) {
            (NodeHealth::Answering, NodeHealth::Active | NodeHealth::Standby) => before,
            _ => health,
        };
        if before != health {
            node.health.store(health.code(), Ordering::Relaxed);
            if !health.up() && before.up() {
                tracing::warn!(node = %node.address, health = health.name(), "a Vault node stopped answering");
            } else if health.up() && !before.up() && before != NodeHealth::Unknown {
                tracing::info!(node = %node.address, health = health.name(), "a Vault node answers again");
            }
            self.publish();
        }
    }

    /// Sends to node `i` first from now on.
    pub(crate) fn prefer(&self, i: usize) {
        let before = self.preferred.swap(i, Ordering::Relaxed);
        if before != i {
            tracing::info!(node = %self.get(i).address, "sending to another Vault node first");
            self.publish();
        }
    }

    /// After a health poll: prefer the active node, else keep the
    /// preferred one while it answers, else the first that answers.
    pub(crate) fn choose(&self) {
        let active = (0..self.list.len()).find(|&i| self.health(i) == NodeHealth::Active);
        if let Some(active) = active {
            self.prefer(active);
        } else if !self.health(self.preferred()).up()
            && let Some(up) = (0..self.list.len()).find(|&i| self.health(i).up())
        {
            self.prefer(up);
        }
    }

    fn publish(&self) {
        let preferred = self.preferred();
        for (i, node) in self.list.iter().enumerate() {
            self.metrics
                .set_vault_node(&node.address, self.health(i).up(), i == preferred);
        }
    }

    /// `http://a (active, serving), http://b (standby), ...` for status.
    pub(crate) fn describe(&self) -> String {
        let preferred = self.preferred();
        self.list
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let serving = if i == preferred { ", serving" } else { "" };
                format!("{} ({}{serving})", node.address, self.health(i).name())
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: u16) -> Nodes {
        let addresses: Vec<Url> = (1..=n)
            .map(|p| Url::parse(&format!("http://127.0.0.1:{p}")).unwrap())
            .collect();
        Nodes::new(&addresses, Metrics::new()).unwrap()
    }

    #[test]
    fn the_preferred_node_first_then_those_that_answer() {
        let n = nodes(3);
        assert_eq!(n.order(), [0, 1, 2]);
        n.record(1, NodeHealth::Down);
        assert_eq!(n.order(), [0, 2, 1]);
        n.record(2, NodeHealth::Active);
        n.choose();
        assert_eq!(n.preferred(), 2);
        assert_eq!(n.order(), [2, 0, 1]);
        assert!(
            n.describe()
                .contains("http://127.0.0.1:3 (active, serving)")
        );
        // An answered request keeps the role health reported.
        n.record(2, NodeHealth::Answering);
        assert!(n.describe().contains("(active, serving)"));
        n.record(2, NodeHealth::Down);
        n.choose();
        // No node answers: the preferred one stays (the order tries the
        // others anyway).
        assert_eq!(n.preferred(), 2);
        n.record(0, NodeHealth::Standby);
        n.choose();
        assert_eq!(n.preferred(), 0, "{}", n.describe());
    }

    #[test]
    fn failures_say_what_the_node_is() {
        let status = |status, message: &str| VaultError::Status {
            status,
            op: "x".into(),
            message: message.into(),
        };
        assert_eq!(NodeHealth::after(&status(307, "")), NodeHealth::Standby);
        assert_eq!(
            NodeHealth::after(&status(
                500,
                "local node not active but active cluster node not found"
            )),
            NodeHealth::Standby
        );
        assert_eq!(
            NodeHealth::after(&VaultError::Sealed { op: "x".into() }),
            NodeHealth::Sealed
        );
        assert_eq!(
            NodeHealth::after(&VaultError::BadRequest {
                op: "x".into(),
                message: String::new()
            }),
            NodeHealth::Answering
        );
    }
}
