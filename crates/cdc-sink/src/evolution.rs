//! Schema evolution shared by the adapters (docs/schema-evolution.md): what to do with the
//! columns of a batch whose type differs from the destination's.
//!
//! Cassandra changes a column's type only by `DROP` and re-`ADD` under the same name (with a
//! serialization-compatible type, e.g. `text` → `blob`, `timestamp` → `bigint`). The cells
//! written before the drop are dead in Cassandra. An adapter that meets a column whose
//! destination type differs from the type the events carry therefore:
//!
//! 1. keeps the old column's data under an archive name (never shown by the live view) and adds
//!    the column again with the new type, logging a warning naming table, column and both types
//!    (see the adapters' `ddl` modules);
//! 2. writes later batches with the destination's type: cells whose value does not fit it —
//!    written before the drop, so dead in Cassandra — are left out ([`restrict_batch`]).
//!
//! Also used for `auto_migrate: false`: the columns the destination lacks are left out with a
//! warning instead of being added.
//!
//! Pure: no I/O.

use std::collections::{BTreeMap, HashMap, HashSet};

use cdc_model::{CellValue, ChangeEvent, ColumnKind, CqlType, CqlValue, DeletionScope, KeyColumn};

use crate::destination::{TableBatch, TableShape};

/// What to do with one column of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnPlan {
    /// Write the column with this type (the destination's); cells whose value does not fit it
    /// are left out.
    Retype(CqlType),
    /// Leave the column out entirely.
    Skip,
}

/// True when `value` is a value of `ty` at the top level (the envelope decoder builds values
/// from the envelope's own column types, so a value of another variant was written under
/// another type). Composite values are compared by their variant only.
pub fn value_fits(ty: &CqlType, value: &CqlValue) -> bool {
    use CqlType as T;
    use CqlValue as V;
    match (ty, value) {
        (_, V::Empty) => true,
        (T::Ascii, V::Ascii(_))
        | (T::Text, V::Text(_))
        | (T::Bigint, V::Bigint(_))
        | (T::Blob, V::Blob(_))
        | (T::Boolean, V::Boolean(_))
        | (T::Counter, V::Counter(_))
        | (T::Date, V::Date(_))
        | (T::Decimal, V::Decimal { .. })
        | (T::Double, V::Double(_))
        | (T::Duration, V::Duration { .. })
        | (T::Float, V::Float(_))
        | (T::Inet, V::Inet(_))
        | (T::Int, V::Int(_))
        | (T::Smallint, V::Smallint(_))
        | (T::Time, V::Time(_))
        | (T::Timestamp, V::Timestamp(_))
        | (T::Timeuuid, V::Timeuuid(_))
        | (T::Tinyint, V::Tinyint(_))
        | (T::Uuid, V::Uuid(_))
        | (T::Varint, V::Varint(_))
        | (T::List { .. }, V::List(_))
        | (T::Set { .. }, V::Set(_))
        | (T::Map { .. }, V::Map(_))
        | (T::Tuple { .. }, V::Tuple(_))
        | (T::Udt { .. }, V::Udt(_))
        | (T::Vector { .. }, V::Vector(_))
        | (T::Custom { .. }, V::Blob(_)) => true,
        // `text` accepts what `ascii` wrote (a compatible re-add).
        (T::Text, V::Ascii(_)) => true,
        _ => false,
    }
}

/// One cell left out of a batch, for the warning (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedCell {
    pub column: String,
    /// Index of the event in the batch.
    pub event: usize,
}

