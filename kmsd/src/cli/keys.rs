//! `kmsd key …`, `kmsd datakey` and `kmsd decrypt`.

use anyhow::{Context, bail};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use clap::{Args, Subcommand};
use kms_client::{EncryptionContext, proto};
use serde::Serialize;

use super::{client::ClientArgs, output};

#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Create a key (a random id if none is given).
    Create {
        /// The key id: 1-128 characters from [A-Za-z0-9._-].
        key_id: Option<String>,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// A label, as key=value; repeatable.
        #[arg(long = "tag", value_parser = parse_pair)]
        tags: Vec<(String, String)>,
    },
    /// List every key.
    List,
    /// Show one key, with its usage figures.
    Describe {
        /// The key id.
        key_id: String,
        /// Also show the deletion impact: what kmsd has seen of the key's
        /// use (evidence, not proof). Prints {"key_metadata", "impact"}.
        #[arg(long)]
        impact: bool,
    },
    /// Add a new version; new blobs use it, old blobs keep decrypting.
    Rotate {
        /// The key id.
        key_id: String,
    },
    /// Enable a disabled key.
    Enable {
        /// The key id.
        key_id: String,
    },
    /// Disable a key: it refuses every cryptographic operation.
    Disable {
        /// The key id.
        key_id: String,
    },
    /// Schedule a key's destruction after a waiting period.
    ScheduleDeletion {
        /// The key id.
        key_id: String,
        /// The waiting period, 7-30 days.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Schedule even if kmsd saw the key used within the deletion
        /// guard window (otherwise refused: KEY_STILL_REFERENCED).
        #[arg(long)]
        force: bool,
    },
    /// Cancel a scheduled deletion (the key becomes Disabled).
    CancelDeletion {
        /// The key id.
        key_id: String,
    },
    /// Replace a key's description.
    UpdateDescription {
        /// The key id.
        key_id: String,
        /// The new description (empty clears it).
        description: String,
    },
    /// Add tags to a key, or change their values.
    Tag {
        /// The key id.
        key_id: String,
        /// A label, as key=value; repeatable.
        #[arg(long = "tag", value_parser = parse_pair, required = true)]
        tags: Vec<(String, String)>,
    },
    /// Write a sealed backup bundle of a key directory no kmsd serves.
    Backup(super::backup::BackupArgs),
    /// Restore a backup bundle into a key directory no kmsd serves.
    Restore(super::backup::RestoreArgs),
    /// Remove tags from a key.
    Untag {
        /// The key id.
        key_id: String,
        /// A tag key to remove; repeatable.
        #[arg(long = "tag-key", required = true)]
        tag_keys: Vec<String>,
    },
    /// Automatic rotation: enable, disable, status.
    Rotation(super::rotation::RotationArgs),
    /// Create a key from your own 32 bytes of material: gets import
    /// parameters, wraps the material here, imports it.
    Import(super::import::ImportArgs),
    /// Get import parameters (a token and an RSA public key) to wrap key
    /// material yourself.
    ImportParameters(super::import::ImportParametersArgs),
}

pub(crate) fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

fn rpc<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, kms_client::Error> {
    r.map(tonic::Response::into_inner)
        .map_err(kms_client::Error::from)
}

