//! Scaling with topic partitions (issue 12, item 3; SC-007): masker and PostgreSQL sink
//! throughput with 1, 2, 4, 8, 16 partitions per topic, the sink's `parallelism` (and pool) equal
//! to the partition count, against the local stack with the release binaries.
//!
//! Per configuration: a fresh keyspace and pipeline (capture, masker, sink-postgres); the masker
//! and the sink are stopped, `BENCH_SCALING_EVENTS` inserts (default 20,000; distinct keys, so
//! they spread over the partitions) are written and captured; then the masker is started alone
//! and timed until it has masked them all (ready -> last event), then the sink likewise (ready ->
//! last row committed). Two destinations:
//!
//! - direct: PostgreSQL on loopback. On this 2-core machine CPU is the limit, so this shows how
//!   little parallelism helps when the cores are already busy;
//! - latency-bound: PostgreSQL behind `cdc_testkit::FaultProxy` adding `BENCH_SCALING_DELAY_MS`
//!   (default 20 ms) to every chunk in each direction, and batches of 100 rows, so each batch
//!   costs several round trips of added latency and parallelism, not CPU, is the limit
//!   (`BENCH_SCALING_LATENCY_EVENTS`, default 8,000, events).
//!
//! The masker has no parallelism setting of its own (one consumer, every partition): its rows
//! show what more partitions do for one instance; scaling it out means more instances in its
//! consumer group, which this harness does not start.
//!
//! `#[ignore]`d: `make bench-scaling`. With `CDC_WRITE_BENCHMARKS=1` the numbers replace the
//! "Scaling" section of docs/benchmarks.md. Nothing asserted about the numbers.

#[path = "bench_support.rs"]
mod bench;
#[path = "e2e_support.rs"]
mod support;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdc_testkit::{Destination, FaultProxy, PipelineSpec, RunningPipeline, Service, StackEnv};
use scylla::client::session::Session;

const PARTITIONS: [u32; 5] = [1, 2, 4, 8, 16];

async fn wait_metric(
    pipeline: &RunningPipeline,
    service: Service,
    name: &str,
    target: u64,
    timeout: Duration,
) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        let n = pipeline.metric(service, name, &[]).await.unwrap_or(0.0) as u64;
        if n >= target {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events/s of the masker and of the sink for one partition count; `None` when a stage did not
/// finish in time.
async fn one_config(
    env: &StackEnv,
    session: &Arc<Session>,
    partitions: u32,
    events: i32,
    pg_url: Option<String>,
    max_rows: u32,
) -> (Option<f64>, Option<f64>) {
    let ks = cdc_testkit::unique_name("bench_scale");
    support::create_schema(session, &ks).await;
    let mut spec = PipelineSpec::new("bench_scale", [ks.clone()])
        .policy(support::policy(&ks, 1, false))
        .partitions(partitions)
        .sinks(&[Destination::Postgres])
        .set("sinks.postgres.parallelism", partitions)
        .set("sinks.postgres.destination.pool_size", partitions + 2)
        .set("sinks.postgres.batch.max_rows", max_rows)
        .set("sinks.postgres.batch.linger_ms", 50);
    if let Some(url) = pg_url {
        spec = spec.set("sinks.postgres.destination.url", format!("plain:{url}"));
    }
    let pipeline = RunningPipeline::start(env, spec).await;
    pipeline.stop(Service::Masker).await;
    pipeline.stop(Service::SinkPostgres).await;
    bench::insert_fake_patients(session, &ks, support::TABLE, events).await;
    let n = events as u64;
    let captured = wait_metric(
        &pipeline,
        Service::Capture,
        "cdc_capture_events_total",
        n,
        Duration::from_secs(300),
    )
    .await;
    assert!(captured.is_some(), "capture did not capture {n} events");

    pipeline.restart(Service::Masker).await;
    let masker = wait_metric(
        &pipeline,
        Service::Masker,
        "cdc_masker_events_total",
        n,
        Duration::from_secs(600),
    )
    .await;
    pipeline.restart(Service::SinkPostgres).await;
    let sink = wait_metric(
        &pipeline,
        Service::SinkPostgres,
        "cdc_sink_rows_written_total",
        n,
        Duration::from_secs(900),
    )
    .await;
    drop(pipeline);
    let _ = session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), &[])
        .await;
    let rate = |d: Option<Duration>| d.map(|d| n as f64 / d.as_secs_f64());
    (rate(masker), rate(sink))
}

