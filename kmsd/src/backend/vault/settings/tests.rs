use super::*;
use crate::config::{BackendKindSettings, Config, RawConfig};

const SECRET: &str = "hvs.super-secret-token-value";

fn parse_toml(text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: "test.toml".into(),
        message: e.to_string(),
    })?;
    Config::from_raw(raw)
}

fn vault(config: Config) -> VaultSettings {
    match config.backend.unwrap().kind {
        BackendKindSettings::Vault(settings) => *settings,
        other => panic!("not vault: {other:?}"),
    }
}

#[test]
fn the_documented_toml_parses_with_its_defaults() {
    let config = parse_toml(
        r#"
        [backend]
        backend_type = "vault"
        address = "https://vault.example.com:8200"
        default_key_id = "rustfs-master"
        [backend.auth_method.approle]
        role_id_file = "/etc/kmsd/role-id"
        secret_id_file = "/etc/kmsd/secret-id"
        [backend.tls]
        ca_cert_path = "/etc/kmsd/ca.pem"
        "#,
    )
    .unwrap();
    assert_eq!(
        config
            .backend
            .as_ref()
            .unwrap()
            .default_key_id
            .as_ref()
            .unwrap()
            .as_str(),
        "rustfs-master"
    );
    let s = vault(config);
    assert_eq!(s.addresses[0].as_str(), "https://vault.example.com:8200/");
    assert_eq!(s.addresses.len(), 1);
    assert_eq!(s.transit_mount, "transit");
    assert_eq!(s.kv_mount, "secret");
    assert_eq!(s.key_path_prefix, "rustfs/kms/keys");
    assert_eq!(s.timeout, DEFAULT_TIMEOUT);
    assert_eq!(s.cache_ttl, DEFAULT_CACHE_TTL);
    assert_eq!(s.retry, RetryPolicy::default());
    assert!(matches!(
        s.auth,
        AuthSettings::AppRole { ref mount, role_id: SecretSource::File(_), secret_id: SecretSource::File(_) } if mount == "approle"
    ));
    assert_eq!(
        s.tls.ca_cert_path.as_deref(),
        Some(Path::new("/etc/kmsd/ca.pem"))
    );
}

#[test]
fn the_seed_json_configures_the_backend() {
    let json = format!(
        r#"{{
            "backend_type": "vault",
            "address": "https://vault.example.com:8200",
            "auth_method": {{ "token": "{SECRET}" }},
            "mount_path": "transit",
            "kv_mount": "secret",
            "key_path_prefix": "rustfs/kms/keys",
            "default_key_id": "rustfs-master"
        }}"#
    );
    let raw: crate::config::BackendConfig = serde_json::from_str(&json).unwrap();
    let settings = crate::config::BackendSettings::from_raw(raw).unwrap();
    let BackendKindSettings::Vault(s) = settings.kind else {
        panic!("not vault")
    };
    let AuthSettings::Token(SecretSource::Inline(token)) = &s.auth else {
        panic!("not an inline token: {:?}", s.auth)
    };
    assert_eq!(token.expose_secret(), SECRET);
    // RustFS's spelling of the AppRole table is accepted too.
    let json = r#"{"backend_type": "vault", "address": "http://127.0.0.1:8200",
        "auth_method": {"AppRole": {"role_id": "r", "secret_id_env": "KMSD_SECRET_ID"}}}"#;
    let raw: crate::config::BackendConfig = serde_json::from_str(json).unwrap();
    crate::config::BackendSettings::from_raw(raw).unwrap();
}

#[test]
fn secrets_never_show_in_debug_or_summaries() {
    let text = format!(
        r#"
        [backend]
        backend_type = "vault"
        address = "http://127.0.0.1:8200"
        [backend.auth_method]
        token = "{SECRET}"
        "#
    );
    let raw: RawConfig = toml::from_str(&text).unwrap();
    let raw_debug = format!("{raw:?}");
    let config = Config::from_raw(raw).unwrap();
    let settings = vault(config.clone());
    for printed in [
        raw_debug,
        format!("{config:?}"),
        format!("{config:#?}"),
        format!("{settings:?}"),
        settings.auth.describe(),
    ] {
        assert!(!printed.contains(SECRET), "{printed}");
        assert!(!printed.contains("super-secret"), "{printed}");
    }
    let approle = RawAppRole {
        mount: None,
        role_id: Some("role".into()),
        role_id_file: None,
        secret_id: Some(RawSecret(SecretString::new(SECRET.into()))),
        secret_id_file: None,
        secret_id_env: None,
    };
    let printed = format!("{approle:?} {:?}", approle.clone().validate().unwrap());
    assert!(!printed.contains(SECRET), "{printed}");
}

