//! Who may sign (the access keys) and what a signature must be scoped to:
//! service, region, clock window and the hosts this kmsd answers to.

use std::{collections::HashMap, fmt, time::Duration};

use kms_core::SecretString;

use super::{MAX_SKEW, SERVICE};

/// The admin access keys and their secrets.
#[derive(Default)]
pub struct Credentials {
    keys: HashMap<String, SecretString>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        ids.sort_unstable();
        f.debug_struct("Credentials")
            .field("access_keys", &ids)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Adds (or replaces) an access key.
    pub fn insert(&mut self, access_key: String, secret: SecretString) {
        self.keys.insert(access_key, secret);
    }

    /// The secret of `access_key`.
    pub fn secret(&self, access_key: &str) -> Option<&SecretString> {
        self.keys.get(access_key)
    }
}

/// What a signature must be scoped to.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The service in the credential scope.
    pub service: String,
    /// The only region accepted, or any (unit tests of the canonical form).
    pub region: Option<String>,
    /// The largest accepted clock difference.
    pub max_skew: Duration,
    /// The hosts a request may be signed for; `None` accepts any (unit
    /// tests of the canonical form).
    pub hosts: Option<HostPolicy>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            service: SERVICE.to_owned(),
            region: None,
            max_skew: MAX_SKEW,
            hosts: None,
        }
    }
}

/// The `Host` values this kmsd answers to. An entry with a port matches
/// exactly; an entry without one matches the bare host and the host with
/// the listener's own port. Compared without case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPolicy {
    entries: Vec<String>,
    port: u16,
}

impl HostPolicy {
    /// `entries` (host or host:port) for a listener bound to `port`.
    pub fn new(entries: impl IntoIterator<Item = String>, port: u16) -> Self {
        Self {
            entries: entries
                .into_iter()
                .map(|e| e.trim().to_ascii_lowercase())
                .collect(),
            port,
        }
    }

    /// Whether a request signed for `host` is meant for this kmsd.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let with_port = |entry: &str| format!("{entry}:{}", self.port);
        self.entries
            .iter()
            .any(|entry| *entry == host || (!has_port(entry) && with_port(entry) == host))
    }

    /// The entries, for the startup log.
    pub fn entries(&self) -> &[String] {
        &self.entries
    }
}

/// Whether `host` (a name, an IPv4 address or a bracketed IPv6 address)
/// ends in `:port`.
fn has_port(host: &str) -> bool {
    match host.rsplit_once(':') {
        Some((name, port)) => {
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!name.contains(':') || name.ends_with(']'))
        }
        None => false,
    }
}
