//! Connection settings of the PostgreSQL/TimescaleDB adapters, built from the typed config.

use std::time::Duration;

use cdc_config::TlsMode;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret, SecretString};

use crate::error::Error;

/// Resolved connection settings (the URL is a secret: never logged).
#[derive(Debug, Clone)]
pub struct PgSettings {
    pub url: SecretString,
    /// Overrides the database named in the URL.
    pub database: Option<String>,
    pub pool_size: usize,
    pub connect_timeout_ms: u64,
    pub statement_timeout_ms: u64,
    pub tls: TlsMode,
}

impl PgSettings {
    /// Settings with defaults for a URL.
    pub fn new(url: SecretString) -> Self {
        PgSettings {
            url,
            database: None,
            pool_size: 8,
            connect_timeout_ms: 10_000,
            statement_timeout_ms: 30_000,
            tls: TlsMode::Prefer,
        }
    }

    /// Builds the pool (no connection is opened until first use).
    pub fn pool(&self) -> Result<Pool, Error> {
        let mut cfg: tokio_postgres::Config =
            self.url
                .expose_secret()
                .parse()
                .map_err(|_| Error::Config {
                    reason: "the PostgreSQL URL does not parse (value not shown)".into(),
                })?;
        if let Some(db) = &self.database {
            cfg.dbname(db);
        }
        cfg.connect_timeout(Duration::from_millis(self.connect_timeout_ms));
        cfg.options(format!(
            "-c statement_timeout={}",
            self.statement_timeout_ms
        ));
        cfg.application_name("cdc-sink");
        if self.tls == TlsMode::Require {
            // This build links no TLS connector for PostgreSQL yet.
            return Err(Error::Config {
                reason: "tls: require is not supported by this build (use disable or prefer)"
                    .into(),
            });
        }
        let manager = Manager::from_config(
            cfg,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(self.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_millis(self.connect_timeout_ms)))
            .create_timeout(Some(Duration::from_millis(self.connect_timeout_ms)))
            .build()
            .map_err(|e| Error::Config {
                reason: format!("PostgreSQL pool: {e}"),
            })
    }
}
