//! DDL of the PostgreSQL layout: created on first sight, columns added before the first event
//! that needs them, the live-row view rebuilt after every change. Pure SQL builders plus the one
//! async function that runs them under an advisory lock (several sink instances may race).
//!
//! State table `ks.t_state`: the Cassandra key columns (primary key = partition + clustering
//! key), then [`ROW_COLUMNS`], `_cdc_deleted` (no live cell and no live row marker, TTL aside) and
//! `_cdc_updated_at`, then per value column `c`: `c`, `_cdc_wt__c` (cell writetime, µs) and
//! `_cdc_exp__c` (cell expiry). A cell tombstone is a NULL value with its writetime.

use cdc_typemap::postgres::pg_type;

use super::naming::{
    ROW_COLUMNS, expiry_column, ident, live_view, partition_deletes_table, state_table,
    static_table, writetime_column,
};
use crate::destination::{ColumnDef, TableShape};

/// The smallest bigint, standing for "no tombstone".
pub const NO_WRITETIME: &str = "(-9223372036854775808)::bigint";

/// Options of the layout that differ between PostgreSQL and TimescaleDB.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangesLayout {
    /// Keep a `t_changes` hypertable of every applied change.
    pub enabled: bool,
    /// `chunk_time_interval` of created hypertables, seconds.
    pub chunk_interval_secs: u64,
    /// Retention on `t_changes`, seconds.
    pub retention_secs: Option<u64>,
}

fn column_type(c: &ColumnDef) -> &'static str {
    pg_type(&c.cql_type).sql_name()
}

/// `CREATE TABLE IF NOT EXISTS` of the state table (keys and hidden row columns only).
pub fn create_state_table(shape: &TableShape) -> String {
    let mut cols: Vec<String> = shape
        .partition_key()
        .into_iter()
        .chain(shape.clustering_key())
        .map(|c| format!("{} {} NOT NULL", ident(&c.name), column_type(c)))
        .collect();
    cols.extend(ROW_COLUMNS.iter().map(|(n, t)| format!("{n} {t}")));
    cols.push("_cdc_deleted boolean NOT NULL DEFAULT false".into());
    cols.push("_cdc_updated_at timestamptz NOT NULL DEFAULT now()".into());
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
        state_table(&shape.keyspace, &shape.table),
        cols.join(", "),
        key_names(shape).join(", ")
    )
}

/// `CREATE TABLE IF NOT EXISTS` of the static-column table (partition key and hidden columns).
pub fn create_static_table(shape: &TableShape) -> String {
    let pk = shape.partition_key();
    let mut cols: Vec<String> = pk
        .iter()
        .map(|c| format!("{} {} NOT NULL", ident(&c.name), column_type(c)))
        .collect();
    cols.extend(ROW_COLUMNS.iter().map(|(n, t)| format!("{n} {t}")));
    cols.push("_cdc_deleted boolean NOT NULL DEFAULT false".into());
    cols.push("_cdc_updated_at timestamptz NOT NULL DEFAULT now()".into());
    let names: Vec<String> = pk.iter().map(|c| ident(&c.name)).collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
        static_table(&shape.keyspace, &shape.table),
        cols.join(", "),
        names.join(", ")
    )
}

/// `CREATE TABLE IF NOT EXISTS` of the partition tombstones.
pub fn create_partition_deletes_table(shape: &TableShape) -> String {
    let pk = shape.partition_key();
    let cols: Vec<String> = pk
        .iter()
        .map(|c| format!("{} {} NOT NULL", ident(&c.name), column_type(c)))
        .collect();
    let names: Vec<String> = pk.iter().map(|c| ident(&c.name)).collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, _cdc_del_wt bigint NOT NULL, PRIMARY KEY ({}))",
        partition_deletes_table(&shape.keyspace, &shape.table),
        cols.join(", "),
        names.join(", ")
    )
}

/// Quoted primary-key column names (partition then clustering).
pub fn key_names(shape: &TableShape) -> Vec<String> {
    shape
        .partition_key()
        .into_iter()
        .chain(shape.clustering_key())
        .map(|c| ident(&c.name))
        .collect()
}

/// `ALTER TABLE … ADD COLUMN IF NOT EXISTS` for a value column and its bookkeeping columns.
pub fn add_value_column(relation: &str, c: &ColumnDef, bookkeeping: bool) -> String {
    let mut parts = vec![format!(
        "ADD COLUMN IF NOT EXISTS {} {}",
        ident(&c.name),
        column_type(c)
    )];
    if bookkeeping {
        parts.push(format!(
            "ADD COLUMN IF NOT EXISTS {} bigint",
            ident(&writetime_column(&c.name))
        ));
        parts.push(format!(
            "ADD COLUMN IF NOT EXISTS {} timestamptz",
            ident(&expiry_column(&c.name))
        ));
    }
    format!("ALTER TABLE {relation} {}", parts.join(", "))
}

