//! Issue 8 acceptance, metrics (ARCHITECTURE §9): the whole pipeline as processes on the local
//! stack, ClickHouse reached through a `FaultProxy` the test can cut. Never skips.
//!
//! 1. Every required series is on the right service's `/metrics`, with the right labels
//!    (`destination` on every sink series, bound to that sink's destination; every `cdc_*` name and
//!    label declared in `cdc_telemetry::metrics::ALL`), and moves under load: events by op, rows,
//!    bytes, transactions, masked fields by strategy, DLQ totals and poison errors (one undecodable
//!    message on the raw topic, one on the masked topic), lag gauges, the end-to-end latency
//!    histogram (p50 ≤ p95 ≤ p99 read from its buckets), backlog per stage and destination, the
//!    capture's `cdc_raw` bytes, fill ratio and pending segments, Kafka transaction commit time
//!    (capture, masker) and rebalances (masker, sinks).
//! 2. Cutting ClickHouse raises only ClickHouse's error count and grows only its backlog; PostgreSQL
//!    and TimescaleDB stay ready, their errors flat and their rows arriving. After healing,
//!    ClickHouse catches up: backlog drained (to the commit markers of the last transactions), up
//!    again, ready, and all three hold the same rows.

#[path = "e2e_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdc_kafka::{IdempotentProducer, KafkaSettings, ProducerSettings};
use cdc_telemetry::metrics::{self, MetricKind, names as n};
use cdc_testkit::{
    Destination, FaultProxy, PipelineSpec, RunningPipeline, Service, StackEnv, Warehouses,
};
use support::{Model, Op, Patient, Writer, await_model, cassandra, create_schema, policy, update};

/// One sample of the text exposition.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse(exposition: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in exposition.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (head, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or(rest);
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .filter_map(|p| p.split_once("=\""))
                    .map(|(k, v)| (k.to_owned(), v.trim_end_matches('"').to_owned()))
                    .collect();
                (name.to_owned(), labels)
            }
            None => (head.to_owned(), BTreeMap::new()),
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// `/metrics` of every service, parsed.
#[derive(Debug, Clone, Default)]
struct Scrape(BTreeMap<Service, Vec<Sample>>);

impl Scrape {
    async fn take(pipeline: &RunningPipeline) -> Scrape {
        let mut all = BTreeMap::new();
        for s in Service::ALL {
            let (status, body) = pipeline
                .admin_get(s, "/metrics")
                .await
                .unwrap_or_else(|| panic!("{s} does not answer /metrics"));
            assert_eq!(status, 200, "{s} /metrics: HTTP {status}");
            all.insert(s, parse(&body));
        }
        Scrape(all)
    }

    fn samples(&self, s: Service) -> &[Sample] {
        self.0.get(&s).map_or(&[], Vec::as_slice)
    }

    /// Sum of `name` over the series carrying every given label (`None`: no such series).
    fn get(&self, s: Service, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for x in self.samples(s) {
            if x.name == name
                && labels
                    .iter()
                    .all(|(k, v)| x.labels.get(*k).map(String::as_str) == Some(*v))
            {
                found = Some(found.unwrap_or(0.0) + x.value);
            }
        }
        found
    }

    /// As `get`, 0 when absent (counters not yet touched).
    fn sum(&self, s: Service, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(s, name, labels).unwrap_or(0.0)
    }

    /// Panics unless the series exists.
    fn require(&self, s: Service, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(s, name, labels).unwrap_or_else(|| {
            let present: Vec<String> = self
                .samples(s)
                .iter()
                .filter(|x| x.name.starts_with(name))
                .map(|x| format!("{}{:?}", x.name, x.labels))
                .collect();
            panic!("{s}: series {name}{labels:?} missing; present: {present:?}")
        })
    }

    /// `histogram_quantile(q, …)` over the buckets of `name` (summed over matching series).
    fn quantile(&self, s: Service, name: &str, labels: &[(&str, &str)], q: f64) -> Option<f64> {
        let bucket = format!("{name}_bucket");
        let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for x in self.samples(s) {
            if x.name != bucket
                || !labels
                    .iter()
                    .all(|(k, v)| x.labels.get(*k).map(String::as_str) == Some(*v))
            {
                continue;
            }
            let le = x.labels.get("le")?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            by_le.entry(bound.to_bits()).or_insert((bound, 0.0)).1 += x.value;
        }
        let mut buckets: Vec<(f64, f64)> = by_le.into_values().collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for (bound, count) in buckets {
            if count >= rank {
                if bound.is_infinite() {
                    return Some(lower);
                }
                let inside = count - below;
                let frac = if inside > 0.0 {
                    (rank - below) / inside
                } else {
                    1.0
                };
                return Some(lower + (bound - lower) * frac);
            }
            lower = bound;
            below = count;
        }
        None
    }
}

