//! Mutations: a vint count of partition updates, all of one keyspace and one partition key
//! (CASSANDRA_COMMITLOG.md §4.1, §11).

use uuid::Uuid;

use crate::cursor::Cursor;
use crate::descriptor::FormatVersion;
use crate::error::Error;
use crate::partition::{PartitionOutcome, PartitionUpdate, read_partition_update};
use crate::schema::SchemaLookup;

/// One decoded mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// In the writer's insertion order (not table-id order). Tables may or may not have CDC on:
    /// filtering per table is the caller's job.
    pub partition_updates: Vec<PartitionUpdate>,
}

/// What decoding a mutation produced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MutationOutcome {
    Decoded(Mutation),
    /// A table id the schema lookup does not know (another keyspace, a system table, a dropped
    /// table). Partition updates carry no length, so the rest of the mutation cannot be read; the
    /// whole mutation is skipped, as Cassandra does.
    UnknownTable {
        table_id: Uuid,
    },
}

impl MutationOutcome {
    /// The mutation, when decoded.
    pub fn mutation(&self) -> Option<&Mutation> {
        match self {
            MutationOutcome::Decoded(m) => Some(m),
            MutationOutcome::UnknownTable { .. } => None,
        }
    }

    pub fn into_mutation(self) -> Option<Mutation> {
        match self {
            MutationOutcome::Decoded(m) => Some(m),
            MutationOutcome::UnknownTable { .. } => None,
        }
    }
}

/// Decodes the bytes of one mutation (the payload of a commit-log entry) written in `version`.
///
/// Every byte must be consumed. Errors carry the offset inside `bytes` (the segment reader
/// re-bases them onto the segment).
pub fn decode_mutation<S: SchemaLookup + ?Sized>(
    bytes: &[u8],
    version: FormatVersion,
    schema: &S,
) -> Result<MutationOutcome, Error> {
    let mut c = Cursor::new(bytes);
    let at = c.position();
    let count = c.count("partition update count")?;
    if count == 0 {
        return Err(Error::malformed(at, "at least one partition update"));
    }
    let mut partition_updates = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        match read_partition_update(&mut c, version, schema)? {
            PartitionOutcome::Decoded(u) => partition_updates.push(*u),
            PartitionOutcome::UnknownTable(table_id) => {
                return Ok(MutationOutcome::UnknownTable { table_id });
            }
        }
    }
    if !c.is_empty() {
        return Err(Error::malformed(
            c.position(),
            format!("the end of the mutation, {} bytes remain", c.remaining()),
        ));
    }
    Ok(MutationOutcome::Decoded(Mutation { partition_updates }))
}
