//! Change events → RowBinary rows of the state table (layout in [`super::ddl`]). Pure.
//!
//! One event gives at most two rows: its deletion (a row, partition or range tombstone) and its
//! data (row marker and cells; static cells go to the partition-level row). Each cell is written
//! with its own writetime and state, so partial updates carry only the columns they wrote.
//! Non-frozen lists, sets and maps are written element by element (each element with its own
//! writetime, plus the collection's deletion time), so appends, removals and overwrites converge
//! per element. Counters are stored per shard (counter id → running count, versioned by clock)
//! and summed by the view. Non-frozen UDTs are stored per field (path = field position, value =
//! the UDT tuple with only that field set), so field updates converge like collection elements.

use std::collections::HashMap;

use cdc_model::{CellPath, CellValue, ChangeEvent, CqlType, CqlValue, DeletionScope, KeyColumn};
use cdc_typemap::clickhouse::{ChType, column_type, value_type, write_default, write_row_binary};
use uuid::Uuid;

use super::ddl::{KIND_PARTITION, KIND_RANGE, KIND_ROW, NO_TIME, TableLayout};
use super::error::Error;
use crate::destination::TableShape;

/// Encodes events of one table shape (the insert carries exactly the shape's columns).
#[derive(Debug, Clone)]
pub struct RowEncoder {
    layout: TableLayout,
    key_types: Vec<ChType>,
    ck_types: Vec<ChType>,
    values: Vec<(String, CqlType, ChType)>,
    /// Element (path, value) types of the multi-cell columns, by value index.
    elements: Vec<Option<(ChType, ChType)>>,
    value_index: HashMap<String, usize>,
}

enum CellOut {
    Set {
        value: CqlValue,
        wt: i64,
        exp: Option<i64>,
    },
    Tombstone {
        wt: i64,
    },
    /// A non-frozen list/set/map change: an optional whole-collection deletion time and element
    /// changes (`value: None` = element tombstone).
    Multi {
        deletion: i64,
        elements: Vec<ElementOut>,
    },
}

struct ElementOut {
    path: ElementPath,
    value: Option<CqlValue>,
    wt: i64,
    exp: Option<i64>,
}

enum ElementPath {
    /// A list element's sortable key.
    Text(String),
    /// A set element or a map key.
    Value(CqlValue),
}

/// A list element key that sorts like Cassandra orders list cells: by the timeuuid's timestamp.
fn list_key(id: &Uuid) -> String {
    let ticks = id.get_timestamp().map_or(0, |t| t.to_gregorian().0);
    format!("{ticks:015x}{}", id.simple())
}

/// Keys for the elements of a whole list value (no timeuuids): ordered, and older than any real
/// list cell so later appends sort after them.
fn synthetic_list_key(index: usize) -> String {
    format!("{:015x}{index:032x}", 0)
}

impl RowEncoder {
    /// The encoder for `shape` in `database`.
    pub fn new(database: &str, shape: &TableShape) -> RowEncoder {
        let layout = TableLayout::from_shape(database, shape);
        let key_types = shape
            .partition_key()
            .iter()
            .chain(shape.clustering_key().iter())
            .map(|c| value_type(&c.cql_type))
            .collect();
        let ck_types = shape
            .clustering_key()
            .iter()
            .map(|c| value_type(&c.cql_type))
            .collect();
        let values: Vec<(String, CqlType, ChType)> = shape
            .value_columns()
            .iter()
            .map(|c| (c.name.clone(), c.cql_type.clone(), column_type(&c.cql_type)))
            .collect();
        let elements = shape
            .value_columns()
            .iter()
            .map(|c| super::ddl::element_types(&c.cql_type))
            .collect();
        let value_index = values
            .iter()
            .enumerate()
            .map(|(i, (n, _, _))| (n.clone(), i))
            .collect();
        RowEncoder {
            layout,
            key_types,
            ck_types,
            values,
            elements,
            value_index,
        }
    }

