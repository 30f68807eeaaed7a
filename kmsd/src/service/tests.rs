use std::{collections::BTreeMap, sync::Arc};

use time::OffsetDateTime;

use super::*;
use crate::{
    audit::{AuditOutput, AuditSettings},
    breaker::BreakerSettings,
    clock::ManualClock,
    config::{BackendConfig, LocalBackendConfig},
    context::EncryptionContext,
    daemon::BuildEnv,
    key_id::KeyId,
    request::{Operation, RequestContext},
};

async fn running(dir: &std::path::Path, options: ServiceOptions, audit: AuditOutput) -> Kms {
    running_with(dir, options, audit, BreakerSettings::default())
        .await
        .0
}

async fn running_with(
    dir: &std::path::Path,
    options: ServiceOptions,
    audit: AuditOutput,
    breaker: BreakerSettings,
) -> (Kms, ManualClock) {
    let manual = ManualClock::new(OffsetDateTime::UNIX_EPOCH);
    let clock = Arc::new(manual.clone());
    let metrics = Metrics::new();
    let env = BuildEnv {
        clock: clock.clone(),
        metrics: metrics.clone(),
        breaker,
        cache: options.cache,
    };
    let audit = AuditLog::open(
        &AuditSettings {
            output: audit,
            ..AuditSettings::default()
        },
        metrics.clone(),
    )
    .unwrap();
    let kms = Kms::new(
        Lifecycle::new(env, None),
        clock,
        metrics,
        audit,
        Policy::allow_all(),
        options,
    );
    kms.lifecycle()
        .initialize(Some(BackendConfig::Local(LocalBackendConfig {
            key_dir: dir.join("keys"),
            default_key_id: Some("default".into()),
            create_default_key: None,
            sealing: None,
        })))
        .await
        .unwrap();
    (kms, manual)
}

fn ctx() -> EncryptionContext {
    EncryptionContext::new(BTreeMap::from([("object".to_owned(), "o1".to_owned())])).unwrap()
}

#[tokio::test]
async fn requests_beyond_the_concurrency_limit_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServiceOptions {
        max_concurrent_requests: 1,
        ..ServiceOptions::default()
    };
    let kms = running(dir.path(), options, AuditOutput::Off).await;
    let cx = RequestContext::internal();
    let held = kms.admit().unwrap();
    let err = kms
        .generate_data_key(&cx, Operation::GenerateDataKey, None, &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::Overloaded(_)), "{err:?}");
    assert_eq!(err.code_and_reason().0, tonic::Code::ResourceExhausted);
    drop(held);
    kms.generate_data_key(&cx, Operation::GenerateDataKey, None, &ctx())
        .await
        .unwrap();
    let text = kms.metrics().encode();
    assert!(
        text.contains(
            r#"kmsd_requests_total{code="RESOURCE_EXHAUSTED",operation="GenerateDataKey"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("kmsd_requests_in_flight 0"), "{text}");
}

#[tokio::test]
async fn every_operation_writes_one_audit_line_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let kms = running(
        dir.path(),
        ServiceOptions::default(),
        AuditOutput::File(path.clone()),
    )
    .await;
    let cx = RequestContext::from(crate::request::Identity::UnixPeer {
        uid: 1000,
        gid: 100,
    });
    let generated = kms
        .generate_data_key(&cx, Operation::GenerateDataKey, None, &ctx())
        .await
        .unwrap();
    kms.decrypt(&cx, &generated.sealed.blob, &ctx(), None)
        .await
        .unwrap();
    let wrong = EncryptionContext::empty();
    kms.decrypt(&cx, &generated.sealed.blob, &wrong, None)
        .await
        .unwrap_err();
    kms.encrypt(&cx, None, b"a small secret", &ctx())
        .await
        .unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ops: Vec<&str> = lines
        .iter()
        .map(|l| l["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["GenerateDataKey", "Decrypt", "Decrypt", "Encrypt"]);
    assert_eq!(lines[0]["caller"], "unix:uid=1000,gid=100");
    assert_eq!(lines[0]["key_id"], "default");
    assert_eq!(lines[0]["key_version"], 1);
    assert_eq!(lines[0]["context_sha256"], ctx().digest_hex());
    assert_eq!(lines[2]["outcome"], "error");
    assert_eq!(lines[2]["reason"], "INVALID_CIPHERTEXT");
    assert!(lines.iter().all(|l| l.get("context").is_none()));
    for secret in [
        generated.key.expose_secret().as_slice(),
        b"a small secret".as_slice(),
    ] {
        for form in [
            hex::encode(secret),
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, secret),
        ] {
            assert!(!text.contains(&form), "a secret reached the audit log");
        }
    }
    assert!(
        !text.contains("o1"),
        "the context itself is not logged by default"
    );
}

#[tokio::test]
async fn the_self_probe_makes_the_service_ready() {
    let dir = tempfile::tempdir().unwrap();
    let kms = running(dir.path(), ServiceOptions::default(), AuditOutput::Off).await;
    assert_eq!(
        kms.readiness(),
        Err("the self-probe has not passed yet".into())
    );
    kms.self_probe().await.unwrap();
    kms.readiness().unwrap();
    // The probe key is kmsd's own: not listed, not creatable by callers.
    let page = kms
        .list_keys(&RequestContext::internal(), 0, "")
        .await
        .unwrap();
    assert!(page.keys.iter().all(|k| k.key_id.as_str() != PROBE_KEY_ID));
    assert!(kms.metrics().encode().contains("kmsd_self_probe_success 1"));
}

/// Every request's future is moved into a box and memcpy'd whole, so its
/// size is paid per request. The Vault backend's futures (an HTTP exchange,
/// kilobytes) are boxed in `Backend` so that they do not set it: before
/// that, a local GenerateDataKey future was 9.9 KiB in release builds.
#[tokio::test]
async fn request_futures_stay_small() {
    const LIMIT: usize = 2048;
    let dir = tempfile::tempdir().unwrap();
    let kms = running(dir.path(), ServiceOptions::default(), AuditOutput::Off).await;
    let cx = RequestContext::internal();
    let context = EncryptionContext::new(BTreeMap::new()).unwrap();
    let generate = kms.generate_data_key(&cx, Operation::GenerateDataKey, None, &context);
    let decrypt = kms.decrypt(&cx, b"", &context, None);
    let active = kms.active().unwrap();
    let key = KeyId::parse("default").unwrap();
    let backend =
        crate::backend::KeyBackend::generate_data_key(active.backend.as_ref(), &key, &context);
    for (what, size) in [
        ("service GenerateDataKey", std::mem::size_of_val(&generate)),
        ("service Decrypt", std::mem::size_of_val(&decrypt)),
        ("backend GenerateDataKey", std::mem::size_of_val(&backend)),
    ] {
        assert!(
            size <= LIMIT,
            "the {what} future is {size} bytes (limit {LIMIT})"
        );
    }
}

fn local_json(dir: &std::path::Path, keys: &str) -> String {
    format!(
        r#"{{"backend_type": "local", "key_dir": "{}", "default_key_id": "default"}}"#,
        dir.join(keys).display()
    )
}

/// The sweep that destroys a key once its deletion window has passed was
/// only logged; it now writes an audit line (operation `DestroyKey`,
/// caller `kmsd`).
#[tokio::test]
async fn the_deletion_sweep_writes_an_audit_line_per_key_destroyed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let (kms, clock) = running_with(
        dir.path(),
        ServiceOptions::default(),
        AuditOutput::File(path.clone()),
        BreakerSettings::default(),
    )
    .await;
    let cx = RequestContext::internal();
    let doomed = KeyId::parse("doomed").unwrap();
    kms.create_key(&cx, Some(doomed.clone()), String::new(), BTreeMap::new())
        .await
        .unwrap();
    kms.schedule_key_deletion(&cx, &doomed, 7, false)
        .await
        .unwrap();
    assert!(kms.sweep_deletions().await.unwrap().is_empty());
    clock.advance(time::Duration::days(8));
    assert_eq!(kms.sweep_deletions().await.unwrap(), [doomed]);

    let text = std::fs::read_to_string(&path).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["operation"], "DestroyKey");
    assert_eq!(last["key_id"], "doomed");
    assert_eq!(last["caller"], "kmsd");
    assert_eq!(last["outcome"], "ok");
}

