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
use crate::evolution::ColumnPlan;
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
    /// The CQL type each re-created column (database, table, column) was re-created for by this
    /// process (a type change; see `crate::evolution`).
    retyped: std::sync::Mutex<HashMap<(String, String, String), cdc_model::CqlType>>,
    /// `auto_migrate` (default true); with `false` the columns in `not_migrated` are not written.
    auto_migrate: bool,
    /// The Cassandra table id each state table holds (its comment), by (database, table).
    table_ids: Mutex<HashMap<(String, String), Option<uuid::Uuid>>>,
    /// (database, table, column) not added or re-created because `auto_migrate` is off.
    not_migrated: std::sync::Mutex<HashSet<(String, String, String)>>,
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
            retyped: std::sync::Mutex::new(HashMap::new()),
            auto_migrate: true,
            not_migrated: std::sync::Mutex::new(HashSet::new()),
            table_ids: Mutex::new(HashMap::new()),
            offsets_ready: Mutex::new(HashSet::new()),
            epochs: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Sets `auto_migrate` (default true): with `false`, columns the state table lacks and
    /// columns whose type changed are not written (a warning names them) instead of being added
    /// or re-created. Tables are still created on first sight.
    pub fn with_auto_migrate(mut self, on: bool) -> Self {
        self.auto_migrate = on;
        self
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
            Ok(Err(e)) => Err(Error::server(operation, relation, &e).at_server(&self.settings.url)),
            Err(_) => Err(
                Error::server(operation, relation, &clickhouse::error::Error::TimedOut)
                    .at_server(&self.settings.url),
            ),
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
        let mut created = false;
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
                        created = true;
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
            // Another incarnation of the table (DROP and CREATE TABLE in Cassandra), or late
            // events of the previous one: `write_batch` decides by table id. No DDL here.
            tracing::info!(
                destination = "clickhouse",
                relation = %relation,
                "The events' primary key differs from the state table's: another incarnation \
                 of the table; decided per batch"
            );
            return Ok(current);
        }
        // A column dropped and re-added in Cassandra with another type: archive the old one and
        // add it again (below, as missing). Older events carrying the old type are "stale":
        // `insert_rows` leaves their cells of that column out (dead in Cassandra).
        if !self.auto_migrate && !created {
            for theirs in &wanted.values {
                let action = current.column_action(theirs);
                if !matches!(
                    action,
                    ddl::ColumnAction::Add | ddl::ColumnAction::Archive(_)
                ) {
                    continue;
                }
                let k = (database.clone(), shape.table.clone(), theirs.name.clone());
                let first = self.not_migrated.lock().is_ok_and(|mut s| s.insert(k));
                if first {
                    tracing::warn!(
                        destination = "clickhouse",
                        table = %format!("{}.{}", shape.keyspace, shape.table),
                        relation = %relation,
                        column = %theirs.name,
                        wanted_type = %theirs.ty,
                        "auto_migrate is off: the column is not added or re-created, its cells \
                         are not written"
                    );
                }
            }
        }
        let not_migrated = self
            .not_migrated
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let skip = |name: &str| {
            not_migrated.contains(&(database.clone(), shape.table.clone(), name.to_owned()))
        };
        for theirs in &wanted.values {
            if skip(&theirs.name) {
                continue;
            }
            let ddl::ColumnAction::Archive(n) = current.column_action(theirs) else {
                continue;
            };
            let Some(mine) = current
                .values
                .iter()
                .find(|v| v.name == theirs.name)
                .cloned()
            else {
                continue;
            };
            for sql in ddl::archive_column_sql(&current, &mine, n) {
                self.execute("archive column", &relation, &sql).await?;
            }
            tracing::warn!(
                destination = "clickhouse",
                table = %format!("{}.{}", shape.keyspace, shape.table),
                relation = %relation,
                column = %theirs.name,
                old_type = %mine.ty,
                new_type = %theirs.ty,
                archived_as = %ddl::archive_name(n, &theirs.name),
                "Column type changed in Cassandra (drop and re-add): old values kept in the \
                 archived column, the column re-created with the new type"
            );
            current.values.retain(|v| v.name != theirs.name);
            current.archived.push(ddl::ArchivedCol {
                column: theirs.name.clone(),
                n,
                ty: mine.ty.clone(),
                multi: mine.multi.is_some(),
            });
            if let Some(def) = shape.column(&theirs.name)
                && let Ok(mut retyped) = self.retyped.lock()
            {
                retyped.insert(
                    (database.clone(), shape.table.clone(), theirs.name.clone()),
                    def.cql_type.clone(),
                );
            }
            view_stale = true;
        }
        let stale: HashSet<String> = wanted
            .values
            .iter()
            .filter(|v| current.column_action(v) == ddl::ColumnAction::Stale)
            .map(|v| v.name.clone())
            .collect();
        let missing: Vec<ddl::ValueCol> = current
            .missing_values(&wanted)
            .into_iter()
            .filter(|v| !stale.contains(&v.name) && !skip(&v.name))
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
        let plans = self.plans(&database, &batch.shape).await;
        let restricted = crate::evolution::restrict_batch(batch, &plans);
        let batch = match &restricted {
            Some((b, skipped)) => {
                crate::evolution::warn_skipped(
                    "clickhouse",
                    &b.shape.keyspace,
                    &b.shape.table,
                    skipped,
                );
                b
            }
            None => batch,
        };
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

    /// DROP TABLE + CREATE TABLE in Cassandra: the events' table ids tell the incarnation. A
    /// newer one than the state table holds (its comment `cdc:table_id:<id>`) renames it to
    /// `_cdc_state_<t>__dropped_<8 hex>` (kept, never read) and creates a fresh one; events of
    /// older incarnations (dead in Cassandra) are left out. Returns the batch to write and the
    /// original index of each kept event, when it differs.
    async fn select_incarnation(
        &self,
        batch: &TableBatch,
    ) -> Result<Option<(TableBatch, Vec<usize>)>, Error> {
        let shape = &batch.shape;
        let ids = crate::evolution::batch_incarnations(batch);
        let Some(&newest) = ids.last() else {
            return Ok(None);
        };
        let database = self.settings.database(&shape.keyspace);
        let state = ddl::state_table_name(&shape.table);
        let key = (database.clone(), shape.table.clone());
        let relation = format!("{database}.{}", shape.table);
        let mut ids_cache = self.table_ids.lock().await;
        let read_comment = || async {
            let comments: Vec<String> = self
                .timed(
                    "read table comment",
                    &relation,
                    self.client
                        .query("SELECT comment FROM system.tables WHERE database = ? AND name = ?")
                        .bind(&database)
                        .bind(&state)
                        .fetch_all::<String>(),
                )
                .await?;
            Ok::<_, Error>(
                comments
                    .first()
                    .and_then(|c| c.strip_prefix(crate::evolution::TABLE_ID_COMMENT_PREFIX))
                    .and_then(|id| uuid::Uuid::parse_str(id.trim()).ok()),
            )
        };
        let current = match ids_cache.get(&key) {
            Some(id) => *id,
            None => read_comment().await?,
        };
        let state_q = format!(
            "{}.{}",
            cdc_typemap::clickhouse::quote_ident(&database),
            cdc_typemap::clickhouse::quote_ident(&state)
        );
        let claim = |id: uuid::Uuid| {
            format!(
                "ALTER TABLE {state_q} MODIFY COMMENT '{}{id}'",
                crate::evolution::TABLE_ID_COMMENT_PREFIX
            )
        };
        let keep = match current {
            None => {
                self.prepare_cached(shape).await?;
                self.execute("comment table", &relation, &claim(newest))
                    .await?;
                newest
            }
            Some(cur)
                if crate::evolution::is_newer_incarnation(cur, newest)
                    && read_comment().await? == Some(newest) =>
            {
                // Another sink instance retired the old table already.
                self.forget(shape).await;
                self.prepare(shape).await?;
                newest
            }
            Some(cur) if crate::evolution::is_newer_incarnation(cur, newest) => {
                let retired = format!("{state}__dropped_{}", &cur.simple().to_string()[..8]);
                self.execute(
                    "retire table",
                    &relation,
                    &format!(
                        "RENAME TABLE {state_q} TO {}.{}",
                        cdc_typemap::clickhouse::quote_ident(&database),
                        cdc_typemap::clickhouse::quote_ident(&retired)
                    ),
                )
                .await?;
                tracing::warn!(
                    destination = "clickhouse",
                    table = %format!("{}.{}", shape.keyspace, shape.table),
                    old_table_id = %cur,
                    new_table_id = %newest,
                    retired_to = %retired,
                    "Table dropped and re-created in Cassandra: the old state table moved \
                     aside, a new one created"
                );
                self.forget(shape).await;
                self.prepare(shape).await?;
                self.execute("comment table", &relation, &claim(newest))
                    .await?;
                newest
            }
            Some(cur) if cur == newest && ids.len() == 1 && self.key_renamed(shape).await? => {
                // A primary-key column renamed in Cassandra without a `column_renames` mapping
                // (ClickHouse cannot rename key columns): like DROP + CREATE TABLE.
                let key_names = |l: &TableLayout| {
                    l.partition_key
                        .iter()
                        .chain(&l.clustering_key)
                        .map(|k| k.name.clone())
                        .collect::<Vec<_>>()
                };
                let wanted = key_names(&TableLayout::from_shape(&database, shape));
                let prefix = format!("{state}__dropped_");
                let retired: Vec<String> = self
                    .timed(
                        "read tables",
                        &relation,
                        self.client
                            .query(
                                "SELECT name FROM system.tables WHERE database = ? \
                                 AND startsWith(name, ?)",
                            )
                            .bind(&database)
                            .bind(&prefix)
                            .fetch_all::<String>(),
                    )
                    .await?;
                let mut late = false;
                for name in &retired {
                    let Some(t) = name.strip_prefix(&ddl::state_table_name("")) else {
                        continue;
                    };
                    if let Some(l) = self.read_layout(&database, t).await?
                        && key_names(&l) == wanted
                    {
                        late = true;
                    }
                }
                if late {
                    drop(ids_cache);
                    tracing::info!(
                        destination = "clickhouse",
                        table = %format!("{}.{}", shape.keyspace, shape.table),
                        events = batch.events.len(),
                        "Events with the primary-key column names from before a rename left \
                         out (the state table they belong to was retired)"
                    );
                    let mut none = batch.clone();
                    none.events.clear();
                    return Ok(Some((none, Vec::new())));
                }
                let tag = uuid::Uuid::new_v4().simple().to_string();
                let retired_name = format!("{prefix}{}", &tag[..8]);
                self.execute(
                    "retire table",
                    &relation,
                    &format!(
                        "RENAME TABLE {state_q} TO {}.{}",
                        cdc_typemap::clickhouse::quote_ident(&database),
                        cdc_typemap::clickhouse::quote_ident(&retired_name)
                    ),
                )
                .await?;
                tracing::warn!(
                    destination = "clickhouse",
                    table = %format!("{}.{}", shape.keyspace, shape.table),
                    retired_to = %retired_name,
                    "Primary-key column renamed in Cassandra and not in column_renames: the old \
                     state table moved aside, a new one created"
                );
                self.forget(shape).await;
                self.prepare(shape).await?;
                self.execute("comment table", &relation, &claim(newest))
                    .await?;
                newest
            }
            Some(cur) => cur,
        };
        ids_cache.insert(key, Some(keep));
        drop(ids_cache);
        let filtered = crate::evolution::only_incarnation(batch, keep);
        if let Some((b, _)) = &filtered {
            tracing::info!(
                destination = "clickhouse",
                table = %format!("{}.{}", shape.keyspace, shape.table),
                events = batch.events.len() - b.events.len(),
                "Events of a dropped incarnation of the table left out (dead in Cassandra)"
            );
        }
        Ok(filtered)
    }

    /// How to write the columns of `shape` that a type change re-created (see
    /// `crate::evolution`): with the new type when known, else left out.
    async fn plans(&self, database: &str, shape: &TableShape) -> HashMap<String, ColumnPlan> {
        let layouts = self.layouts.lock().await;
        let Some(layout) = layouts.get(&(database.to_owned(), shape.table.clone())) else {
            return HashMap::new();
        };
        let retyped = self.retyped.lock().map(|r| r.clone()).unwrap_or_default();
        let not_migrated = self
            .not_migrated
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let skipped = |c: &str| {
            not_migrated.contains(&(database.to_owned(), shape.table.clone(), c.to_owned()))
        };
        shape
            .value_columns()
            .into_iter()
            .filter(|c| layout.was_retyped(&c.name) || skipped(&c.name))
            .map(|c| {
                if skipped(&c.name) {
                    return (c.name.clone(), ColumnPlan::Skip);
                }
                let remembered =
                    retyped.get(&(database.to_owned(), shape.table.clone(), c.name.clone()));
                let current = layout.values.iter().find(|v| v.name == c.name);
                let plan = match (remembered, current) {
                    (Some(t), _) => ColumnPlan::Retype(t.clone()),
                    (None, Some(v))
                        if v.ty.replace('`', "")
                            == cdc_typemap::clickhouse::column_type(&c.cql_type)
                                .to_string()
                                .replace('`', "") =>
                    {
                        ColumnPlan::Retype(c.cql_type.clone())
                    }
                    _ => ColumnPlan::Skip,
                };
                (c.name.clone(), plan)
            })
            .collect()
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

    /// True when the state table's primary-key column names differ from `shape`'s.
    async fn key_renamed(&self, shape: &TableShape) -> Result<bool, Error> {
        let database = self.settings.database(&shape.keyspace);
        let cached = self
            .layouts
            .lock()
            .await
            .get(&(database.clone(), shape.table.clone()))
            .cloned();
        let current = match cached {
            Some(l) => l,
            None => match self.read_layout(&database, &shape.table).await? {
                Some(l) => l,
                None => return Ok(false),
            },
        };
        let wanted = TableLayout::from_shape(&database, shape);
        let names = |k: &[ddl::KeyCol]| k.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        Ok(
            names(&current.partition_key) != names(&wanted.partition_key)
                || names(&current.clustering_key) != names(&wanted.clustering_key),
        )
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

    async fn drop_columns(
        &self,
        keyspace: &str,
        table: &str,
        columns: &[String],
    ) -> Result<(), Error> {
        let database = self.settings.database(keyspace);
        let key = (database.clone(), table.to_owned());
        let mut layouts = self.layouts.lock().await;
        let current = match layouts.get(&key) {
            Some(l) => l.clone(),
            None => match self.read_layout(&database, table).await? {
                Some(l) => l,
                None => return Ok(()),
            },
        };
        let gone: Vec<&ddl::ValueCol> = current
            .values
            .iter()
            .filter(|v| columns.contains(&v.name))
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        let relation = current.relation();
        let mut next = current.clone();
        next.values.retain(|v| !columns.contains(&v.name));
        // The view first, so that it never reads a column that is gone.
        self.execute("create view", &relation, &ddl::create_view_sql(&next))
            .await?;
        self.execute(
            "drop columns",
            &relation,
            &ddl::drop_columns_sql(&current, &gone),
        )
        .await?;
        layouts.insert(key, next);
        Ok(())
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
        let selected = self.select_incarnation(batch).await?;
        let (batch, map) = match &selected {
            Some((kept, map)) => (kept, Some(map)),
            None => (batch, None),
        };
        let outcome = match self.insert_rows(group, batch).await? {
            WriteOutcome::Rejected(rejections) => WriteOutcome::Rejected(
                rejections
                    .into_iter()
                    .map(|r| Rejection {
                        index: map.and_then(|m| m.get(r.index).copied()).unwrap_or(r.index),
                        reason: r.reason,
                    })
                    .collect(),
            ),
            written => written,
        };
        if matches!(outcome, WriteOutcome::Written { .. }) {
            self.store_offsets(group, batch).await?;
        }
        Ok(outcome)
    }

    fn classify(&self, error: &Error) -> ErrorClass {
        error.class()
    }

    /// ClickHouse answers over HTTP without a connection limit of the PostgreSQL kind; its
    /// overload errors (too many simultaneous queries) are waited out like an outage.
    fn is_overloaded(&self, _error: &Error) -> bool {
        false
    }
}