    /// The layout of the insert (the shape's columns).
    pub fn layout(&self) -> &TableLayout {
        &self.layout
    }

    fn unsupported(&self, column: &str, reason: &'static str) -> Error {
        Error::Unsupported {
            relation: self.layout.relation(),
            column: column.to_owned(),
            reason,
        }
    }

    fn value_error(
        &self,
        column: &str,
        source: cdc_typemap::clickhouse::ClickHouseValueError,
    ) -> Error {
        Error::Value {
            relation: self.layout.relation(),
            column: column.to_owned(),
            source,
        }
    }

    /// Appends the rows of `event` to `out`; on error nothing is appended. Returns the row count.
    pub fn encode(
        &self,
        event: &ChangeEvent,
        partition: i32,
        offset: i64,
        out: &mut Vec<u8>,
    ) -> Result<usize, Error> {
        let mut buf = Vec::new();
        let mut rows = 0;
        if let Some(deletion) = &event.deletion {
            let wt = deletion.marked_for_delete_at_micros;
            match &deletion.scope {
                DeletionScope::Row => {
                    self.write_head(&mut buf, event, KIND_ROW, None, wt, None)?;
                }
                DeletionScope::Partition => {
                    self.write_head(&mut buf, event, KIND_PARTITION, None, wt, None)?;
                }
                DeletionScope::Range { start, end } => {
                    let bounds = RangeBounds {
                        start: &start.prefix,
                        start_incl: start.inclusive,
                        end: &end.prefix,
                        end_incl: end.inclusive,
                    };
                    self.write_head(&mut buf, event, KIND_RANGE, None, wt, Some(bounds))?;
                }
            }
            self.write_tail(&mut buf, partition, offset, &[])?;
            rows += 1;
        }
        let has_data = !event.cells.is_empty() || (event.liveness.is_some() && !event.is_static);
        if has_data {
            let cells = self.cells(event)?;
            let kind = if event.is_static {
                KIND_PARTITION
            } else {
                KIND_ROW
            };
            let live = if event.is_static {
                None
            } else {
                event
                    .liveness
                    .map(|l| (l.writetime_micros, l.ttl.map(|t| t.expires_at_secs)))
            };
            self.write_head(&mut buf, event, kind, live, NO_TIME, None)?;
            self.write_tail(&mut buf, partition, offset, &cells)?;
            rows += 1;
        }
        out.extend_from_slice(&buf);
        Ok(rows)
    }

    fn cells(&self, event: &ChangeEvent) -> Result<Vec<Option<CellOut>>, Error> {
        let mut cells: Vec<Option<CellOut>> = (0..self.values.len()).map(|_| None).collect();
        for cell in &event.cells {
            let Some(&i) = self.value_index.get(&cell.column) else {
                return Err(self.unsupported(&cell.column, "the column is not in the table shape"));
            };
            let cql = &self.values[i].1;
            let exp = cell.ttl.map(|t| t.expires_at_secs);
            if self.elements[i].is_some() {
                cells[i] = Some(self.multi_cell(cql, cell)?);
                continue;
            }
            let out = match &cell.change {
                CellValue::Set { value } => CellOut::Set {
                    value: value.clone(),
                    wt: cell.writetime_micros,
                    exp,
                },
                CellValue::Tombstone => CellOut::Tombstone {
                    wt: cell.writetime_micros,
                },
                CellValue::Complex { deletion, elements } => {
                    let Some(deletion) = deletion else {
                        return Err(self.unsupported(
                            &cell.column,
                            "element-level updates of non-frozen collections are not supported by the ClickHouse sink yet",
                        ));
                    };
                    if elements.is_empty() {
                        CellOut::Tombstone {
                            wt: deletion.marked_for_delete_at_micros,
                        }
                    } else {
                        let value = self.assemble(&cell.column, cql, elements)?;
                        let exp = exp.or_else(|| {
                            elements
                                .iter()
                                .filter_map(|e| e.ttl.map(|t| t.expires_at_secs))
                                .min()
                        });
                        CellOut::Set {
                            value,
                            wt: cell.writetime_micros,
                            exp,
                        }
                    }
                }
                CellValue::Counter { .. } => {
                    return Err(self.unsupported(
                        &cell.column,
                        "counter columns are not supported by the ClickHouse sink yet",
                    ));
                }
            };
            cells[i] = Some(out);
        }
        Ok(cells)
    }

