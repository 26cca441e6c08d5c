//! The PostgreSQL destination (also the wire code of TimescaleDB, see `crate::timescaledb`).
//!
//! Layout: see [`naming`] and [`ddl`]. Apply: see [`merge`] (tombstones stored and applied
//! set-based, range coverage by clustering order keys) and [`cells`] (non-frozen collections,
//! UDTs and counters element by element). Offsets: `public._cdc_offsets`, upserted in the same
//! transaction as the rows ([`offsets`]).

pub mod cells;
pub mod config;
pub mod ddl;
pub mod merge;
pub mod naming;
pub mod offsets;
pub mod tls;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use cdc_kafka::TopicPartition;
use cdc_model::{ErrorClass, Operation};
use cdc_typemap::postgres::pg_type;
use deadpool_postgres::{Pool, Transaction};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

pub use config::PgSettings;
use ddl::ChangesLayout;
use merge::{Encoded, enc_epoch_micros, enc_i64};
use naming::{changes_table, ident, partition_deletes_table, range_deletes_table, state_table};

use crate::destination::{ColumnDef, Destination, TableBatch, TableShape, WriteOutcome};
use crate::error::Error;
use crate::evolution::ColumnPlan;

/// The PostgreSQL (and TimescaleDB) adapter.
pub struct PostgresDestination {
    name: String,
    /// `host:port/database`, for messages.
    address: String,
    pool: Pool,
    changes: ChangesLayout,
    /// What the last `ensure_table` found per `(keyspace, table)`.
    known: Mutex<HashMap<(String, String), Known>>,
    /// `auto_migrate`: add new columns and re-create retyped ones (else skip them, warning).
    auto_migrate: bool,
}

/// The prepared state of one table.
#[derive(Debug, Clone, Default)]
struct Known {
    /// `(column, PostgreSQL type as the shape asks)` pairs that need no DDL.
    ready: HashSet<(String, &'static str)>,
    /// Columns to retype or leave out when writing (see `crate::evolution`).
    plans: HashMap<String, ColumnPlan>,
    /// The Cassandra table id the tables hold (comment on the state table), when recorded.
    table_id: Option<uuid::Uuid>,
    /// The last shape's primary key differs from the tables' (another incarnation).
    key_mismatch: bool,
}

impl std::fmt::Debug for PostgresDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDestination")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn pg(op: &'static str, relation: &str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let relation = relation.to_owned();
    move |source| Error::Postgres {
        op,
        relation,
        source,
    }
}

impl PostgresDestination {
    /// A PostgreSQL destination named `postgres` (no connection yet).
    pub fn new(settings: &PgSettings) -> Result<Self, Error> {
        Self::with_layout("postgres", settings, ChangesLayout::default())
    }

    /// The adapter with a given name and change-history layout (TimescaleDB uses this).
    pub fn with_layout(
        name: &str,
        settings: &PgSettings,
        changes: ChangesLayout,
    ) -> Result<Self, Error> {
        Ok(PostgresDestination {
            name: name.to_owned(),
            address: settings.address(),
            pool: settings.pool()?,
            changes,
            known: Mutex::new(HashMap::new()),
            auto_migrate: true,
        })
    }

    /// Sets `auto_migrate` (default true): with `false`, columns the tables lack and columns
    /// whose type changed are not written (a warning names them) instead of being added or
    /// re-created. Tables are still created on first sight.
    pub fn with_auto_migrate(mut self, on: bool) -> Self {
        self.auto_migrate = on;
        self
    }

