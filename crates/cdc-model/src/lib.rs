//! The change event and the CQL value model shared by every stage, with its Avro and JSON codecs
//! and the topic naming rules. Pure data: no I/O, no Kafka, no databases.

pub mod cql_type;
pub mod schema;

pub use cql_type::{CqlType, CqlTypeParseError};
pub use schema::{ClusteringOrder, ColumnKind, ColumnSchema, DroppedColumn, TableSchema};