    /// A change to a non-frozen list, set or map, element by element.
    fn multi_cell(&self, cql: &CqlType, cell: &cdc_model::CellChange) -> Result<CellOut, Error> {
        let exp = cell.ttl.map(|t| t.expires_at_secs);
        let wt = cell.writetime_micros;
        let element = |path, value| ElementOut {
            path,
            value,
            wt,
            exp,
        };
        let mismatch =
            || self.unsupported(&cell.column, "element paths do not match the column type");
        // A UDT field as an element: its position, and the UDT with only that field set.
        let udt_field = |name: &str,
                         value: Option<&CqlValue>|
         -> Result<(ElementPath, Option<CqlValue>), Error> {
            let CqlType::Udt { fields, .. } = cql else {
                return Err(mismatch());
            };
            let index = fields
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(mismatch)?;
            let index = i16::try_from(index).map_err(|_| mismatch())?;
            let value = value.map(|v| {
                CqlValue::Udt(
                    fields
                        .iter()
                        .map(|(n, _)| (n.clone(), (n == name).then(|| v.clone())))
                        .collect(),
                )
            });
            Ok((ElementPath::Value(CqlValue::Smallint(index)), value))
        };
        Ok(match &cell.change {
            CellValue::Complex { deletion, elements } => CellOut::Multi {
                deletion: deletion.map_or(NO_TIME, |d| d.marked_for_delete_at_micros),
                elements: elements
                    .iter()
                    .map(|e| {
                        let (path, value) = match (&e.path, cql) {
                            (CellPath::ListIndex(id), CqlType::List { .. }) => {
                                (ElementPath::Text(list_key(id)), e.value.clone())
                            }
                            (CellPath::SetElement(v), CqlType::Set { .. })
                            | (CellPath::MapKey(v), CqlType::Map { .. }) => {
                                (ElementPath::Value(v.clone()), e.value.clone())
                            }
                            (CellPath::UdtField(name), CqlType::Udt { .. }) => {
                                udt_field(name, e.value.as_ref())?
                            }
                            _ => return Err(mismatch()),
                        };
                        Ok(ElementOut {
                            path,
                            value,
                            wt: e.writetime_micros,
                            exp: e.ttl.map(|t| t.expires_at_secs),
                        })
                    })
                    .collect::<Result<_, _>>()?,
            },
            CellValue::Tombstone => CellOut::Multi {
                deletion: wt,
                elements: Vec::new(),
            },
            // A whole value (not how the commit log writes non-frozen collections, but valid):
            // replace everything older.
            CellValue::Set { value } => {
                let elements = match value {
                    CqlValue::List(items) => items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            element(ElementPath::Text(synthetic_list_key(i)), Some(v.clone()))
                        })
                        .collect(),
                    CqlValue::Set(items) => items
                        .iter()
                        .map(|v| element(ElementPath::Value(v.clone()), Some(CqlValue::Empty)))
                        .collect(),
                    CqlValue::Map(entries) => entries
                        .iter()
                        .map(|(k, v)| element(ElementPath::Value(k.clone()), Some(v.clone())))
                        .collect(),
                    CqlValue::Udt(values) => values
                        .iter()
                        .filter_map(|(name, v)| v.as_ref().map(|v| (name, v)))
                        .map(|(name, v)| {
                            let (path, value) = udt_field(name, Some(v))?;
                            Ok(element(path, value))
                        })
                        .collect::<Result<_, Error>>()?,
                    CqlValue::Empty => Vec::new(),
                    _ => return Err(mismatch()),
                };
                CellOut::Multi {
                    deletion: wt.saturating_sub(1),
                    elements,
                }
            }
            CellValue::Counter { shards } => {
                if shards
                    .iter()
                    .any(|sh| sh.kind != cdc_model::CounterShardKind::Global)
                {
                    return Err(self.unsupported(
                        &cell.column,
                        "pre-2.1 local/remote counter shards are not supported",
                    ));
                }
                CellOut::Multi {
                    deletion: NO_TIME,
                    elements: shards
                        .iter()
                        .map(|sh| ElementOut {
                            path: ElementPath::Value(CqlValue::Uuid(sh.counter_id)),
                            value: Some(CqlValue::Bigint(sh.count)),
                            wt: sh.clock,
                            exp: None,
                        })
                        .collect(),
                }
            }
        })
    }

    /// Builds the whole value of a replaced non-frozen collection or UDT from its elements.
    fn assemble(
        &self,
        column: &str,
        cql: &CqlType,
        elements: &[cdc_model::ElementChange],
    ) -> Result<CqlValue, Error> {
        let tombstone = || {
            self.unsupported(
                column,
                "element tombstones in a collection overwrite are not supported",
            )
        };
        let shape = || self.unsupported(column, "element paths do not match the column type");
        match cql {
            CqlType::List { .. } => elements
                .iter()
                .map(|e| e.value.clone().ok_or_else(tombstone))
                .collect::<Result<_, _>>()
                .map(CqlValue::List),
            CqlType::Set { .. } => elements
                .iter()
                .map(|e| match (&e.path, &e.value) {
                    (_, None) => Err(tombstone()),
                    (CellPath::SetElement(v), Some(_)) => Ok(v.clone()),
                    _ => Err(shape()),
                })
                .collect::<Result<_, _>>()
                .map(CqlValue::Set),
            CqlType::Map { .. } => elements
                .iter()
                .map(|e| match (&e.path, &e.value) {
                    (_, None) => Err(tombstone()),
                    (CellPath::MapKey(k), Some(v)) => Ok((k.clone(), v.clone())),
                    _ => Err(shape()),
                })
                .collect::<Result<_, _>>()
                .map(CqlValue::Map),
            CqlType::Udt { fields, .. } => {
                let mut out = Vec::with_capacity(fields.len());
                for (name, _) in fields {
                    let v = elements.iter().find_map(|e| match &e.path {
                        CellPath::UdtField(f) if f == name => Some(e.value.clone()),
                        _ => None,
                    });
                    out.push((name.clone(), v.flatten()));
                }
                Ok(CqlValue::Udt(out))
            }
            _ => Err(shape()),
        }
    }

    fn write_key(
        &self,
        buf: &mut Vec<u8>,
        ty: &ChType,
        name: &str,
        value: Option<&CqlValue>,
    ) -> Result<(), Error> {
        match value {
            Some(v) => write_row_binary(ty, Some(v), buf).map_err(|e| self.value_error(name, e)),
            None => {
                write_default(ty, buf);
                Ok(())
            }
        }
    }

    fn write_head(
        &self,
        buf: &mut Vec<u8>,
        event: &ChangeEvent,
        kind: u8,
        live: Option<(i64, Option<i64>)>,
        del_wt: i64,
        range: Option<RangeBounds<'_>>,
    ) -> Result<(), Error> {
        let pk_len = self.layout.partition_key.len();
        for (i, k) in self.layout.partition_key.iter().enumerate() {
            let v = find(&event.partition_key, &k.name);
            if v.is_none() {
                return Err(self.unsupported(&k.name, "the event lacks a partition-key column"));
            }
            self.write_key(buf, &self.key_types[i], &k.name, v)?;
        }
        for (i, k) in self.layout.clustering_key.iter().enumerate() {
            let v = match &range {
                Some(r) => find(r.start, &k.name),
                None if kind == KIND_ROW => {
                    let v = find(&event.clustering_key, &k.name);
                    if v.is_none() {
                        return Err(
                            self.unsupported(&k.name, "the event lacks a clustering column")
                        );
                    }
                    v
                }
                None => None,
            };
            self.write_key(buf, &self.key_types[pk_len + i], &k.name, v)?;
        }
        buf.push(kind);
        let (live_wt, live_exp) = live.unwrap_or((NO_TIME, None));
        buf.extend_from_slice(&live_wt.to_le_bytes());
        write_nullable_i64(live_exp, buf);
        buf.extend_from_slice(&del_wt.to_le_bytes());
        match &range {
            Some(r) => {
                buf.extend_from_slice(&[
                    prefix_len(r.start),
                    u8::from(r.start_incl),
                    prefix_len(r.end),
                    u8::from(r.end_incl),
                ]);
            }
            None => buf.extend_from_slice(&[0, 0, 0, 0]),
        }
        for (i, k) in self.layout.clustering_key.iter().enumerate() {
            let v = range.as_ref().and_then(|r| find(r.end, &k.name));
            self.write_key(buf, &self.ck_types[i], &k.name, v)?;
        }
        Ok(())
    }

    fn write_tail(
        &self,
        buf: &mut Vec<u8>,
        partition: i32,
        offset: i64,
        cells: &[Option<CellOut>],
    ) -> Result<(), Error> {
        buf.extend_from_slice(&partition.to_le_bytes());
        buf.extend_from_slice(&offset.to_le_bytes());
        for (i, (name, _, ty)) in self.values.iter().enumerate() {
            match cells.get(i).and_then(Option::as_ref) {
                Some(CellOut::Set { value, wt, exp }) => {
                    write_row_binary(ty, Some(value), buf)
                        .map_err(|e| self.value_error(name, e))?;
                    buf.extend_from_slice(&wt.to_le_bytes());
                    buf.push(1);
                    write_nullable_i64(*exp, buf);
                }
                Some(CellOut::Multi { deletion, elements }) => {
                    let Some((path_ty, value_ty)) = self.elements.get(i).and_then(Option::as_ref)
                    else {
                        return Err(self.unsupported(name, "not a multi-cell column"));
                    };
                    write_default(ty, buf);
                    buf.extend_from_slice(&deletion.to_le_bytes());
                    cdc_typemap::clickhouse::write_varuint(elements.len() as u64, buf);
                    for e in elements {
                        match &e.path {
                            ElementPath::Text(key) => {
                                cdc_typemap::clickhouse::write_string(key.as_bytes(), buf)
                            }
                            ElementPath::Value(v) => write_row_binary(path_ty, Some(v), buf)
                                .map_err(|err| self.value_error(name, err))?,
                        }
                        match (&e.value, value_ty) {
                            (_, ChType::UInt8) => buf.push(0),
                            (Some(v), _) => write_row_binary(value_ty, Some(v), buf)
                                .map_err(|err| self.value_error(name, err))?,
                            (None, _) => write_default(value_ty, buf),
                        }
                        buf.extend_from_slice(&e.wt.to_le_bytes());
                        buf.push(u8::from(e.value.is_none()));
                        write_nullable_i64(e.exp, buf);
                    }
                }
                None if self.elements.get(i).is_some_and(Option::is_some) => {
                    write_default(ty, buf);
                    buf.extend_from_slice(&NO_TIME.to_le_bytes());
                    buf.push(0);
                }
                Some(CellOut::Tombstone { wt }) => {
                    write_default(ty, buf);
                    buf.extend_from_slice(&wt.to_le_bytes());
                    buf.push(2);
                    write_nullable_i64(None, buf);
                }
                None => {
                    write_default(ty, buf);
                    buf.extend_from_slice(&NO_TIME.to_le_bytes());
                    buf.push(0);
                    write_nullable_i64(None, buf);
                }
            }
        }
        Ok(())
    }
}

