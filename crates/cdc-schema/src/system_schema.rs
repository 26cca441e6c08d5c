//! The rows of `system_schema` this crate reads (CASSANDRA_COMMITLOG.md §11) and their pure
//! conversion into [`TableSchema`] values. No I/O here: [`crate::catalog`] fetches the rows.

use std::cell::Cell;
use std::collections::HashMap;

use cdc_model::{
    ClusteringOrder, ColumnKind, ColumnSchema, CqlType, DroppedColumn, NoUdts, TableSchema,
    UdtDefinition, UdtResolver,
};
use uuid::Uuid;

use crate::error::Error;

/// One row of `system_schema.tables`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTable {
    pub keyspace: String,
    pub table: String,
    pub id: Uuid,
    /// The `cdc` column (a boolean since 4.0; null when never set).
    pub cdc: bool,
}

/// One row of `system_schema.columns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawColumn {
    pub keyspace: String,
    pub table: String,
    pub column: String,
    /// `partition_key`, `clustering`, `regular` or `static`.
    pub kind: String,
    /// Position within the partition or clustering key; -1 otherwise.
    pub position: i32,
    /// The CQL type string.
    pub cql_type: String,
    /// `asc`, `desc` or `none`.
    pub clustering_order: String,
}

/// One row of `system_schema.types` (a UDT; keyspace-local).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawType {
    pub keyspace: String,
    pub name: String,
    pub field_names: Vec<String>,
    pub field_types: Vec<String>,
}

/// One row of `system_schema.dropped_columns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDroppedColumn {
    pub keyspace: String,
    pub table: String,
    pub column: String,
    /// `dropped_time` (a CQL timestamp, milliseconds; Cassandra keeps micros internally and
    /// stores `micros / 1000`).
    pub dropped_time_ms: i64,
    /// `regular` or `static`.
    pub kind: String,
    /// The type at drop time; UDTs are expanded to tuples.
    pub cql_type: String,
}

/// Everything read from `system_schema` in one refresh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawSchema {
    pub tables: Vec<RawTable>,
    pub columns: Vec<RawColumn>,
    pub types: Vec<RawType>,
    pub dropped_columns: Vec<RawDroppedColumn>,
}

/// Nested UDT definitions deeper than this are refused (type strings come from outside).
const MAX_UDT_DEPTH: usize = 32;

/// Resolves UDT names of one keyspace from its `system_schema.types` rows, recursively (a UDT's
/// fields may themselves be UDTs).
struct KeyspaceUdts<'a> {
    keyspace: &'a str,
    types: HashMap<&'a str, &'a RawType>,
    depth: Cell<usize>,
}

impl UdtResolver for KeyspaceUdts<'_> {
    fn resolve(&self, name: &str) -> Option<UdtDefinition> {
        let raw = self.types.get(name)?;
        if self.depth.get() >= MAX_UDT_DEPTH || raw.field_names.len() != raw.field_types.len() {
            return None;
        }
        self.depth.set(self.depth.get() + 1);
        let fields: Option<Vec<(String, CqlType)>> = raw
            .field_names
            .iter()
            .zip(&raw.field_types)
            .map(|(n, t)| CqlType::parse_with(t, self).ok().map(|ty| (n.clone(), ty)))
            .collect();
        self.depth.set(self.depth.get() - 1);
        Some(UdtDefinition {
            keyspace: self.keyspace.to_owned(),
            name: raw.name.clone(),
            fields: fields?,
        })
    }
}

fn column_kind(raw: &RawColumn) -> Result<ColumnKind, String> {
    let position = || {
        u16::try_from(raw.position)
            .map_err(|_| format!("key position {} out of range", raw.position))
    };
    match raw.kind.as_str() {
        "partition_key" => Ok(ColumnKind::PartitionKey {
            position: position()?,
        }),
        "clustering" => Ok(ColumnKind::Clustering {
            position: position()?,
            order: if raw.clustering_order.eq_ignore_ascii_case("desc") {
                ClusteringOrder::Desc
            } else {
                ClusteringOrder::Asc
            },
        }),
        "regular" => Ok(ColumnKind::Regular),
        "static" => Ok(ColumnKind::Static),
        other => Err(format!("unknown column kind {other:?}")),
    }
}

/// Sort key giving every snapshot the same column order: partition key, clustering key (by
/// position), then static and regular columns by name.
fn column_order(c: &ColumnSchema) -> (u8, u16, String) {
    match c.kind {
        ColumnKind::PartitionKey { position } => (0, position, String::new()),
        ColumnKind::Clustering { position, .. } => (1, position, String::new()),
        ColumnKind::Static => (2, 0, c.name.clone()),
        ColumnKind::Regular => (3, 0, c.name.clone()),
    }
}

