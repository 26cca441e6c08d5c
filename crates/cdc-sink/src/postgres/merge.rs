//! The convergent apply: events of a batch are first reduced per primary key with the same
//! last-write-wins rules the SQL merge uses (so a key touched several times in one batch becomes
//! one staged row), then COPYed in binary into a temporary staging table and merged into the
//! state table by one `INSERT … ON CONFLICT DO UPDATE` comparing writetimes cell by cell.
//! Partition and range tombstones are COPYed into staging tables of their own and applied by a
//! fixed number of set-based statements per batch, whatever their count.
//!
//! Rules (ARCHITECTURE §4): a cell replaces the stored cell when its writetime is greater, or equal
//! and it is a tombstone; the row marker and the tombstone writetime keep their maximum; a cell or
//! marker is live only when written after the row's tombstone writetime. Ties between two
//! different values at the same writetime keep the stored one (Cassandra compares the bytes; such
//! ties need two writers in the same microsecond). Multi-cell columns merge element by element
//! ([`super::cells`]).
//!
//! Tombstones are stored (`t_partition_deletes`, `t_range_deletes`) and the merge takes the
//! greatest partition and covering range tombstone of every staged row into its `_cdc_del_wt`, so
//! a write older than a deletion stays shadowed whichever arrives first. Range coverage compares
//! clustering order keys (`cdc_typemap::order`, Cassandra's comparators including descending
//! columns and prefix bounds) as `bytea`.

use std::collections::HashMap;

use bytes::BytesMut;
use cdc_model::json_codec::value_to_json;
use cdc_model::{
    CellValue, ClusteringBound, ClusteringOrder, ColumnKind, DeletionScope, KeyColumn,
};
use cdc_typemap::order;
use cdc_typemap::postgres::{PgType, encode_binary, pg_type};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::cells::{CellsError, MultiDelta, MultiKind, multi_delta};
use super::ddl::{ValueColumn, partition_key_names, row_live};
use super::naming::{
    CLUSTERING_KEY_COLUMN, cells_column, collection_deletion_column, expiry_column, ident,
    partition_deletes_table, range_deletes_table, writetime_column,
};
use crate::destination::{BatchEvent, ColumnDef, Rejection, TableShape};
use crate::error::Error;

/// Microseconds between 1970-01-01 and 2000-01-01.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// Staging table of the batch's partition tombstones.
pub const PARTITION_DELETES_STAGING: &str = "_cdc_stg_pd";
/// Staging table of the batch's range tombstones.
pub const RANGE_DELETES_STAGING: &str = "_cdc_stg_rd";

/// A value already in PostgreSQL's binary format (or NULL); accepted for any parameter type.
#[derive(Debug, Clone, Copy)]
pub struct Encoded<'a>(pub Option<&'a [u8]>);

impl ToSql for Encoded<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            None => Ok(IsNull::Yes),
            Some(b) => {
                out.extend_from_slice(b);
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// The wire type of a mapped column.
pub fn wire_type(pg: PgType) -> Type {
    match pg {
        PgType::Text => Type::TEXT,
        PgType::Bytea => Type::BYTEA,
        PgType::Boolean => Type::BOOL,
        PgType::Smallint => Type::INT2,
        PgType::Integer => Type::INT4,
        PgType::Bigint => Type::INT8,
        PgType::Numeric => Type::NUMERIC,
        PgType::Real => Type::FLOAT4,
        PgType::Double => Type::FLOAT8,
        PgType::Date => Type::DATE,
        PgType::Time => Type::TIME,
        PgType::Timestamptz => Type::TIMESTAMPTZ,
        PgType::Uuid => Type::UUID,
        PgType::Inet => Type::INET,
        PgType::Interval => Type::INTERVAL,
        _ => Type::JSONB,
    }
}

/// Binary bigint.
pub fn enc_i64(n: i64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// Binary timestamptz of epoch seconds (saturating at PostgreSQL's range is not needed: TTL
/// expiries are near the present).
pub fn enc_epoch_secs(secs: i64) -> Vec<u8> {
    secs.saturating_mul(1_000_000)
        .saturating_sub(PG_EPOCH_OFFSET_MICROS)
        .to_be_bytes()
        .to_vec()
}

/// Binary timestamptz of epoch microseconds.
pub fn enc_epoch_micros(micros: i64) -> Vec<u8> {
    micros
        .saturating_sub(PG_EPOCH_OFFSET_MICROS)
        .to_be_bytes()
        .to_vec()
}

/// Binary jsonb of a JSON text.
pub fn enc_jsonb(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 1);
    out.push(1);
    out.extend_from_slice(text.as_bytes());
    out
}

/// One cell after reduction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellDelta {
    pub writetime: i64,
    /// `None`: a cell tombstone.
    pub value: Option<Vec<u8>>,
    pub expires_at_secs: Option<i64>,
}

/// One primary key's reduced changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDelta {
    /// Encoded key values: partition key then clustering key.
    pub key: Vec<Vec<u8>>,
    /// The clustering order key (tables with clustering columns).
    pub ck: Option<Vec<u8>>,
    /// Row marker writetime and expiry.
    pub marker: Option<(i64, Option<i64>)>,
    pub deleted_at: Option<i64>,
    pub max_writetime: i64,
    pub cells: HashMap<String, CellDelta>,
    /// Multi-cell columns (collections, UDTs, counters).
    pub multi: HashMap<String, MultiDelta>,
}

