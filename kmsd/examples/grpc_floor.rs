//! The floor under kmsd's request cost: a bare tonic server for
//! `kms.v1.KeyManagement/GenerateDataKey` with tonic's defaults, no policy,
//! no audit, no metrics, no key store, measured by `scripts/bench.py` in the
//! same run as kmsd so that "server CPU per request" and "p99 at 16 in
//! flight" have a baseline from the same machine at the same minute
//! (docs/performance.md).
//!
//! Its GenerateDataKey does the least a KMS can: one `getrandom` for the
//! data key and a nonce, one AES-256-GCM seal of the data key under a fixed
//! master key with the key id as associated data. Every other RPC answers
//! UNIMPLEMENTED. Not a key service: the master key lives only in memory
//! and the nonce is random, so it must never serve anything but a
//! benchmark.
//!
//! ```sh
//! cargo run --release -p kmsd --example grpc_floor -- /tmp/floor.sock
//! ```
//!
//! It serves gRPC on the given unix socket, and on `<socket>.count` answers
//! every connection with the number of GenerateDataKeys served so far (ASCII
//! decimal), which is how the benchmark divides CPU time by requests.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use anyhow::Context as _;
use kms_proto::v1::{
    self as pb,
    key_management_server::{KeyManagement, KeyManagementServer},
};
use ring::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    rand::{SecureRandom, SystemRandom},
};
use tokio::{io::AsyncWriteExt, net::UnixListener};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

const KEY_LEN: usize = 32;

struct Floor {
    master: LessSafeKey,
    random: SystemRandom,
    served: Arc<AtomicU64>,
}

impl std::fmt::Debug for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Floor")
    }
}

#[tonic::async_trait]
impl KeyManagement for Floor {
    async fn generate_data_key(
        &self,
        request: Request<pb::GenerateDataKeyRequest>,
    ) -> Result<Response<pb::GenerateDataKeyResponse>, Status> {
        let key_id = request.into_inner().key_id;
        let mut random = [0u8; KEY_LEN + NONCE_LEN];
        self.random
            .fill(&mut random)
            .map_err(|_| Status::internal("getrandom failed"))?;
        let (dek, nonce) = random.split_at(KEY_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| Status::internal("nonce length"))?;
        let mut blob = Vec::with_capacity(NONCE_LEN + KEY_LEN + AES_256_GCM.tag_len());
        blob.extend_from_slice(nonce.as_ref());
        let mut sealed = dek.to_vec();
        self.master
            .seal_in_place_append_tag(nonce, Aad::from(key_id.as_bytes()), &mut sealed)
            .map_err(|_| Status::internal("seal failed"))?;
        blob.extend_from_slice(&sealed);
        self.served.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(pb::GenerateDataKeyResponse {
            plaintext: dek.to_vec(),
            ciphertext_blob: blob,
            key_id,
            key_version: 1,
        }))
    }

    async fn generate_data_key_without_plaintext(
        &self,
        _: Request<pb::GenerateDataKeyRequest>,
    ) -> Result<Response<pb::GenerateDataKeyWithoutPlaintextResponse>, Status> {
        Err(Status::unimplemented(
            "the floor serves GenerateDataKey only",
        ))
    }

    async fn encrypt(
        &self,
        _: Request<pb::EncryptRequest>,
    ) -> Result<Response<pb::EncryptResponse>, Status> {
        Err(Status::unimplemented(
            "the floor serves GenerateDataKey only",
        ))
    }

    async fn decrypt(
        &self,
        _: Request<pb::DecryptRequest>,
    ) -> Result<Response<pb::DecryptResponse>, Status> {
        Err(Status::unimplemented(
            "the floor serves GenerateDataKey only",
        ))
    }

    async fn re_encrypt(
        &self,
        _: Request<pb::ReEncryptRequest>,
    ) -> Result<Response<pb::ReEncryptResponse>, Status> {
        Err(Status::unimplemented(
            "the floor serves GenerateDataKey only",
        ))
    }
}

/// Answers each connection to `listener` with the served count.
async fn serve_count(listener: UnixListener, served: Arc<AtomicU64>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let count = served.load(Ordering::Relaxed).to_string();
        // A reader that went away gets nothing; the benchmark retries.
        let _ = stream.write_all(count.as_bytes()).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let socket = std::env::args()
        .nth(1)
        .context("usage: grpc_floor <unix socket path>")?;
    let count_socket = format!("{socket}.count");
    for path in [&socket, &count_socket] {
        if std::path::Path::new(path).exists() {
            std::fs::remove_file(path).with_context(|| format!("cannot remove {path}"))?;
        }
    }
    let random = SystemRandom::new();
    let mut master = [0u8; KEY_LEN];
    random
        .fill(&mut master)
        .map_err(|_| anyhow::anyhow!("getrandom failed"))?;
    let master = UnboundKey::new(&AES_256_GCM, &master)
        .map_err(|_| anyhow::anyhow!("bad master key length"))?;
    let served = Arc::new(AtomicU64::new(0));
    let floor = Floor {
        master: LessSafeKey::new(master),
        random,
        served: Arc::clone(&served),
    };
    let grpc = UnixListener::bind(&socket).with_context(|| format!("cannot bind {socket}"))?;
    let count =
        UnixListener::bind(&count_socket).with_context(|| format!("cannot bind {count_socket}"))?;
    tokio::spawn(serve_count(count, served));
    tonic::transport::Server::builder()
        .add_service(KeyManagementServer::new(floor))
        .serve_with_incoming(UnixListenerStream::new(grpc))
        .await
        .context("gRPC server failed")
}
