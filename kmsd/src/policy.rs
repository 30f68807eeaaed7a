//! Who may do what: per-identity access policy (docs/security.md).
//!
//! A policy file names identities (by unix peer uid/gid, TLS client key or
//! admin access key) and grants each of them policies. A policy allows
//! operations, optionally only on key ids matching patterns, and may deny
//! operations or key ids outright. Deny wins; anything not allowed is
//! denied.
//!
//! Without a policy file, every *authenticated* caller may do everything:
//! a unix-socket peer (let in by the socket's mode and
//! `unix_socket_allowed_uids/gids`), a TLS client whose certificate chains
//! to the configured CA, an admin access key with a valid signature. An
//! unauthenticated caller (plain TCP) is served only when the operator set
//! `danger_plaintext_tcp`; with a policy file it is never served.
//!
//! ```toml
//! [[identities]]
//! name = "rustfs"
//! unix_uid = 1000
//! policies = ["storage-server"]
//!
//! [policies.storage-server]
//! allow = ["GenerateDataKey", "Decrypt", "ReEncrypt"]
//! keys = ["rustfs-*", "default"]
//! ```

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::{
    alias::{ALIAS_PREFIX, AliasName},
    key_id::KeyId,
    request::{Identity, Operation, Plane},
};

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid policy.
    #[error("invalid policy file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicyFile {
    #[serde(default)]
    identities: Vec<RawIdentity>,
    #[serde(default)]
    policies: BTreeMap<String, RawPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    name: String,
    unix_uid: Option<u32>,
    unix_gid: Option<u32>,
    spki_sha256: Option<String>,
    access_key: Option<String>,
    #[serde(default)]
    policies: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    allow: Vec<String>,
    keys: Option<Vec<String>>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    deny_keys: Vec<String>,
}

/// How an identity entry recognises a caller; every given field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Matcher {
    unix_uid: Option<u32>,
    unix_gid: Option<u32>,
    spki_sha256: Option<String>,
    access_key: Option<String>,
}

impl Matcher {
    fn matches(&self, caller: &Identity) -> bool {
        match caller {
            Identity::UnixPeer { uid, gid } => {
                (self.unix_uid.is_some() || self.unix_gid.is_some())
                    && self.spki_sha256.is_none()
                    && self.access_key.is_none()
                    && self.unix_uid.is_none_or(|u| u == *uid)
                    && self.unix_gid.is_none_or(|g| g == *gid)
            }
            Identity::Certificate { spki_sha256, .. } => {
                self.spki_sha256.as_deref() == Some(spki_sha256.as_str())
            }
            Identity::AdminKey(key) => self.access_key.as_deref() == Some(key.as_str()),
            Identity::Anonymous | Identity::Internal => false,
        }
    }
}

#[derive(Debug, Clone)]
struct Rules {
    allow: HashSet<Operation>,
    keys: Vec<String>,
    deny: HashSet<Operation>,
    deny_keys: Vec<String>,
}

#[derive(Debug, Clone)]
struct IdentityEntry {
    name: String,
    matcher: Matcher,
    rules: Vec<Rules>,
}

/// An access policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `None`: no policy file; every authenticated caller may do
    /// everything.
    identities: Option<Vec<IdentityEntry>>,
    /// Without a policy file: whether an unauthenticated caller is served
    /// too (only `danger_plaintext_tcp` says so).
    anonymous_allowed: bool,
}

/// Expands an operation pattern: an operation name, a plane (`data:*`,
/// `keys:*`, `admin:*`) or `*`.
fn operations(pattern: &str) -> Result<Vec<Operation>, String> {
    let plane = match pattern {
        "*" => return Ok(Operation::ALL.to_vec()),
        "data:*" => Some(Plane::Data),
        "keys:*" => Some(Plane::Keys),
        "admin:*" => Some(Plane::Admin),
        _ => None,
    };
    match plane {
        Some(plane) => Ok(Operation::ALL
            .into_iter()
            .filter(|op| op.plane() == plane)
            .collect()),
        None => Operation::from_name(pattern)
            .map(|op| vec![op])
            .ok_or_else(|| format!("unknown operation {pattern:?}")),
    }
}

