//! `kmsd key rotation enable|disable|status`: automatic rotation.

use anyhow::bail;
use clap::{Args, Subcommand};
use kms_client::proto;
use serde::Serialize;

use super::{client::ClientArgs, output};

#[derive(Debug, Args)]
pub(crate) struct RotationArgs {
    #[command(subcommand)]
    command: RotationCommand,
}

#[derive(Debug, Subcommand)]
enum RotationCommand {
    /// Rotate the key automatically every period (the first rotation is
    /// one period from now); with the period it already has, nothing
    /// changes.
    Enable {
        /// The key id.
        key_id: String,
        /// The period in days, 90-2560 (default 365).
        #[arg(long, conflicts_with = "seconds")]
        days: Option<u32>,
        /// The period in seconds, for test deployments whose
        /// `[keys] min_rotation_period_secs` allows less than a day.
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Stop rotating the key automatically (RotateKey still works).
    Disable {
        /// The key id.
        key_id: String,
    },
    /// Show whether the key rotates automatically, and when next.
    Status {
        /// The key id.
        key_id: String,
    },
}

/// What `status` prints: the admin REST API's `keys/rotation/status`.
#[derive(Serialize)]
struct StatusOut {
    key_id: String,
    rotation_enabled: bool,
    rotation_period_in_days: Option<u32>,
    rotation_period_seconds: Option<u64>,
    next_rotation_date: Option<String>,
}

fn rpc<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, kms_client::Error> {
    r.map(tonic::Response::into_inner)
        .map_err(kms_client::Error::from)
}

pub(crate) async fn run(client: ClientArgs, args: RotationArgs) -> anyhow::Result<()> {
    let client = client.connect().await?;
    let mut admin = client.key_admin();
    let meta = match args.command {
        RotationCommand::Enable {
            key_id,
            days,
            seconds,
        } => {
            if days == Some(0) || seconds == Some(0) {
                bail!("the rotation period must be positive; leave it out for 365 days");
            }
            rpc(admin
                .enable_key_rotation(proto::EnableKeyRotationRequest {
                    key_id,
                    rotation_period_in_days: days.unwrap_or(0),
                    rotation_period_seconds: seconds.unwrap_or(0),
                })
                .await)?
            .key_metadata
        }
        RotationCommand::Disable { key_id } => {
            rpc(admin
                .disable_key_rotation(proto::DisableKeyRotationRequest { key_id })
                .await)?
            .key_metadata
        }
        RotationCommand::Status { key_id } => {
            let status = rpc(admin
                .get_key_rotation_status(proto::GetKeyRotationStatusRequest { key_id })
                .await)?;
            let on = status.rotation_enabled;
            return output::print_json(&StatusOut {
                key_id: status.key_id,
                rotation_enabled: on,
                rotation_period_in_days: on.then_some(status.rotation_period_in_days),
                rotation_period_seconds: on.then_some(status.rotation_period_seconds),
                next_rotation_date: output::time(status.next_rotation_date),
            });
        }
    };
    let Some(meta) = meta else {
        bail!("kmsd returned no key metadata");
    };
    output::print_json(&output::key(meta))
}
