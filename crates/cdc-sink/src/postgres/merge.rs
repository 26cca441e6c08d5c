//! The convergent apply: events of a batch are first reduced per primary key with the same
//! last-write-wins rules the SQL merge uses (so a key touched several times in one batch becomes
//! one staged row), then COPYed in binary into a temporary staging table and merged into the
//! state table by one `INSERT … ON CONFLICT DO UPDATE` comparing writetimes cell by cell.
//!
//! Rules (ARCHITECTURE §4): a cell replaces the stored cell when its writetime is greater, or equal
//! and it is a tombstone; the row marker and the tombstone writetime keep their maximum; a cell or
//! marker is live only when written after the row's tombstone writetime. Ties between two
//! different values at the same writetime keep the stored one (Cassandra compares the bytes; such
//! ties need two writers in the same microsecond).

use std::collections::HashMap;

use bytes::BytesMut;
use cdc_model::{
    CellPath, CellValue, ClusteringBound, ColumnKind, CqlType, CqlValue, DeletionScope,
    ElementChange, KeyColumn,
};
use cdc_typemap::postgres::{PgType, encode_binary, pg_type};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::ddl::{NO_WRITETIME, row_live};
use super::naming::{expiry_column, ident, partition_deletes_table, writetime_column};
use crate::destination::{BatchEvent, ColumnDef, Rejection, TableShape};
use crate::error::Error;

/// Microseconds between 1970-01-01 and 2000-01-01.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

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
    /// Row marker writetime and expiry.
    pub marker: Option<(i64, Option<i64>)>,
    pub deleted_at: Option<i64>,
    pub max_writetime: i64,
    pub cells: HashMap<String, CellDelta>,
}

/// A partition tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDelete {
    pub partition_key: Vec<Vec<u8>>,
    pub writetime: i64,
}

/// A range tombstone: clustering prefix bounds (empty = unbounded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeDelete {
    pub partition_key: Vec<Vec<u8>>,
    pub start: (Vec<Vec<u8>>, bool),
    pub end: (Vec<Vec<u8>>, bool),
    pub writetime: i64,
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

fn bound(shape: &TableShape, b: &ClusteringBound) -> Result<(Vec<Vec<u8>>, bool), Error> {
    Ok((encode_key(shape, &b.prefix)?, b.inclusive))
}

/// The part of one event that the merge applies.
enum EventDelta {
    Row(RowDelta),
    Static(RowDelta),
    Partition(PartitionDelete),
    Range(RangeDelete),
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
    let mut out = Vec::new();
    let mut statics = RowDelta {
        key: pk.clone(),
        marker: None,
        deleted_at: None,
        max_writetime: e.max_writetime_micros().unwrap_or(0),
        cells: HashMap::new(),
    };
    let mut row = RowDelta {
        key: Vec::new(),
        marker: e
            .liveness
            .map(|l| (l.writetime_micros, l.ttl.map(|t| t.expires_at_secs))),
        deleted_at: None,
        max_writetime: e.max_writetime_micros().unwrap_or(0),
        cells: HashMap::new(),
    };
    for cell in &e.cells {
        let def = shape
            .column(&cell.column)
            .ok_or_else(|| schema_err(shape, &cell.column, "column type unknown"))?;
        let value = match &cell.change {
            CellValue::Set { value } => encode_binary(&def.cql_type, value)
                .map_err(|source| value_err(shape, &cell.column, source))?,
            CellValue::Tombstone => None,
            CellValue::Complex {
                deletion: Some(_),
                elements,
            } => {
                // A whole-value overwrite (`SET c = …`): the deletion shadows every older
                // element, so the elements are the complete new value.
                let whole = whole_value(&def.cql_type, elements).ok_or_else(|| {
                    unsupported(
                        shape,
                        "a collection overwrite with expiring or deleted elements",
                    )
                })?;
                match whole {
                    Some(v) => encode_binary(&def.cql_type, &v)
                        .map_err(|source| value_err(shape, &cell.column, source))?,
                    None => None,
                }
            }
            CellValue::Complex { deletion: None, .. } => {
                return Err(unsupported(
                    shape,
                    "an element-level update of a non-frozen collection/UDT",
                ));
            }
            CellValue::Counter { .. } => return Err(unsupported(shape, "a counter update")),
        };
        let target = if def.kind == ColumnKind::Static {
            &mut statics
        } else {
            &mut row
        };
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
            out.push(EventDelta::Range(RangeDelete {
                partition_key: pk.clone(),
                start: bound(shape, start)?,
                end: bound(shape, end)?,
                writetime: wt,
            }));
        }
        None => {}
    }
    if !statics.cells.is_empty() {
        out.push(EventDelta::Static(statics));
    }
    // A static row carries no clustering row (its liveness is the partition's).
    if e.is_static {
        row.marker = None;
    }
    let touches_row = row.marker.is_some() || row.deleted_at.is_some() || !row.cells.is_empty();
    if touches_row {
        if !full_key {
            return Err(schema_err(
                shape,
                "",
                "a row change without its full clustering key",
            ));
        }
        row.key = pk;
        row.key.extend(encode_key(shape, &e.clustering_key)?);
        out.push(EventDelta::Row(row));
    }
    Ok(out)
}