pub(crate) async fn run_key(client: ClientArgs, args: KeyArgs) -> anyhow::Result<()> {
    // Backup and restore work on the key directory, not through a kmsd.
    let command = match args.command {
        KeyCommand::Backup(args) => return super::backup::run_backup(args).await,
        KeyCommand::Restore(args) => return super::backup::run_restore(args).await,
        KeyCommand::Rotation(args) => return super::rotation::run(client, args).await,
        KeyCommand::Import(args) => return super::import::run_import(client, args).await,
        KeyCommand::ImportParameters(args) => {
            return super::import::run_parameters(client, args).await;
        }
        command => command,
    };
    let client = client.connect().await?;
    let mut admin = client.key_admin();
    let meta = match command {
        KeyCommand::Backup(_)
        | KeyCommand::Restore(_)
        | KeyCommand::Rotation(_)
        | KeyCommand::Import(_)
        | KeyCommand::ImportParameters(_) => {
            anyhow::bail!("backup, restore, rotation and import are handled above")
        }
        KeyCommand::Create {
            key_id,
            description,
            tags,
        } => {
            rpc(admin
                .create_key(proto::CreateKeyRequest {
                    key_id: key_id.unwrap_or_default(),
                    description,
                    tags: tags.into_iter().collect(),
                })
                .await)?
            .key_metadata
        }
        KeyCommand::List => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = rpc(admin
                    .list_keys(proto::ListKeysRequest {
                        page_size: 1000,
                        page_token,
                    })
                    .await)?;
                all.extend(page.keys.into_iter().map(output::key));
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            return output::print_json(&all);
        }
        KeyCommand::Describe { key_id, impact } => {
            let answer = rpc(admin
                .describe_key(proto::DescribeKeyRequest {
                    key_id,
                    include_impact: impact,
                })
                .await)?;
            if let (true, Some(meta), Some(impact)) =
                (impact, answer.key_metadata.clone(), answer.impact)
            {
                return output::print_json(&DescribeOut {
                    key_metadata: output::key(meta),
                    impact: output::impact(impact),
                });
            }
            answer.key_metadata
        }
        KeyCommand::Rotate { key_id } => {
            rpc(admin.rotate_key(proto::RotateKeyRequest { key_id }).await)?.key_metadata
        }
        KeyCommand::Enable { key_id } => {
            rpc(admin.enable_key(proto::EnableKeyRequest { key_id }).await)?.key_metadata
        }
        KeyCommand::Disable { key_id } => {
            rpc(admin.disable_key(proto::DisableKeyRequest { key_id }).await)?.key_metadata
        }
        KeyCommand::ScheduleDeletion {
            key_id,
            days,
            force,
        } => {
            rpc(admin
                .schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
                    key_id,
                    pending_window_in_days: days,
                    force,
                })
                .await)?
            .key_metadata
        }
        KeyCommand::CancelDeletion { key_id } => {
            rpc(admin
                .cancel_key_deletion(proto::CancelKeyDeletionRequest { key_id })
                .await)?
            .key_metadata
        }
        KeyCommand::UpdateDescription {
            key_id,
            description,
        } => {
            rpc(admin
                .update_key_description(proto::UpdateKeyDescriptionRequest {
                    key_id,
                    description,
                })
                .await)?
            .key_metadata
        }
        KeyCommand::Tag { key_id, tags } => {
            rpc(admin
                .tag_key(proto::TagKeyRequest {
                    key_id,
                    tags: tags.into_iter().collect(),
                })
                .await)?
            .key_metadata
        }
        KeyCommand::Untag { key_id, tag_keys } => {
            rpc(admin
                .untag_key(proto::UntagKeyRequest { key_id, tag_keys })
                .await)?
            .key_metadata
        }
    };
    let Some(meta) = meta else {
        bail!("kmsd returned no key metadata");
    };
    output::print_json(&output::key(meta))
}

/// `kmsd key describe --impact`: the key and its deletion impact.
#[derive(Serialize)]
struct DescribeOut {
    key_metadata: crate::http::key_view::KeyView,
    impact: crate::http::key_view::ImpactView,
}

#[derive(Debug, Args)]
pub(crate) struct DatakeyArgs {
    /// The master key (default: kmsd's default key).
    #[arg(long)]
    key_id: Option<String>,
    /// An encryption-context pair, as key=value; repeatable.
    #[arg(long = "context", value_parser = parse_pair)]
    context: Vec<(String, String)>,
    /// Print only the sealed key.
    #[arg(long)]
    without_plaintext: bool,
}

#[derive(Serialize)]
struct DatakeyOut {
    key_id: String,
    key_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext: Option<String>,
    ciphertext_blob: String,
}

pub(crate) async fn run_datakey(client: ClientArgs, args: DatakeyArgs) -> anyhow::Result<()> {
    let client = client.connect().await?;
    let context: EncryptionContext = args.context.into_iter().collect();
    let out = if args.without_plaintext {
        let sealed = client
            .generate_data_key_without_plaintext(args.key_id.as_deref(), &context)
            .await?;
        DatakeyOut {
            key_id: sealed.key_id,
            key_version: sealed.key_version,
            plaintext: None,
            ciphertext_blob: B64.encode(sealed.blob),
        }
    } else {
        let generated = client
            .generate_data_key(args.key_id.as_deref(), &context)
            .await?;
        DatakeyOut {
            key_id: generated.key_id,
            key_version: generated.key_version,
            // Printing the key is this command's purpose.
            plaintext: Some(B64.encode(generated.key.expose_secret())),
            ciphertext_blob: B64.encode(generated.blob),
        }
    };
    output::print_json(&out)
}

#[derive(Debug, Args)]
pub(crate) struct DecryptArgs {
    /// The sealed blob, base64.
    blob: String,
    /// An encryption-context pair, as key=value; repeatable.
    #[arg(long = "context", value_parser = parse_pair)]
    context: Vec<(String, String)>,
}

#[derive(Serialize)]
struct DecryptOut {
    key_id: String,
    key_version: u32,
    plaintext: String,
}

pub(crate) async fn run_decrypt(client: ClientArgs, args: DecryptArgs) -> anyhow::Result<()> {
    let client = client.connect().await?;
    let blob = B64
        .decode(args.blob.trim())
        .context("the blob is not valid base64")?;
    let context: EncryptionContext = args.context.into_iter().collect();
    let opened = client.decrypt(&blob, &context, None).await?;
    output::print_json(&DecryptOut {
        key_id: opened.key_id,
        key_version: opened.key_version,
        plaintext: B64.encode(opened.plaintext.expose_secret()),
    })
}
