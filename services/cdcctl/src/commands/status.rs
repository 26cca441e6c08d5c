//! `cdcctl status` (being written).

use std::path::Path;
use std::process::ExitCode;

/// Arguments of `cdcctl status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {}

/// Runs `cdcctl status`.
pub async fn run(_config: &Path, _args: &StatusArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("cdcctl status is not available in this build")
}