/// A partition tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDelete {
    pub partition_key: Vec<Vec<u8>>,
    pub writetime: i64,
}

/// A range tombstone as a half-open interval of clustering order keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeDelete {
    pub partition_key: Vec<Vec<u8>>,
    /// Inclusive lower bound ([`order::range_start`]).
    pub start: Vec<u8>,
    /// Exclusive upper bound ([`order::range_end`]).
    pub end: Vec<u8>,
    pub writetime: i64,
    /// The bounds as the event gave them (JSON), for people reading the table.
    pub bounds: String,
}

/// A batch reduced for the merge.
#[derive(Debug, Default)]
pub struct Reduced {
    /// Rows in first-seen order.
    pub rows: Vec<RowDelta>,
    /// Static-row changes per partition key (`key` = partition key only).
    pub static_rows: Vec<RowDelta>,
    pub partition_deletes: Vec<PartitionDelete>,
    pub range_deletes: Vec<RangeDelete>,
    pub rejections: Vec<Rejection>,
    /// Indices of the events that were applied (not rejected).
    pub applied: Vec<usize>,
}

fn encode_key(shape: &TableShape, cols: &[KeyColumn]) -> Result<Vec<Vec<u8>>, Error> {
    cols.iter()
        .map(|k| {
            let def = shape
                .column(&k.name)
                .ok_or_else(|| schema_err(shape, &k.name, "unknown key column"))?;
            encode_binary(&def.cql_type, &k.value)
                .map_err(|source| value_err(shape, &k.name, source))?
                .ok_or_else(|| schema_err(shape, &k.name, "a key column holds an empty value"))
        })
        .collect()
}

fn schema_err(shape: &TableShape, column: &str, reason: &str) -> Error {
    Error::Schema {
        keyspace: shape.keyspace.clone(),
        table: shape.table.clone(),
        column: column.to_owned(),
        reason: reason.to_owned(),
    }
}

fn value_err(
    shape: &TableShape,
    column: &str,
    source: cdc_typemap::postgres::PgValueError,
) -> Error {
    Error::Value {
        keyspace: shape.keyspace.clone(),
        table: shape.table.clone(),
        column: column.to_owned(),
        source,
    }
}

fn unsupported(shape: &TableShape, what: &str) -> Error {
    Error::Unsupported {
        keyspace: shape.keyspace.clone(),
        table: shape.table.clone(),
        what: what.to_owned(),
    }
}

/// The crate error of a multi-cell change that cannot be stored.
pub fn cells_err(shape: &TableShape, column: &str, e: CellsError) -> Error {
    match e {
        CellsError::Shape(reason) => schema_err(shape, column, &reason),
        CellsError::Unsupported(what) => unsupported(shape, &format!("{what} (column {column})")),
        CellsError::Value(source) => value_err(shape, column, source),
    }
}

/// The clustering order key of a (possibly partial) clustering given in key order.
fn clustering_order_key(shape: &TableShape, values: &[KeyColumn]) -> Result<Vec<u8>, Error> {
    let defs = shape.clustering_key();
    if values.len() > defs.len() {
        return Err(schema_err(
            shape,
            "",
            "more clustering values than clustering columns",
        ));
    }
    let mut out = Vec::new();
    for (def, k) in defs.iter().zip(values) {
        if def.name != k.name {
            return Err(schema_err(
                shape,
                &k.name,
                "clustering values are not in clustering order",
            ));
        }
        let desc = matches!(
            def.kind,
            ColumnKind::Clustering {
                order: ClusteringOrder::Desc,
                ..
            }
        );
        order::push_component(&def.cql_type, &k.value, desc, &mut out)
            .map_err(|e| schema_err(shape, &k.name, &e.to_string()))?;
    }
    Ok(out)
}

fn bound_json(b: &ClusteringBound) -> serde_json::Value {
    serde_json::json!({
        "prefix": b.prefix.iter().map(|k| serde_json::json!({"column": k.name, "value": value_to_json(&k.value)})).collect::<Vec<_>>(),
        "inclusive": b.inclusive,
    })
}

fn range_delete(
    shape: &TableShape,
    pk: Vec<Vec<u8>>,
    start: &ClusteringBound,
    end: &ClusteringBound,
    writetime: i64,
) -> Result<RangeDelete, Error> {
    let bounds =
        serde_json::json!({"start": bound_json(start), "end": bound_json(end)}).to_string();
    if bounds.contains("\\u0000") {
        return Err(schema_err(
            shape,
            "",
            "a range bound holds a NUL character, which jsonb cannot store",
        ));
    }
    Ok(RangeDelete {
        partition_key: pk,
        start: order::range_start(clustering_order_key(shape, &start.prefix)?, start.inclusive),
        end: order::range_end(clustering_order_key(shape, &end.prefix)?, end.inclusive),
        writetime,
        bounds,
    })
}

/// The part of one event that the merge applies.
enum EventDelta {
    Row(RowDelta),
    Static(RowDelta),
    Partition(PartitionDelete),
    Range(RangeDelete),
}