fn table(rows: &[(u32, Option<f64>)]) -> String {
    let base = rows.first().and_then(|(_, r)| *r);
    let mut out = String::new();
    for (p, r) in rows {
        let (rate, speedup, eff) = match (r, base) {
            (Some(r), Some(b)) => (
                format!("{r:.0}"),
                format!("{:.2}x", r / b),
                format!("{:.0} %", 100.0 * r / (b * f64::from(*p))),
            ),
            (Some(r), None) => (format!("{r:.0}"), "-".into(), "-".into()),
            _ => ("did not finish".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(out, "| {p} | {rate} | {speedup} | {eff} |");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: make bench-scaling"]
async fn scaling_with_partitions() {
    let env = StackEnv::load();
    let events: i32 = std::env::var("BENCH_SCALING_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let latency_events: i32 = std::env::var("BENCH_SCALING_LATENCY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8_000);
    let delay_ms: u64 = std::env::var("BENCH_SCALING_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let load_before = bench::load_average();
    let session = Arc::new(support::cassandra(&env).await);

    let mut masker_rows = Vec::new();
    let mut direct_rows = Vec::new();
    for p in PARTITIONS {
        let (m, s) = one_config(&env, &session, p, events, None, 1000).await;
        println!("partitions {p}: masker {m:?} events/s, sink direct {s:?} rows/s");
        masker_rows.push((p, m));
        direct_rows.push((p, s));
    }

    // Latency-bound: PostgreSQL behind the fault proxy.
    let pg = env
        .postgres_url
        .split_once('@')
        .map(|(_, h)| h.split('/').next().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let proxy = FaultProxy::start(pg.clone()).await;
    proxy.set_delay(Duration::from_millis(delay_ms));
    let proxied = env.postgres_url.replacen(&pg, &proxy.addr(), 1);
    let mut latency_rows = Vec::new();
    for p in PARTITIONS {
        let (_, s) = one_config(
            &env,
            &session,
            p,
            latency_events,
            Some(proxied.clone()),
            100,
        )
        .await;
        println!("partitions {p}: sink latency-bound {s:?} rows/s");
        latency_rows.push((p, s));
    }

    let mut report = String::new();
    let _ = writeln!(
        report,
        "Machine load (`uptime`) before: {load_before}; at the end: {}.\n",
        bench::load_average()
    );
    let _ = writeln!(
        report,
        "Masker, one instance, {events} events (policy: 2 hashes, 1 partial, 1 tokenization with its vault round trip per batch):\n\n\
         | Partitions | events/s | vs 1 partition | efficiency vs linear |\n|---:|---:|---:|---:|\n{}",
        table(&masker_rows)
    );
    let _ = writeln!(
        report,
        "PostgreSQL sink, direct, parallelism = partitions, batches of up to 1,000 rows, {events} events:\n\n\
         | Partitions = parallelism | rows/s | vs 1 | efficiency vs linear |\n|---:|---:|---:|---:|\n{}",
        table(&direct_rows)
    );
    let _ = writeln!(
        report,
        "PostgreSQL sink, latency-bound ({delay_ms} ms added per chunk each way by the fault proxy), \
         parallelism = partitions, batches of up to 100 rows, {latency_events} events:\n\n\
         | Partitions = parallelism | rows/s | vs 1 | efficiency vs linear |\n|---:|---:|---:|---:|\n{}",
        table(&latency_rows)
    );
    println!("\n{report}");
    if bench::writing_docs() {
        let body = format!(
            "`make bench-scaling` (`tests/bench_scaling.rs`), run on {date}.\n\n\
             Machine:\n\n{machine}\n\
             Method: per partition count, a fresh keyspace and pipeline (capture, masker, sink-postgres; \
             release build; raw and masked topics with that many partitions; the sink's `parallelism` equal \
             to it and its pool two larger). The masker and the sink are stopped, the inserts (distinct keys) \
             are written and captured, then the masker is started alone and timed from ready to its last \
             event, then the sink likewise to its last committed row. Efficiency = rate / (rate at 1 \
             partition x partitions). The masker has no parallelism setting (one consumer reads every \
             partition); scaling it out means more instances in its consumer group, not measured here. One \
             run on a shared 2-core machine (load above): the direct rows are CPU-bound, the latency-bound \
             rows show what parallelism buys when each batch waits on the network.\n\n\
             Reading: the sink splits each flushed batch by partition into up to `parallelism` concurrent \
             writes (each atomic with its partitions' offsets; a table's open batch holds up to \
             `parallelism` x `batch.max_rows`). On the direct rows the two cores are already busy, so \
             concurrency can only add contention; the latency-bound rows show the scaling itself. The \
             masker is one consumer per instance.\n\n{report}",
            date = bench::today(),
            machine = bench::machine_description(),
        );
        bench::write_section("Scaling", &body);
    }
    assert!(
        direct_rows.iter().all(|(_, r)| r.is_some()),
        "a direct configuration did not finish: {direct_rows:?}"
    );
}