    /// The connection pool (tests read the destination through it).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn known(&self, shape: &TableShape) -> Option<Known> {
        self.known
            .lock()
            .ok()?
            .get(&(shape.keyspace.clone(), shape.table.clone()))
            .cloned()
    }

    /// Describes `relation`'s columns, archives those whose type differs from the shape's (a
    /// Cassandra DROP and re-ADD with another type), adds the missing ones. Returns the plans of
    /// columns whose events are older than a type change.
    #[allow(clippy::too_many_arguments)]
    async fn evolve_columns(
        &self,
        tx: &Transaction<'_>,
        shape: &TableShape,
        relation: &str,
        columns: &[&ColumnDef],
        bookkeeping: bool,
        new_table: bool,
        ready: &mut HashSet<(String, &'static str)>,
        plans: &mut HashMap<String, ColumnPlan>,
    ) -> Result<(), Error> {
        if columns.is_empty() {
            return Ok(());
        }
        let rows = tx
            .query(
                "SELECT a.attname::text, a.atttypid::regtype::text, col_description(a.attrelid, a.attnum) \
                 FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 \
                 AND NOT a.attisdropped ORDER BY a.attnum",
                &[&relation],
            )
            .await
            .map_err(pg("describe", relation))?;
        let described: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let comments: HashMap<String, String> = rows
            .iter()
            .filter_map(|r| Some((r.get::<_, String>(0), r.get::<_, Option<String>>(2)?)))
            .collect();
        let names: Vec<String> = described.iter().map(|(n, _)| n.clone()).collect();
        let wanted: Vec<String> = columns
            .iter()
            .map(|c| pg_type(&c.cql_type).sql_name().to_owned())
            .collect();
        let normalised = tx
            .query(
                "SELECT t::regtype::text FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i) ORDER BY i",
                &[&wanted],
            )
            .await
            .map_err(pg("describe", relation))?;
        for (c, row) in columns.iter().zip(&normalised) {
            let want: String = row.get(0);
            let sql_name = pg_type(&c.cql_type).sql_name();
            // The CQL type a re-created column was made for (absent for never-changed ones).
            let recreated_for = comments
                .get(&c.name)
                .and_then(|t| t.strip_prefix(ddl::TYPE_COMMENT_PREFIX))
                .and_then(|t| cdc_model::CqlType::parse(t).ok());
            let mut action = ddl::column_action(&c.name, &want, &described);
            // A table created by this very call takes every column of its first shape.
            if !self.auto_migrate
                && !new_table
                && matches!(
                    action,
                    ddl::ColumnAction::Add | ddl::ColumnAction::Archive(_)
                )
            {
                tracing::warn!(
                    destination = %self.name,
                    table = %format!("{}.{}", shape.keyspace, shape.table),
                    relation,
                    column = %c.name,
                    cql_type = %c.cql_type,
                    existing_type = %described
                        .iter()
                        .find(|(n, _)| *n == c.name)
                        .map_or("none", |(_, t)| t.as_str()),
                    "auto_migrate is off: the column is not added or re-created, its cells are \
                     not written"
                );
                plans.insert(c.name.clone(), ColumnPlan::Skip);
                action = ddl::ColumnAction::Keep;
            }
            match action {
                ddl::ColumnAction::Keep => {
                    if let Some(t) = recreated_for
                        && !plans.contains_key(&c.name)
                    {
                        plans.insert(c.name.clone(), ColumnPlan::Retype(t));
                    }
                }
                ddl::ColumnAction::Add => {
                    for s in ddl::add_value_column(relation, c, bookkeeping) {
                        tx.batch_execute(&s).await.map_err(pg("alter", relation))?;
                    }
                }
                ddl::ColumnAction::Stale => {
                    tracing::warn!(
                        destination = %self.name,
                        table = %format!("{}.{}", shape.keyspace, shape.table),
                        column = %c.name,
                        event_type = %c.cql_type,
                        "Events written before the column's type changed in Cassandra: their \
                         cells of this column are dead there and are not written"
                    );
                    plans.insert(
                        c.name.clone(),
                        recreated_for.map_or(ColumnPlan::Skip, ColumnPlan::Retype),
                    );
                }
                ddl::ColumnAction::Archive(n) => {
                    let old = described
                        .iter()
                        .find(|(name, _)| *name == c.name)
                        .map(|(_, t)| t.clone())
                        .unwrap_or_default();
                    let storage = ddl::storage_columns(&c.name, bookkeeping, &names);
                    for s in ddl::archive_column(relation, n, &storage) {
                        tx.batch_execute(&s)
                            .await
                            .map_err(pg("archive", relation))?;
                    }
                    for s in ddl::add_value_column(relation, c, bookkeeping) {
                        tx.batch_execute(&s).await.map_err(pg("alter", relation))?;
                    }
                    tx.batch_execute(&ddl::type_comment(relation, c))
                        .await
                        .map_err(pg("alter", relation))?;
                    plans.insert(c.name.clone(), ColumnPlan::Retype(c.cql_type.clone()));
                    tracing::warn!(
                        destination = %self.name,
                        table = %format!("{}.{}", shape.keyspace, shape.table),
                        relation,
                        column = %c.name,
                        old_type = %old,
                        new_type = %want,
                        cql_type = %c.cql_type,
                        archived_as = %ddl::archive_name(n, &c.name),
                        "Column type changed in Cassandra (drop and re-add): old values kept in \
                         the archived column, the column re-created with the new type"
                    );
                }
            }
            ready.insert((c.name.clone(), sql_name));
        }
        Ok(())
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, Error> {
        self.pool.get().await.map_err(|source| Error::Pool {
            destination: self.name.clone(),
            address: self.address.clone(),
            source,
        })
    }

    async fn ensure_table(&self, shape: &TableShape) -> Result<(), Error> {
        let state = state_table(&shape.keyspace, &shape.table);
        let statics = naming::static_table(&shape.keyspace, &shape.table);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg("begin", &state))?;
        // Several sink instances may evolve the same table at once.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('cdc_sink_ddl'))",
            &[],
        )
        .await
        .map_err(pg("lock", &state))?;
        // The offsets of record must exist before the first batch of any table commits.
        tx.batch_execute(&offsets::create_table())
            .await
            .map_err(pg("create", naming::OFFSETS_TABLE))?;
        let new_table: bool = tx
            .query_one("SELECT to_regclass($1) IS NULL", &[&state])
            .await
            .map_err(pg("describe", &state))?
            .get(0);
        let mut table_id = None;
        if !new_table {
            let comment: Option<String> = tx
                .query_one(
                    "SELECT obj_description(to_regclass($1), 'pg_class')",
                    &[&state],
                )
                .await
                .map_err(pg("describe", &state))?
                .get(0);
            table_id = comment
                .as_deref()
                .and_then(|c| c.strip_prefix(crate::evolution::TABLE_ID_COMMENT_PREFIX))
                .and_then(|id| uuid::Uuid::parse_str(id).ok());
            // A shape whose primary key differs from the table's is of another incarnation
            // (DROP TABLE and CREATE TABLE in Cassandra): `write_batch` retires the old tables
            // by table id; no DDL here.
            let rows = tx
                .query(
                    "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a \
                     ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                     WHERE i.indrelid = to_regclass($1) AND i.indisprimary",
                    &[&state],
                )
                .await
                .map_err(pg("describe", &state))?;
            let existing: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
            let wanted: HashSet<String> = shape
                .partition_key()
                .into_iter()
                .chain(shape.clustering_key())
                .map(|c| c.name.clone())
                .collect();
            if existing != wanted {
                tracing::info!(
                    destination = %self.name,
                    table = %format!("{}.{}", shape.keyspace, shape.table),
                    "The events' primary key differs from the destination table's: another \
                     incarnation of the table (DROP and CREATE TABLE); decided per batch"
                );
                if let Ok(mut known) = self.known.lock() {
                    known.insert(
                        (shape.keyspace.clone(), shape.table.clone()),
                        Known {
                            table_id,
                            key_mismatch: true,
                            ..Known::default()
                        },
                    );
                }
                return Ok(());
            }
        }
        let mut stmts = vec![format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            naming::schema(&shape.keyspace)
        )];
        stmts.extend(cells::create_functions());
        stmts.extend([
            ddl::create_state_table(shape),
            ddl::create_static_table(shape),
            ddl::create_partition_deletes_table(shape),
        ]);
        if !shape.clustering_key().is_empty() {
            stmts.push(ddl::create_range_deletes_table(shape));
        }
        stmts.extend(ddl::add_clustering_key_column(shape));
        for s in &stmts {
            tx.batch_execute(s).await.map_err(pg("create", &state))?;
        }
        let view = naming::live_view(&shape.keyspace, &shape.table);
        // Archiving renames columns the view reads: drop it first (rebuilt below).
        tx.batch_execute(&format!("DROP VIEW IF EXISTS {view}"))
            .await
            .map_err(pg("drop view", &view))?;
        let mut ready: HashSet<(String, &'static str)> = shape
            .partition_key()
            .into_iter()
            .chain(shape.clustering_key())
            .map(|c| (c.name.clone(), pg_type(&c.cql_type).sql_name()))
            .collect();
        let mut plans = HashMap::new();
        for (relation, columns) in [
            (&state, shape.regular_columns()),
            (&statics, shape.static_columns()),
        ] {
            self.evolve_columns(
                &tx, shape, relation, &columns, true, new_table, &mut ready, &mut plans,
            )
            .await?;
        }
        if self.changes.enabled {
            crate::timescaledb::ensure_state_hypertable(&tx, shape, &self.changes).await?;
            self.ensure_changes(&tx, shape).await?;
            let rel = changes_table(&shape.keyspace, &shape.table);
            let mut changes_ready = HashSet::new();
            let mut changes_plans = HashMap::new();
            self.evolve_columns(
                &tx,
                shape,
                &rel,
                &shape.value_columns(),
                false,
                new_table,
                &mut changes_ready,
                &mut changes_plans,
            )
            .await?;
        }
        // The view lists every value column the tables have (also those no longer in the
        // shape), in table order.
        let keys: HashSet<String> = shape
            .partition_key()
            .into_iter()
            .chain(shape.clustering_key())
            .map(|c| c.name.clone())
            .collect();
        let mut described = Vec::new();
        for relation in [&state, &statics] {
            let rows = tx
                .query(
                    "SELECT a.attname::text, col_description(a.attrelid, a.attnum) \
                     FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 \
                     AND NOT a.attisdropped ORDER BY a.attnum",
                    &[relation],
                )
                .await
                .map_err(pg("describe", relation))?;
            let cols: Vec<(String, Option<String>)> =
                rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            described.push(ddl::value_columns(&cols, &keys));
        }
        let static_values = described.pop().unwrap_or_default();
        let values = described.pop().unwrap_or_default();
        tx.batch_execute(&ddl::create_view(shape, &values, &static_values))
            .await
            .map_err(pg("create view", &view))?;
        tx.commit().await.map_err(pg("commit", &state))?;
        if let Ok(mut known) = self.known.lock() {
            known.insert(
                (shape.keyspace.clone(), shape.table.clone()),
                Known {
                    ready,
                    plans,
                    table_id,
                    key_mismatch: false,
                },
            );
        }
        Ok(())
    }

    async fn ensure_changes(&self, tx: &Transaction<'_>, shape: &TableShape) -> Result<(), Error> {
        let rel = changes_table(&shape.keyspace, &shape.table);
        let keys = ddl::key_names(shape);
        let mut cols: Vec<String> = shape
            .partition_key()
            .into_iter()
            .chain(shape.clustering_key())
            .map(|c| format!("{} {}", ident(&c.name), pg_type(&c.cql_type).sql_name()))
            .collect();
        cols.extend(
            [
                "_cdc_time timestamptz NOT NULL",
                "_cdc_writetime bigint NOT NULL",
                "_cdc_op text NOT NULL",
                "_cdc_correlation_id text",
            ]
            .map(String::from),
        );
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {rel} ({})",
            cols.join(", ")
        ))
        .await
        .map_err(pg("create", &rel))?;
        let chunk = self.changes.chunk_interval_secs.max(60);
        tx.execute(
            &format!(
                "SELECT create_hypertable('{}', by_range('_cdc_time', INTERVAL '{chunk} seconds'), if_not_exists => true)",
                rel.replace('\'', "''")
            ),
            &[],
        )
        .await
        .map_err(pg("create_hypertable", &rel))?;
        // NULLS NOT DISTINCT: partition-level changes have no clustering values.
        let index = ident(&format!("{}_changes_uniq", shape.table));
        tx.batch_execute(&format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {rel} ({}, _cdc_writetime, _cdc_op, _cdc_time) NULLS NOT DISTINCT",
            keys.join(", ")
        ))
        .await
        .map_err(pg("create index", &rel))?;
        if let Some(r) = self.changes.retention_secs {
            tx.execute(
                &format!(
                    "SELECT add_retention_policy('{}', INTERVAL '{r} seconds', if_not_exists => true)",
                    rel.replace('\'', "''")
                ),
                &[],
            )
            .await
            .map_err(pg("add_retention_policy", &rel))?;
        }
        Ok(())
    }

    /// Records `id` as the incarnation the tables hold.
    async fn claim(&self, shape: &TableShape, id: uuid::Uuid) -> Result<(), Error> {
        let state = state_table(&shape.keyspace, &shape.table);
        let client = self.client().await?;
        client
            .batch_execute(&format!(
                "COMMENT ON TABLE {state} IS '{}{id}'",
                crate::evolution::TABLE_ID_COMMENT_PREFIX
            ))
            .await
            .map_err(pg("comment", &state))?;
        if let Ok(mut known) = self.known.lock()
            && let Some(k) = known.get_mut(&(shape.keyspace.clone(), shape.table.clone()))
        {
            k.table_id = Some(id);
        }
        Ok(())
    }

    /// DROP TABLE + CREATE TABLE in Cassandra: the events' table id tells the incarnation. A
    /// newer one than the tables hold retires them ([`ddl::retire_statements`]) and creates
    /// fresh ones; events of older incarnations (dead in Cassandra) are left out. Returns the
    /// batch to write and the original index of each of its events, when it differs.
    async fn select_incarnation(
        &self,
        batch: &TableBatch,
    ) -> Result<Option<(TableBatch, Vec<usize>)>, Error> {
        let shape = &batch.shape;
        let ids = crate::evolution::batch_incarnations(batch);
        let Some(&newest) = ids.last() else {
            return Ok(None);
        };
        if self.known(shape).is_none() {
            self.ensure_table(shape).await?;
        }
        let known = self.known(shape);
        let current = known.as_ref().and_then(|k| k.table_id);
        // Keys differ and no id recorded (tables from before ids were recorded): retire them.
        let current = match (current, known.as_ref().is_some_and(|k| k.key_mismatch)) {
            (None, true) => Some(uuid::Uuid::nil()),
            (c, _) => c,
        };
        // Same incarnation, other primary-key column names: a key column renamed in Cassandra
        // without a `column_renames` mapping, handled like DROP + CREATE TABLE.
        if let Some(k) = &known
            && k.key_mismatch
            && k.table_id == Some(newest)
            && ids.len() == 1
        {
            return self.retire_for_key_rename(batch, newest).await;
        }
        let keep = match current {
            None => {
                if self.known(shape).is_some() {
                    self.claim(shape, newest).await?;
                }
                newest
            }
            Some(cur)
                if crate::evolution::is_newer_incarnation(cur, newest)
                    || (cur.is_nil() && !newest.is_nil()) =>
            {
                let mut client = self.client().await?;
                let state = state_table(&shape.keyspace, &shape.table);
                let tx = client.transaction().await.map_err(pg("begin", &state))?;
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('cdc_sink_ddl'))",
                    &[],
                )
                .await
                .map_err(pg("lock", &state))?;
                // Another sink instance may have retired them already (under the same lock).
                let holder: Option<String> = tx
                    .query_one(
                        "SELECT obj_description(to_regclass($1), 'pg_class')",
                        &[&state],
                    )
                    .await
                    .map_err(pg("describe", &state))?
                    .get(0);
                let done = holder
                    .as_deref()
                    .and_then(|c| c.strip_prefix(crate::evolution::TABLE_ID_COMMENT_PREFIX))
                    .and_then(|id| uuid::Uuid::parse_str(id).ok())
                    == Some(newest);
                if !done {
                    for s in ddl::retire_statements(&shape.keyspace, &shape.table, cur) {
                        tx.batch_execute(&s).await.map_err(pg("retire", &state))?;
                    }
                }
                tx.commit().await.map_err(pg("commit", &state))?;
                if done {
                    if let Ok(mut known) = self.known.lock() {
                        known.remove(&(shape.keyspace.clone(), shape.table.clone()));
                    }
                    self.ensure_table(shape).await?;
                    return Ok(crate::evolution::only_incarnation(batch, newest));
                }
                tracing::warn!(
                    destination = %self.name,
                    table = %format!("{}.{}", shape.keyspace, shape.table),
                    old_table_id = %cur,
                    new_table_id = %newest,
                    retired_to = %ddl::retired_schema(&shape.keyspace, cur),
                    "Table dropped and re-created in Cassandra: the old tables moved aside, new \
                     ones created"
                );
                if let Ok(mut known) = self.known.lock() {
                    known.remove(&(shape.keyspace.clone(), shape.table.clone()));
                }
                self.ensure_table(shape).await?;
                self.claim(shape, newest).await?;
                newest
            }
            Some(cur) => cur,
        };
        let filtered = crate::evolution::only_incarnation(batch, keep);
        if let Some((b, _)) = &filtered {
            tracing::info!(
                destination = %self.name,
                table = %format!("{}.{}", shape.keyspace, shape.table),
                events = batch.events.len() - b.events.len(),
                "Events of a dropped incarnation of the table left out (dead in Cassandra)"
            );
        }
        Ok(filtered)
    }

    /// The primary-key column names of `relation` (empty when it does not exist).
    async fn primary_key_of(
        tx: &Transaction<'_>,
        relation: &str,
    ) -> Result<std::collections::BTreeSet<String>, Error> {
        let rows = tx
            .query(
                "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a \
                 ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = to_regclass($1) AND i.indisprimary",
                &[&relation],
            )
            .await
            .map_err(pg("describe", relation))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// A primary-key column renamed in Cassandra without a mapping (the events' key column
    /// names differ from the tables', the table id is the same). Events whose key is the one
    /// of relations already retired for this table are late events of the old schema and are
    /// left out; otherwise the tables are retired (like DROP + CREATE TABLE, under a fresh
    /// suffix since the table id did not change) and fresh ones created for the batch's shape.
    async fn retire_for_key_rename(
        &self,
        batch: &TableBatch,
        id: uuid::Uuid,
    ) -> Result<Option<(TableBatch, Vec<usize>)>, Error> {
        let shape = &batch.shape;
        let state = state_table(&shape.keyspace, &shape.table);
        let wanted: std::collections::BTreeSet<String> = shape
            .partition_key()
            .into_iter()
            .chain(shape.clustering_key())
            .map(|c| c.name.clone())
            .collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg("begin", &state))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('cdc_sink_ddl'))",
            &[],
        )
        .await
        .map_err(pg("lock", &state))?;
        let existing = Self::primary_key_of(&tx, &state).await?;
        // `<ks>_dropped_` as `ddl::retired_schema` spells it (without the 8 hex).
        let mut retired_prefix = ddl::retired_schema(&shape.keyspace, uuid::Uuid::nil());
        retired_prefix.truncate(retired_prefix.len() - 8);
        let retired_rows = tx
            .query(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relname = $1 AND starts_with(n.nspname, $2)",
                &[&format!("{}_state", shape.table), &retired_prefix],
            )
            .await
            .map_err(pg("describe", &state))?;
        let mut late = false;
        for r in &retired_rows {
            let rel: String = r.get(0);
            if Self::primary_key_of(&tx, &rel).await? == wanted {
                late = true;
            }
        }
        let retire = !late && existing != wanted;
        let tag = uuid::Uuid::new_v4();
        if retire {
            for s in ddl::retire_statements(&shape.keyspace, &shape.table, tag) {
                tx.batch_execute(&s).await.map_err(pg("retire", &state))?;
            }
        }
        tx.commit().await.map_err(pg("commit", &state))?;
        if late {
            tracing::info!(
                destination = %self.name,
                table = %format!("{}.{}", shape.keyspace, shape.table),
                events = batch.events.len(),
                "Events with the primary-key column names from before a rename left out (the \
                 relations they belong to were retired)"
            );
            let mut none = batch.clone();
            none.events.clear();
            return Ok(Some((none, Vec::new())));
        }
        if retire {
            tracing::warn!(
                destination = %self.name,
                table = %format!("{}.{}", shape.keyspace, shape.table),
                retired_to = %ddl::retired_schema(&shape.keyspace, tag),
                "Primary-key column renamed in Cassandra and not in column_renames: the old \
                 tables moved aside, new ones created"
            );
        }
        if let Ok(mut known) = self.known.lock() {
            known.remove(&(shape.keyspace.clone(), shape.table.clone()));
        }
        self.ensure_table(shape).await?;
        self.claim(shape, id).await?;
        Ok(None)
    }

    async fn apply(&self, group: &str, batch: &TableBatch) -> Result<WriteOutcome, Error> {
        // Columns whose type changed in Cassandra after these events were written.
        let plans = self
            .known(&batch.shape)
            .map(|k| k.plans)
            .unwrap_or_default();
        let restricted = crate::evolution::restrict_batch(batch, &plans);
        let batch = match &restricted {
            Some((b, skipped)) => {
                crate::evolution::warn_skipped(
                    &self.name,
                    &b.shape.keyspace,
                    &b.shape.table,
                    skipped,
                );
                b
            }
            None => batch,
        };
        let shape = &batch.shape;
        let reduced = merge::reduce(shape, &batch.events);
        if !reduced.rejections.is_empty() {
            return Ok(WriteOutcome::Rejected(reduced.rejections));
        }
        let state = state_table(&shape.keyspace, &shape.table);
        let statics = naming::static_table(&shape.keyspace, &shape.table);
        let layout = merge::staging(shape);
        let static_layout = merge::static_staging(shape);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg("begin", &state))?;

        // Tombstones first, stored so that the merge (and every later batch) sees them.
        if !reduced.partition_deletes.is_empty() {
            let pdel = partition_deletes_table(&shape.keyspace, &shape.table);
            let rows: Vec<_> = reduced
                .partition_deletes
                .iter()
                .map(merge::partition_delete_row)
                .collect();
            copy_rows(
                &tx,
                merge::PARTITION_DELETES_STAGING,
                &merge::partition_deletes_staging(shape),
                &rows,
                &pdel,
            )
            .await?;
            tx.batch_execute(&merge::store_partition_deletes(shape))
                .await
                .map_err(pg("partition delete", &pdel))?;
        }
        if !reduced.range_deletes.is_empty() {
            let rdel = range_deletes_table(&shape.keyspace, &shape.table);
            let rows: Vec<_> = reduced
                .range_deletes
                .iter()
                .map(merge::range_delete_row)
                .collect();
            copy_rows(
                &tx,
                merge::RANGE_DELETES_STAGING,
                &merge::range_deletes_staging(shape),
                &rows,
                &rdel,
            )
            .await?;
            tx.batch_execute(&merge::store_range_deletes(shape))
                .await
                .map_err(pg("range delete", &rdel))?;
        }
        let state_keys = ddl::key_names(shape);
        stage_and_merge(
            &tx,
            shape,
            &layout,
            &reduced.rows,
            &state,
            &state_keys,
            "_cdc_stg",
        )
        .await?;
        stage_and_merge(
            &tx,
            shape,
            &static_layout,
            &reduced.static_rows,
            &statics,
            &ddl::partition_key_names(shape),
            "_cdc_stg_static",
        )
        .await?;

        // Rows stored before this batch: raise their tombstone time (set-based, one statement
        // per kind whatever the number of tombstones).
        if !reduced.partition_deletes.is_empty() {
            for (target, values) in [(&state, &layout.values), (&statics, &static_layout.values)] {
                for sql in merge::apply_partition_deletes(shape, target, values) {
                    tx.batch_execute(&sql)
                        .await
                        .map_err(pg("partition delete", target))?;
                }
            }
        }
        if !reduced.range_deletes.is_empty() {
            for sql in merge::apply_range_deletes(shape, &state, &layout.values) {
                tx.batch_execute(&sql)
                    .await
                    .map_err(pg("range delete", &state))?;
            }
        }

        if self.changes.enabled && !reduced.applied.is_empty() {
            self.append_changes(&tx, batch, &reduced.applied).await?;
        }
        offsets::store(&tx, group, &batch.next_offsets).await?;
        tx.commit().await.map_err(pg("commit", &state))?;
        let rows = reduced.rows.len() as u64
            + reduced.static_rows.len() as u64
            + reduced.partition_deletes.len() as u64
            + reduced.range_deletes.len() as u64;
        Ok(WriteOutcome::Written { rows })
    }

    async fn append_changes(
        &self,
        tx: &Transaction<'_>,
        batch: &TableBatch,
        applied: &[usize],
    ) -> Result<(), Error> {
        let shape = &batch.shape;
        let rel = changes_table(&shape.keyspace, &shape.table);
        let key_defs: Vec<_> = shape
            .partition_key()
            .into_iter()
            .chain(shape.clustering_key())
            .collect();
        let values = shape.value_columns();
        let mut cols: Vec<(String, &'static str, Type)> = key_defs
            .iter()
            .map(|c| {
                let t = pg_type(&c.cql_type);
                (ident(&c.name), t.sql_name(), merge::wire_type(t))
            })
            .collect();
        cols.push(("_cdc_time".into(), "timestamptz", Type::TIMESTAMPTZ));
        cols.push(("_cdc_writetime".into(), "bigint", Type::INT8));
        cols.push(("_cdc_op".into(), "text", Type::TEXT));
        cols.push(("_cdc_correlation_id".into(), "text", Type::TEXT));
        for c in &values {
            let t = pg_type(&c.cql_type);
            cols.push((ident(&c.name), t.sql_name(), merge::wire_type(t)));
        }
        let defs: Vec<String> = cols.iter().map(|(n, t, _)| format!("{n} {t}")).collect();
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE _cdc_chg ({}) ON COMMIT DROP",
            defs.join(", ")
        ))
        .await
        .map_err(pg("create staging", &rel))?;
        let names: Vec<&str> = cols.iter().map(|(n, _, _)| n.as_str()).collect();
        let types: Vec<Type> = cols.iter().map(|(_, _, t)| t.clone()).collect();
        let sink = tx
            .copy_in(&format!(
                "COPY _cdc_chg ({}) FROM STDIN BINARY",
                names.join(", ")
            ))
            .await
            .map_err(pg("copy", &rel))?;
        let writer = BinaryCopyInWriter::new(sink, &types);
        futures::pin_mut!(writer);
        for &i in applied {
            let Some(be) = batch.events.get(i) else {
                continue;
            };
            let e = &be.event;
            let mut row: Vec<Option<Vec<u8>>> = Vec::with_capacity(cols.len());
            let key_values: HashMap<&str, &cdc_model::CqlValue> = e
                .partition_key
                .iter()
                .chain(&e.clustering_key)
                .map(|k| (k.name.as_str(), &k.value))
                .collect();
            for c in &key_defs {
                let v =
                    match key_values.get(c.name.as_str()) {
                        Some(v) => cdc_typemap::postgres::encode_binary(&c.cql_type, v).map_err(
                            |source| Error::Value {
                                keyspace: shape.keyspace.clone(),
                                table: shape.table.clone(),
                                column: c.name.clone(),
                                source,
                            },
                        )?,
                        None => None,
                    };
                row.push(v);
            }
            let wt = e.max_writetime_micros().unwrap_or(0);
            row.push(Some(enc_epoch_micros(wt)));
            row.push(Some(enc_i64(wt)));
            let op = match e.op {
                Operation::Insert => "insert",
                Operation::Update => "update",
                Operation::Delete => "delete",
            };
            row.push(Some(op.as_bytes().to_vec()));
            row.push(Some(e.correlation_id.as_bytes().to_vec()));
            for c in &values {
                let v = match e.cell(&c.name).map(|cell| &cell.change) {
                    Some(cdc_model::CellValue::Set { value }) => {
                        cdc_typemap::postgres::encode_binary(&c.cql_type, value).map_err(
                            |source| Error::Value {
                                keyspace: shape.keyspace.clone(),
                                table: shape.table.clone(),
                                column: c.name.clone(),
                                source,
                            },
                        )?
                    }
                    _ => None,
                };
                row.push(v);
            }
            let enc: Vec<Encoded<'_>> = row.iter().map(|v| Encoded(v.as_deref())).collect();
            let refs: Vec<&(dyn ToSql + Sync)> =
                enc.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            writer
                .as_mut()
                .write(&refs)
                .await
                .map_err(pg("copy", &rel))?;
        }
        writer.finish().await.map_err(pg("copy", &rel))?;
        let names_joined = names.join(", ");
        tx.batch_execute(&format!(
            "INSERT INTO {rel} ({names_joined}) SELECT {names_joined} FROM _cdc_chg ON CONFLICT DO NOTHING"
        ))
        .await
        .map_err(pg("insert changes", &rel))?;
        Ok(())
    }
}

