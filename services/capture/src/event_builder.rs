//! Pure: one decoded commit-log [`Mutation`] → the [`ChangeEvent`]s it carries.
//!
//! Per partition update of a table with `cdc = true` (other tables in the same mutation are
//! skipped), in this order:
//! 1. a partition deletion → one `Delete` event with scope `Partition`;
//! 2. the static row → one event with `is_static`;
//! 3. rows and range-tombstone markers in clustering order: one event per row, one `Delete` event
//!    with scope `Range` per start/end marker pair (a boundary closes one range and opens the next).
//!
//! Operation (see [`Operation`]): `Delete` when the row carries a deletion (row, partition or
//! range), else `Insert` when it carries primary-key liveness (only CQL `INSERT` writes it), else
//! `Update`.
//!
//! Cells are decoded with `cdc_model::native_codec`; non-frozen collections and UDTs become element
//! changes; counters keep their shards. Cells of a dropped column with writetime `<=` the drop time
//! are ignored (as Cassandra does), and cells of a column absent from the live schema are left out
//! (no destination can hold them). The correlation id is `<host>:<segment>:<position>:<index>`, with
//! the position after the mutation entry and the index of the event within the mutation.

use std::sync::Arc;

use cdc_commitlog::{
    BoundKind, Cell, ColumnData, DeletionTime, LivenessInfo, Mutation, PartitionUpdate,
    RangeTombstoneMarker, Row, SchemaLookup, Unfiltered,
};
use cdc_model::{
    CellChange, CellValue, ChangeEvent, ClusteringBound, ColumnKind, ComplexDeletion, CqlType,
    Deletion, DeletionScope, ElementChange, KeyColumn, Liveness, Operation, SourceInfo,
    TableSchema, Ttl, native_codec,
};
use uuid::Uuid;

use crate::error::Error;

/// Where the mutation came from.
#[derive(Debug, Clone, Copy)]
pub struct MutationContext<'a> {
    pub cluster: &'a str,
    pub host_id: Uuid,
    pub segment_id: i64,
    /// Logical position after the mutation entry (the checkpoint value).
    pub position: u32,
    pub captured_at_ms: i64,
}

/// An event with the schema version it was decoded with (the JSON envelope needs the types).
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltEvent {
    pub event: ChangeEvent,
    pub schema: Arc<TableSchema>,
}

/// What a mutation produced: events, and errors for the parts that could not be decoded (each
/// error names the table and the segment position; values are never included).
#[derive(Debug, Default)]
pub struct BuiltMutation {
    pub events: Vec<BuiltEvent>,
    pub errors: Vec<Error>,
}

/// Builds the events of `mutation`. `include` decides per table (after the `cdc` flag) whether it
/// is captured.
pub fn build_events<S: SchemaLookup + ?Sized>(
    mutation: &Mutation,
    lookup: &S,
    ctx: &MutationContext<'_>,
    include: &dyn Fn(&TableSchema) -> bool,
) -> BuiltMutation {
    let mut out = BuiltMutation::default();
    let mut index = 0u32;
    for update in &mutation.partition_updates {
        let Some(schema) = lookup.table(update.table_id) else {
            continue;
        };
        if !schema.cdc || !include(&schema) {
            continue;
        }
        let mut builder = UpdateBuilder {
            schema: &schema,
            ctx,
            update,
            index: &mut index,
            out: &mut out,
        };
        if let Err(e) = builder.build() {
            out.errors.push(e);
        }
    }
    out
}

struct UpdateBuilder<'a, 'b> {
    schema: &'a Arc<TableSchema>,
    ctx: &'a MutationContext<'b>,
    update: &'a PartitionUpdate,
    index: &'a mut u32,
    out: &'a mut BuiltMutation,
}

fn ttl_of(ttl_secs: Option<i32>, ldt: cdc_commitlog::LocalDeletionTime) -> Option<Ttl> {
    ttl_secs.map(|t| Ttl {
        ttl_secs: u32::try_from(t).unwrap_or(0),
        expires_at_secs: ldt.seconds().unwrap_or(0),
    })
}