/// The batch with `plans` applied: shape columns retyped or removed, cells that do not fit
/// their column's type (or of skipped columns) removed. `None` when no plan touches the batch.
/// A cell tombstone or a complex change of a retyped column is kept (it fits any type).
pub fn restrict_batch(
    batch: &TableBatch,
    plans: &HashMap<String, ColumnPlan>,
) -> Option<(TableBatch, Vec<SkippedCell>)> {
    let touches =
        batch
            .shape
            .columns
            .iter()
            .any(|c| match plans.get(&c.name) {
                Some(ColumnPlan::Skip) => true,
                Some(ColumnPlan::Retype(ty)) => *ty != c.cql_type,
                None => false,
            })
            || batch.events.iter().any(|be| {
                be.event.cells.iter().any(|cell| match plans.get(&cell.column) {
            Some(ColumnPlan::Skip) => true,
            Some(ColumnPlan::Retype(ty)) => {
                matches!(&cell.change, CellValue::Set { value } if !value_fits(ty, value))
            }
            None => false,
        })
            });
    if !touches {
        return None;
    }
    let mut out = batch.clone();
    out.shape.columns.retain_mut(|c| match plans.get(&c.name) {
        Some(ColumnPlan::Skip) => false,
        Some(ColumnPlan::Retype(ty)) => {
            c.cql_type = ty.clone();
            true
        }
        None => true,
    });
    let mut skipped = Vec::new();
    for (i, be) in out.events.iter_mut().enumerate() {
        be.event.cells.retain(|cell| {
            let keep = match plans.get(&cell.column) {
                Some(ColumnPlan::Skip) => false,
                Some(ColumnPlan::Retype(ty)) => match &cell.change {
                    CellValue::Set { value } => value_fits(ty, value),
                    _ => true,
                },
                None => true,
            };
            if !keep {
                skipped.push(SkippedCell {
                    column: cell.column.clone(),
                    event: i,
                });
            }
            keep
        });
    }
    Some((out, skipped))
}

/// `shape` without the value columns `dropped` names (`drop_columns: true`, before any event is
/// seen): a late event of the old schema must not add a dropped column back. A column re-added
/// in Cassandra comes back through [`without_dropped`], which sees its newer cells.
pub fn shape_without_dropped(shape: &TableShape, dropped: &BTreeMap<String, i64>) -> TableShape {
    let mut out = shape.clone();
    out.columns
        .retain(|c| !is_value_column(c.kind) || !dropped.contains_key(&c.name));
    out
}

fn is_value_column(kind: ColumnKind) -> bool {
    matches!(kind, ColumnKind::Static | ColumnKind::Regular)
}

/// Cassandra's rule for dropped columns applied to a batch (`drop_columns: true`): a cell of a
/// column dropped at `t` written at or before `t` is dead, so it is left out; a dropped column
/// leaves the shape unless a cell written after its drop (the column re-added) remains. `None`
/// when the batch is untouched.
pub fn without_dropped(
    batch: &TableBatch,
    dropped: &BTreeMap<String, i64>,
) -> Option<(TableBatch, Vec<SkippedCell>)> {
    if dropped.is_empty() {
        return None;
    }
    let dead =
        |column: &str, writetime: i64| dropped.get(column).is_some_and(|at| writetime <= *at);
    let touches = batch
        .shape
        .columns
        .iter()
        .any(|c| is_value_column(c.kind) && dropped.contains_key(&c.name))
        || batch.events.iter().any(|be| {
            be.event
                .cells
                .iter()
                .any(|c| dead(&c.column, c.writetime_micros))
        });
    if !touches {
        return None;
    }
    let mut out = batch.clone();
    let mut skipped = Vec::new();
    for (i, be) in out.events.iter_mut().enumerate() {
        be.event.cells.retain(|cell| {
            let keep = !dead(&cell.column, cell.writetime_micros);
            if !keep {
                skipped.push(SkippedCell {
                    column: cell.column.clone(),
                    event: i,
                });
            }
            keep
        });
    }
    let re_added: HashSet<String> = out
        .events
        .iter()
        .flat_map(|be| be.event.cells.iter())
        .filter(|c| dropped.contains_key(&c.column))
        .map(|c| c.column.clone())
        .collect();
    out.shape.columns.retain(|c| {
        !is_value_column(c.kind) || !dropped.contains_key(&c.name) || re_added.contains(&c.name)
    });
    Some((out, skipped))
}

/// Primary-key column renames of one table, new name → the destination's (old) name.
pub type KeyRenames = HashMap<String, String>;

/// `shape` with renamed key columns under their destination names (a column mentioned under
/// both names, by events from before and after the rename, is kept once).
pub fn rename_shape(shape: &TableShape, renames: &KeyRenames) -> TableShape {
    let mut out = shape.clone();
    let mut seen = HashSet::new();
    out.columns.retain_mut(|c| {
        if let Some(old) = renames.get(&c.name) {
            c.name = old.clone();
        }
        seen.insert(c.name.clone())
    });
    out
}

