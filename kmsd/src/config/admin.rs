//! `[admin]`: the admin HTTP listener (the RustFS-compatible REST API,
//! docs/admin-api.md) and the access keys allowed to call it.
//!
//! Like every other secret, an admin secret key is never written in the
//! config file: each access key names a file or an environment variable,
//! read once when the daemon starts.

use std::{fmt, net::SocketAddr, path::PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// The longest access key id accepted.
const MAX_ACCESS_KEY_LEN: usize = 128;

/// `[admin]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Where to serve the admin REST API (HTTP/1.1 and h2c); absent means
    /// no admin HTTP listener.
    pub listen: Option<SocketAddr>,
    /// Accept only signatures scoped to this region (default: any region).
    pub region: Option<String>,
    /// Allow `listen` to be something other than a loopback address. The
    /// listener speaks plain HTTP and `generate-data-key` answers with
    /// plaintext data keys, so this is only for a TLS-terminating proxy on
    /// the same host.
    #[serde(default)]
    pub danger_allow_non_loopback: bool,
    /// `[[admin.access_keys]]`.
    #[serde(default)]
    pub access_keys: Vec<RawAccessKey>,
}

/// `[[admin.access_keys]]` as written: an access key id and where its
/// secret comes from (exactly one of the two fields).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessKey {
    /// The access key id (what SigV4 clients send in `Credential=`).
    pub access_key: String,
    /// A file holding the secret key (a trailing newline is ignored).
    pub secret_key_file: Option<PathBuf>,
    /// An environment variable holding the secret key.
    pub secret_key_env: Option<String>,
}

/// The validated `[admin]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The only region accepted in signatures, if pinned.
    pub region: Option<String>,
    /// At least one access key.
    pub access_keys: Vec<AccessKeyConfig>,
}

/// One admin access key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyConfig {
    /// The access key id.
    pub access_key: String,
    /// Where its secret is read from.
    pub secret: AdminSecretSource,
}

/// Where a secret is read from at startup.
#[derive(Clone, PartialEq, Eq)]
pub enum AdminSecretSource {
    /// A file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

impl fmt::Debug for AdminSecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminSecretSource::File(p) => write!(f, "secret key file {}", p.display()),
            AdminSecretSource::Env(v) => write!(f, "secret key in ${v}"),
        }
    }
}

impl AdminConfig {
    /// Validates `[admin]`: `None` when no listener is configured.
    pub fn from_raw(raw: RawAdmin) -> Result<Option<Self>, ConfigError> {
        let Some(listen) = raw.listen else {
            if !raw.access_keys.is_empty() {
                return Err(ConfigError::Invalid(
                    "admin.access_keys are set but admin.listen is not: the admin API would not be served".into(),
                ));
            }
            return Ok(None);
        };
        if !listen.ip().is_loopback() && !raw.danger_allow_non_loopback {
            return Err(ConfigError::Invalid(format!(
                "admin.listen {listen} is not a loopback address: the admin API is plain HTTP and returns plaintext data keys; put a TLS proxy on this host in front of it (and set admin.danger_allow_non_loopback = true only then)"
            )));
        }
        if let Some(region) = &raw.region {
            let valid = !region.is_empty()
                && region.len() <= 64
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return Err(ConfigError::Invalid(format!(
                    "admin.region {region:?} is not a region name such as \"us-east-1\""
                )));
            }
        }
        if raw.access_keys.is_empty() {
            return Err(ConfigError::Invalid(
                "admin.listen is set but no [[admin.access_keys]] are configured: nobody could call the admin API".into(),
            ));
        }
        let mut access_keys: Vec<AccessKeyConfig> = Vec::with_capacity(raw.access_keys.len());
        for key in raw.access_keys {
            validate_access_key(&key.access_key)?;
            if access_keys.iter().any(|k| k.access_key == key.access_key) {
                return Err(ConfigError::Invalid(format!(
                    "admin access key {:?} is configured twice",
                    key.access_key
                )));
            }
            let secret = match (key.secret_key_file, key.secret_key_env) {
                (Some(path), None) => AdminSecretSource::File(path),
                (None, Some(var)) if !var.is_empty() => AdminSecretSource::Env(var),
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "admin access key {:?} needs exactly one of secret_key_file, secret_key_env",
                        key.access_key
                    )));
                }
            };
            access_keys.push(AccessKeyConfig {
                access_key: key.access_key,
                secret,
            });
        }
        Ok(Some(Self {
            listen,
            region: raw.region,
            access_keys,
        }))
    }
}

/// Access key ids travel in `Credential=<id>/<date>/...`, so they must not
/// hold `/`, `,`, `=` or spaces; this keeps them to a safe, printable set.
fn validate_access_key(id: &str) -> Result<(), ConfigError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_ACCESS_KEY_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "admin access key {:?}: use 1-{MAX_ACCESS_KEY_LEN} letters, digits, '.', '_' or '-'",
            id.chars().take(32).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<AdminConfig>, ConfigError> {
        let raw: RawAdmin =
            toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        AdminConfig::from_raw(raw)
    }

    #[test]
    fn absent_means_no_listener() {
        assert_eq!(parse("").unwrap(), None);
    }

    #[test]
    fn a_listener_with_keys_parses() {
        let admin = parse(
            r#"
            listen = "127.0.0.1:7374"
            region = "us-east-1"
            [[access_keys]]
            access_key = "admin"
            secret_key_file = "/etc/kmsd/admin-secret"
            [[access_keys]]
            access_key = "ops"
            secret_key_env = "KMSD_OPS_SECRET"
            "#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(admin.listen.port(), 7374);
        assert_eq!(
            admin.access_keys[1].secret,
            AdminSecretSource::Env("KMSD_OPS_SECRET".into())
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (text, needle) in [
            ("listen = \"0.0.0.0:7374\"", "loopback"),
            ("listen = \"127.0.0.1:7374\"", "no [[admin.access_keys]]"),
            (
                "[[access_keys]]\naccess_key = \"a\"\nsecret_key_env = \"X\"",
                "admin.listen is not",
            ),
            (
                "listen = \"127.0.0.1:1\"\n[[access_keys]]\naccess_key = \"a\"",
                "exactly one",
            ),
            (
                "listen = \"127.0.0.1:1\"\n[[access_keys]]\naccess_key = \"a/b\"\nsecret_key_env = \"X\"",
                "letters",
            ),
            (
                "listen = \"127.0.0.1:1\"\n[[access_keys]]\naccess_key = \"a\"\nsecret_key_env = \"X\"\n[[access_keys]]\naccess_key = \"a\"\nsecret_key_env = \"Y\"",
                "twice",
            ),
            (
                "listen = \"127.0.0.1:1\"\nregion = \"US East\"\n[[access_keys]]\naccess_key = \"a\"\nsecret_key_env = \"X\"",
                "region",
            ),
            ("secret_key = \"inline\"", "unknown field"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_non_loopback_listener_needs_the_danger_flag() {
        let admin = parse(
            "listen = \"0.0.0.0:7374\"\ndanger_allow_non_loopback = true\n[[access_keys]]\naccess_key = \"a\"\nsecret_key_env = \"X\"",
        )
        .unwrap();
        assert!(admin.is_some());
    }
}
