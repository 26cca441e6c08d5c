//! The TimescaleDB destination: the PostgreSQL adapter (same wire code, same layout) plus a
//! hypertable `ks.t_changes` holding every applied change, partitioned by change writetime and
//! unique on key + writetime + op + time so replays insert nothing.
//!
//! With a time column configured for a table (`time_columns: {ks.t: col}`), its current-state
//! table `ks.t_state` is a hypertable partitioned by that column too (`chunk_interval_secs`).
//! TimescaleDB needs every unique key of a hypertable to include its time column, and the state
//! table must keep exactly one row per Cassandra primary key for the merge to converge, so the
//! time column has to be one of the table's primary-key columns (partition or clustering key) of
//! type `timestamp` or `date`; then the primary key already includes it. Anything else is refused
//! with an error naming `sinks.timescaledb.destination.time_columns.<ks.t>`.

use std::collections::BTreeMap;

use cdc_typemap::postgres::{PgType, pg_type};
use deadpool_postgres::Transaction;

use crate::destination::{ColumnDef, TableShape};
use crate::error::Error;
use crate::postgres::ddl::ChangesLayout;
use crate::postgres::naming::state_table;
use crate::postgres::{PgSettings, PostgresDestination};

/// Hypertable options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimescaleOptions {
    pub chunk_interval_secs: u64,
    pub retention_secs: Option<u64>,
    /// `keyspace.table` → time column of its current-state hypertable.
    pub time_columns: BTreeMap<String, String>,
}

impl Default for TimescaleOptions {
    fn default() -> Self {
        TimescaleOptions {
            chunk_interval_secs: 86_400,
            retention_secs: None,
            time_columns: BTreeMap::new(),
        }
    }
}

/// Builds the TimescaleDB adapter (named `timescaledb`).
pub fn timescale_destination(
    settings: &PgSettings,
    options: &TimescaleOptions,
) -> Result<PostgresDestination, Error> {
    PostgresDestination::with_layout(
        "timescaledb",
        settings,
        ChangesLayout {
            enabled: true,
            chunk_interval_secs: options.chunk_interval_secs,
            retention_secs: options.retention_secs,
            state_time_columns: options.time_columns.clone(),
        },
    )
}

/// The configured time column of `shape`'s state table, checked against the table: `None`
/// when none is configured; an error naming the config key when it is not a primary-key
/// column of type `timestamp` or `date`.
pub fn state_time_column<'a>(
    shape: &'a TableShape,
    layout: &ChangesLayout,
) -> Result<Option<&'a ColumnDef>, Error> {
    let table = format!("{}.{}", shape.keyspace, shape.table);
    let Some(name) = layout.state_time_columns.get(&table) else {
        return Ok(None);
    };
    let key = format!("sinks.timescaledb.destination.time_columns.{table}");
    let Some(column) = shape
        .partition_key()
        .into_iter()
        .chain(shape.clustering_key())
        .find(|c| &c.name == name)
    else {
        let what = if shape.columns.iter().any(|c| &c.name == name) {
            "is not a primary-key column"
        } else {
            "is not a column"
        };
        return Err(Error::Config {
            reason: format!(
                "{key}: `{name}` {what} of {table}; the state table's unique key must include \
                 the time column, so only a partition or clustering key column of type \
                 timestamp or date can partition it"
            ),
        });
    };
    let t = pg_type(&column.cql_type);
    if !matches!(t, PgType::Timestamptz | PgType::Date) {
        return Err(Error::Config {
            reason: format!(
                "{key}: `{name}` of {table} is {} ({}), not a timestamp or date column",
                column.cql_type,
                t.sql_name()
            ),
        });
    }
    Ok(Some(column))
}

/// `create_hypertable` of the state table partitioned by `column` (existing rows migrate).
pub fn create_state_hypertable(
    shape: &TableShape,
    column: &str,
    chunk_interval_secs: u64,
) -> String {
    let rel = state_table(&shape.keyspace, &shape.table);
    format!(
        "SELECT create_hypertable('{}', by_range('{}', INTERVAL '{} seconds'), \
         if_not_exists => true, migrate_data => true)",
        rel.replace('\'', "''"),
        column.replace('\'', "''"),
        chunk_interval_secs.max(60)
    )
}

/// Makes `shape`'s state table a hypertable when a time column is configured for it (inside
/// the adapter's DDL transaction; idempotent).
pub async fn ensure_state_hypertable(
    tx: &Transaction<'_>,
    shape: &TableShape,
    layout: &ChangesLayout,
) -> Result<(), Error> {
    let Some(column) = state_time_column(shape, layout)? else {
        return Ok(());
    };
    let rel = state_table(&shape.keyspace, &shape.table);
    tx.execute(
        &create_state_hypertable(shape, &column.name, layout.chunk_interval_secs),
        &[],
    )
    .await
    .map_err(|source| Error::Postgres {
        op: "create_hypertable",
        relation: rel,
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use cdc_model::{ClusteringOrder, ColumnKind, CqlType};

    use super::*;

    fn shape() -> TableShape {
        let col = |name: &str, cql_type: CqlType, kind: ColumnKind| ColumnDef {
            name: name.into(),
            cql_type,
            kind,
        };
        TableShape {
            keyspace: "ks".into(),
            table: "t".into(),
            dropped: Default::default(),
            columns: vec![
                col("id", CqlType::Int, ColumnKind::PartitionKey { position: 0 }),
                col(
                    "ts",
                    CqlType::Timestamp,
                    ColumnKind::Clustering {
                        position: 0,
                        order: ClusteringOrder::Asc,
                    },
                ),
                col("v", CqlType::Text, ColumnKind::Regular),
                col("at", CqlType::Timestamp, ColumnKind::Regular),
            ],
        }
    }

    fn layout(column: &str) -> ChangesLayout {
        ChangesLayout {
            enabled: true,
            chunk_interval_secs: 3_600,
            retention_secs: None,
            state_time_columns: [("ks.t".to_owned(), column.to_owned())].into(),
        }
    }

    #[test]
    fn a_key_time_column_partitions_the_state_table() {
        let s = shape();
        let c = state_time_column(&s, &layout("ts")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.map(|c| c.name.as_str()), Some("ts"));
        assert_eq!(
            create_state_hypertable(&s, "ts", 3_600),
            "SELECT create_hypertable('\"ks\".\"t_state\"', by_range('ts', INTERVAL '3600 seconds'), if_not_exists => true, migrate_data => true)"
        );
        let none =
            state_time_column(&s, &ChangesLayout::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(none.is_none());
    }

    #[test]
    fn other_columns_are_refused_naming_the_key() {
        let s = shape();
        for (column, expected) in [
            ("at", "is not a primary-key column"),
            ("nope", "is not a column"),
            ("id", "not a timestamp or date column"),
        ] {
            let err = state_time_column(&s, &layout(column))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.contains("sinks.timescaledb.destination.time_columns.ks.t")
                    && err.contains(expected),
                "{column}: {err}"
            );
        }
    }
}
