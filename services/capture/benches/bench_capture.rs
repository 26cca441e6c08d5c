//! `make bench-capture` (issue 3): measurements, never assertions about speed.
//!
//! 1. Parse throughput on one core: a real 4 MiB segment produced by the stack's Cassandra (mixed
//!    mutations into a `cdc = true` table of a fresh keyspace), copied into a temp dir, parsed with
//!    `cdc_commitlog::SegmentReader` N times: MB/s and decoded mutations/s.
//! 2. Capture end to end: a backlog of rows drained from `cdc_raw` into committed Kafka
//!    transactions (events/s), then write → visible-in-raw-topic (read_committed) latency
//!    percentiles at ~1,000 writes/s.
//!
//! The results are printed and written as the "Capture" section of `docs/benchmarks.md`.
//! A `#[test]` in a bench target so it can use the dev-dependencies; run it with
//! `cargo test --release -p capture --bench bench_capture -- --ignored --nocapture`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cdc_capture::{CaptureRunner, CaptureSettings};
use cdc_commitlog::{CdcIndex, ReadLimit, ReadOptions, SegmentFileName, SegmentReader};
use cdc_kafka::{
    ConsumerSettings, KafkaSettings, ProducerSettings, ReadCommittedConsumer, StartOffset,
    TopicAdmin, TopicPartition,
};
use cdc_model::json_codec;
use cdc_schema::{CatalogSettings, SchemaCatalog};
use cdc_telemetry::{CaptureMetrics, HealthState, new_registry};
use cdc_testkit::{StackEnv, unique_name};
use scylla::client::session::Session;
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 8;
const BACKLOG_ROWS: i32 = 30_000;
const PARSE_ROUNDS: usize = 20;
const LATENCY_RATE: u64 = 1_000;
const LATENCY_SECS: u64 = 30;

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

async fn cql(session: &Session, q: &str) {
    session
        .query_unpaged(q, &[])
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"));
}

fn capture_settings(env: &StackEnv, host_id: uuid::Uuid, ks: &str) -> CaptureSettings {
    let wanted = ks.to_owned();
    CaptureSettings {
        cdc_raw_dir: env.cassandra_cdc_raw.clone(),
        cluster: "stack".into(),
        host_id,
        transactional_id: unique_name("capture-bench"),
        positions_topic: unique_name("cdc.capture.positions.bench"),
        poll_interval: Duration::from_millis(100),
        batch_max_events: 2_000,
        batch_linger: Duration::from_millis(20),
        // The stack's cdc_raw is shared: never delete anything.
        retain_processed_segments: true,
        cdc_total_space_bytes: 4 << 30,
        table_filter: Arc::new(move |k, _| k == wanted),
        topic_partitions: PARTITIONS,
        replication_factor: 1,
        raw_topic_config: BTreeMap::new(),
        kafka_timeout: Duration::from_secs(20),
        health_interval: Duration::from_secs(2),
        stale_segment_grace: Duration::from_secs(120),
    }
}

async fn reader(kafka: &KafkaSettings, topic: &str) -> ReadCommittedConsumer {
    let admin = TopicAdmin::new(kafka, Duration::from_secs(20)).expect("admin");
    admin
        .ensure_topic(topic, PARTITIONS, 1, &BTreeMap::new())
        .await
        .expect("topic");
    let mut cs = ConsumerSettings::new(unique_name("capture-bench-reader"));
    cs.operation_timeout_ms = 20_000;
    let (consumer, _events) = ReadCommittedConsumer::new(kafka, &cs).expect("consumer");
    let starts: Vec<_> = (0..PARTITIONS)
        .map(|p| (TopicPartition::new(topic, p), StartOffset::Beginning))
        .collect();
    consumer.assign(&starts).expect("assign");
    consumer
}