/// The expression "this cell is live": written after every tombstone covering the row, not
/// null, not expired. `prefix` qualifies column references (`""` or `"t."`).
pub fn cell_live(prefix: &str, column: &str, with_ttl: bool) -> String {
    let c = ident(column);
    let wt = ident(&writetime_column(column));
    let mut expr = format!(
        "({prefix}{c} IS NOT NULL AND {prefix}{wt} > COALESCE({prefix}_cdc_del_wt, {NO_WRITETIME})"
    );
    if with_ttl {
        let exp = ident(&expiry_column(column));
        expr.push_str(&format!(
            " AND ({prefix}{exp} IS NULL OR {prefix}{exp} > now())"
        ));
    }
    expr.push(')');
    expr
}

/// The expression "this row is live": a live row marker or any live cell.
pub fn row_live(prefix: &str, value_columns: &[String], with_ttl: bool) -> String {
    let mut marker = format!(
        "({prefix}_cdc_row_wt IS NOT NULL AND {prefix}_cdc_row_wt > COALESCE({prefix}_cdc_del_wt, {NO_WRITETIME})"
    );
    if with_ttl {
        marker.push_str(&format!(
            " AND ({prefix}_cdc_expires_at IS NULL OR {prefix}_cdc_expires_at > now())"
        ));
    }
    marker.push(')');
    let mut terms = vec![marker];
    terms.extend(value_columns.iter().map(|c| cell_live(prefix, c, with_ttl)));
    format!("({})", terms.join(" OR "))
}

/// The live-row view: key columns, then each regular column shown only while its cell is live,
/// then each static column of the row's partition while its cell is live.
pub fn create_view(
    shape: &TableShape,
    value_columns: &[String],
    static_columns: &[String],
) -> String {
    let mut cols: Vec<String> = key_names(shape).iter().map(|k| format!("s.{k}")).collect();
    cols.extend(value_columns.iter().map(|c| {
        format!(
            "CASE WHEN {} THEN s.{} END AS {}",
            cell_live("s.", c, true),
            ident(c),
            ident(c)
        )
    }));
    cols.extend(static_columns.iter().map(|c| {
        format!(
            "CASE WHEN {} THEN st.{} END AS {}",
            cell_live("st.", c, true),
            ident(c),
            ident(c)
        )
    }));
    let join: Vec<String> = shape
        .partition_key()
        .iter()
        .map(|c| format!("st.{0} = s.{0}", ident(&c.name)))
        .collect();
    format!(
        "CREATE VIEW {} AS SELECT {} FROM {} s LEFT JOIN {} st ON {} WHERE {}",
        live_view(&shape.keyspace, &shape.table),
        cols.join(", "),
        state_table(&shape.keyspace, &shape.table),
        static_table(&shape.keyspace, &shape.table),
        join.join(" AND "),
        row_live("s.", value_columns, true)
    )
}

#[cfg(test)]
mod tests {
    use cdc_model::{ClusteringOrder, ColumnKind, CqlType};

    use super::*;

    fn shape() -> TableShape {
        TableShape {
            keyspace: "ks".into(),
            table: "t".into(),
            columns: vec![
                ColumnDef {
                    name: "id".into(),
                    cql_type: CqlType::Int,
                    kind: ColumnKind::PartitionKey { position: 0 },
                },
                ColumnDef {
                    name: "ck".into(),
                    cql_type: CqlType::Text,
                    kind: ColumnKind::Clustering {
                        position: 0,
                        order: ClusteringOrder::Asc,
                    },
                },
                ColumnDef {
                    name: "v".into(),
                    cql_type: CqlType::Bigint,
                    kind: ColumnKind::Regular,
                },
            ],
        }
    }

    #[test]
    fn state_table_has_keys_and_hidden_columns() {
        let sql = create_state_table(&shape());
        assert!(sql.starts_with("CREATE TABLE IF NOT EXISTS \"ks\".\"t_state\" (\"id\" integer NOT NULL, \"ck\" text NOT NULL, _cdc_row_wt bigint"));
        assert!(sql.ends_with("PRIMARY KEY (\"id\", \"ck\"))"));
        let alter = add_value_column("\"ks\".\"t_state\"", &shape().columns[2], true);
        assert_eq!(
            alter,
            "ALTER TABLE \"ks\".\"t_state\" ADD COLUMN IF NOT EXISTS \"v\" bigint, ADD COLUMN IF NOT EXISTS \"_cdc_wt__v\" bigint, ADD COLUMN IF NOT EXISTS \"_cdc_exp__v\" timestamptz"
        );
    }

    #[test]
    fn view_filters_live_rows() {
        let sql = create_view(&shape(), &["v".to_owned()], &["s1".to_owned()]);
        assert!(
            sql.starts_with("CREATE VIEW \"ks\".\"t\" AS SELECT s.\"id\", s.\"ck\", CASE WHEN")
        );
        assert!(sql.contains("FROM \"ks\".\"t_state\" s LEFT JOIN \"ks\".\"t_static\" st ON st.\"id\" = s.\"id\" WHERE"));
        assert!(sql.contains("s._cdc_row_wt > COALESCE(s._cdc_del_wt"));
        assert!(sql.contains("THEN st.\"s1\" END AS \"s1\""));
    }
}