fn liveness_of(l: &LivenessInfo) -> Liveness {
    Liveness {
        writetime_micros: l.timestamp_micros,
        ttl: l
            .expiring
            .and_then(|e| ttl_of(Some(e.ttl_secs), e.local_expiration_time)),
    }
}

fn deletion_of(scope: DeletionScope, d: &DeletionTime) -> Deletion {
    Deletion {
        scope,
        marked_for_delete_at_micros: d.marked_for_delete_at_micros,
        local_deletion_time_secs: d.local_deletion_time.seconds().unwrap_or(0),
    }
}

impl UpdateBuilder<'_, '_> {
    fn value_error(&self, what: String, source: cdc_model::Error) -> Error {
        Error::Decode {
            keyspace: self.schema.keyspace.clone(),
            table: self.schema.table.clone(),
            segment_id: self.ctx.segment_id,
            position: self.ctx.position,
            what,
            source: Box::new(source),
        }
    }

    fn shape_error(&self, reason: String) -> Error {
        Error::Shape {
            keyspace: self.schema.keyspace.clone(),
            table: self.schema.table.clone(),
            segment_id: self.ctx.segment_id,
            position: self.ctx.position,
            reason,
        }
    }

    fn partition_key(&self) -> Result<Vec<KeyColumn>, Error> {
        let columns = self.schema.partition_key();
        if columns.len() != self.update.partition_key_components.len() {
            return Err(self.shape_error(format!(
                "{} partition key components for {} key columns",
                self.update.partition_key_components.len(),
                columns.len()
            )));
        }
        columns
            .iter()
            .zip(&self.update.partition_key_components)
            .map(|(c, bytes)| {
                native_codec::decode_value(&c.cql_type, bytes)
                    .map(|v| KeyColumn::new(c.name.clone(), v))
                    .map_err(|e| self.value_error(format!("partition key column {}", c.name), e))
            })
            .collect()
    }

    fn clustering(&self, values: &[Option<Vec<u8>>]) -> Result<Vec<KeyColumn>, Error> {
        let columns = self.schema.clustering_key();
        if values.len() > columns.len() {
            return Err(self.shape_error(format!(
                "{} clustering values for {} clustering columns",
                values.len(),
                columns.len()
            )));
        }
        columns
            .iter()
            .zip(values)
            .map(|(c, v)| {
                let bytes = v.as_deref().ok_or_else(|| {
                    self.shape_error(format!("null clustering value for {}", c.name))
                })?;
                native_codec::decode_value(&c.cql_type, bytes)
                    .map(|v| KeyColumn::new(c.name.clone(), v))
                    .map_err(|e| self.value_error(format!("clustering column {}", c.name), e))
            })
            .collect()
    }

    fn emit(
        &mut self,
        pk: &[KeyColumn],
        clustering_key: Vec<KeyColumn>,
        is_static: bool,
        liveness: Option<Liveness>,
        deletion: Option<Deletion>,
        cells: Vec<CellChange>,
    ) {
        let source = SourceInfo {
            cluster: self.ctx.cluster.to_owned(),
            host_id: self.ctx.host_id,
            keyspace: self.schema.keyspace.clone(),
            table: self.schema.table.clone(),
            table_id: self.schema.id,
            schema_version: self.schema.version,
            segment_id: self.ctx.segment_id,
            segment_position: self.ctx.position,
            index: *self.index,
        };
        *self.index += 1;
        let op = Operation::classify(deletion.is_some(), liveness.is_some());
        let correlation_id = source.correlation_id();
        self.out.events.push(BuiltEvent {
            event: ChangeEvent {
                source,
                op,
                partition_key: pk.to_vec(),
                clustering_key,
                is_static,
                liveness,
                deletion,
                cells,
                correlation_id,
                captured_at_ms: self.ctx.captured_at_ms,
            },
            schema: Arc::clone(self.schema),
        });
    }