fn simple_value(
    shape: &TableShape,
    def: &ColumnDef,
    change: &CellValue,
) -> Result<Option<Vec<u8>>, Error> {
    match change {
        CellValue::Set { value } => encode_binary(&def.cql_type, value)
            .map_err(|source| value_err(shape, &def.name, source)),
        CellValue::Tombstone => Ok(None),
        CellValue::Complex { .. } => Err(schema_err(
            shape,
            &def.name,
            "element changes for a single-cell (frozen) column",
        )),
        CellValue::Counter { .. } => Err(schema_err(
            shape,
            &def.name,
            "counter shards for a non-counter column",
        )),
    }
}

fn empty_row(key: Vec<Vec<u8>>, max_writetime: i64) -> RowDelta {
    RowDelta {
        key,
        ck: None,
        marker: None,
        deleted_at: None,
        max_writetime,
        cells: HashMap::new(),
        multi: HashMap::new(),
    }
}

fn event_delta(shape: &TableShape, be: &BatchEvent) -> Result<Vec<EventDelta>, Error> {
    let e = &be.event;
    let pk = encode_key(shape, &e.partition_key)?;
    if pk.len() != shape.partition_key().len() {
        return Err(schema_err(
            shape,
            "",
            "the event's partition key is incomplete",
        ));
    }
    let full_key = e.clustering_key.len() == shape.clustering_key().len();
    let max_writetime = e.max_writetime_micros().unwrap_or(0);
    let mut out = Vec::new();
    let mut statics = empty_row(pk.clone(), max_writetime);
    let mut row = empty_row(Vec::new(), max_writetime);
    row.marker = e
        .liveness
        .map(|l| (l.writetime_micros, l.ttl.map(|t| t.expires_at_secs)));
    for cell in &e.cells {
        let def = shape
            .column(&cell.column)
            .ok_or_else(|| schema_err(shape, &cell.column, "column type unknown"))?;
        let target = if def.kind == ColumnKind::Static {
            &mut statics
        } else {
            &mut row
        };
        if MultiKind::of(&def.cql_type).is_some() {
            let delta = multi_delta(
                &def.cql_type,
                cell.writetime_micros,
                cell.ttl.map(|t| t.expires_at_secs),
                &cell.change,
            )
            .map_err(|err| cells_err(shape, &cell.column, err))?;
            // Refuse values jsonb cannot hold now, so the event is the one rejected.
            delta
                .encode_cells()
                .map_err(|err| cells_err(shape, &cell.column, err))?;
            target
                .multi
                .entry(cell.column.clone())
                .or_default()
                .merge(delta);
            continue;
        }
        let value = simple_value(shape, def, &cell.change)?;
        target.cells.insert(
            cell.column.clone(),
            CellDelta {
                writetime: cell.writetime_micros,
                value,
                expires_at_secs: cell.ttl.map(|t| t.expires_at_secs),
            },
        );
    }
    let no_clustering = shape.clustering_key().is_empty();
    match e
        .deletion
        .as_ref()
        .map(|d| (&d.scope, d.marked_for_delete_at_micros))
    {
        Some((DeletionScope::Row, wt)) => row.deleted_at = Some(wt),
        Some((DeletionScope::Partition, wt)) => {
            let pd = PartitionDelete {
                partition_key: pk.clone(),
                writetime: wt,
            };
            if no_clustering {
                // Without clustering columns the partition is the row: keep the tombstone on it.
                row.deleted_at = Some(wt);
            }
            out.push(EventDelta::Partition(pd));
        }
        Some((DeletionScope::Range { start, end }, wt)) => {
            if no_clustering {
                return Err(schema_err(
                    shape,
                    "",
                    "a range tombstone on a table without clustering columns",
                ));
            }
            out.push(EventDelta::Range(range_delete(
                shape,
                pk.clone(),
                start,
                end,
                wt,
            )?));
        }
        None => {}
    }
    if !statics.cells.is_empty() || !statics.multi.is_empty() {
        out.push(EventDelta::Static(statics));
    }
    // A static row carries no clustering row (its liveness is the partition's).
    if e.is_static {
        row.marker = None;
    }
    let touches_row = row.marker.is_some()
        || row.deleted_at.is_some()
        || !row.cells.is_empty()
        || !row.multi.is_empty();
    if touches_row {
        if !full_key {
            return Err(schema_err(
                shape,
                "",
                "a row change without its full clustering key",
            ));
        }
        if !no_clustering {
            row.ck = Some(clustering_order_key(shape, &e.clustering_key)?);
        }
        row.key = pk;
        row.key.extend(encode_key(shape, &e.clustering_key)?);
        out.push(EventDelta::Row(row));
    }
    Ok(out)
}

fn merge_row(into: &mut RowDelta, from: RowDelta) {
    into.max_writetime = into.max_writetime.max(from.max_writetime);
    into.deleted_at = match (into.deleted_at, from.deleted_at) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    into.marker = match (into.marker, from.marker) {
        (Some(a), Some(b)) => Some(if b.0 > a.0 { b } else { a }),
        (a, b) => a.or(b),
    };
    if into.ck.is_none() {
        into.ck = from.ck;
    }
    for (name, cell) in from.cells {
        match into.cells.get(&name) {
            Some(old)
                if !(cell.writetime > old.writetime
                    || (cell.writetime == old.writetime && cell.value.is_none())) => {}
            _ => {
                into.cells.insert(name, cell);
            }
        }
    }
    for (name, delta) in from.multi {
        into.multi.entry(name).or_default().merge(delta);
    }
}

