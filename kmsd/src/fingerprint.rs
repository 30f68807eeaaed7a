//! The configuration fingerprint: a short hash over a canonical rendering
//! of the settings that must be the same on every sidecar of one
//! deployment, so that drift between sidecars shows up in status, in a
//! metric label and in `kmsd cluster check` (docs/operations.md, "Several
//! sidecars").
//!
//! Only non-secret settings enter it, by construction: the rendering is
//! built field by field from validated settings, never from the
//! configuration as written, so no token, secret id, passphrase or key can
//! reach it (nor where they are read from: those paths legitimately differ
//! per node). The fields, their names and the hash are documented in
//! docs/operations.md; changing them changes every fingerprint, so the
//! hash input starts with a version label.

use std::collections::BTreeMap;

use crate::{
    cache::CacheSettings,
    config::{BackendKindSettings, BackendSettings},
    crypto,
};

/// Prefixed to the hashed rendering; bump when the fields change.
const VERSION: &str = "kmsd-config-fingerprint/v1";
/// Hex digits kept of the SHA-256 (64 bits: enough to tell configurations
/// apart; this is not a security property).
const HEX_LEN: usize = 16;

/// A fingerprint and the fields it was computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFingerprint {
    /// 16 lower-case hex digits.
    pub hash: String,
    /// The canonical rendering: field name to value, never a secret.
    pub fields: BTreeMap<&'static str, String>,
}

impl ConfigFingerprint {
    /// The fingerprint of `backend` (the active one, or the configured one
    /// when not running; `None` before any configuration), the
    /// decrypt-only backends kept by reconfigurations, and the data-key
    /// cache.
    pub fn compute(
        backend: Option<&BackendSettings>,
        decrypt_only: &[&BackendSettings],
        cache: &CacheSettings,
    ) -> Self {
        let mut fields = backend
            .map(backend_fields)
            .unwrap_or_else(|| BTreeMap::from([("backend_type", "none".to_owned())]));
        fields.insert("cache_max_data_keys", cache.max_entries.to_string());
        fields.insert(
            "cache_data_key_ttl_seconds",
            cache.ttl.as_secs().to_string(),
        );
        fields.insert("cache_offline_seconds", cache.offline.as_secs().to_string());
        // A node that lacks a backend the others still decrypt with cannot
        // open their older blobs: that is drift too. Each decrypt-only
        // backend enters as the hash of its own fields, sorted (the order
        // they were added in does not matter for decryption).
        let mut previous: Vec<String> = decrypt_only
            .iter()
            .map(|b| hash_fields(&backend_fields(b)))
            .collect();
        previous.sort();
        previous.dedup();
        fields.insert(
            "decrypt_only_backends",
            if previous.is_empty() {
                "none".to_owned()
            } else {
                previous.join(",")
            },
        );
        Self {
            hash: hash_fields(&fields),
            fields,
        }
    }
}

/// The fields of one backend.
fn backend_fields(settings: &BackendSettings) -> BTreeMap<&'static str, String> {
    let mut fields = BTreeMap::new();
    fields.insert("backend_type", settings.kind_name().to_owned());
    fields.insert(
        "default_key_id",
        settings
            .default_key_id
            .as_ref()
            .map_or_else(String::new, ToString::to_string),
    );
    match &settings.kind {
        BackendKindSettings::Local { key_dir, sealing } => {
            fields.insert("key_dir", key_dir.display().to_string());
            // Whether key files are sealed, not with what (a secret) or
            // from where (a per-node path).
            fields.insert("key_files_sealed", sealing.is_some().to_string());
        }
        BackendKindSettings::Vault(vault) => {
            // Sorted, so that a list given in another order on another
            // node is the same cluster.
            let mut addresses: Vec<String> = vault
                .addresses
                .iter()
                .map(|a| a.as_str().trim_end_matches('/').to_owned())
                .collect();
            addresses.sort();
            fields.insert("vault_addresses", addresses.join(","));
            fields.insert(
                "vault_namespace",
                vault.namespace.clone().unwrap_or_default(),
            );
            fields.insert("vault_transit_mount", vault.transit_mount.clone());
            fields.insert("vault_kv_mount", vault.kv_mount.clone());
            fields.insert("vault_key_path_prefix", vault.key_path_prefix.clone());
            fields.insert(
                "vault_metadata_cache_ttl_seconds",
                vault.cache_ttl.as_secs().to_string(),
            );
            fields.insert("vault_max_cached_keys", vault.max_cached_keys.to_string());
            fields.insert(
                "vault_intermediate_key",
                vault.intermediate_key.map_or_else(
                    || "off".to_owned(),
                    |i| format!("ttl {}s, max {} uses", i.ttl.as_secs(), i.max_uses),
                ),
            );
        }
    }
    fields
}

/// The first 16 hex digits of SHA-256 over the version label and the
/// fields as canonical JSON (an object with sorted keys, no whitespace).
fn hash_fields(fields: &BTreeMap<&'static str, String>) -> String {
    // Invariant: a map of strings always serialises.
    let json = serde_json::to_string(fields).unwrap_or_default();
    let digest = crypto::sha256(format!("{VERSION}\n{json}").as_bytes());
    let mut hex = hex::encode(digest);
    hex.truncate(HEX_LEN);
    hex
}

#[cfg(test)]
mod tests;
