//! What a backend configuration given to the admin API (REST configure and
//! reconfigure, gRPC `kms.v1.Admin`) may name.
//!
//! A backend configuration read from the config file is the operator's; one
//! sent to the admin API is a caller's. kmsd reads every file and variable
//! a configuration names and sends secrets to the Vault address it names,
//! so a caller who could name them could make kmsd send any file it can
//! read (a master-key file, the admin secret) to a server of the caller's
//! choosing. Over the admin API, therefore:
//!
//! - secrets arrive inline only (`token`, `secret_id`), and are kept as
//!   `persist.rs` says;
//! - a file path (`key_dir`, `*_file`, TLS paths) only under a directory of
//!   `[admin] allowed_dirs`, an environment variable only from
//!   `[admin] allowed_env_vars` (both empty by default);
//! - no `danger_*` flag at all;
//! - the Vault `address` only from `[admin] allowed_vault_addresses`, when
//!   the config file lists them.
//!
//! The check runs before anything is read or connected to; its messages
//! name the field, never the value.

use std::path::{Path, PathBuf};

use reqwest::Url;

use super::{BackendConfig, ConfigError, admin::is_plain_absolute};

/// The rules, from `[admin]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminPlaneRules {
    allowed_dirs: Vec<PathBuf>,
    allowed_env_vars: Vec<String>,
    allowed_vault_addresses: Option<Vec<AddressRule>>,
}

/// One entry of `allowed_vault_addresses`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressRule {
    /// A URL: scheme, host and port must match (the path is not compared).
    Url {
        /// `http` or `https`.
        scheme: String,
        /// Lowercase host.
        host: String,
        /// The port, the scheme's default if not written.
        port: u16,
    },
    /// A host, optionally with a port: any scheme the backend accepts.
    Host {
        /// Lowercase host.
        host: String,
        /// The port, if given.
        port: Option<u16>,
    },
}

impl AddressRule {
    fn parse(entry: &str) -> Option<Self> {
        if entry.contains("://") {
            let url = Url::parse(entry).ok()?;
            if !matches!(url.scheme(), "http" | "https") {
                return None;
            }
            return Some(AddressRule::Url {
                scheme: url.scheme().to_owned(),
                host: url.host_str()?.to_ascii_lowercase(),
                port: url.port_or_known_default()?,
            });
        }
        // A bare host: let the URL parser split host and port.
        let url = Url::parse(&format!("https://{entry}")).ok()?;
        if url.path() != "/" {
            return None;
        }
        Some(AddressRule::Host {
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port(),
        })
    }

    fn matches(&self, url: &Url) -> bool {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        match self {
            AddressRule::Url {
                scheme: s,
                host: h,
                port: p,
            } => *s == url.scheme() && *h == host && Some(*p) == url.port_or_known_default(),
            AddressRule::Host { host: h, port: p } => {
                *h == host && p.is_none_or(|p| Some(p) == url.port_or_known_default())
            }
        }
    }
}

