//! The ClickHouse destination adapter: Cassandra `ks.t` → database `ks` (plus an optional prefix),
//! view `t` of exactly the live rows over an append-only state table.
//!
//! # Why this design
//!
//! Change events carry only the cells their mutation wrote (partial updates), arrive out of
//! writetime order and may be replayed. ClickHouse has no transactions and merges asynchronously,
//! so an upsert design (`ReplacingMergeTree` keyed by row with a row version) would lose columns
//! on partial updates and depends on merges/`FINAL`. Instead every change is *appended* with a
//! per-column (value, state, writetime, expiry) and the view computes Cassandra's answer at read
//! time: `argMax` by (writetime, tombstone-wins) per column, deletion times as `max`, partition
//! deletions, static cells and range tombstones spread over each partition with a window. `argMax`
//! and `max` are idempotent, commutative and associative, so any order, any batching and any
//! number of replays give the same view — convergence does not rest on deduplication. See
//! [`ddl`] for the tables, hidden columns and the query pattern. The cost is that reads aggregate
//! (fine for the warehouse-style reads this serves; a scheduled compaction into an
//! `AggregatingMergeTree` is the next step if read latency matters).
//!
//! Non-frozen lists, sets and maps and counters are stored element by element (per list cell,
//! set element, map key or counter shard), so element-level updates converge the same way.
//!
//! # Exactly once
//!
//! Deterministic insert tokens plus offsets written after the rows, and skipping of replayed
//! events already present after a crash: see [`offsets`].
//!
//! # Schema evolution
//!
//! [`Destination::prepare_table`] creates the database, the state table, the offsets table and
//! the view on first sight, adds value columns the table lacks (`ADD COLUMN IF NOT EXISTS`) and
//! re-creates the view — before any event needing them is written. Columns are never dropped;
//! a column dropped in Cassandra keeps its data and is simply no longer written.

pub mod config;
pub mod ddl;
pub mod error;
pub mod offsets;
pub mod rows;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;

use async_trait::async_trait;
use cdc_kafka::TopicPartition;
use cdc_model::{ErrorClass, Topic};
use tokio::sync::Mutex;

pub use config::ClickHouseSettings;
pub use ddl::TableLayout;
pub use error::Error;

