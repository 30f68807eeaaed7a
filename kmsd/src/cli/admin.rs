//! `kmsd admin …`: the runtime admin API (docs/api.md, "Admin").

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use kms_client::proto;

use super::{client::ClientArgs, output};

#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

/// A backend configuration: inline JSON or a file holding it.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct BackendSource {
    /// The backend configuration as JSON, e.g.
    /// '{"backend_type":"local","key_dir":"/var/lib/kmsd/keys"}'.
    #[arg(long)]
    json: Option<String>,
    /// A file holding the backend configuration as JSON.
    #[arg(long)]
    file: Option<PathBuf>,
}

impl BackendSource {
    fn read(self) -> anyhow::Result<String> {
        match (self.json, self.file) {
            (Some(json), _) => Ok(json),
            (None, Some(path)) => std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display())),
            (None, None) => anyhow::bail!("give --json or --file"),
        }
    }
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Store a backend configuration without starting it.
    Configure(BackendSource),
    /// Start serving with the configured backend.
    Start,
    /// Stop serving keys (requests in flight finish).
    Stop,
    /// Replace the backend with no restart; the old one stays for decryption.
    Reconfigure {
        #[command(flatten)]
        backend: BackendSource,
        /// Drop the replaced backend instead of keeping it for decryption.
        #[arg(long, conflicts_with = "decrypt_only")]
        discard_previous: bool,
        /// Add the backend for decryption only; the active one keeps
        /// sealing (the first pass of a rolling reconfiguration).
        #[arg(long)]
        decrypt_only: bool,
    },
    /// Drop every cached key and data key.
    ClearCache,
    /// Re-read the log level, admin access keys, policy and TLS files (as
    /// SIGHUP does); all or nothing.
    Reload,
}

pub(crate) async fn run(client: ClientArgs, args: AdminArgs) -> anyhow::Result<()> {
    let client = client.connect().await?;
    let mut admin = client.admin();
    let status = match args.command {
        AdminCommand::Configure(source) => {
            admin
                .configure(proto::ConfigureRequest {
                    backend_config_json: source.read()?,
                })
                .await
        }
        AdminCommand::Start => admin.start(proto::StartRequest {}).await,
        AdminCommand::Stop => admin.stop(proto::StopRequest {}).await,
        AdminCommand::Reconfigure {
            backend,
            discard_previous,
            decrypt_only,
        } => {
            admin
                .reconfigure(proto::ReconfigureRequest {
                    backend_config_json: backend.read()?,
                    discard_previous,
                    decrypt_only,
                })
                .await
        }
        AdminCommand::ClearCache => {
            let cleared = admin
                .clear_cache(proto::ClearCacheRequest {})
                .await
                .map_err(kms_client::Error::from)?
                .into_inner();
            return output::print_json(&serde_json::json!({
                "entries_cleared": cleared.entries_cleared
            }));
        }
        AdminCommand::Reload => {
            let report = admin
                .reload(proto::ReloadRequest {})
                .await
                .map_err(kms_client::Error::from)?
                .into_inner();
            return output::print_json(&serde_json::json!({
                "reloaded": report.reloaded,
                "restart_required": report.restart_required,
            }));
        }
    };
    let status = status.map_err(kms_client::Error::from)?.into_inner();
    output::print_json(&output::status(status))
}