#[test]
fn mistakes_are_named() {
    let base = |extra: &str, auth: &str| {
        format!(
            "[backend]\nbackend_type = \"vault\"\naddress = \"https://v:8200\"\n{extra}\n[backend.auth_method]\n{auth}\n"
        )
    };
    let token = "token = \"t\"";
    for (text, needle) in [
        (base("", ""), "exactly one of token"),
        (
            base("", "token = \"t\"\ntoken_file = \"/t\""),
            "exactly one way",
        ),
        (base("", "token = \"\""), "not empty"),
        (
            base("", "[backend.auth_method.approle]\nsecret_id = \"s\""),
            "role_id",
        ),
        (
            base("", "[backend.auth_method.approle]\nrole_id = \"r\""),
            "secret_id",
        ),
        (base("mount_path = \"../x\"", token), "mount_path"),
        (base("kv_mount = \"a b\"", token), "kv_mount"),
        (
            base("key_path_prefix = \"/\"", token),
            "key_path_prefix is empty",
        ),
        (base("timeout_seconds = 0", token), "timeout_seconds"),
        (base("retry_attempts = 11", token), "retry_attempts"),
        (
            base("retry_initial_backoff_ms = 0", token),
            "retry_initial_backoff_ms",
        ),
        (base("cache_ttl_seconds = 7200", token), "cache_ttl_seconds"),
        (base("max_cached_keys = 0", token), "max_cached_keys"),
        (base("default_key_id = \"../k\"", token), "default_key_id"),
        (base("skip_tls_verify = true", token), "unknown field"),
        (
            base("[backend.tls]\nclient_cert_path = \"/c\"", token),
            "go together",
        ),
        (
            format!(
                "[backend]\nbackend_type = \"vault\"\naddress = \"http://vault.example.com:8200\"\n[backend.auth_method]\n{token}\n"
            ),
            "danger_allow_http",
        ),
        (
            format!(
                "[backend]\nbackend_type = \"vault\"\naddress = \"ftp://v\"\n[backend.auth_method]\n{token}\n"
            ),
            "http:// or https://",
        ),
        (
            format!(
                "[backend]\nbackend_type = \"vault\"\naddress = \"https://u:p@v\"\n[backend.auth_method]\n{token}\n"
            ),
            "credentials",
        ),
        (
            format!(
                "[backend]\nbackend_type = \"vault\"\naddress = [\"https://v1\", \"ftp://v2\"]\n[backend.auth_method]\n{token}\n"
            ),
            "http:// or https://",
        ),
        (
            format!(
                "[backend]\nbackend_type = \"vault\"\naddress = []\n[backend.auth_method]\n{token}\n"
            ),
            "names no address",
        ),
        (
            format!(
                "[backend]\nbackend_type = \"vault\"\naddress = [\"https://v1\", \"https://v1\"]\n[backend.auth_method]\n{token}\n"
            ),
            "listed twice",
        ),
    ] {
        let err = parse_toml(&text).unwrap_err().to_string();
        assert!(err.contains(needle), "{text}\n=> {err}");
    }
}

#[test]
fn plain_http_is_for_loopback_unless_dangerously_allowed() {
    for address in [
        "http://127.0.0.1:8200",
        "http://localhost:8200",
        "http://[::1]:8200",
    ] {
        parse_address(address, false).unwrap();
    }
    assert!(parse_address("http://10.0.0.1:8200", false).is_err());
    parse_address("http://10.0.0.1:8200", true).unwrap();
    // A path prefix (a Vault behind a proxy) is kept.
    let url = parse_address("https://proxy/vault", false).unwrap();
    assert_eq!(
        url.join("v1/sys/health").unwrap().as_str(),
        "https://proxy/vault/v1/sys/health"
    );
}