struct RangeBounds<'a> {
    start: &'a [KeyColumn],
    start_incl: bool,
    end: &'a [KeyColumn],
    end_incl: bool,
}

fn find<'a>(keys: &'a [KeyColumn], name: &str) -> Option<&'a CqlValue> {
    keys.iter().find(|k| k.name == name).map(|k| &k.value)
}

fn prefix_len(prefix: &[KeyColumn]) -> u8 {
    u8::try_from(prefix.len()).unwrap_or(u8::MAX)
}

fn write_nullable_i64(v: Option<i64>, buf: &mut Vec<u8>) {
    match v {
        Some(v) => {
            buf.push(0);
            buf.extend_from_slice(&v.to_le_bytes());
        }
        None => buf.push(1),
    }
}

#[cfg(test)]
mod tests {
    use cdc_model::{
        ClusteringBound, ColumnKind, ComplexDeletion, CounterShard, CounterShardKind, Deletion,
        ElementChange, ErrorClass, Liveness, Operation, SourceInfo,
    };
    use uuid::Uuid;

    use super::*;
    use crate::destination::ColumnDef;

    fn shape() -> TableShape {
        let col = |name: &str, cql_type: CqlType, kind| ColumnDef {
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
                    "ck",
                    CqlType::Int,
                    ColumnKind::Clustering {
                        position: 0,
                        order: cdc_model::ClusteringOrder::Asc,
                    },
                ),
                col("v", CqlType::Int, ColumnKind::Regular),
                col(
                    "tags",
                    CqlType::List {
                        element: Box::new(CqlType::Int),
                        frozen: false,
                    },
                    ColumnKind::Regular,
                ),
                col("hits", CqlType::Counter, ColumnKind::Regular),
            ],
        }
    }

    fn event() -> ChangeEvent {
        ChangeEvent {
            source: SourceInfo {
                cluster: "c".into(),
                host_id: Uuid::nil(),
                keyspace: "ks".into(),
                table: "t".into(),
                table_id: Uuid::nil(),
                schema_version: 1,
                segment_id: 1,
                segment_position: 0,
                index: 0,
            },
            op: Operation::Insert,
            partition_key: vec![KeyColumn::new("id", CqlValue::Int(1))],
            clustering_key: vec![KeyColumn::new("ck", CqlValue::Int(2))],
            is_static: false,
            liveness: Some(Liveness {
                writetime_micros: 10,
                ttl: None,
            }),
            deletion: None,
            cells: vec![cdc_model::CellChange {
                column: "v".into(),
                writetime_micros: 10,
                ttl: None,
                change: CellValue::Set {
                    value: CqlValue::Int(7),
                },
            }],
            correlation_id: "c".into(),
            captured_at_ms: 0,
        }
    }

    fn encode(e: &ChangeEvent) -> Result<(usize, Vec<u8>), Error> {
        let enc = RowEncoder::new("ks", &shape());
        let mut out = Vec::new();
        enc.encode(e, 3, 42, &mut out).map(|n| (n, out))
    }

    #[test]
    fn an_insert_is_one_row_with_its_cells_and_marker() {
        let Ok((rows, bytes)) = encode(&event()) else {
            panic!("insert must encode");
        };
        assert_eq!(rows, 1);
        let mut expected = Vec::new();
        expected.extend_from_slice(&1i32.to_le_bytes()); // id
        expected.extend_from_slice(&2i32.to_le_bytes()); // ck
        expected.push(KIND_ROW);
        expected.extend_from_slice(&10i64.to_le_bytes()); // live wt
        expected.push(1); // live exp null
        expected.extend_from_slice(&NO_TIME.to_le_bytes()); // del wt
        expected.extend_from_slice(&[0, 0, 0, 0]); // range lens/incl
        expected.extend_from_slice(&0i32.to_le_bytes()); // end ck
        expected.extend_from_slice(&3i32.to_le_bytes()); // partition
        expected.extend_from_slice(&42i64.to_le_bytes()); // offset
        // v = 7, set at 10
        expected.push(0);
        expected.extend_from_slice(&7i32.to_le_bytes());
        expected.extend_from_slice(&10i64.to_le_bytes());
        expected.push(1);
        expected.push(1);
        // tags (a non-frozen list): empty placeholder, no deletion, no element changes.
        expected.push(0);
        expected.extend_from_slice(&NO_TIME.to_le_bytes());
        expected.push(0);
        // hits (a counter, stored per shard): likewise.
        expected.push(1);
        expected.extend_from_slice(&NO_TIME.to_le_bytes());
        expected.push(0);
        assert_eq!(hex_of(&bytes), hex_of(&expected));
    }

    fn hex_of(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn a_deletion_with_cells_gives_two_rows() {
        let mut e = event();
        e.deletion = Some(Deletion {
            scope: DeletionScope::Range {
                start: ClusteringBound {
                    prefix: vec![KeyColumn::new("ck", CqlValue::Int(1))],
                    inclusive: true,
                },
                end: ClusteringBound {
                    prefix: vec![],
                    inclusive: false,
                },
            },
            marked_for_delete_at_micros: 9,
            local_deletion_time_secs: 0,
        });
        assert!(matches!(encode(&e), Ok((2, _))));
    }

    #[test]
    fn collection_changes_are_stored_per_element() {
        let mut e = event();
        let element = |id: u128, v: i32| ElementChange {
            path: CellPath::ListIndex(Uuid::from_u128(id)),
            value: Some(CqlValue::Int(v)),
            writetime_micros: 10,
            ttl: None,
        };
        e.cells = vec![cdc_model::CellChange {
            column: "tags".into(),
            writetime_micros: 10,
            ttl: None,
            change: CellValue::Complex {
                deletion: Some(ComplexDeletion {
                    marked_for_delete_at_micros: 9,
                    local_deletion_time_secs: 0,
                }),
                elements: vec![element(1, 5), element(2, 6)],
            },
        }];
        let overwrite = encode(&e).map(|(_, b)| b.len()).unwrap_or(0);
        if let CellValue::Complex { deletion, .. } = &mut e.cells[0].change {
            *deletion = None;
        }
        let append = encode(&e).map(|(_, b)| b.len()).unwrap_or(0);
        // Same size: the deletion time is always present (NO_TIME when absent).
        assert!(overwrite > 0 && overwrite == append);
        // A UDT path on a list column is refused.
        if let CellValue::Complex { elements, .. } = &mut e.cells[0].change {
            elements[0].path = CellPath::UdtField("f".into());
        }
        let err = encode(&e).err();
        assert_eq!(err.map(|e| e.class()), Some(ErrorClass::Poison));
    }

    #[test]
    fn local_counter_shards_unknown_columns_and_missing_keys_are_poison() {
        let mut e = event();
        e.cells = vec![cdc_model::CellChange {
            column: "hits".into(),
            writetime_micros: 10,
            ttl: None,
            change: CellValue::Counter {
                shards: vec![CounterShard {
                    counter_id: Uuid::nil(),
                    clock: 1,
                    count: 1,
                    kind: CounterShardKind::Global,
                }],
            },
        }];
        assert!(encode(&e).is_ok());
        if let CellValue::Counter { shards } = &mut e.cells[0].change {
            shards[0].kind = CounterShardKind::Local;
        }
        assert!(matches!(encode(&e), Err(Error::Unsupported { .. })));
        let mut e = event();
        e.cells[0].column = "nope".into();
        assert!(matches!(encode(&e), Err(Error::Unsupported { .. })));
        let mut e = event();
        e.clustering_key.clear();
        assert!(matches!(encode(&e), Err(Error::Unsupported { .. })));
        let mut e = event();
        e.cells[0].change = CellValue::Set {
            value: CqlValue::Text("fake.user@example.test".into()),
        };
        let err = encode(&e).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("column v"), "{err}");
        assert!(!err.contains("example.test"), "{err}");
    }
}
