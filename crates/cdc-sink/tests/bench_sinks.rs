//! `make bench-sinks`: rows/s into PostgreSQL, TimescaleDB and ClickHouse through the adapters'
//! `Destination::write_batch` (rows + offsets in one atomic write), for an insert-only and a mixed
//! workload at batch sizes 100 / 1,000 / 10,000. Batches are built before the clock starts; no
//! Kafka is involved. Measured, never asserted.
//!
//! The results are printed and written as the "Sinks" section of `docs/benchmarks.md`. Run with
//! `cargo test --release -p cdc-sink --test bench_sinks -- --ignored --nocapture --test-threads=1`
//! against the running stack (`make stack-up`).

use std::path::Path;
use std::time::Instant;

use cdc_model::{ChangeEvent, ColumnKind, CqlType};
use cdc_sink::clickhouse::{ClickHouseDestination, ClickHouseSettings};
use cdc_sink::compliance::EventFactory;
use cdc_sink::postgres::{PgSettings, PostgresDestination};
use cdc_sink::timescaledb::{TimescaleOptions, timescale_destination};
use cdc_sink::{
    BatchEvent, ColumnDef, Destination, NextOffset, SourceOffset, TableBatch, TableShape,
    WriteOutcome,
};
use cdc_testkit::{StackEnv, unique_name};
use secrecy::SecretString;

const GROUP: &str = "cdc-sink-bench";
const T0: i64 = 1_700_000_000_000_000;
/// Events per run for each batch size (fewer at batch 100 to keep the whole bench short).
const SIZES: [(usize, usize); 3] = [(100, 5_000), (1_000, 20_000), (10_000, 40_000)];

/// `(id int PRIMARY KEY, name text, score bigint)`.
fn shape(keyspace: &str, table: &str) -> TableShape {
    let col = |name: &str, cql_type: CqlType, kind: ColumnKind| ColumnDef {
        name: name.into(),
        cql_type,
        kind,
    };
    TableShape {
        keyspace: keyspace.into(),
        table: table.into(),
        dropped: Default::default(),
        columns: vec![
            col("id", CqlType::Int, ColumnKind::PartitionKey { position: 0 }),
            col("name", CqlType::Text, ColumnKind::Regular),
            col("score", CqlType::Bigint, ColumnKind::Regular),
        ],
    }
}

/// Insert-only: `total` INSERTs of distinct keys. Mixed: over `total / 4` keys, per 4 events
/// 2 INSERTs (the second re-writes a key), 1 partial UPDATE of `score`, 1 partition DELETE.
fn build_events(keyspace: &str, table: &str, total: usize, mixed: bool) -> Vec<ChangeEvent> {
    let mut f = EventFactory::new(keyspace, table);
    let keys = (total / 4).max(1) as i32;
    (0..total as i32)
        .map(|i| {
            let wt = T0 + i64::from(i);
            let name = format!("fake-user-{i}");
            if !mixed {
                return f.insert(i, &name, i64::from(i), wt);
            }
            let id = i % keys;
            match i % 4 {
                1 => f.update_score(id, i64::from(i), wt),
                3 => f.delete(id, wt),
                _ => f.insert(id, &name, i64::from(i), wt),
            }
        })
        .collect()
}

/// Pre-built batches of `size` events read from partition 0 at consecutive offsets.
fn batches(shape: &TableShape, events: Vec<ChangeEvent>, size: usize) -> Vec<TableBatch> {
    let topic = format!("cdc.masked.{}.{}", shape.keyspace, shape.table);
    let mut out = Vec::new();
    let mut offset = 0i64;
    for chunk in events.chunks(size) {
        let n = chunk.len() as i64;
        out.push(TableBatch {
            shape: shape.clone(),
            events: chunk
                .iter()
                .enumerate()
                .map(|(i, event)| BatchEvent {
                    event: event.clone(),
                    source: SourceOffset {
                        topic: topic.clone(),
                        partition: 0,
                        offset: offset + i as i64,
                    },
                    payload_bytes: 300,
                })
                .collect(),
            next_offsets: vec![NextOffset {
                topic: topic.clone(),
                partition: 0,
                next_offset: offset + n,
            }],
        });
        offset += n;
    }
    out
}