/// `event` with renamed key columns under their destination names (keys, range bounds, cells).
pub fn rename_event(event: &mut ChangeEvent, renames: &KeyRenames) {
    let rename_keys = |keys: &mut Vec<KeyColumn>| {
        for k in keys {
            if let Some(old) = renames.get(&k.name) {
                k.name = old.clone();
            }
        }
    };
    rename_keys(&mut event.partition_key);
    rename_keys(&mut event.clustering_key);
    if let Some(d) = &mut event.deletion
        && let DeletionScope::Range { start, end } = &mut d.scope
    {
        rename_keys(&mut start.prefix);
        rename_keys(&mut end.prefix);
    }
    for c in &mut event.cells {
        if let Some(old) = renames.get(&c.column) {
            c.column = old.clone();
        }
    }
}

/// `batch` with [`rename_shape`] and [`rename_event`] applied.
pub fn rename_batch(batch: &TableBatch, renames: &KeyRenames) -> TableBatch {
    let mut out = batch.clone();
    out.shape = rename_shape(&batch.shape, renames);
    for be in &mut out.events {
        rename_event(&mut be.event, renames);
    }
    out
}

/// A batch mixing events from before and after an unmapped primary-key rename: its merged shape
/// has two key columns at one key position, which no table has. Returns the batch split by the
/// events' key column names, in the order each name set first appears, each part with the shape
/// of its own key and the original index of each of its events. Events naming only the
/// partition key (partition-level changes) join the last part. `None` for other batches.
pub fn split_by_key_names(batch: &TableBatch) -> Option<Vec<(TableBatch, Vec<usize>)>> {
    let mut positions = HashSet::new();
    let clash = batch.shape.columns.iter().any(|c| {
        let pos = match c.kind {
            ColumnKind::PartitionKey { position } => (0, position),
            ColumnKind::Clustering { position, .. } => (1, position),
            _ => return false,
        };
        !positions.insert(pos)
    });
    if !clash {
        return None;
    }
    let names_of = |e: &ChangeEvent| -> Vec<String> {
        let mut n: Vec<String> = e
            .partition_key
            .iter()
            .chain(&e.clustering_key)
            .map(|k| k.name.clone())
            .collect();
        n.sort();
        n
    };
    let mut groups: Vec<(Vec<String>, Vec<usize>)> = Vec::new();
    let mut partition_level = Vec::new();
    for (i, be) in batch.events.iter().enumerate() {
        if be.event.clustering_key.is_empty() && !batch.shape.clustering_key().is_empty() {
            partition_level.push(i);
            continue;
        }
        let names = names_of(&be.event);
        match groups.iter_mut().find(|(n, _)| *n == names) {
            Some((_, idx)) => idx.push(i),
            None => groups.push((names, vec![i])),
        }
    }
    if groups.len() < 2 {
        return None;
    }
    if let Some((_, last)) = groups.last_mut() {
        last.extend(partition_level);
        last.sort_unstable();
    }
    let count = groups.len();
    Some(
        groups
            .into_iter()
            .enumerate()
            .map(|(g, (names, idx))| {
                let mut shape = batch.shape.clone();
                shape
                    .columns
                    .retain(|c| is_value_column(c.kind) || names.contains(&c.name));
                let part = TableBatch {
                    shape,
                    events: idx.iter().map(|&i| batch.events[i].clone()).collect(),
                    // Offsets only with the last part, so they never run ahead of the rows.
                    next_offsets: if g + 1 == count {
                        batch.next_offsets.clone()
                    } else {
                        Vec::new()
                    },
                };
                (part, idx)
            })
            .collect(),
    )
}

/// Comment prefix recording which Cassandra table id (incarnation) a destination table holds.
pub const TABLE_ID_COMMENT_PREFIX: &str = "cdc:table_id:";

/// The creation time of a Cassandra table id: ids of `CREATE TABLE` are time-based (v1) UUIDs,
/// so a table dropped and re-created under the same name gets a later one. `None` for other
/// UUID versions (then incarnations are not compared).
pub fn incarnation_time(id: uuid::Uuid) -> Option<u64> {
    id.get_timestamp().map(|t| {
        let (secs, nanos) = t.to_unix();
        secs.saturating_mul(1_000_000_000)
            .saturating_add(u64::from(nanos))
    })
}