fn build_table(
    t: &RawTable,
    columns: &[&RawColumn],
    dropped: &[&RawDroppedColumn],
    udts: &KeyspaceUdts<'_>,
) -> Result<TableSchema, Error> {
    let invalid = |column: &str, reason: String| Error::InvalidColumn {
        keyspace: t.keyspace.clone(),
        table: t.table.clone(),
        column: column.to_owned(),
        reason,
    };
    let mut cols = Vec::with_capacity(columns.len());
    for raw in columns {
        let kind = column_kind(raw).map_err(|r| invalid(&raw.column, r))?;
        let cql_type =
            CqlType::parse_with(&raw.cql_type, udts).map_err(|source| Error::TypeParse {
                keyspace: t.keyspace.clone(),
                table: t.table.clone(),
                column: raw.column.clone(),
                source: Box::new(source),
            })?;
        cols.push(ColumnSchema {
            name: raw.column.clone(),
            cql_type,
            kind,
        });
    }
    cols.sort_by_key(column_order);
    let pk = cols
        .iter()
        .filter(|c| matches!(c.kind, ColumnKind::PartitionKey { .. }))
        .count();
    if pk == 0 {
        return Err(invalid("", "the table has no partition-key column".into()));
    }
    let mut drops = Vec::with_capacity(dropped.len());
    for raw in dropped {
        let kind = if raw.kind.eq_ignore_ascii_case("static") {
            ColumnKind::Static
        } else {
            ColumnKind::Regular
        };
        // UDTs in dropped types are recorded as tuples, so no resolver is needed.
        let cql_type =
            CqlType::parse_with(&raw.cql_type, &NoUdts).map_err(|source| Error::TypeParse {
                keyspace: t.keyspace.clone(),
                table: t.table.clone(),
                column: raw.column.clone(),
                source: Box::new(source),
            })?;
        drops.push(DroppedColumn {
            name: raw.column.clone(),
            cql_type,
            dropped_time_micros: raw.dropped_time_ms.saturating_mul(1_000),
            kind,
        });
    }
    drops.sort_by(|a, b| {
        (a.name.as_str(), a.dropped_time_micros).cmp(&(b.name.as_str(), b.dropped_time_micros))
    });
    Ok(TableSchema {
        keyspace: t.keyspace.clone(),
        table: t.table.clone(),
        id: t.id,
        cdc: t.cdc,
        version: 0,
        columns: cols,
        dropped_columns: drops,
    })
}