/// COPYs (binary) `rows` into a new temporary table `staging_name` with `columns`.
async fn copy_rows(
    tx: &Transaction<'_>,
    staging_name: &str,
    columns: &[(String, &'static str, Type)],
    rows: &[Vec<Option<Vec<u8>>>],
    target: &str,
) -> Result<(), Error> {
    tx.batch_execute(&merge::create_temp_table(staging_name, columns))
        .await
        .map_err(pg("create staging", target))?;
    let names: Vec<&str> = columns.iter().map(|(n, _, _)| n.as_str()).collect();
    let types: Vec<Type> = columns.iter().map(|(_, _, t)| t.clone()).collect();
    let sink = tx
        .copy_in(&format!(
            "COPY {staging_name} ({}) FROM STDIN BINARY",
            names.join(", ")
        ))
        .await
        .map_err(pg("copy", target))?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures::pin_mut!(writer);
    for row in rows {
        let enc: Vec<Encoded<'_>> = row.iter().map(|v| Encoded(v.as_deref())).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = enc.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        writer
            .as_mut()
            .write(&refs)
            .await
            .map_err(pg("copy", target))?;
    }
    writer.finish().await.map_err(pg("copy", target))?;
    Ok(())
}

/// COPYs `rows` into a temporary staging table and merges them into `target`.
async fn stage_and_merge(
    tx: &Transaction<'_>,
    shape: &TableShape,
    layout: &merge::Staging,
    rows: &[merge::RowDelta],
    target: &str,
    keys: &[String],
    staging_name: &str,
) -> Result<(), Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let staged = rows
        .iter()
        .map(|row| merge::staging_row(layout, row))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| merge::cells_err(shape, "", e))?;
    copy_rows(tx, staging_name, &layout.columns, &staged, target).await?;
    tx.batch_execute(&merge::merge_statement(
        shape,
        layout,
        staging_name,
        target,
        keys,
    ))
    .await
    .map_err(pg("merge", target))?;
    tx.batch_execute(&merge::refresh_deleted(
        target,
        &layout.values,
        &format!("FROM {staging_name} s"),
        &merge::key_join(keys),
    ))
    .await
    .map_err(pg("merge", target))?;
    Ok(())
}

