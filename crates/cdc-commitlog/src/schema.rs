//! How the decoder finds table schemas, and the column references it hands out.
//!
//! The decoder needs a schema only for widths (fixed vs length-prefixed values), simple vs complex
//! columns, and the number of partition-key and clustering columns. Values stay raw bytes.

use std::collections::HashMap;
use std::sync::Arc;

use cdc_model::{ColumnKind, CqlType, TableSchema};
use uuid::Uuid;

/// Resolves a table id (`system_schema.tables.id`) to the schema to decode it with.
///
/// Returning `None` makes the decoder skip the whole mutation with
/// [`crate::MutationOutcome::UnknownTable`] (every partition update of a mutation shares its
/// keyspace, and one unknown table makes the rest of the mutation unreadable).
pub trait SchemaLookup {
    fn table(&self, id: Uuid) -> Option<Arc<TableSchema>>;
}

impl SchemaLookup for HashMap<Uuid, Arc<TableSchema>> {
    fn table(&self, id: Uuid) -> Option<Arc<TableSchema>> {
        self.get(&id).cloned()
    }
}

impl<T: SchemaLookup + ?Sized> SchemaLookup for &T {
    fn table(&self, id: Uuid) -> Option<Arc<TableSchema>> {
        (**self).table(id)
    }
}

impl<T: SchemaLookup + ?Sized> SchemaLookup for Arc<T> {
    fn table(&self, id: Uuid) -> Option<Arc<TableSchema>> {
        (**self).table(id)
    }
}

/// A column named in a partition-update header, resolved against the schema.
///
/// Cells refer to their column by this (cheaply cloned) reference: the column name as stored
/// (case-sensitive, unquoted) plus, for a column that no longer exists, its drop record. Cells of a
/// dropped column with `timestamp <= dropped_time_micros` are dead (Cassandra ignores them);
/// [`crate::ColumnData::is_shadowed_by_drop`] applies that rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRef {
    pub name: Arc<str>,
    /// `Some(dropped_time_micros)` when the column is only known from `dropped_columns`.
    pub dropped_at_micros: Option<i64>,
    pub(crate) cql_type: Arc<CqlType>,
}

impl ColumnRef {
    /// The type the column was decoded with (the dropped type for a dropped column).
    pub fn cql_type(&self) -> &CqlType {
        &self.cql_type
    }

    /// True for a multi-cell (complex) column.
    pub fn is_complex(&self) -> bool {
        self.cql_type.is_multi_cell()
    }

    pub(crate) fn is_counter(&self) -> bool {
        matches!(*self.cql_type, CqlType::Counter)
    }
}

/// Looks a header column name up: a live column first, then the most recent drop record.
pub(crate) fn resolve_column(table: &TableSchema, name: &str) -> Option<ColumnRef> {
    if let Some(c) = table.column(name) {
        // Key columns never appear in a header list; treat one there as unknown.
        if matches!(
            c.kind,
            ColumnKind::PartitionKey { .. } | ColumnKind::Clustering { .. }
        ) {
            return None;
        }
        return Some(ColumnRef {
            name: Arc::from(name),
            dropped_at_micros: None,
            cql_type: Arc::new(c.cql_type.clone()),
        });
    }
    table.dropped_column(name).map(|d| ColumnRef {
        name: Arc::from(name),
        dropped_at_micros: Some(d.dropped_time_micros),
        cql_type: Arc::new(d.cql_type.clone()),
    })
}