/// Reduces a batch; events the destination cannot take are listed in `rejections`.
pub fn reduce(shape: &TableShape, events: &[BatchEvent]) -> Reduced {
    let mut reduced = Reduced::default();
    let mut by_key: HashMap<Vec<Vec<u8>>, usize> = HashMap::new();
    let mut by_partition: HashMap<Vec<Vec<u8>>, usize> = HashMap::new();
    for (index, be) in events.iter().enumerate() {
        let deltas = match event_delta(shape, be) {
            Ok(d) => d,
            Err(e) => {
                reduced.rejections.push(Rejection {
                    index,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        reduced.applied.push(index);
        for d in deltas {
            match d {
                EventDelta::Row(row) => match by_key.get(&row.key) {
                    Some(&i) => merge_row(&mut reduced.rows[i], row),
                    None => {
                        by_key.insert(row.key.clone(), reduced.rows.len());
                        reduced.rows.push(row);
                    }
                },
                EventDelta::Static(row) => match by_partition.get(&row.key) {
                    Some(&i) => merge_row(&mut reduced.static_rows[i], row),
                    None => {
                        by_partition.insert(row.key.clone(), reduced.static_rows.len());
                        reduced.static_rows.push(row);
                    }
                },
                EventDelta::Partition(pd) => reduced.partition_deletes.push(pd),
                EventDelta::Range(rd) => reduced.range_deletes.push(rd),
            }
        }
    }
    reduced
}

/// Column layout of the staging table for a batch.
pub struct Staging {
    /// (quoted name, SQL type, wire type) in COPY order.
    pub columns: Vec<(String, &'static str, Type)>,
    /// Value columns in order.
    pub values: Vec<ValueColumn>,
    pub key_count: usize,
    /// The staged rows carry `_cdc_ck` (state table of a table with clustering columns).
    pub has_ck: bool,
}

/// The staging layout of the state table: primary key, hidden row columns, `_cdc_ck`, then the
/// regular columns' cells.
pub fn staging(shape: &TableShape) -> Staging {
    let keys: Vec<&ColumnDef> = shape
        .partition_key()
        .into_iter()
        .chain(shape.clustering_key())
        .collect();
    staging_for(
        &keys,
        &shape.regular_columns(),
        !shape.clustering_key().is_empty(),
    )
}

/// The staging layout of the static table: partition key, hidden columns, static columns.
pub fn static_staging(shape: &TableShape) -> Staging {
    staging_for(&shape.partition_key(), &shape.static_columns(), false)
}

fn staging_for(keys: &[&ColumnDef], values: &[&ColumnDef], has_ck: bool) -> Staging {
    let mut columns = Vec::new();
    for c in keys {
        let pg = pg_type(&c.cql_type);
        columns.push((ident(&c.name), pg.sql_name(), wire_type(pg)));
    }
    let key_count = columns.len();
    columns.push(("_cdc_row_wt".into(), "bigint", Type::INT8));
    columns.push(("_cdc_expires_at".into(), "timestamptz", Type::TIMESTAMPTZ));
    columns.push(("_cdc_del_wt".into(), "bigint", Type::INT8));
    columns.push(("_cdc_writetime".into(), "bigint", Type::INT8));
    if has_ck {
        columns.push((CLUSTERING_KEY_COLUMN.into(), "bytea", Type::BYTEA));
    }
    let mut names = Vec::new();
    for c in values {
        let v = ValueColumn::of(c);
        if v.multi.is_some() {
            columns.push((ident(&cells_column(&c.name)), "jsonb", Type::JSONB));
            columns.push((
                ident(&collection_deletion_column(&c.name)),
                "bigint",
                Type::INT8,
            ));
        } else {
            let pg = pg_type(&c.cql_type);
            columns.push((ident(&c.name), pg.sql_name(), wire_type(pg)));
            columns.push((ident(&writetime_column(&c.name)), "bigint", Type::INT8));
            columns.push((
                ident(&expiry_column(&c.name)),
                "timestamptz",
                Type::TIMESTAMPTZ,
            ));
        }
        names.push(v);
    }
    Staging {
        columns,
        values: names,
        key_count,
        has_ck,
    }
}

/// The encoded staging row of a delta, in [`staging`] order.
pub fn staging_row(layout: &Staging, row: &RowDelta) -> Result<Vec<Option<Vec<u8>>>, CellsError> {
    let mut out: Vec<Option<Vec<u8>>> = row.key.iter().cloned().map(Some).collect();
    out.push(row.marker.map(|m| enc_i64(m.0)));
    out.push(row.marker.and_then(|m| m.1).map(enc_epoch_secs));
    out.push(row.deleted_at.map(enc_i64));
    out.push(Some(enc_i64(row.max_writetime)));
    if layout.has_ck {
        out.push(row.ck.clone());
    }
    for v in &layout.values {
        if v.multi.is_some() {
            match row.multi.get(&v.name) {
                Some(m) => {
                    out.push(m.encode_cells()?);
                    out.push(m.deletion.map(enc_i64));
                }
                None => out.extend([None, None]),
            }
            continue;
        }
        match row.cells.get(&v.name) {
            Some(c) => {
                out.push(c.value.clone());
                out.push(Some(enc_i64(c.writetime)));
                out.push(c.expires_at_secs.map(enc_epoch_secs));
            }
            None => out.extend([None, None, None]),
        }
    }
    Ok(out)
}

/// `CREATE TEMP TABLE` of a staging table with `columns`.
pub fn create_temp_table(name: &str, columns: &[(String, &'static str, Type)]) -> String {
    let cols: Vec<String> = columns.iter().map(|(n, t, _)| format!("{n} {t}")).collect();
    format!(
        "CREATE TEMP TABLE {name} ({}) ON COMMIT DROP",
        cols.join(", ")
    )
}

/// `CREATE TEMP TABLE` of the staging table.
pub fn create_staging(name: &str, layout: &Staging) -> String {
    create_temp_table(name, &layout.columns)
}

/// The one merge statement: staged rows into `target` (keyed by `keys`, quoted), cell by cell
/// by writetime, taking stored partition (and, with `_cdc_ck`, range) tombstones into account.
pub fn merge_statement(
    shape: &TableShape,
    layout: &Staging,
    staging_name: &str,
    target: &str,
    keys: &[String],
) -> String {
    let pdel = partition_deletes_table(&shape.keyspace, &shape.table);
    let pk = partition_key_names(shape);
    let mut insert_cols: Vec<String> = keys.to_vec();
    let mut select: Vec<String> = keys.iter().map(|k| format!("s.{k}")).collect();
    insert_cols.extend(
        [
            "_cdc_row_wt",
            "_cdc_expires_at",
            "_cdc_del_wt",
            "_cdc_writetime",
        ]
        .map(String::from),
    );
    select.push("s._cdc_row_wt".into());
    select.push("s._cdc_expires_at".into());
    if layout.has_ck {
        let rdel = range_deletes_table(&shape.keyspace, &shape.table);
        let rjoin: Vec<String> = pk.iter().map(|k| format!("r.{k} = s.{k}")).collect();
        select.push(format!(
            "GREATEST(s._cdc_del_wt, pd._cdc_del_wt, (SELECT max(r._cdc_del_wt) FROM {rdel} r \
             WHERE {} AND r._cdc_start <= s.{CLUSTERING_KEY_COLUMN} AND s.{CLUSTERING_KEY_COLUMN} < r._cdc_end))",
            rjoin.join(" AND ")
        ));
    } else {
        select.push("GREATEST(s._cdc_del_wt, pd._cdc_del_wt)".into());
    }
    select.push("s._cdc_writetime".into());
    let mut sets = vec![
        format!(
            "_cdc_expires_at = CASE WHEN EXCLUDED._cdc_row_wt > COALESCE(t._cdc_row_wt, {}) THEN EXCLUDED._cdc_expires_at ELSE t._cdc_expires_at END",
            super::ddl::NO_WRITETIME
        ),
        "_cdc_row_wt = GREATEST(t._cdc_row_wt, EXCLUDED._cdc_row_wt)".to_owned(),
        "_cdc_del_wt = GREATEST(t._cdc_del_wt, EXCLUDED._cdc_del_wt)".to_owned(),
        "_cdc_writetime = GREATEST(t._cdc_writetime, EXCLUDED._cdc_writetime)".to_owned(),
        "_cdc_updated_at = now()".to_owned(),
    ];
    if layout.has_ck {
        insert_cols.push(CLUSTERING_KEY_COLUMN.into());
        select.push(format!("s.{CLUSTERING_KEY_COLUMN}"));
        sets.push(format!(
            "{CLUSTERING_KEY_COLUMN} = COALESCE(EXCLUDED.{CLUSTERING_KEY_COLUMN}, t.{CLUSTERING_KEY_COLUMN})"
        ));
    }
    for v in &layout.values {
        if v.multi.is_some() {
            let (el, cd) = (
                ident(&cells_column(&v.name)),
                ident(&collection_deletion_column(&v.name)),
            );
            insert_cols.extend([el.clone(), cd.clone()]);
            select.extend([format!("s.{el}"), format!("s.{cd}")]);
            sets.push(format!(
                "{el} = public._cdc_cells_merge(t.{el}, EXCLUDED.{el}, GREATEST(t.{cd}, EXCLUDED.{cd}, t._cdc_del_wt, EXCLUDED._cdc_del_wt))"
            ));
            sets.push(format!("{cd} = GREATEST(t.{cd}, EXCLUDED.{cd})"));
            continue;
        }
        let (c, wt, exp) = (
            ident(&v.name),
            ident(&writetime_column(&v.name)),
            ident(&expiry_column(&v.name)),
        );
        insert_cols.extend([c.clone(), wt.clone(), exp.clone()]);
        select.extend([format!("s.{c}"), format!("s.{wt}"), format!("s.{exp}")]);
        let newer = format!(
            "(EXCLUDED.{wt} IS NOT NULL AND (t.{wt} IS NULL OR EXCLUDED.{wt} > t.{wt} OR (EXCLUDED.{wt} = t.{wt} AND EXCLUDED.{c} IS NULL)))"
        );
        sets.push(format!(
            "{c} = CASE WHEN {newer} THEN EXCLUDED.{c} ELSE t.{c} END"
        ));
        sets.push(format!(
            "{exp} = CASE WHEN {newer} THEN EXCLUDED.{exp} ELSE t.{exp} END"
        ));
        sets.push(format!("{wt} = GREATEST(t.{wt}, EXCLUDED.{wt})"));
    }
    let join: Vec<String> = pk.iter().map(|k| format!("pd.{k} = s.{k}")).collect();
    format!(
        "INSERT INTO {target} AS t ({}) SELECT {} FROM {staging_name} s LEFT JOIN {pdel} pd ON {} ON CONFLICT ({}) DO UPDATE SET {}",
        insert_cols.join(", "),
        select.join(", "),
        join.join(" AND "),
        keys.join(", "),
        sets.join(", ")
    )
}

/// Recomputes `_cdc_deleted` (TTL aside) for the rows of `target` selected by `filter`
/// (`t.` prefixed).
pub fn refresh_deleted(
    target: &str,
    value_columns: &[ValueColumn],
    from: &str,
    filter: &str,
) -> String {
    format!(
        "UPDATE {target} AS t SET _cdc_deleted = NOT {} {from} WHERE {filter}",
        row_live("t.", value_columns, false)
    )
}

/// `t.k1 = s.k1 AND …` over quoted key columns.
pub fn key_join(keys: &[String]) -> String {
    keys.iter()
        .map(|k| format!("t.{k} = s.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn partition_key_staging(shape: &TableShape) -> Vec<(String, &'static str, Type)> {
    shape
        .partition_key()
        .iter()
        .map(|c| {
            let pg = pg_type(&c.cql_type);
            (ident(&c.name), pg.sql_name(), wire_type(pg))
        })
        .collect()
}

/// COPY layout of [`PARTITION_DELETES_STAGING`]: partition key, `_cdc_del_wt`.
pub fn partition_deletes_staging(shape: &TableShape) -> Vec<(String, &'static str, Type)> {
    let mut cols = partition_key_staging(shape);
    cols.push(("_cdc_del_wt".into(), "bigint", Type::INT8));
    cols
}

/// The staged row of a partition tombstone.
pub fn partition_delete_row(pd: &PartitionDelete) -> Vec<Option<Vec<u8>>> {
    let mut row: Vec<Option<Vec<u8>>> = pd.partition_key.iter().cloned().map(Some).collect();
    row.push(Some(enc_i64(pd.writetime)));
    row
}

/// COPY layout of [`RANGE_DELETES_STAGING`]: partition key, bounds, `_cdc_del_wt`, `_cdc_bounds`.
pub fn range_deletes_staging(shape: &TableShape) -> Vec<(String, &'static str, Type)> {
    let mut cols = partition_key_staging(shape);
    cols.push(("_cdc_start".into(), "bytea", Type::BYTEA));
    cols.push(("_cdc_end".into(), "bytea", Type::BYTEA));
    cols.push(("_cdc_del_wt".into(), "bigint", Type::INT8));
    cols.push(("_cdc_bounds".into(), "jsonb", Type::JSONB));
    cols
}

/// The staged row of a range tombstone.
pub fn range_delete_row(rd: &RangeDelete) -> Vec<Option<Vec<u8>>> {
    let mut row: Vec<Option<Vec<u8>>> = rd.partition_key.iter().cloned().map(Some).collect();
    row.push(Some(rd.start.clone()));
    row.push(Some(rd.end.clone()));
    row.push(Some(enc_i64(rd.writetime)));
    row.push(Some(enc_jsonb(&rd.bounds)));
    row
}

/// Stores the staged partition tombstones (keeping the newest per partition).
pub fn store_partition_deletes(shape: &TableShape) -> String {
    let pdel = partition_deletes_table(&shape.keyspace, &shape.table);
    let pk = partition_key_names(shape).join(", ");
    format!(
        "INSERT INTO {pdel} AS d ({pk}, _cdc_del_wt) SELECT {pk}, max(_cdc_del_wt) FROM {PARTITION_DELETES_STAGING} GROUP BY {pk} \
         ON CONFLICT ({pk}) DO UPDATE SET _cdc_del_wt = GREATEST(d._cdc_del_wt, EXCLUDED._cdc_del_wt)"
    )
}

/// Stores the staged range tombstones (keeping the newest per range).
pub fn store_range_deletes(shape: &TableShape) -> String {
    let rdel = range_deletes_table(&shape.keyspace, &shape.table);
    let pk = partition_key_names(shape).join(", ");
    format!(
        "INSERT INTO {rdel} AS d ({pk}, _cdc_start, _cdc_end, _cdc_del_wt, _cdc_bounds) \
         SELECT {pk}, _cdc_start, _cdc_end, max(_cdc_del_wt), (array_agg(_cdc_bounds))[1] FROM {RANGE_DELETES_STAGING} \
         GROUP BY {pk}, _cdc_start, _cdc_end \
         ON CONFLICT ({pk}, _cdc_start, _cdc_end) DO UPDATE SET _cdc_del_wt = GREATEST(d._cdc_del_wt, EXCLUDED._cdc_del_wt)"
    )
}

/// Applies the staged partition tombstones to the stored rows of `target` (state or static
/// table): raises their `_cdc_del_wt`, then refreshes `_cdc_deleted`.
pub fn apply_partition_deletes(
    shape: &TableShape,
    target: &str,
    values: &[ValueColumn],
) -> [String; 2] {
    let pk = partition_key_names(shape);
    let cols = pk.join(", ");
    let join = key_join(&pk);
    let agg = format!(
        "(SELECT {cols}, max(_cdc_del_wt) AS _cdc_del_wt FROM {PARTITION_DELETES_STAGING} GROUP BY {cols}) s"
    );
    [
        format!(
            "UPDATE {target} AS t SET _cdc_del_wt = s._cdc_del_wt, _cdc_updated_at = now() FROM {agg} \
             WHERE {join} AND (t._cdc_del_wt IS NULL OR t._cdc_del_wt < s._cdc_del_wt)"
        ),
        refresh_deleted(target, values, &format!("FROM {agg}"), &join),
    ]
}

/// Applies the staged range tombstones to the stored rows of the state table: the covered rows
/// (with their newest covering tombstone) go to a temporary table, then `_cdc_del_wt` and
/// `_cdc_deleted` are updated from it.
pub fn apply_range_deletes(shape: &TableShape, state: &str, values: &[ValueColumn]) -> [String; 3] {
    let pk = partition_key_names(shape);
    let keys = super::ddl::key_names(shape);
    let on: Vec<String> = pk.iter().map(|k| format!("r.{k} = t.{k}")).collect();
    let tk: Vec<String> = keys.iter().map(|k| format!("t.{k}")).collect();
    let join = key_join(&keys);
    [
        format!(
            "CREATE TEMP TABLE _cdc_rd_hits ON COMMIT DROP AS SELECT {}, max(r._cdc_del_wt) AS _cdc_del_wt \
             FROM {state} t JOIN {RANGE_DELETES_STAGING} r ON {} AND r._cdc_start <= t.{CLUSTERING_KEY_COLUMN} \
             AND t.{CLUSTERING_KEY_COLUMN} < r._cdc_end GROUP BY {}",
            tk.join(", "),
            on.join(" AND "),
            tk.join(", ")
        ),
        format!(
            "UPDATE {state} AS t SET _cdc_del_wt = s._cdc_del_wt, _cdc_updated_at = now() FROM _cdc_rd_hits s \
             WHERE {join} AND (t._cdc_del_wt IS NULL OR t._cdc_del_wt < s._cdc_del_wt)"
        ),
        refresh_deleted(state, values, "FROM _cdc_rd_hits s", &join),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::compliance::EventFactory;
    use crate::destination::{BatchEvent, SourceOffset};
    use crate::envelope;

    fn shape() -> TableShape {
        let schema = crate::compliance::schema("ks", "t");
        let mut f = EventFactory::new("ks", "t");
        let e = f.insert(1, "x", 1, 1);
        let bytes = cdc_model::json_codec::encode_event(&e, &schema).unwrap_or_default();
        envelope::decode(&bytes)
            .map(|(_, s)| s)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn batch(events: Vec<cdc_model::ChangeEvent>) -> Vec<BatchEvent> {
        events
            .into_iter()
            .enumerate()
            .map(|(i, event)| BatchEvent {
                event,
                source: SourceOffset {
                    topic: "cdc.masked.ks.t".into(),
                    partition: 0,
                    offset: i as i64,
                },
                payload_bytes: 0,
            })
            .collect()
    }

    /// What a reader sees per key: (row live, visible name bytes, visible score bytes).
    type Visible = BTreeMap<Vec<Vec<u8>>, (bool, Option<Vec<u8>>, Option<Vec<u8>>)>;

    fn visible(r: &Reduced) -> Visible {
        r.rows
            .iter()
            .map(|row| {
                let del = row.deleted_at.unwrap_or(i64::MIN);
                let cell = |name: &str| {
                    row.cells
                        .get(name)
                        .filter(|c| c.writetime > del)
                        .and_then(|c| c.value.clone())
                };
                let (name, score) = (cell("name"), cell("score"));
                let marker = row.marker.is_some_and(|m| m.0 > del);
                (
                    row.key.clone(),
                    (marker || name.is_some() || score.is_some(), name, score),
                )
            })
            .collect()
    }

    #[test]
    fn rapid_changes_reduce_to_one_row_with_the_newest_cells() {
        let mut f = EventFactory::new("ks", "t");
        let mut events = vec![f.insert(1, "a", 0, 10)];
        events.extend((1..=50).map(|s| f.update_score(1, s, 10 + s)));
        let r = reduce(&shape(), &batch(events));
        assert!(r.rejections.is_empty());
        assert_eq!(r.rows.len(), 1);
        let score = r.rows[0]
            .cells
            .get("score")
            .map(|c| (c.writetime, c.value.clone()));
        assert_eq!(score, Some((60, Some(50i64.to_be_bytes().to_vec()))));
        assert_eq!(r.rows[0].marker, Some((10, None)));
    }

    #[test]
    fn tombstones_win_ties_and_old_writes_stay_shadowed() {
        let mut f = EventFactory::new("ks", "t");
        let events = vec![
            f.update_name(1, "v", 20),
            f.delete_name(1, 20),
            f.delete(2, 50),
            f.insert(2, "zombie", 1, 40),
        ];
        let v = visible(&reduce(&shape(), &batch(events)));
        let one = v.get(&vec![1i32.to_be_bytes().to_vec()]).cloned();
        assert_eq!(one, Some((false, None, None)));
        let two = v.get(&vec![2i32.to_be_bytes().to_vec()]).cloned();
        assert_eq!(two, Some((false, None, None)));
    }

    #[test]
    fn poison_values_and_unsupported_changes_are_rejected_by_index() {
        let mut f = EventFactory::new("ks", "t");
        let mut counter = f.update_score(3, 1, 1);
        counter.cells[0].change = CellValue::Counter { shards: Vec::new() };
        let events = vec![f.insert(1, "ok", 1, 1), f.insert(2, "bad\0", 1, 1), counter];
        let r = reduce(&shape(), &batch(events));
        let idx: Vec<usize> = r.rejections.iter().map(|x| x.index).collect();
        assert_eq!(idx, vec![1, 2]);
        assert!(r.rejections[0].reason.contains("name"));
        assert!(
            !r.rejections[0].reason.contains("bad"),
            "no value in the reason"
        );
        assert_eq!(r.applied, vec![0]);
    }

    #[test]
    fn collection_overwrites_and_element_updates_become_element_cells() {
        use cdc_model::{CellChange, CellPath, ComplexDeletion, CqlType, CqlValue, ElementChange};
        let ty = CqlType::parse("set<text>").unwrap_or_else(|e| panic!("{e}"));
        let mut shape = shape();
        shape.columns.push(crate::destination::ColumnDef {
            name: "tags".into(),
            cql_type: ty,
            kind: cdc_model::ColumnKind::Regular,
        });
        let mut f = EventFactory::new("ks", "t");
        let element = |v: &str, wt: i64, live: bool| ElementChange {
            path: CellPath::SetElement(CqlValue::Text(v.into())),
            value: live.then_some(CqlValue::Empty),
            writetime_micros: wt,
            ttl: None,
        };
        let tags = |deletion: Option<i64>, elements: Vec<ElementChange>| CellChange {
            column: "tags".into(),
            writetime_micros: 10,
            ttl: None,
            change: CellValue::Complex {
                deletion: deletion.map(|d| ComplexDeletion {
                    marked_for_delete_at_micros: d,
                    local_deletion_time_secs: 0,
                }),
                elements,
            },
        };
        // An older add, the overwrite {a, b} at 10, then an add and a removal after it.
        let mut old = f.update_score(1, 1, 5);
        old.cells = vec![tags(None, vec![element("z", 5, true)])];
        let mut overwrite = f.update_score(1, 1, 10);
        overwrite.cells.push(tags(
            Some(9),
            vec![element("a", 10, true), element("b", 10, true)],
        ));
        let mut change = f.update_score(1, 2, 11);
        change.cells = vec![tags(
            None,
            vec![element("c", 11, true), element("a", 11, false)],
        )];
        let r = reduce(&shape, &batch(vec![change, old, overwrite]));
        assert!(r.rejections.is_empty(), "{:?}", r.rejections);
        let cells = r.rows[0].multi.get("tags").cloned().unwrap_or_default();
        let visible: Vec<serde_json::Value> = cells
            .visible(None, 0)
            .values()
            .filter_map(|c| c.get("p").cloned())
            .collect();
        assert_eq!(
            visible,
            vec![serde_json::json!("b"), serde_json::json!("c")]
        );
        let layout = staging(&shape);
        let row = staging_row(&layout, &r.rows[0]).unwrap_or_default();
        assert_eq!(row.len(), layout.columns.len());
    }

    fn arb_events() -> impl Strategy<Value = Vec<(u8, i32, i64)>> {
        // (kind, key, writetime): values derive from the writetime, so equal writetimes carry
        // equal values (different values at one writetime are Cassandra's byte-order tie).
        prop::collection::vec((0u8..5, 0i32..3, 1i64..12), 1..25)
    }

    fn build(spec: &[(u8, i32, i64)]) -> Vec<cdc_model::ChangeEvent> {
        let mut f = EventFactory::new("ks", "t");
        spec.iter()
            .map(|&(kind, key, wt)| match kind {
                0 => f.insert(key, &format!("n{wt}"), wt, wt),
                1 => f.update_score(key, wt, wt),
                2 => f.update_name(key, &format!("n{wt}"), wt),
                3 => f.delete_name(key, wt),
                _ => f.delete(key, wt),
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn any_order_and_any_split_converge(spec in arb_events(), seed in any::<u64>(), split in 0usize..25) {
            let shape = shape();
            let events = build(&spec);
            let whole = visible(&reduce(&shape, &batch(events.clone())));
            // A permutation.
            let mut shuffled = events.clone();
            let n = shuffled.len();
            let mut s = seed;
            for i in (1..n).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            prop_assert_eq!(&visible(&reduce(&shape, &batch(shuffled))), &whole);
            // Reduced twice (a replay inside one batch).
            let mut doubled = events.clone();
            doubled.extend(events.iter().cloned());
            prop_assert_eq!(&visible(&reduce(&shape, &batch(doubled))), &whole);
            // Two batches merged with the same rule the SQL uses.
            let k = split.min(n);
            let a = reduce(&shape, &batch(events[..k].to_vec()));
            let b = reduce(&shape, &batch(events[k..].to_vec()));
            let mut merged = a;
            for row in b.rows {
                match merged.rows.iter().position(|r| r.key == row.key) {
                    Some(i) => merge_row(&mut merged.rows[i], row),
                    None => merged.rows.push(row),
                }
            }
            prop_assert_eq!(&visible(&merged), &whole);
        }
    }
}
