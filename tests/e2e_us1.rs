//! User story 1 end to end (shared/SPEC.md): Cassandra → capture → masker → the three sinks, as
//! processes, against the local stack (`make stack-up`; binaries from `cargo build --workspace
//! --bins`). Never skips.
//!
//! - `us1_inserts_updates_deletes_and_rapid_changes_replicate_exactly`: acceptance scenarios 1, 2,
//!   3 and 5 on one pipeline, each checked directly in PostgreSQL, ClickHouse and TimescaleDB
//!   (every row, masked values included, no duplicates) and by `cdcctl verify`.
//! - `us1_kill_nine_of_each_service_mid_load_converges_exactly`: scenario 4, `kill -9` of every
//!   service while events flow, restart, exact final state.

#[path = "e2e_support.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cdc_testkit::{Destination, PipelineSpec, RunningPipeline, Service, StackEnv, Warehouses};
use support::{
    Model, Op, Patient, TABLE, Writer, assert_verify_clean, await_model, cassandra, create_schema,
    policy, update,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn us1_inserts_updates_deletes_and_rapid_changes_replicate_exactly() {
    let env = StackEnv::load();
    let ks = cdc_testkit::unique_name("e2e_us1");
    let session = Arc::new(cassandra(&env).await);
    create_schema(&session, &ks).await;
    let pipeline = RunningPipeline::start(
        &env,
        PipelineSpec::new("us1", [ks.clone()]).policy(policy(&ks, 1, false)),
    )
    .await;
    let wh = Warehouses::connect(&env).await;
    let writer = Writer::new(Arc::clone(&session), &ks).await;
    let mut model = Model::default();

    // Scenario 1: 1,000 inserts → exactly 1,000 rows with matching data in each destination.
    let inserts = (0..1000)
        .map(|id| Op::Insert(Patient::fake(id, 0)))
        .collect();
    writer.write(&mut model, false, inserts).await;
    await_model(&pipeline, &wh, &ks, &model).await;
    for d in Destination::ALL {
        assert_eq!(wh.count(d, &ks, TABLE).await, Some(1000), "{d}: 1,000 rows");
    }

    // Scenario 2: 500 updates → updated values, still 1,000 rows, no duplicates.
    let updates = (0..1000).step_by(2).map(|id| update(id, 1)).collect();
    writer.write(&mut model, false, updates).await;
    await_model(&pipeline, &wh, &ks, &model).await;
    for d in Destination::ALL {
        assert_eq!(
            wh.count(d, &ks, TABLE).await,
            Some(1000),
            "{d}: still 1,000 rows after 500 updates"
        );
    }

    // Scenario 3: 200 deletes → those rows are gone, the other 800 untouched.
    let deletes = (0..1000).step_by(5).map(Op::Delete).collect();
    writer.write(&mut model, false, deletes).await;
    await_model(&pipeline, &wh, &ks, &model).await;
    for d in Destination::ALL {
        assert_eq!(wh.count(d, &ks, TABLE).await, Some(800), "{d}: 800 rows");
    }

    // Scenario 5: rapid changes to the same records → the final state, no intermediate one.
    // Row 1: 60 successive updates. Row 3: insert/delete cycles ending deleted. Row 5000: new,
    // rewritten 30 times, ending present with its last values.
    let mut rapid = Vec::new();
    for g in 2..62 {
        rapid.push(update(1, g));
    }
    for g in 1..20 {
        rapid.push(Op::Delete(3));
        rapid.push(Op::Insert(Patient::fake(3, g)));
    }
    rapid.push(Op::Delete(3));
    for g in 0..30 {
        rapid.push(Op::Insert(Patient::fake(5000, g)));
    }
    // One request after another: each change reaches Cassandra before the next is sent.
    for op in rapid {
        writer.write(&mut model, false, vec![op]).await;
    }
    await_model(&pipeline, &wh, &ks, &model).await;
    assert!(!model.rows.contains_key(&3) && model.rows.contains_key(&5000));

    // The checker agrees: no missing, extra, stale or duplicate row anywhere.
    assert_verify_clean(&pipeline, &ks).await;
}

/// Random-ish pause in `[0, max_ms)` from the clock (no RNG needed for "somewhere mid-batch").
fn jitter(max_ms: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    Duration::from_millis(nanos % max_ms.max(1))
}

/// Waits until PostgreSQL holds more than `before` rows of the table (progress since the last
/// kill), at most 120 s.
async fn wait_for_progress(wh: &Warehouses, ks: &str, before: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = wh
            .count(Destination::Postgres, ks, TABLE)
            .await
            .unwrap_or(0);
        if n > before {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "no progress in PostgreSQL beyond {before} rows within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wave `wave` of the kill test's load: 60 inserts of new ids, 30 updates and 10 deletes of live
/// rows (picked deterministically).
fn kill_test_wave(wave: u32, live: &mut Vec<i32>, next_id: &mut i32) -> Vec<Op> {
    let mut ops = Vec::with_capacity(100);
    for _ in 0..60 {
        ops.push(Op::Insert(Patient::fake(*next_id, wave)));
        live.push(*next_id);
        *next_id += 1;
    }
    let w = wave as usize;
    for i in 0..30 {
        let id = live[(w * 37 + i * 13) % live.len()];
        ops.push(update(id, wave + 1));
    }
    for i in 0..10 {
        let idx = (w * 11 + i * 7) % live.len();
        ops.push(Op::Delete(live.swap_remove(idx)));
    }
    ops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn us1_kill_nine_of_each_service_mid_load_converges_exactly() {
    let env = StackEnv::load();
    let ks = cdc_testkit::unique_name("e2e_kill");
    let session = Arc::new(cassandra(&env).await);
    create_schema(&session, &ks).await;
    // Small batches so that a kill lands between, and inside, many transactions and writes.
    let spec = PipelineSpec::new("kill", [ks.clone()])
        .policy(policy(&ks, 1, false))
        .set("capture.batch_max_events", 100)
        .set("masker.batch_max_events", 100)
        .set("sinks.postgres.batch.max_rows", 100)
        .set("sinks.clickhouse.batch.max_rows", 100)
        .set("sinks.timescaledb.batch.max_rows", 100);
    let pipeline = RunningPipeline::start(&env, spec).await;
    let wh = Warehouses::connect(&env).await;
    let writer = Writer::new(Arc::clone(&session), &ks).await;

    // The load: waves of 100 events (60 inserts, 30 updates and 10 deletes of live rows) every
    // 300 ms, written in the background until every kill is done, then 5 more waves, so each
    // service dies and restarts while events flow.
    let kills_done = Arc::new(AtomicBool::new(false));
    let load_writer = writer.clone();
    let done = Arc::clone(&kills_done);
    let load = tokio::spawn(async move {
        let mut model = Model::default();
        let (mut live, mut next_id) = (Vec::new(), 0);
        let mut after = 0;
        let mut wave = 0u32;
        while after < 5 {
            if done.load(Ordering::SeqCst) {
                after += 1;
            }
            let ops = kill_test_wave(wave, &mut live, &mut next_id);
            load_writer.write(&mut model, false, ops).await;
            wave += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        (model, wave)
    });

    // Each service is killed once data flows, at a random point of its work, and restarted.
    let mut seen = wait_for_progress(&wh, &ks, 0).await;
    for service in [Service::Capture, Service::Masker] {
        tokio::time::sleep(jitter(700)).await;
        let status = pipeline.kill9(service).expect("service was running");
        assert!(!status.success(), "{service} was killed");
        eprintln!("{ks}: killed {service} with {seen}+ rows in PostgreSQL; restarting");
        pipeline.restart(service).await;
        seen = wait_for_progress(&wh, &ks, seen).await;
    }
    // The three sinks: killed together (a killed group member holds its partitions until the
    // session times out, so overlapping the three restarts keeps the test short).
    for d in Destination::ALL {
        tokio::time::sleep(jitter(300)).await;
        let status = pipeline.kill9(d.service()).expect("sink was running");
        assert!(!status.success(), "{d} sink was killed");
    }
    eprintln!("{ks}: killed the three sinks with {seen}+ rows in PostgreSQL; restarting");
    for d in Destination::ALL {
        pipeline.restart(d.service()).await;
    }
    kills_done.store(true, Ordering::SeqCst);

    let (model, waves) = load.await.expect("load task");
    eprintln!(
        "{ks}: load done: {waves} waves, {} events, {} live rows",
        u64::from(waves) * 100,
        model.rows.len()
    );
    await_model(&pipeline, &wh, &ks, &model).await;
    assert_verify_clean(&pipeline, &ks).await;
    for service in Service::ALL {
        assert!(pipeline.is_running(service), "{service} still runs");
    }
}
