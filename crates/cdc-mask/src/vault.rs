//! The token vault: a PostgreSQL schema of its own (`sql/001_token_vault.sql`). The masker writes
//! through [`TokenVault`] with a role that can only call `put_tokens` (idempotent: an existing
//! token adds no row) and cannot read plaintext; [`VaultReader`] reads with the reader role and
//! records every detokenization in `detokenize_audit`.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use regex::Regex;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use crate::Error;
use crate::strategy::VaultEntry;

const MIGRATION: &str = include_str!("../sql/001_token_vault.sql");
/// Serializes concurrent migrations (roles are cluster-wide).
const MIGRATION_LOCK: i64 = 0x7661_756c_7401;

static SCHEMA_NAME: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^[a-z_][a-z0-9_]{0,62}$").ok());

fn check_schema(schema: &str) -> Result<(), Error> {
    match SCHEMA_NAME.as_ref() {
        Some(re) if re.is_match(schema) => Ok(()),
        _ => Err(Error::BadKey {
            key_id: "masker.vault.schema".into(),
            reason: format!("vault schema `{schema}` must match [a-z_][a-z0-9_]{{0,62}}"),
        }),
    }
}

/// Where tokens go. Implementations must make `put` idempotent.
#[async_trait]
pub trait TokenVault: Send + Sync {
    /// Stores entries whose token is not stored yet; returns how many were new.
    async fn put(&self, entries: &[VaultEntry]) -> Result<u64, Error>;
    /// Checks the vault is reachable (for `/readyz`, called from a background task).
    async fn ping(&self) -> Result<(), Error>;
}

async fn connect(url: &str, statement_timeout: Duration) -> Result<Client, Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|source| Error::Vault {
            op: "connect",
            source,
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "Token vault connection ended");
        }
    });
    client
        .batch_execute(&format!(
            "SET statement_timeout = {}",
            statement_timeout.as_millis()
        ))
        .await
        .map_err(|source| Error::Vault {
            op: "configure session",
            source,
        })?;
    Ok(client)
}

/// Creates or updates the vault schema, roles and grants. Needs an owner (e.g. superuser) URL.
pub async fn migrate(admin_url: &str, schema: &str) -> Result<(), Error> {
    check_schema(schema)?;
    let client = connect(admin_url, Duration::from_secs(60)).await?;
    let sql = format!(
        "BEGIN; SELECT pg_advisory_xact_lock({MIGRATION_LOCK}); {} COMMIT;",
        MIGRATION.replace("{{schema}}", schema)
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(|source| Error::Vault {
            op: "migrate",
            source,
        })
}

/// The masker's vault client (writer role). Reconnects lazily after a lost connection.
pub struct PgTokenVault {
    url: String,
    schema: String,
    statement_timeout: Duration,
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PgTokenVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTokenVault")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PgTokenVault {
    /// A client for `schema` at `url` (the writer role); connects on first use.
    pub fn new(url: String, schema: String, statement_timeout: Duration) -> Result<Self, Error> {
        check_schema(&schema)?;
        Ok(PgTokenVault {
            url,
            schema,
            statement_timeout,
            client: Mutex::new(None),
        })
    }

    async fn with_client<T>(
        &self,
        f: impl AsyncFnOnce(&Client) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(connect(&self.url, self.statement_timeout).await?);
        }
        let Some(client) = guard.as_ref() else {
            return Err(Error::UnknownToken);
        };
        let result = f(client).await;
        if matches!(&result, Err(Error::Vault { source, .. }) if source.is_closed()) {
            *guard = None;
        }
        result
    }
}

#[async_trait]
impl TokenVault for PgTokenVault {
    async fn put(&self, entries: &[VaultEntry]) -> Result<u64, Error> {
        if entries.is_empty() {
            return Ok(0);
        }
        let tokens: Vec<&str> = entries.iter().map(|e| e.token.as_str()).collect();
        let key_ids: Vec<&str> = entries.iter().map(|e| e.key_id.as_str()).collect();
        let nonces: Vec<&[u8]> = entries.iter().map(|e| e.nonce.as_slice()).collect();
        let cts: Vec<&[u8]> = entries.iter().map(|e| e.ciphertext.as_slice()).collect();
        let sql = format!("SELECT {}.put_tokens($1, $2, $3, $4)", self.schema);
        self.with_client(async |c| {
            let row = c
                .query_one(&sql, &[&tokens, &key_ids, &nonces, &cts])
                .await
                .map_err(|source| Error::Vault {
                    op: "put tokens",
                    source,
                })?;
            let n: i32 = row.get(0);
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn ping(&self) -> Result<(), Error> {
        self.with_client(async |c| {
            c.simple_query("SELECT 1")
                .await
                .map(|_| ())
                .map_err(|source| Error::Vault { op: "ping", source })
        })
        .await
    }
}

/// Reads tokens back (reader role only) and audits every read in the database.
pub struct VaultReader {
    client: Client,
    schema: String,
}

impl VaultReader {
    /// Connects with the reader role's URL.
    pub async fn connect(url: &str, schema: &str) -> Result<Self, Error> {
        check_schema(schema)?;
        Ok(VaultReader {
            client: connect(url, Duration::from_secs(30)).await?,
            schema: schema.to_owned(),
        })
    }

    /// The stored entry of `token`; writes an audit row first (no audit, no plaintext).
    pub async fn fetch(&self, token: &str, reason: &str) -> Result<VaultEntry, Error> {
        self.client
            .execute(
                &format!(
                    "INSERT INTO {}.detokenize_audit (token, reason) VALUES ($1, $2)",
                    self.schema
                ),
                &[&token, &reason],
            )
            .await
            .map_err(|source| Error::Vault {
                op: "audit detokenize",
                source,
            })?;
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT key_id, nonce, ciphertext FROM {}.tokens WHERE token = $1",
                    self.schema
                ),
                &[&token],
            )
            .await
            .map_err(|source| Error::Vault {
                op: "read token",
                source,
            })?
            .ok_or(Error::UnknownToken)?;
        let nonce_bytes: Vec<u8> = row.get(1);
        let nonce: [u8; 12] = nonce_bytes
            .try_into()
            .map_err(|_| Error::Crypto { op: "decrypt" })?;
        Ok(VaultEntry {
            token: token.to_owned(),
            key_id: row.get(0),
            nonce,
            ciphertext: row.get(2),
        })
    }
}