impl AdminPlaneRules {
    /// Validates the `[admin]` lists.
    pub fn from_raw(
        allowed_dirs: Vec<PathBuf>,
        allowed_env_vars: Vec<String>,
        allowed_vault_addresses: Option<Vec<String>>,
    ) -> Result<Self, ConfigError> {
        if let Some(dir) = allowed_dirs.iter().find(|d| !is_plain_absolute(d)) {
            return Err(ConfigError::Invalid(format!(
                "admin.allowed_dirs: {} must be an absolute path without . or .. components",
                dir.display()
            )));
        }
        let env_name =
            |v: &String| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !allowed_env_vars.iter().all(env_name) {
            return Err(ConfigError::Invalid(
                "admin.allowed_env_vars must list variable names (letters, digits, '_')".into(),
            ));
        }
        let allowed_vault_addresses = allowed_vault_addresses
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        AddressRule::parse(e).ok_or_else(|| {
                            ConfigError::Invalid(format!(
                                "admin.allowed_vault_addresses: {e:?} is neither an http(s) URL nor a host[:port]"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(Self {
            allowed_dirs,
            allowed_env_vars,
            allowed_vault_addresses,
        })
    }

    /// The rules dev mode uses: files under its data directory.
    pub fn allow_dir(&mut self, dir: PathBuf) {
        if is_plain_absolute(&dir) && !self.allowed_dirs.contains(&dir) {
            self.allowed_dirs.push(dir);
        }
    }

    /// Whether no directory is allowed (the default).
    pub fn allows_no_dir(&self) -> bool {
        self.allowed_dirs.is_empty()
    }

    /// Checks a backend configuration given to the admin API.
    pub fn check(&self, backend: &BackendConfig) -> Result<(), ConfigError> {
        match backend {
            BackendConfig::Local(local) => {
                self.path("backend.key_dir", Some(&local.key_dir))?;
                if let Some(sealing) = &local.sealing {
                    self.path(
                        "backend.sealing.passphrase_file",
                        sealing.passphrase_file.as_deref(),
                    )?;
                    self.path("backend.sealing.key_file", sealing.key_file.as_deref())?;
                    self.env(
                        "backend.sealing.passphrase_env",
                        sealing.passphrase_env.as_deref(),
                    )?;
                }
                Ok(())
            }
            BackendConfig::Vault(vault) => {
                self.danger("backend.danger_allow_http", vault.danger_allow_http)?;
                // Every node of a list: kmsd sends its token to each.
                for address in vault.address.iter() {
                    self.address(address)?;
                }
                let auth = &vault.auth_method;
                self.path("backend.auth_method.token_file", auth.token_file.as_deref())?;
                self.env("backend.auth_method.token_env", auth.token_env.as_deref())?;
                if let Some(approle) = &auth.approle {
                    self.path(
                        "backend.auth_method.approle.role_id_file",
                        approle.role_id_file.as_deref(),
                    )?;
                    self.path(
                        "backend.auth_method.approle.secret_id_file",
                        approle.secret_id_file.as_deref(),
                    )?;
                    self.env(
                        "backend.auth_method.approle.secret_id_env",
                        approle.secret_id_env.as_deref(),
                    )?;
                }
                if let Some(tls) = &vault.tls {
                    self.danger(
                        "backend.tls.danger_skip_tls_verify",
                        tls.danger_skip_tls_verify,
                    )?;
                    self.path("backend.tls.ca_cert_path", tls.ca_cert_path.as_deref())?;
                    self.path(
                        "backend.tls.client_cert_path",
                        tls.client_cert_path.as_deref(),
                    )?;
                    self.path(
                        "backend.tls.client_key_path",
                        tls.client_key_path.as_deref(),
                    )?;
                }
                Ok(())
            }
        }
    }

    fn path(&self, field: &str, path: Option<&Path>) -> Result<(), ConfigError> {
        let Some(path) = path else { return Ok(()) };
        let inside =
            is_plain_absolute(path) && self.allowed_dirs.iter().any(|d| path.starts_with(d));
        if inside {
            return Ok(());
        }
        let listed = if self.allowed_dirs.is_empty() {
            "none is listed, so the admin API may name no file"
        } else {
            "this path is not under one of them"
        };
        Err(ConfigError::Invalid(format!(
            "{field}: through the admin API a path is accepted only under a directory of [admin] allowed_dirs in the config file ({listed})"
        )))
    }

    fn env(&self, field: &str, var: Option<&str>) -> Result<(), ConfigError> {
        match var {
            None => Ok(()),
            Some(var) if self.allowed_env_vars.iter().any(|v| v == var) => Ok(()),
            Some(_) => Err(ConfigError::Invalid(format!(
                "{field}: through the admin API an environment variable is accepted only if [admin] allowed_env_vars in the config file lists it; give the secret inline instead"
            ))),
        }
    }

    fn danger(&self, field: &str, value: Option<bool>) -> Result<(), ConfigError> {
        if value == Some(true) {
            return Err(ConfigError::Invalid(format!(
                "{field}: danger_* settings are accepted only from the config file, never through the admin API"
            )));
        }
        Ok(())
    }

    fn address(&self, address: &str) -> Result<(), ConfigError> {
        let Some(rules) = &self.allowed_vault_addresses else {
            return Ok(());
        };
        let allowed = Url::parse(address).is_ok_and(|url| rules.iter().any(|r| r.matches(&url)));
        if allowed {
            Ok(())
        } else {
            Err(ConfigError::Invalid(
                "backend.address: through the admin API only the Vault addresses of [admin] allowed_vault_addresses in the config file are accepted".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(dirs: &[&str], vars: &[&str], addresses: Option<&[&str]>) -> AdminPlaneRules {
        AdminPlaneRules::from_raw(
            dirs.iter().map(PathBuf::from).collect(),
            vars.iter().map(|v| (*v).to_owned()).collect(),
            addresses.map(|a| a.iter().map(|v| (*v).to_owned()).collect()),
        )
        .unwrap()
    }

    fn check(rules: &AdminPlaneRules, json: &str) -> Result<(), String> {
        rules
            .check(&BackendConfig::from_json(json).unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn by_default_no_file_no_variable_no_danger_flag() {
        let r = AdminPlaneRules::default();
        let vault = |auth: &str| {
            format!(
                r#"{{"backend_type": "vault", "address": "https://v:8200", "auth_method": {auth}}}"#
            )
        };
        assert!(check(&r, &vault(r#"{"token": "s.x"}"#)).is_ok());
        for (auth, field) in [
            (r#"{"token_file": "/etc/passwd"}"#, "token_file"),
            (r#"{"token_env": "HOME"}"#, "token_env"),
            (
                r#"{"approle": {"role_id_file": "/k/default.key", "secret_id": "s"}}"#,
                "role_id_file",
            ),
            (
                r#"{"approle": {"role_id": "r", "secret_id_file": "/admin-secret"}}"#,
                "secret_id_file",
            ),
            (
                r#"{"approle": {"role_id": "r", "secret_id_env": "X"}}"#,
                "secret_id_env",
            ),
        ] {
            let err = check(&r, &vault(auth)).unwrap_err();
            assert!(err.contains(field), "{err}");
            assert!(
                !err.contains("/etc/passwd") && !err.contains("HOME"),
                "{err}"
            );
        }
        let err = check(
            &r,
            r#"{"backend_type": "vault", "address": "http://10.0.0.1", "danger_allow_http": true, "auth_method": {"token": "t"}}"#,
        )
        .unwrap_err();
        assert!(err.contains("danger_allow_http"), "{err}");
        let err = check(
            &r,
            r#"{"backend_type": "vault", "address": "https://v", "auth_method": {"token": "t"}, "tls": {"danger_skip_tls_verify": true}}"#,
        )
        .unwrap_err();
        assert!(err.contains("danger_skip_tls_verify"), "{err}");
        let err = check(&r, r#"{"backend_type": "local", "key_dir": "/k"}"#).unwrap_err();
        assert!(
            err.contains("backend.key_dir") && !err.contains("/k"),
            "{err}"
        );
    }

    #[test]
    fn allowed_dirs_and_variables() {
        let r = rules(&["/srv/kmsd"], &["KMSD_TOKEN"], None);
        assert!(
            check(
                &r,
                r#"{"backend_type": "local", "key_dir": "/srv/kmsd/keys"}"#
            )
            .is_ok()
        );
        for bad in [
            "/srv/kmsd/../etc",
            "/srv/kmsdx/keys",
            "srv/kmsd/keys",
            "/srv",
        ] {
            let json = format!(r#"{{"backend_type": "local", "key_dir": "{bad}"}}"#);
            assert!(check(&r, &json).is_err(), "{bad}");
        }
        let vault = r#"{"backend_type": "vault", "address": "https://v", "auth_method": {"token_env": "KMSD_TOKEN"}}"#;
        assert!(check(&r, vault).is_ok());
        assert!(check(&r, &vault.replace("KMSD_TOKEN", "KMSD_TOKEN2")).is_err());
    }

    #[test]
    fn vault_addresses() {
        let r = rules(
            &[],
            &[],
            Some(&[
                "https://vault.example.com:8200",
                "bao.internal",
                "127.0.0.1:8200",
            ]),
        );
        let vault = |address: &str| {
            format!(
                r#"{{"backend_type": "vault", "address": "{address}", "auth_method": {{"token": "t"}}}}"#
            )
        };
        for ok in [
            "https://vault.example.com:8200",
            "https://VAULT.example.com:8200/prefix/",
            "https://bao.internal",
            "https://bao.internal:9000",
            "http://127.0.0.1:8200",
        ] {
            assert!(check(&r, &vault(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "https://vault.example.com",
            "http://vault.example.com:8200",
            "http://127.0.0.1:9999",
            "https://evil.example.com:8200",
            "s.token-pasted-here",
        ] {
            let err = check(&r, &vault(bad)).unwrap_err();
            assert!(
                err.contains("backend.address") && !err.contains(bad),
                "{bad}: {err}"
            );
        }
        assert!(check(&rules(&[], &[], None), &vault("https://anywhere")).is_ok());
        // A list: every node must be allowed, not just the first.
        let list = |addresses: &str| {
            format!(
                r#"{{"backend_type": "vault", "address": {addresses}, "auth_method": {{"token": "t"}}}}"#
            )
        };
        assert!(
            check(
                &r,
                &list(r#"["https://bao.internal", "http://127.0.0.1:8200"]"#)
            )
            .is_ok()
        );
        for bad in [
            r#"["https://bao.internal", "https://evil.example.com:8200"]"#,
            r#"["https://evil.example.com:8200", "https://bao.internal"]"#,
        ] {
            let err = check(&r, &list(bad)).unwrap_err();
            assert!(
                err.contains("backend.address") && !err.contains("evil"),
                "{bad}: {err}"
            );
        }
    }
}
