//! The attacks of the second security review (issue 15), each run against
//! the real kmsd binary:
//!
//! - `admin_plane`: an admin caller makes kmsd send files or variables to
//!   a Vault of its choosing (the listener must receive nothing);
//! - `replay`: a captured admin request replayed, or sent to another node;
//!   the admin listener over TLS; the seed's awscurl quick start;
//! - `policy`: ListKeys across key patterns, reserved key ids, reflection;
//! - `listeners`: idle and slowloris floods under a low RLIMIT_NOFILE while
//!   the unix-socket data plane keeps answering;
//! - `secrets`: config errors, REST errors and the state directory never
//!   show a secret; weak or exposed sealing passphrases are refused.

// Test code: a failed unwrap is a failed test, with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use kmsd_tests::every_file;
use tokio::{io::AsyncReadExt, io::AsyncWriteExt, net::TcpListener};

mod admin_plane;
mod listeners;
mod policy;
mod replay;
mod secrets;

/// A server standing in for an attacker's Vault: it records every
/// connection and every byte sent to it, and answers 500.
struct FakeVault {
    port: u16,
    received: Arc<Mutex<(usize, Vec<u8>)>>,
}

impl FakeVault {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new((0, Vec::new())));
        let log = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                log.lock().unwrap().0 += 1;
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(Ok(n)) = tokio::time::timeout(
                        std::time::Duration::from_millis(300),
                        stream.read(&mut buf),
                    )
                    .await
                    {
                        if n == 0 {
                            break;
                        }
                        log.lock().unwrap().1.extend_from_slice(&buf[..n]);
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                });
            }
        });
        Self { port, received }
    }

    fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Connections made and bytes received so far.
    fn received(&self) -> (usize, Vec<u8>) {
        self.received.lock().unwrap().clone()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
