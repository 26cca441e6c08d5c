//! cdcctl: the operator's command-line tool (status, load, verify, dlq, replay, audit, detokenize).
//! Only `detokenize` exists so far.

use std::path::PathBuf;

use anyhow::Context;
use cdc_config::{ExposeSecret, SecretRef, SecretResolver};
use cdc_mask::{KeyRing, VaultReader};
use clap::{Parser, Subcommand};

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
    /// Print the original value of a `tok_...` token. Needs the vault-reader credential (the
    /// masker's writer role cannot read tokens); every call is audited in the vault and on stderr.
    Detokenize {
        /// The token, e.g. `tok_0123...`.
        token: String,
        /// Why the value is needed (recorded in the audit trail).
        #[arg(long)]
        reason: String,
        /// PostgreSQL URL of the vault-reader role, as a secret reference (env:, file:, vault:).
        #[arg(
            long,
            env = "CDC_TOKEN_VAULT_READER_URL_REF",
            default_value = "env:CDC_TOKEN_VAULT_READER_URL"
        )]
        reader_url: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Detokenize {
            token,
            reason,
            reader_url,
        } => detokenize(&cli.config, &token, &reason, &reader_url).await,
    }
}

async fn detokenize(
    config_path: &std::path::Path,
    token: &str,
    reason: &str,
    reader_url: &str,
) -> anyhow::Result<()> {
    let config = cdc_config::load(config_path)
        .with_context(|| format!("loading {}", config_path.display()))?;
    let vault =
        config.masker.vault.as_ref().with_context(|| {
            format!("{}: masker.vault is not configured", config_path.display())
        })?;
    let resolver = SecretResolver::new(&config.secrets);
    let url_ref: SecretRef = reader_url.parse().context("--reader-url")?;
    let url = url_ref
        .resolve_with(&resolver)
        .await
        .context("--reader-url")?;
    let reader = VaultReader::connect(url.expose_secret(), &vault.schema).await?;
    let entry = reader.fetch(token, reason).await?;
    // The row names its encryption key id: old ids stay resolvable after a rotation.
    let key_ref = config.masker.keys.get(&entry.key_id).with_context(|| {
        format!(
            "{}: masker.keys.{} is not configured",
            config_path.display(),
            entry.key_id
        )
    })?;
    let key = key_ref
        .resolve_with(&resolver)
        .await
        .with_context(|| format!("masker.keys.{}", entry.key_id))?;
    let mut ring = KeyRing::new();
    ring.insert(
        entry.key_id.clone(),
        key.expose_secret().as_bytes().to_vec(),
    );
    let plaintext = cdc_mask::strategy::open_with(&ring, &entry)?;
    let audit = serde_json::json!({
        "audit": "detokenize",
        "ts": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "token": token,
        "key_id": entry.key_id,
        "os_user": std::env::var("USER").unwrap_or_default(),
        "reason": reason,
    });
    eprintln!("{audit}");
    println!("{}", String::from_utf8_lossy(&plaintext));
    Ok(())
}
