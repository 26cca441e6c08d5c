//! Issue 8, "traces across stages", end to end: every service of a pipeline exports OTLP traces
//! to a test collector (`cdc_testkit::otlp`, a real gRPC `TraceService` server), a change written
//! to Cassandra must show up as one trace `capture.publish` → `masker.mask` → `sink.write_batch`
//! in each of the three sinks, linked through the `traceparent` Kafka header, and no span may
//! carry a cell value.
//!
//! The batch exporters run with a 10-minute schedule delay (`OTEL_BSP_SCHEDULE_DELAY`), so spans
//! leave a process only when its queue fills or when it shuts down: the spans seen after SIGTERM
//! prove the graceful shutdown flushes them. The negative control: `sink-clickhouse` is restarted
//! from a configuration without `telemetry.otlp_endpoint`, and the trace of the next change must
//! lack it while the other two sinks still appear.
//!
//! Needs the local stack (`make stack-up`) and the binaries (`cargo build --workspace --bins`).

#[path = "e2e_support.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use cdc_testkit::otlp::{CollectedSpan, OtlpCollector, parent_chain};
use cdc_testkit::pipeline::policy_header;
use cdc_testkit::{Destination, PipelineSpec, RunningPipeline, Service, StackEnv, Warehouses};

/// Long enough that no timed export happens during the test: spans leave on shutdown only.
const SCHEDULE_DELAY_MS: &str = "600000";
const CONVERGE: Duration = Duration::from_secs(120);

/// One fake row; `id` is distinctive so an attribute equal to it would be noticed.
struct FakeRow {
    id: i32,
    email: &'static str,
    ssn: &'static str,
    note: &'static str,
}

const ROW_A: FakeRow = FakeRow {
    id: 7_654_321,
    email: "fake.trace.a@example.invalid",
    ssn: "000-00-0001",
    note: "Fake trace note A",
};
const ROW_B: FakeRow = FakeRow {
    id: 7_654_322,
    email: "fake.trace.b@example.invalid",
    ssn: "000-00-0002",
    note: "Fake trace note B",
};

async fn cql(session: &scylla::client::session::Session, q: &str) {
    session
        .query_unpaged(q, &[])
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"));
}

fn policy(ks: &str) -> String {
    let mut p = format!("{}tables:\n", policy_header(1));
    for t in ["traced_a", "traced_b"] {
        p.push_str(&format!(
            "  {ks}.{t}:\n    email: {{class: pii, strategy: hash}}\n    \
             ssn: {{class: pii, strategy: hash}}\n"
        ));
    }
    p
}

async fn insert(session: &scylla::client::session::Session, ks: &str, table: &str, row: &FakeRow) {
    cql(
        session,
        &format!(
            "INSERT INTO {ks}.{table} (id, email, ssn, note) VALUES ({}, '{}', '{}', '{}')",
            row.id, row.email, row.ssn, row.note
        ),
    )
    .await;
}

async fn await_row_everywhere(wh: &Warehouses, ks: &str, table: &str) {
    for d in Destination::ALL {
        let n = wh.wait_for_count(d, ks, table, 1, CONVERGE).await;
        assert_eq!(
            n,
            Some(1),
            "{d}: {ks}.{table} should hold the one row written"
        );
    }
}

