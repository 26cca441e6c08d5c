//! The sink options `drop_columns` and `column_renames` (docs/schema-evolution.md), applied
//! around any adapter: [`EvolvingDestination`] rewrites shapes and batches before the adapter
//! sees them and asks the adapter to drop columns at the right moment.
//!
//! - `column_renames`: a primary-key column renamed in Cassandra keeps its destination name;
//!   events carrying the new name are written to the old column (ClickHouse cannot rename key
//!   columns, so every adapter maps the same way).
//! - `drop_columns`: the envelopes list the columns dropped as of their schema version with the
//!   drop time. The first batch that says so drops the destination column (before that batch is
//!   written); cells written at or before the drop time — late events of the old schema — are
//!   left out, so they never bring the column back. A column re-added in Cassandra has cells
//!   written after the drop and is added again.
//!
//! Must not: talk to a database itself (the adapter does), or keep anything the adapter's
//! destination does not also show (the drops it learned are re-learned from the next envelope
//! after a restart).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use cdc_kafka::TopicPartition;
use cdc_model::ErrorClass;

use crate::destination::{Destination, NextOffset, TableBatch, TableShape, WriteOutcome};
use crate::evolution::{self, KeyRenames};

/// The schema-evolution options of one sink (`sinks.<d>.drop_columns`, `column_renames`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvolutionOptions {
    /// Drop destination columns dropped in Cassandra.
    pub drop_columns: bool,
    /// Renamed primary-key columns to map back to their destination names.
    pub column_renames: Vec<cdc_config::ColumnRename>,
}

/// An adapter with the sink's schema-evolution options applied (see the module docs).
pub struct EvolvingDestination<D> {
    inner: D,
    drop_columns: bool,
    /// `(keyspace, table)` → new name → destination name.
    renames: HashMap<(String, String), KeyRenames>,
    /// `(keyspace, table)` → dropped column → latest drop time (micros) the envelopes told.
    dropped: Mutex<HashMap<(String, String), BTreeMap<String, i64>>>,
    /// `(keyspace, table, column, drop time)` already dropped in the destination.
    applied: Mutex<HashSet<(String, String, String, i64)>>,
}

impl<D: std::fmt::Debug> std::fmt::Debug for EvolvingDestination<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvolvingDestination")
            .field("inner", &self.inner)
            .field("drop_columns", &self.drop_columns)
            .finish_non_exhaustive()
    }
}

impl<D: Destination> EvolvingDestination<D> {
    /// `inner` with `options` applied.
    pub fn new(inner: D, options: &EvolutionOptions) -> Self {
        let mut renames: HashMap<(String, String), KeyRenames> = HashMap::new();
        for r in &options.column_renames {
            let (keyspace, table) = r.table.split_once('.').unwrap_or(("", r.table.as_str()));
            renames
                .entry((keyspace.to_owned(), table.to_owned()))
                .or_default()
                .insert(r.to.clone(), r.from.clone());
        }
        EvolvingDestination {
            inner,
            drop_columns: options.drop_columns,
            renames,
            dropped: Mutex::new(HashMap::new()),
            applied: Mutex::new(HashSet::new()),
        }
    }

    /// The wrapped adapter (tests read the destination through it).
    pub fn inner(&self) -> &D {
        &self.inner
    }

    fn renamed_shape(&self, shape: &TableShape) -> Option<TableShape> {
        let r = self
            .renames
            .get(&(shape.keyspace.clone(), shape.table.clone()))?;
        Some(evolution::rename_shape(shape, r))
    }

    /// Writes `batch`, split by key column names when it mixes events from before and after an
    /// unmapped primary-key rename ([`evolution::split_by_key_names`]): the adapter then sees
    /// one key per write and retires the old relations (or leaves late events out) itself.
    async fn write_parts(&self, group: &str, batch: &TableBatch) -> Result<WriteOutcome, D::Error> {
        let Some(parts) = evolution::split_by_key_names(batch) else {
            return self.inner.write_batch(group, batch).await;
        };
        let mut rows = 0;
        for (part, index) in parts {
            self.inner.prepare_table(&part.shape).await?;
            match self.inner.write_batch(group, &part).await? {
                WriteOutcome::Written { rows: n } => rows += n,
                // Parts written before are written again with the rest (idempotent).
                WriteOutcome::Rejected(rejections) => {
                    return Ok(WriteOutcome::Rejected(
                        rejections
                            .into_iter()
                            .map(|r| crate::destination::Rejection {
                                index: index.get(r.index).copied().unwrap_or(r.index),
                                reason: r.reason,
                            })
                            .collect(),
                    ));
                }
            }
        }
        Ok(WriteOutcome::Written { rows })
    }