/// Writes `rows` partitions of mixed mutations (insert with a map, partial update, every 10th a
/// row delete) with up to 64 statements in flight.
async fn mixed_backlog(catalog: &Arc<SchemaCatalog>, ks: &str, rows: i32) -> usize {
    let s = catalog.session();
    let insert = s
        .prepare(format!(
            "INSERT INTO {ks}.t (pk, ck, v, n, m) VALUES (?, ?, ?, ?, ?)"
        ))
        .await
        .expect("prepare");
    let update = s
        .prepare(format!("UPDATE {ks}.t SET n = ? WHERE pk = ? AND ck = ?"))
        .await
        .expect("prepare");
    let delete = s
        .prepare(format!("DELETE FROM {ks}.t WHERE pk = ? AND ck = ?"))
        .await
        .expect("prepare");
    let mut tasks = tokio::task::JoinSet::new();
    let workers = 64;
    for w in 0..workers {
        let catalog = Arc::clone(catalog);
        let (insert, update, delete) = (insert.clone(), update.clone(), delete.clone());
        tasks.spawn(async move {
            let s = catalog.session();
            let mut n = 0usize;
            let value = "fake backlog value ".repeat(4);
            for pk in (w..rows).step_by(workers as usize) {
                let m: BTreeMap<String, i32> = [("fake-k".to_owned(), pk)].into();
                s.execute_unpaged(&insert, (pk, 0, value.as_str(), i64::from(pk), m))
                    .await
                    .expect("insert");
                n += 1;
                if pk % 3 == 0 {
                    s.execute_unpaged(&update, (-i64::from(pk), pk, 0))
                        .await
                        .expect("update");
                    n += 1;
                }
                if pk % 10 == 0 {
                    s.execute_unpaged(&delete, (pk, 1)).await.expect("delete");
                    n += 1;
                }
            }
            n
        });
    }
    let mut total = 0;
    while let Some(n) = tasks.join_next().await {
        total += n.expect("writer");
    }
    total
}

/// The COMPLETED segments with an id of at least `from`, in id order.
fn completed_segments(dir: &Path, from: i64) -> Vec<(i64, PathBuf)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("cdc_raw").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(parsed) = SegmentFileName::parse(&name) else {
            continue;
        };
        if !name.ends_with(".log") || parsed.id < from {
            continue;
        }
        let idx = dir.join(name.replace(".log", "_cdc.idx"));
        let Ok(content) = std::fs::read(&idx) else {
            continue;
        };
        if matches!(
            CdcIndex::parse(&content),
            Ok(CdcIndex::Ready {
                completed: true,
                ..
            })
        ) {
            out.push((parsed.id, entry.path()));
        }
    }
    out.sort();
    out
}

/// The id of the newest segment that holds CDC data (has an `_cdc.idx`; later ids are only
/// pre-allocated): the one being written now.
fn max_segment_id(dir: &Path) -> i64 {
    std::fs::read_dir(dir)
        .expect("cdc_raw")
        .flatten()
        .filter_map(|e| SegmentFileName::parse(&e.file_name().to_string_lossy()).ok())
        .filter(|n| n.kind == cdc_commitlog::SegmentFileKind::CdcIndex)
        .map(|n| n.id)
        .max()
        .unwrap_or(0)
}

struct ParseResult {
    bytes: usize,
    decoded: usize,
    skipped: usize,
    rounds: usize,
    secs: f64,
}