/// The complete value of a non-frozen collection/UDT from an overwrite's elements; `Some(None)`
/// for an empty collection (NULL); `None` when an element is a tombstone or expires (the value
/// would then change over time, which this layout cannot express).
fn whole_value(ty: &CqlType, elements: &[ElementChange]) -> Option<Option<CqlValue>> {
    if elements
        .iter()
        .any(|e| e.value.is_none() || e.ttl.is_some())
    {
        return None;
    }
    if elements.is_empty() {
        return Some(None);
    }
    let value = match ty {
        CqlType::List { .. } => {
            CqlValue::List(elements.iter().filter_map(|e| e.value.clone()).collect())
        }
        CqlType::Set { .. } => CqlValue::Set(
            elements
                .iter()
                .filter_map(|e| match &e.path {
                    CellPath::SetElement(v) => Some(v.clone()),
                    _ => None,
                })
                .collect(),
        ),
        CqlType::Map { .. } => CqlValue::Map(
            elements
                .iter()
                .filter_map(|e| match (&e.path, &e.value) {
                    (CellPath::MapKey(k), Some(v)) => Some((k.clone(), v.clone())),
                    _ => None,
                })
                .collect(),
        ),
        CqlType::Udt { fields, .. } => CqlValue::Udt(
            fields
                .iter()
                .map(|(name, _)| {
                    let v = elements.iter().find_map(|e| match &e.path {
                        CellPath::UdtField(f) if f == name => e.value.clone(),
                        _ => None,
                    });
                    (name.clone(), v)
                })
                .collect(),
        ),
        _ => return None,
    };
    Some(Some(value))
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
    /// Value columns (unquoted) in order.
    pub values: Vec<String>,
    pub key_count: usize,
}

/// The staging layout of the state table: primary key, hidden row columns, then
/// value/writetime/expiry triples of the regular columns.
pub fn staging(shape: &TableShape) -> Staging {
    let keys: Vec<&ColumnDef> = shape
        .partition_key()
        .into_iter()
        .chain(shape.clustering_key())
        .collect();
    staging_for(&keys, &shape.regular_columns())
}

/// The staging layout of the static table: partition key, hidden columns, static columns.
pub fn static_staging(shape: &TableShape) -> Staging {
    staging_for(&shape.partition_key(), &shape.static_columns())
}

fn staging_for(keys: &[&ColumnDef], values: &[&ColumnDef]) -> Staging {
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
    let mut names = Vec::new();
    for c in values {
        let pg = pg_type(&c.cql_type);
        columns.push((ident(&c.name), pg.sql_name(), wire_type(pg)));
        columns.push((ident(&writetime_column(&c.name)), "bigint", Type::INT8));
        columns.push((
            ident(&expiry_column(&c.name)),
            "timestamptz",
            Type::TIMESTAMPTZ,
        ));
        names.push(c.name.clone());
    }
    Staging {
        columns,
        values: names,
        key_count,
    }
}

/// The encoded staging row of a delta, in [`staging`] order.
pub fn staging_row(layout: &Staging, row: &RowDelta) -> Vec<Option<Vec<u8>>> {
    let mut out: Vec<Option<Vec<u8>>> = row.key.iter().cloned().map(Some).collect();
    out.push(row.marker.map(|m| enc_i64(m.0)));
    out.push(row.marker.and_then(|m| m.1).map(enc_epoch_secs));
    out.push(row.deleted_at.map(enc_i64));
    out.push(Some(enc_i64(row.max_writetime)));
    for name in &layout.values {
        match row.cells.get(name) {
            Some(c) => {
                out.push(c.value.clone());
                out.push(Some(enc_i64(c.writetime)));
                out.push(c.expires_at_secs.map(enc_epoch_secs));
            }
            None => out.extend([None, None, None]),
        }
    }
    out
}

/// `CREATE TEMP TABLE` of the staging table.
pub fn create_staging(name: &str, layout: &Staging) -> String {
    let cols: Vec<String> = layout
        .columns
        .iter()
        .map(|(n, t, _)| format!("{n} {t}"))
        .collect();
    format!(
        "CREATE TEMP TABLE {name} ({}) ON COMMIT DROP",
        cols.join(", ")
    )
}

