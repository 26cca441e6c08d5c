//! The `Destination` trait every sink adapter implements, and the batch types the framework hands
//! it. The framework (consume, batch, retry, dead-letter, offsets, metrics) is generic over it.
//!
//! # Convergence contract (ARCHITECTURE §4) — every adapter must honour it
//!
//! - **Per-cell last-write-wins by writetime.** A cell written with writetime `w` replaces the
//!   stored cell only when `w` is greater than the stored cell's writetime; on a tie a tombstone
//!   wins. A partial update touches only the columns it carries.
//! - **Deletes keep their writetime.** Row, partition and range deletions are stored as tombstones
//!   with `marked_for_delete_at_micros`; they shadow every cell and row marker with writetime `<=`
//!   that value, and a later-arriving older write does not resurrect a deleted row.
//! - **Replays and reordering converge.** Applying the same events in any order, split into
//!   batches in any way, any number of times, yields the same destination state — what `SELECT`
//!   returns in Cassandra. A replayed batch must not create duplicates (in history tables too).
//! - **Atomic offsets.** [`Destination::write_batch`] stores the batch's rows and its
//!   `next_offsets` together: both or neither (or, for engines without transactions, idempotently
//!   so that a retry after a partial write converges and the offsets never run ahead of the rows).
//! - **Poison isolation.** When the adapter can tell which events the destination rejects (a
//!   value it cannot hold), it writes *nothing* and returns [`WriteOutcome::Rejected`] naming them;
//!   the framework dead-letters those events and calls `write_batch` again without them (same
//!   `next_offsets`). An unattributed poison error makes the framework retry the events one at a
//!   time to find the culprit.
//!
//! What an adapter must not do: consume Kafka, retry on its own, or emit metrics (the framework
//! does all three, with the adapter's error classification).

use std::collections::BTreeMap;

use async_trait::async_trait;
use cdc_kafka::TopicPartition;
use cdc_model::{ChangeEvent, ColumnKind, CqlType, ErrorClass};

/// One column of a table as the envelopes describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    /// The Cassandra column name (case preserved).
    pub name: String,
    /// The CQL type from the envelope's `columns` section.
    pub cql_type: CqlType,
    /// Partition key / clustering (with position), static or regular.
    pub kind: ColumnKind,
}

/// The shape of one table known so far: every column any envelope in the batch (or earlier)
/// mentioned, key columns first in key order. Adapters create the table on first sight and add
/// the columns they lack before writing (never narrow; columns are dropped only through
/// [`Destination::drop_columns`], with `drop_columns: true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    pub keyspace: String,
    pub table: String,
    pub columns: Vec<ColumnDef>,
    /// Columns the envelopes say are dropped in Cassandra (not re-added), by name, with the
    /// latest drop time in microseconds: cells written at or before it are dead there.
    pub dropped: BTreeMap<String, i64>,
}

impl TableShape {
    /// Partition-key columns in key order.
    pub fn partition_key(&self) -> Vec<&ColumnDef> {
        let mut cols: Vec<&ColumnDef> = self
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
    pub fn clustering_key(&self) -> Vec<&ColumnDef> {
        let mut cols: Vec<&ColumnDef> = self
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

    /// Static and regular columns, in the order first seen.
    pub fn value_columns(&self) -> Vec<&ColumnDef> {
        self.columns
            .iter()
            .filter(|c| matches!(c.kind, ColumnKind::Static | ColumnKind::Regular))
            .collect()
    }

    /// Regular columns, in the order first seen.
    pub fn regular_columns(&self) -> Vec<&ColumnDef> {
        self.columns
            .iter()
            .filter(|c| c.kind == ColumnKind::Regular)
            .collect()
    }

    /// Static columns, in the order first seen.
    pub fn static_columns(&self) -> Vec<&ColumnDef> {
        self.columns
            .iter()
            .filter(|c| c.kind == ColumnKind::Static)
            .collect()
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Adds the columns of `other` this shape lacks (same table). Returns the names of the
    /// columns added. A column already known keeps its first-seen type. Drops are merged keeping
    /// the latest drop time of each column.
    pub fn merge(&mut self, other: &TableShape) -> Vec<String> {
        for (name, at) in &other.dropped {
            let e = self.dropped.entry(name.clone()).or_insert(*at);
            *e = (*e).max(*at);
        }
        let mut added = Vec::new();
        for c in &other.columns {
            if self.column(&c.name).is_none() {
                self.columns.push(c.clone());
                added.push(c.name.clone());
            }
        }
        added
    }
}

/// Where an event was read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One event of a batch with its source position and payload size.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchEvent {
    pub event: ChangeEvent,
    pub source: SourceOffset,
    /// Size of the Kafka payload (for byte metrics and batch limits).
    pub payload_bytes: usize,
}

/// The next offset to read for one partition, stored with the rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NextOffset {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// Everything one atomic write carries: the events for one table, in consumption order (per
/// partition in offset order), and the offsets to store with them. `events` may be empty: then
/// only the offsets are stored (after every event of a range was dead-lettered).
#[derive(Debug, Clone, PartialEq)]
pub struct TableBatch {
    /// The shape covering every column the events mention (already prepared).
    pub shape: TableShape,
    pub events: Vec<BatchEvent>,
    pub next_offsets: Vec<NextOffset>,
}

/// One event the destination rejects (poison), by index into [`TableBatch::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub index: usize,
    /// Why; names columns and types, never values.
    pub reason: String,
}

/// The result of a successful `write_batch` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Rows and offsets committed.
    Written {
        /// Rows inserted/updated/marked deleted in the current-state relation.
        rows: u64,
    },
    /// Nothing was written: these events are poison for this destination. The framework
    /// dead-letters them and calls again with the rest.
    Rejected(Vec<Rejection>),
}

