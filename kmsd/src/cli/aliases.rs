//! `kmsd alias …`: aliases on a running kmsd.

use clap::{Args, Subcommand};
use kms_client::proto;
use serde::Serialize;

use super::{client::ClientArgs, output};

#[derive(Debug, Args)]
pub(crate) struct AliasArgs {
    #[command(subcommand)]
    command: AliasCommand,
}

#[derive(Debug, Subcommand)]
enum AliasCommand {
    /// Create an alias for a key.
    Create {
        /// The alias: alias/<name> (or just <name>).
        alias_name: String,
        /// The key it stands for.
        target_key_id: String,
    },
    /// Point an alias at another key: new data keys made through it use
    /// that key; blobs made before keep opening.
    Update {
        /// The alias.
        alias_name: String,
        /// The new target key.
        target_key_id: String,
    },
    /// Delete an alias (its key is not touched).
    Delete {
        /// The alias.
        alias_name: String,
    },
    /// List aliases.
    List {
        /// Only the aliases of this key.
        #[arg(long)]
        key_id: Option<String>,
    },
}

#[derive(Serialize)]
struct AliasOut {
    alias_name: String,
    target_key_id: String,
    created_at: Option<String>,
    updated_at: Option<String>,
}

fn alias_out(alias: proto::Alias) -> AliasOut {
    AliasOut {
        alias_name: alias.alias_name,
        target_key_id: alias.target_key_id,
        created_at: output::time(alias.created_at),
        updated_at: output::time(alias.updated_at),
    }
}

fn rpc<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, kms_client::Error> {
    r.map(tonic::Response::into_inner)
        .map_err(kms_client::Error::from)
}

pub(crate) async fn run_alias(client: ClientArgs, args: AliasArgs) -> anyhow::Result<()> {
    let client = client.connect().await?;
    let mut admin = client.key_admin();
    let alias = match args.command {
        AliasCommand::Create {
            alias_name,
            target_key_id,
        } => {
            rpc(admin
                .create_alias(proto::CreateAliasRequest {
                    alias_name,
                    target_key_id,
                })
                .await)?
            .alias
        }
        AliasCommand::Update {
            alias_name,
            target_key_id,
        } => {
            rpc(admin
                .update_alias(proto::UpdateAliasRequest {
                    alias_name,
                    target_key_id,
                })
                .await)?
            .alias
        }
        AliasCommand::Delete { alias_name } => {
            rpc(admin
                .delete_alias(proto::DeleteAliasRequest {
                    alias_name: alias_name.clone(),
                })
                .await)?;
            return output::print_json(&serde_json::json!({ "deleted": alias_name }));
        }
        AliasCommand::List { key_id } => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = rpc(admin
                    .list_aliases(proto::ListAliasesRequest {
                        key_id: key_id.clone().unwrap_or_default(),
                        page_size: 1000,
                        page_token,
                    })
                    .await)?;
                all.extend(page.aliases.into_iter().map(alias_out));
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            return output::print_json(&all);
        }
    };
    let Some(alias) = alias else {
        anyhow::bail!("kmsd returned no alias");
    };
    output::print_json(&alias_out(alias))
}
