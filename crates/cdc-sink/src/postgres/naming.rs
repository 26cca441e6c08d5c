//! Relation and column names of the PostgreSQL layout (the naming contract, ARCHITECTURE §7).
//!
//! Cassandra `ks.t` becomes schema `ks` ([`schema_name`]: `cdc_` is prepended to keyspaces starting
//! with `pg_`, a prefix PostgreSQL reserves) with:
//! - `t_state`: one row per primary key, live or deleted, with the Cassandra columns and hidden
//!   `_cdc_*` bookkeeping columns (see [`super::ddl`]);
//! - `t` (view): the live rows only, with exactly the Cassandra column names;
//! - `t_static`: one row per partition with the static columns (same hidden columns);
//! - `t_partition_deletes`: partition tombstones (so an older write arriving later stays deleted);
//! - `t_range_deletes`: range tombstones with their bounds as clustering order keys (likewise);
//! - TimescaleDB only: `t_changes`, a hypertable of every applied change.
//!
//! The offsets of every table live in `public._cdc_offsets(group, topic, partition, next_offset)`.

/// Double-quotes an identifier (Cassandra names are `[A-Za-z0-9_]`, case-sensitive when quoted).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The PostgreSQL schema of a Cassandra keyspace: the keyspace name, except that PostgreSQL
/// reserves schema names starting with `pg_`, so such a keyspace gets `cdc_` prepended
/// (`pg_stats` → `cdc_pg_stats`). To keep the mapping one-to-one, a keyspace that already looks
/// escaped (`cdc_pg_…`, `cdc_cdc_pg_…`) gets one more `cdc_`. Cassandra keyspace names are at most
/// 48 characters, so the result stays within PostgreSQL's 63.
pub fn schema_name(keyspace: &str) -> String {
    let mut rest = keyspace;
    while let Some(r) = rest.strip_prefix("cdc_") {
        rest = r;
    }
    if rest.starts_with("pg_") {
        format!("cdc_{keyspace}")
    } else {
        keyspace.to_owned()
    }
}

/// The quoted schema of a keyspace ([`schema_name`]).
pub fn schema(keyspace: &str) -> String {
    ident(&schema_name(keyspace))
}

fn relation(keyspace: &str, name: &str) -> String {
    format!("{}.{}", schema(keyspace), ident(name))
}

/// `"ks"."t_state"`.
pub fn state_table(keyspace: &str, table: &str) -> String {
    relation(keyspace, &format!("{table}_state"))
}

/// `"ks"."t_static"`: one row per partition with the static columns.
pub fn static_table(keyspace: &str, table: &str) -> String {
    relation(keyspace, &format!("{table}_static"))
}

/// `"ks"."t"`, the live-row view.
pub fn live_view(keyspace: &str, table: &str) -> String {
    relation(keyspace, table)
}

/// `"ks"."t_partition_deletes"`.
pub fn partition_deletes_table(keyspace: &str, table: &str) -> String {
    relation(keyspace, &format!("{table}_partition_deletes"))
}

/// `"ks"."t_range_deletes"`.
pub fn range_deletes_table(keyspace: &str, table: &str) -> String {
    relation(keyspace, &format!("{table}_range_deletes"))
}

/// `"ks"."t_changes"` (TimescaleDB).
pub fn changes_table(keyspace: &str, table: &str) -> String {
    relation(keyspace, &format!("{table}_changes"))
}

/// The offsets table.
pub const OFFSETS_TABLE: &str = "public._cdc_offsets";

/// Writetime (µs) of a value column's cell (or cell tombstone).
pub fn writetime_column(column: &str) -> String {
    format!("_cdc_wt__{column}")
}

/// Expiry (timestamptz) of a value column's cell, from its TTL.
pub fn expiry_column(column: &str) -> String {
    format!("_cdc_exp__{column}")
}

/// Element cells (jsonb) of a non-frozen collection/UDT or counter column `<col>`; see
/// [`super::cells`].
pub fn cells_column(column: &str) -> String {
    format!("_cdc_el__{column}")
}

/// Whole-collection deletion time (µs) of a multi-cell column `<col>`.
pub fn collection_deletion_column(column: &str) -> String {
    format!("_cdc_cd__{column}")
}

/// The clustering order key (bytea, see `cdc_typemap::order`) of a state row.
pub const CLUSTERING_KEY_COLUMN: &str = "_cdc_ck";

/// Hidden row columns of the state table, in order, with their types.
pub const ROW_COLUMNS: &[(&str, &str)] = &[
    // Writetime of the row marker (primary-key liveness, set by INSERT).
    ("_cdc_row_wt", "bigint"),
    // Expiry of the row marker (INSERT … USING TTL).
    ("_cdc_expires_at", "timestamptz"),
    // Highest row/partition/range tombstone writetime covering the row.
    ("_cdc_del_wt", "bigint"),
    // Highest writetime applied to the row.
    ("_cdc_writetime", "bigint"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        assert_eq!(state_table("shop", "Orders"), "\"shop\".\"Orders_state\"");
        assert_eq!(live_view("shop", "orders"), "\"shop\".\"orders\"");
        assert_eq!(changes_table("ks", "t"), "\"ks\".\"t_changes\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(writetime_column("email"), "_cdc_wt__email");
        assert_eq!(range_deletes_table("ks", "t"), "\"ks\".\"t_range_deletes\"");
    }

    #[test]
    fn reserved_schema_names_are_escaped_one_to_one() {
        assert_eq!(schema_name("shop"), "shop");
        assert_eq!(schema_name("pg_stats"), "cdc_pg_stats");
        assert_eq!(schema_name("cdc_pg_stats"), "cdc_cdc_pg_stats");
        assert_eq!(schema_name("cdc_shop"), "cdc_shop");
        assert_eq!(
            schema_name("Pg_x"),
            "Pg_x",
            "PostgreSQL reserves lower-case pg_ only"
        );
        assert_eq!(schema_name("pgx"), "pgx");
        assert_eq!(state_table("pg_a", "t"), "\"cdc_pg_a\".\"t_state\"");
        let names = ["pg_a", "cdc_pg_a", "cdc_cdc_pg_a", "a", "cdc_a"];
        let mapped: std::collections::HashSet<String> =
            names.iter().map(|n| schema_name(n)).collect();
        assert_eq!(mapped.len(), names.len());
        assert!(mapped.iter().all(|m| !m.starts_with("pg_")));
    }
}
