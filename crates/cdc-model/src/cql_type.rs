//! CQL types as a typed tree (never matched as strings elsewhere).

use serde::{Deserialize, Serialize};

/// A CQL data type.
///
/// `frozen` is carried on the types that can be multi-cell (list, set, map, UDT); a non-frozen one
/// is stored by Cassandra as a complex (multi-cell) column. Elements nested inside a collection are
/// always frozen.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CqlType {
    Ascii,
    Bigint,
    Blob,
    Boolean,
    Counter,
    Date,
    Decimal,
    Double,
    Duration,
    Float,
    Inet,
    Int,
    Smallint,
    Text,
    Time,
    Timestamp,
    Timeuuid,
    Tinyint,
    Uuid,
    Varint,
    List {
        element: Box<CqlType>,
        frozen: bool,
    },
    Set {
        element: Box<CqlType>,
        frozen: bool,
    },
    Map {
        key: Box<CqlType>,
        value: Box<CqlType>,
        frozen: bool,
    },
    Tuple {
        elements: Vec<CqlType>,
    },
    /// A user-defined type; field order is the declaration order.
    Udt {
        keyspace: String,
        name: String,
        fields: Vec<(String, CqlType)>,
        frozen: bool,
    },
    /// `vector<element, dimension>` (Cassandra 5.0).
    Vector {
        element: Box<CqlType>,
        dimension: u32,
    },
    /// A custom marshal class Cassandra names by its Java class; carried as raw bytes.
    Custom {
        class: String,
    },
}

/// Why a CQL type string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse CQL type {input:?} at byte {position}: {reason}")]
pub struct CqlTypeParseError {
    pub input: String,
    pub position: usize,
    pub reason: String,
}

impl CqlType {
    /// True for a multi-cell (complex) column type: a non-frozen list, set, map or UDT.
    pub fn is_multi_cell(&self) -> bool {
        match self {
            CqlType::List { frozen, .. }
            | CqlType::Set { frozen, .. }
            | CqlType::Map { frozen, .. }
            | CqlType::Udt { frozen, .. } => !frozen,
            _ => false,
        }
    }

    /// The serialized width when the type is fixed-width on disk (`AbstractType.valueLengthIfFixed`),
    /// `None` when values are length-prefixed. See CASSANDRA_COMMITLOG.md §10.1.
    pub fn fixed_value_length(&self) -> Option<usize> {
        match self {
            CqlType::Boolean => Some(1),
            CqlType::Int | CqlType::Float => Some(4),
            CqlType::Bigint | CqlType::Double | CqlType::Timestamp => Some(8),
            CqlType::Uuid | CqlType::Timeuuid => Some(16),
            CqlType::Vector { element, dimension } => element
                .fixed_value_length()
                .and_then(|w| w.checked_mul(*dimension as usize)),
            _ => None,
        }
    }

    /// The same type with `frozen` set, as it appears nested inside collections.
    pub fn frozen(self) -> CqlType {
        match self {
            CqlType::List { element, .. } => CqlType::List {
                element,
                frozen: true,
            },
            CqlType::Set { element, .. } => CqlType::Set {
                element,
                frozen: true,
            },
            CqlType::Map { key, value, .. } => CqlType::Map {
                key,
                value,
                frozen: true,
            },
            CqlType::Udt {
                keyspace,
                name,
                fields,
                ..
            } => CqlType::Udt {
                keyspace,
                name,
                fields,
                frozen: true,
            },
            other => other,
        }
    }
}
