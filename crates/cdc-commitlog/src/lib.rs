//! Pure parser of Cassandra commit-log / CDC segments (descriptor versions 6, 7 and 8): the
//! segment descriptor, `_cdc.idx` content, sync sections (uncompressed and LZ4), mutation entries
//! with their CRCs, and mutations down to rows, range-tombstone markers and cells.
//!
//! Bytes in, typed structures out. This crate must not do I/O (no files, no Kafka, no CQL), must
//! not decode values into typed CQL values (values, paths and keys stay raw bytes; cdc-model's codec
//! does that), and must not panic on any input: malformed bytes are errors carrying the segment id
//! and position.
//!
//! Entry points:
//! - [`SegmentFileName::parse`] and [`CdcIndex::parse`] for the `cdc_raw` directory entries;
//! - [`SegmentReader`] to iterate the mutations of a segment up to a [`ReadLimit`], resuming after a
//!   checkpoint position;
//! - [`decode_mutation`] for one mutation's bytes.
//!
//! Columns are referenced by [`ColumnRef`] (the stored column name as `Arc<str>`, plus the drop
//! time for a dropped column), not by schema indices, so decoded data stays meaningful when the
//! schema snapshot changes.
//!
//! The byte-level format is described in CASSANDRA_COMMITLOG.md (sections cited per module).

mod cdc_index;
mod cell;
mod clustering;
mod columns;
mod compression;
mod cursor;
mod deletion;
mod descriptor;
mod error;
mod header;
mod mutation;
mod partition;
mod row;
mod schema;
mod segment;
mod sync;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;
pub mod vint;

pub use cdc_index::CdcIndex;
pub use cell::{Cell, ColumnData};
pub use clustering::{BoundKind, ClusteringBound, ClusteringValue};
pub use deletion::{DeletionTime, Expiry, LivenessInfo, LocalDeletionTime, RowDeletion};
pub use descriptor::{
    CompressionParams, EncryptionParams, FormatVersion, SegmentDescriptor, SegmentFileKind,
    SegmentFileName,
};
pub use error::{Error, ErrorClass};
pub use header::EncodingStats;
pub use mutation::{Mutation, MutationOutcome, decode_mutation};
pub use partition::PartitionUpdate;
pub use row::{RangeTombstoneMarker, Row, Unfiltered};
pub use schema::{ColumnRef, SchemaLookup};
pub use segment::{MutationEntry, ReadLimit, ReadOptions, SegmentEnd, SegmentReader};
