//! Processes that cannot outlive the test binary, and a small JSON client.
//!
//! A node is started through `setpriv --pdeathsig KILL` by one dedicated
//! thread that lives as long as the test process: the kernel then kills
//! the node when that thread ends, i.e. when the test process ends by any
//! means (a normal exit with a cluster kept in a `static`, an abort, a
//! SIGKILL from a CI timeout). The parent-death signal fires when the
//! *thread* that forked ends, which is why it cannot be a test's thread
//! or a tokio worker. A watchdog shell removes the cluster's directory
//! once the test process is gone, for the same cases where no `Drop`
//! runs.

use std::{
    io,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock, mpsc},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::{Value, json};

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Starts `program args…` with `envs`, writing stdout and stderr to
/// `log`, so that it is killed when the test process ends.
pub(super) fn spawn_tied(
    program: &Path,
    args: &[String],
    envs: &[(&str, &Path)],
    log: &std::fs::File,
) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("raft-spawner".into())
            .spawn(move || {
                // Runs as long as the process: the sender sits in a static.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the spawner thread");
        Mutex::new(tx)
    });
    let mut cmd = if has_setpriv() {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--"]).arg(program);
        cmd
    } else {
        eprintln!("setpriv not found: bao nodes are killed on drop only");
        Command::new(program)
    };
    cmd.args(args)
        .envs(envs.iter().map(|(k, v)| (*k, *v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?);
    let (reply_tx, reply_rx) = mpsc::channel();
    sender
        .lock()
        .expect("the spawner lock")
        .send((cmd, reply_tx))
        .expect("the spawner thread lives");
    reply_rx.recv().expect("the spawner thread answers")
}

fn has_setpriv() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        Command::new("setpriv")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A shell that removes `dir` once this test process has ended (whether
/// or not a destructor ran). Kill it when the directory is removed
/// normally.
pub(super) fn watchdog(dir: &Path) -> Option<Child> {
    Command::new("sh")
        .arg("-c")
        .arg(r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done; rm -rf -- "$2""#)
        .arg("raft-watchdog")
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// One HTTP/1.1 call with a JSON body, bounded by `timeout` (a frozen node
/// never answers). Returns the status (0: no answer) and the JSON answer
/// (`Null` if none).
pub(super) async fn call(
    url: &str,
    method: &str,
    token: Option<&str>,
    body: Option<&Value>,
    timeout: Duration,
) -> (u16, Value) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::builder().method(method).uri(url);
    if let Some(token) = token {
        request = request.header("X-Vault-Token", token);
    }
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let request = request
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(payload)))
        .expect("a valid request");
    let answer = tokio::time::timeout(timeout, async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, bytes))
    })
    .await;
    match answer {
        Ok(Ok((status, bytes))) => (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ),
        Ok(Err(e)) => (0, json!({ "transport_error": e.to_string() })),
        Err(_) => (0, json!({ "transport_error": "timed out" })),
    }
}
