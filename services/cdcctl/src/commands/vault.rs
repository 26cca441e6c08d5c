//! `cdcctl vault migrate`: creates (or brings up to date) the token vault schema named by
//! `masker.vault.schema`, with its writer and reader roles, through an owner role of the vault
//! database. Idempotent; run it once before the first masker that tokenizes starts.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use cdc_config::{ExposeSecret, SecretRef, SecretResolver};

/// `cdcctl vault` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum VaultCommand {
    /// Create or update the token vault schema of `masker.vault.schema` (idempotent).
    ///
    /// Needs an owner (admin) role of the vault database, not the masker's writer role. The
    /// writer and reader roles are created with development passwords when missing; in
    /// production create them beforehand and this only grants.
    Migrate(MigrateArgs),
}

/// Arguments of `cdcctl vault migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// PostgreSQL URL of an owner role of the vault database, as a secret reference
    /// (env:NAME, file:/path, vault:mount/path#field).
    #[arg(
        long,
        env = "CDC_TOKEN_VAULT_ADMIN_URL_REF",
        default_value = "env:CDC_TOKEN_VAULT_ADMIN_URL"
    )]
    pub admin_url: String,
    /// Schema to migrate; default: masker.vault.schema of the configuration.
    #[arg(long)]
    pub schema: Option<String>,
}

/// Runs `cdcctl vault ...`.
pub async fn run(config_path: &Path, cmd: &VaultCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        VaultCommand::Migrate(args) => migrate(config_path, args).await,
    }
}

async fn migrate(config_path: &Path, args: &MigrateArgs) -> anyhow::Result<ExitCode> {
    let config = cdc_config::load(config_path)
        .with_context(|| format!("loading {}", config_path.display()))?;
    let schema = match (&args.schema, &config.masker.vault) {
        (Some(s), _) => s.clone(),
        (None, Some(v)) => v.schema.clone(),
        (None, None) => anyhow::bail!(
            "{}: masker.vault is not configured and --schema is not given",
            config_path.display()
        ),
    };
    let resolver = SecretResolver::new(&config.secrets);
    let url_ref: SecretRef = args.admin_url.parse().context("--admin-url")?;
    let url = url_ref
        .resolve_with(&resolver)
        .await
        .context("--admin-url")?;
    cdc_mask::migrate(url.expose_secret(), &schema)
        .await
        .with_context(|| format!("migrating token vault schema {schema}"))?;
    println!("token vault schema {schema} is up to date");
    Ok(ExitCode::SUCCESS)
}
