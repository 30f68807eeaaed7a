//! `kmsd key backup` and `kmsd key restore`: a local key directory to a
//! sealed bundle and back (docs/cli.md, docs/operations.md "Backup and
//! restore").
//!
//! Unlike the other client subcommands these work on the directory
//! itself, for disaster recovery: they take its lock, so they refuse a
//! directory a kmsd is serving (back that one up with `POST /kms/backup`
//! on the admin API), and a restore can fill a new directory before any
//! kmsd starts on it.

use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _, path::PathBuf, sync::Arc};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use super::output;
use crate::{
    backend::local::{LocalBackend, LocalConfig, OnConflict, SealingSecret},
    clock::SystemClock,
    config::SealingSource,
    daemon::read_sealing_secret,
};

/// The key directory and how it is sealed.
#[derive(Debug, Args)]
pub(crate) struct DirArgs {
    /// The key directory (no kmsd may be serving it).
    #[arg(long)]
    key_dir: PathBuf,
    /// The directory's sealing passphrase file, if it is sealed with one.
    #[arg(long, conflicts_with = "sealing_key_file")]
    sealing_passphrase_file: Option<PathBuf>,
    /// The directory's sealing key file, if it is sealed with one.
    #[arg(long)]
    sealing_key_file: Option<PathBuf>,
}

/// The secret the bundle is sealed under.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct BackupSecretArgs {
    /// A file holding the backup passphrase (at least 16 bytes; a final
    /// newline is ignored). Stretched with Argon2id.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
    /// A file of at least 32 random bytes.
    #[arg(long)]
    backup_key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    #[command(flatten)]
    dir: DirArgs,
    #[command(flatten)]
    secret: BackupSecretArgs,
    /// Where to write the bundle (created with mode 0600; must not exist).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    #[command(flatten)]
    dir: DirArgs,
    #[command(flatten)]
    secret: BackupSecretArgs,
    /// The bundle to restore.
    #[arg(long)]
    bundle: PathBuf,
    /// Verify the bundle and report what would be restored; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// A key that exists here with other material or versions: `fail`
    /// restores nothing, `skip` keeps it and restores the rest. Identical
    /// keys are always left alone.
    #[arg(long, default_value = "fail")]
    on_conflict: String,
}

impl DirArgs {
    fn open(&self) -> anyhow::Result<LocalBackend> {
        let sealing = match (&self.sealing_passphrase_file, &self.sealing_key_file) {
            (Some(path), _) => Some(SealingSource::PassphraseFile(path.clone())),
            (None, Some(path)) => Some(SealingSource::KeyFile(path.clone())),
            (None, None) => None,
        };
        let sealing = sealing.as_ref().map(read_sealing_secret).transpose()?;
        let config = LocalConfig {
            key_dir: self.key_dir.clone(),
            sealing,
        };
        LocalBackend::open(config, Arc::new(SystemClock)).with_context(|| {
            format!(
                "cannot open {} (if a kmsd serves it, use POST /kms/backup or /kms/restore on its admin API)",
                self.key_dir.display()
            )
        })
    }
}

impl BackupSecretArgs {
    fn read(&self) -> anyhow::Result<SealingSecret> {
        let source = match (&self.passphrase_file, &self.backup_key_file) {
            (Some(path), _) => SealingSource::PassphraseFile(path.clone()),
            (None, Some(path)) => SealingSource::KeyFile(path.clone()),
            (None, None) => anyhow::bail!("give --passphrase-file or --backup-key-file"),
        };
        Ok(read_sealing_secret(&source)?)
    }
}

#[derive(Serialize)]
struct BackupJson {
    bundle: String,
    bytes: usize,
}

pub(crate) async fn run_backup(args: BackupArgs) -> anyhow::Result<()> {
    let secret = args.secret.read()?;
    let backend = args.dir.open()?;
    let bundle = backend.backup(secret).await?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    file.write_all(&bundle)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    output::print_json(&BackupJson {
        bundle: args.out.display().to_string(),
        bytes: bundle.len(),
    })
}

pub(crate) async fn run_restore(args: RestoreArgs) -> anyhow::Result<()> {
    let on_conflict = OnConflict::parse(&args.on_conflict)?;
    let bundle = std::fs::read(&args.bundle)
        .with_context(|| format!("cannot read {}", args.bundle.display()))?;
    let secret = args.secret.read()?;
    let backend = args.dir.open()?;
    let report = backend
        .restore(bundle, secret, args.dry_run, on_conflict)
        .await?;
    output::print_json(&report)
}