/// The one merge statement: staged rows into `target` (keyed by `keys`, quoted), cell by cell
/// by writetime, taking partition tombstones into account.
pub fn merge_statement(
    shape: &TableShape,
    layout: &Staging,
    staging_name: &str,
    target: &str,
    keys: &[String],
) -> String {
    let state = target;
    let pdel = partition_deletes_table(&shape.keyspace, &shape.table);
    let keys = keys.to_vec();
    let pk: Vec<String> = shape
        .partition_key()
        .iter()
        .map(|c| ident(&c.name))
        .collect();
    let mut insert_cols: Vec<String> = keys.clone();
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
    select.push("GREATEST(s._cdc_del_wt, pd._cdc_del_wt)".into());
    select.push("s._cdc_writetime".into());
    let mut sets = vec![
        format!(
            "_cdc_expires_at = CASE WHEN EXCLUDED._cdc_row_wt > COALESCE(t._cdc_row_wt, {NO_WRITETIME}) THEN EXCLUDED._cdc_expires_at ELSE t._cdc_expires_at END"
        ),
        "_cdc_row_wt = GREATEST(t._cdc_row_wt, EXCLUDED._cdc_row_wt)".to_owned(),
        "_cdc_del_wt = GREATEST(t._cdc_del_wt, EXCLUDED._cdc_del_wt)".to_owned(),
        "_cdc_writetime = GREATEST(t._cdc_writetime, EXCLUDED._cdc_writetime)".to_owned(),
        "_cdc_updated_at = now()".to_owned(),
    ];
    for v in &layout.values {
        let (c, wt, exp) = (
            ident(v),
            ident(&writetime_column(v)),
            ident(&expiry_column(v)),
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
        "INSERT INTO {state} AS t ({}) SELECT {} FROM {staging_name} s LEFT JOIN {pdel} pd ON {} ON CONFLICT ({}) DO UPDATE SET {}",
        insert_cols.join(", "),
        select.join(", "),
        join.join(" AND "),
        keys.join(", "),
        sets.join(", ")
    )
}

/// Recomputes `_cdc_deleted` (TTL aside) for the rows of `target` selected by `filter`
/// (`t.` prefixed).
pub fn refresh_deleted(target: &str, value_columns: &[String], from: &str, filter: &str) -> String {
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

/// `t."pk1" = $n AND …` over the partition key, parameters starting at `$first`.
pub fn partition_filter(shape: &TableShape, first: usize) -> String {
    shape
        .partition_key()
        .iter()
        .enumerate()
        .map(|(i, c)| format!("t.{} = ${}", ident(&c.name), first + i))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Row comparison of a clustering prefix with parameters: `(t."c1", t."c2") >= ($3, $4)`.
pub fn prefix_compare(shape: &TableShape, len: usize, op: &str, first: usize) -> Option<String> {
    if len == 0 {
        return None;
    }
    let cols: Vec<String> = shape
        .clustering_key()
        .iter()
        .take(len)
        .map(|c| format!("t.{}", ident(&c.name)))
        .collect();
    let params: Vec<String> = (0..len).map(|i| format!("${}", first + i)).collect();
    Some(format!(
        "({}) {op} ({})",
        cols.join(", "),
        params.join(", ")
    ))
}

/// The cast of a key parameter (so PostgreSQL infers the right type in row comparisons).
pub fn key_types(shape: &TableShape) -> Vec<CqlType> {
    shape
        .partition_key()
        .into_iter()
        .chain(shape.clustering_key())
        .map(|c| c.cql_type.clone())
        .collect()
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
    fn collection_overwrites_are_whole_values_and_element_updates_are_rejected() {
        use cdc_model::{CellChange, ComplexDeletion};
        let ty = CqlType::parse("set<text>").unwrap_or_else(|e| panic!("{e}"));
        let mut shape = shape();
        shape.columns.push(crate::destination::ColumnDef {
            name: "tags".into(),
            cql_type: ty,
            kind: cdc_model::ColumnKind::Regular,
        });
        let mut f = EventFactory::new("ks", "t");
        let mut overwrite = f.update_score(1, 1, 10);
        let element = |v: &str| ElementChange {
            path: CellPath::SetElement(CqlValue::Text(v.into())),
            value: Some(CqlValue::Empty),
            writetime_micros: 10,
            ttl: None,
        };
        overwrite.cells.push(CellChange {
            column: "tags".into(),
            writetime_micros: 10,
            ttl: None,
            change: CellValue::Complex {
                deletion: Some(ComplexDeletion {
                    marked_for_delete_at_micros: 9,
                    local_deletion_time_secs: 0,
                }),
                elements: vec![element("a"), element("b")],
            },
        });
        let mut append = overwrite.clone();
        if let Some(CellValue::Complex { deletion, .. }) =
            append.cells.last_mut().map(|c| &mut c.change)
        {
            *deletion = None;
        }
        let r = reduce(&shape, &batch(vec![overwrite, append]));
        assert_eq!(r.applied, vec![0]);
        assert_eq!(r.rejections.len(), 1);
        let tags = r.rows[0].cells.get("tags").and_then(|c| c.value.clone());
        let mut expected = vec![1u8];
        expected.extend_from_slice(br#"["a","b"]"#);
        assert_eq!(tags, Some(expected));
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
