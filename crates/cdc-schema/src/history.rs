//! The schema history: every version of every table seen, keyed by table id.
//!
//! A new version is recorded when a table's columns, dropped columns or `cdc` flag change between
//! two refreshes, with the time it was first seen. Tables that disappear from `system_schema`
//! (DROP TABLE) keep their history, so mutations still sitting in old segments decode.
//!
//! Which version decodes a mutation: [`SchemaLookup::table`] answers with the *latest* version of
//! the table id. That is the schema in force for every mutation still in the commit log, because
//! (a) each partition update's header names its columns, (b) the latest version keeps every
//! dropped column with its drop time (cells at or before it are ignored), and (c) Cassandra 4+
//! forbids changing a column's type to a differently encoded one. The version number used is put
//! in each event's `source.schema_version`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use cdc_commitlog::SchemaLookup;
use cdc_model::TableSchema;
use uuid::Uuid;

/// One version of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaVersionRecord {
    pub schema: Arc<TableSchema>,
    /// When this version was first seen (epoch ms).
    pub seen_at_ms: i64,
}

/// What one [`SchemaHistory::apply`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Tables seen for the first time.
    pub new_tables: Vec<Uuid>,
    /// Tables that got a new version (columns, drops or cdc flag changed).
    pub changed_tables: Vec<Uuid>,
}

#[derive(Debug, Default)]
struct Inner {
    tables: HashMap<Uuid, Vec<SchemaVersionRecord>>,
    /// Ids asked for that the last refresh did not know (system tables, other nodes' keyspaces,
    /// dropped-before-seen tables): ids are never reused, so no refresh is needed for them again.
    unknown: HashSet<Uuid>,
}

/// Thread-safe schema history. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct SchemaHistory {
    inner: RwLock<Inner>,
}

fn same_shape(a: &TableSchema, b: &TableSchema) -> bool {
    a.keyspace == b.keyspace
        && a.table == b.table
        && a.cdc == b.cdc
        && a.columns == b.columns
        && a.dropped_columns == b.dropped_columns
}

impl SchemaHistory {
    pub fn new() -> Self {
        SchemaHistory::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update of plain maps; the data is
        // still consistent enough to read (each update is a single push or insert).
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a snapshot of tables (as built by [`crate::build_tables`]): a first version for a
    /// new id, a new version for a changed one, nothing for an unchanged one.
    pub fn apply(&self, tables: Vec<TableSchema>, now_ms: i64) -> ApplyReport {
        let mut report = ApplyReport::default();
        let mut inner = self.write();
        for mut table in tables {
            let id = table.id;
            inner.unknown.remove(&id);
            let versions = inner.tables.entry(id).or_default();
            match versions.last() {
                Some(last) if same_shape(&last.schema, &table) => continue,
                Some(last) => {
                    table.version = last.schema.version.saturating_add(1);
                    report.changed_tables.push(id);
                }
                None => {
                    table.version = 1;
                    report.new_tables.push(id);
                }
            }
            versions.push(SchemaVersionRecord {
                schema: Arc::new(table),
                seen_at_ms: now_ms,
            });
        }
        report
    }

    /// The latest version of a table.
    pub fn latest(&self, id: Uuid) -> Option<Arc<TableSchema>> {
        self.read()
            .tables
            .get(&id)
            .and_then(|v| v.last())
            .map(|r| Arc::clone(&r.schema))
    }

    /// One version of a table by number.
    pub fn version(&self, id: Uuid, version: u32) -> Option<Arc<TableSchema>> {
        self.read()
            .tables
            .get(&id)?
            .iter()
            .find(|r| r.schema.version == version)
            .map(|r| Arc::clone(&r.schema))
    }

    /// Every version of a table, oldest first.
    pub fn versions(&self, id: Uuid) -> Vec<SchemaVersionRecord> {
        self.read().tables.get(&id).cloned().unwrap_or_default()
    }

    /// The latest version of the table `keyspace.table` (the most recently seen incarnation).
    pub fn latest_by_name(&self, keyspace: &str, table: &str) -> Option<Arc<TableSchema>> {
        self.read()
            .tables
            .values()
            .filter_map(|v| v.last())
            .filter(|r| r.schema.keyspace == keyspace && r.schema.table == table)
            .max_by_key(|r| r.seen_at_ms)
            .map(|r| Arc::clone(&r.schema))
    }

    /// Notes that a refresh did not find `id`; [`SchemaHistory::is_known_unknown`] then answers true.
    pub fn mark_unknown(&self, id: Uuid) {
        self.write().unknown.insert(id);
    }

    /// True when `id` was asked for and a refresh since did not find it: refreshing again for it
    /// is pointless.
    pub fn is_known_unknown(&self, id: Uuid) -> bool {
        self.read().unknown.contains(&id)
    }
}

impl SchemaLookup for SchemaHistory {
    fn table(&self, id: Uuid) -> Option<Arc<TableSchema>> {
        self.latest(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdc_model::{ColumnKind, ColumnSchema, CqlType};

    fn table(id: u128, cols: &[&str]) -> TableSchema {
        let mut columns = vec![ColumnSchema {
            name: "pk".into(),
            cql_type: CqlType::Int,
            kind: ColumnKind::PartitionKey { position: 0 },
        }];
        columns.extend(cols.iter().map(|c| ColumnSchema {
            name: (*c).into(),
            cql_type: CqlType::Text,
            kind: ColumnKind::Regular,
        }));
        TableSchema {
            keyspace: "ks".into(),
            table: "t".into(),
            id: Uuid::from_u128(id),
            cdc: true,
            version: 0,
            columns,
            dropped_columns: vec![],
        }
    }

    #[test]
    fn versions_only_on_change() {
        let h = SchemaHistory::new();
        let r = h.apply(vec![table(1, &["a"])], 10);
        assert_eq!(r.new_tables, vec![Uuid::from_u128(1)]);
        let r = h.apply(vec![table(1, &["a"])], 20);
        assert_eq!(r, ApplyReport::default());
        let r = h.apply(vec![table(1, &["a", "b"])], 30);
        assert_eq!(r.changed_tables, vec![Uuid::from_u128(1)]);
        let versions = h.versions(Uuid::from_u128(1));
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[0].schema.version, 1);
        assert_eq!(versions[1].schema.version, 2);
        assert_eq!(versions[1].seen_at_ms, 30);
        assert_eq!(h.latest(Uuid::from_u128(1)).map(|t| t.version), Some(2));
        assert_eq!(
            h.version(Uuid::from_u128(1), 1).map(|t| t.columns.len()),
            Some(2)
        );
        assert!(h.table(Uuid::from_u128(1)).is_some());
    }

    #[test]
    fn dropped_tables_stay_and_unknown_ids_are_remembered() {
        let h = SchemaHistory::new();
        h.apply(vec![table(1, &["a"])], 10);
        h.apply(vec![], 20);
        assert!(h.latest(Uuid::from_u128(1)).is_some());
        assert!(!h.is_known_unknown(Uuid::from_u128(9)));
        h.mark_unknown(Uuid::from_u128(9));
        assert!(h.is_known_unknown(Uuid::from_u128(9)));
        h.apply(vec![table(9, &[])], 30);
        assert!(!h.is_known_unknown(Uuid::from_u128(9)));
        assert_eq!(
            h.latest_by_name("ks", "t").map(|t| t.id),
            Some(Uuid::from_u128(9))
        );
    }
}
