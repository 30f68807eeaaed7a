//! The kmsd process as an operator meets it: startup and shutdown, bad
//! configuration, crashes, sealed key directories, dev mode and the CLI.

// Test code: a failed unwrap is a failed test, with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use kms_client::proto;
use kmsd_tests::{Kmsd, KmsdOptions, assert_error, binary, ctx, free_port, private_dir};
use tonic::Code;

fn key_files(kmsd: &Kmsd) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(kmsd.dir().join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// kill -9 while keys are created and rotated in a loop: after a restart,
/// every key and version a client saw acknowledged is there and every blob
/// it got still opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_nothing_that_was_acknowledged() {
    let mut kmsd = Kmsd::start_local().await;
    let context = ctx(&[("crash", "test")]);
    for round in 0..5u32 {
        let client = kmsd.client().await;
        let worker = tokio::spawn(async move {
            let mut acknowledged: HashMap<String, u32> = HashMap::new();
            let mut blobs = Vec::new();
            for i in 0.. {
                let key_id = format!("crash-{round}-{i}");
                let created = client
                    .key_admin()
                    .create_key(proto::CreateKeyRequest {
                        key_id: key_id.clone(),
                        ..Default::default()
                    })
                    .await;
                if created.is_err() {
                    break;
                }
                acknowledged.insert(key_id.clone(), 1);
                match client
                    .key_admin()
                    .rotate_key(proto::RotateKeyRequest {
                        key_id: key_id.clone(),
                    })
                    .await
                {
                    Ok(r) => {
                        acknowledged.insert(
                            key_id.clone(),
                            r.into_inner().key_metadata.unwrap().current_version,
                        );
                    }
                    Err(_) => break,
                }
                match client
                    .generate_data_key(Some(&key_id), &ctx(&[("crash", "test")]))
                    .await
                {
                    Ok(generated) => blobs.push(generated),
                    Err(_) => break,
                }
            }
            (acknowledged, blobs)
        });
        tokio::time::sleep(Duration::from_millis(150 + 70 * u64::from(round))).await;
        kmsd.kill9();
        let (acknowledged, blobs) = worker.await.unwrap();
        assert!(
            !acknowledged.is_empty(),
            "round {round}: nothing was created before the kill"
        );

        kmsd.restart().await;
        let client = kmsd.client().await;
        for (key_id, version) in &acknowledged {
            let meta = client
                .key_admin()
                .describe_key(proto::DescribeKeyRequest {
                    key_id: key_id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("round {round}: acknowledged key {key_id} is gone: {e}"))
                .into_inner()
                .key_metadata
                .unwrap();
            assert!(
                meta.current_version >= *version,
                "{key_id}: version {} < {version}",
                meta.current_version
            );
        }
        for generated in &blobs {
            let opened = client
                .decrypt(&generated.blob, &context, None)
                .await
                .unwrap();
            assert_eq!(
                opened.plaintext.expose_secret(),
                generated.key.expose_secret()
            );
        }
        let names = key_files(&kmsd);
        assert!(
            names
                .iter()
                .all(|n| n.ends_with(".key") || n == ".kmsd.lock"),
            "{names:?}"
        );
    }
}

#[tokio::test]
async fn sealed_key_files_hold_no_material_and_a_wrong_passphrase_stops_startup() {
    let mut options = KmsdOptions::local();
    options.backend_toml = Some(format!(
        "{}[backend.sealing]\npassphrase_env = \"KMSD_TEST_PASSPHRASE\"\n",
        options.backend_toml.unwrap()
    ));
    options.env = vec![(
        "KMSD_TEST_PASSPHRASE".into(),
        "correct horse battery staple".into(),
    )];
    let mut kmsd = Kmsd::start(options.clone()).await;
    let client = kmsd.client().await;
    client
        .key_admin()
        .rotate_key(proto::RotateKeyRequest {
            key_id: "default".into(),
        })
        .await
        .unwrap();
    let generated = client.generate_data_key(None, &ctx(&[])).await.unwrap();
    let text = std::fs::read_to_string(kmsd.dir().join("keys/default.key")).unwrap();
    assert!(text.contains("\"sealed_material\""), "{text}");
    assert!(!text.contains("\"material\""), "{text}");
    let settings = client
        .admin()
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        settings
            .backend
            .unwrap()
            .settings
            .get("sealed")
            .map(String::as_str),
        Some("true")
    );

    options.env = vec![("KMSD_TEST_PASSPHRASE".into(), "wrong".into())];
    kmsd.set_options(options.clone());
    kmsd.respawn();
    let status = kmsd.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success());
    let logs = kmsd.logs();
    assert!(
        logs.contains("wrong passphrase or key file for the sealed key directory"),
        "{logs}"
    );
    assert!(
        !logs.contains("correct horse"),
        "the passphrase leaked into the log"
    );

    options.env = vec![(
        "KMSD_TEST_PASSPHRASE".into(),
        "correct horse battery staple".into(),
    )];
    kmsd.set_options(options);
    kmsd.restart().await;
    let opened = kmsd
        .client()
        .await
        .decrypt(&generated.blob, &ctx(&[]), None)
        .await
        .unwrap();
    assert_eq!(
        opened.plaintext.expose_secret(),
        generated.key.expose_secret()
    );
}