/// The `capture.publish` span of the change to `ks.table` (exactly one: one row was written).
fn capture_span<'a>(spans: &'a [CollectedSpan], ks: &str, table: &str) -> &'a CollectedSpan {
    let found: Vec<&CollectedSpan> = spans
        .iter()
        .filter(|s| {
            s.service == "capture"
                && s.name == "capture.publish"
                && s.attr("keyspace") == Some(ks)
                && s.attr("table") == Some(table)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one capture.publish span for {ks}.{table}; capture spans received: {:#?}",
        spans
            .iter()
            .filter(|s| s.service == "capture")
            .collect::<Vec<_>>()
    );
    found[0]
}

/// Checks the trace rooted at `root`: a `masker.mask` child, and a `sink.write_batch` span of
/// each service in `sinks` whose parent chain is that masker span, then `root`. Returns the
/// services that exported a span of the trace.
fn check_trace(
    spans: &[CollectedSpan],
    root: &CollectedSpan,
    ks: &str,
    table: &str,
    sinks: &[Service],
) -> BTreeSet<String> {
    let trace: Vec<&CollectedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == root.trace_id)
        .collect();
    let describe = || format!("trace {} of {ks}.{table}: {trace:#?}", root.trace_id);
    assert_eq!(root.parent_span_id, None, "capture starts the trace");
    for key in ["segment_id", "segment_position", "correlation_id"] {
        assert!(root.attr(key).is_some(), "capture span lacks {key}");
    }
    assert_eq!(
        root.attr("messaging.destination.name"),
        Some(format!("cdc.raw.{ks}.{table}").as_str())
    );

    let masks: Vec<&&CollectedSpan> = trace
        .iter()
        .filter(|s| s.service == "masker" && s.name == "masker.mask")
        .collect();
    assert_eq!(masks.len(), 1, "one masker span; {}", describe());
    let mask = masks[0];
    assert_eq!(
        mask.parent_span_id.as_deref(),
        Some(root.span_id.as_str()),
        "the masker span is the capture span's child; {}",
        describe()
    );
    assert_eq!(mask.attr("policy_version"), Some("1"));
    assert_eq!(mask.attr("correlation_id"), root.attr("correlation_id"));

    for sink in sinks {
        let d = sink.destination().expect("a sink");
        let writes: Vec<&&CollectedSpan> = trace
            .iter()
            .filter(|s| s.service == sink.binary() && s.name == "sink.write_batch")
            .collect();
        assert!(
            !writes.is_empty(),
            "no sink.write_batch span from {sink}; {}",
            describe()
        );
        for w in writes {
            let chain: Vec<(&str, &str)> = parent_chain(spans, w)
                .iter()
                .map(|s| (s.service.as_str(), s.span_id.as_str()))
                .collect();
            assert_eq!(
                chain,
                [
                    ("masker", mask.span_id.as_str()),
                    ("capture", root.span_id.as_str())
                ],
                "{sink}'s span must descend from the masker and capture spans; {}",
                describe()
            );
            assert_eq!(w.attr("destination"), Some(d.name()));
            assert_eq!(w.attr("table"), Some(format!("{ks}.{table}").as_str()));
            assert_eq!(w.attr("rows"), Some("1"));
            assert_eq!(w.attr("correlation_id"), root.attr("correlation_id"));
        }
    }
    trace.iter().map(|s| s.service.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_one_trace_through_capture_masker_and_every_sink() {
    let env = StackEnv::load();
    let collector = OtlpCollector::start().await;
    let ks = cdc_testkit::unique_name("e2e_traces");
    let session = support::cassandra(&env).await;
    cql(
        &session,
        &format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
             {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        ),
    )
    .await;
    for t in ["traced_a", "traced_b"] {
        cql(
            &session,
            &format!(
                "CREATE TABLE IF NOT EXISTS {ks}.{t} (id int PRIMARY KEY, email text, ssn text, \
                 note text) WITH cdc = true"
            ),
        )
        .await;
    }
    session
        .await_schema_agreement()
        .await
        .unwrap_or_else(|e| panic!("schema agreement: {e}"));

    let pipeline = RunningPipeline::start(
        &env,
        PipelineSpec::new("traces", [ks.clone()])
            .policy(policy(&ks))
            .partitions(1)
            .set("telemetry.otlp_endpoint", collector.endpoint())
            .set("telemetry.trace_sample_ratio", 1.0)
            .env("OTEL_BSP_SCHEDULE_DELAY", SCHEDULE_DELAY_MS),
    )
    .await;
    let wh = Warehouses::connect(&env).await;

    // Change A, with every service exporting.
    insert(&session, &ks, "traced_a", &ROW_A).await;
    await_row_everywhere(&wh, &ks, "traced_a").await;
    let early = collector.spans();
    assert!(
        !early.iter().any(|s| s.service == "sink-clickhouse"),
        "no timed export was expected before shutdown: {early:#?}"
    );

    // sink-clickhouse stops (SIGTERM: its spans must be flushed on the way out) and comes back
    // from a configuration without trace export.
    let text = std::fs::read_to_string(pipeline.config_path()).expect("read pipeline.yaml");
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("parse pipeline.yaml");
    let removed = doc
        .get_mut("telemetry")
        .and_then(|t| t.as_mapping_mut())
        .and_then(|t| t.remove("otlp_endpoint"));
    assert!(
        removed.is_some(),
        "pipeline.yaml had telemetry.otlp_endpoint"
    );
    let status = pipeline
        .stop(Service::SinkClickhouse)
        .await
        .expect("sink-clickhouse was running");
    assert!(
        status.success(),
        "sink-clickhouse exit on SIGTERM: {status}"
    );
    let flushed = collector.spans();
    assert!(
        flushed
            .iter()
            .any(|s| s.service == "sink-clickhouse" && s.name == "sink.write_batch"),
        "sink-clickhouse exited without flushing its spans: {flushed:#?}"
    );
    let tmp = pipeline.config_path().with_extension("yaml.tmp");
    std::fs::write(&tmp, serde_yaml::to_string(&doc).expect("yaml")).expect("write config");
    std::fs::rename(&tmp, pipeline.config_path()).expect("rename config");
    pipeline.restart(Service::SinkClickhouse).await;

    // Change B: sink-clickhouse writes it but exports nothing.
    insert(&session, &ks, "traced_b", &ROW_B).await;
    await_row_everywhere(&wh, &ks, "traced_b").await;

    let statuses = pipeline.stop_all().await;
    for (service, status) in &statuses {
        let status = status.unwrap_or_else(|| panic!("{service} was not running"));
        assert!(status.success(), "{service} exit on SIGTERM: {status}");
    }
    let spans = collector.spans();
    // The pipeline's own spans, for the log of a failing run.
    let ours = ["capture.publish", "masker.mask", "sink.write_batch"];
    for s in spans.iter().filter(|s| ours.contains(&s.name.as_str())) {
        eprintln!(
            "{} {} trace={} span={} parent={:?} {:?}",
            s.service, s.name, s.trace_id, s.span_id, s.parent_span_id, s.attributes
        );
    }

    let root_a = capture_span(&spans, &ks, "traced_a");
    let services_a = check_trace(
        &spans,
        root_a,
        &ks,
        "traced_a",
        &[
            Service::SinkPostgres,
            Service::SinkClickhouse,
            Service::SinkTimescaledb,
        ],
    );
    let all: BTreeSet<String> = Service::ALL.iter().map(|s| s.binary().to_owned()).collect();
    assert_eq!(services_a, all, "trace of change A spans all five services");

    let root_b = capture_span(&spans, &ks, "traced_b");
    assert_ne!(root_b.trace_id, root_a.trace_id, "one trace per change");
    let services_b = check_trace(
        &spans,
        root_b,
        &ks,
        "traced_b",
        &[Service::SinkPostgres, Service::SinkTimescaledb],
    );
    assert!(
        !services_b.contains("sink-clickhouse"),
        "sink-clickhouse runs without telemetry.otlp_endpoint, yet exported spans of change B"
    );
    assert!(
        !spans.iter().any(|s| s.service == "sink-clickhouse"
            && s.attr("table").is_some_and(|t| t.ends_with(".traced_b"))),
        "sink-clickhouse exported a span about traced_b without export configured"
    );

    // No cell value in any span: names, attributes, events, resources.
    let ids = [ROW_A.id.to_string(), ROW_B.id.to_string()];
    for row in [&ROW_A, &ROW_B] {
        for needle in [row.email, row.ssn, row.note] {
            let leaks: Vec<&CollectedSpan> = spans
                .iter()
                .filter(|s| s.texts().any(|t| t.contains(needle)))
                .collect();
            assert!(
                leaks.is_empty(),
                "cell value {needle:?} in spans: {leaks:#?}"
            );
        }
    }
    let id_leaks: Vec<&CollectedSpan> = spans
        .iter()
        .filter(|s| s.attributes.values().any(|v| ids.contains(v)))
        .collect();
    assert!(
        id_leaks.is_empty(),
        "a key value as an attribute: {id_leaks:#?}"
    );
}
