//! Item 4: idle-connection and slowloris floods against every TCP listener
//! (gRPC over mutual TLS, admin, metrics) of a kmsd limited to 256
//! descriptors, while a client keeps getting data keys over the unix
//! socket: not one of its calls may fail, and kmsd must not flood its log.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use kmsd_tests::{Kmsd, KmsdOptions, ctx, free_port, pki::Ca, rest::with_admin};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const NOFILE: u64 = 256;
/// Idle connections per listener: more than kmsd has descriptors.
const IDLE: usize = 300;
const SLOWLORIS: usize = 20;

/// Dribbles an HTTP request's headers one byte at a time, forever; returns
/// when the server closes the connection.
async fn slowloris(mut stream: TcpStream) {
    if stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if stream.write_all(b"X").await.is_err() {
            return;
        }
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            return;
        }
    }
}

/// How long until the server closes a connection that stays silent (or,
/// with `dribble`, dribbles headers).
async fn time_to_close(port: u16, dribble: bool) -> Duration {
    let started = Instant::now();
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let closed = if dribble {
        tokio::time::timeout(Duration::from_secs(30), slowloris(stream)).await
    } else {
        let mut stream = stream;
        tokio::time::timeout(Duration::from_secs(30), async move {
            let mut buf = [0u8; 64];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await
    };
    assert!(
        closed.is_ok(),
        "port {port}: the connection was never closed"
    );
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn floods_on_tcp_listeners_never_starve_the_unix_socket() {
    let ca = Ca::new("flood CA");
    let (grpc, metrics) = (free_port(), free_port());
    let mut options = KmsdOptions::local();
    options.nofile = Some(NOFILE);
    options.server_toml = format!(
        "tcp = \"127.0.0.1:{grpc}\"\n[server.tls]\ncert_file = \"{{dir}}/server.crt\"\nkey_file = \"{{dir}}/server.key\"\nclient_ca_file = \"{{dir}}/ca.crt\"\n"
    );
    // Audit lines go nowhere: the log-size check below is about what the
    // floods make kmsd write, not the data keys it hands out.
    options.extra_toml = format!(
        "[audit]\noutput = \"off\"\n[limits]\nheader_read_timeout_secs = 2\nidle_timeout_secs = 4\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"
    );
    let (options, admin) = with_admin(options, "admin", "flood-test-secret-5e21");
    let mut kmsd = Kmsd::spawn_only(options);
    ca.server().write(kmsd.dir(), "server");
    std::fs::write(kmsd.dir().join("ca.crt"), ca.cert_pem()).unwrap();
    kmsd.respawn();
    kmsd.wait_ready().await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", kmsd.pid())).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 256 ")),
        "{limits}"
    );

    // The header-read timeout closes a slowloris and an idle connection
    // on each listener (2 s configured; the TLS one by its handshake).
    let mut closes = Vec::new();
    for (port, dribble) in [
        (admin, true),
        (metrics, true),
        (admin, false),
        (metrics, false),
        (grpc, false),
    ] {
        closes.push(tokio::spawn(time_to_close(port, dribble)));
    }
    for close in closes {
        let took = close.await.unwrap();
        println!("closed after {took:?}");
        assert!(took < Duration::from_secs(10), "closed only after {took:?}");
    }

    // The data plane, over the unix socket, throughout the floods.
    let client = kmsd
        .client_with(|c| c.retry = kms_client::RetryPolicy::NEVER)
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let worker = {
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        tokio::spawn(async move {
            let mut errors = Vec::new();
            let context = ctx(&[("bucket", "b")]);
            while !stop.load(Ordering::Relaxed) {
                let call = client.generate_data_key(None, &context);
                match tokio::time::timeout(Duration::from_secs(5), call).await {
                    Ok(Ok(_)) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        errors.push(format!("{other:?}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            errors
        })
    };

    for (name, port) in [
        ("grpc (mTLS)", grpc),
        ("admin", admin),
        ("metrics", metrics),
    ] {
        let started = Instant::now();
        // All at once: beyond the listener's slots and its backlog (128),
        // connects wait in SYN retries, as an attacker's would.
        let idle: Vec<_> = (0..IDLE)
            .map(|_| {
                tokio::spawn(async move {
                    let stream = TcpStream::connect(("127.0.0.1", port)).await;
                    // Hold it, idle, until the phase ends (the task is
                    // aborted) or the server closes it.
                    if let Ok(mut stream) = stream {
                        let mut buf = [0u8; 16];
                        let _ = stream.read(&mut buf).await;
                    }
                })
            })
            .collect();
        let lorises: Vec<_> = (0..SLOWLORIS)
            .map(|_| {
                tokio::spawn(async move {
                    if let Ok(s) = TcpStream::connect(("127.0.0.1", port)).await {
                        slowloris(s).await;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(3)).await;
        // A new unix-socket connection is accepted mid-flood, too.
        let fresh = kmsd.client().await;
        fresh.generate_data_key(None, &ctx(&[])).await.unwrap();
        println!(
            "{name}: a fresh unix client served at {:?}",
            started.elapsed()
        );
        let fds = std::fs::read_dir(format!("/proc/{}/fd", kmsd.pid()))
            .unwrap()
            .count();
        println!(
            "{name}: {IDLE} idle + {SLOWLORIS} slowloris connections, kmsd holds {fds} descriptors, {} data keys so far ({:?})",
            ok.load(Ordering::Relaxed),
            started.elapsed()
        );
        for task in idle {
            task.abort();
        }
        for loris in lorises {
            loris.abort();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let errors = worker.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("data plane during the floods: {ok} ok, {failed} failed");
    assert_eq!(failed, 0, "data-plane calls failed: {errors:?}");
    assert!(ok > 50, "too few data-plane calls ran: {ok}");

    // Every listener serves again once the floods are gone.
    let probe = kmsd_tests::rest::AdminClient::new(metrics, "", "");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            probe.send(probe.unsigned("GET", "/health/live", "")),
        )
        .await;
        if matches!(answer, Ok(ref r) if r.status == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the metrics listener did not recover"
        );
    }
    let logs = kmsd.logs();
    let accept_failures = logs.matches("accept failed").count();
    println!(
        "log: {} bytes, {accept_failures} accept-failure lines",
        logs.len()
    );
    assert!(
        accept_failures <= 30,
        "{accept_failures} accept-failure lines"
    );
    assert!(logs.len() < 2 << 20, "the log grew to {} bytes", logs.len());
}