/// Builds a schema snapshot (with `version` 0; [`crate::SchemaHistory`] numbers versions) for every
/// table in `raw`. A table whose rows cannot be interpreted is left out and its error returned
/// beside the others, so one odd table never stops capture of the rest.
pub fn build_tables(raw: &RawSchema) -> (Vec<TableSchema>, Vec<Error>) {
    let mut columns: HashMap<(&str, &str), Vec<&RawColumn>> = HashMap::new();
    for c in &raw.columns {
        columns
            .entry((c.keyspace.as_str(), c.table.as_str()))
            .or_default()
            .push(c);
    }
    let mut dropped: HashMap<(&str, &str), Vec<&RawDroppedColumn>> = HashMap::new();
    for d in &raw.dropped_columns {
        dropped
            .entry((d.keyspace.as_str(), d.table.as_str()))
            .or_default()
            .push(d);
    }
    let mut types: HashMap<&str, HashMap<&str, &RawType>> = HashMap::new();
    for t in &raw.types {
        types
            .entry(t.keyspace.as_str())
            .or_default()
            .insert(t.name.as_str(), t);
    }
    let mut out = Vec::with_capacity(raw.tables.len());
    let mut errors = Vec::new();
    for t in &raw.tables {
        let udts = KeyspaceUdts {
            keyspace: &t.keyspace,
            types: types.get(t.keyspace.as_str()).cloned().unwrap_or_default(),
            depth: Cell::new(0),
        };
        let key = (t.keyspace.as_str(), t.table.as_str());
        let cols = columns.get(&key).map(Vec::as_slice).unwrap_or_default();
        let drops = dropped.get(&key).map(Vec::as_slice).unwrap_or_default();
        match build_table(t, cols, drops, &udts) {
            Ok(schema) => out.push(schema),
            Err(e) => errors.push(e),
        }
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(table: &str, name: &str, kind: &str, position: i32, ty: &str, order: &str) -> RawColumn {
        RawColumn {
            keyspace: "ks".into(),
            table: table.into(),
            column: name.into(),
            kind: kind.into(),
            position,
            cql_type: ty.into(),
            clustering_order: order.into(),
        }
    }

    fn sample() -> RawSchema {
        RawSchema {
            tables: vec![
                RawTable {
                    keyspace: "ks".into(),
                    table: "t".into(),
                    id: Uuid::from_u128(1),
                    cdc: true,
                },
                RawTable {
                    keyspace: "ks".into(),
                    table: "bad".into(),
                    id: Uuid::from_u128(2),
                    cdc: false,
                },
            ],
            columns: vec![
                col(
                    "t",
                    "v",
                    "regular",
                    -1,
                    "map<text, frozen<address>>",
                    "none",
                ),
                col("t", "ck", "clustering", 0, "timestamp", "desc"),
                col("t", "pk2", "partition_key", 1, "text", "none"),
                col("t", "pk1", "partition_key", 0, "int", "none"),
                col("t", "s", "static", -1, "address", "none"),
                col("bad", "pk", "partition_key", 0, "nosuchtype", "none"),
            ],
            types: vec![
                RawType {
                    keyspace: "ks".into(),
                    name: "address".into(),
                    field_names: vec!["street".into(), "geo".into()],
                    field_types: vec!["text".into(), "frozen<point>".into()],
                },
                RawType {
                    keyspace: "ks".into(),
                    name: "point".into(),
                    field_names: vec!["x".into(), "y".into()],
                    field_types: vec!["double".into(), "double".into()],
                },
            ],
            dropped_columns: vec![RawDroppedColumn {
                keyspace: "ks".into(),
                table: "t".into(),
                column: "old".into(),
                dropped_time_ms: 1_700_000_000_123,
                kind: "regular".into(),
                cql_type: "frozen<tuple<text, int>>".into(),
            }],
        }
    }

    #[test]
    fn builds_keys_udts_and_drops_and_isolates_bad_tables() {
        let (tables, errors) = build_tables(&sample());
        assert_eq!(tables.len(), 1);
        assert_eq!(errors.len(), 1);
        assert!(matches!(&errors[0], Error::TypeParse { table, .. } if table == "bad"));
        let t = &tables[0];
        assert!(t.cdc);
        let names: Vec<_> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["pk1", "pk2", "ck", "s", "v"]);
        assert_eq!(
            t.column("ck").map(|c| c.kind),
            Some(ColumnKind::Clustering {
                position: 0,
                order: ClusteringOrder::Desc
            })
        );
        let s = t.column("s").map(|c| &c.cql_type);
        match s {
            Some(CqlType::Udt {
                name,
                fields,
                frozen,
                ..
            }) => {
                assert_eq!(name, "address");
                assert!(!frozen, "a bare UDT column is non-frozen");
                assert_eq!(fields.len(), 2);
                assert!(
                    matches!(&fields[1].1, CqlType::Udt { name, frozen: true, .. } if name == "point")
                );
            }
            other => panic!("unexpected type {other:?}"),
        }
        assert!(t.column("s").is_some_and(|c| c.cql_type.is_multi_cell()));
        let d = t.dropped_column("old").map(|d| d.dropped_time_micros);
        assert_eq!(d, Some(1_700_000_000_123_000));
    }

    #[test]
    fn table_without_partition_key_is_an_error() {
        let raw = RawSchema {
            tables: vec![RawTable {
                keyspace: "ks".into(),
                table: "empty".into(),
                id: Uuid::from_u128(3),
                cdc: true,
            }],
            ..RawSchema::default()
        };
        let (tables, errors) = build_tables(&raw);
        assert!(tables.is_empty());
        assert!(matches!(&errors[0], Error::InvalidColumn { .. }));
    }

    #[test]
    fn cyclic_udts_do_not_recurse_forever() {
        let raw = RawSchema {
            tables: vec![RawTable {
                keyspace: "ks".into(),
                table: "t".into(),
                id: Uuid::from_u128(4),
                cdc: true,
            }],
            columns: vec![
                col("t", "pk", "partition_key", 0, "int", "none"),
                col("t", "v", "regular", -1, "frozen<a>", "none"),
            ],
            types: vec![RawType {
                keyspace: "ks".into(),
                name: "a".into(),
                field_names: vec!["x".into()],
                field_types: vec!["frozen<a>".into()],
            }],
            dropped_columns: vec![],
        };
        let (tables, errors) = build_tables(&raw);
        assert!(tables.is_empty());
        assert_eq!(errors.len(), 1);
    }
}
