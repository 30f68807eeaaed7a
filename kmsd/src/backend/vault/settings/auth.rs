//! Validating `auth_method`: exactly one source per secret, read where the
//! configuration says.

use super::*;

impl RawAuthMethod {
    pub(super) fn validate(self) -> Result<AuthSettings, ConfigError> {
        let token = one_source(
            "backend.auth_method",
            self.token,
            self.token_file,
            self.token_env,
        )?;
        match (token, self.approle) {
            (Some(source), None) => Ok(AuthSettings::Token(source)),
            (None, Some(approle)) => approle.validate(),
            _ => Err(invalid(
                "backend.auth_method needs exactly one of token, token_file, token_env, approle",
            )),
        }
    }
}

impl RawAppRole {
    pub(super) fn validate(self) -> Result<AuthSettings, ConfigError> {
        let role_id = match (self.role_id, self.role_id_file) {
            (Some(id), None) if !id.is_empty() => SecretSource::Inline(SecretString::new(id)),
            (None, Some(path)) => SecretSource::File(path),
            _ => {
                return Err(invalid(
                    "backend.auth_method.approle needs exactly one of role_id, role_id_file",
                ));
            }
        };
        let secret_id = one_source(
            "backend.auth_method.approle",
            self.secret_id,
            self.secret_id_file,
            self.secret_id_env,
        )?
        .ok_or_else(|| {
            invalid(
                "backend.auth_method.approle needs exactly one of secret_id, secret_id_file, secret_id_env",
            )
        })?;
        Ok(AuthSettings::AppRole {
            mount: mount("backend.auth_method.approle.mount", self.mount, "approle")?,
            role_id,
            secret_id,
        })
    }
}

/// At most one of an inline secret, a file and a variable.
fn one_source(
    table: &str,
    inline: Option<RawSecret>,
    file: Option<PathBuf>,
    env: Option<String>,
) -> Result<Option<SecretSource>, ConfigError> {
    match (inline, file, env) {
        (None, None, None) => Ok(None),
        (Some(RawSecret(s)), None, None) if !s.expose_secret().is_empty() => {
            Ok(Some(SecretSource::Inline(s)))
        }
        (None, Some(path), None) => Ok(Some(SecretSource::File(path))),
        (None, None, Some(var)) if !var.is_empty() => Ok(Some(SecretSource::Env(var))),
        _ => Err(invalid(format!(
            "{table}: give a secret exactly one way (inline, file or environment variable), and not empty"
        ))),
    }
}

/// Reads a secret from its source. Blocking file I/O: call from a blocking
/// context or through [`read_secret`].
fn read_secret_blocking(source: &SecretSource) -> Result<SecretString, String> {
    let text = match source {
        SecretSource::Inline(secret) => return Ok(secret.clone_secret()),
        SecretSource::File(path) => read_file(path)?,
        SecretSource::Env(var) => std::env::var(var)
            .map_err(|_| format!("environment variable {var} is not set or not UTF-8"))?,
    };
    let secret = SecretString::new(text);
    let trimmed = secret.expose_secret().trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(format!("{} is empty", source.describe()));
    }
    Ok(SecretString::new(trimmed.to_owned()))
}

fn read_file(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Reads a secret from its source off the async runtime. The error names
/// the source, never the secret.
pub async fn read_secret(source: &SecretSource) -> Result<SecretString, String> {
    match source {
        SecretSource::Inline(secret) => Ok(secret.clone_secret()),
        other => {
            let other = other.clone();
            tokio::task::spawn_blocking(move || read_secret_blocking(&other))
                .await
                .map_err(|e| format!("secret reader task failed: {e}"))?
        }
    }
}