/// Parses `bytes` `rounds` times on this thread.
fn parse_rounds(bytes: &[u8], catalog: &SchemaCatalog, rounds: usize) -> ParseResult {
    let history = catalog.history();
    let options = ReadOptions {
        limit: ReadLimit::Completed,
        resume_after: 0,
    };
    let (mut decoded, mut skipped) = (0usize, 0usize);
    let started = Instant::now();
    for _ in 0..rounds {
        let reader = SegmentReader::new(bytes, history.as_ref(), options).expect("segment");
        for entry in reader {
            let entry = entry.unwrap_or_else(|e| panic!("segment error: {e}"));
            match entry.result {
                Ok(outcome) if outcome.mutation().is_some() => decoded += 1,
                Ok(_) => skipped += 1,
                Err(e) => panic!("parse error: {e}"),
            }
        }
    }
    ParseResult {
        bytes: bytes.len(),
        decoded: decoded / rounds,
        skipped: skipped / rounds,
        rounds,
        secs: started.elapsed().as_secs_f64(),
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "- CPU: {model}, {cores} cores (`nproc`), shared with the whole local stack and other builds\n\
         - Memory: {mem_gib:.1} GiB\n\
         - {rustc}, release profile\n\
         - Cassandra 5.0.6 (single node, `commitlog_sync: periodic`, 500 ms, 4 MiB segments, `cdc_enabled`), \
         Kafka 4.1.1 (single KRaft node), both on the same machine"
    )
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Replaces (or appends) the `## Capture` section of docs/benchmarks.md.
fn write_doc(section: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md");
    let old = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| "# Benchmarks\n\nMeasured, never asserted in tests.\n".to_owned());
    let new = match old.find("\n## Capture\n") {
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
    std::fs::write(&path, new).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    eprintln!("wrote {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with make bench-capture"]
async fn bench_capture() {
    let env = StackEnv::load();
    let ks = unique_name("capbench");
    let mut cs = CatalogSettings::new(vec![env.cassandra_cql.clone()]);
    cs.connect_timeout = Duration::from_secs(10);
    let catalog = Arc::new(SchemaCatalog::connect(&cs).await.expect("catalog"));
    let s = catalog.session();
    cql(s, &format!("CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")).await;
    cql(s, &format!("CREATE TABLE {ks}.t (pk int, ck int, v text, n bigint, m map<text, int>, PRIMARY KEY (pk, ck)) WITH cdc = true")).await;
    cql(
        s,
        &format!("CREATE TABLE {ks}.lat (pk int PRIMARY KEY, v text) WITH cdc = true"),
    )
    .await;
    catalog.refresh().await.expect("schema refresh");
    let dir = env.cassandra_cdc_raw.clone();
    let first_segment = max_segment_id(&dir);

    // Backlog (also the source of the parse segment).
    let write_started = Instant::now();
    let mutations = mixed_backlog(&catalog, &ks, BACKLOG_ROWS).await;
    let write_secs = write_started.elapsed().as_secs_f64();
    eprintln!("wrote {mutations} mutations in {write_secs:.1} s");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1. Parse throughput: the completed segment with the most of our mutations, copied away.
    let tmp = std::env::temp_dir().join(unique_name("capture-bench-seg"));
    std::fs::create_dir_all(&tmp).expect("tmp");
    let mut best: Option<(Vec<u8>, ParseResult)> = None;
    for (id, path) in completed_segments(&dir, first_segment) {
        let copy = tmp.join(path.file_name().expect("name"));
        std::fs::copy(&path, &copy).expect("copy segment");
        let bytes = std::fs::read(&copy).expect("read copy");
        let probe = parse_rounds(&bytes, &catalog, 1);
        eprintln!(
            "segment {id}: {} bytes, {} decoded, {} skipped",
            probe.bytes, probe.decoded, probe.skipped
        );
        if best.as_ref().is_none_or(|(_, b)| probe.decoded > b.decoded) {
            best = Some((bytes, probe));
        }
    }
    let (segment, _) = best.expect("no completed segment was written: write more data");
    let parse = tokio::task::block_in_place(|| parse_rounds(&segment, &catalog, PARSE_ROUNDS));
    let _ = std::fs::remove_dir_all(&tmp);
    let mb = (parse.bytes * parse.rounds) as f64 / 1_000_000.0;
    let parse_mbs = mb / parse.secs;
    let parse_mps = (parse.decoded * parse.rounds) as f64 / parse.secs;

    // 2a. Backlog drain, segment → committed in Kafka.
    let host_id = catalog.local_host_id().await.expect("host id");
    let settings = capture_settings(&env, host_id, &ks);
    let kafka = KafkaSettings::new(env.kafka_bootstrap.clone(), unique_name("capture-bench"));
    let consumer = reader(&kafka, &format!("cdc.raw.{ks}.t")).await;
    let lat_consumer = reader(&kafka, &format!("cdc.raw.{ks}.lat")).await;
    let registry = new_registry();
    let metrics = CaptureMetrics::new(&registry).expect("metrics");
    let producer = ProducerSettings {
        operation_timeout_ms: 20_000,
        linger_ms: 5,
        ..ProducerSettings::default()
    };
    let started = Instant::now();
    let runner = CaptureRunner::start(
        settings,
        kafka.clone(),
        &producer,
        Arc::clone(&catalog),
        metrics,
        HealthState::new(),
    )
    .await
    .expect("capture start");
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    let task = tokio::spawn(async move { runner.run(token).await.expect("capture run") });
    let mut drained = 0usize;
    let mut first_at = None;
    while drained < mutations && started.elapsed() < Duration::from_secs(600) {
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            first_at.get_or_insert_with(Instant::now);
            drained += 1;
        }
    }
    let drain_secs = started.elapsed().as_secs_f64();
    let steady_secs = first_at.map_or(drain_secs, |f| f.elapsed().as_secs_f64());
    eprintln!("drained {drained}/{mutations} events in {drain_secs:.1} s");

    // 2b. Latency at ~1,000 writes/s: 10 writes every 10 ms, each batch in its own task.
    let total = (LATENCY_RATE * LATENCY_SECS) as usize;
    let writer_catalog = Arc::clone(&catalog);
    let writer_ks = ks.clone();
    let writer = tokio::spawn(async move {
        let s = writer_catalog.session();
        let insert = s
            .prepare(format!(
                "INSERT INTO {writer_ks}.lat (pk, v) VALUES (?, ?) USING TIMESTAMP ?"
            ))
            .await
            .expect("prepare");
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut set = tokio::task::JoinSet::new();
        let started = Instant::now();
        let mut pk = 0i32;
        while (pk as usize) < total {
            tick.tick().await;
            let (catalog, insert) = (Arc::clone(&writer_catalog), insert.clone());
            let base = pk;
            set.spawn(async move {
                for p in base..base + 10 {
                    catalog
                        .session()
                        .execute_unpaged(&insert, (p, "fake latency probe", now_micros()))
                        .await
                        .expect("insert");
                }
            });
            pk += 10;
        }
        while let Some(r) = set.join_next().await {
            r.expect("write batch");
        }
        started.elapsed().as_secs_f64()
    });
    let mut latencies_ms = Vec::with_capacity(total);
    let until = Instant::now() + Duration::from_secs(LATENCY_SECS + 120);
    while latencies_ms.len() < total && Instant::now() < until {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), lat_consumer.recv()).await {
            let received = now_micros();
            let e =
                json_codec::decode_event(m.payload.as_deref().expect("payload")).expect("event");
            let written = e.liveness.map(|l| l.writetime_micros).expect("insert");
            latencies_ms.push((received - written) as f64 / 1_000.0);
        }
    }
    let writer_secs = writer.await.expect("writer");
    cancel.cancel();
    task.await.expect("capture task");
    latencies_ms.sort_by(f64::total_cmp);
    cql(s, &format!("DROP KEYSPACE {ks}")).await;

    let rows = [
        (
            "Parse, one core (4 MiB real segment)".to_owned(),
            format!(
                "{parse_mbs:.0} MB/s, {parse_mps:.0} mutations/s ({} mutations decoded + {} of other tables skipped per pass, {} passes)",
                parse.decoded, parse.skipped, parse.rounds
            ),
        ),
        (
            format!("Backlog drain, {drained} events, segment → committed in Kafka"),
            format!(
                "{:.0} events/s incl. start-up ({drain_secs:.1} s); {:.0} events/s from first event",
                drained as f64 / drain_secs,
                drained as f64 / steady_secs
            ),
        ),
        (
            format!(
                "Write → raw topic (read_committed), {} events at {:.0} writes/s",
                latencies_ms.len(),
                total as f64 / writer_secs
            ),
            format!(
                "p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                pct(&latencies_ms, 0.50),
                pct(&latencies_ms, 0.95),
                pct(&latencies_ms, 0.99),
                pct(&latencies_ms, 1.0)
            ),
        ),
    ];
    let mut table = String::from("| Measurement | Result |\n|---|---|\n");
    for (k, v) in &rows {
        table.push_str(&format!("| {k} | {v} |\n"));
    }
    println!("\n{table}");
    let section = format!(
        "## Capture\n\n\
         `make bench-capture` (`services/capture/benches/bench_capture.rs`), run on {date}.\n\n\
         Machine:\n\n{machine}\n\n\
         Method:\n\n\
         - Workload: {mutations} mixed mutations (INSERT with text, bigint and a one-entry map; every \
         3rd row a partial UPDATE; every 10th a row DELETE) into a `cdc = true` table of a fresh \
         keyspace, 64 statements in flight, written in {write_secs:.1} s.\n\
         - Parse: the COMPLETED segment holding most of those mutations is copied out of `cdc_raw` \
         into a temp dir (never committed), loaded into memory and iterated with \
         `cdc_commitlog::SegmentReader` (full decoding of rows and cells, CRCs checked) \
         {rounds} times on one thread. Mutations of tables the schema does not know (other \
         sessions' dropped keyspaces) are skipped after their table id and counted apart.\n\
         - Backlog drain: the in-process capture service (`CaptureRunner`, batches of up to 2,000 \
         events, 20 ms linger, retain mode) is started on the backlog with a fresh position; \
         timed from start until the last event is visible to a read_committed consumer. Start-up \
         includes scanning every segment retained in the shared `cdc_raw`.\n\
         - Latency: with capture running, 10 INSERTs every 10 ms for {LATENCY_SECS} s, each with \
         `USING TIMESTAMP` = client time; latency = time a read_committed consumer receives the \
         event − that timestamp. Dominated by the 500 ms periodic commit-log sync (the `_cdc.idx` \
         offset only advances on sync) plus capture's 100 ms poll and the transaction commit.\n\n\
         Results:\n\n{table}",
        date = std::process::Command::new("date")
            .arg("-u")
            .arg("+%Y-%m-%d")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default(),
        machine = machine(),
        rounds = parse.rounds,
    );
    write_doc(&section);
}
