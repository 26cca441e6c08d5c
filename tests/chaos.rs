//! Chaos suite (issue 9): the whole pipeline under continuous load while faults are injected —
//! network partitions between the sinks and their databases, ClickHouse stopped, TimescaleDB
//! refusing connections (retries, DLQ, replay), Cassandra and the Kafka broker restarted, `kill -9`
//! of every service and a burst of 100,000 events. `make chaos` runs each of them with bounded
//! durations (CI); `make chaos-long` adds the full-length ClickHouse outage (`long_*`: down
//! 2 minutes instead of 1). Every scenario ends with `cdcctl verify` and
//! `cdcctl audit` clean, exactly one TimescaleDB change row per event written and no correlation
//! id twice (see `chaos_support.rs`); results go to `target/chaos/*.json` and
//! `docs/reliability.md`.
//!
//! Some of these tests stop and start servers shared by every test using the stack, and all of them
//! time recoveries, so they are all `#[ignore]`d: the integration run (`cargo test --workspace --test '*'`) builds but skips them, and
//! `make chaos` runs them alone, one at a time:
//!
//! ```sh
//! make chaos        # cargo test -p cdc-tests --test chaos -- --ignored --test-threads=1 --skip long_
//! make chaos-long   # every scenario, the long ones (long_*) included
//! ```

#[path = "e2e_support.rs"]
mod support;

#[path = "chaos_support.rs"]
mod chaos_support;

use std::time::{Duration, Instant};

use cdc_testkit::{Destination, FaultProxy, RestartGuard, Service, StackEnv, StackServer};
use chaos_support::{LoadReport, Rng, Scenario, with_addr};

/// The `plain:` URL of a PostgreSQL-protocol destination reached through `proxy`.
fn pg_url_via(url: &str, proxy: &FaultProxy) -> String {
    format!("plain:{}", with_addr(url, &proxy.addr()))
}

