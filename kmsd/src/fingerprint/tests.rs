use std::time::Duration;

use super::*;
use crate::config::BackendConfig;

fn settings(json: &str) -> BackendSettings {
    let raw: BackendConfig = serde_json::from_str(json).unwrap();
    BackendSettings::from_raw(raw).unwrap()
}

fn vault(extra: &str) -> BackendSettings {
    settings(&format!(
        r#"{{"backend_type": "vault", "address": "http://127.0.0.1:8200", "auth_method": {{"token": "s.sup3r-secret-token"}}, "default_key_id": "k"{extra}}}"#
    ))
}

fn fp(backend: &BackendSettings) -> ConfigFingerprint {
    ConfigFingerprint::compute(Some(backend), &[], &CacheSettings::default())
}

/// The fields whose values differ between two fingerprints.
fn differing(a: &ConfigFingerprint, b: &ConfigFingerprint) -> Vec<&'static str> {
    a.fields
        .keys()
        .chain(b.fields.keys())
        .filter(|k| a.fields.get(*k) != b.fields.get(*k))
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[test]
fn equal_settings_give_equal_fingerprints_of_sixteen_hex_digits() {
    let a = fp(&vault(""));
    let b = fp(&vault(""));
    assert_eq!(a, b);
    assert_eq!(a.hash.len(), 16);
    assert!(
        a.hash
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
}

#[test]
fn every_listed_setting_changes_the_fingerprint_and_is_named() {
    let base = fp(&vault(""));
    for (extra, field) in [
        (r#", "default_key_id": "other""#, "default_key_id"),
        (r#", "mount_path": "transit2""#, "vault_transit_mount"),
        (r#", "kv_mount": "kv2""#, "vault_kv_mount"),
        (r#", "key_path_prefix": "a/b""#, "vault_key_path_prefix"),
        (r#", "namespace": "ns1""#, "vault_namespace"),
        (
            r#", "cache_ttl_seconds": 7"#,
            "vault_metadata_cache_ttl_seconds",
        ),
        (r#", "max_cached_keys": 7"#, "vault_max_cached_keys"),
        (
            r#", "intermediate_key": {"enabled": true}"#,
            "vault_intermediate_key",
        ),
    ] {
        let json = format!(
            r#"{{"backend_type": "vault", "address": "http://127.0.0.1:8200", "auth_method": {{"token": "t"}}, "default_key_id": "k"{extra}}}"#
        );
        // A later duplicate key wins in serde_json's map handling; build
        // without the base default key when overriding it.
        let json = if field == "default_key_id" {
            json.replacen(r#", "default_key_id": "k""#, "", 1)
        } else {
            json
        };
        let changed = fp(&settings(&json));
        assert_ne!(changed.hash, base.hash, "{field}");
        assert_eq!(differing(&base, &changed), vec![field]);
    }
    let other_address = fp(&settings(
        r#"{"backend_type": "vault", "address": "http://127.0.0.1:8201", "auth_method": {"token": "t"}, "default_key_id": "k"}"#,
    ));
    assert_eq!(differing(&base, &other_address), vec!["vault_addresses"]);
    // A cluster's node list, in any order, is one fingerprint.
    let list = |addresses: &str| {
        fp(&settings(&format!(
            r#"{{"backend_type": "vault", "address": {addresses}, "auth_method": {{"token": "t"}}, "default_key_id": "k"}}"#
        )))
    };
    let ab = list(r#"["http://127.0.0.1:8202", "http://127.0.0.1:8201/"]"#);
    let ba = list(r#"["http://127.0.0.1:8201", "http://127.0.0.1:8202"]"#);
    assert_eq!(ab.hash, ba.hash);
    assert_eq!(
        ab.fields["vault_addresses"],
        "http://127.0.0.1:8201,http://127.0.0.1:8202"
    );
    assert_eq!(differing(&ab, &other_address), vec!["vault_addresses"]);
    let other_cache = ConfigFingerprint::compute(
        Some(&vault("")),
        &[],
        &CacheSettings {
            ttl: Duration::from_secs(5),
            ..CacheSettings::default()
        },
    );
    assert_eq!(
        differing(&base, &other_cache),
        vec!["cache_data_key_ttl_seconds"]
    );
}

/// Secrets and where they come from never enter: two nodes with different
/// tokens (or token files) have the same fingerprint, and no field shows
/// either.
#[test]
fn no_secret_and_no_secret_source_enters_the_fingerprint() {
    let inline = fp(&vault(""));
    let other_token = fp(&settings(
        r#"{"backend_type": "vault", "address": "http://127.0.0.1:8200", "auth_method": {"token": "s.another"}, "default_key_id": "k"}"#,
    ));
    let from_file = fp(&settings(
        r#"{"backend_type": "vault", "address": "http://127.0.0.1:8200", "auth_method": {"token_file": "/node2/token"}, "default_key_id": "k"}"#,
    ));
    assert_eq!(inline, other_token);
    assert_eq!(inline, from_file);
    let rendered = format!("{inline:?}");
    assert!(!rendered.contains("sup3r"), "{rendered}");

    let passphrase = settings(
        r#"{"backend_type": "local", "key_dir": "/var/lib/kmsd/keys", "sealing": {"passphrase_file": "/etc/kmsd/pass"}}"#,
    );
    let sealed = fp(&passphrase);
    assert_eq!(sealed.fields["key_files_sealed"], "true");
    assert!(!format!("{sealed:?}").contains("/etc/kmsd/pass"));
}

#[test]
fn decrypt_only_backends_enter_in_any_order() {
    let (a, b, c) = (
        vault(""),
        vault(r#", "mount_path": "old""#),
        settings(r#"{"backend_type": "local", "key_dir": "/k"}"#),
    );
    let cache = CacheSettings::default();
    let one = ConfigFingerprint::compute(Some(&a), &[&b, &c], &cache);
    let other = ConfigFingerprint::compute(Some(&a), &[&c, &b], &cache);
    assert_eq!(one, other);
    let fewer = ConfigFingerprint::compute(Some(&a), &[&b], &cache);
    assert_eq!(differing(&one, &fewer), vec!["decrypt_only_backends"]);
    let none = ConfigFingerprint::compute(Some(&a), &[], &cache);
    assert_eq!(none.fields["decrypt_only_backends"], "none");
}

#[test]
fn an_unconfigured_kmsd_has_a_fingerprint_too() {
    let none = ConfigFingerprint::compute(None, &[], &CacheSettings::default());
    assert_eq!(none.fields["backend_type"], "none");
    assert_eq!(none.hash.len(), 16);
}