    fn build(&mut self) -> Result<(), Error> {
        let pk = self.partition_key()?;
        if let Some(d) = &self.update.partition_deletion {
            let deletion = deletion_of(DeletionScope::Partition, d);
            self.emit(&pk, Vec::new(), false, None, Some(deletion), Vec::new());
        }
        if let Some(row) = &self.update.static_row {
            self.row(&pk, row, true);
        }
        let mut open: Option<(ClusteringBound, DeletionTime)> = None;
        for u in &self.update.unfiltereds {
            match u {
                Unfiltered::Row(row) => self.row(&pk, row, false),
                Unfiltered::Marker(marker) => {
                    if let Err(e) = self.marker(&pk, marker, &mut open) {
                        self.out.errors.push(e);
                    }
                }
            }
        }
        if open.is_some() {
            self.out
                .errors
                .push(self.shape_error("a range tombstone opened but never closed".into()));
        }
        Ok(())
    }

    fn bound(&self, values: &[Option<Vec<u8>>], inclusive: bool) -> Result<ClusteringBound, Error> {
        Ok(ClusteringBound {
            prefix: self.clustering(values)?,
            inclusive,
        })
    }

    fn marker(
        &mut self,
        pk: &[KeyColumn],
        marker: &RangeTombstoneMarker,
        open: &mut Option<(ClusteringBound, DeletionTime)>,
    ) -> Result<(), Error> {
        let values = &marker.bound().values;
        match marker {
            RangeTombstoneMarker::Bound { bound, deletion } => match bound.kind {
                BoundKind::InclStart | BoundKind::ExclStart => {
                    let start = self.bound(values, bound.kind == BoundKind::InclStart)?;
                    *open = Some((start, *deletion));
                }
                BoundKind::InclEnd | BoundKind::ExclEnd => {
                    let end = self.bound(values, bound.kind == BoundKind::InclEnd)?;
                    let Some((start, d)) = open.take() else {
                        return Err(
                            self.shape_error("a range tombstone end without a start".into())
                        );
                    };
                    self.range(pk, start, end, &d);
                }
                _ => {
                    return Err(self.shape_error("a boundary kind on a bound marker".into()));
                }
            },
            RangeTombstoneMarker::Boundary {
                bound,
                end_deletion,
                start_deletion,
            } => {
                let end_inclusive = bound.kind == BoundKind::InclEndExclStart;
                let end = self.bound(values, end_inclusive)?;
                let start = self.bound(values, !end_inclusive)?;
                let Some((prev, _)) = open.take() else {
                    return Err(
                        self.shape_error("a range tombstone boundary without a start".into())
                    );
                };
                self.range(pk, prev, end, end_deletion);
                *open = Some((start, *start_deletion));
            }
        }
        Ok(())
    }

    fn range(
        &mut self,
        pk: &[KeyColumn],
        start: ClusteringBound,
        end: ClusteringBound,
        d: &DeletionTime,
    ) {
        let deletion = deletion_of(DeletionScope::Range { start, end }, d);
        self.emit(pk, Vec::new(), false, None, Some(deletion), Vec::new());
    }

    fn row(&mut self, pk: &[KeyColumn], row: &Row, is_static: bool) {
        let clustering = if is_static {
            Ok(Vec::new())
        } else {
            self.clustering(&row.clustering)
        };
        let clustering = match clustering {
            Ok(c) => c,
            Err(e) => {
                self.out.errors.push(e);
                return;
            }
        };
        if !is_static && clustering.len() != self.schema.clustering_key().len() {
            let e = self.shape_error(format!(
                "a row with {} of {} clustering values",
                clustering.len(),
                self.schema.clustering_key().len()
            ));
            self.out.errors.push(e);
            return;
        }
        let mut cells = Vec::with_capacity(row.cells.len());
        for data in &row.cells {
            match self.column(data) {
                Ok(Some(c)) => cells.push(c),
                Ok(None) => {}
                Err(e) => self.out.errors.push(e),
            }
        }
        let liveness = row.liveness.as_ref().map(liveness_of);
        let deletion = row
            .deletion
            .as_ref()
            .map(|d| deletion_of(DeletionScope::Row, &d.time));
        if liveness.is_none() && deletion.is_none() && cells.is_empty() {
            return; // Only cells of dropped columns: nothing left to say.
        }
        self.emit(pk, clustering, is_static, liveness, deletion, cells);
    }

