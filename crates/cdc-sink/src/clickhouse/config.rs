//! The adapter's resolved settings (from `sinks.clickhouse.destination`), and the client built
//! from them. Building a client opens no connection.

use std::time::Duration;

use cdc_config::{ClickHouseDestinationConfig, ExposeSecret, SecretResolver, SecretString};

use super::error::Error;

/// Resolved ClickHouse settings.
#[derive(Debug, Clone)]
pub struct ClickHouseSettings {
    /// HTTP(S) URL without credentials.
    pub url: String,
    pub user: String,
    pub password: Option<SecretString>,
    /// Prepended to keyspace names to form database names.
    pub database_prefix: String,
    /// Table TTL on ingest time; `None` = keep forever.
    pub table_ttl_secs: Option<u64>,
    /// Deadline of one request.
    pub request_timeout: Duration,
}

impl ClickHouseSettings {
    /// Settings for a server at `url` with the defaults of the config file (tests, tools).
    pub fn for_url(url: impl Into<String>) -> ClickHouseSettings {
        ClickHouseSettings {
            url: url.into(),
            user: "default".into(),
            password: None,
            database_prefix: String::new(),
            table_ttl_secs: None,
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Resolves the config block (the password reference is read here, never logged).
    pub async fn from_config(
        config: &ClickHouseDestinationConfig,
        secrets: &SecretResolver,
    ) -> Result<ClickHouseSettings, Error> {
        let password = match &config.password {
            Some(r) => Some(r.resolve_with(secrets).await.map_err(|e| Error::Config {
                reason: format!("cannot resolve the ClickHouse password: {e}"),
            })?),
            None => None,
        };
        Ok(ClickHouseSettings {
            url: config.url.clone(),
            user: config.user.clone(),
            password,
            database_prefix: config.database_prefix.clone().unwrap_or_default(),
            table_ttl_secs: config.table_ttl_secs,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
        })
    }

    /// The database holding keyspace `keyspace`.
    pub fn database(&self, keyspace: &str) -> String {
        format!("{}{keyspace}", self.database_prefix)
    }

    /// An HTTP client (no compression: the payloads are RowBinary and the dev front refuses
    /// ClickHouse block compression).
    pub fn client(&self) -> clickhouse::Client {
        let mut client = clickhouse::Client::default()
            .with_url(self.url.clone())
            .with_user(self.user.clone())
            .with_compression(clickhouse::Compression::None)
            .with_setting(
                "max_execution_time",
                self.request_timeout.as_secs().max(1).to_string(),
            );
        if let Some(p) = &self.password {
            client = client.with_password(p.expose_secret());
        }
        client
    }
}
