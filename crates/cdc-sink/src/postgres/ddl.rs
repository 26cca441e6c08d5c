//! DDL of the PostgreSQL layout: created on first sight, columns added before the first event
//! that needs them, the live-row view rebuilt after every change. Pure SQL builders; the
//! adapter runs them under an advisory lock (several sink instances may race).
//!
//! State table `ks.t_state`: the Cassandra key columns (primary key = partition + clustering
//! key), then [`ROW_COLUMNS`], `_cdc_deleted` (no live cell and no live row marker, TTL aside) and
//! `_cdc_updated_at`, `_cdc_ck` (the clustering order key, tables with clustering columns only),
//! then per value column `c`: `c`, `_cdc_wt__c` (cell writetime, µs) and `_cdc_exp__c` (cell
//! expiry). A cell tombstone is a NULL value with its writetime. A multi-cell column (non-frozen
//! collection or UDT, counter) has `c` (always NULL), `_cdc_el__c` and `_cdc_cd__c` instead (see
//! [`super::cells`]); the comment on `_cdc_el__c` records how to read it.
//!
//! Range tombstones `ks.t_range_deletes`: the partition key, `_cdc_start` and `_cdc_end` (the
//! range as a half-open interval of clustering order keys, `cdc_typemap::order`), `_cdc_del_wt`
//! and `_cdc_bounds` (the bounds as the event gave them, for people). A state row is inside when
//! `_cdc_start <= _cdc_ck AND _cdc_ck < _cdc_end`.

use cdc_typemap::postgres::pg_type;

use super::cells::{self, MultiKind};
use super::naming::{
    CLUSTERING_KEY_COLUMN, ROW_COLUMNS, cells_column, collection_deletion_column, expiry_column,
    ident, live_view, partition_deletes_table, range_deletes_table, state_table, static_table,
    writetime_column,
};
use crate::destination::{ColumnDef, TableShape};

/// The smallest bigint, standing for "no tombstone".
pub const NO_WRITETIME: &str = "(-9223372036854775808)::bigint";

/// Options of the layout that differ between PostgreSQL and TimescaleDB.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangesLayout {
    /// Keep a `t_changes` hypertable of every applied change.
    pub enabled: bool,
    /// `chunk_interval_secs` of created hypertables, seconds.
    pub chunk_interval_secs: u64,
    /// Retention on `t_changes`, seconds.
    pub retention_secs: Option<u64>,
    /// TimescaleDB: `keyspace.table` → key column partitioning its state table as a hypertable
    /// (`crate::timescaledb`); other tables keep a plain state table.
    pub state_time_columns: std::collections::BTreeMap<String, String>,
}

/// A static or regular column as the table stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueColumn {
    /// The Cassandra name.
    pub name: String,
    /// Set for a multi-cell column (stored as element cells).
    pub multi: Option<MultiKind>,
}

impl ValueColumn {
    /// The stored form of a shape column.
    pub fn of(c: &ColumnDef) -> ValueColumn {
        ValueColumn {
            name: c.name.clone(),
            multi: MultiKind::of(&c.cql_type),
        }
    }
}

fn column_type(c: &ColumnDef) -> &'static str {
    pg_type(&c.cql_type).sql_name()
}

fn hidden_columns() -> Vec<String> {
    let mut cols: Vec<String> = ROW_COLUMNS
        .iter()
        .map(|(n, t)| format!("{n} {t}"))
        .collect();
    cols.push("_cdc_deleted boolean NOT NULL DEFAULT false".into());
    cols.push("_cdc_updated_at timestamptz NOT NULL DEFAULT now()".into());
    cols
}

/// `CREATE TABLE IF NOT EXISTS` of the state table (keys and hidden row columns only).
pub fn create_state_table(shape: &TableShape) -> String {
    let mut cols: Vec<String> = shape
        .partition_key()
        .into_iter()
        .chain(shape.clustering_key())
        .map(|c| format!("{} {} NOT NULL", ident(&c.name), column_type(c)))
        .collect();
    cols.extend(hidden_columns());
    if !shape.clustering_key().is_empty() {
        cols.push(format!("{CLUSTERING_KEY_COLUMN} bytea"));
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
        state_table(&shape.keyspace, &shape.table),
        cols.join(", "),
        key_names(shape).join(", ")
    )
}

