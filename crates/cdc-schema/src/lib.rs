//! Cassandra table schemas read from `system_schema` over CQL, kept as versions so each mutation is
//! decoded with the schema in force when it was written. Owns CQL value decoding into `cdc-model`
//! (through `cdc_model::native_codec`) for the capture stage.
//!
//! - [`system_schema`]: the rows read from `system_schema.{tables,columns,types,dropped_columns}`
//!   and the pure conversion of those rows into [`cdc_model::TableSchema`] values;
//! - [`history`]: the per-table-id version history, which implements the commit-log parser's
//!   [`cdc_commitlog::SchemaLookup`];
//! - [`catalog`]: the CQL session that fills the history and refreshes it on demand.
//!
//! What it must not do: read commit-log bytes, talk to Kafka, or log column values.

pub mod catalog;
pub mod error;
pub mod history;
pub mod system_schema;

pub use catalog::{CatalogSettings, SchemaCatalog};
pub use error::Error;
pub use history::{ApplyReport, SchemaHistory, SchemaVersionRecord};
pub use system_schema::{RawColumn, RawDroppedColumn, RawSchema, RawTable, RawType, build_tables};
