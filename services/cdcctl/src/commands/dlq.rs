//! `cdcctl dlq` (being written).

use std::path::Path;
use std::process::ExitCode;

/// `cdcctl dlq` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// List dead letters.
    List,
}

/// Runs `cdcctl dlq ...`.
pub async fn run(_config: &Path, _cmd: &DlqCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("cdcctl dlq is not available in this build")
}
