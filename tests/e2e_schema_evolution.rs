//! User story 5 end to end (shared/SPEC.md, SC-006; docs/schema-evolution.md): Cassandra schema
//! changes under live traffic, through capture → masker → the three sinks as processes, against
//! the local stack (`make stack-up`; binaries from `cargo build --workspace --bins`). Never skips.
//!
//! `schema_changes_under_load_replicate_without_restarts`: one table, a writer inserting,
//! updating and deleting rows without pause, and while it writes:
//! 1. `ALTER TABLE … ADD extra text` (SC-006), then writes that set `extra`;
//! 2. `ALTER TABLE … DROP n` (writes stop setting `n` just before);
//! 3. a type change Cassandra allows: `DROP ts` (timestamp) and `ADD ts bigint` under the same
//!    name, then writes that set the bigint;
//! 4. an incompatible-for-SQL value: a `map<text, int>` column added and written (JSON in
//!    PostgreSQL/TimescaleDB, `Map` in ClickHouse);
//! 5. after the checks below, `DROP TABLE` and `CREATE TABLE` under the same name with another
//!    primary key, rows written, `cdcctl verify` clean again, the old relations kept aside.
//!
//! Then `cdcctl verify` must be clean in PostgreSQL, ClickHouse and TimescaleDB, every service
//! must still run with the process id it started with (no crash, no restart), the destinations
//! must hold the new column types, and the old `ts` values must be archived, not shown (with a
//! warning in each sink's log).
//!
//! `drop_columns_on_drops_the_column_everywhere_under_load`: with `drop_columns: true` in every
//! sink, `ALTER TABLE … DROP gone` while a writer keeps inserting and updating: the column leaves
//! the three destinations, `cdcctl verify` is clean, nothing restarts.
//!
//! `mapped_clustering_rename_keeps_the_destination_column_under_load`: with `column_renames`
//! listing `ck` → `ck2` in every sink, `ALTER TABLE … RENAME ck TO ck2` while a writer keeps
//! inserting and updating (it switches to the new name when the rename is done): rows before and
//! after land in the destinations' `ck` column, `cdcctl verify` (which reads the same
//! `column_renames`) is clean, nothing restarts.
//!
//! `auto_migrate_off_skips_new_columns_with_a_warning`: with `auto_migrate: false` in every
//! sink, an added column is not created in any destination, the rows still replicate with
//! their other columns, each sink logs a warning naming the column, and nothing restarts.

#[path = "e2e_support.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cdc_testkit::{Destination, PipelineSpec, RunningPipeline, Service, StackEnv, Warehouses};
use scylla::client::session::Session;
use support::{assert_verify_clean, cassandra};

const T: &str = "evo";

async fn cql(session: &Session, q: &str) {
    session
        .query_unpaged(q, &[])
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    session
        .await_schema_agreement()
        .await
        .unwrap_or_else(|e| panic!("schema agreement after {q}: {e}"));
}

/// `CREATE KEYSPACE IF NOT EXISTS ks` (SimpleStrategy, one replica).
async fn create_keyspace(session: &Session, ks: &str) {
    cql(
        session,
        &format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
             {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        ),
    )
    .await;
}

/// The process id of every service now (compared by [`assert_no_restarts`] at the end).
fn service_pids(pipeline: &RunningPipeline) -> Vec<(Service, Option<u32>)> {
    Service::ALL
        .iter()
        .map(|s| (*s, pipeline.pid(*s)))
        .collect()
}

/// Every service still runs with the process id it had in `pids`.
fn assert_no_restarts(pipeline: &RunningPipeline, pids: &[(Service, Option<u32>)]) {
    for (service, pid) in pids {
        assert_eq!(
            pipeline.pid(*service),
            *pid,
            "{service:?} was restarted or died"
        );
    }
}

/// Which columns the writer sets; advanced by the test between schema changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
enum Phase {
    /// id, a, n, ts (timestamp).
    Initial = 0,
    /// + extra.
    Extra = 1,
    /// n no longer written (about to be dropped).
    NoN = 2,
    /// ts no longer written (about to be dropped and re-added as bigint).
    NoTs = 3,
    /// ts written as bigint.
    TsBigint = 4,
    /// + tags map<text, int>.
    Tags = 5,
}

impl Phase {
    fn from(v: u32) -> Phase {
        match v {
            0 => Phase::Initial,
            1 => Phase::Extra,
            2 => Phase::NoN,
            3 => Phase::NoTs,
            4 => Phase::TsBigint,
            _ => Phase::Tags,
        }
    }
}