use crate::destination::{Destination, Rejection, TableBatch, TableShape, WriteOutcome};
use rows::RowEncoder;

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct ColumnRow {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    comment: String,
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct PartitionOffsetRow {
    partition: i32,
    next: i64,
}

/// The ClickHouse `Destination`.
pub struct ClickHouseDestination {
    client: clickhouse::Client,
    settings: ClickHouseSettings,
    /// The layout of each prepared table as it is in ClickHouse, by (database, table).
    layouts: Mutex<HashMap<(String, String), TableLayout>>,
    /// After a restart: the highest offset already in the state table per (topic, partition),
    /// when above the stored offsets. Replayed events at or below it are skipped.
    present: std::sync::Mutex<HashMap<(String, i32), i64>>,
    /// Databases whose offsets table is known to exist.
    offsets_ready: Mutex<HashSet<String>>,
    /// Offsets epoch per (group, topic, partition); see [`offsets`].
    epochs: offsets::EpochCache,
}

impl ClickHouseDestination {
    /// An adapter for `settings` (no connection is opened here).
    pub fn new(settings: ClickHouseSettings) -> ClickHouseDestination {
        ClickHouseDestination {
            client: settings.client(),
            settings,
            layouts: Mutex::new(HashMap::new()),
            present: std::sync::Mutex::new(HashMap::new()),
            offsets_ready: Mutex::new(HashSet::new()),
            epochs: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &ClickHouseSettings {
        &self.settings
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        relation: &str,
        fut: impl Future<Output = Result<T, clickhouse::error::Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.settings.request_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::server(operation, relation, &e)),
            Err(_) => Err(Error::server(
                operation,
                relation,
                &clickhouse::error::Error::TimedOut,
            )),
        }
    }

    async fn execute(
        &self,
        operation: &'static str,
        relation: &str,
        sql: &str,
    ) -> Result<(), Error> {
        self.timed(operation, relation, self.client.query(sql).execute())
            .await
    }

    async fn insert(
        &self,
        operation: &'static str,
        relation: &str,
        sql: String,
        token: Option<String>,
        data: Vec<u8>,
    ) -> Result<(), Error> {
        let mut insert = self.client.insert_formatted_with(sql);
        if let Some(token) = token {
            insert = insert.with_setting("insert_deduplication_token", token);
        }
        self.timed(operation, relation, async move {
            insert.send(bytes::Bytes::from(data)).await?;
            insert.end().await
        })
        .await
    }

    async fn read_layout(&self, database: &str, table: &str) -> Result<Option<TableLayout>, Error> {
        let relation = format!("{database}.{table}");
        let rows: Vec<ColumnRow> = self
            .timed(
                "read columns",
                &relation,
                self.client
                    .query(
                        "SELECT name, type, comment FROM system.columns \
                         WHERE database = ? AND table = ? ORDER BY position",
                    )
                    .bind(database)
                    .bind(ddl::state_table_name(table))
                    .fetch_all(),
            )
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let cols: Vec<(String, String, String)> = rows
            .into_iter()
            .map(|r| (r.name, r.ty, r.comment))
            .collect();
        TableLayout::from_columns(database, table, &cols).map(Some)
    }

    async fn prepare(&self, shape: &TableShape) -> Result<TableLayout, Error> {
        let database = self.settings.database(&shape.keyspace);
        let wanted = TableLayout::from_shape(&database, shape);
        let relation = wanted.relation();
        if wanted.partition_key.is_empty() {
            return Err(Error::Layout {
                relation,
                reason: "the table shape has no partition-key column".into(),
            });
        }
        let key = (database.clone(), shape.table.clone());
        let mut layouts = self.layouts.lock().await;
        let (mut current, mut view_stale) = match layouts.get(&key) {
            Some(l) => (l.clone(), false),
            None => {
                self.execute(
                    "create database",
                    &database,
                    &ddl::create_database_sql(&database),
                )
                .await?;
                self.create_offsets_table(&database).await?;
                let existing = match self.read_layout(&database, &shape.table).await? {
                    Some(l) => l,
                    None => {
                        let sql =
                            ddl::create_state_table_sql(&wanted, self.settings.table_ttl_secs);
                        self.execute("create table", &relation, &sql).await?;
                        self.read_layout(&database, &shape.table)
                            .await?
                            .ok_or_else(|| Error::Layout {
                                relation: relation.clone(),
                                reason: "the state table is missing right after its creation"
                                    .into(),
                            })?
                    }
                };
                // The previous process may have died between an ALTER and the view.
                (existing, true)
            }
        };
        let names = |k: &[ddl::KeyCol]| k.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        if names(&current.partition_key) != names(&wanted.partition_key)
            || names(&current.clustering_key) != names(&wanted.clustering_key)
        {
            return Err(Error::Layout {
                relation,
                reason: "the primary key differs from the Cassandra table's".into(),
            });
        }
        if let Some((column, existing, wanted)) = current.type_conflict(&wanted) {
            layouts.insert(key, current);
            return Err(Error::TypeChanged {
                relation,
                column,
                existing,
                wanted,
            });
        }
        let missing: Vec<ddl::ValueCol> = current
            .missing_values(&wanted)
            .into_iter()
            .cloned()
            .collect();
        if !missing.is_empty() {
            let refs: Vec<&ddl::ValueCol> = missing.iter().collect();
            if let Some(sql) = ddl::add_columns_sql(&current, &refs) {
                self.execute("add columns", &relation, &sql).await?;
            }
            current.values.extend(missing);
            view_stale = true;
        }
        if view_stale {
            self.execute("create view", &relation, &ddl::create_view_sql(&current))
                .await?;
        }
        layouts.insert(key, current.clone());
        Ok(current)
    }

    /// Appends the batch's rows (deduplicated by token) without storing offsets. `write_batch` is
    /// this followed by [`ClickHouseDestination::store_offsets`]; tests call it alone to simulate
    /// a crash between the two.
    pub async fn insert_rows(
        &self,
        group: &str,
        batch: &TableBatch,
    ) -> Result<WriteOutcome, Error> {
        let database = self.settings.database(&batch.shape.keyspace);
        let encoder = RowEncoder::new(&database, &batch.shape);
        let relation = encoder.layout().relation();
        let skip: HashMap<(String, i32), i64> =
            self.present.lock().map(|p| p.clone()).unwrap_or_default();
        let mut data = Vec::new();
        let mut included = Vec::new();
        let mut rejections = Vec::new();
        for (index, be) in batch.events.iter().enumerate() {
            let src = &be.source;
            if skip
                .get(&(src.topic.clone(), src.partition))
                .is_some_and(|max| src.offset <= *max)
            {
                continue;
            }
            match encoder.encode(&be.event, src.partition, src.offset, &mut data) {
                Ok(_) => included.push((src.partition, src.offset)),
                Err(e) if e.class() == ErrorClass::Poison => rejections.push(Rejection {
                    index,
                    reason: e.to_string(),
                }),
                Err(e) => return Err(e),
            }
        }
        if !rejections.is_empty() {
            return Ok(WriteOutcome::Rejected(rejections));
        }
        if !data.is_empty() {
            self.prepare_cached(&batch.shape).await?;
            let topic = batch
                .events
                .first()
                .map(|e| e.source.topic.clone())
                .unwrap_or_default();
            let token = offsets::dedup_token(group, &topic, included.iter().copied(), &data);
            let result = self
                .insert(
                    "insert rows",
                    &relation,
                    encoder.layout().insert_sql(),
                    Some(token),
                    data,
                )
                .await;
            if let Err(e) = result {
                if e.is_missing_relation() {
                    self.forget(&batch.shape).await;
                }
                return Err(e);
            }
        }
        Ok(WriteOutcome::Written {
            rows: included.len() as u64,
        })
    }

    /// Stores the batch's next offsets (after its rows).
    pub async fn store_offsets(&self, group: &str, batch: &TableBatch) -> Result<(), Error> {
        if batch.next_offsets.is_empty() {
            return Ok(());
        }
        let database = self.settings.database(&batch.shape.keyspace);
        // A batch whose events were all dead-lettered may be the first write to this database.
        if !self.offsets_ready.lock().await.contains(&database) {
            self.execute(
                "create database",
                &database,
                &ddl::create_database_sql(&database),
            )
            .await?;
            self.create_offsets_table(&database).await?;
            self.offsets_ready.lock().await.insert(database.clone());
        }
        let epochs = self
            .epochs_for(&database, group, &batch.next_offsets)
            .await?;
        let stored = self
            .insert(
                "store offsets",
                &database,
                offsets::insert_offsets_sql(&database),
                None,
                offsets::encode_offsets(group, &batch.next_offsets, |o| {
                    epochs
                        .get(&(o.topic.clone(), o.partition))
                        .copied()
                        .unwrap_or(0)
                }),
            )
            .await;
        if let Err(e) = stored {
            if e.is_missing_relation() {
                self.offsets_ready.lock().await.remove(&database);
            }
            return Err(e);
        }
        if let Ok(mut present) = self.present.lock() {
            for o in &batch.next_offsets {
                let k = (o.topic.clone(), o.partition);
                if present.get(&k).is_some_and(|max| o.next_offset > *max) {
                    present.remove(&k);
                }
            }
        }
        Ok(())
    }

    async fn prepare_cached(&self, shape: &TableShape) -> Result<(), Error> {
        let database = self.settings.database(&shape.keyspace);
        let wanted = TableLayout::from_shape(&database, shape);
        let ready = {
            let layouts = self.layouts.lock().await;
            layouts
                .get(&(database, shape.table.clone()))
                .is_some_and(|l| {
                    l.missing_values(&wanted).is_empty() && l.type_conflict(&wanted).is_none()
                })
        };
        if !ready {
            self.prepare(shape).await?;
        }
        Ok(())
    }

    async fn forget(&self, shape: &TableShape) {
        let database = self.settings.database(&shape.keyspace);
        self.layouts
            .lock()
            .await
            .remove(&(database, shape.table.clone()));
    }

    async fn fetch_partition_offsets(
        &self,
        relation: &str,
        query: clickhouse::query::Query,
    ) -> Result<BTreeMap<i32, i64>, Error> {
        match self
            .timed(
                "read offsets",
                relation,
                query.fetch_all::<PartitionOffsetRow>(),
            )
            .await
        {
            Ok(rows) => Ok(rows.into_iter().map(|r| (r.partition, r.next)).collect()),
            Err(e) if e.is_missing_relation() => Ok(BTreeMap::new()),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Destination for ClickHouseDestination {
    type Error = Error;

    fn name(&self) -> &str {
        "clickhouse"
    }

    async fn check_health(&self) -> Result<(), Error> {
        self.execute("ping", "server", "SELECT 1").await
    }

    async fn prepare_table(&self, shape: &TableShape) -> Result<(), Error> {
        self.prepare(shape).await.map(|_| ())
    }

    async fn load_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<i64>)>, Error> {
        let mut by_topic: BTreeMap<&str, Vec<&TopicPartition>> = BTreeMap::new();
        for tp in partitions {
            by_topic.entry(tp.topic.as_str()).or_default().push(tp);
        }
        let mut out = Vec::with_capacity(partitions.len());
        for (topic, tps) in by_topic {
            let Ok(Topic::Table {
                keyspace, table, ..
            }) = Topic::parse(topic)
            else {
                return Err(Error::Topic {
                    topic: topic.to_owned(),
                });
            };
            let database = self.settings.database(&keyspace);
            let stored: BTreeMap<i32, i64> = self
                .fetch_stored(&database, group, topic)
                .await?
                .into_iter()
                .map(|(p, (next, _epoch))| (p, next))
                .collect();
            let state = format!(
                "{}.{}",
                cdc_typemap::clickhouse::quote_ident(&database),
                cdc_typemap::clickhouse::quote_ident(&ddl::state_table_name(&table))
            );
            let present = self
                .fetch_partition_offsets(
                    &format!("{database}.{table}"),
                    self.client.query(&offsets::select_present_sql(&state)),
                )
                .await?;
            let mut skip = self.present.lock().ok();
            for tp in tps {
                let next = stored.get(&tp.partition).copied();
                let key = (tp.topic.clone(), tp.partition);
                if let Some(skip) = skip.as_mut() {
                    match present.get(&tp.partition) {
                        Some(&max) if max >= next.unwrap_or(i64::MIN) => {
                            skip.insert(key, max);
                        }
                        _ => {
                            skip.remove(&key);
                        }
                    }
                }
                out.push((tp.clone(), next));
            }
        }
        Ok(out)
    }

    async fn rewind_offsets(
        &self,
        group: &str,
        offsets: &[crate::destination::NextOffset],
    ) -> Result<(), Error> {
        self.rewind(group, offsets).await
    }

    async fn write_batch(&self, group: &str, batch: &TableBatch) -> Result<WriteOutcome, Error> {
        let outcome = self.insert_rows(group, batch).await?;
        if matches!(outcome, WriteOutcome::Written { .. }) {
            self.store_offsets(group, batch).await?;
        }
        Ok(outcome)
    }

    fn classify(&self, error: &Error) -> ErrorClass {
        error.class()
    }
}
