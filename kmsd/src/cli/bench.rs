//! `kmsd bench`: load-test a running kmsd, or OpenBao directly for
//! comparison (docs/performance.md).

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Args;
use kms_client::{ClientConfig, KmsClient, RetryPolicy, SecretString};

use super::client::ClientArgs;
use crate::bench::{self, Load, OpenBaoTarget, Target, Workload};

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// What each caller does.
    #[arg(long, value_enum, default_value = "gdk")]
    workload: Workload,
    /// Concurrent callers (requests in flight).
    #[arg(long, short = 'c', default_value_t = 16)]
    concurrency: usize,
    /// Connections the callers share.
    #[arg(long, short = 'm', default_value_t = 1)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds first.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// The master key (default: kmsd's default key).
    #[arg(long)]
    key_id: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Drive OpenBao's transit/datakey at this address instead of kmsd.
    #[arg(long)]
    openbao_addr: Option<String>,
    /// A file holding the OpenBao token (with --openbao-addr).
    #[arg(long, requires = "openbao_addr")]
    openbao_token_file: Option<PathBuf>,
    /// The Transit mount (with --openbao-addr).
    #[arg(long, default_value = "transit")]
    openbao_mount: String,
    /// Worker threads of the client's runtime (default: one per core). On a
    /// machine shared with the server, fewer client threads leave the cores
    /// to the server and keep the client's own scheduling out of the tail.
    #[arg(long)]
    threads: Option<usize>,
    /// Write the gRPC-framed GenerateDataKeyRequest this workload sends to
    /// a file and exit (a body for h2load), instead of running.
    #[arg(long)]
    write_request_body: Option<PathBuf>,
}

pub(crate) fn run(client: ClientArgs, args: BenchArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.write_request_body {
        return write_request_body(path, args.key_id.as_deref());
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let load = Load {
            concurrency: args.concurrency.max(1),
            connections: args.connections.max(1),
            duration: Duration::from_secs_f64(args.duration.max(0.1)),
            warmup: Duration::from_secs_f64(args.warmup.max(0.0)),
        };
        let target = match &args.openbao_addr {
            Some(address) => {
                let path = args
                    .openbao_token_file
                    .as_ref()
                    .context("--openbao-addr needs --openbao-token-file")?;
                let token = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let key = args.key_id.clone().unwrap_or_else(|| "default".into());
                Target::OpenBao(Box::new(OpenBaoTarget::new(
                    address,
                    &args.openbao_mount,
                    &key,
                    SecretString::new(token.trim().to_owned()),
                )))
            }
            None => {
                let mut clients = Vec::with_capacity(load.connections);
                for _ in 0..load.connections {
                    let mut config: ClientConfig = client.config()?;
                    // Errors are what a benchmark counts, not what it hides.
                    config.retry = RetryPolicy::NEVER;
                    clients.push(KmsClient::connect_with(config).await?);
                }
                Target::Kmsd {
                    clients,
                    key_id: args.key_id.clone(),
                    workload: args.workload,
                }
            }
        };
        let report = bench::run(target, &load).await?;
        if args.json {
            super::output::print_line(serde_json::to_string_pretty(&report)?)?;
        } else {
            super::output::print_line(report)?;
        }
        Ok(())
    })
}

fn write_request_body(path: &std::path::Path, key_id: Option<&str>) -> anyhow::Result<()> {
    let request = kms_client::proto::GenerateDataKeyRequest {
        key_id: key_id.unwrap_or_default().to_owned(),
        encryption_context: bench::bench_context(),
    };
    let message = prost::Message::encode_to_vec(&request);
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(message.len())?.to_be_bytes());
    framed.extend_from_slice(&message);
    std::fs::write(path, framed).with_context(|| format!("cannot write {}", path.display()))
}