/// The writer's shared state: the phase asked for, the phase of the last chunk fully written,
/// stop flag, and counters.
struct Load {
    phase: AtomicU32,
    acked: AtomicU32,
    stop: AtomicBool,
    writes: AtomicU32,
}

/// One chunk of writes in `phase` (new ids from `next_id`): 12 inserts, 6 updates of recent
/// rows, 1 delete, all concurrently. Every value is fake.
async fn write_chunk(session: &Session, ks: &str, phase: Phase, next_id: &mut i32) -> u32 {
    let mut stmts: Vec<String> = Vec::new();
    let ts_value = |id: i32| match phase {
        Phase::Initial | Phase::Extra | Phase::NoN => {
            Some(format!("{}", 1_700_000_000_000i64 + i64::from(id)))
        }
        Phase::NoTs => None,
        Phase::TsBigint | Phase::Tags => Some(format!("{}", 9_000_000 + i64::from(id))),
    };
    for _ in 0..12 {
        let id = *next_id;
        *next_id += 1;
        let mut cols = vec!["id".to_owned(), "a".to_owned()];
        let mut vals = vec![id.to_string(), format!("'fake-{id}'")];
        if phase < Phase::NoN {
            cols.push("n".into());
            vals.push((id * 3).to_string());
        }
        if let Some(v) = ts_value(id) {
            cols.push("ts".into());
            vals.push(v);
        }
        if phase >= Phase::Extra {
            cols.push("extra".into());
            vals.push(format!("'extra-{id}'"));
        }
        if phase >= Phase::Tags {
            cols.push("tags".into());
            vals.push(format!("{{'k{}': {id}, 'z': 1}}", id % 5));
        }
        stmts.push(format!(
            "INSERT INTO {ks}.{T} ({}) VALUES ({})",
            cols.join(", "),
            vals.join(", ")
        ));
    }
    for i in 0..6 {
        let id = (*next_id - 40 - i * 3).max(0);
        let mut sets = vec![format!("a = 'fake-upd-{id}'")];
        if phase < Phase::NoN {
            sets.push(format!("n = {}", id + 1));
        }
        if let Some(v) = ts_value(id + 7) {
            sets.push(format!("ts = {v}"));
        }
        if phase >= Phase::Extra {
            sets.push(format!("extra = 'extra-upd-{id}'"));
        }
        if phase >= Phase::Tags {
            sets.push(format!("tags = tags + {{'u': {id}}}"));
        }
        stmts.push(format!(
            "UPDATE {ks}.{T} SET {} WHERE id = {id}",
            sets.join(", ")
        ));
    }
    stmts.push(format!(
        "DELETE FROM {ks}.{T} WHERE id = {}",
        (*next_id - 25).max(0)
    ));
    let n = stmts.len() as u32;
    let futs = stmts.into_iter().map(|q| async move {
        session
            .query_unpaged(q.clone(), &[])
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    });
    futures::future::join_all(futs).await;
    n
}