/// `ALTER TABLE … ADD COLUMN IF NOT EXISTS _cdc_ck` for state tables created before it existed.
pub fn add_clustering_key_column(shape: &TableShape) -> Option<String> {
    (!shape.clustering_key().is_empty()).then(|| {
        format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {CLUSTERING_KEY_COLUMN} bytea",
            state_table(&shape.keyspace, &shape.table)
        )
    })
}

/// `CREATE TABLE IF NOT EXISTS` of the static-column table (partition key and hidden columns).
pub fn create_static_table(shape: &TableShape) -> String {
    let pk = shape.partition_key();
    let mut cols: Vec<String> = pk
        .iter()
        .map(|c| format!("{} {} NOT NULL", ident(&c.name), column_type(c)))
        .collect();
    cols.extend(hidden_columns());
    let names: Vec<String> = pk.iter().map(|c| ident(&c.name)).collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
        static_table(&shape.keyspace, &shape.table),
        cols.join(", "),
        names.join(", ")
    )
}

fn partition_key_defs(shape: &TableShape) -> (Vec<String>, Vec<String>) {
    let pk = shape.partition_key();
    let cols = pk
        .iter()
        .map(|c| format!("{} {} NOT NULL", ident(&c.name), column_type(c)))
        .collect();
    let names = pk.iter().map(|c| ident(&c.name)).collect();
    (cols, names)
}

/// `CREATE TABLE IF NOT EXISTS` of the partition tombstones.
pub fn create_partition_deletes_table(shape: &TableShape) -> String {
    let (cols, names) = partition_key_defs(shape);
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, _cdc_del_wt bigint NOT NULL, PRIMARY KEY ({}))",
        partition_deletes_table(&shape.keyspace, &shape.table),
        cols.join(", "),
        names.join(", ")
    )
}

/// `CREATE TABLE IF NOT EXISTS` of the range tombstones (see the module doc).
pub fn create_range_deletes_table(shape: &TableShape) -> String {
    let (cols, names) = partition_key_defs(shape);
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, _cdc_start bytea NOT NULL, _cdc_end bytea NOT NULL, \
         _cdc_del_wt bigint NOT NULL, _cdc_bounds jsonb, PRIMARY KEY ({}, _cdc_start, _cdc_end))",
        range_deletes_table(&shape.keyspace, &shape.table),
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

/// Quoted partition-key column names.
pub fn partition_key_names(shape: &TableShape) -> Vec<String> {
    shape
        .partition_key()
        .into_iter()
        .map(|c| ident(&c.name))
        .collect()
}

/// The statements adding a value column and its bookkeeping columns (`ALTER TABLE … ADD COLUMN
/// IF NOT EXISTS`, and the kind comment of a multi-cell column). Without `bookkeeping` (the
/// changes hypertable) only the value column.
pub fn add_value_column(relation: &str, c: &ColumnDef, bookkeeping: bool) -> Vec<String> {
    let mut parts = vec![format!(
        "ADD COLUMN IF NOT EXISTS {} {}",
        ident(&c.name),
        column_type(c)
    )];
    let multi = MultiKind::of(&c.cql_type);
    let mut out = Vec::new();
    match (&multi, bookkeeping) {
        (_, false) => {}
        (None, true) => {
            parts.push(format!(
                "ADD COLUMN IF NOT EXISTS {} bigint",
                ident(&writetime_column(&c.name))
            ));
            parts.push(format!(
                "ADD COLUMN IF NOT EXISTS {} timestamptz",
                ident(&expiry_column(&c.name))
            ));
        }
        (Some(kind), true) => {
            let cells = ident(&cells_column(&c.name));
            parts.push(format!("ADD COLUMN IF NOT EXISTS {cells} jsonb"));
            parts.push(format!(
                "ADD COLUMN IF NOT EXISTS {} bigint",
                ident(&collection_deletion_column(&c.name))
            ));
            out.push(format!(
                "COMMENT ON COLUMN {relation}.{cells} IS '{}'",
                kind.comment().replace('\'', "''")
            ));
        }
    }
    out.insert(0, format!("ALTER TABLE {relation} {}", parts.join(", ")));
    out
}

