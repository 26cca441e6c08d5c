//! `cdcctl replay` (being written).

use std::path::Path;
use std::process::ExitCode;

/// Arguments of `cdcctl replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {}

/// Runs `cdcctl replay`.
pub async fn run(_config: &Path, _args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("cdcctl replay is not available in this build")
}
