//! Tokens, secret ids and data keys never reach a log line, an error, a
//! `Debug` print or the status summary.

use std::sync::Mutex;

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use kmsd_openbao_testkit::documented_policy;
use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;

use super::*;

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn show(err: KmsError) -> String {
    let text = format!("{err} {err:?}");
    format!("{text} {:?}", tonic::Status::from(err))
}

/// Set in the child process that runs the scenario alone.
const ALONE: &str = "KMSD_VAULT_SECRETS_TEST_ALONE";

/// Tracing caches each callsite's interest process-wide: when another test
/// of this binary hits a callsite for the first time while this test is
/// installing its capture, the callsite can stay "never" and the capture
/// misses the line (rebuilding the cache narrows the window but cannot close
/// it). So the scenario runs alone, in a child process of this test binary.
#[test]
fn secrets_never_reach_logs_errors_debug_or_status() {
    if std::env::var_os(ALONE).is_some() {
        // One thread: every task's events go to the capture set in `scenario`.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Boxed as #[tokio::test] does: the future is too big for the stack.
        return runtime.block_on(Box::pin(scenario()));
    }
    let path = concat!(
        module_path!(),
        "::secrets_never_reach_logs_errors_debug_or_status"
    );
    let (_crate, name) = path.split_once("::").unwrap();
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1", "--nocapture"])
        .env(ALONE, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(
        child.status.success(),
        "the scenario failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("1 passed"), "the scenario ran:\n{stdout}");
}

async fn scenario() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let bao = OpenBao::dev().await;
    bao.write_policy("kmsd", &documented_policy()).await;
    let (role_id, secret_id) = bao.approle("kmsd", &["kmsd"], "1h", "4h").await;
    let auth = format!(
        "[backend.auth_method.approle]\nrole_id = \"{role_id}\"\nsecret_id = \"{secret_id}\"\n"
    );
    let daemon = start_daemon(&bao, &auth, "", &clock()).await;
    let kms = &daemon.kms;
    let context = ctx(&[("bucket", "b")]);
    let generated = kms
        .generate_data_key(&cx(), Operation::GenerateDataKey, None, &context)
        .await
        .unwrap();
    let secret_small = kms
        .encrypt(&cx(), None, b"small-secret-plaintext", &context)
        .await
        .unwrap();
    kms.decrypt(&cx(), &secret_small.blob, &context, None)
        .await
        .unwrap();
    // A revoked token: one re-login, with the secret id sent again.
    bao.api("PUT", "sys/leases/revoke-prefix/auth/approle/login", None)
        .await;
    kms.decrypt(&cx(), &generated.sealed.blob, &context, None)
        .await
        .unwrap();
    // Errors: a wrong context, a denied path, a dead given token.
    let mut printed = Vec::new();
    let err = kms
        .decrypt(&cx(), &generated.sealed.blob, &ctx(&[]), None)
        .await
        .unwrap_err();
    printed.push(show(err));
    let token = bao.create_token(&["kmsd"], "1h").await;
    let outside = try_backend(
        &bao,
        &token_auth(&token),
        "key_path_prefix = \"elsewhere\"",
        &clock(),
    )
    .await
    .unwrap();
    let err = outside.describe_key(&id("x")).await.unwrap_err();
    printed.push(show(err));
    bao.api("POST", "auth/token/revoke", Some(json!({ "token": token })))
        .await;
    let err = outside.describe_key(&id("x")).await.unwrap_err();
    printed.push(show(err));
    let err = try_backend(&bao, &token_auth(&token), "", &clock())
        .await
        .unwrap_err();
    printed.push(format!("{err} {err:?}"));

    // Debug prints and the status summary.
    printed.push(format!(
        "{kms:?} {outside:?} {:?}",
        vault_of(&daemon).summary
    ));
    printed.push(format!("{:?}", config(&bao, &auth, "")));

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("authenticated to Vault"), "the capture works");
    assert!(
        logs.contains("obtaining a new one"),
        "the re-login was logged"
    );
    let everything = format!("{logs}\n{}", printed.join("\n"));
    let dek = B64.encode(generated.key.expose_secret());
    for (what, secret) in [
        ("secret id", secret_id.as_str()),
        ("token", token.as_str()),
        ("data key", dek.as_str()),
        (
            "data key (hex)",
            &hex::encode(generated.key.expose_secret()),
        ),
        ("small secret", "small-secret-plaintext"),
        (
            "small secret (base64)",
            &B64.encode(b"small-secret-plaintext"),
        ),
    ] {
        assert!(!everything.contains(secret), "the {what} leaked");
    }
    daemon.shutdown().await.unwrap();
}