    /// Records the drops `shape` tells and returns every drop known for its table.
    fn learn(&self, shape: &TableShape) -> BTreeMap<String, i64> {
        let Ok(mut dropped) = self.dropped.lock() else {
            return shape.dropped.clone();
        };
        let known = dropped
            .entry((shape.keyspace.clone(), shape.table.clone()))
            .or_default();
        for (name, at) in &shape.dropped {
            let e = known.entry(name.clone()).or_insert(*at);
            *e = (*e).max(*at);
        }
        known.clone()
    }
}

#[async_trait]
impl<D: Destination> Destination for EvolvingDestination<D> {
    type Error = D::Error;

    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn check_health(&self) -> Result<(), Self::Error> {
        self.inner.check_health().await
    }

    async fn prepare_table(&self, shape: &TableShape) -> Result<(), Self::Error> {
        let renamed = self.renamed_shape(shape);
        let shape = renamed.as_ref().unwrap_or(shape);
        if !self.drop_columns {
            return self.inner.prepare_table(shape).await;
        }
        let dropped = self.learn(shape);
        self.inner
            .prepare_table(&evolution::shape_without_dropped(shape, &dropped))
            .await
    }

    async fn drop_columns(
        &self,
        keyspace: &str,
        table: &str,
        columns: &[String],
    ) -> Result<(), Self::Error> {
        self.inner.drop_columns(keyspace, table, columns).await
    }

    async fn load_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<i64>)>, Self::Error> {
        self.inner.load_offsets(group, partitions).await
    }

    async fn write_batch(
        &self,
        group: &str,
        batch: &TableBatch,
    ) -> Result<WriteOutcome, Self::Error> {
        let key = (batch.shape.keyspace.clone(), batch.shape.table.clone());
        let renamed = self
            .renames
            .get(&key)
            .map(|r| evolution::rename_batch(batch, r));
        let batch = renamed.as_ref().unwrap_or(batch);
        if !self.drop_columns {
            return self.write_parts(group, batch).await;
        }
        let dropped = self.learn(&batch.shape);
        let restricted = evolution::without_dropped(batch, &dropped);
        let batch = match &restricted {
            Some((b, skipped)) => {
                if !skipped.is_empty() {
                    tracing::info!(
                        destination = %self.inner.name(),
                        table = %format!("{}.{}", key.0, key.1),
                        cells = skipped.len(),
                        "Cells of dropped columns written before the drop left out (dead in \
                         Cassandra)"
                    );
                }
                b
            }
            None => batch,
        };
        let to_drop: Vec<(String, i64)> = {
            let applied = self.applied.lock().map(|a| a.clone()).unwrap_or_default();
            dropped
                .iter()
                .filter(|(name, at)| {
                    batch.shape.column(name).is_none()
                        && !applied.contains(&(key.0.clone(), key.1.clone(), (*name).clone(), **at))
                })
                .map(|(name, at)| (name.clone(), *at))
                .collect()
        };
        let dropping = !to_drop.is_empty();
        if dropping {
            let names: Vec<String> = to_drop.iter().map(|(n, _)| n.clone()).collect();
            // Before the first event of the newer schema is written.
            self.inner.drop_columns(&key.0, &key.1, &names).await?;
            tracing::warn!(
                destination = %self.inner.name(),
                table = %format!("{}.{}", key.0, key.1),
                columns = %names.join(","),
                "Columns dropped in Cassandra dropped in the destination too (drop_columns)"
            );
            if let Ok(mut applied) = self.applied.lock() {
                for (name, at) in to_drop {
                    applied.insert((key.0.clone(), key.1.clone(), name, at));
                }
            }
        }
        // The shape may differ from the one the runner prepared (columns left out, a re-added
        // column back), and a drop rebuilds the views.
        if restricted.is_some() || dropping {
            self.inner.prepare_table(&batch.shape).await?;
        }
        self.write_parts(group, batch).await
    }

    async fn rewind_offsets(&self, group: &str, offsets: &[NextOffset]) -> Result<(), Self::Error> {
        self.inner.rewind_offsets(group, offsets).await
    }

    fn classify(&self, error: &Self::Error) -> ErrorClass {
        self.inner.classify(error)
    }

    fn is_overloaded(&self, error: &Self::Error) -> bool {
        self.inner.is_overloaded(error)
    }
}