/// A destination adapter. See the module documentation for the contract.
#[async_trait]
pub trait Destination: Send + Sync + 'static {
    /// The adapter's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// `postgres`, `timescaledb`, `clickhouse`: the `destination` metric label and DLQ stage
    /// suffix (`cdc.dlq.sink-<name>`).
    fn name(&self) -> &str;

    /// Checks the destination answers (a cheap round trip) and creates the adapter's own
    /// bookkeeping (offsets table) when missing. Called at start and while waiting for recovery.
    async fn check_health(&self) -> Result<(), Self::Error>;

    /// Creates the table for `shape` on first sight and adds the columns it lacks (ALTER before
    /// any event needing them is written). Idempotent.
    async fn prepare_table(&self, shape: &TableShape) -> Result<(), Self::Error>;

    /// Drops value columns (and their bookkeeping columns) of `keyspace.table` from every
    /// relation holding them: Cassandra dropped them and `drop_columns` is on. Idempotent;
    /// nothing when the table or a column does not exist. The default keeps them (adapters
    /// that cannot drop columns).
    async fn drop_columns(
        &self,
        _keyspace: &str,
        _table: &str,
        _columns: &[String],
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    /// The stored next offset of each partition for consumer group `group`; `None` where nothing
    /// was stored (the framework then starts at the beginning).
    async fn load_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<i64>)>, Self::Error>;

    /// Applies `batch` convergently and stores `batch.next_offsets` for `group` atomically with it.
    async fn write_batch(
        &self,
        group: &str,
        batch: &TableBatch,
    ) -> Result<WriteOutcome, Self::Error>;

    /// Sets the stored next offsets of `group` for these partitions to exactly these values — an
    /// operator's replay (`cdcctl replay`), so unlike [`Destination::write_batch`] a *lower*
    /// offset must win over what is stored. Partitions not listed keep their offsets; other
    /// destinations are untouched (each keeps its own offsets).
    ///
    /// The default stores the offsets through an events-free `write_batch` per topic, which is
    /// right for adapters whose offset store simply overwrites (PostgreSQL's upsert does); an
    /// adapter whose store keeps the maximum (ClickHouse) must override it.
    async fn rewind_offsets(&self, group: &str, offsets: &[NextOffset]) -> Result<(), Self::Error> {
        let mut by_topic: std::collections::BTreeMap<&str, Vec<NextOffset>> =
            std::collections::BTreeMap::new();
        for o in offsets {
            by_topic
                .entry(o.topic.as_str())
                .or_default()
                .push(o.clone());
        }
        for (topic, next_offsets) in by_topic {
            let (keyspace, table) = match cdc_model::Topic::parse(topic) {
                Ok(cdc_model::Topic::Table {
                    keyspace, table, ..
                }) => (keyspace, table),
                _ => (String::new(), topic.to_owned()),
            };
            let batch = TableBatch {
                shape: TableShape {
                    keyspace,
                    table,
                    dropped: Default::default(),
                    columns: Vec::new(),
                },
                events: Vec::new(),
                next_offsets,
            };
            self.write_batch(group, &batch).await?;
        }
        Ok(())
    }

    /// The class of one of this adapter's errors: `Retriable` (connection, timeout, pool,
    /// serialization failure), `Poison` (the data: retried one event at a time, then
    /// dead-lettered), `Fatal` (misconfiguration, permissions: stop the sink).
    fn classify(&self, error: &Self::Error) -> ErrorClass;

    /// True when a retriable `error` means the destination answered but refused the work for
    /// lack of resources (PostgreSQL/TimescaleDB: too many connections). After the retries such
    /// a batch goes to the DLQ instead of pausing the consumer until the destination is healthy,
    /// which is what an unreachable destination gets. Required (no default), so that a wrapper
    /// cannot silently hide it from the runner.
    fn is_overloaded(&self, error: &Self::Error) -> bool;
}
