//! `cdcctl audit` (being written).

use std::path::Path;
use std::process::ExitCode;

/// Arguments of `cdcctl audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {}

/// Runs `cdcctl audit`.
pub async fn run(_config: &Path, _args: &AuditArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("cdcctl audit is not available in this build")
}