/// Samples `cdc_sink_retries_total` and `cdc_sink_destination_up` of one sink during a fault:
/// (retries at the end − at the start, lowest `destination_up` seen).
async fn watch_sink(sc: &Scenario, d: Destination, for_how_long: Duration) -> (f64, f64) {
    let s = d.service();
    let labels = [("destination", d.name())];
    let retries0 = sc
        .metric(s, "cdc_sink_retries_total", &labels)
        .await
        .unwrap_or(0.0);
    let mut min_up = f64::INFINITY;
    let until = Instant::now() + for_how_long;
    while Instant::now() < until {
        if let Some(up) = sc.metric(s, "cdc_sink_destination_up", &labels).await {
            min_up = min_up.min(up);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let retries1 = sc
        .metric(s, "cdc_sink_retries_total", &labels)
        .await
        .unwrap_or(0.0);
    (retries1 - retries0, min_up)
}

/// The `retry_in_ms` values the sink logged (its backoff schedule), in order, from `from_line`.
fn logged_backoffs(sc: &Scenario, s: Service, from_line: usize) -> Vec<u64> {
    let text = std::fs::read_to_string(sc.pipeline.log_path(s)).unwrap_or_default();
    let re = regex::Regex::new(r#""retry_in_ms":\s*(\d+)"#).expect("regex");
    text.lines()
        .skip(from_line)
        .filter_map(|l| re.captures(l))
        .filter_map(|c| c[1].parse().ok())
        .collect()
}

fn log_lines(sc: &Scenario, s: Service) -> usize {
    std::fs::read_to_string(sc.pipeline.log_path(s))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// (a) SC-003: the network between sink-postgres and PostgreSQL cut for 30 s under load →
/// exponential backoff in metrics and logs, automatic recovery, current again within 60 s of
/// healing, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos scenario: run alone by `make chaos`"]
async fn postgres_partition_30s() {
    let env = StackEnv::load();
    let proxy = FaultProxy::start(chaos_support::host_port(&env.postgres_url)).await;
    let url = pg_url_via(&env.postgres_url, &proxy);
    let mut sc = Scenario::start(
        "pg-partition-30s",
        "network to PostgreSQL cut for 30 s (SC-003)",
        &env,
        |spec| spec.set("sinks.postgres.destination.url", url),
    )
    .await;
    let load = sc.start_load(150, 50, 11);
    sc.wait_flowing().await;
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(load.elapsed())).await;

    let log_from = log_lines(&sc, Service::SinkPostgres);
    sc.log("partition: PostgreSQL unreachable for 30 s");
    // Heals itself after 45 s even if this test stops watching (bounded fault).
    proxy.partition_for(Duration::from_secs(45));
    let (retries, min_up) = watch_sink(&sc, Destination::Postgres, Duration::from_secs(30)).await;
    let target = sc.masked_end().await.expect("Kafka end offsets");
    proxy.heal();
    sc.log(format!(
        "healed; {retries} retries during the cut, cdc_sink_destination_up min {min_up}"
    ));
    let recovery = sc
        .wait_current(Destination::Postgres, target, Duration::from_secs(60))
        .await;
    let backoffs = logged_backoffs(&sc, Service::SinkPostgres, log_from);
    sc.fault = "sink-postgres ↔ PostgreSQL partitioned 30 s (FaultProxy)".into();
    let recovery = recovery.unwrap_or_else(|| {
        panic!(
            "PostgreSQL not current within 60 s of healing (stored {:?}, target {target}); log:\n{}",
            futures::executor::block_on(sc.stored_offsets(Destination::Postgres)),
            sc.pipeline.log_tail(Service::SinkPostgres, 30)
        )
    });
    sc.recovered("postgres current after heal", recovery);
    assert!(
        retries >= 2.0 || backoffs.len() >= 2,
        "no retries seen while PostgreSQL was cut (cdc_sink_retries_total +{retries}, log: {backoffs:?})"
    );
    assert!(
        min_up < 1.0,
        "cdc_sink_destination_up{{destination=\"postgres\"}} never dropped during the cut"
    );
    let grows = backoffs.windows(2).any(|w| w[1] > w[0]);
    assert!(
        backoffs.len() < 2 || grows,
        "the logged backoff never grew: {backoffs:?}"
    );
    let shown: Vec<String> = backoffs.iter().take(8).map(u64::to_string).collect();
    sc.notes.push(format!(
        "during the 30 s cut: cdc_sink_retries_total +{retries}, cdc_sink_destination_up went to \
         {min_up}; logged backoff (ms) {}{}; recovered without a restart",
        shown.join(" → "),
        if backoffs.len() > 8 { " …" } else { "" }
    ));
    let report = load.finish().await;
    sc.finish(vec![report]).await;
}

/// (b) `kill -9` of each service at random points under load, `rounds` rounds (every service once
/// per round, random order, random delays); each crashed process restarted.
async fn kill9_rounds(id: &'static str, title: &'static str, rounds: usize) {
    let env = StackEnv::load();
    let mut rng = Rng::from_env();
    let mut sc = Scenario::start(id, title, &env, |spec| spec).await;
    let per_round = 13; // seconds: 5 kills 1–3 s apart + restarts (about 12 s measured)
    let load = sc.start_load(120, (rounds * per_round + 10) as u64, 21);
    let mut restarts = Vec::new();
    for round in 1..=rounds {
        let mut order = Service::ALL.to_vec();
        rng.shuffle(&mut order);
        for s in order {
            tokio::time::sleep(rng.millis(1_000, 3_000)).await;
            let status = sc.pipeline.kill9(s);
            assert!(status.is_some(), "{s} was not running before its kill");
            let started = Instant::now();
            sc.pipeline.restart(s).await;
            let secs = started.elapsed().as_secs_f64();
            sc.log(format!(
                "round {round}: kill -9 {s}, ready again in {secs:.1}s"
            ));
            restarts.push(secs);
        }
    }
    let worst = restarts.iter().copied().fold(0.0, f64::max);
    sc.fault = format!(
        "kill -9 of each of the 5 services at random points, {rounds} rounds ({} kills)",
        restarts.len()
    );
    sc.recovered("slowest restart to ready", worst);
    let report = load.finish().await;
    sc.finish(vec![report]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos scenario: run alone by `make chaos`"]
async fn kill9_each_service_ten_rounds() {
    kill9_rounds("kill9-10-rounds", "kill -9 of every service, 10 rounds", 10).await;
}

/// Stands in for a process supervisor (Kubernetes' restartPolicy) while a shared server is down:
/// every second, a service that exited is noted (with its last error line) and started again.
/// Returns the handle and the list of exits. Used only with `CDC_CHAOS_STRICT=0`: by default the
/// scenario fails on any exit (the services must ride out a broker restart on their own).
fn supervise(
    pipeline: std::sync::Arc<cdc_testkit::RunningPipeline>,
) -> (
    tokio::task::JoinHandle<()>,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let exits: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let seen = std::sync::Arc::clone(&exits);
    let handle = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for s in Service::ALL {
                if pipeline.is_running(s) {
                    continue;
                }
                let tail = pipeline.log_tail(s, 40);
                let cause = tail
                    .lines()
                    .rev()
                    .find(|l| l.starts_with("Error: "))
                    .or_else(|| tail.lines().rev().find(|l| l.contains("\"ERROR\"")))
                    .unwrap_or("no error line")
                    .to_owned();
                eprintln!("supervisor: {s} exited ({cause}); starting it again");
                if let Ok(mut e) = seen.lock() {
                    e.push(format!("{s} exited ({cause})"));
                }
                pipeline.restart(s).await;
            }
        }
    });
    (handle, exits)
}

/// (c) The Kafka broker stopped and started again mid-load: every stage must recover on its own
/// (the same processes before and after). A transaction call that times out is resumed, and a
/// producer librdkafka declares unusable (INVALID_TXN_STATE after the restart) is replaced for
/// the same transactional id. The sinks rejoin their groups within their `session_timeout_ms`
/// (6 s here; with librdkafka's 45 s default they stood still ~45 s after the broker was back).
/// `CDC_CHAOS_STRICT=0` instead restarts exited stages (as Kubernetes would) and only checks for
/// loss and duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos scenario: run alone by `make chaos`"]
async fn kafka_broker_restart() {
    let env = StackEnv::load();
    let mut sc = Scenario::start(
        "kafka-restart",
        "Kafka broker restarted mid-load",
        &env,
        |spec| spec,
    )
    .await;
    let pids = sc.pids();
    let load = sc.start_load(120, 45, 31);
    sc.wait_flowing().await;
    tokio::time::sleep(Duration::from_secs(12).saturating_sub(load.elapsed())).await;

    let strict = std::env::var("CDC_CHAOS_STRICT").as_deref() != Ok("0");
    let supervisor = (!strict).then(|| supervise(std::sync::Arc::clone(&sc.pipeline)));
    let guard = RestartGuard(StackServer::Kafka);
    sc.log("stopping Kafka");
    let stopped = tokio::task::spawn_blocking(|| StackServer::Kafka.stop())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{e}"));
    sc.log(format!(
        "Kafka stopped ({:.1}s); down for 10 s",
        stopped.as_secs_f64()
    ));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let start_took = tokio::task::spawn_blocking(|| StackServer::Kafka.start())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{e}"));
    drop(guard);
    sc.log(format!(
        "Kafka up again ({:.1}s to healthy)",
        start_took.as_secs_f64()
    ));

    sc.mark("Kafka healthy again");
    let report = load.finish().await;
    // Stages may fail only once they talk to the new broker: supervise a little longer.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let exits: Vec<String> = match supervisor {
        Some((handle, exits)) => {
            handle.abort();
            exits.lock().map(|e| e.clone()).unwrap_or_default()
        }
        None => Vec::new(),
    };
    if strict {
        sc.assert_same_processes(&pids, "the Kafka broker restart");
    }
    sc.fault = format!(
        "dev/components/kafka.sh stop, 10 s down, start ({:.0} s to healthy)",
        start_took.as_secs_f64()
    );
    if exits.is_empty() {
        sc.notes.push(
            "the same five processes ran before and after the broker restart (every stage \
             recovered on its own)"
                .into(),
        );
    } else {
        sc.notes.push(format!(
            "NOT on its own: {} — restarted by the test's supervisor (as Kubernetes would); no \
             event lost or duplicated (`CDC_CHAOS_STRICT=0`; the default fails on any exit)",
            exits.join("; ")
        ));
    }
    sc.finish(vec![report]).await;
}

/// (d) All three destinations partitioned at once, healed at different times (PostgreSQL after
/// 10 s, ClickHouse after 20 s, TimescaleDB after 30 s): each resumes from its own stored offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos scenario: run alone by `make chaos`"]
async fn all_destinations_cut_healed_apart() {
    let env = StackEnv::load();
    let pg = FaultProxy::start(chaos_support::host_port(&env.postgres_url)).await;
    let ts = FaultProxy::start(chaos_support::host_port(&env.timescale_url)).await;
    let ch = FaultProxy::start(chaos_support::host_port(&env.clickhouse_url)).await;
    let (pg_url, ts_url) = (
        pg_url_via(&env.postgres_url, &pg),
        pg_url_via(&env.timescale_url, &ts),
    );
    let ch_url = with_addr(&env.clickhouse_url, &ch.addr());
    let mut sc = Scenario::start(
        "all-destinations-cut",
        "all three destinations cut, healed at different times",
        &env,
        |spec| {
            spec.set("sinks.postgres.destination.url", pg_url)
                .set("sinks.timescaledb.destination.url", ts_url)
                .set("sinks.clickhouse.destination.url", ch_url)
        },
    )
    .await;
    let load = sc.start_load(120, 50, 41);
    sc.wait_flowing().await;
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(load.elapsed())).await;

    let mut at_cut = Vec::new();
    for d in Destination::ALL {
        at_cut.push(sc.stored_offsets(d).await.unwrap_or(0));
    }
    sc.log(format!(
        "partition of all three destinations; stored offsets {at_cut:?}"
    ));
    for p in [&pg, &ts, &ch] {
        p.partition_for(Duration::from_secs(60));
    }
    struct Heal<'a> {
        d: Destination,
        proxy: &'a FaultProxy,
        after: u64,
        /// (Kafka end when healed, stored offsets when healed, when)
        healed: Option<(i64, i64, Instant)>,
        current_after: Option<f64>,
    }
    let mut heals: Vec<Heal<'_>> = [
        (Destination::Postgres, &pg, 10u64),
        (Destination::Clickhouse, &ch, 20),
        (Destination::Timescaledb, &ts, 30),
    ]
    .into_iter()
    .map(|(d, proxy, after)| Heal {
        d,
        proxy,
        after,
        healed: None,
        current_after: None,
    })
    .collect();
    // One loop heals on schedule and times each destination's catch-up at once.
    let cut_at = Instant::now();
    while heals.iter().any(|h| h.current_after.is_none()) {
        for h in heals.iter_mut() {
            match h.healed {
                None if cut_at.elapsed() >= Duration::from_secs(h.after) => {
                    let target = sc.masked_end().await.expect("Kafka end offsets");
                    let stored = sc.stored_offsets(h.d).await.unwrap_or(0);
                    h.proxy.heal();
                    sc.log(format!("healed {} (stored offsets {stored})", h.d));
                    h.healed = Some((target, stored, Instant::now()));
                }
                Some((target, _, at)) if h.current_after.is_none() => {
                    if sc.stored_offsets(h.d).await.is_some_and(|o| o >= target) {
                        h.current_after = Some(at.elapsed().as_secs_f64());
                    } else if at.elapsed() > Duration::from_secs(60) {
                        panic!(
                            "{} not current within 60 s of its heal; log:\n{}",
                            h.d,
                            sc.pipeline.log_tail(h.d.service(), 30)
                        );
                    }
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (h, cut) in heals.iter().zip(&at_cut) {
        let (target, stored, _) = h.healed.expect("healed");
        let took = h.current_after.expect("current");
        sc.recovered(
            format!("{} (healed after {} s) current", h.d, h.after),
            took,
        );
        assert!(
            stored >= *cut,
            "{}: stored offsets went back while its database was unreachable ({cut} → {stored})",
            h.d
        );
        sc.notes.push(format!(
            "{}: stored offsets {cut} at the cut, {stored} when healed, resumed from there to ≥ {target} \
             in {took:.1} s",
            h.d
        ));
    }
    // Offsets never move backwards while cut (nothing written, nothing forgotten).
    for (d, cut) in Destination::ALL.iter().zip(&at_cut) {
        let now = sc.stored_offsets(*d).await.unwrap_or(0);
        assert!(
            now >= *cut,
            "{d}: stored offsets went back from {cut} to {now}"
        );
    }
    sc.fault = "sink ↔ database partitioned for all three at once; healed after 10 s (postgres), \
                20 s (clickhouse), 30 s (timescaledb)"
        .into();
    let report = load.finish().await;
    sc.finish(vec![report]).await;
}

/// ClickHouse stopped for `down` under load and started again: sink-clickhouse keeps retrying
/// (same process), its backlog grows in Kafka while the other two destinations stay current, and it
/// flushes the backlog after the restart.
async fn clickhouse_down(id: &'static str, title: &'static str, down: Duration) {
    let env = StackEnv::load();
    let mut sc = Scenario::start(id, title, &env, |spec| spec).await;
    let pids = sc.pids();
    let load = sc.start_load(100, down.as_secs() + 30, 51);
    sc.wait_flowing().await;
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(load.elapsed())).await;
    let stored_at_stop = sc
        .stored_offsets(Destination::Clickhouse)
        .await
        .unwrap_or(0);
    let guard = RestartGuard(StackServer::Clickhouse);
    tokio::task::spawn_blocking(|| StackServer::Clickhouse.stop())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{e}"));
    sc.log(format!(
        "ClickHouse stopped for {} s (its stored offsets {stored_at_stop})",
        down.as_secs()
    ));
    tokio::time::sleep(down).await;
    // The backlog: the masked topics' offsets (events and transaction markers) Kafka holds for
    // ClickHouse beyond what it stored (its offsets live in ClickHouse, so they are read once it
    // is back, before the sink has written anything).
    let end_at_restart = sc.masked_end().await.expect("Kafka end offsets");
    // Read after the end, so PostgreSQL may be past it: 0 then.
    let pg_lag =
        (end_at_restart - sc.stored_offsets(Destination::Postgres).await.unwrap_or(0)).max(0);
    tokio::task::spawn_blocking(|| StackServer::Clickhouse.start())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{e}"));
    drop(guard);
    let stored_at_restart = sc
        .stored_offsets(Destination::Clickhouse)
        .await
        .unwrap_or(0);
    let backlog = end_at_restart - stored_at_restart;
    sc.log(format!(
        "ClickHouse started again; backlog {backlog} offsets (Kafka end {end_at_restart}, stored \
         {stored_at_restart})"
    ));
    let secs = sc
        .wait_current(
            Destination::Clickhouse,
            end_at_restart,
            Duration::from_secs(120),
        )
        .await
        .unwrap_or_else(|| {
            panic!(
                "ClickHouse not current within 120 s of its restart; log:\n{}",
                sc.pipeline.log_tail(Service::SinkClickhouse, 30)
            )
        });
    sc.recovered("clickhouse current after restart", secs);
    assert!(
        backlog >= 50 * i64::try_from(down.as_secs()).unwrap_or(0),
        "the ClickHouse backlog did not grow while it was down ({backlog} offsets in {} s at \
         100 ev/s)",
        down.as_secs()
    );
    assert!(
        stored_at_restart >= stored_at_stop,
        "ClickHouse's stored offsets went back ({stored_at_stop} → {stored_at_restart})"
    );
    assert!(
        pg_lag * 4 < backlog,
        "PostgreSQL fell behind too while only ClickHouse was down ({pg_lag} offsets behind, \
         ClickHouse {backlog})"
    );
    sc.assert_same_processes(&pids, "the ClickHouse outage");
    sc.fault = format!(
        "dev/components/clickhouse.sh stop, {} s, start",
        down.as_secs()
    );
    sc.notes.push(format!(
        "backlog of {backlog} offsets buffered in Kafka when ClickHouse came back (PostgreSQL \
         {pg_lag} behind at that moment), flushed in {secs:.1} s; sink-clickhouse kept running \
         throughout"
    ));
    let report = load.finish().await;
    sc.finish(vec![report]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos scenario: run alone by `make chaos`"]
async fn clickhouse_down_one_minute() {
    clickhouse_down(
        "clickhouse-down-1m",
        "ClickHouse down for 1 minute",
        Duration::from_secs(60),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long: run by `make chaos-long`"]
async fn long_clickhouse_down_two_minutes() {
    clickhouse_down(
        "long-clickhouse-down-2m",
        "ClickHouse down for 2 minutes",
        Duration::from_secs(120),
    )
    .await;
}

/// (e) Cassandra restarted mid-load: writes fail while it is down (counted by `cdcctl load`; a
/// timed-out write may still have been applied, hence the exact correlation-id check of
/// `finish`), the capture keeps its process, reconnects for the schema and continues from its
/// last position.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos scenario: run alone by `make chaos`"]
async fn cassandra_restart_mid_load() {
    let env = StackEnv::load();
    let mut sc = Scenario::start(
        "cassandra-restart",
        "Cassandra restarted mid-load",
        &env,
        |spec| spec,
    )
    .await;
    let pids = sc.pids();
    let load = sc.start_load(100, 50, 61);
    sc.wait_flowing().await;
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(load.elapsed())).await;
    let log_from = log_lines(&sc, Service::Capture);
    let guard = RestartGuard(StackServer::Cassandra);
    sc.log("restarting Cassandra under load");
    let (stopped, started) = tokio::task::spawn_blocking(|| {
        Ok::<_, String>((
            StackServer::Cassandra.stop()?,
            StackServer::Cassandra.start()?,
        ))
    })
    .await
    .expect("join")
    .unwrap_or_else(|e| panic!("{e}"));
    drop(guard);
    sc.log(format!(
        "Cassandra stopped in {:.0} s, healthy again {:.0} s after its start",
        stopped.as_secs_f64(),
        started.as_secs_f64()
    ));
    sc.mark("Cassandra healthy again");
    let report = load.finish().await;
    let capture_log = std::fs::read_to_string(sc.pipeline.log_path(Service::Capture))
        .unwrap_or_default()
        .lines()
        .skip(log_from)
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let schema_misses = capture_log
        .iter()
        .filter(|l| l.contains("Cannot read the Cassandra schema version"))
        .count();
    let captured_after = capture_log
        .iter()
        .rev()
        .take_while(|l| !l.contains("Cannot read the Cassandra schema version"))
        .filter(|l| l.contains("Changes captured"))
        .count();
    assert!(
        captured_after > 0,
        "the capture logged no \"Changes captured\" after its last failed schema read; log:\n{}",
        sc.pipeline.log_tail(Service::Capture, 30)
    );
    sc.assert_same_processes(&pids, "the Cassandra restart");
    sc.fault = format!(
        "dev/components/cassandra.sh stop + start under load ({:.0} s to stop, {:.0} s to healthy)",
        stopped.as_secs_f64(),
        started.as_secs_f64()
    );
    sc.recovered("cassandra start to healthy", started.as_secs_f64());
    sc.notes.push(format!(
        "{} writes refused or timed out while Cassandra was down; the capture (same process) logged \
         {schema_misses} failed schema reads, then reconnected and captured on from its last \
         position ({captured_after} batches after the last failed read)",
        report.errors
    ));
    sc.finish(vec![report]).await;
}

/// A burst of `events` as fast as the load generator can write: memory stays bounded
/// (backpressure: Kafka buffers, every stage reads at its own pace), nothing lost.
async fn burst(id: &'static str, title: &'static str, events: u64) {
    let env = StackEnv::load();
    let mut sc = Scenario::start(id, title, &env, |spec| spec).await;
    let report: LoadReport = sc.start_burst(events, 71).finish().await;
    sc.fault = format!(
        "no fault: {events} events written at {:.0} ev/s",
        report.achieved_rate
    );
    // Backpressure: no service holds the backlog in memory. 100,000 events are about 140 MiB of
    // JSON per stage (several times that as decoded values); bounded queues keep every process
    // far below (measured peaks 69-165 MiB on 2026-11-27).
    for (s, mib) in sc.peak_rss_mib() {
        assert!(mib < 512.0, "{s} peaked at {mib:.0} MiB during the burst");
    }
    sc.finish(vec![report]).await;
}

/// 100,000 events written in seconds (about 8 s here), not a bounded-down variant: the whole
/// scenario takes about a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos scenario: run alone by `make chaos`"]
async fn burst_100k() {
    burst("burst-100k", "burst of 100,000 events", 100_000).await;
}

/// The login role the TimescaleDB sink uses in [`timescale_refuses_connections_to_dlq_and_replay`]:
/// not a superuser, so its connection limit applies (superusers are exempt). DEV ONLY password.
const LIMITED_ROLE: &str = "cdc_chaos_limited";
const LIMITED_ROLE_PASSWORD: &str = "fake-chaos-password";

/// `url` with its `user:password@` replaced.
fn with_user(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL with a scheme");
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{user}:{password}@{host}")
}

/// (c) TimescaleDB refuses connections ("too many connections", SQLSTATE 53300) under load: the
/// sink retries each batch 5 times, then dead-letters it with its context (SC-008: within
/// 2 minutes) and moves on; once TimescaleDB accepts connections again, `cdcctl dlq replay`
/// writes the dead letters and every destination verifies identical, nothing lost or doubled.
///
/// The refusal is TimescaleDB's own: the sink logs in as a non-superuser role whose
/// `CONNECTION LIMIT` is set to 0 and whose sessions are terminated, so every new connection
/// gets the server's FATAL 53300 "too many connections for role" (what a full `max_connections`
/// answers too, with another message).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos scenario: run alone by `make chaos`"]
async fn timescale_refuses_connections_to_dlq_and_replay() {
    let env = StackEnv::load();
    let admin = cdc_testkit::Warehouses::connect(&env).await;
    let ts = Destination::Timescaledb;
    let role = LIMITED_ROLE;
    // Member of the stack's owner role (not a superuser itself): it may replace the sink's shared
    // functions and write the tables other runs created, and its connection limit applies.
    let owner = env
        .timescale_url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once(['@', ':']))
        .map(|(user, _)| user.to_owned())
        .expect("user in CDC_TIMESCALE_URL");
    admin
        .query(
            ts,
            &format!(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') \
                 THEN CREATE ROLE {role}; END IF; END $$;
                 ALTER ROLE {role} WITH LOGIN NOSUPERUSER CONNECTION LIMIT -1 \
                   PASSWORD '{LIMITED_ROLE_PASSWORD}';
                 GRANT {owner} TO {role};"
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("creating role {role}: {e}"));
    let url = format!(
        "plain:{}",
        with_user(&env.timescale_url, role, LIMITED_ROLE_PASSWORD)
    );
    let mut sc = Scenario::start(
        "timescale-refuses-connections",
        "TimescaleDB refuses connections (too many connections): retries, DLQ, replay (SC-008)",
        &env,
        |spec| spec.set("sinks.timescaledb.destination.url", url),
    )
    .await;
    let load = sc.start_load(150, 60, 81);
    sc.wait_flowing().await;
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(load.elapsed())).await;

    // Restores the role's limit even if the test fails from here (a bounded fault).
    struct Unlimit(StackEnv);
    impl Drop for Unlimit {
        fn drop(&mut self) {
            let env = self.0.clone();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    let wh = cdc_testkit::Warehouses::connect(&env).await;
                    let _ = wh
                        .query(
                            Destination::Timescaledb,
                            &format!("ALTER ROLE {LIMITED_ROLE} CONNECTION LIMIT -1"),
                        )
                        .await;
                });
            })
            .join();
        }
    }
    let unlimit = Unlimit(env.clone());
    let fault_at = Instant::now();
    admin
        .query(
            ts,
            &format!(
                "ALTER ROLE {role} CONNECTION LIMIT 0;
                 SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '{role}';"
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("limiting role {role}: {e}"));
    sc.log("TimescaleDB refuses every new connection of the sink (CONNECTION LIMIT 0) for 30 s");

    // SC-008: dead letters with their context within 2 minutes of the first failure.
    let dlq_list = async |sc: &Scenario| -> serde_json::Value {
        let (_, stdout, _) = support::cdcctl(
            &sc.pipeline,
            &["dlq", "list", "--destination", "timescaledb", "--json"],
        )
        .await;
        serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null)
    };
    let mut first_letter = None;
    while fault_at.elapsed() < Duration::from_secs(30) {
        if first_letter.is_none() {
            let listed = dlq_list(&sc).await;
            if listed["dead_letters"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
            {
                first_letter = Some(fault_at.elapsed().as_secs_f64());
                sc.log("first dead letter listed");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    admin
        .query(ts, &format!("ALTER ROLE {role} CONNECTION LIMIT -1"))
        .await
        .unwrap_or_else(|e| panic!("restoring role {role}: {e}"));
    drop(unlimit);
    sc.log("TimescaleDB accepts the sink's connections again");
    let first_letter = first_letter.unwrap_or_else(|| {
        panic!(
            "no dead letter within 30 s of TimescaleDB refusing connections; sink log:\n{}",
            sc.pipeline.log_tail(Service::SinkTimescaledb, 30)
        )
    });
    sc.recovered(
        "first dead letter after the refusals began (SC-008: < 120 s)",
        first_letter,
    );
    assert!(
        first_letter < 120.0,
        "SC-008: first dead letter after {first_letter:.0} s"
    );

    let report = load.finish().await;
    // Every letter: retriable, retried 5 times, with its source position and table.
    let listed = dlq_list(&sc).await;
    let letters = listed["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!letters.is_empty(), "dead letters vanished: {listed}");
    for l in &letters {
        assert_eq!(l["error_class"], "retriable", "{l}");
        assert_eq!(l["retry_count"], 5, "{l}");
        assert_eq!(l["table"], format!("{}.{}", sc.ks, support::TABLE), "{l}");
        assert!(
            l["error"]
                .as_str()
                .is_some_and(|e| e.contains("53300") || e.contains("too many connections")),
            "the error names the refusal: {l}"
        );
        assert!(
            l["source"]["topic"].as_str().is_some_and(|t| !t.is_empty()),
            "{l}"
        );
    }
    sc.log(format!(
        "{} events dead-lettered; replaying them",
        letters.len()
    ));
    let (code, stdout, stderr) = support::cdcctl(
        &sc.pipeline,
        &[
            "dlq",
            "replay",
            "--destination",
            "timescaledb",
            "--yes",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "cdcctl dlq replay: {stdout}\n{stderr}");
    let replayed: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
    let n = replayed["stages"][0]["replayed"].as_u64().unwrap_or(0);
    assert_eq!(
        n,
        letters.len() as u64,
        "replayed {n} of {}: {replayed}",
        letters.len()
    );
    sc.fault = format!(
        "sink-timescaledb's role limited to 0 connections and its sessions terminated for 30 s \
         (FATAL 53300 on every reconnect); {} events dead-lettered after 5 retries each, then \
         `cdcctl dlq replay`",
        letters.len()
    );
    sc.notes.push(format!(
        "first dead letter {first_letter:.1} s after the refusals began (SC-008 asks < 120 s); \
         {} letters (the batch in flight), all `retriable` with retry_count 5; later events waited \
         in Kafka while the sink retried storing that batch's offsets; all letters replayed once \
         TimescaleDB accepted connections",
        letters.len()
    ));
    sc.finish(vec![report]).await;
}