/// Writes the pre-built batches; returns events per second of write time.
async fn run<D: Destination>(dest: &D, shape: &TableShape, batches: &[TableBatch]) -> f64 {
    dest.check_health().await.expect("destination health");
    dest.prepare_table(shape).await.expect("prepare table");
    let events: usize = batches.iter().map(|b| b.events.len()).sum();
    let started = Instant::now();
    for b in batches {
        let outcome = dest.write_batch(GROUP, b).await;
        assert!(
            matches!(outcome, Ok(WriteOutcome::Written { .. })),
            "write_batch: {:?}",
            outcome.map_err(|e| e.to_string())
        );
    }
    events as f64 / started.elapsed().as_secs_f64()
}

async fn drop_pg(url: &str, keyspace: &str, topic: &str) {
    let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await else {
        return;
    };
    tokio::spawn(conn);
    let _ = client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{keyspace}\" CASCADE"))
        .await;
    let _ = client
        .execute(
            "DELETE FROM public._cdc_offsets WHERE \"group\" = $1 AND topic = $2",
            &[&GROUP, &topic],
        )
        .await;
}

async fn drop_ch(settings: &ClickHouseSettings, keyspace: &str) {
    let _ = settings
        .client()
        .query(&format!(
            "DROP DATABASE IF EXISTS `{}`",
            settings.database(keyspace)
        ))
        .execute()
        .await;
}

struct Measurement {
    destination: &'static str,
    workload: &'static str,
    batch: usize,
    events: usize,
    rows_per_sec: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with make bench-sinks"]
async fn bench_sinks_rows_per_second() {
    let stack = StackEnv::load();
    let bench_started = Instant::now();
    let mut results = Vec::new();
    for destination in ["postgres", "timescaledb", "clickhouse"] {
        for (workload, mixed) in [("insert-only", false), ("mixed", true)] {
            for (batch, total) in SIZES {
                let keyspace = unique_name("bench_sinks");
                let table = "t";
                let shape = shape(&keyspace, table);
                let topic = format!("cdc.masked.{keyspace}.{table}");
                let prepared = batches(&shape, build_events(&keyspace, table, total, mixed), batch);
                let rows_per_sec = match destination {
                    "postgres" => {
                        let url = stack.postgres_url.clone();
                        let dest = PostgresDestination::new(&PgSettings::new(SecretString::from(
                            url.clone(),
                        )))
                        .expect("postgres destination");
                        let r = run(&dest, &shape, &prepared).await;
                        drop_pg(&url, &keyspace, &topic).await;
                        r
                    }
                    "timescaledb" => {
                        let url = stack.timescale_url.clone();
                        let dest = timescale_destination(
                            &PgSettings::new(SecretString::from(url.clone())),
                            &TimescaleOptions::default(),
                        )
                        .expect("timescale destination");
                        let r = run(&dest, &shape, &prepared).await;
                        drop_pg(&url, &keyspace, &topic).await;
                        r
                    }
                    _ => {
                        let settings = ClickHouseSettings::for_url(stack.clickhouse_url.clone());
                        let dest = ClickHouseDestination::new(settings.clone());
                        let r = run(&dest, &shape, &prepared).await;
                        drop_ch(&settings, &keyspace).await;
                        r
                    }
                };
                eprintln!(
                    "{destination:<12} {workload:<12} batch {batch:>6}: {total:>6} events, {rows_per_sec:>8.0} rows/s"
                );
                results.push(Measurement {
                    destination,
                    workload,
                    batch,
                    events: total,
                    rows_per_sec,
                });
            }
        }
    }
    let table = render_table(&results);
    println!("\n{table}");
    eprintln!("bench took {:.0} s", bench_started.elapsed().as_secs_f64());
    write_doc(&section(&table));
}

fn render_table(results: &[Measurement]) -> String {
    let mut out = String::from(
        "| Destination | Workload | Batch size | Events | Rows/s |\n|---|---|---:|---:|---:|\n",
    );
    for m in results {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} |\n",
            m.destination, m.workload, m.batch, m.events, m.rows_per_sec
        ));
    }
    out
}

