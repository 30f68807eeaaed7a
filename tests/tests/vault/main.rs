//! kmsd processes on a real OpenBao: a disabled key is refused on every
//! path, on this node at once and on another node within the key-metadata
//! refresh (`kill_switch.rs`); and a killed, sealed or frozen OpenBao makes
//! calls fail fast while nodes that can serve without it stay ready
//! (`outage.rs`); a reload rebuilds the backend without a failed request
//! (`reload.rs`).

// Test code: a failed unwrap is a failed test, with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod kill_switch;
mod outage;
mod reload;

use std::time::Duration;

use kms_client::{KmsClient, RetryPolicy, proto};
use kmsd_openbao_testkit::OpenBao;
use kmsd_tests::{Kmsd, KmsdOptions, ctx, free_port, rest::AdminClient};

/// A kmsd on `bao` (root token, default key `default`) with `backend` lines
/// added to `[backend]` and `extra` TOML after it; returns it and the port
/// of its `[metrics]` listener (health routes).
async fn start_on(bao: &OpenBao, backend: &str, extra: &str) -> (Kmsd, u16) {
    let port = free_port();
    let options = KmsdOptions {
        backend_toml: Some(format!(
            "[backend]\nbackend_type = \"vault\"\naddress = \"{}\"\ndefault_key_id = \"default\"\n{backend}\n[backend.auth_method]\ntoken = \"{}\"\n",
            bao.address(),
            bao.root_token()
        )),
        extra_toml: format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\n[health]\nprobe_interval_secs = 1\n{extra}"
        ),
        ..KmsdOptions::local()
    };
    (Kmsd::start(options).await, port)
}

/// A client that never retries (what a failed call costs is the point) and
/// waits long enough for any deadline of kmsd's own.
async fn no_retries(kmsd: &Kmsd) -> KmsClient {
    kmsd.client_with(|config| {
        config.retry = RetryPolicy::NEVER;
        config.timeout = Duration::from_secs(30);
    })
    .await
}

/// The status of `GET path` on a metrics listener.
async fn health(port: u16, path: &str) -> u16 {
    let http = AdminClient::new(port, "", "");
    http.send(http.unsigned("GET", path, "")).await.status
}

fn rpc<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, kms_client::Error> {
    r.map(tonic::Response::into_inner)
        .map_err(kms_client::Error::from)
}

async fn create_key(client: &KmsClient, key_id: &str) {
    rpc(client
        .key_admin()
        .create_key(proto::CreateKeyRequest {
            key_id: key_id.into(),
            ..Default::default()
        })
        .await)
    .unwrap();
}
