//! Several addresses: kmsd moves on from nodes that did not process a
//! request (a standby redirecting to a dead leader, a refused port) to the
//! one that serves, writes included, and never follows the redirect.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use super::*;
use reqwest::Url;

use crate::backend::vault::settings::VaultSettings;

/// A listener that answers every request with `answer` and counts them.
async fn fake(answer: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                // Read the head and the body, then answer and close.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (address, count)
}

/// The settings of a backend on `bao` with its root token.
fn root_settings(bao: &OpenBao) -> VaultSettings {
    match config(bao, &token_auth(&bao.root_token()), "")
        .backend
        .unwrap()
        .kind
    {
        BackendKindSettings::Vault(settings) => *settings,
        other => panic!("not vault: {other:?}"),
    }
}

/// A loopback port nothing listens on.
fn refused() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kmsd_moves_past_a_redirecting_standby_and_a_dead_node_without_following() {
    let bao = OpenBao::dev().await;
    // The "dead leader" a standby redirects to: contacted, it would be a
    // request (and a token) sent where nobody asked.
    let (leader, leader_hits) =
        fake("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}".into()).await;
    let (standby, standby_hits) = fake(format!(
        "HTTP/1.1 307 Temporary Redirect\r\nlocation: {leader}/v1/transit/keys/x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    ))
    .await;
    let dead = refused();
    let mut settings = root_settings(&bao);
    let real = settings.addresses[0].clone();
    settings.addresses = vec![
        standby.parse().unwrap(),
        dead.parse().unwrap(),
        real.clone(),
    ];
    let backend = VaultBackend::connect(settings, Arc::new(clock()))
        .await
        .unwrap();
    // Writes (key creation, rotation: check-and-set records) and the data
    // plane all reach the node that serves.
    create(&backend, "multi").await;
    let rotated = backend.rotate_key(&id("multi")).await.unwrap();
    assert_eq!(rotated.current_version, 2);
    let context = ctx(&[("bucket", "b")]);
    let generated = backend
        .generate_data_key(&id("multi"), &context)
        .await
        .unwrap();
    open(&backend, &generated.sealed.blob, &context)
        .await
        .unwrap();

    assert!(standby_hits.load(Ordering::SeqCst) >= 1);
    assert_eq!(leader_hits.load(Ordering::SeqCst), 0, "a 307 was followed");
    let summary: BTreeMap<_, _> = backend
        .summary()
        .into_iter()
        .chain(backend.node_summary())
        .collect();
    let real = real.as_str().trim_end_matches('/');
    assert_eq!(summary["serving_node"], real, "{summary:?}");
    let nodes = &summary["nodes"];
    assert!(nodes.contains(&format!("{standby} (standby")), "{nodes}");
    assert!(nodes.contains(&format!("{dead} (down")), "{nodes}");
    assert!(nodes.contains(&format!("{real} (")), "{nodes}");
    assert!(summary["address"].contains(&dead), "{summary:?}");
}

/// A node that says it is active but never answers a POST: an active node
/// whose request handling hangs.
async fn hanging_writes() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let posts = Arc::new(AtomicUsize::new(0));
    let seen = posts.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let Ok(n) = stream.read(&mut buf).await else {
                    return;
                };
                if buf[..n].starts_with(b"POST ") {
                    seen.fetch_add(1, Ordering::SeqCst);
                    // Hold the connection, answer nothing.
                    tokio::time::sleep(Duration::from_secs(120)).await;
                    return;
                }
                // Health and Transit's upsert setting answer; other reads
                // redirect, so they move on at once and only the Transit
                // POSTs show what the hedge does.
                let head = String::from_utf8_lossy(&buf[..n]);
                let answer = if head.starts_with("GET /v1/sys/health")
                    || head.contains("/config/keys ")
                {
                    let body = r#"{"data":{"disable_upsert":true}}"#;
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:9/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
                };
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (address, posts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_active_node_costs_transit_calls_the_hedge_not_the_attempt_deadline() {
    let bao = OpenBao::dev().await;
    let settings = |addresses: Vec<Url>| {
        let mut settings = root_settings(&bao);
        if !addresses.is_empty() {
            settings.addresses = addresses;
        }
        // Without the hedge, a call sent to the hanging node first would
        // take this long; with it, about hedge_after.
        settings.attempt_timeout = Duration::from_secs(20);
        settings.timeout = Duration::from_secs(60);
        settings.hedge_after = Some(Duration::from_millis(100));
        settings
    };
    let real_only = VaultBackend::connect(settings(Vec::new()), Arc::new(clock()))
        .await
        .unwrap();
    create(&real_only, "hedged").await;
    let real = settings(Vec::new()).addresses[0].clone();
    let (hanging, posts) = hanging_writes().await;
    let backend = VaultBackend::connect(
        settings(vec![hanging.parse().unwrap(), real.clone()]),
        Arc::new(clock()),
    )
    .await
    .unwrap();
    let context = ctx(&[("bucket", "b")]);
    // Reads the key's metadata into the cache: the hanging node redirects
    // that read, which makes the real node preferred.
    backend
        .generate_data_key(&id("hedged"), &context)
        .await
        .unwrap();
    // Both say they are active; the hanging one is to be asked first (the
    // health poll keeps a preferred node that answers it).
    backend.client.sender.transport.nodes.prefer(0);
    let started = Instant::now();
    let generated = backend
        .generate_data_key(&id("hedged"), &context)
        .await
        .unwrap();
    open(&backend, &generated.sealed.blob, &context)
        .await
        .unwrap();
    let took = started.elapsed();
    eprintln!("data key and decrypt past a hanging node: {took:?}");
    assert!(
        posts.load(Ordering::SeqCst) >= 1,
        "the hanging node was asked first"
    );
    let summary: BTreeMap<_, _> = backend.node_summary().into_iter().collect();
    assert!(
        summary["serving_node"].starts_with(real.as_str().trim_end_matches('/')),
        "the node that answered the hedge is preferred now: {summary:?}"
    );
    assert!(
        took < Duration::from_secs(10),
        "{took:?}: the calls waited for the attempt deadline (20 s) instead of hedging"
    );
}
