//! Several addresses: kmsd moves on from nodes that did not process a
//! request (a standby redirecting to a dead leader, a refused port) to the
//! one that serves, writes included, and never follows the redirect.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use super::*;
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
    let mut settings: VaultSettings = match config(&bao, &token_auth(&bao.root_token()), "")
        .backend
        .unwrap()
        .kind
    {
        BackendKindSettings::Vault(settings) => *settings,
        other => panic!("not vault: {other:?}"),
    };
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
