//! `[admin]`: the admin plane. The admin HTTP listener (the
//! RustFS-compatible REST API, docs/admin-api.md), the access keys allowed
//! to call it, and what either admin API (REST or gRPC `kms.v1.Admin`) may
//! name in a backend configuration ([`AdminPlaneRules`]).
//!
//! Like every other secret, an admin secret key is never written in the
//! config file: each access key names a file or an environment variable,
//! read once when the daemon starts.

use std::{
    fmt,
    net::SocketAddr,
    path::{Component, Path, PathBuf},
};

use serde::Deserialize;

use super::ConfigError;
pub use super::admin_plane::{AddressRule, AdminPlaneRules};

/// The region signatures are scoped to unless `[admin] region` says
/// otherwise: what the RustFS quick start and awscurl examples sign with.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The longest access key id accepted.
const MAX_ACCESS_KEY_LEN: usize = 128;

/// `[admin]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Where to serve the admin REST API (HTTP/1.1 and h2c, or HTTPS with
    /// `[admin.tls]`); absent means no admin HTTP listener.
    pub listen: Option<SocketAddr>,
    /// The region signatures must be scoped to (default `us-east-1`).
    pub region: Option<String>,
    /// The `Host` values a request may be signed for (default: the listen
    /// address, `localhost` and the machine's hostname, with the port).
    pub hosts: Option<Vec<String>>,
    /// Serve the admin API over TLS.
    pub tls: Option<RawAdminTls>,
    /// Allow a plain-HTTP `listen` on something other than a loopback
    /// address. `generate-data-key` answers with plaintext data keys, so
    /// this is only for a TLS-terminating proxy on the same host; with
    /// `[admin.tls]` it is not needed.
    #[serde(default)]
    pub danger_allow_non_loopback: bool,
    /// `[[admin.access_keys]]`.
    #[serde(default)]
    pub access_keys: Vec<RawAccessKey>,
    /// Directories under which a backend configuration given to the admin
    /// API may name files (key_dir, *_file, TLS paths). Empty by default:
    /// no file at all.
    #[serde(default)]
    pub allowed_dirs: Vec<PathBuf>,
    /// Environment variables a backend configuration given to the admin
    /// API may name (token_env, ...). Empty by default.
    #[serde(default)]
    pub allowed_env_vars: Vec<String>,
    /// The Vault addresses (URLs, or hosts with an optional port) the admin
    /// API may point kmsd at. Absent: any address the backend accepts.
    pub allowed_vault_addresses: Option<Vec<String>>,
}

/// `[admin.tls]`: the shape of `[server.tls]`; `client_ca_file` is
/// optional here (SigV4 authenticates callers; with it, a client
/// certificate is required as well).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdminTls {
    /// The server certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// CAs that client certificates must chain to (PEM), if client
    /// certificates are required.
    pub client_ca_file: Option<PathBuf>,
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

/// The validated admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The region signatures must be scoped to.
    pub region: String,
    /// The configured `Host` values, or `None` for the defaults.
    pub hosts: Option<Vec<String>>,
    /// TLS, if configured.
    pub tls: Option<crate::tls::TlsSettings>,
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
    /// Validates `[admin]`: the listener (`None` when none is configured)
    /// and the rules of the admin plane.
    pub fn from_raw(raw: RawAdmin) -> Result<(Option<Self>, AdminPlaneRules), ConfigError> {
        let rules = AdminPlaneRules::from_raw(
            raw.allowed_dirs,
            raw.allowed_env_vars,
            raw.allowed_vault_addresses,
        )?;
        let Some(listen) = raw.listen else {
            if !raw.access_keys.is_empty() || raw.tls.is_some() || raw.hosts.is_some() {
                return Err(ConfigError::Invalid(
                    "admin.access_keys, admin.tls or admin.hosts are set but admin.listen is not: the admin API would not be served".into(),
                ));
            }
            return Ok((None, rules));
        };
        if !listen.ip().is_loopback() && raw.tls.is_none() && !raw.danger_allow_non_loopback {
            return Err(ConfigError::Invalid(format!(
                "admin.listen {listen} is not a loopback address: without [admin.tls] the admin API is plain HTTP and returns plaintext data keys; configure [admin.tls] (or put a TLS proxy on this host in front and set admin.danger_allow_non_loopback = true)"
            )));
        }
        let region = raw.region.unwrap_or_else(|| DEFAULT_REGION.to_owned());
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
        if let Some(hosts) = &raw.hosts {
            let bad = |h: &String| {
                h.is_empty()
                    || !h.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                    })
            };
            if hosts.is_empty() || hosts.iter().any(bad) {
                return Err(ConfigError::Invalid(
                    "admin.hosts must list host names or addresses, optionally with :port".into(),
                ));
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
        let tls = raw.tls.map(|t| crate::tls::TlsSettings {
            cert_file: t.cert_file,
            key_file: t.key_file,
            client_ca_file: t.client_ca_file,
        });
        Ok((
            Some(Self {
                listen,
                region,
                hosts: raw.hosts,
                tls,
                access_keys,
            }),
            rules,
        ))
    }
}

/// Whether `path` is absolute and free of `.` and `..` components, so that
/// `Path::starts_with` decides containment lexically.
pub(super) fn is_plain_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
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
        AdminConfig::from_raw(raw).map(|(admin, _)| admin)
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
        assert_eq!(admin.region, "us-east-1");
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
            (
                "[tls]\ncert_file = \"/c\"\nkey_file = \"/k\"",
                "admin.listen is not",
            ),
            (
                "listen = \"127.0.0.1:1\"\nhosts = [\"a b\"]\n[[access_keys]]\naccess_key = \"a\"\nsecret_key_env = \"X\"",
                "admin.hosts",
            ),
            ("allowed_dirs = [\"relative\"]", "allowed_dirs"),
            ("allowed_dirs = [\"/a/../b\"]", "allowed_dirs"),
            ("allowed_env_vars = [\"A=B\"]", "allowed_env_vars"),
            (
                "allowed_vault_addresses = [\"ftp://x\"]",
                "allowed_vault_addresses",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_non_loopback_listener_with_tls_needs_no_danger_flag() {
        let admin = parse(
            "listen = \"0.0.0.0:7374\"\n[tls]\ncert_file = \"/c\"\nkey_file = \"/k\"\n[[access_keys]]\naccess_key = \"a\"\nsecret_key_env = \"X\"",
        )
        .unwrap()
        .unwrap();
        assert!(admin.tls.is_some_and(|t| t.client_ca_file.is_none()));
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