/// Every `cdc_*` sample of every service is declared in `metrics::ALL` with its labels, and every
/// sink sample carries its own destination.
fn assert_declared(scrape: &Scrape) {
    for s in Service::ALL {
        for x in scrape.samples(s) {
            if !x.name.starts_with("cdc_") {
                continue;
            }
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    x.name.strip_suffix(suffix).filter(|b| {
                        metrics::ALL
                            .iter()
                            .any(|d| d.name == *b && d.kind == MetricKind::Histogram)
                    })
                })
                .unwrap_or(&x.name);
            let def = metrics::ALL
                .iter()
                .find(|d| d.name == base)
                .unwrap_or_else(|| panic!("{s}: {} is not declared in metrics::ALL", x.name));
            for label in x.labels.keys() {
                assert!(
                    def.labels.contains(&label.as_str()) || label == "le",
                    "{s}: {} has undeclared label {label}",
                    x.name
                );
            }
            if base.starts_with("cdc_sink_") {
                let d = s
                    .destination()
                    .unwrap_or_else(|| panic!("{s} exports sink metric {}", x.name));
                assert_eq!(
                    x.labels.get("destination").map(String::as_str),
                    Some(d.name()),
                    "{s}: {} must carry destination=\"{d}\"",
                    x.name
                );
            }
        }
    }
}

const CLASSES: [&str; 3] = ["retriable", "poison", "fatal"];

/// Backlog of a caught-up sink: high watermark − stored offset counts the commit marker of the last
/// transaction in each of the topic's 4 partitions (the masker writes transactionally).
const IDLE_BACKLOG: f64 = 4.0;

fn sink_errors(scrape: &Scrape, d: Destination) -> f64 {
    scrape.sum(
        d.service(),
        n::SINK_ERRORS_TOTAL,
        &[("destination", d.name())],
    )
}

fn sink_rows(scrape: &Scrape, d: Destination) -> f64 {
    scrape.sum(
        d.service(),
        n::SINK_ROWS_WRITTEN_TOTAL,
        &[("destination", d.name())],
    )
}

fn sink_backlog(scrape: &Scrape, d: Destination) -> f64 {
    scrape.sum(
        d.service(),
        n::SINK_BACKLOG_EVENTS,
        &[("destination", d.name())],
    )
}

/// A message no stage can decode, carrying a fake SSN (never echoed anywhere but the DLQ).
const POISON: &[u8] = br#"{"not_a_change_event": true, "ssn": "000-00-9999"}"#;

async fn produce_poison(env: &StackEnv, topic: &str) {
    let settings = KafkaSettings::new(env.kafka_bootstrap.clone(), "e2e-metrics-poison");
    let producer = IdempotentProducer::new(&settings, &ProducerSettings::default())
        .unwrap_or_else(|e| panic!("Kafka producer: {e}"));
    producer
        .send(topic, None, Some(b"poison"), Some(POISON), &[])
        .await
        .unwrap_or_else(|e| panic!("enqueue poison on {topic}: {e}"))
        .await
        .unwrap_or_else(|e| panic!("deliver poison to {topic}: {e}"));
}

