//! What every client subcommand shares: where kmsd is, and a runtime.

use std::{future::Future, time::Duration};

use anyhow::Context;
use clap::Args;
use kms_client::{ClientConfig, Endpoint, KmsClient, proto};

use super::output;

/// How to reach kmsd.
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// kmsd's address: unix:/path/to/kmsd.sock or http://host:port.
    #[arg(
        long,
        global = true,
        env = "KMSD_ENDPOINT",
        default_value = "unix:/run/kmsd/kmsd.sock"
    )]
    endpoint: String,
    /// Per-call deadline in seconds.
    #[arg(long, global = true, default_value_t = 10)]
    timeout: u64,
}

impl ClientArgs {
    pub(crate) async fn connect(&self) -> anyhow::Result<KmsClient> {
        let endpoint: Endpoint = self.endpoint.parse()?;
        let mut config = ClientConfig::new(endpoint);
        config.timeout = Duration::from_secs(self.timeout);
        Ok(KmsClient::connect_with(config).await?)
    }
}

pub(crate) fn block_on(future: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}

pub(crate) async fn run_status(args: ClientArgs) -> anyhow::Result<()> {
    let client = args.connect().await?;
    let status = client
        .admin()
        .status(proto::StatusRequest {})
        .await
        .map_err(kms_client::Error::from)?
        .into_inner();
    output::print_json(&output::status(status))
}
