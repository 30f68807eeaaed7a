//! What an operator sees: Prometheus metrics after a known sequence of
//! calls (checked by promtool), health endpoints, and the audit log.

// Test code: a failed unwrap is a failed test, with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{io::Write, process::Stdio, time::Duration};

use kms_client::proto;
use kmsd_tests::{
    Kmsd, KmsdOptions, ctx, free_port,
    metrics::{self, scrape},
    rest::AdminClient,
};

fn with_metrics() -> (KmsdOptions, u16) {
    let port = free_port();
    let mut options = KmsdOptions::local();
    options.extra_toml =
        format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n[health]\nprobe_interval_secs = 1\n");
    (options, port)
}

/// The value of one series, which must be exported.
fn value(text: &str, series: &str) -> f64 {
    metrics::series(text, series).unwrap_or_else(|| panic!("{series} is not exported"))
}

#[tokio::test]
async fn metrics_count_a_known_sequence_and_pass_promtool() {
    let (options, port) = with_metrics();
    let kmsd = Kmsd::start(options).await;
    let client = kmsd.client().await;
    let context = ctx(&[("o", "1")]);
    let mut blobs = Vec::new();
    for _ in 0..3 {
        blobs.push(client.generate_data_key(None, &context).await.unwrap().blob);
    }
    for blob in &blobs[..2] {
        client.decrypt(blob, &context, None).await.unwrap();
    }
    client
        .decrypt(&blobs[2], &ctx(&[]), None)
        .await
        .unwrap_err();
    client
        .key_admin()
        .describe_key(proto::DescribeKeyRequest {
            key_id: "missing".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();

    let text = scrape(port).await;
    let requests = |op: &str, code: &str| {
        value(
            &text,
            &format!("kmsd_requests_total{{code=\"{code}\",operation=\"{op}\"}}"),
        )
    };
    assert_eq!(requests("GenerateDataKey", "OK"), 3.0);
    assert_eq!(requests("Decrypt", "OK"), 2.0);
    assert_eq!(requests("Decrypt", "INVALID_ARGUMENT"), 1.0);
    assert_eq!(requests("DescribeKey", "NOT_FOUND"), 1.0);
    assert_eq!(requests("Encrypt", "OK"), 0.0);
    assert_eq!(
        value(
            &text,
            "kmsd_request_duration_seconds_count{operation=\"Decrypt\"}"
        ),
        3.0
    );
    assert_eq!(value(&text, "kmsd_service_state{state=\"Running\"}"), 1.0);
    assert_eq!(value(&text, "kmsd_requests_in_flight"), 0.0);
    assert!(
        value(
            &text,
            "kmsd_backend_operations_total{backend=\"local\",operation=\"generate_data_key\",outcome=\"ok\"}"
        ) >= 3.0
    );
    assert!(text.contains("kmsd_build_info{version=\""));

    let output = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .expect("promtool runs (scripts/setup-test-env.sh installs it)");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn health_endpoints_follow_the_service_state() {
    let (mut options, port) = with_metrics();
    options.server_toml = "state_dir = \"{dir}/state\"".into();
    let kmsd = Kmsd::start(options).await;
    let http = AdminClient::new(port, "", "");
    let get = |path: &'static str| {
        let http = http.clone();
        async move { http.send(http.unsigned("GET", path, "")).await }
    };
    assert_eq!(get("/health/live").await.status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get("/health/ready").await.status != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = kmsd.client().await;
    client.admin().stop(proto::StopRequest {}).await.unwrap();
    let stopped = get("/health/ready").await;
    assert_eq!(stopped.status, 503);
    assert_eq!(stopped.json["reason"], "kmsd is Stopped");
    assert_eq!(get("/health/live").await.status, 200);
    // Nothing else is served on the metrics listener.
    assert_eq!(get("/rustfs/admin/v3/kms/status").await.status, 404);
}

/// OpenBao goes away under load: requests fail fast with UNAVAILABLE while
/// the breaker is open, readiness flips to 503, and both recover within a
/// second of OpenBao's return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_outage_fails_fast_and_recovers_within_a_second() {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicBool, AtomicU64, Ordering},
        },
        time::Instant,
    };
    let mut openbao = kmsd_openbao_testkit::OpenBao::persistent().await;
    let (mut options, port) = with_metrics();
    options.backend_toml = Some(
        openbao
            .backend_toml(&openbao.root_token(), "default")
            .replace(
                "[backend.auth_method]",
                "timeout_seconds = 2\nretry_attempts = 1\n[backend.auth_method]",
            ),
    );
    options
        .extra_toml
        .push_str("[breaker]\nfailure_threshold = 3\nprobe_interval_ms = 100\n");
    let kmsd = Kmsd::start(options).await;
    let http = AdminClient::new(port, "", "");
    let ready = || {
        let http = http.clone();
        async move {
            http.send(http.unsigned("GET", "/health/ready", ""))
                .await
                .status
                == 200
        }
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ready().await {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A steady load through the outage.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let client = kmsd
            .client_with(|c| c.retry = kms_client::RetryPolicy::NEVER)
            .await;
        let (stop, failures) = (Arc::clone(&stop), Arc::clone(&failures));
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = client.generate_data_key(None, &ctx(&[])).await {
                    assert_eq!(e.code(), Some(tonic::Code::Unavailable), "{e}");
                    failures.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    openbao.stop();

    // The breaker opens: calls fail fast, and readiness says so.
    let probe = kmsd
        .client_with(|c| c.retry = kms_client::RetryPolicy::NEVER)
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let started = Instant::now();
        let result = probe.generate_data_key(None, &ctx(&[])).await;
        if result
            .as_ref()
            .is_err_and(|e| e.to_string().contains("circuit breaker open"))
        {
            assert!(
                started.elapsed() < Duration::from_millis(100),
                "an open breaker must fail fast: {:?}",
                started.elapsed()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the breaker never opened: {result:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !ready().await,
        "readiness must flip while the backend is down"
    );
    assert!(
        scrape(port)
            .await
            .contains("kmsd_circuit_breaker_open{backend=\"vault\"} 1")
    );

    // OpenBao returns (a persistent server comes back sealed).
    openbao.restart().await;
    openbao.unseal().await;
    let back = Instant::now();
    loop {
        if probe.generate_data_key(None, &ctx(&[])).await.is_ok() {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(1),
            "not serving a second after the backend returned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovered = back.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready().await {
        assert!(Instant::now() < deadline, "readiness never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(
        failures.load(Ordering::Relaxed) > 0,
        "the outage was not noticed"
    );
    eprintln!("serving again {recovered:?} after OpenBao's return");
}
