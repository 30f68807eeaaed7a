//! The command line: `kmsd serve` runs the daemon; every other subcommand
//! is a client of a running kmsd (docs/cli.md).

mod admin;
mod aliases;
mod backup;
mod bench;
mod client;
mod cluster;
mod import;
mod keys;
mod output;
mod rotation;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status for configuration errors (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// kmsd: key management daemon for S3-compatible object storage.
#[derive(Debug, Parser)]
#[command(name = "kmsd", version, about, long_about = None)]
pub struct Cli {
    /// Where the client subcommands reach kmsd (ignored by `serve`).
    #[command(flatten)]
    client: client::ClientArgs,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    Serve(serve::ServeArgs),
    /// Manage master keys on a running kmsd.
    Key(keys::KeyArgs),
    /// Manage aliases (alias/<name>) on a running kmsd.
    Alias(aliases::AliasArgs),
    /// Print a fresh data key (plaintext and sealed) as JSON.
    Datakey(keys::DatakeyArgs),
    /// Open a sealed blob and print its plaintext (base64) as JSON.
    Decrypt(keys::DecryptArgs),
    /// Print the status of a running kmsd as JSON.
    Status,
    /// Configure, start, stop or reconfigure a running kmsd.
    Admin(admin::AdminArgs),
    /// Load-test a running kmsd (or OpenBao directly, for comparison).
    Bench(bench::BenchArgs),
    /// Check that the sidecars of one deployment share one configuration.
    Cluster(cluster::ClusterArgs),
}

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => return serve::run(args),
        Command::Key(args) => client::block_on(keys::run_key(cli.client, args)),
        Command::Alias(args) => client::block_on(aliases::run_alias(cli.client, args)),
        Command::Datakey(args) => client::block_on(keys::run_datakey(cli.client, args)),
        Command::Decrypt(args) => client::block_on(keys::run_decrypt(cli.client, args)),
        Command::Status => client::block_on(client::run_status(cli.client)),
        Command::Admin(args) => client::block_on(admin::run(cli.client, args)),
        Command::Bench(args) => bench::run(cli.client, args),
        Command::Cluster(args) => return cluster::run(cli.client, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `kmsd status | head -5`: the reader has what it wanted.
        Err(e) if output::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            use std::io::Write as _;
            // eprintln! would panic if stderr is a closed pipe too.
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