/// The prefix of archived columns: `_cdc_old<n>__<column>` holds what `<column>` held before
/// its `n`-th type change (Cassandra: DROP then ADD with another type). Hidden (`_cdc_`), so the
/// live view never shows it.
const ARCHIVE_PREFIX: &str = "_cdc_old";

/// The archive name of `column` (a value or bookkeeping column) for type change `n`.
pub fn archive_name(n: u32, column: &str) -> String {
    format!("{ARCHIVE_PREFIX}{n}__{column}")
}

/// `(n, column)` of an archive name made by [`archive_name`].
pub fn parse_archive_name(name: &str) -> Option<(u32, &str)> {
    let rest = name.strip_prefix(ARCHIVE_PREFIX)?;
    let (n, column) = rest.split_once("__")?;
    Some((n.parse().ok()?, column))
}

/// The columns storing `column` in a table (`bookkeeping`: the state tables; else the changes
/// hypertable, value only), among `existing` ones.
pub fn storage_columns(column: &str, bookkeeping: bool, existing: &[String]) -> Vec<String> {
    let mut names = vec![column.to_owned()];
    if bookkeeping {
        names.extend([
            writetime_column(column),
            expiry_column(column),
            cells_column(column),
            collection_deletion_column(column),
        ]);
    }
    names.retain(|n| existing.contains(n));
    names
}

/// The statements moving `column` (and its bookkeeping columns, `storage`) to archive `n`.
pub fn archive_column(relation: &str, n: u32, storage: &[String]) -> Vec<String> {
    storage
        .iter()
        .map(|c| {
            format!(
                "ALTER TABLE {relation} RENAME COLUMN {} TO {}",
                ident(c),
                ident(&archive_name(n, c))
            )
        })
        .collect()
}

/// The comment recording the CQL type a re-created column was made for (`cdc:type:<cql>`).
pub fn type_comment(relation: &str, c: &ColumnDef) -> String {
    format!(
        "COMMENT ON COLUMN {relation}.{} IS '{}'",
        ident(&c.name),
        format!("{TYPE_COMMENT_PREFIX}{}", c.cql_type).replace('\'', "''")
    )
}

/// Prefix of [`type_comment`].
pub const TYPE_COMMENT_PREFIX: &str = "cdc:type:";

/// What the PostgreSQL layout does with one value column of a shape, given the column's current
/// type in the table and the types archived for it (all as `regtype` text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnAction {
    /// Missing: add it.
    Add,
    /// Present with the wanted type.
    Keep,
    /// Present with another type that an earlier type change archived: the events are older
    /// than the change (their cells are dead in Cassandra); write with the table's type.
    Stale,
    /// Present with another type: archive the column as number `n`, add it again.
    Archive(u32),
}

/// Decides [`ColumnAction`] for `column` wanting type `wanted`, from the described table
/// (`(name, regtype)` of every column).
pub fn column_action(column: &str, wanted: &str, described: &[(String, String)]) -> ColumnAction {
    let Some((_, current)) = described.iter().find(|(n, _)| n == column) else {
        return ColumnAction::Add;
    };
    if current == wanted {
        return ColumnAction::Keep;
    }
    let archives: Vec<(u32, &str)> = described
        .iter()
        .filter_map(|(n, t)| {
            parse_archive_name(n)
                .filter(|(_, c)| *c == column)
                .map(|(i, _)| (i, t.as_str()))
        })
        .collect();
    if archives.iter().any(|(_, t)| *t == wanted) {
        return ColumnAction::Stale;
    }
    ColumnAction::Archive(archives.iter().map(|(i, _)| *i).max().unwrap_or(0) + 1)
}

