//! Connection settings of the PostgreSQL/TimescaleDB adapters, built from the typed config, and
//! the pool's connector: TLS per `tls` ([`super::tls`]) and, when the URL is a
//! [`RefreshingSecret`] (`secrets.refresh_interval_secs` with a `file:`/`vault:` reference), the
//! URL read afresh for every new connection, so a rotated password applies without a restart
//! (connections already open keep working: PostgreSQL checks passwords at login only).

use std::time::Duration;

use cdc_config::{PgTlsConfig, RefreshingSecret};
use deadpool_postgres::{Connect, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;

use super::tls::{MakeRustlsConnect, client_config, ssl_mode};
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
    pub tls: PgTlsConfig,
    /// When set, each new connection takes the URL's current value from here (`url` is its
    /// value at start).
    pub url_source: Option<RefreshingSecret>,
    /// Where these settings come from in `pipeline.yaml` (e.g. `sinks.postgres.destination`),
    /// named in errors.
    pub config_key: String,
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
            tls: PgTlsConfig::default(),
            url_source: None,
            config_key: "postgres destination".to_owned(),
        }
    }

    /// The connection config of a URL with these settings' overrides applied.
    fn connection_config(&self, url: &SecretString) -> Result<tokio_postgres::Config, Error> {
        let mut cfg: tokio_postgres::Config =
            url.expose_secret().parse().map_err(|_| Error::Config {
                reason: format!(
                    "{}.url: the PostgreSQL URL does not parse (value not shown)",
                    self.config_key
                ),
            })?;
        self.apply_overrides(&mut cfg);
        Ok(cfg)
    }

    /// Where the destination is, for messages: `host:port/database` of the URL (with the
    /// `database` override), never its user or password. Empty when the URL does not parse.
    pub fn address(&self) -> String {
        let Ok(cfg) = self.connection_config(&self.url) else {
            return String::new();
        };
        let hosts: Vec<String> = cfg
            .get_hosts()
            .iter()
            .zip(cfg.get_ports().iter().chain(std::iter::repeat(&5432)))
            .map(|(h, port)| match h {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
            })
            .collect();
        format!("{}/{}", hosts.join(","), cfg.get_dbname().unwrap_or(""))
    }

    fn apply_overrides(&self, cfg: &mut tokio_postgres::Config) {
        if let Some(db) = &self.database {
            cfg.dbname(db);
        }
        cfg.connect_timeout(Duration::from_millis(self.connect_timeout_ms));
        cfg.options(format!(
            "-c statement_timeout={}",
            self.statement_timeout_ms
        ));
        cfg.application_name("cdc-sink");
        cfg.ssl_mode(ssl_mode(self.tls.mode));
    }

    /// Builds the pool (no connection is opened until first use). Fails when the URL does not
    /// parse or the TLS settings are unusable (e.g. an unreadable `ca_file`), naming the key.
    pub fn pool(&self) -> Result<Pool, Error> {
        let cfg = self.connection_config(&self.url)?;
        let tls = MakeRustlsConnect::new(client_config(
            &self.tls,
            &format!("{}.tls", self.config_key),
        )?);
        let connect = PgConnect {
            settings: self.clone(),
            tls,
        };
        let manager = Manager::from_connect(
            cfg,
            connect,
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
                reason: format!("{}: PostgreSQL pool: {e}", self.config_key),
            })
    }
}

/// Opens the pool's connections: TLS per the settings, URL from the refreshing secret if any.
struct PgConnect {
    settings: PgSettings,
    tls: MakeRustlsConnect,
}

type ConnectFuture<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<(tokio_postgres::Client, JoinHandle<()>), tokio_postgres::Error>,
            > + Send
            + 'a,
    >,
>;

impl Connect for PgConnect {
    fn connect(&self, pg_config: &tokio_postgres::Config) -> ConnectFuture<'_> {
        let cfg = match &self.settings.url_source {
            Some(source) => match self.settings.connection_config(&source.current()) {
                Ok(cfg) => cfg,
                Err(e) => {
                    // A rotated value that does not parse: keep the last one that did.
                    tracing::warn!(
                        reference = %source.reference(),
                        error = %e,
                        "Refreshed PostgreSQL URL does not parse; connecting with the previous one"
                    );
                    pg_config.clone()
                }
            },
            None => pg_config.clone(),
        };
        let tls = self.tls.clone();
        Box::pin(async move {
            let (client, connection) = cfg.connect(tls).await?;
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "PostgreSQL connection closed with an error");
                }
            });
            Ok((client, task))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_names_host_port_and_database_never_credentials() {
        let mut s = PgSettings::new(SecretString::from(
            "postgres://fake-user:fake-password@127.0.0.1:15432/warehouse".to_owned(),
        ));
        assert_eq!(s.address(), "127.0.0.1:15432/warehouse");
        s.database = Some("dw".to_owned());
        assert_eq!(s.address(), "127.0.0.1:15432/dw");
        assert!(!s.address().contains("fake"));
        let unparsable = PgSettings::new(SecretString::from("not a url".to_owned()));
        assert_eq!(unparsable.address(), "");
    }
}