/// True when `candidate` is a later incarnation of the table than `current`.
pub fn is_newer_incarnation(current: uuid::Uuid, candidate: uuid::Uuid) -> bool {
    match (incarnation_time(current), incarnation_time(candidate)) {
        (Some(a), Some(b)) => b > a,
        _ => false,
    }
}

/// The table ids of a batch's events, newest incarnation last.
pub fn batch_incarnations(batch: &TableBatch) -> Vec<uuid::Uuid> {
    let mut ids: Vec<uuid::Uuid> = batch
        .events
        .iter()
        .map(|e| e.event.source.table_id)
        .collect();
    ids.sort_by_key(|id| (incarnation_time(*id), *id));
    ids.dedup();
    ids
}

/// The batch without the events of other incarnations than `keep`, and for each kept event its
/// index in `batch`. `None` when every event is of `keep`.
pub fn only_incarnation(batch: &TableBatch, keep: uuid::Uuid) -> Option<(TableBatch, Vec<usize>)> {
    if batch.events.iter().all(|e| e.event.source.table_id == keep) {
        return None;
    }
    let mut out = TableBatch {
        shape: batch.shape.clone(),
        events: Vec::new(),
        next_offsets: batch.next_offsets.clone(),
    };
    let mut map = Vec::new();
    for (i, e) in batch.events.iter().enumerate() {
        if e.event.source.table_id == keep {
            out.events.push(e.clone());
            map.push(i);
        }
    }
    Some((out, map))
}

/// Logs one warning per skipped column of a batch (counts, never values).
pub fn warn_skipped(destination: &str, keyspace: &str, table: &str, skipped: &[SkippedCell]) {
    let mut per_column: HashMap<&str, usize> = HashMap::new();
    for s in skipped {
        *per_column.entry(s.column.as_str()).or_default() += 1;
    }
    for (column, cells) in per_column {
        tracing::warn!(
            destination,
            table = %format!("{keyspace}.{table}"),
            column,
            cells,
            "Cells not written: the column's type changed in Cassandra since they were written \
             (dead there), or the column is not migrated (auto_migrate: false)"
        );
    }
}

#[cfg(test)]
mod tests {
    use cdc_model::{CellChange, ChangeEvent, ColumnKind, KeyColumn, Operation, SourceInfo};
    use uuid::Uuid;

    use super::*;
    use crate::destination::{BatchEvent, ColumnDef, SourceOffset, TableShape};

    fn cell(column: &str, value: CqlValue) -> CellChange {
        CellChange {
            column: column.into(),
            writetime_micros: 1,
            ttl: None,
            change: CellValue::Set { value },
        }
    }