/// Matches `text` against a pattern where `*` is any run of characters and
/// `?` is one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut star_ti) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            star_ti = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            star_ti += 1;
            ti = star_ti;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl Policy {
    /// Allows every caller everything, unauthenticated ones included
    /// (tests and tools that run kmsd in-process).
    pub fn allow_all() -> Self {
        Self {
            identities: None,
            anonymous_allowed: true,
        }
    }

    /// The rule without a policy file: every authenticated caller may do
    /// everything; an unauthenticated one only when `danger_plaintext_tcp`
    /// (the only listener without authentication) is set.
    pub fn without_file(danger_plaintext_tcp: bool) -> Self {
        Self {
            identities: None,
            anonymous_allowed: danger_plaintext_tcp,
        }
    }

    /// Reads and checks a policy file.
    pub fn from_file(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| PolicyError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses a policy from TOML.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let raw: RawPolicyFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut policies = BTreeMap::new();
        for (name, policy) in raw.policies {
            let expand = |patterns: &[String]| -> Result<HashSet<Operation>, String> {
                let mut ops = HashSet::new();
                for pattern in patterns {
                    ops.extend(operations(pattern).map_err(|e| format!("policy {name}: {e}"))?);
                }
                Ok(ops)
            };
            let rules = Rules {
                allow: expand(&policy.allow)?,
                keys: policy.keys.unwrap_or_else(|| vec!["*".into()]),
                deny: expand(&policy.deny)?,
                deny_keys: policy.deny_keys,
            };
            policies.insert(name, rules);
        }
        let mut identities = Vec::new();
        for identity in raw.identities {
            let matcher = Matcher {
                unix_uid: identity.unix_uid,
                unix_gid: identity.unix_gid,
                spki_sha256: identity.spki_sha256.map(|s| s.to_ascii_lowercase()),
                access_key: identity.access_key,
            };
            let kinds = [
                matcher.unix_uid.is_some() || matcher.unix_gid.is_some(),
                matcher.spki_sha256.is_some(),
                matcher.access_key.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                return Err(format!(
                    "identity {}: give unix_uid/unix_gid, spki_sha256 or access_key (exactly one kind)",
                    identity.name
                ));
            }
            if let Some(spki) = &matcher.spki_sha256
                && (spki.len() != 64 || !spki.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(format!(
                    "identity {}: spki_sha256 must be 64 hex digits",
                    identity.name
                ));
            }
            let mut rules = Vec::new();
            for name in &identity.policies {
                rules.push(policies.get(name).cloned().ok_or_else(|| {
                    format!("identity {}: unknown policy {name:?}", identity.name)
                })?);
            }
            identities.push(IdentityEntry {
                name: identity.name,
                matcher,
                rules,
            });
        }
        Ok(Self {
            identities: Some(identities),
            anonymous_allowed: false,
        })
    }

    /// Whether `caller` may perform `op` on `key_id`. kmsd's own internal
    /// calls are always allowed.
    pub fn allows(&self, caller: &Identity, op: Operation, key_id: Option<&KeyId>) -> bool {
        self.allows_via(caller, op, key_id, None)
    }

    /// As [`Self::allows`] for a key the caller named through `alias`.
    /// The decision is on the resolved key id, as AWS KMS authorises; a
    /// key pattern of the form `alias/<pattern>` also matches a request
    /// made through a matching alias (AWS's alias conditions), in `keys`
    /// and in `deny_keys` alike.
    pub fn allows_via(
        &self,
        caller: &Identity,
        op: Operation,
        key_id: Option<&KeyId>,
        alias: Option<&AliasName>,
    ) -> bool {
        if *caller == Identity::Internal {
            return true;
        }
        let Some(identities) = &self.identities else {
            return *caller != Identity::Anonymous || self.anonymous_allowed;
        };
        let rules: Vec<&Rules> = identities
            .iter()
            .filter(|entry| entry.matcher.matches(caller))
            .flat_map(|entry| &entry.rules)
            .collect();
        let alias = alias.map(AliasName::to_string);
        let key_matches = |patterns: &[String]| {
            key_id.is_some_and(|key| patterns.iter().any(|p| wildcard_match(p, key.as_str())))
                || alias.as_deref().is_some_and(|alias| {
                    patterns
                        .iter()
                        .any(|p| p.starts_with(ALIAS_PREFIX) && wildcard_match(p, alias))
                })
        };
        let denied = rules
            .iter()
            .any(|r| r.deny.contains(&op) || key_matches(&r.deny_keys));
        let allowed = rules
            .iter()
            .any(|r| r.allow.contains(&op) && (key_id.is_none() || key_matches(&r.keys)));
        allowed && !denied
    }

    /// Whether `caller` may perform at least one operation: who may use
    /// gRPC reflection (a description of the API, useful only to callers
    /// that may call it).
    pub fn allows_anything(&self, caller: &Identity) -> bool {
        Operation::ALL
            .into_iter()
            .any(|op| self.allows(caller, op, None))
    }

    /// The configured name of the identity that matches `caller`, for audit
    /// lines.
    pub fn name_of(&self, caller: &Identity) -> Option<&str> {
        self.identities
            .as_ref()?
            .iter()
            .find(|entry| entry.matcher.matches(caller))
            .map(|entry| entry.name.as_str())
    }
}

#[cfg(test)]
mod alias_tests;
#[cfg(test)]
mod tests;
