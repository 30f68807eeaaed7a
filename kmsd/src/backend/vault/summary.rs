//! The vault backend's non-secret settings for `kmsd status`.

use super::settings::VaultSettings;

/// The settings as `kmsd status` shows them; what changes while kmsd runs
/// (the nodes) is `VaultBackend::node_summary`.
pub(super) fn summary(settings: &VaultSettings) -> Vec<(&'static str, String)> {
    let tls = &settings.tls;
    let mut tls_desc = Vec::new();
    if let Some(ca) = &tls.ca_cert_path {
        tls_desc.push(format!("ca {}", ca.display()));
    }
    if let Some((cert, _)) = &tls.client_identity {
        tls_desc.push(format!("client cert {}", cert.display()));
    }
    if tls.danger_skip_verify {
        tls_desc.push("DANGER: certificate not verified".into());
    }
    vec![
        (
            "address",
            settings
                .addresses
                .iter()
                .map(|a| a.as_str().trim_end_matches('/'))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("namespace", settings.namespace.clone().unwrap_or_default()),
        ("mount_path", settings.transit_mount.clone()),
        ("kv_mount", settings.kv_mount.clone()),
        ("key_path_prefix", settings.key_path_prefix.clone()),
        ("auth_method", settings.auth.describe()),
        (
            "tls",
            match (settings.addresses[0].scheme(), tls_desc.is_empty()) {
                ("http", _) => "none (plain http)".into(),
                (_, true) => "system roots".into(),
                (_, false) => tls_desc.join(", "),
            },
        ),
        ("timeout_seconds", settings.timeout.as_secs().to_string()),
        (
            "attempt_timeout_ms",
            settings.attempt_timeout.as_millis().to_string(),
        ),
        (
            "hedge_after_ms",
            settings
                .hedge_after
                .map_or_else(|| "off".to_owned(), |d| d.as_millis().to_string()),
        ),
        (
            "intermediate_key",
            settings.intermediate_key.map_or_else(
                || "off".to_owned(),
                |i| format!("on (ttl {}s, max {} uses)", i.ttl.as_secs(), i.max_uses),
            ),
        ),
        (
            "cache_ttl_seconds",
            settings.cache_ttl.as_secs().to_string(),
        ),
    ]
}
