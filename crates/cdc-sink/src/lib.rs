//! The sink framework every destination shares: consume masked topics, batch, write atomically with
//! offsets through a `Destination` adapter, retry, dead-letter and measure.
//!
//! Adapters live here too, one folder per destination (`postgres/`, `timescaledb/`, `clickhouse/`).
//! This crate must not configure Kafka clients itself (that is `cdc-kafka`) nor invent metric names
//! (that is `cdc-telemetry`).

pub mod clickhouse;
pub mod destination;

pub use destination::{
    BatchEvent, ColumnDef, Destination, NextOffset, Rejection, SourceOffset, TableBatch,
    TableShape, WriteOutcome,
};
pub mod envelope;
pub mod error;
pub mod evolution;
pub mod evolving;
pub mod postgres;
pub mod timescaledb;

pub use error::Error;
pub mod runner;

pub use runner::{RunnerConfig, SinkRunner};
pub mod compliance;
pub mod service;
pub mod settings;
