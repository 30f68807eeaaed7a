//! kms-s3-gateway: a small S3 endpoint that stores objects on local disk
//! (s3s-fs) and encrypts them through kms-client and kmsd, so real S3
//! clients (boto3, the AWS CLI) can exercise SSE-S3, SSE-KMS, SSE-C,
//! bucket defaults and bucket keys end to end. It listens on 127.0.0.1
//! only. See docs/sse.md, "The gateway".

#![forbid(unsafe_code)]

mod body;
mod buckets;
mod error;
mod gateway;
mod multipart;
mod objects;
mod store;

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder,
};
use kms_client::{
    ClientConfig, Endpoint, KmsClient, bucket_key::BucketKeyPolicy, stream::ChunkSize,
};
use s3s::{auth::SimpleAuth, service::S3ServiceBuilder};

/// Serve an S3-compatible endpoint whose objects kmsd's keys protect.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// kmsd's endpoint: `unix:/path/kmsd.sock` or `http://127.0.0.1:7373`.
    #[arg(long)]
    kmsd: String,
    /// The directory that holds buckets and objects (created if missing).
    #[arg(long)]
    root: PathBuf,
    /// The port on 127.0.0.1 (0: any free port, printed at startup).
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// The access key clients sign with.
    #[arg(long)]
    access_key: String,
    /// The secret key clients sign with.
    #[arg(long, env = "KMS_GATEWAY_SECRET_KEY", hide_env_values = true)]
    secret_key: String,
    /// How long a cached bucket key is used, in seconds.
    #[arg(long, default_value_t = 300)]
    bucket_key_ttl_secs: u64,
    /// How many objects a cached bucket key encrypts (or reads open).
    #[arg(long, default_value_t = 10_000)]
    bucket_key_max_uses: u64,
    /// Plaintext bytes per OSE1 chunk (a power of two, 64 to 16 MiB).
    #[arg(long, default_value_t = 1 << 20)]
    chunk_size: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let endpoint: Endpoint = args.kmsd.parse().context("--kmsd")?;
    let kms = KmsClient::connect_lazy(ClientConfig::new(endpoint)).await?;
    let policy = BucketKeyPolicy {
        ttl: Duration::from_secs(args.bucket_key_ttl_secs),
        max_uses: args.bucket_key_max_uses,
        ..BucketKeyPolicy::default()
    };
    let chunk_size = ChunkSize::from_bytes(args.chunk_size).context("--chunk-size")?;
    std::fs::create_dir_all(&args.root).context("--root")?;
    let gateway = gateway::Gateway::new(&args.root, kms, policy, chunk_size)?;

    let mut builder = S3ServiceBuilder::new(gateway);
    builder.set_auth(SimpleAuth::from_single(args.access_key, args.secret_key));
    let service = builder.build();

    // Loopback only: SSE-C keys arrive in headers over plain HTTP.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    println!(
        "kms-s3-gateway listening on http://{}",
        listener.local_addr()?
    );
    let http = Builder::new(TokioExecutor::new());
    loop {
        let (socket, _) = listener.accept().await?;
        let service = service.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let connection = http.serve_connection(TokioIo::new(socket), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
}
