//! `cdcctl detokenize`: the original value of a token, through the vault-reader role, audited.

use anyhow::Context;
use cdc_config::{ExposeSecret, SecretRef, SecretResolver};
use cdc_mask::{KeyRing, VaultReader};

/// Arguments of `cdcctl detokenize`.
#[derive(Debug, clap::Args)]
pub struct DetokenizeArgs {
    /// The token, e.g. `tok_0123...`.
    pub token: String,
    /// Why the value is needed (recorded in the audit trail).
    #[arg(long)]
    pub reason: String,
    /// PostgreSQL URL of the vault-reader role, as a secret reference (env:, file:, vault:).
    #[arg(
        long,
        env = "CDC_TOKEN_VAULT_READER_URL_REF",
        default_value = "env:CDC_TOKEN_VAULT_READER_URL"
    )]
    pub reader_url: String,
}

/// Runs `cdcctl detokenize`.
pub async fn run(config_path: &std::path::Path, args: &DetokenizeArgs) -> anyhow::Result<()> {
    detokenize(config_path, &args.token, &args.reason, &args.reader_url).await
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