    fn batch(c_type: CqlType, cells: Vec<Vec<CellChange>>) -> TableBatch {
        let source = SourceInfo {
            cluster: "c".into(),
            host_id: Uuid::from_u128(1),
            keyspace: "ks".into(),
            table: "t".into(),
            table_id: Uuid::from_u128(2),
            schema_version: 1,
            segment_id: 1,
            segment_position: 1,
            index: 0,
        };
        let event = ChangeEvent {
            correlation_id: source.correlation_id(),
            source,
            op: Operation::Update,
            partition_key: vec![KeyColumn::new("id", CqlValue::Int(1))],
            clustering_key: Vec::new(),
            is_static: false,
            liveness: None,
            deletion: None,
            cells: Vec::new(),
            captured_at_ms: 0,
        };
        TableBatch {
            shape: TableShape {
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
                        name: "c".into(),
                        cql_type: c_type,
                        kind: ColumnKind::Regular,
                    },
                    ColumnDef {
                        name: "d".into(),
                        cql_type: CqlType::Int,
                        kind: ColumnKind::Regular,
                    },
                ],
            },
            events: cells
                .into_iter()
                .enumerate()
                .map(|(i, cells)| BatchEvent {
                    event: ChangeEvent {
                        cells,
                        ..event.clone()
                    },
                    source: SourceOffset {
                        topic: "t".into(),
                        partition: 0,
                        offset: i as i64,
                    },
                    payload_bytes: 1,
                })
                .collect(),
            next_offsets: vec![],
        }
    }

    #[test]
    fn incarnations_are_ordered_by_their_time_uuids() {
        let ctx = uuid::ContextV1::new(0);
        let older = Uuid::new_v1(uuid::Timestamp::from_unix(&ctx, 1_700_000_000, 0), &[1; 6]);
        let newer = Uuid::new_v1(uuid::Timestamp::from_unix(&ctx, 1_700_000_100, 0), &[1; 6]);
        assert!(is_newer_incarnation(older, newer));
        assert!(!is_newer_incarnation(newer, older));
        // Name-based ids (system tables) are never compared.
        assert!(!is_newer_incarnation(Uuid::from_u128(1), newer));
        let mut b = batch(CqlType::Text, vec![vec![], vec![], vec![]]);
        b.events[0].event.source.table_id = newer;
        b.events[1].event.source.table_id = older;
        b.events[2].event.source.table_id = newer;
        assert_eq!(batch_incarnations(&b), vec![older, newer]);
        let (kept, map) = only_incarnation(&b, newer).unwrap_or_else(|| panic!("filtered"));
        assert_eq!(map, vec![0, 2]);
        assert_eq!(kept.events.len(), 2);
        assert!(only_incarnation(&kept, newer).is_none());
    }

    #[test]
    fn values_fit_their_own_types_only() {
        assert!(value_fits(&CqlType::Blob, &CqlValue::Blob(vec![1])));
        assert!(!value_fits(&CqlType::Blob, &CqlValue::Text("x".into())));
        assert!(value_fits(&CqlType::Text, &CqlValue::Ascii("x".into())));
        assert!(!value_fits(&CqlType::Bigint, &CqlValue::Timestamp(1)));
        assert!(value_fits(&CqlType::Int, &CqlValue::Empty));
    }

    #[test]
    fn retyped_columns_drop_the_cells_of_the_old_type_only() {
        // Old events (c was text) and new ones (c is blob) in one batch whose shape kept text.
        let b = batch(
            CqlType::Text,
            vec![
                vec![
                    cell("c", CqlValue::Text("old".into())),
                    cell("d", CqlValue::Int(1)),
                ],
                vec![cell("c", CqlValue::Blob(vec![0xca, 0xfe]))],
            ],
        );
        let plans = HashMap::from([("c".to_owned(), ColumnPlan::Retype(CqlType::Blob))]);
        let (out, skipped) = restrict_batch(&b, &plans).unwrap_or_else(|| panic!("touched"));
        assert_eq!(
            out.shape.column("c").map(|c| &c.cql_type),
            Some(&CqlType::Blob)
        );
        assert_eq!(
            skipped,
            vec![SkippedCell {
                column: "c".into(),
                event: 0
            }]
        );
        assert_eq!(out.events[0].event.cells.len(), 1, "d kept");
        assert_eq!(out.events[1].event.cells.len(), 1, "the blob kept");
        // Nothing to do when everything already fits.
        assert!(restrict_batch(&out, &plans).is_none());
    }

    #[test]
    fn skipped_columns_leave_shape_and_events() {
        let b = batch(
            CqlType::Text,
            vec![vec![
                cell("c", CqlValue::Text("x".into())),
                cell("d", CqlValue::Int(1)),
            ]],
        );
        let plans = HashMap::from([("c".to_owned(), ColumnPlan::Skip)]);
        let (out, skipped) = restrict_batch(&b, &plans).unwrap_or_else(|| panic!("touched"));
        assert!(out.shape.column("c").is_none());
        assert_eq!(skipped.len(), 1);
        assert_eq!(out.events[0].event.cells.len(), 1);
        assert!(restrict_batch(&b, &HashMap::new()).is_none());
    }

    #[test]
    fn dropped_columns_lose_the_cells_written_before_the_drop() {
        let b = batch(
            CqlType::Text,
            vec![
                // Written before `c` was dropped at 5: dead.
                vec![
                    CellChange {
                        writetime_micros: 4,
                        ..cell("c", CqlValue::Text("fake-old".into()))
                    },
                    cell("d", CqlValue::Int(1)),
                ],
                vec![cell("d", CqlValue::Int(2))],
            ],
        );
        let dropped = BTreeMap::from([("c".to_owned(), 5_i64)]);
        let (out, skipped) = without_dropped(&b, &dropped).unwrap_or_else(|| panic!("touched"));
        assert!(out.shape.column("c").is_none(), "c leaves the shape");
        assert_eq!(skipped.len(), 1);
        assert_eq!(out.events[0].event.cells.len(), 1);
        assert!(
            shape_without_dropped(&b.shape, &dropped)
                .column("c")
                .is_none()
        );
        assert!(
            shape_without_dropped(&b.shape, &dropped)
                .column("id")
                .is_some()
        );
        // Re-added after the drop: a cell written after it keeps the column.
        let b = batch(
            CqlType::Text,
            vec![vec![CellChange {
                writetime_micros: 9,
                ..cell("c", CqlValue::Text("fake-new".into()))
            }]],
        );
        let (out, skipped) = without_dropped(&b, &dropped).unwrap_or_else(|| panic!("touched"));
        assert!(out.shape.column("c").is_some());
        assert!(skipped.is_empty());
        assert!(without_dropped(&b, &BTreeMap::new()).is_none());
    }

    #[test]
    fn renamed_key_columns_take_the_destination_name_once() {
        let mut b = batch(CqlType::Text, vec![vec![], vec![]]);
        b.shape.columns.push(ColumnDef {
            name: "k_new".into(),
            cql_type: CqlType::Int,
            kind: ColumnKind::Clustering {
                position: 0,
                order: cdc_model::ClusteringOrder::Asc,
            },
        });
        b.shape.columns.push(ColumnDef {
            name: "k_old".into(),
            cql_type: CqlType::Int,
            kind: ColumnKind::Clustering {
                position: 0,
                order: cdc_model::ClusteringOrder::Asc,
            },
        });
        b.events[0].event.clustering_key = vec![KeyColumn::new("k_new", CqlValue::Int(1))];
        b.events[1].event.clustering_key = vec![KeyColumn::new("k_old", CqlValue::Int(2))];
        let renames = KeyRenames::from([("k_new".to_owned(), "k_old".to_owned())]);
        let out = rename_batch(&b, &renames);
        let names: Vec<&str> = out
            .shape
            .clustering_key()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, vec!["k_old"]);
        for e in &out.events {
            assert_eq!(e.event.clustering_key[0].name, "k_old");
        }
    }

    #[test]
    fn a_batch_mixing_key_names_is_split_by_key() {
        let asc = cdc_model::ClusteringOrder::Asc;
        let mut b = batch(CqlType::Text, vec![vec![], vec![], vec![]]);
        for name in ["k_old", "k_new"] {
            b.shape.columns.push(ColumnDef {
                name: name.into(),
                cql_type: CqlType::Int,
                kind: ColumnKind::Clustering {
                    position: 0,
                    order: asc,
                },
            });
        }
        b.events[0].event.clustering_key = vec![KeyColumn::new("k_old", CqlValue::Int(1))];
        b.events[1].event.clustering_key = vec![KeyColumn::new("k_new", CqlValue::Int(2))];
        b.events[2].event.clustering_key = vec![KeyColumn::new("k_old", CqlValue::Int(3))];
        b.next_offsets = vec![crate::destination::NextOffset {
            topic: "t".into(),
            partition: 0,
            next_offset: 3,
        }];
        let parts = split_by_key_names(&b).unwrap_or_else(|| panic!("split"));
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].1, vec![0, 2]);
        assert_eq!(parts[1].1, vec![1]);
        let keys = |p: &TableBatch| -> Vec<String> {
            p.shape
                .clustering_key()
                .iter()
                .map(|c| c.name.clone())
                .collect()
        };
        assert_eq!(keys(&parts[0].0), vec!["k_old"]);
        assert_eq!(keys(&parts[1].0), vec!["k_new"]);
        assert!(
            parts[0].0.next_offsets.is_empty(),
            "offsets only with the last part"
        );
        assert_eq!(parts[1].0.next_offsets, b.next_offsets);
        // One key per position: nothing to split.
        assert!(split_by_key_names(&parts[0].0).is_none());
    }
}