#[tokio::test]
async fn secret_sources_are_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    let secret = read_secret(&SecretSource::File(path.clone()))
        .await
        .unwrap();
    assert_eq!(secret.expose_secret(), SECRET);
    std::fs::write(&path, "\n").unwrap();
    let err = read_secret(&SecretSource::File(path)).await.unwrap_err();
    assert!(err.contains("empty"), "{err}");
    let err = read_secret(&SecretSource::File(dir.path().join("missing")))
        .await
        .unwrap_err();
    assert!(err.contains("missing"), "{err}");
    let err = read_secret(&SecretSource::Env("KMSD_TEST_UNSET_VARIABLE".into()))
        .await
        .unwrap_err();
    assert!(err.contains("KMSD_TEST_UNSET_VARIABLE"), "{err}");
}

#[test]
fn inline_secrets_are_never_serialized_but_references_are() {
    let inline = format!(
        r#"{{"backend_type": "vault", "address": "http://127.0.0.1:8200", "auth_method": {{"token": "{SECRET}"}}}}"#
    );
    let raw = crate::config::BackendConfig::from_json(&inline).unwrap();
    let err = serde_json::to_string(&raw).unwrap_err().to_string();
    assert!(err.contains("only ever written sealed"), "{err}");
    assert!(!err.contains(SECRET), "{err}");

    let by_file = r#"{"backend_type": "vault", "address": "http://127.0.0.1:8200",
        "auth_method": {"approle": {"role_id": "r", "secret_id_file": "/etc/kmsd/secret-id"}},
        "tls": {"ca_cert_path": "/etc/kmsd/ca.pem"}}"#;
    let raw = crate::config::BackendConfig::from_json(by_file).unwrap();
    let json = serde_json::to_string(&raw).unwrap();
    let again = crate::config::BackendConfig::from_json(&json).unwrap();
    assert_eq!(
        crate::config::BackendSettings::from_raw(raw).unwrap(),
        crate::config::BackendSettings::from_raw(again).unwrap()
    );
    assert!(
        json.contains("/etc/kmsd/secret-id") && !json.contains("null"),
        "{json}"
    );
}

#[test]
fn address_may_list_the_nodes_of_a_cluster_in_toml_and_json() {
    let toml = "[backend]\nbackend_type = \"vault\"\naddress = [\"http://127.0.0.1:18201\", \"http://127.0.0.1:18202\"]\n[backend.auth_method]\ntoken = \"t\"\n";
    let s = vault(parse_toml(toml).unwrap());
    let list: Vec<_> = s.addresses.iter().map(|u| u.as_str().to_owned()).collect();
    assert_eq!(list, ["http://127.0.0.1:18201/", "http://127.0.0.1:18202/"]);
    let json: crate::config::BackendConfig = serde_json::from_str(
        r#"{"backend_type": "vault", "address": ["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"], "auth_method": {"token": "t"}}"#,
    )
    .unwrap();
    let crate::config::BackendConfig::Vault(raw) = json else {
        panic!("not vault")
    };
    assert_eq!(raw.address.iter().count(), 3);
    // The list is written back as a list, one address as a string.
    let back = serde_json::to_value(&raw.address).unwrap();
    assert!(back.is_array(), "{back}");
    let one = serde_json::to_value(RawAddresses::from("http://127.0.0.1:1")).unwrap();
    assert!(one.is_string(), "{one}");
}

#[test]
fn hedging_is_for_several_addresses_and_below_the_attempt_deadline() {
    let toml = |address: &str, hedge: &str| {
        format!(
            "[backend]\nbackend_type = \"vault\"\naddress = {address}\n{hedge}\n[backend.auth_method]\ntoken = \"t\"\n"
        )
    };
    let two = "[\"http://127.0.0.1:18201\", \"http://127.0.0.1:18202\"]";
    let one = "\"http://127.0.0.1:18201\"";
    let hedge =
        |address: &str, line: &str| vault(parse_toml(&toml(address, line)).unwrap()).hedge_after;
    assert_eq!(hedge(two, ""), Some(DEFAULT_HEDGE_AFTER));
    assert_eq!(
        hedge(two, "hedge_after_ms = 40"),
        Some(Duration::from_millis(40))
    );
    assert_eq!(hedge(two, "hedge_after_ms = 0"), None);
    assert_eq!(hedge(one, ""), None, "one node: nowhere to hedge to");
    for bad in [
        "hedge_after_ms = 5",
        "hedge_after_ms = 2000",
        "attempt_timeout_ms = 100\nhedge_after_ms = 100",
    ] {
        let err = parse_toml(&toml(two, bad)).unwrap_err().to_string();
        assert!(err.contains("hedge_after_ms"), "{bad}: {err}");
    }
}
