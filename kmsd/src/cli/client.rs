//! What every client subcommand shares: where kmsd is, and a runtime.

use std::{future::Future, time::Duration};

use anyhow::Context;
use clap::Args;
use kms_client::{ClientConfig, Endpoint, KmsClient, proto};

use super::output;

/// How to reach kmsd.
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// kmsd's address: unix:/path/to/kmsd.sock or http://host:port
    /// (`kmsd cluster check` takes it once per sidecar).
    #[arg(
        long,
        global = true,
        env = "KMSD_ENDPOINT",
        default_value = "unix:/run/kmsd/kmsd.sock",
        action = clap::ArgAction::Append
    )]
    endpoint: Vec<String>,
    /// Per-call deadline in seconds.
    #[arg(long, global = true, default_value_t = 10)]
    timeout: u64,
    /// For an https:// endpoint: the CA bundle that signed kmsd's
    /// certificate (PEM).
    #[arg(long, global = true, env = "KMSD_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// For an https:// endpoint: this client's certificate (PEM).
    #[arg(long, global = true, env = "KMSD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// For an https:// endpoint: this client's private key (PEM).
    #[arg(long, global = true, env = "KMSD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

impl ClientArgs {
    pub(crate) async fn connect(&self) -> anyhow::Result<KmsClient> {
        Ok(KmsClient::connect_with(self.config()?).await?)
    }

    pub(crate) fn config(&self) -> anyhow::Result<ClientConfig> {
        match self.endpoint.as_slice() {
            [one] => self.config_for(one),
            many => anyhow::bail!(
                "--endpoint is given {} times; only `kmsd cluster check` takes several",
                many.len()
            ),
        }
    }

    /// Every `--endpoint` given.
    pub(crate) fn endpoints(&self) -> &[String] {
        &self.endpoint
    }

    /// The client configuration for `endpoint`, with the shared deadline
    /// and TLS settings.
    pub(crate) fn config_for(&self, endpoint: &str) -> anyhow::Result<ClientConfig> {
        let endpoint: Endpoint = endpoint.parse()?;
        let mut config = ClientConfig::new(endpoint);
        config.timeout = Duration::from_secs(self.timeout);
        if let Some(ca) = &self.tls_ca {
            config.tls = Some(kms_client::TlsSettings::from_files(
                ca,
                self.tls_cert.as_deref(),
                self.tls_key.as_deref(),
            )?);
        }
        Ok(config)
    }
}

pub(crate) fn block_on(future: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    block_on_value(future)
}

pub(crate) fn block_on_value<T>(
    future: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
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
