//! The change event and the CQL value model shared by every stage, with its Avro and JSON codecs
//! and the topic naming rules. Pure data: no I/O, no Kafka, no databases.
//!
//! - [`CqlType`] (parsed from `system_schema` type strings) and [`TableSchema`];
//! - [`CqlValue`] and [`native_codec`], Cassandra's serialized value bytes;
//! - [`ChangeEvent`] and its parts ([`event`]);
//! - [`json_codec`] (a self-describing Debezium-like envelope) and [`avro_codec`] (per-table
//!   schemas derived from the table schema, Confluent wire framing);
//! - [`topic`] names, [`DeadLetter`], [`CapturePosition`], [`ErrorClass`].

pub mod avro_codec;
pub mod cql_type;
pub mod dead_letter;
pub mod error;
pub mod error_class;
pub mod event;
pub mod headers;
pub mod json_codec;
pub mod native_codec;
pub mod position;
pub mod schema;
pub mod topic;
pub mod value;

#[cfg(test)]
mod test_strategies;

pub use cql_type::{CqlType, CqlTypeParseError, NoUdts, UdtDefinition, UdtResolver};
pub use dead_letter::{DeadLetter, PayloadFormat};
pub use error::Error;
pub use error_class::ErrorClass;
pub use event::{
    CellChange, CellPath, CellValue, ChangeEvent, ClusteringBound, ComplexDeletion, CounterShard,
    CounterShardKind, Deletion, DeletionScope, ElementChange, KeyColumn, Liveness, Operation,
    SourceInfo, Ttl, correlation_id,
};
pub use position::CapturePosition;
pub use schema::{ClusteringOrder, ColumnKind, ColumnSchema, DroppedColumn, TableSchema};
pub use topic::{
    CAPTURE_POSITIONS_TOPIC, TableTopicKind, Topic, dlq_topic, masked_topic, raw_topic,
};
pub use value::CqlValue;