/// The schema the relations of a dropped incarnation of `keyspace.table` (Cassandra table id
/// `old_id`) are moved to: `<schema>_dropped_<first 8 hex digits of the id>` (at most 63 bytes).
pub fn retired_schema(keyspace: &str, old_id: uuid::Uuid) -> String {
    let hex = old_id.simple().to_string();
    let mut base = super::naming::schema_name(keyspace);
    base.truncate(63 - "_dropped_".len() - 8);
    format!("{base}_dropped_{}", &hex[..8])
}

/// The statements retiring the relations of `keyspace.table` (DROP TABLE in Cassandra, then a
/// table of the same name created): the view dropped, every table moved (with its indexes and
/// constraints) to [`retired_schema`], kept for people, never read again.
pub fn retire_statements(keyspace: &str, table: &str, old_id: uuid::Uuid) -> Vec<String> {
    let target = ident(&retired_schema(keyspace, old_id));
    let mut out = vec![
        format!("CREATE SCHEMA IF NOT EXISTS {target}"),
        format!("DROP VIEW IF EXISTS {}", live_view(keyspace, table)),
    ];
    for rel in [
        state_table(keyspace, table),
        static_table(keyspace, table),
        partition_deletes_table(keyspace, table),
        range_deletes_table(keyspace, table),
        super::naming::changes_table(keyspace, table),
    ] {
        out.push(format!("ALTER TABLE IF EXISTS {rel} SET SCHEMA {target}"));
    }
    out
}

/// The value columns of a described table (`(name, comment)` in column order): every column that
/// is neither hidden nor a key, multi-cell when its `_cdc_el__<name>` column carries a kind
/// comment.
pub fn value_columns(
    described: &[(String, Option<String>)],
    keys: &std::collections::HashSet<String>,
) -> Vec<ValueColumn> {
    described
        .iter()
        .filter(|(n, _)| !n.starts_with("_cdc_") && !keys.contains(n))
        .map(|(n, _)| {
            let cells = cells_column(n);
            let multi = described
                .iter()
                .find(|(c, _)| *c == cells)
                .and_then(|(_, comment)| comment.as_deref())
                .and_then(MultiKind::from_comment);
            ValueColumn {
                name: n.clone(),
                multi,
            }
        })
        .collect()
}

/// The expression "this cell is live": written after every tombstone covering the row, not
/// null, not expired. `prefix` qualifies column references (`""` or `"t."`).
pub fn cell_live(prefix: &str, column: &ValueColumn, with_ttl: bool) -> String {
    if column.multi.is_some() {
        return cells::live_sql(prefix, &column.name, with_ttl);
    }
    let c = ident(&column.name);
    let wt = ident(&writetime_column(&column.name));
    let mut expr = format!(
        "({prefix}{c} IS NOT NULL AND {prefix}{wt} > COALESCE({prefix}_cdc_del_wt, {NO_WRITETIME})"
    );
    if with_ttl {
        let exp = ident(&expiry_column(&column.name));
        expr.push_str(&format!(
            " AND ({prefix}{exp} IS NULL OR {prefix}{exp} > now())"
        ));
    }
    expr.push(')');
    expr
}

/// The visible value of a column (`prefix`-qualified), NULL unless its cell is live.
pub fn visible_value(prefix: &str, column: &ValueColumn) -> String {
    match &column.multi {
        Some(kind) => {
            let (cells, floor) = cells::cells_and_floor(prefix, &column.name);
            kind.value_sql(&cells, &floor)
        }
        None => format!(
            "CASE WHEN {} THEN {prefix}{} END",
            cell_live(prefix, column, true),
            ident(&column.name)
        ),
    }
}

