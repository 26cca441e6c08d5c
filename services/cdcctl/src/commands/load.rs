//! `cdcctl load` (being written).

use std::path::Path;
use std::process::ExitCode;

/// Arguments of `cdcctl load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {}

/// Runs `cdcctl load`.
pub async fn run(_config: &Path, _args: &LoadArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("cdcctl load is not available in this build")
}