/// A local backend whose call ran past the service deadline opened the
/// service-level breaker, whose probe task then held the backend (and its
/// key directory's lock) until a probe passed, outliving any reconfigure:
/// going back to that directory failed with "locked". Only the Vault
/// backend has a breaker now, and its probe lives and dies with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_directory_can_be_reopened_after_its_backend_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = ServiceOptions {
        // Every call that waits for a blocking file write times out.
        backend_timeout: std::time::Duration::from_nanos(1),
        ..ServiceOptions::default()
    };
    // The reconfigures below name key directories, as the admin API may
    // only under an allowed directory.
    options.admin_rules.allow_dir(dir.path().to_path_buf());
    let breaker = BreakerSettings {
        failure_threshold: 1,
        probe_interval: std::time::Duration::from_secs(60),
    };
    let (kms, _) = running_with(dir.path(), options, AuditOutput::Off, breaker).await;
    let cx = RequestContext::internal();
    // One key file written on a fast disk can beat even a 1 ns deadline
    // (the timer ticks in milliseconds); 64 at once queue on the backend's
    // writer, so most of them time out.
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..64 {
        let (kms, cx) = (kms.clone(), cx.clone());
        creates.spawn(async move {
            kms.create_key(
                &cx,
                Some(KeyId::parse(&format!("k{i}")).unwrap()),
                String::new(),
                BTreeMap::new(),
            )
            .await
        });
    }
    let results = creates.join_all().await;
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(KmsError::BackendUnavailable { .. }))),
        "no call timed out: {results:?}"
    );
    // A -> B -> A, each time dropping the backend replaced.
    for keys in ["keys-b", "keys"] {
        kms.reconfigure(&cx, &local_json(dir.path(), keys), true)
            .await
            .unwrap_or_else(|e| panic!("reconfigure to {keys}: {e}"));
    }
    assert_eq!(
        kms.runtime().active.as_ref().unwrap().summary[0].1,
        dir.path().join("keys").display().to_string()
    );
}