    /// The live column type for a header column, `None` when the cells must be ignored.
    fn live_type(&self, name: &str) -> Option<&CqlType> {
        self.schema
            .column(name)
            .filter(|c| matches!(c.kind, ColumnKind::Static | ColumnKind::Regular))
            .map(|c| &c.cql_type)
    }

    fn shadowed(&self, data: &ColumnData, timestamp_micros: i64) -> bool {
        let by_ref = data
            .column()
            .dropped_at_micros
            .is_some_and(|d| timestamp_micros <= d);
        // A dropped-then-re-added column: older cells stay dead.
        let by_schema = self
            .schema
            .dropped_column(&data.column().name)
            .is_some_and(|d| timestamp_micros <= d.dropped_time_micros);
        by_ref || by_schema
    }

    fn column(&self, data: &ColumnData) -> Result<Option<CellChange>, Error> {
        let name: &str = &data.column().name;
        let Some(ty) = self.live_type(name) else {
            return Ok(None);
        };
        match data {
            ColumnData::Simple { cell, .. } => {
                if self.shadowed(data, cell.timestamp_micros) {
                    return Ok(None);
                }
                self.simple(name, ty, cell).map(Some)
            }
            ColumnData::Complex {
                complex_deletion,
                cells,
                ..
            } => {
                if !ty.is_multi_cell() {
                    return Err(self
                        .shape_error(format!("complex cells for the single-cell column {name}")));
                }
                let deletion = complex_deletion
                    .filter(|d| !self.shadowed(data, d.marked_for_delete_at_micros))
                    .map(|d| ComplexDeletion {
                        marked_for_delete_at_micros: d.marked_for_delete_at_micros,
                        local_deletion_time_secs: d.local_deletion_time.seconds().unwrap_or(0),
                    });
                let mut elements = Vec::with_capacity(cells.len());
                for cell in cells {
                    if self.shadowed(data, cell.timestamp_micros) {
                        continue;
                    }
                    let path = cell.path.as_deref().unwrap_or_default();
                    let value = (!cell.is_tombstone).then_some(cell.value.as_slice());
                    let (path, value) = native_codec::decode_element(ty, path, value)
                        .map_err(|e| self.value_error(format!("element of column {name}"), e))?;
                    elements.push(ElementChange {
                        path,
                        value,
                        writetime_micros: cell.timestamp_micros,
                        ttl: ttl_of(cell.ttl_secs, cell.local_deletion_time),
                    });
                }
                if deletion.is_none() && elements.is_empty() {
                    return Ok(None);
                }
                let writetime_micros = deletion
                    .map(|d| d.marked_for_delete_at_micros)
                    .into_iter()
                    .chain(elements.iter().map(|e| e.writetime_micros))
                    .max()
                    .unwrap_or(i64::MIN);
                Ok(Some(CellChange {
                    column: name.to_owned(),
                    writetime_micros,
                    ttl: None,
                    change: CellValue::Complex { deletion, elements },
                }))
            }
        }
    }

