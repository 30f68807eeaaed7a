//! `kmsd key import` and `kmsd key import-parameters`: bring your own key.

use std::path::PathBuf;

use anyhow::{Context, bail};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use clap::Args;
use kms_client::proto;
use serde::Serialize;
use zeroize::Zeroizing;

use super::{client::ClientArgs, output};
use crate::import::{MATERIAL_LEN, wrap_material};

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The id of the key to create (a random id if none is given).
    key_id: Option<String>,
    /// A file holding exactly 32 bytes of raw key material. It is wrapped
    /// here under the import token's public key (RSAES_OAEP_SHA_256)
    /// and never sent in the clear.
    #[arg(long)]
    material_file: PathBuf,
    /// Free text.
    #[arg(long, default_value = "")]
    description: String,
    /// A label, as key=value; repeatable.
    #[arg(long = "tag", value_parser = super::keys::parse_pair)]
    tags: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub(crate) struct ImportParametersArgs {
    /// Bind the token to the id the imported key will have.
    key_id: Option<String>,
}

#[derive(Serialize)]
struct ParametersOut {
    import_token: String,
    /// DER SubjectPublicKeyInfo, base64.
    public_key: String,
    public_key_pem: String,
    wrapping_algorithm: String,
    expires_at: Option<String>,
    key_id: Option<String>,
}

fn rpc<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, kms_client::Error> {
    r.map(tonic::Response::into_inner)
        .map_err(kms_client::Error::from)
}

/// Prints import parameters, for a caller that wraps its material itself.
pub(crate) async fn run_parameters(
    client: ClientArgs,
    args: ImportParametersArgs,
) -> anyhow::Result<()> {
    let client = client.connect().await?;
    let params = rpc(client
        .key_admin()
        .get_parameters_for_import(proto::GetParametersForImportRequest {
            key_id: args.key_id.unwrap_or_default(),
        })
        .await)?;
    output::print_json(&ParametersOut {
        import_token: params.import_token,
        public_key: B64.encode(&params.public_key),
        public_key_pem: params.public_key_pem,
        wrapping_algorithm: params.wrapping_algorithm,
        expires_at: output::time(params.expires_at),
        key_id: (!params.key_id.is_empty()).then_some(params.key_id),
    })
}

/// The whole flow: parameters, the wrap here, the import.
pub(crate) async fn run_import(client: ClientArgs, args: ImportArgs) -> anyhow::Result<()> {
    let material = Zeroizing::new(
        std::fs::read(&args.material_file)
            .with_context(|| format!("reading {}", args.material_file.display()))?,
    );
    if material.len() != MATERIAL_LEN {
        bail!(
            "{} holds {} bytes; key material must be exactly {MATERIAL_LEN} raw bytes",
            args.material_file.display(),
            material.len()
        );
    }
    let client = client.connect().await?;
    let mut admin = client.key_admin();
    let key_id = args.key_id.unwrap_or_default();
    let params = rpc(admin
        .get_parameters_for_import(proto::GetParametersForImportRequest {
            key_id: key_id.clone(),
        })
        .await)?;
    let wrapped = wrap_material(&params.public_key, &material)?;
    let meta = rpc(admin
        .import_key(proto::ImportKeyRequest {
            import_token: params.import_token,
            key_id,
            encrypted_key_material: wrapped,
            description: args.description,
            tags: args.tags.into_iter().collect(),
        })
        .await)?
    .key_metadata
    .context("kmsd returned no key metadata")?;
    output::print_json(&output::key(meta))
}
