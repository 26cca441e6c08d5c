//! cdcctl: the operator's command-line tool. One module per command under `commands/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

use commands::{audit, dashboard, detokenize, dlq, load, replay, status, vault, verify};

#[derive(Debug, Parser)]
#[command(name = "cdcctl", version, about = "Operate the cdc-pipeline")]
struct Cli {
    /// Pipeline configuration file.
    #[arg(
        long,
        env = "CDC_CONFIG",
        default_value = "/etc/cdc/pipeline.yaml",
        global = true
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Health, lag, throughput, errors, backlog and DLQ count of every stage and destination.
    Status(status::StatusArgs),
    /// Generate load on Cassandra at a target rate (inserts, updates, deletes).
    Load(load::LoadArgs),
    /// Compare Cassandra with each destination; non-zero exit on any difference.
    Verify(verify::VerifyArgs),
    /// Scan every destination for unmasked PII; non-zero exit on findings.
    Audit(audit::AuditArgs),
    /// List, show and replay dead letters.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Serve the live web dashboard (lag, throughput, errors, backlog, latency, health).
    Dashboard(dashboard::DashboardArgs),
    /// Rewind one destination's stored offsets (other destinations untouched).
    Replay(replay::ReplayArgs),
    /// Print the original value of a `tok_...` token. Needs the vault-reader credential (the
    /// masker's writer role cannot read tokens); every call is audited in the vault and on stderr.
    Detokenize(detokenize::DetokenizeArgs),
    /// Token vault administration (schema migration).
    #[command(subcommand)]
    Vault(vault::VaultCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Status(args) => status::run(&cli.config, args).await,
        Command::Load(args) => load::run(&cli.config, args).await,
        Command::Verify(args) => verify::run(&cli.config, args).await,
        Command::Audit(args) => audit::run(&cli.config, args).await,
        Command::Dlq(cmd) => dlq::run(&cli.config, cmd).await,
        Command::Replay(args) => replay::run(&cli.config, args).await,
        Command::Dashboard(args) => dashboard::run(&cli.config, args).await,
        Command::Vault(cmd) => vault::run(&cli.config, cmd).await,
        Command::Detokenize(args) => detokenize::run(&cli.config, args)
            .await
            .map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("cdcctl: {err:#}");
            ExitCode::from(2)
        }
    }
}
