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

use crate::destination::{Destination, TableBatch, TableShape, WriteOutcome};
use crate::error::Error;

/// The PostgreSQL (and TimescaleDB) adapter.
pub struct PostgresDestination {
    name: String,
    pool: Pool,
    changes: ChangesLayout,
    /// Columns known to exist per `(keyspace, table)`.
    known: Mutex<HashMap<(String, String), HashSet<String>>>,
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
            pool: settings.pool()?,
            changes,
            known: Mutex::new(HashMap::new()),
        })
    }

    /// The connection pool (tests read the destination through it).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn known_columns(&self, shape: &TableShape) -> Option<HashSet<String>> {
        self.known
            .lock()
            .ok()?
            .get(&(shape.keyspace.clone(), shape.table.clone()))
            .cloned()
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, Error> {
        self.pool
            .get()
            .await
            .map_err(|source| Error::Pool { source })
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
        for (relation, columns) in [
            (&state, shape.regular_columns()),
            (&statics, shape.static_columns()),
        ] {
            for c in columns {
                for s in ddl::add_value_column(relation, c, true) {
                    tx.batch_execute(&s).await.map_err(pg("alter", relation))?;
                }
            }
        }
        if self.changes.enabled {
            self.ensure_changes(&tx, shape).await?;
        }
        // The view lists every value column the tables have (also those no longer in the
        // shape), in table order.
        let keys: HashSet<String> = shape
            .partition_key()
            .into_iter()
            .chain(shape.clustering_key())
            .map(|c| c.name.clone())
            .collect();
        let mut all = HashSet::new();
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
            all.extend(cols.iter().map(|(n, _)| n.clone()));
            described.push(ddl::value_columns(&cols, &keys));
        }
        let static_values = described.pop().unwrap_or_default();
        let values = described.pop().unwrap_or_default();
        let view = naming::live_view(&shape.keyspace, &shape.table);
        tx.batch_execute(&format!("DROP VIEW IF EXISTS {view}"))
            .await
            .map_err(pg("drop view", &view))?;
        tx.batch_execute(&ddl::create_view(shape, &values, &static_values))
            .await
            .map_err(pg("create view", &view))?;
        tx.commit().await.map_err(pg("commit", &state))?;
        if let Ok(mut known) = self.known.lock() {
            known.insert((shape.keyspace.clone(), shape.table.clone()), all);
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
        for c in shape.value_columns() {
            for s in ddl::add_value_column(&rel, c, false) {
                tx.batch_execute(&s).await.map_err(pg("alter", &rel))?;
            }
        }
        Ok(())
    }

    async fn apply(&self, group: &str, batch: &TableBatch) -> Result<WriteOutcome, Error> {
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
        let client = self.client().await?;
        client
            .batch_execute(&offsets::create_table())
            .await
            .map_err(pg("create", naming::OFFSETS_TABLE))
    }

    async fn prepare_table(&self, shape: &TableShape) -> Result<(), Error> {
        if let Some(known) = self.known_columns(shape)
            && shape.columns.iter().all(|c| known.contains(&c.name))
        {
            return Ok(());
        }
        self.ensure_table(shape).await
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
        self.apply(group, batch).await
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
}
