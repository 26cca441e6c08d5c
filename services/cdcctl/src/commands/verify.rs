//! `cdcctl verify` (being written).

use std::path::Path;
use std::process::ExitCode;

/// Arguments of `cdcctl verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {}

/// Runs `cdcctl verify`.
pub async fn run(_config: &Path, _args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("cdcctl verify is not available in this build")
}