/// The expression "this row is live": a live row marker or any live cell.
pub fn row_live(prefix: &str, value_columns: &[ValueColumn], with_ttl: bool) -> String {
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
/// then each static column of the row's partition while its cell is live. A partition with live
/// static cells and no live row appears once with NULL clustering and regular columns, as
/// Cassandra's `SELECT` shows it.
pub fn create_view(
    shape: &TableShape,
    value_columns: &[ValueColumn],
    static_columns: &[ValueColumn],
) -> String {
    let mut cols: Vec<String> = key_names(shape).iter().map(|k| format!("s.{k}")).collect();
    cols.extend(
        value_columns
            .iter()
            .map(|c| format!("{} AS {}", visible_value("s.", c), ident(&c.name))),
    );
    let statics: Vec<String> = static_columns
        .iter()
        .map(|c| format!("{} AS {}", visible_value("st.", c), ident(&c.name)))
        .collect();
    cols.extend(statics.iter().cloned());
    let pk = partition_key_names(shape);
    let join: Vec<String> = pk.iter().map(|k| format!("st.{k} = s.{k}")).collect();
    let state = state_table(&shape.keyspace, &shape.table);
    let mut sql = format!(
        "CREATE VIEW {} AS SELECT {} FROM {state} s LEFT JOIN {} st ON {} WHERE {}",
        live_view(&shape.keyspace, &shape.table),
        cols.join(", "),
        static_table(&shape.keyspace, &shape.table),
        join.join(" AND "),
        row_live("s.", value_columns, true)
    );
    if !static_columns.is_empty() && !shape.clustering_key().is_empty() {
        let mut only: Vec<String> = pk.iter().map(|k| format!("st.{k}")).collect();
        only.extend(shape.clustering_key().iter().map(|_| "NULL".to_owned()));
        only.extend(value_columns.iter().map(|_| "NULL".to_owned()));
        only.extend(statics);
        let static_live: Vec<String> = static_columns
            .iter()
            .map(|c| cell_live("st.", c, true))
            .collect();
        sql.push_str(&format!(
            " UNION ALL SELECT {} FROM {} st WHERE ({}) AND NOT EXISTS (SELECT 1 FROM {state} s WHERE {} AND {})",
            only.join(", "),
            static_table(&shape.keyspace, &shape.table),
            static_live.join(" OR "),
            join.join(" AND "),
            row_live("s.", value_columns, true)
        ));
    }
    sql
}

#[cfg(test)]
mod tests {
    use cdc_model::{ClusteringOrder, ColumnKind, CqlType};

    use super::*;

    fn shape() -> TableShape {
        TableShape {
            keyspace: "ks".into(),
            table: "t".into(),
            dropped: Default::default(),
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
            alter.join("; "),
            "ALTER TABLE \"ks\".\"t_state\" ADD COLUMN IF NOT EXISTS \"v\" bigint, ADD COLUMN IF NOT EXISTS \"_cdc_wt__v\" bigint, ADD COLUMN IF NOT EXISTS \"_cdc_exp__v\" timestamptz"
        );
    }

    #[test]
    fn type_changes_archive_the_old_column_once() {
        let d = |cols: &[(&str, &str)]| -> Vec<(String, String)> {
            cols.iter()
                .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
                .collect()
        };
        let table = d(&[("id", "integer"), ("c", "text"), ("_cdc_wt__c", "bigint")]);
        assert_eq!(column_action("n", "text", &table), ColumnAction::Add);
        assert_eq!(column_action("c", "text", &table), ColumnAction::Keep);
        assert_eq!(
            column_action("c", "bytea", &table),
            ColumnAction::Archive(1)
        );
        let existing: Vec<String> = table.iter().map(|(n, _)| n.clone()).collect();
        let storage = storage_columns("c", true, &existing);
        assert_eq!(storage, ["c", "_cdc_wt__c"]);
        assert_eq!(
            archive_column("\"ks\".\"t_state\"", 1, &storage),
            [
                "ALTER TABLE \"ks\".\"t_state\" RENAME COLUMN \"c\" TO \"_cdc_old1__c\"",
                "ALTER TABLE \"ks\".\"t_state\" RENAME COLUMN \"_cdc_wt__c\" TO \"_cdc_old1___cdc_wt__c\""
            ]
        );
        // After the change: c is bytea, the text column archived. Old events still say text.
        let after = d(&[
            ("c", "bytea"),
            ("_cdc_old1__c", "text"),
            ("_cdc_old1___cdc_wt__c", "bigint"),
        ]);
        assert_eq!(column_action("c", "text", &after), ColumnAction::Stale);
        assert_eq!(column_action("c", "bytea", &after), ColumnAction::Keep);
        assert_eq!(
            column_action("c", "bigint", &after),
            ColumnAction::Archive(2)
        );
        assert_eq!(
            parse_archive_name("_cdc_old1___cdc_wt__c"),
            Some((1, "_cdc_wt__c"))
        );
        assert_eq!(parse_archive_name("_cdc_wt__c"), None);
    }

    #[test]
    fn retiring_moves_every_relation_to_a_dropped_schema() {
        let id = uuid::Uuid::from_u128(0xabcdef12_0000_1000_8000_000000000000);
        assert_eq!(retired_schema("ks", id), "ks_dropped_abcdef12");
        assert_eq!(retired_schema("pg_x", id), "cdc_pg_x_dropped_abcdef12");
        let stmts = retire_statements("ks", "t", id);
        assert_eq!(
            stmts[0],
            "CREATE SCHEMA IF NOT EXISTS \"ks_dropped_abcdef12\""
        );
        assert_eq!(stmts[1], "DROP VIEW IF EXISTS \"ks\".\"t\"");
        assert!(
            stmts.contains(
                &"ALTER TABLE IF EXISTS \"ks\".\"t_state\" SET SCHEMA \"ks_dropped_abcdef12\""
                    .to_owned()
            )
        );
        assert_eq!(stmts.len(), 7);
    }

    #[test]
    fn view_filters_live_rows() {
        let col = |n: &str| ValueColumn {
            name: n.into(),
            multi: None,
        };
        let sql = create_view(&shape(), &[col("v")], &[col("s1")]);
        assert!(
            sql.starts_with("CREATE VIEW \"ks\".\"t\" AS SELECT s.\"id\", s.\"ck\", CASE WHEN")
        );
        assert!(sql.contains("FROM \"ks\".\"t_state\" s LEFT JOIN \"ks\".\"t_static\" st ON st.\"id\" = s.\"id\" WHERE"));
        assert!(sql.contains("s._cdc_row_wt > COALESCE(s._cdc_del_wt"));
        assert!(sql.contains("THEN st.\"s1\" END AS \"s1\""));
        // A partition with only static data shows up with NULL clustering and regular columns.
        assert!(
            sql.contains("UNION ALL SELECT st.\"id\", NULL, NULL, CASE WHEN"),
            "{sql}"
        );
        assert!(sql.contains(
            "AND NOT EXISTS (SELECT 1 FROM \"ks\".\"t_state\" s WHERE st.\"id\" = s.\"id\" AND"
        ));
        let no_statics = create_view(&shape(), &[col("v")], &[]);
        assert!(!no_statics.contains("UNION"));
    }

    #[test]
    fn multi_cell_columns_get_cells_and_a_kind_comment() {
        let c = ColumnDef {
            name: "tags".into(),
            cql_type: CqlType::parse("set<text>").unwrap_or_else(|e| panic!("{e}")),
            kind: ColumnKind::Regular,
        };
        let stmts = add_value_column("\"ks\".\"t_state\"", &c, true);
        assert_eq!(stmts.len(), 2);
        assert!(stmts[0].contains("ADD COLUMN IF NOT EXISTS \"_cdc_el__tags\" jsonb"));
        assert!(stmts[0].contains("\"_cdc_cd__tags\" bigint"));
        assert!(!stmts[0].contains("_cdc_wt__tags"));
        assert!(
            stmts[1].starts_with("COMMENT ON COLUMN \"ks\".\"t_state\".\"_cdc_el__tags\" IS 'cdc:")
        );
        let v = ValueColumn::of(&c);
        assert_eq!(
            visible_value("s.", &v),
            "public._cdc_set_value(s.\"_cdc_el__tags\", GREATEST(s.\"_cdc_cd__tags\", s._cdc_del_wt))"
        );
        assert!(
            create_range_deletes_table(&shape())
                .contains("PRIMARY KEY (\"id\", _cdc_start, _cdc_end)")
        );
        assert!(create_state_table(&shape()).contains("_cdc_ck bytea"));
    }
}