#[async_trait]
impl Destination for PostgresDestination {
    type Error = Error;

    fn name(&self) -> &str {
        &self.name
    }

    async fn check_health(&self) -> Result<(), Error> {
        let mut client = self.client().await?;
        let exists: bool = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&naming::OFFSETS_TABLE],
            )
            .await
            .map_err(pg("describe", naming::OFFSETS_TABLE))?
            .get(0);
        if exists {
            return Ok(());
        }
        // Concurrent `CREATE TABLE IF NOT EXISTS` can fail on the catalog's unique index: take
        // the same lock as table DDL.
        let tx = client
            .transaction()
            .await
            .map_err(pg("begin", naming::OFFSETS_TABLE))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('cdc_sink_ddl'))",
            &[],
        )
        .await
        .map_err(pg("lock", naming::OFFSETS_TABLE))?;
        tx.batch_execute(&offsets::create_table())
            .await
            .map_err(pg("create", naming::OFFSETS_TABLE))?;
        tx.commit()
            .await
            .map_err(pg("commit", naming::OFFSETS_TABLE))
    }

    async fn prepare_table(&self, shape: &TableShape) -> Result<(), Error> {
        if let Some(known) = self.known(shape)
            && shape.columns.iter().all(|c| {
                known
                    .ready
                    .contains(&(c.name.clone(), pg_type(&c.cql_type).sql_name()))
            })
        {
            return Ok(());
        }
        self.ensure_table(shape).await
    }

    async fn drop_columns(
        &self,
        keyspace: &str,
        table: &str,
        columns: &[String],
    ) -> Result<(), Error> {
        let state = state_table(keyspace, table);
        let mut relations = vec![
            (state.clone(), true),
            (naming::static_table(keyspace, table), true),
        ];
        if self.changes.enabled {
            relations.push((changes_table(keyspace, table), false));
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg("begin", &state))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('cdc_sink_ddl'))",
            &[],
        )
        .await
        .map_err(pg("lock", &state))?;
        // The view reads the columns: dropped here, rebuilt by the next `ensure_table`.
        let view = naming::live_view(keyspace, table);
        tx.batch_execute(&format!("DROP VIEW IF EXISTS {view}"))
            .await
            .map_err(pg("drop view", &view))?;
        for (relation, bookkeeping) in &relations {
            let rows = tx
                .query(
                    "SELECT a.attname::text FROM pg_attribute a \
                     WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
                    &[relation],
                )
                .await
                .map_err(pg("describe", relation))?;
            let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            for c in columns {
                for s in ddl::storage_columns(c, *bookkeeping, &names) {
                    tx.batch_execute(&format!(
                        "ALTER TABLE {relation} DROP COLUMN IF EXISTS {}",
                        ident(&s)
                    ))
                    .await
                    .map_err(pg("drop column", relation))?;
                }
            }
        }
        tx.commit().await.map_err(pg("commit", &state))?;
        if let Ok(mut known) = self.known.lock() {
            known.remove(&(keyspace.to_owned(), table.to_owned()));
        }
        Ok(())
    }

    async fn load_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<i64>)>, Error> {
        let client = self.client().await?;
        offsets::load(&client, group, partitions).await
    }

    async fn write_batch(&self, group: &str, batch: &TableBatch) -> Result<WriteOutcome, Error> {
        match self.select_incarnation(batch).await? {
            None => self.apply(group, batch).await,
            Some((kept, map)) => match self.apply(group, &kept).await? {
                WriteOutcome::Rejected(rejections) => Ok(WriteOutcome::Rejected(
                    rejections
                        .into_iter()
                        .map(|r| crate::destination::Rejection {
                            index: map.get(r.index).copied().unwrap_or(r.index),
                            reason: r.reason,
                        })
                        .collect(),
                )),
                written => Ok(written),
            },
        }
    }

    async fn rewind_offsets(
        &self,
        group: &str,
        offsets: &[crate::destination::NextOffset],
    ) -> Result<(), Error> {
        let mut client = self.client().await?;
        offsets::rewind(&mut client, group, offsets).await
    }

    fn classify(&self, error: &Error) -> ErrorClass {
        error.class()
    }

    fn is_overloaded(&self, error: &Error) -> bool {
        error.is_overloaded()
    }
}