#[tokio::test]
async fn a_bad_config_exits_78_and_names_the_problem() {
    for (extra, needle) in [
        (
            "[server]\nunix_sockett = \"/x\"\n",
            "unknown field `unix_sockett`",
        ),
        (
            "[backend]\nbackend_type = \"local\"\nkey_dir = \"relative\"\n",
            "must be an absolute path",
        ),
    ] {
        let dir = private_dir();
        let config = dir.path().join("kmsd.toml");
        std::fs::write(&config, extra).unwrap();
        let output = Command::new(binary("kmsd"))
            .args(["serve", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(78), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{stderr}");
    }
    let output = Command::new(binary("kmsd"))
        .args(["serve", "--config", "/nonexistent/kmsd.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/kmsd.toml"));
}

#[tokio::test]
async fn without_a_backend_kmsd_is_not_configured_and_says_so() {
    let kmsd = Kmsd::start(KmsdOptions {
        backend_toml: None,
        ..KmsdOptions::local()
    })
    .await;
    let client = kmsd.client().await;
    let status = client
        .admin()
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.state(), proto::ServiceState::NotConfigured);
    let err = assert_error(
        client.generate_data_key(None, &ctx(&[])).await,
        Code::Unavailable,
        "NOT_RUNNING",
    );
    assert!(err.to_string().contains("NotConfigured"), "{err}");
}

#[tokio::test]
async fn without_a_default_key_a_key_id_is_required() {
    let kmsd = Kmsd::start(KmsdOptions {
        backend_toml: Some(
            "[backend]\nbackend_type = \"local\"\nkey_dir = \"{dir}/keys\"\n".into(),
        ),
        ..KmsdOptions::local()
    })
    .await;
    let client = kmsd.client().await;
    assert_error(
        client.generate_data_key(None, &ctx(&[])).await,
        Code::FailedPrecondition,
        "NO_DEFAULT_KEY",
    );
}

/// SIGTERM in the middle of a burst: every request kmsd accepted gets its
/// answer (kmsd's audit log and the clients agree on how many succeeded),
/// the others are refused with UNAVAILABLE, and kmsd exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_completes_every_accepted_request() {
    let mut options = KmsdOptions::local();
    options.extra_toml = "[audit]\noutput = \"{dir}/audit.log\"\n".into();
    let mut kmsd = Kmsd::start(options).await;
    let mut workers = Vec::new();
    for _ in 0..16 {
        let client = kmsd.client().await;
        workers.push(tokio::spawn(async move {
            let mut ok = 0u32;
            loop {
                match client
                    .generate_data_key(None, &ctx(&[("burst", "1")]))
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(e) => return (ok, e),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    kmsd.signal("TERM");
    let status = kmsd.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}: {}", kmsd.logs());
    let mut client_ok = 0;
    for worker in workers {
        let (ok, err) = worker.await.unwrap();
        client_ok += ok;
        // After GOAWAY, a stream the server never started is reported by
        // the client as CANCELLED (never sent) or UNAVAILABLE (above the
        // GOAWAY's last stream id, or still unread when kmsd exited and
        // the connection was reset; tonic alone says INTERNAL or UNKNOWN,
        // together about 1 run in 5); one sent after the listener closed
        // as UNAVAILABLE. All were refused, not cut off: the count below
        // proves it.
        assert!(
            matches!(
                err.code(),
                Some(tonic::Code::Unavailable | tonic::Code::Cancelled)
            ) || matches!(err, kms_client::Error::Connect { .. }),
            "unexpected error after SIGTERM: {err}"
        );
    }
    let audit = std::fs::read_to_string(kmsd.dir().join("audit.log")).unwrap();
    let server_ok = audit
        .lines()
        .filter(|l| l.contains("\"GenerateDataKey\"") && l.contains("\"outcome\":\"ok\""))
        .count();
    assert!(client_ok > 100, "the burst was too small: {client_ok}");
    assert_eq!(
        server_ok, client_ok as usize,
        "kmsd completed requests whose answers were lost"
    );
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let mut kmsd = Kmsd::start_local().await;
    kmsd.client()
        .await
        .generate_data_key(None, &ctx(&[]))
        .await
        .unwrap();
    kmsd.signal("TERM");
    let status = kmsd.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}: {}", kmsd.logs());
    assert!(
        !kmsd.socket().exists(),
        "the socket file is removed on exit"
    );
}

#[tokio::test]
async fn a_second_kmsd_cannot_take_the_socket_or_the_key_directory() {
    let first = Kmsd::start_local().await;
    let dir = first.dir().display().to_string();

    // Same socket, another key directory.
    let mut second = Kmsd::spawn_only(KmsdOptions {
        extra_toml: String::new(),
        ..KmsdOptions::local()
    });
    let config = format!(
        "[server]\nunix_socket = \"{dir}/kmsd.sock\"\n[backend]\nbackend_type = \"local\"\nkey_dir = \"{}/keys\"\n",
        second.dir().display()
    );
    second.kill9();
    std::fs::write(second.config_path(), config).unwrap();
    let output = Command::new(binary("kmsd"))
        .arg("serve")
        .arg("--config")
        .arg(second.config_path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("another process is serving on this socket")
    );

    // Another socket, the same key directory.
    let config = format!(
        "[server]\nunix_socket = \"{}/other.sock\"\n[backend]\nbackend_type = \"local\"\nkey_dir = \"{dir}/keys\"\n",
        second.dir().display()
    );
    std::fs::write(second.config_path(), config).unwrap();
    let output = Command::new(binary("kmsd"))
        .arg("serve")
        .arg("--config")
        .arg(second.config_path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("in use by another kmsd process"));

    // The first one is unharmed.
    first
        .client()
        .await
        .generate_data_key(None, &ctx(&[]))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_stale_socket_file_from_a_crash_is_replaced() {
    let mut kmsd = Kmsd::start_local().await;
    kmsd.kill9();
    assert!(
        kmsd.socket().exists(),
        "SIGKILL leaves the socket file behind"
    );
    kmsd.restart().await;
    kmsd.client()
        .await
        .generate_data_key(None, &ctx(&[]))
        .await
        .unwrap();
}

mod cli;