    fn simple(&self, name: &str, ty: &CqlType, cell: &Cell) -> Result<CellChange, Error> {
        let change = if cell.is_tombstone {
            CellValue::Tombstone
        } else if cell.is_counter || matches!(ty, CqlType::Counter) {
            let shards = native_codec::decode_counter_context(&cell.value)
                .map_err(|e| self.value_error(format!("counter column {name}"), e))?;
            CellValue::Counter { shards }
        } else {
            let value = native_codec::decode_value(ty, &cell.value)
                .map_err(|e| self.value_error(format!("column {name}"), e))?;
            CellValue::Set { value }
        };
        Ok(CellChange {
            column: name.to_owned(),
            writetime_micros: cell.timestamp_micros,
            ttl: if cell.is_tombstone {
                None
            } else {
                ttl_of(cell.ttl_secs, cell.local_deletion_time)
            },
            change,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use cdc_commitlog::{ClusteringBound as Bound, LocalDeletionTime, RowDeletion};
    use cdc_model::{ClusteringOrder, ColumnSchema, CqlValue};

    use super::*;

    const TABLE: Uuid = Uuid::from_u128(42);

    fn schema(cdc: bool) -> HashMap<Uuid, Arc<TableSchema>> {
        let t = TableSchema {
            keyspace: "ks".into(),
            table: "t".into(),
            id: TABLE,
            cdc,
            version: 3,
            columns: vec![
                ColumnSchema {
                    name: "pk".into(),
                    cql_type: CqlType::Int,
                    kind: ColumnKind::PartitionKey { position: 0 },
                },
                ColumnSchema {
                    name: "ck".into(),
                    cql_type: CqlType::Int,
                    kind: ColumnKind::Clustering {
                        position: 0,
                        order: ClusteringOrder::Asc,
                    },
                },
            ],
            dropped_columns: vec![],
        };
        HashMap::from([(TABLE, Arc::new(t))])
    }

    fn dt(ts: i64) -> DeletionTime {
        DeletionTime {
            marked_for_delete_at_micros: ts,
            local_deletion_time: LocalDeletionTime::Seconds(1_700_000_000),
        }
    }

    fn bound(kind: BoundKind, values: &[i32]) -> Bound {
        Bound {
            kind,
            values: values
                .iter()
                .map(|v| Some(v.to_be_bytes().to_vec()))
                .collect(),
        }
    }

    fn update(unfiltereds: Vec<Unfiltered>, pk: Vec<u8>) -> Mutation {
        Mutation {
            partition_updates: vec![PartitionUpdate {
                table_id: TABLE,
                partition_key: pk.clone(),
                partition_key_components: vec![pk],
                partition_deletion: None,
                static_row: None,
                unfiltereds,
                static_columns: vec![],
                regular_columns: vec![],
                encoding_stats: None,
                row_estimate: None,
            }],
        }
    }

    fn row(ck: i32, liveness: Option<i64>, deletion: Option<i64>) -> Unfiltered {
        Unfiltered::Row(Row {
            is_static: false,
            clustering: vec![Some(ck.to_be_bytes().to_vec())],
            liveness: liveness.map(|ts| LivenessInfo {
                timestamp_micros: ts,
                expiring: None,
            }),
            deletion: deletion.map(|ts| RowDeletion {
                time: dt(ts),
                shadowable: false,
            }),
            cells: vec![],
        })
    }

    fn build(m: &Mutation, cdc: bool, include: bool) -> BuiltMutation {
        let ctx = MutationContext {
            cluster: "c",
            host_id: Uuid::from_u128(1),
            segment_id: 9,
            position: 100,
            captured_at_ms: 5,
        };
        build_events(m, &schema(cdc), &ctx, &move |_| include)
    }

    /// A range event as (start prefix, start inclusive, end prefix, end inclusive, deleted at).
    type Range = (Vec<CqlValue>, bool, Vec<CqlValue>, bool, i64);

    fn ranges(b: &BuiltMutation) -> Vec<Range> {
        b.events
            .iter()
            .filter_map(|e| match &e.event.deletion {
                Some(Deletion {
                    scope: DeletionScope::Range { start, end },
                    marked_for_delete_at_micros,
                    ..
                }) => Some((
                    start.prefix.iter().map(|k| k.value.clone()).collect(),
                    start.inclusive,
                    end.prefix.iter().map(|k| k.value.clone()).collect(),
                    end.inclusive,
                    *marked_for_delete_at_micros,
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn rows_are_classified_by_liveness_and_deletion() {
        let m = update(
            vec![
                row(1, Some(10), None),
                row(2, None, Some(11)),
                row(3, None, None),
            ],
            7i32.to_be_bytes().to_vec(),
        );
        let b = build(&m, true, true);
        assert!(b.errors.is_empty(), "{:?}", b.errors);
        let ops: Vec<_> = b.events.iter().map(|e| e.event.op).collect();
        assert_eq!(
            ops,
            [Operation::Insert, Operation::Delete],
            "an empty row says nothing"
        );
        let e = &b.events[0].event;
        assert_eq!(e.partition_key[0].value, CqlValue::Int(7));
        assert_eq!(e.clustering_key[0].value, CqlValue::Int(1));
        assert_eq!(e.source.schema_version, 3);
        assert_eq!(e.correlation_id, format!("{}:9:100:0", Uuid::from_u128(1)));
        assert_eq!(b.events[1].event.source.index, 1);
    }

    #[test]
    fn bounds_and_boundaries_pair_into_ranges() {
        let m = update(
            vec![
                Unfiltered::Marker(RangeTombstoneMarker::Bound {
                    bound: bound(BoundKind::InclStart, &[1]),
                    deletion: dt(20),
                }),
                Unfiltered::Marker(RangeTombstoneMarker::Boundary {
                    bound: bound(BoundKind::ExclEndInclStart, &[5]),
                    end_deletion: dt(20),
                    start_deletion: dt(21),
                }),
                Unfiltered::Marker(RangeTombstoneMarker::Bound {
                    bound: bound(BoundKind::InclEnd, &[]),
                    deletion: dt(21),
                }),
            ],
            1i32.to_be_bytes().to_vec(),
        );
        let b = build(&m, true, true);
        assert!(b.errors.is_empty(), "{:?}", b.errors);
        assert_eq!(
            ranges(&b),
            [
                (
                    vec![CqlValue::Int(1)],
                    true,
                    vec![CqlValue::Int(5)],
                    false,
                    20
                ),
                (vec![CqlValue::Int(5)], true, vec![], true, 21),
            ]
        );
        assert!(b.events.iter().all(|e| e.event.op == Operation::Delete));
    }

    #[test]
    fn unpaired_markers_are_errors_not_panics() {
        let end_only = update(
            vec![Unfiltered::Marker(RangeTombstoneMarker::Bound {
                bound: bound(BoundKind::ExclEnd, &[3]),
                deletion: dt(1),
            })],
            1i32.to_be_bytes().to_vec(),
        );
        let b = build(&end_only, true, true);
        assert!(b.events.is_empty());
        assert_eq!(b.errors.len(), 1);
        let open_only = update(
            vec![Unfiltered::Marker(RangeTombstoneMarker::Bound {
                bound: bound(BoundKind::ExclStart, &[3]),
                deletion: dt(1),
            })],
            1i32.to_be_bytes().to_vec(),
        );
        let b = build(&open_only, true, true);
        assert!(b.events.is_empty());
        assert_eq!(b.errors.len(), 1);
        assert!(
            b.errors
                .iter()
                .all(|e| e.class() == cdc_model::ErrorClass::Poison)
        );
    }

    #[test]
    fn bad_key_bytes_are_a_poison_error() {
        let m = update(vec![row(1, Some(1), None)], vec![1, 2, 3]);
        let b = build(&m, true, true);
        assert!(b.events.is_empty());
        assert!(matches!(b.errors.as_slice(), [Error::Decode { .. }]));
        let msg = b.errors[0].to_string();
        assert!(
            msg.contains("ks.t") && msg.contains("segment 9 position 100"),
            "{msg}"
        );
    }

    #[test]
    fn non_cdc_and_excluded_tables_are_skipped() {
        let m = update(vec![row(1, Some(1), None)], 1i32.to_be_bytes().to_vec());
        assert!(build(&m, false, true).events.is_empty());
        assert!(build(&m, true, false).events.is_empty());
        assert_eq!(build(&m, true, true).events.len(), 1);
    }
}
