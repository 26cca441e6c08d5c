//! A snapshot of one Cassandra table's schema (the "Schema Version" entity of the spec).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::CqlType;

/// Where a column sits in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    /// Component `position` of the partition key.
    PartitionKey {
        position: u16,
    },
    /// Component `position` of the clustering key.
    Clustering {
        position: u16,
        order: ClusteringOrder,
    },
    Static,
    Regular,
}

/// Clustering order of a clustering column; `Desc` columns are stored with a reversed comparator
/// (same bytes as the base type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusteringOrder {
    Asc,
    Desc,
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    pub cql_type: CqlType,
    pub kind: ColumnKind,
}

/// A column that was dropped; cells with a timestamp `<= dropped_time_micros` are ignored
/// by Cassandra and must be by us too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedColumn {
    pub name: String,
    /// The type recorded at drop time (UDTs are recorded as tuples).
    pub cql_type: CqlType,
    pub dropped_time_micros: i64,
    /// Static or regular.
    pub kind: ColumnKind,
}

/// One version of a table's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub keyspace: String,
    pub table: String,
    /// Cassandra's table id (`system_schema.tables.id`); a DROP + CREATE gives a new id.
    pub id: Uuid,
    /// `WITH cdc = true`.
    pub cdc: bool,
    /// Monotonic version number of this snapshot within our schema history for `id`.
    pub version: u32,
    pub columns: Vec<ColumnSchema>,
    pub dropped_columns: Vec<DroppedColumn>,
}

impl TableSchema {
    /// Partition-key columns in key order.
    pub fn partition_key(&self) -> Vec<&ColumnSchema> {
        let mut cols: Vec<_> = self
            .columns
            .iter()
            .filter(|c| matches!(c.kind, ColumnKind::PartitionKey { .. }))
            .collect();
        cols.sort_by_key(|c| match c.kind {
            ColumnKind::PartitionKey { position } => position,
            _ => u16::MAX,
        });
        cols
    }

    /// Clustering columns in key order.
    pub fn clustering_key(&self) -> Vec<&ColumnSchema> {
        let mut cols: Vec<_> = self
            .columns
            .iter()
            .filter(|c| matches!(c.kind, ColumnKind::Clustering { .. }))
            .collect();
        cols.sort_by_key(|c| match c.kind {
            ColumnKind::Clustering { position, .. } => position,
            _ => u16::MAX,
        });
        cols
    }

    /// A column (live, not dropped) by name.
    pub fn column(&self, name: &str) -> Option<&ColumnSchema> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// A dropped column by name, the most recent drop first.
    pub fn dropped_column(&self, name: &str) -> Option<&DroppedColumn> {
        self.dropped_columns
            .iter()
            .filter(|c| c.name == name)
            .max_by_key(|c| c.dropped_time_micros)
    }
}