async fn run_load(session: Arc<Session>, ks: String, load: Arc<Load>) {
    let mut next_id = 0;
    while !load.stop.load(Ordering::SeqCst) {
        let phase = load.phase.load(Ordering::SeqCst);
        let n = write_chunk(&session, &ks, Phase::from(phase), &mut next_id).await;
        load.writes.fetch_add(n, Ordering::SeqCst);
        load.acked.store(phase, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// Switches the writer to `phase` and waits until a whole chunk was written in it (so no write
/// of the previous phase is still in flight).
async fn switch(load: &Load, phase: Phase) {
    load.phase.store(phase as u32, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while load.acked.load(Ordering::SeqCst) != phase as u32 {
        assert!(
            Instant::now() < deadline,
            "the writer did not reach {phase:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One more chunk: the acked one may have started just before the store.
    let w = load.writes.load(Ordering::SeqCst);
    while load.writes.load(Ordering::SeqCst) == w {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every destination's live view of `ks.evo` has the column `column`.
async fn await_column(pipeline: &RunningPipeline, wh: &Warehouses, ks: &str, column: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for d in Destination::ALL {
        loop {
            let sql = match d {
                Destination::Clickhouse => format!(
                    "SELECT name FROM system.columns WHERE database = '{ks}' AND table = '{T}' AND name = '{column}'"
                ),
                _ => format!(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = '{ks}' AND table_name = '{T}' AND column_name = '{column}'"
                ),
            };
            if wh.query(d, &sql).await.is_ok_and(|r| !r.is_empty()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{d}: column {column} of {ks}.{T} not there within 120 s\n{}",
                pipeline.log_tail(d.service(), 20)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The type of `column` in each destination's view (and the archive columns of the state
/// tables).
async fn column_type(
    wh: &Warehouses,
    d: Destination,
    ks: &str,
    rel: &str,
    column: &str,
) -> Option<String> {
    let sql = match d {
        Destination::Clickhouse => format!(
            "SELECT type FROM system.columns WHERE database = '{ks}' AND table = '{rel}' AND name = '{column}'"
        ),
        _ => format!(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = '{ks}' AND table_name = '{rel}' AND column_name = '{column}'"
        ),
    };
    wh.query(d, &sql)
        .await
        .ok()
        .and_then(|rows| rows.into_iter().next())
        .and_then(|r| r.into_iter().next().flatten())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_under_load_replicate_without_restarts() {
    let started = Instant::now();
    let env = StackEnv::load();
    let ks = cdc_testkit::unique_name("e2e_evo");
    let session = Arc::new(cassandra(&env).await);
    create_keyspace(&session, &ks).await;
    cql(
        &session,
        &format!("CREATE TABLE {ks}.{T} (id int PRIMARY KEY, a text, n int, ts timestamp) WITH cdc = true"),
    )
    .await;
    let pipeline = RunningPipeline::start(&env, PipelineSpec::new("evo", [ks.clone()])).await;
    let pids = service_pids(&pipeline);
    assert!(
        pids.iter().all(|(_, p)| p.is_some()),
        "every service runs: {pids:?}"
    );
    let wh = Warehouses::connect(&env).await;

    let load = Arc::new(Load {
        phase: AtomicU32::new(Phase::Initial as u32),
        acked: AtomicU32::new(u32::MAX),
        stop: AtomicBool::new(false),
        writes: AtomicU32::new(0),
    });
    let writer = tokio::spawn(run_load(
        Arc::clone(&session),
        ks.clone(),
        Arc::clone(&load),
    ));
    // Traffic before any change, replicated.
    await_column(&pipeline, &wh, &ks, "ts").await;

    // 1. ADD COLUMN while the writer runs (SC-006); then writes that set it.
    cql(&session, &format!("ALTER TABLE {ks}.{T} ADD extra text")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    switch(&load, Phase::Extra).await;
    await_column(&pipeline, &wh, &ks, "extra").await;

    // 2. DROP COLUMN: the writer stops setting n, then the drop, traffic continues.
    switch(&load, Phase::NoN).await;
    cql(&session, &format!("ALTER TABLE {ks}.{T} DROP n")).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 3. Type change by drop and re-add (timestamp → bigint), traffic continuing on the other
    //    columns throughout.
    switch(&load, Phase::NoTs).await;
    cql(&session, &format!("ALTER TABLE {ks}.{T} DROP ts")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    cql(&session, &format!("ALTER TABLE {ks}.{T} ADD ts bigint")).await;
    switch(&load, Phase::TsBigint).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 4. A map column (no SQL equivalent in PostgreSQL: JSON there).
    cql(
        &session,
        &format!("ALTER TABLE {ks}.{T} ADD tags map<text, int>"),
    )
    .await;
    switch(&load, Phase::Tags).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    load.stop.store(true, Ordering::SeqCst);
    writer.await.unwrap_or_else(|e| panic!("writer task: {e}"));
    let writes = load.writes.load(Ordering::SeqCst);
    eprintln!("{ks}: {writes} writes across 4 schema changes");
    assert!(writes > 500, "the writer kept writing ({writes} writes)");

    // Everything converges to Cassandra's state, in every destination.
    assert_verify_clean(&pipeline, &ks).await;

    // No crash, no restart: the same processes as at the start.
    for (service, pid) in &pids {
        assert_eq!(
            pipeline.pid(*service),
            *pid,
            "{service:?} was restarted or died:\n{}",
            pipeline.log_tail(*service, 30)
        );
    }

    // The destinations hold the new types; the old ts values are archived, not shown.
    for d in Destination::ALL {
        let view_ts = column_type(&wh, d, &ks, T, "ts").await.unwrap_or_default();
        let want = match d {
            Destination::Clickhouse => "Int64",
            _ => "bigint",
        };
        assert!(
            view_ts.contains(want),
            "{d}: ts is {view_ts:?}, want {want}"
        );
        let state = match d {
            Destination::Clickhouse => format!("_cdc_state_{T}"),
            _ => format!("{T}_state"),
        };
        let archived = column_type(&wh, d, &ks, &state, "_cdc_old1__ts").await;
        assert!(
            archived.as_deref().is_some_and(|t| t.contains("ime")),
            "{d}: old ts values archived as a timestamp column, got {archived:?}"
        );
        assert!(
            column_type(&wh, d, &ks, T, "_cdc_old1__ts").await.is_none(),
            "{d}: the archive is not in the view"
        );
    }
    for d in Destination::ALL {
        let log = std::fs::read_to_string(pipeline.log_path(d.service())).unwrap_or_default();
        assert!(
            log.contains("Column type changed in Cassandra") && log.contains("_cdc_old1__ts"),
            "{d}: no warning about the ts type change:\n{}",
            pipeline.log_tail(d.service(), 20)
        );
    }

    // 5. DROP TABLE and CREATE TABLE under the same name with another primary key: the sinks
    //    move the old relations aside and replicate the new table; nothing restarts.
    cql(&session, &format!("DROP TABLE {ks}.{T}")).await;
    cql(
        &session,
        &format!(
            "CREATE TABLE {ks}.{T} (id int, k int, v text, PRIMARY KEY (id, k)) WITH cdc = true"
        ),
    )
    .await;
    let inserts = (0..150).map(|i| {
        let session = Arc::clone(&session);
        let q = format!(
            "INSERT INTO {ks}.{T} (id, k, v) VALUES ({}, {}, 'fake-v{i}')",
            i / 3,
            i % 3
        );
        async move {
            session
                .query_unpaged(q.clone(), &[])
                .await
                .unwrap_or_else(|e| panic!("{q}: {e}"));
        }
    });
    futures::future::join_all(inserts).await;
    assert_verify_clean(&pipeline, &ks).await;
    for (service, pid) in &pids {
        assert_eq!(
            pipeline.pid(*service),
            *pid,
            "{service:?} was restarted or died after DROP/CREATE TABLE:\n{}",
            pipeline.log_tail(*service, 30)
        );
    }
    for d in Destination::ALL {
        let sql = match d {
            Destination::Clickhouse => format!(
                "SELECT name FROM system.tables WHERE database = '{ks}' AND name LIKE '_cdc_state_{T}__dropped_%'"
            ),
            _ => format!(
                "SELECT table_schema FROM information_schema.tables WHERE table_schema LIKE '{ks}_dropped_%' AND table_name = '{T}_state'"
            ),
        };
        let rows = wh
            .query(d, &sql)
            .await
            .unwrap_or_else(|e| panic!("{d}: {e}"));
        assert_eq!(
            rows.len(),
            1,
            "{d}: the dropped table's relations kept aside once: {rows:?}"
        );
    }
    cql(&session, &format!("DROP KEYSPACE {ks}")).await;
    eprintln!(
        "schema evolution test took {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// Waits until `ks.table` holds `n` live rows in every destination.
async fn await_count(pipeline: &RunningPipeline, wh: &Warehouses, ks: &str, table: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for d in Destination::ALL {
        loop {
            let got = wh.count(d, ks, table).await;
            if got == Some(n) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{d}: {got:?} rows of {ks}.{table}, want {n}\n{}",
                pipeline.log_tail(d.service(), 20)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_migrate_off_skips_new_columns_with_a_warning() {
    let env = StackEnv::load();
    let ks = cdc_testkit::unique_name("e2e_evo_off");
    let table = "fixed";
    let session = Arc::new(cassandra(&env).await);
    create_keyspace(&session, &ks).await;
    cql(
        &session,
        &format!("CREATE TABLE {ks}.{table} (id int PRIMARY KEY, a text) WITH cdc = true"),
    )
    .await;
    let pipeline = RunningPipeline::start(
        &env,
        PipelineSpec::new("evo_off", [ks.clone()])
            .set("sinks.postgres.auto_migrate", false)
            .set("sinks.clickhouse.auto_migrate", false)
            .set("sinks.timescaledb.auto_migrate", false),
    )
    .await;
    let pids = service_pids(&pipeline);
    let wh = Warehouses::connect(&env).await;
    for id in 0..100 {
        cql(
            &session,
            &format!("INSERT INTO {ks}.{table} (id, a) VALUES ({id}, 'fake-{id}')"),
        )
        .await;
    }
    await_count(&pipeline, &wh, &ks, table, 100).await;

    // A column added in Cassandra and written: the destinations keep their columns, the rows
    // still arrive (with their other columns), and each sink warns.
    cql(
        &session,
        &format!("ALTER TABLE {ks}.{table} ADD extra text"),
    )
    .await;
    for id in 100..200 {
        cql(
            &session,
            &format!(
                "INSERT INTO {ks}.{table} (id, a, extra) VALUES ({id}, 'fake-{id}', 'extra-{id}')"
            ),
        )
        .await;
    }
    await_count(&pipeline, &wh, &ks, table, 200).await;
    for d in Destination::ALL {
        assert_eq!(
            column_type(&wh, d, &ks, table, "extra").await,
            None,
            "{d}: extra must not be added with auto_migrate: false"
        );
        let sql = match d {
            Destination::Clickhouse => format!("SELECT a FROM `{ks}`.`{table}` WHERE id = 150"),
            _ => format!("SELECT a FROM \"{ks}\".\"{table}\" WHERE id = 150"),
        };
        let rows = wh
            .query(d, &sql)
            .await
            .unwrap_or_else(|e| panic!("{d}: {e}"));
        assert_eq!(
            rows,
            vec![vec![Some("fake-150".to_owned())]],
            "{d}: row 150"
        );
        let log = std::fs::read_to_string(pipeline.log_path(d.service())).unwrap_or_default();
        assert!(
            log.contains("auto_migrate is off") && log.contains("\"column\":\"extra\""),
            "{d}: no auto_migrate warning naming the column:\n{}",
            pipeline.log_tail(d.service(), 20)
        );
    }
    assert_no_restarts(&pipeline, &pids);
    cql(&session, &format!("DROP KEYSPACE {ks}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_columns_on_drops_the_column_everywhere_under_load() {
    let env = StackEnv::load();
    let ks = cdc_testkit::unique_name("e2e_evo_drop");
    let table = "dropper";
    let session = Arc::new(cassandra(&env).await);
    create_keyspace(&session, &ks).await;
    cql(
        &session,
        &format!(
            "CREATE TABLE {ks}.{table} (id int PRIMARY KEY, a text, gone text) WITH cdc = true"
        ),
    )
    .await;
    let pipeline = RunningPipeline::start(
        &env,
        PipelineSpec::new("evo_drop", [ks.clone()])
            .set("sinks.postgres.drop_columns", true)
            .set("sinks.clickhouse.drop_columns", true)
            .set("sinks.timescaledb.drop_columns", true),
    )
    .await;
    let pids = service_pids(&pipeline);
    let wh = Warehouses::connect(&env).await;
    for id in 0..100 {
        cql(
            &session,
            &format!(
                "INSERT INTO {ks}.{table} (id, a, gone) VALUES ({id}, 'fake-{id}', 'old-{id}')"
            ),
        )
        .await;
    }
    await_count(&pipeline, &wh, &ks, table, 100).await;
    for d in Destination::ALL {
        assert!(
            column_type(&wh, d, &ks, table, "gone").await.is_some(),
            "{d}: gone must exist before the drop"
        );
    }

    // Live traffic before, during and after the DROP: inserts of new rows and updates of old ones.
    let writing = Arc::new(AtomicBool::new(true));
    let written = Arc::new(AtomicU32::new(0));
    let writer = {
        let (session, ks, writing, written) = (
            Arc::clone(&session),
            ks.clone(),
            Arc::clone(&writing),
            Arc::clone(&written),
        );
        tokio::spawn(async move {
            let mut id = 100;
            while writing.load(Ordering::Relaxed) {
                let q = format!("INSERT INTO {ks}.{table} (id, a) VALUES ({id}, 'fake-{id}')");
                let u = format!(
                    "UPDATE {ks}.{table} SET a = 'fake-upd-{id}' WHERE id = {}",
                    id % 100
                );
                for stmt in [q, u] {
                    // A write refused around the schema change is retried by the next round.
                    if session.query_unpaged(stmt, &[]).await.is_ok() {
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                }
                id += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            id
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    cql(&session, &format!("ALTER TABLE {ks}.{table} DROP gone")).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    writing.store(false, Ordering::Relaxed);
    let next_id = writer.await.expect("writer");
    eprintln!(
        "{} writes under load, rows up to id {next_id}",
        written.load(Ordering::Relaxed)
    );

    // The column leaves every destination (after the first event of the new schema).
    let deadline = Instant::now() + Duration::from_secs(120);
    for d in Destination::ALL {
        while column_type(&wh, d, &ks, table, "gone").await.is_some() {
            assert!(
                Instant::now() < deadline,
                "{d}: column gone still there 120 s after DROP with drop_columns: true\n{}",
                pipeline.log_tail(d.service(), 20)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    assert_verify_clean(&pipeline, &ks).await;
    assert_no_restarts(&pipeline, &pids);
    cql(&session, &format!("DROP KEYSPACE {ks}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_clustering_rename_keeps_the_destination_column_under_load() {
    let env = StackEnv::load();
    let ks = cdc_testkit::unique_name("e2e_evo_rename");
    let table = "renamed";
    let session = Arc::new(cassandra(&env).await);
    create_keyspace(&session, &ks).await;
    cql(
        &session,
        &format!(
            "CREATE TABLE {ks}.{table} (id int, ck int, a text, PRIMARY KEY (id, ck)) \
             WITH cdc = true"
        ),
    )
    .await;
    let renames: serde_yaml::Value =
        serde_yaml::from_str(&format!("[{{table: {ks}.{table}, from: ck, to: ck2}}]"))
            .expect("column_renames YAML");
    let pipeline = RunningPipeline::start(
        &env,
        PipelineSpec::new("evo_rename", [ks.clone()])
            .set("sinks.postgres.column_renames", renames.clone())
            .set("sinks.clickhouse.column_renames", renames.clone())
            .set("sinks.timescaledb.column_renames", renames),
    )
    .await;
    let pids = service_pids(&pipeline);
    let wh = Warehouses::connect(&env).await;
    for id in 0..50 {
        cql(
            &session,
            &format!(
                "INSERT INTO {ks}.{table} (id, ck, a) VALUES ({id}, {}, 'fake-{id}')",
                id % 5
            ),
        )
        .await;
    }
    await_count(&pipeline, &wh, &ks, table, 50).await;

    // Live traffic before, during and after the rename: new rows and updates of the old ones.
    let writing = Arc::new(AtomicBool::new(true));
    let renamed = Arc::new(AtomicBool::new(false));
    let writer = {
        let (session, ks, writing, renamed) = (
            Arc::clone(&session),
            ks.clone(),
            Arc::clone(&writing),
            Arc::clone(&renamed),
        );
        tokio::spawn(async move {
            let mut id = 50;
            let mut inserted = Vec::new();
            while writing.load(Ordering::Relaxed) {
                let ck = if renamed.load(Ordering::Relaxed) {
                    "ck2"
                } else {
                    "ck"
                };
                let insert = format!(
                    "INSERT INTO {ks}.{table} (id, {ck}, a) VALUES ({id}, {}, 'fake-{id}')",
                    id % 5
                );
                let old = id % 50;
                let update = format!(
                    "UPDATE {ks}.{table} SET a = 'fake-upd-{id}' WHERE id = {old} AND {ck} = {}",
                    old % 5
                );
                // A write refused around the schema change is left out (not counted).
                if session.query_unpaged(insert, &[]).await.is_ok() {
                    inserted.push(id);
                }
                let _ = session.query_unpaged(update, &[]).await;
                id += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            inserted
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    cql(
        &session,
        &format!("ALTER TABLE {ks}.{table} RENAME ck TO ck2"),
    )
    .await;
    renamed.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(5)).await;
    writing.store(false, Ordering::Relaxed);
    let inserted = writer.await.expect("writer");
    let rows = 50 + inserted.len() as u64;
    eprintln!("{} rows inserted under load", inserted.len());
    await_count(&pipeline, &wh, &ks, table, rows).await;
    for d in Destination::ALL {
        assert!(
            column_type(&wh, d, &ks, table, "ck").await.is_some(),
            "{d}: the destination keeps the key column ck"
        );
        assert_eq!(
            column_type(&wh, d, &ks, table, "ck2").await,
            None,
            "{d}: a mapped rename adds no ck2 column"
        );
    }
    assert_verify_clean(&pipeline, &ks).await;
    assert_no_restarts(&pipeline, &pids);
    cql(&session, &format!("DROP KEYSPACE {ks}")).await;
}
