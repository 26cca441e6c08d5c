//! Relation and column names of the PostgreSQL layout (the naming contract, ARCHITECTURE §7).
//!
//! Cassandra `ks.t` becomes schema `ks` with:
//! - `t_state`: one row per primary key, live or deleted, with the Cassandra columns and hidden
//!   `_cdc_*` bookkeeping columns (see [`super::ddl`]);
//! - `t` (view): the live rows only, with exactly the Cassandra column names;
//! - `t_static`: one row per partition with the static columns (same hidden columns);
//! - `t_partition_deletes`: partition tombstones (so an older write arriving later stays deleted);
//! - TimescaleDB only: `t_changes`, a hypertable of every applied change.
//!
//! The offsets of every table live in `public._cdc_offsets(group, topic, partition, next_offset)`.

/// Double-quotes an identifier (Cassandra names are `[A-Za-z0-9_]`, case-sensitive when quoted).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"ks"."t_state"`.
pub fn state_table(keyspace: &str, table: &str) -> String {
    format!("{}.{}", ident(keyspace), ident(&format!("{table}_state")))
}

/// `"ks"."t_static"`: one row per partition with the static columns.
pub fn static_table(keyspace: &str, table: &str) -> String {
    format!("{}.{}", ident(keyspace), ident(&format!("{table}_static")))
}

/// `"ks"."t"`, the live-row view.
pub fn live_view(keyspace: &str, table: &str) -> String {
    format!("{}.{}", ident(keyspace), ident(table))
}

/// `"ks"."t_partition_deletes"`.
pub fn partition_deletes_table(keyspace: &str, table: &str) -> String {
    format!(
        "{}.{}",
        ident(keyspace),
        ident(&format!("{table}_partition_deletes"))
    )
}

/// `"ks"."t_changes"` (TimescaleDB).
pub fn changes_table(keyspace: &str, table: &str) -> String {
    format!("{}.{}", ident(keyspace), ident(&format!("{table}_changes")))
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
    }
}