fn section(table: &str) -> String {
    format!(
        "## Sinks\n\n\
`make bench-sinks` (`crates/cdc-sink/tests/bench_sinks.rs`), run on {date}.\n\n\
Machine:\n\n\
- CPU: 2 cores (`nproc`), shared with the whole local stack and other builds\n\
- Memory: 23.5 GiB\n\
- {rustc}, release profile\n\
- PostgreSQL 15.20, TimescaleDB 2.19.3 (each a single local server), ClickHouse engine 26.9 (chdb) \
behind the stack's single-threaded test HTTP front (`dev/clickhouse-http`), all on the same machine\n\n\
Method:\n\n\
- Adapter level: `Destination::write_batch` with batches built before the clock starts (no \
Kafka, no JSON decoding); each call applies the batch convergently and stores its offset in the \
same atomic write (PostgreSQL/TimescaleDB: binary COPY into a staging table + one merge + offset \
upsert in one transaction, partition and range deletes COPYed into staging tables of their own and \
applied by a fixed number of set-based statements per batch; TimescaleDB also inserts every change \
into the `_changes` hypertable; \
ClickHouse: one append-only insert of every change into the state table with a deterministic \
deduplication token, then the offset row; the live view aggregates at read time, which this \
bench does not measure).\n\
- Table `(id int PRIMARY KEY, name text, score bigint)`, a fresh schema/database per run, dropped \
afterwards; `prepare_table` (DDL) runs before the clock starts.\n\
- Insert-only: distinct keys. Mixed: keys cycle over `events / 4` ids (so most events hit an \
existing row or tombstone); per 4 events 2 full-row INSERTs, 1 partial UPDATE of one column, \
1 partition DELETE.\n\
- Rows/s = events applied / wall time of all `write_batch` calls of the run. Fewer events at \
batch 100 to keep the bench short. One run on a shared, loaded 2-core machine: expect \
run-to-run differences of tens of percent.\n\
- **ClickHouse numbers are through the single-threaded test HTTP front over the embedded chdb \
engine, not a clickhouse-server**: they measure the adapter plus that front, and say little \
about a real server.\n\n\
Results:\n\n\
{table}",
        rustc = command_output("rustc", &["--version"])
            .unwrap_or_else(|| "rustc (unknown version)".to_owned()),
        date = command_output("date", &["-u", "+%Y-%m-%d"])
            .unwrap_or_else(|| "(unknown date)".to_owned()),
    )
}

/// The trimmed stdout of a command, when it runs.
fn command_output(program: &str, args: &[&str]) -> Option<String> {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Replaces (or appends) the `## Sinks` section of docs/benchmarks.md.
fn write_doc(section: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md");
    let old = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| "# Benchmarks\n\nMeasured, never asserted in tests.\n".to_owned());
    let new = match old.find("\n## Sinks\n") {
        Some(start) => {
            let rest = &old[start + 1..];
            let end = rest[3..].find("\n## ").map(|i| start + 1 + 3 + i + 1);
            let tail = end.map(|e| &old[e..]).unwrap_or("");
            format!(
                "{}{section}{}{tail}",
                &old[..start + 1],
                if tail.is_empty() { "" } else { "\n" }
            )
        }
        None => format!(
            "{}\n{section}",
            old.trim_end_matches('\n').to_owned() + "\n"
        ),
    };
    match std::fs::write(&path, new) {
        Ok(()) => eprintln!("wrote the Sinks section of {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}
