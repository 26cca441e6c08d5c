//! Read access to the three warehouses of the local stack, for end-to-end assertions: counts and
//! rows of the live-row relation `ks.t` (the naming contract of the README), arbitrary queries with
//! every value rendered as text, and a scan of every relation of a keyspace for strings that must
//! never land there (unmasked PII).
//!
//! PostgreSQL and TimescaleDB answer through `simple_query` (text for every type); ClickHouse
//! through its HTTP interface in `JSONCompactEachRow` (strings as they are, NULL as `None`, numbers
//! and nested values as JSON text; 64-bit integers arrive quoted, as ClickHouse sends them).

use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::StackEnv;
use crate::pipeline::Destination;

/// One row, each value as text (`None` for NULL).
pub type TextRow = Vec<Option<String>>;

/// Connections to PostgreSQL (`warehouse`), TimescaleDB (`timeseries`) and ClickHouse.
pub struct Warehouses {
    postgres: Client,
    timescale: Client,
    clickhouse_url: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Warehouses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouses")
            .field("clickhouse_url", &self.clickhouse_url)
            .finish_non_exhaustive()
    }
}

async fn pg_connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", redact(url)));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
        _ => url.to_owned(),
    }
}

/// Quotes a PostgreSQL identifier.
fn pg_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes a ClickHouse identifier.
fn ch_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "\\`"))
}

impl Warehouses {
    /// Connects to the stack's three warehouses.
    ///
    /// # Panics
    /// When PostgreSQL or TimescaleDB cannot be reached.
    pub async fn connect(env: &StackEnv) -> Warehouses {
        Warehouses {
            postgres: pg_connect(&env.postgres_url).await,
            timescale: pg_connect(&env.timescale_url).await,
            clickhouse_url: env.clickhouse_url.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_else(|e| panic!("http client: {e}")),
        }
    }

    /// Runs `sql` (no `FORMAT` clause for ClickHouse) and returns its rows as text.
    pub async fn query(&self, d: Destination, sql: &str) -> Result<Vec<TextRow>, String> {
        match d {
            Destination::Postgres => pg_query(&self.postgres, sql).await,
            Destination::Timescaledb => pg_query(&self.timescale, sql).await,
            Destination::Clickhouse => self.ch_query(sql).await,
        }
    }

    async fn ch_query(&self, sql: &str) -> Result<Vec<TextRow>, String> {
        let body = format!("{sql}\nFORMAT JSONCompactEachRow");
        let resp = self
            .http
            .post(&self.clickhouse_url)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("ClickHouse at {}: {e}", self.clickhouse_url))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| format!("ClickHouse response: {e}"))?;
        if !status.is_success() {
            return Err(format!("ClickHouse {status}: {}", text.trim()));
        }
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let values = serde_json::from_str::<Vec<serde_json::Value>>(l)
                    .map_err(|e| format!("ClickHouse row {l:?}: {e}"))?;
                Ok(values
                    .into_iter()
                    .map(|v| match v {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(s),
                        other => Some(other.to_string()),
                    })
                    .collect())
            })
            .collect()
    }

    /// Rows of the live-row relation `ks.table` (`ks.table` in PostgreSQL/TimescaleDB, the view
    /// `ks.table` in ClickHouse); `None` while the relation does not exist.
    pub async fn count(&self, d: Destination, ks: &str, table: &str) -> Option<u64> {
        let sql = match d {
            Destination::Clickhouse => {
                format!("SELECT count() FROM {}.{}", ch_ident(ks), ch_ident(table))
            }
            _ => format!("SELECT count(*) FROM {}.{}", pg_ident(ks), pg_ident(table)),
        };
        let rows = self.query(d, &sql).await.ok()?;
        rows.first()?.first()?.as_deref()?.parse().ok()
    }

    /// Selected columns of `ks.table` ordered by `order_by`, as text. Column expressions are passed
    /// through (quote names yourself if they need it).
    pub async fn rows(
        &self,
        d: Destination,
        ks: &str,
        table: &str,
        columns: &[&str],
        order_by: &str,
    ) -> Result<Vec<TextRow>, String> {
        let relation = match d {
            Destination::Clickhouse => format!("{}.{}", ch_ident(ks), ch_ident(table)),
            _ => format!("{}.{}", pg_ident(ks), pg_ident(table)),
        };
        self.query(
            d,
            &format!(
                "SELECT {} FROM {relation} ORDER BY {order_by}",
                columns.join(", ")
            ),
        )
        .await
    }

    /// Polls until `ks.table` holds exactly `want` rows in `d`, for at most `within`. Returns the
    /// last count seen (`None`: the relation never appeared).
    pub async fn wait_for_count(
        &self,
        d: Destination,
        ks: &str,
        table: &str,
        want: u64,
        within: Duration,
    ) -> Option<u64> {
        let deadline = Instant::now() + within;
        loop {
            let n = self.count(d, ks, table).await;
            if n == Some(want) || Instant::now() >= deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every relation (tables and views, including the hidden `_cdc_*` state tables and the
    /// TimescaleDB `_changes` hypertable) of keyspace `ks` in `d`, scanned whole for each needle.
    /// Returns `(relation, needle)` for every needle found. Needles are compared on the rows' text
    /// form, so a value in any column is found.
    pub async fn find_text(
        &self,
        d: Destination,
        ks: &str,
        needles: &[&str],
    ) -> Result<Vec<(String, String)>, String> {
        let relations: Vec<String> = match d {
            Destination::Clickhouse => self
                .ch_query(&format!(
                    "SELECT name FROM system.tables WHERE database = '{}'",
                    ks.replace('\'', "")
                ))
                .await?
                .into_iter()
                .filter_map(|r| r.into_iter().next().flatten())
                .collect(),
            _ => self
                .query(
                    d,
                    &format!(
                        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE n.nspname = '{}' AND c.relkind IN ('r', 'v', 'p', 'm')",
                        ks.replace('\'', "")
                    ),
                )
                .await?
                .into_iter()
                .filter_map(|r| r.into_iter().next().flatten())
                .collect(),
        };
        let mut found = Vec::new();
        for rel in relations {
            let sql = match d {
                Destination::Clickhouse => {
                    format!("SELECT * FROM {}.{}", ch_ident(ks), ch_ident(&rel))
                }
                _ => format!("SELECT t::text FROM {}.{} t", pg_ident(ks), pg_ident(&rel)),
            };
            let rows = self.query(d, &sql).await?;
            for needle in needles {
                let hit = rows.iter().flatten().flatten().any(|v| v.contains(needle));
                if hit {
                    found.push((rel.clone(), (*needle).to_owned()));
                }
            }
        }
        Ok(found)
    }
}

async fn pg_query(client: &Client, sql: &str) -> Result<Vec<TextRow>, String> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        })?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_urls_redacted() {
        assert_eq!(pg_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(ch_ident("t"), "`t`");
        assert_eq!(
            redact("postgres://cdc:secret@127.0.0.1:15432/warehouse"),
            "postgres://…@127.0.0.1:15432/warehouse"
        );
    }
}
