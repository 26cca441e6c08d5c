//! US1 outage scenario: the PostgreSQL sink and the TimescaleDB sink run side by side on the same
//! masked topic (separate consumer groups); PostgreSQL is cut off for 120 s by a loopback TCP proxy
//! while 3,000 changes keep arriving. PostgreSQL's sink writes nothing, reports itself not ready
//! and counts retries without dead-lettering; TimescaleDB keeps up; after healing PostgreSQL
//! catches up within 60 s to exactly the expected state. Needs `make stack-up`; never skips.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cdc_sink::compliance::{self, ComplianceEnv, Inspector, PgInspector, Row};
use cdc_sink::postgres::{PgSettings, PostgresDestination};
use cdc_sink::timescaledb::{TimescaleOptions, timescale_destination};
use cdc_testkit::{StackEnv, unique_name};
use secrecy::SecretString;

const OUTAGE: Duration = Duration::from_secs(120);
const CATCH_UP: Duration = Duration::from_secs(60);
const T0: i64 = 1_700_000_000_000_000;

/// `host:port` of a PostgreSQL URL.
fn host_port(url: &str) -> String {
    let cfg: tokio_postgres::Config = url.parse().expect("postgres url");
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// The value of `name{destination="<destination>"...}` in a Prometheus text exposition.
fn metric(text: &str, name: &str, destination: &str) -> Option<f64> {
    let label = format!("destination=\"{destination}\"");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.split(['{', ' '])
                .next()
                .is_some_and(|metric_name| metric_name == name)
                && l.contains(&label)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// What Cassandra would return for one key after the events so far (increasing writetimes).
#[derive(Debug, Clone, Default)]
struct ModelRow {
    marker: bool,
    name: Option<String>,
    score: Option<i64>,
}

fn expected(model: &BTreeMap<i32, ModelRow>) -> BTreeMap<i32, Row> {
    model
        .iter()
        .filter(|(_, r)| r.marker || r.name.is_some() || r.score.is_some())
        .map(|(k, r)| (*k, (r.name.clone(), r.score)))
        .collect()
}

/// Sums the stored next offsets of one group and topic over one long-lived connection (opening a
/// connection per poll would add load to the very server whose catch-up is being timed).
struct OffsetReader {
    client: tokio_postgres::Client,
}

impl OffsetReader {
    async fn connect(url: &str) -> OffsetReader {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect for offsets");
        tokio::spawn(conn);
        OffsetReader { client }
    }

    async fn total(&self, group: &str, topic: &str) -> i64 {
        self.client
            .query_one(
                "SELECT COALESCE(SUM(next_offset), 0)::bigint FROM public._cdc_offsets WHERE \"group\" = $1 AND topic = $2",
                &[&group, &topic],
            )
            .await
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_for_two_minutes_while_timescale_keeps_up() {
    let stack = StackEnv::load();
    let env = ComplianceEnv {
        kafka_bootstrap: stack.kafka_bootstrap.clone(),
        poison_name: None,
    };
    let pg = PgInspector {
        url: stack.postgres_url.clone(),
    };
    let ts = PgInspector {
        url: stack.timescale_url.clone(),
    };

    let pg_offsets = OffsetReader::connect(&stack.postgres_url).await;
    let ts_offsets = OffsetReader::connect(&stack.timescale_url).await;
    let target = host_port(&stack.postgres_url);
    let proxy = cdc_testkit::FaultProxy::start(target.clone()).await;
    let proxied = stack
        .postgres_url
        .replacen(&target, &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(
        proxied, stack.postgres_url,
        "the URL goes through the proxy"
    );

    // One topic, two consumer groups (one per destination), one DLQ topic both would use.
    let mut fx = compliance::Fixture::new(&env, "outage2m").await;
    let topic = fx.topic.clone();
    let pg_group = fx.group.clone();
    let mut pg_settings = PgSettings::new(SecretString::from(proxied));
    pg_settings.connect_timeout_ms = 1_000;
    pg_settings.statement_timeout_ms = 5_000;
    let pg_sink = fx.start(PostgresDestination::new(&pg_settings).expect("postgres destination"));
    let ts_group = unique_name("cdc_sink_test_ts");
    fx.group = ts_group.clone();
    let ts_sink = fx.start(
        timescale_destination(
            &PgSettings::new(SecretString::from(stack.timescale_url.clone())),
            &TimescaleOptions::default(),
        )
        .expect("timescale destination"),
    );

    let mut model: BTreeMap<i32, ModelRow> = BTreeMap::new();
    let mut wt = T0;
    let mut produced = 0i64;

    // Before the outage: 300 rows in both destinations.
    let first: Vec<_> = (0..300)
        .map(|id| {
            wt += 1;
            model.insert(
                id,
                ModelRow {
                    marker: true,
                    name: Some(format!("before-{id}")),
                    score: Some(0),
                },
            );
            fx.events.insert(id, &format!("before-{id}"), 0, wt)
        })
        .collect();
    fx.produce(&first).await;
    produced += first.len() as i64;
    let before = expected(&model);
    for (inspector, what) in [(&pg, "postgres"), (&ts, "timescaledb")] {
        fx.wait_rows(
            inspector,
            Duration::from_secs(90),
            &format!("{what}: rows before the outage"),
            |r| r == &before,
        )
        .await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg_offsets.total(&pg_group, &topic).await != produced {
        assert!(
            Instant::now() < deadline,
            "postgres offsets stored before the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pg_offsets_before = pg_offsets.total(&pg_group, &topic).await;
    assert!(
        pg_sink.health.is_ready(),
        "postgres sink ready before the cut"
    );

    // The outage: 3,000 changes (inserts of new keys, updates, deletes, re-inserts) in 25 chunks
    // of 120 every 4 s, i.e. spread over the first 100 s of the 120 s cut.
    proxy.set_up(false);
    let cut_at = Instant::now();
    eprintln!("postgres cut off");
    let mut saw_not_ready = false;
    for chunk in 0..25i32 {
        let mut events = Vec::with_capacity(120);
        for j in 0..120i32 {
            let i = chunk * 120 + j;
            wt += 1;
            let e = match i % 6 {
                // New keys 300..1300.
                0 | 3 => {
                    let id = 300 + i / 3;
                    let name = format!("during-{id}");
                    model.insert(
                        id,
                        ModelRow {
                            marker: true,
                            name: Some(name.clone()),
                            score: Some(i64::from(i)),
                        },
                    );
                    fx.events.insert(id, &name, i64::from(i), wt)
                }
                1 => {
                    let id = (i * 7) % 300;
                    model.entry(id).or_default().score = Some(i64::from(i));
                    fx.events.update_score(id, i64::from(i), wt)
                }
                2 => {
                    let id = (i * 11) % 300;
                    let name = format!("renamed-{i}");
                    model.entry(id).or_default().name = Some(name.clone());
                    fx.events.update_name(id, &name, wt)
                }
                4 => {
                    let id = (i * 13) % 300;
                    model.insert(id, ModelRow::default());
                    fx.events.delete(id, wt)
                }
                _ => {
                    let id = (i * 17) % 300;
                    let name = format!("again-{i}");
                    model.insert(
                        id,
                        ModelRow {
                            marker: true,
                            name: Some(name.clone()),
                            score: Some(-1),
                        },
                    );
                    fx.events.insert(id, &name, -1, wt)
                }
            };
            events.push(e);
        }
        fx.produce(&events).await;
        produced += events.len() as i64;

        // PostgreSQL's sink writes nothing and says so.
        assert_eq!(
            pg_offsets.total(&pg_group, &topic).await,
            pg_offsets_before,
            "chunk {chunk}: no offsets stored while PostgreSQL is unreachable"
        );
        if cut_at.elapsed() > Duration::from_secs(15) {
            assert!(
                !pg_sink.health.is_ready(),
                "chunk {chunk}: /readyz is not ready while PostgreSQL is unreachable"
            );
            assert_eq!(
                metric(
                    &pg_sink.metrics_text(),
                    "cdc_sink_destination_up",
                    "postgres"
                ),
                Some(0.0),
                "chunk {chunk}: cdc_sink_destination_up{{destination=\"postgres\"}} is 0"
            );
            saw_not_ready = true;
        }
        assert!(
            ts_sink.health.is_ready(),
            "chunk {chunk}: the TimescaleDB sink is unaffected"
        );
        let next = cut_at + Duration::from_secs(4 * (u64::from(chunk.unsigned_abs()) + 1));
        tokio::time::sleep_until(next.into()).await;
    }
    assert_eq!(produced, 3_300);
    assert!(saw_not_ready);
    let want = expected(&model);

    // TimescaleDB keeps up during the outage: its live rows equal the expected state and its
    // offsets cover every message before PostgreSQL comes back.
    let ts_rows = fx
        .wait_rows(
            &ts,
            OUTAGE.saturating_sub(cut_at.elapsed()),
            "timescaledb keeps up during the postgres outage",
            |r| r == &want,
        )
        .await;
    assert_eq!(ts_rows, want);
    while ts_offsets.total(&ts_group, &topic).await != produced {
        assert!(
            cut_at.elapsed() < OUTAGE,
            "timescaledb offsets cover every message during the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "timescaledb caught up {:.1} s into the outage",
        cut_at.elapsed().as_secs_f64()
    );

    // Still nothing in PostgreSQL at the end of the outage.
    tokio::time::sleep_until((cut_at + OUTAGE).into()).await;
    let pg_rows = pg.live_rows(&fx.keyspace, &fx.table).await.expect("rows");
    assert_eq!(
        pg_rows, before,
        "postgres unchanged during the whole outage"
    );
    assert_eq!(
        pg_offsets.total(&pg_group, &topic).await,
        pg_offsets_before,
        "no postgres offsets stored during the outage"
    );
    assert!(
        !pg_sink.health.is_ready(),
        "postgres sink not ready at the end"
    );
    let pg_text = pg_sink.metrics_text();
    let retries = metric(&pg_text, "cdc_sink_retries_total", "postgres").unwrap_or(0.0);
    assert!(retries > 0.0, "retries are counted (saw {retries})");
    assert_eq!(
        metric(&pg_text, "cdc_sink_dlq_events_total", "postgres").unwrap_or(0.0),
        0.0,
        "the outage dead-letters nothing"
    );
    eprintln!(
        "postgres healed after {:.1} s; {retries} retries",
        cut_at.elapsed().as_secs_f64()
    );

    // Heal: PostgreSQL catches up within 60 s to exactly the expected state.
    proxy.set_up(true);
    let healed_at = Instant::now();
    // Progress (stored offsets, readiness) every 5 s, so a slow catch-up shows where it stalls.
    let mut next_report = healed_at + Duration::from_secs(5);
    loop {
        let stored = pg_offsets.total(&pg_group, &topic).await;
        if stored == produced {
            break;
        }
        assert!(
            healed_at.elapsed() < CATCH_UP,
            "postgres offsets cover every message within 60 s (stored {stored} of {produced})"
        );
        if Instant::now() >= next_report {
            eprintln!(
                "catch-up {:.0} s: postgres offsets {stored} of {produced}, ready: {}",
                healed_at.elapsed().as_secs_f64(),
                pg_sink.health.is_ready()
            );
            next_report += Duration::from_secs(5);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let pg_rows = fx
        .wait_rows(
            &pg,
            CATCH_UP.saturating_sub(healed_at.elapsed()),
            "postgres catch-up after the outage",
            |r| r == &want,
        )
        .await;
    eprintln!(
        "postgres caught up {:.1} s after healing",
        healed_at.elapsed().as_secs_f64()
    );
    assert_eq!(pg_rows.len(), want.len(), "live row count");
    for (id, row) in &want {
        assert_eq!(pg_rows.get(id), Some(row), "postgres row {id}");
    }
    assert_eq!(pg_rows, want, "postgres equals the expected state");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pg_sink.health.is_ready() {
        assert!(Instant::now() < deadline, "/readyz ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(
            &pg_sink.metrics_text(),
            "cdc_sink_destination_up",
            "postgres"
        ),
        Some(1.0)
    );

    // Nothing lost, nothing duplicated, nothing dead-lettered, TimescaleDB unchanged.
    assert_eq!(
        ts.live_rows(&fx.keyspace, &fx.table).await.expect("rows"),
        want
    );
    assert_eq!(
        ts.change_count(&fx.keyspace, &fx.table)
            .await
            .expect("change count"),
        Some(3_300),
        "one timescaledb history row per change, no duplicates"
    );
    assert!(
        fx.dead_letters(1, Duration::from_secs(3)).await.is_empty(),
        "no dead letters from either sink"
    );
    for (sink, name) in [(&pg_sink, "postgres"), (&ts_sink, "timescaledb")] {
        assert_eq!(
            metric(&sink.metrics_text(), "cdc_sink_dlq_events_total", name).unwrap_or(0.0),
            0.0,
            "{name}: DLQ counter stays 0"
        );
    }
    pg_sink.stop().await;
    ts_sink.stop().await;
}
