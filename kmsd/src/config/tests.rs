//! Parsing and validation of the configuration file.

use super::*;
use crate::audit::{AuditOutput, OnFailure};

fn parse(text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: "test.toml".into(),
        message: e.to_string(),
    })?;
    Config::from_raw(raw)
}

#[test]
fn an_empty_file_gives_the_defaults() {
    let config = parse("").unwrap();
    assert_eq!(
        config.listen.unix,
        Some((PathBuf::from(DEFAULT_UNIX_SOCKET), 0o660))
    );
    assert!(config.backend.is_none());
    assert_eq!(config.log.format, LogFormat::Text);
    // kmsd answers nothing it cannot audit unless told otherwise.
    assert_eq!(config.audit.on_failure, OnFailure::Refuse);
    assert_eq!(config.audit.output, AuditOutput::Stdout);
}

#[test]
fn the_audit_failure_rule_is_refuse_or_continue() {
    let rule = |value: &str| parse(&format!("[audit]\non_failure = {value:?}\n"));
    assert_eq!(
        rule("continue").unwrap().audit.on_failure,
        OnFailure::Continue
    );
    assert_eq!(rule("refuse").unwrap().audit.on_failure, OnFailure::Refuse);
    let err = rule("ignore").unwrap_err().to_string();
    assert!(err.contains("audit.on_failure"), "{err}");
}

#[test]
fn a_local_backend_parses_with_the_seed_field_names() {
    let config = parse(
        r#"
        [server]
        tcp = "127.0.0.1:7373"
        danger_plaintext_tcp = true
        [backend]
        backend_type = "local"
        key_dir = "/var/lib/kmsd/keys"
        default_key_id = "rustfs-master"
        [backend.sealing]
        passphrase_env = "KMSD_PASSPHRASE"
        "#,
    )
    .unwrap();
    assert!(config.listen.unix.is_none());
    let backend = config.backend.unwrap();
    assert_eq!(backend.default_key_id.unwrap().as_str(), "rustfs-master");
    let BackendKindSettings::Local { sealing, .. } = backend.kind else {
        panic!("a local backend")
    };
    assert_eq!(
        sealing,
        Some(SealingSource::PassphraseEnv("KMSD_PASSPHRASE".into()))
    );
}

proptest::proptest! {
    /// The fuzz target's idea, run by every `cargo test`: TOML-shaped
    /// input made of the real sections and keys with values of every
    /// type never panics the parser or the validation.
    #[test]
    fn config_parsing_never_panics(lines in proptest::collection::vec(
        (
            proptest::sample::select(vec!["server", "server.tls", "backend", "backend.sealing", "log", "audit", "limits", "cache", "breaker", "health", "metrics", "admin", "policy", "security", "keys", "nope"]),
            proptest::sample::select(vec!["tcp", "unix_socket", "unix_socket_mode", "backend_type", "key_dir", "default_key_id", "passphrase_env", "output", "max_concurrent_requests", "data_key_ttl_secs", "failure_threshold", "probe_interval_secs", "listen", "file", "mlock", "level", "format", "danger_plaintext_tcp", "cert_file", "state_dir", "on_failure", "attempt_timeout_ms", "hedge_after_ms", "cache_ttl_seconds", "rotation_sweep_interval_secs", "min_rotation_period_secs"]),
            proptest::sample::select(vec!["\"127.0.0.1:0\"", "\"/abs/path\"", "\"rel\"", "\"local\"", "\"vault\"", "0", "1", "-1", "18446744073709551616", "true", "\"0660\"", "\"stdout\"", "\"refuse\"", "\"continue\"", "[]", "{}", "\"\u{0}\""]),
        ),
        0..12,
    )) {
        let mut text = String::new();
        for (section, key, value) in lines {
            text.push_str(&format!("[{section}]\n{key} = {value}\n"));
        }
        if let Ok(raw) = toml::from_str::<RawConfig>(&text) {
            let _ = Config::from_raw(raw);
        }
        let json = text.replace(" = ", "\": ").replace('\n', ",\"");
        let _ = BackendConfig::from_json(&format!("{{\"{json}\"}}")).map(BackendSettings::from_raw);
    }
}

#[test]
fn json_errors_do_not_echo_values() {
    let err = BackendConfig::from_json(r#"{"backend_type": "local", "key_dir": 5}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid type"), "{err}");
    let err = BackendConfig::from_json(
        r#"{"backend_type": "local", "key_dir": "/k", "sealing": {"passphrase_file": ["s3cr3t-value"]}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(!err.contains("s3cr3t"), "{err}");
    let err =
        BackendConfig::from_json(r#"{"backend_type": "local", "key_dir": "/k", "tokn": "s3cr3t"}"#)
            .unwrap_err()
            .to_string();
    assert!(err.contains("tokn"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
}

#[test]
fn mistakes_are_named() {
    for (text, needle) in [
        ("[server]\nunix_sockett = \"/x\"", "unknown field"),
        ("[backend]\nbackend_type = \"floppy\"", "unknown variant"),
        (
            "[backend]\nbackend_type = \"local\"\nkey_dir = \"rel\"",
            "absolute",
        ),
        (
            "[backend]\nbackend_type = \"local\"\nkey_dir = \"/k\"\ndefault_key_id = \"../x\"",
            "default_key_id",
        ),
        ("[server]\nunix_socket_mode = \"0666\"", "others"),
        ("[server]\nunix_socket_mode = \"rw\"", "octal"),
        ("[server]\ntcp = \"127.0.0.1:1\"", "needs [server.tls]"),
        (
            "[backend]\nbackend_type = \"local\"\nkey_dir = \"/k\"\n[backend.sealing]\n",
            "exactly one",
        ),
    ] {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(needle), "{text:?}: {err}");
    }
}

#[test]
fn rotation_settings_default_to_aws_and_are_bounded() {
    let parse = |keys: &str| {
        let raw: RawConfig = toml::from_str(&format!("[keys]\n{keys}\n")).unwrap();
        Config::from_raw(raw)
    };
    let config = parse("").unwrap();
    assert_eq!(config.rotation_sweep_interval, Duration::from_secs(60));
    assert_eq!(
        config.service.min_rotation_period,
        Duration::from_secs(90 * 86_400)
    );
    let config = parse("rotation_sweep_interval_secs = 1\nmin_rotation_period_secs = 2").unwrap();
    assert_eq!(config.rotation_sweep_interval, Duration::from_secs(1));
    assert_eq!(config.service.min_rotation_period, Duration::from_secs(2));
    for bad in [
        "rotation_sweep_interval_secs = 0",
        "min_rotation_period_secs = 0",
        "min_rotation_period_secs = 221184001",
    ] {
        let err = parse(bad).unwrap_err().to_string();
        assert!(err.contains("keys."), "{bad}: {err}");
    }
}