/// Scrapes every 500 ms until `done` holds (returning that scrape), panicking with `what` after
/// `timeout`.
async fn scrape_until(
    pipeline: &RunningPipeline,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let started = Instant::now();
    loop {
        let s = Scrape::take(pipeline).await;
        if done(&s) {
            return s;
        }
        assert!(
            started.elapsed() < timeout,
            "{what}: not reached within {timeout:?}; sink-clickhouse log tail:\n{}",
            pipeline.log_tail(Service::SinkClickhouse, 15)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_required_series_moves_under_load_and_a_clickhouse_cut_shows_only_on_clickhouse() {
    let env = StackEnv::load();
    let ks = cdc_testkit::unique_name("e2e_metrics");
    let session = Arc::new(cassandra(&env).await);
    create_schema(&session, &ks).await;
    let proxy = FaultProxy::start(host_port(&env.clickhouse_url)).await;
    let pipeline = RunningPipeline::start(
        &env,
        PipelineSpec::new("metrics", [ks.clone()])
            .policy(policy(&ks, 1, false))
            .set(
                "sinks.clickhouse.destination.url",
                format!("http://127.0.0.1:{}", proxy.port),
            )
            // Small batches: the cut catches ClickHouse with events to write.
            .set("sinks.clickhouse.batch.max_rows", 50),
    )
    .await;
    let wh = Warehouses::connect(&env).await;
    let writer = Writer::new(Arc::clone(&session), &ks).await;
    let mut model = Model::default();
    let before = Scrape::take(&pipeline).await;
    assert_declared(&before);

    // Load: inserts, updates and deletes, then one undecodable message per stage's input topic.
    let table = format!("{ks}.{}", support::TABLE);
    let mut ops: Vec<Op> = (0..400)
        .map(|id| Op::Insert(Patient::fake(id, 0)))
        .collect();
    ops.extend((0..400).step_by(4).map(|id| update(id, 1)));
    ops.extend((0..400).step_by(10).map(Op::Delete));
    writer.write(&mut model, false, ops).await;
    await_model(&pipeline, &wh, &ks, &model).await;
    produce_poison(&env, &format!("cdc.raw.{table}")).await;
    produce_poison(&env, &format!("cdc.masked.{table}")).await;
    let after = scrape_until(
        &pipeline,
        Duration::from_secs(60),
        "poison messages dead-lettered by the masker and every sink",
        |s| {
            s.sum(Service::Masker, n::MASKER_DLQ_EVENTS_TOTAL, &[]) >= 1.0
                && Destination::ALL.iter().all(|d| {
                    s.sum(
                        d.service(),
                        n::SINK_DLQ_EVENTS_TOTAL,
                        &[("destination", d.name())],
                    ) >= 1.0
                })
        },
    )
    .await;
    assert_declared(&after);

    let moved = |s: Service, name: &str, labels: &[(&str, &str)]| {
        let (a, b) = (before.sum(s, name, labels), after.require(s, name, labels));
        assert!(
            b > a,
            "{s}: {name}{labels:?} did not move under load ({a} -> {b})"
        );
    };
    let t = table.as_str();

    // Capture.
    let c = Service::Capture;
    for op in ["insert", "update", "delete"] {
        moved(c, n::CAPTURE_EVENTS_TOTAL, &[("table", t), ("op", op)]);
    }
    moved(c, n::CAPTURE_MUTATIONS_READ_TOTAL, &[]);
    moved(c, n::CAPTURE_BYTES_READ_TOTAL, &[]);
    moved(c, n::CAPTURE_TRANSACTIONS_TOTAL, &[("result", "committed")]);
    after.require(c, n::CAPTURE_TRANSACTIONS_TOTAL, &[("result", "aborted")]);
    for class in CLASSES {
        after.require(c, n::CAPTURE_ERRORS_TOTAL, &[("error_class", class)]);
    }
    after.require(c, n::CAPTURE_PARSE_ERRORS_TOTAL, &[]);
    let lag = after.require(c, n::CAPTURE_LAG_SECONDS, &[]);
    assert!((0.0..600.0).contains(&lag), "capture lag {lag}");
    let raw_bytes = after.require(c, n::CAPTURE_CDC_RAW_BYTES, &[]);
    assert!(raw_bytes > 0.0, "cdc_raw holds the segments just written");
    let fill = after.require(c, n::CAPTURE_CDC_RAW_FILL_RATIO, &[]);
    assert!(fill > 0.0 && fill.is_finite(), "cdc_raw fill ratio {fill}");
    moved(
        c,
        &format!("{}_count", n::KAFKA_TRANSACTION_COMMIT_SECONDS),
        &[("stage", "capture")],
    );
    let pending = after.require(c, n::CAPTURE_SEGMENTS_PENDING, &[]);
    assert!(pending >= 0.0, "segments pending {pending}");

    // Masker.
    let m = Service::Masker;
    moved(
        m,
        n::MASKER_EVENTS_TOTAL,
        &[("table", t), ("result", "masked")],
    );
    for strategy in ["hash", "partial", "tokenize"] {
        moved(m, n::MASKER_MASKED_FIELDS_TOTAL, &[("strategy", strategy)]);
    }
    moved(m, n::MASKER_TRANSACTIONS_TOTAL, &[("result", "committed")]);
    after.require(m, n::MASKER_TRANSACTIONS_TOTAL, &[("result", "aborted")]);
    moved(m, n::MASKER_DLQ_EVENTS_TOTAL, &[]);
    moved(m, n::MASKER_EVENTS_TOTAL, &[("result", "dlq")]);
    moved(m, n::MASKER_ERRORS_TOTAL, &[("error_class", "poison")]);
    moved(m, &format!("{}_count", n::MASKER_PROCESSING_SECONDS), &[]);
    moved(
        m,
        &format!("{}_count", n::KAFKA_TRANSACTION_COMMIT_SECONDS),
        &[("stage", "masker")],
    );
    assert!(
        after.require(m, n::KAFKA_REBALANCES_TOTAL, &[("stage", "masker")]) >= 1.0,
        "the masker's partition assignment is counted"
    );
    assert_eq!(after.require(m, n::MASKER_POLICY_VERSION, &[]), 1.0);
    assert!(after.require(m, n::MASKER_BACKLOG_EVENTS, &[]) >= 0.0);
    assert!(after.require(m, n::MASKER_LAG_SECONDS, &[]) >= 0.0);

    // Sinks, each with its destination.
    for d in Destination::ALL {
        let s = d.service();
        let dl = ("destination", d.name());
        for op in ["insert", "update", "delete"] {
            moved(
                s,
                n::SINK_ROWS_WRITTEN_TOTAL,
                &[dl, ("table", t), ("op", op)],
            );
        }
        moved(s, n::SINK_BYTES_WRITTEN_TOTAL, &[dl]);
        moved(s, &format!("{}_count", n::SINK_BATCH_WRITE_SECONDS), &[dl]);
        moved(
            s,
            &format!("{}_count", n::SINK_END_TO_END_LATENCY_SECONDS),
            &[dl],
        );
        moved(s, n::SINK_DLQ_EVENTS_TOTAL, &[dl]);
        moved(s, n::SINK_ERRORS_TOTAL, &[dl, ("error_class", "poison")]);
        for class in CLASSES {
            after.require(s, n::SINK_ERRORS_TOTAL, &[dl, ("error_class", class)]);
        }
        after.require(s, n::SINK_RETRIES_TOTAL, &[dl]);
        let stage = format!("sink-{d}");
        assert!(
            after.require(s, n::KAFKA_REBALANCES_TOTAL, &[("stage", stage.as_str())]) >= 1.0,
            "{d}: the sink's partition assignment is counted"
        );
        let lag = after.require(s, n::SINK_LAG_SECONDS, &[dl]);
        assert!((0.0..600.0).contains(&lag), "{d}: lag {lag}");
        assert_eq!(
            after.require(s, n::SINK_DESTINATION_UP, &[dl]),
            1.0,
            "{d} up"
        );
        let backlog = after.require(s, n::SINK_BACKLOG_EVENTS, &[dl]);
        assert!(backlog >= 0.0, "{d}: backlog {backlog}");
        assert!(
            after
                .samples(s)
                .iter()
                .any(|x| x.name == n::SINK_BACKLOG_EVENTS && x.labels.contains_key("partition")),
            "{d}: backlog is per partition"
        );
        let q: Vec<f64> = [0.5, 0.95, 0.99]
            .iter()
            .map(|q| {
                after
                    .quantile(s, n::SINK_END_TO_END_LATENCY_SECONDS, &[dl], *q)
                    .unwrap_or_else(|| panic!("{d}: no latency quantile {q}"))
            })
            .collect();
        assert!(
            q[0] > 0.0 && q[0] <= q[1] && q[1] <= q[2] && q[2] <= 60.0,
            "{d}: end-to-end latency p50/p95/p99 = {q:?}"
        );
        eprintln!(
            "{d}: end-to-end latency p50 {:.3}s p95 {:.3}s p99 {:.3}s",
            q[0], q[1], q[2]
        );
    }

    // ClickHouse cut: only its errors rise and only its backlog grows.
    let healthy = [Destination::Postgres, Destination::Timescaledb];
    let cut_at = Scrape::take(&pipeline).await;
    proxy.set_up(false);
    let started = Instant::now();
    let mut next_id = 10_000;
    let mut ch_not_ready = false;
    let mut peak_backlog = 0.0f64;
    let during = loop {
        let ops: Vec<Op> = (next_id..next_id + 40)
            .map(|id| Op::Insert(Patient::fake(id, 0)))
            .collect();
        next_id += 40;
        writer.write(&mut model, false, ops).await;
        for d in healthy {
            let (status, body) = pipeline
                .admin_get(d.service(), "/readyz")
                .await
                .unwrap_or_else(|| panic!("{d}: /readyz does not answer during the cut"));
            assert_eq!(
                status, 200,
                "{d} must stay ready while ClickHouse is cut: {body}"
            );
        }
        if let Some((status, _)) = pipeline.admin_get(Service::SinkClickhouse, "/readyz").await {
            ch_not_ready |= status != 200;
        }
        let s = Scrape::take(&pipeline).await;
        peak_backlog = peak_backlog.max(sink_backlog(&s, Destination::Clickhouse));
        let ch = Destination::Clickhouse;
        let done = sink_errors(&s, ch) > sink_errors(&cut_at, ch)
            && peak_backlog > sink_backlog(&cut_at, ch)
            && peak_backlog >= 200.0
            && s.sum(
                ch.service(),
                n::SINK_DESTINATION_UP,
                &[("destination", "clickhouse")],
            ) == 0.0
            && ch_not_ready
            && healthy
                .iter()
                .all(|d| sink_rows(&s, *d) >= sink_rows(&cut_at, *d) + 200.0);
        if done {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "ClickHouse cut not visible within 90 s: errors {} -> {}, backlog {} -> peak \
             {peak_backlog}, up {:?}, /readyz failed: {ch_not_ready}; sink-clickhouse log:\n{}",
            sink_errors(&cut_at, ch),
            sink_errors(&s, ch),
            sink_backlog(&cut_at, ch),
            s.get(ch.service(), n::SINK_DESTINATION_UP, &[]),
            pipeline.log_tail(Service::SinkClickhouse, 15)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "ClickHouse cut visible after {:.1}s: errors {} -> {}, backlog {} -> {peak_backlog}",
        started.elapsed().as_secs_f64(),
        sink_errors(&cut_at, Destination::Clickhouse),
        sink_errors(&during, Destination::Clickhouse),
        sink_backlog(&cut_at, Destination::Clickhouse),
    );
    for d in healthy {
        assert_eq!(
            sink_errors(&during, d),
            sink_errors(&cut_at, d),
            "{d}: errors must stay flat while ClickHouse is cut"
        );
        assert_eq!(
            during.sum(
                d.service(),
                n::SINK_DESTINATION_UP,
                &[("destination", d.name())]
            ),
            1.0,
            "{d} up"
        );
    }

    // Heal: ClickHouse catches up and its backlog drains.
    proxy.set_up(true);
    await_model(&pipeline, &wh, &ks, &model).await;
    let healed = scrape_until(
        &pipeline,
        Duration::from_secs(60),
        "ClickHouse up with its backlog drained (at most one commit marker per partition)",
        |s| {
            s.sum(
                Service::SinkClickhouse,
                n::SINK_DESTINATION_UP,
                &[("destination", "clickhouse")],
            ) == 1.0
                && sink_backlog(s, Destination::Clickhouse) <= IDLE_BACKLOG
        },
    )
    .await;
    let (status, body) = pipeline
        .admin_get(Service::SinkClickhouse, "/readyz")
        .await
        .unwrap_or_else(|| panic!("sink-clickhouse /readyz does not answer after healing"));
    assert_eq!(status, 200, "sink-clickhouse ready again: {body}");
    for d in healthy {
        assert_eq!(
            sink_errors(&healed, d),
            sink_errors(&cut_at, d),
            "{d}: no errors from the ClickHouse cut"
        );
    }
    assert!(
        sink_rows(&healed, Destination::Clickhouse)
            >= sink_rows(&cut_at, Destination::Clickhouse) + f64::from(next_id - 10_000),
        "ClickHouse wrote every row inserted during the cut"
    );
}
