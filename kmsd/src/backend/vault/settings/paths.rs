//! Checks of the address and of mount and folder paths.

use std::net::IpAddr;

use reqwest::Url;

use super::invalid;
use crate::config::ConfigError;

pub(super) fn parse_address(text: &str, allow_http: bool) -> Result<Url, ConfigError> {
    // Messages name the field, never its value: admin-API bodies come
    // through here, and a token pasted into `address` must not come back.
    let mut url =
        Url::parse(text).map_err(|e| invalid(format!("backend.address is not a URL ({e})")))?;
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(invalid(
            "backend.address must not carry a query, fragment or credentials",
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_http || is_loopback(&url) => {}
        "http" => {
            return Err(invalid(
                "backend.address uses http:// to a host that is not loopback: tokens and data keys would cross the network in clear (use https://, or set danger_allow_http = true)",
            ));
        }
        _ => {
            return Err(invalid(
                "backend.address must be an http:// or https:// URL",
            ));
        }
    }
    if url.host_str().is_none() {
        return Err(invalid("backend.address has no host"));
    }
    // Paths are joined onto the address; a trailing slash makes the join
    // keep any path prefix (a Vault behind a reverse proxy).
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A mount or folder path: segments of `[A-Za-z0-9._-]`, no `.` or `..`,
/// leading and trailing slashes dropped.
pub(super) fn mount(
    field: &str,
    value: Option<String>,
    default: &str,
) -> Result<String, ConfigError> {
    let value = value.unwrap_or_else(|| default.to_owned());
    let path = vault_path(field, &value)?;
    if path.is_empty() {
        return Err(invalid(format!("{field} is empty")));
    }
    Ok(path)
}

pub(super) fn vault_path(field: &str, value: &str) -> Result<String, ConfigError> {
    let trimmed = value.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    for segment in trimmed.split('/') {
        let ok = !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(invalid(format!(
                "{field}: path segments may only hold letters, digits, '.', '_' and '-'"
            )));
        }
    }
    Ok(trimmed.to_owned())
}
