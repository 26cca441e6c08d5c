//! Metric names (the only place they are spelled), their definitions, and typed handles per stage so
//! services never invent a name or an unbounded label.
//!
//! Naming: `cdc_<stage>_<what>_<unit>`, base units (`_seconds`, `_bytes`), counters end in `_total`.
//! Labels are bounded: `destination`, `stage`, `table`, `op`, `error_class`, `result`, `partition`,
//! `strategy` — never keys, values or messages. Sink metrics carry `destination` as a constant label.

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::error::{Error, ErrorClass};

/// Metric names.
pub mod names {
    // capture
    /// Commit-log segments fully read.
    pub const CAPTURE_SEGMENTS_READ_TOTAL: &str = "cdc_capture_segments_read_total";
    /// Mutations decoded from segments.
    pub const CAPTURE_MUTATIONS_READ_TOTAL: &str = "cdc_capture_mutations_read_total";
    /// Segment bytes read.
    pub const CAPTURE_BYTES_READ_TOTAL: &str = "cdc_capture_bytes_read_total";
    /// Change events produced, by `table` and `op`.
    pub const CAPTURE_EVENTS_TOTAL: &str = "cdc_capture_events_total";
    /// Now minus the writetime of the newest committed event.
    pub const CAPTURE_LAG_SECONDS: &str = "cdc_capture_lag_seconds";
    /// Bytes used in `cdc_raw`.
    pub const CAPTURE_CDC_RAW_BYTES: &str = "cdc_capture_cdc_raw_bytes";
    /// `cdc_raw` bytes over `cdc_total_space` (Cassandra rejects writes at 1.0).
    pub const CAPTURE_CDC_RAW_FILL_RATIO: &str = "cdc_capture_cdc_raw_fill_ratio";
    /// Segments in `cdc_raw` not yet fully committed.
    pub const CAPTURE_SEGMENTS_PENDING: &str = "cdc_capture_segments_pending";
    /// Mutations that could not be parsed.
    pub const CAPTURE_PARSE_ERRORS_TOTAL: &str = "cdc_capture_parse_errors_total";
    /// Kafka transactions, by `result` (`committed`, `aborted`).
    pub const CAPTURE_TRANSACTIONS_TOTAL: &str = "cdc_capture_transactions_total";
    /// Capture errors, by `error_class` (skipped mutations: `poison`; failed transactions:
    /// their class).
    pub const CAPTURE_ERRORS_TOTAL: &str = "cdc_capture_errors_total";

    // masker
    /// Events processed, by `table` and `result` (`masked`, `dlq`).
    pub const MASKER_EVENTS_TOTAL: &str = "cdc_masker_events_total";
    /// Fields masked, by `strategy`.
    pub const MASKER_MASKED_FIELDS_TOTAL: &str = "cdc_masker_masked_fields_total";
    /// Kafka transactions, by `result`.
    pub const MASKER_TRANSACTIONS_TOTAL: &str = "cdc_masker_transactions_total";
    /// Events sent to the masker DLQ.
    pub const MASKER_DLQ_EVENTS_TOTAL: &str = "cdc_masker_dlq_events_total";
    /// Time to mask one batch.
    pub const MASKER_PROCESSING_SECONDS: &str = "cdc_masker_processing_seconds";
    /// Version of the policy in force.
    pub const MASKER_POLICY_VERSION: &str = "cdc_masker_policy_version";
    /// Raw events not yet consumed (high watermark minus position).
    pub const MASKER_BACKLOG_EVENTS: &str = "cdc_masker_backlog_events";
    /// Now minus the source writetime of the newest masked event.
    pub const MASKER_LAG_SECONDS: &str = "cdc_masker_lag_seconds";
    /// Masker errors, by `error_class` (dead-lettered events: `poison`; failed batches: their
    /// class).
    pub const MASKER_ERRORS_TOTAL: &str = "cdc_masker_errors_total";

    // sinks (all with `destination`)
    /// Rows written, by `table` and `op`.
    pub const SINK_ROWS_WRITTEN_TOTAL: &str = "cdc_sink_rows_written_total";
    /// Time of one atomic batch write (rows + offsets).
    pub const SINK_BATCH_WRITE_SECONDS: &str = "cdc_sink_batch_write_seconds";
    /// Write errors, by `error_class`.
    pub const SINK_ERRORS_TOTAL: &str = "cdc_sink_errors_total";
    /// Batch write retries.
    pub const SINK_RETRIES_TOTAL: &str = "cdc_sink_retries_total";
    /// Events sent to the sink DLQ.
    pub const SINK_DLQ_EVENTS_TOTAL: &str = "cdc_sink_dlq_events_total";
    /// High watermark minus stored offset, by `partition` (summed over the topics). Offsets count
    /// transaction commit markers too: a caught-up partition reads 1 after a transaction.
    pub const SINK_BACKLOG_EVENTS: &str = "cdc_sink_backlog_events";
    /// Now minus the source writetime of the newest committed event.
    pub const SINK_LAG_SECONDS: &str = "cdc_sink_lag_seconds";
    /// Source writetime to destination commit, per event.
    pub const SINK_END_TO_END_LATENCY_SECONDS: &str = "cdc_sink_end_to_end_latency_seconds";
    /// Payload bytes written.
    pub const SINK_BYTES_WRITTEN_TOTAL: &str = "cdc_sink_bytes_written_total";
    /// 1 when the destination is reachable, 0 otherwise.
    pub const SINK_DESTINATION_UP: &str = "cdc_sink_destination_up";

    // kafka (by `stage`)
    /// Time to commit one Kafka transaction.
    pub const KAFKA_TRANSACTION_COMMIT_SECONDS: &str = "cdc_kafka_transaction_commit_seconds";
    /// Consumer group rebalances.
    pub const KAFKA_REBALANCES_TOTAL: &str = "cdc_kafka_rebalances_total";
}

/// Label names; the only labels metrics may carry.
pub mod labels {
    /// Sink destination (`postgres`, `clickhouse`, `timescaledb`).
    pub const DESTINATION: &str = "destination";
    /// Pipeline stage (`capture`, `masker`, `sink-postgres`, ...).
    pub const STAGE: &str = "stage";
    /// `keyspace.table`.
    pub const TABLE: &str = "table";
    /// Change operation (`insert`, `update`, `delete`, ...).
    pub const OP: &str = "op";
    /// `retriable`, `poison`, `fatal`.
    pub const ERROR_CLASS: &str = "error_class";
    /// Outcome (`committed`, `aborted`, `masked`, `dlq`).
    pub const RESULT: &str = "result";
    /// Kafka partition number.
    pub const PARTITION: &str = "partition";
    /// Masking strategy (`hash`, `tokenize`, `passthrough`, `redact`, `partial`).
    pub const STRATEGY: &str = "strategy";
    /// Every allowed label.
    pub const ALL: &[&str] = &[
        DESTINATION,
        STAGE,
        TABLE,
        OP,
        ERROR_CLASS,
        RESULT,
        PARTITION,
        STRATEGY,
    ];
}

/// Outcome label values.
pub mod results {
    /// A committed Kafka transaction.
    pub const COMMITTED: &str = "committed";
    /// An aborted Kafka transaction.
    pub const ABORTED: &str = "aborted";
    /// An event masked and forwarded.
    pub const MASKED: &str = "masked";
    /// An event dead-lettered.
    pub const DLQ: &str = "dlq";
}

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic counter (`_total`).
    Counter,
    /// Value that goes up and down.
    Gauge,
    /// Distribution over buckets.
    Histogram,
}

/// A metric's name, type, help text and labels (including constant labels).
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// Full name.
    pub name: &'static str,
    /// Type.
    pub kind: MetricKind,
    /// Help text.
    pub help: &'static str,
    /// Label names.
    pub labels: &'static [&'static str],
}

use labels as l;
use names as n;

const fn def(
    name: &'static str,
    kind: MetricKind,
    help: &'static str,
    labels: &'static [&'static str],
) -> MetricDef {
    MetricDef {
        name,
        kind,
        help,
        labels,
    }
}

/// Every metric the pipeline exports.
pub const ALL: &[MetricDef] = &[
    def(
        n::CAPTURE_SEGMENTS_READ_TOTAL,
        MetricKind::Counter,
        "Commit-log segments fully read.",
        &[],
    ),
    def(
        n::CAPTURE_MUTATIONS_READ_TOTAL,
        MetricKind::Counter,
        "Mutations decoded from commit-log segments.",
        &[],
    ),
    def(
        n::CAPTURE_BYTES_READ_TOTAL,
        MetricKind::Counter,
        "Commit-log segment bytes read.",
        &[],
    ),
    def(
        n::CAPTURE_EVENTS_TOTAL,
        MetricKind::Counter,
        "Change events produced.",
        &[l::TABLE, l::OP],
    ),
    def(
        n::CAPTURE_LAG_SECONDS,
        MetricKind::Gauge,
        "Seconds between now and the writetime of the newest committed event.",
        &[],
    ),
    def(
        n::CAPTURE_CDC_RAW_BYTES,
        MetricKind::Gauge,
        "Bytes used in the cdc_raw directory.",
        &[],
    ),
    def(
        n::CAPTURE_CDC_RAW_FILL_RATIO,
        MetricKind::Gauge,
        "cdc_raw bytes over cdc_total_space; Cassandra rejects writes at 1.",
        &[],
    ),
    def(
        n::CAPTURE_SEGMENTS_PENDING,
        MetricKind::Gauge,
        "Segments in cdc_raw not yet fully committed.",
        &[],
    ),
    def(
        n::CAPTURE_PARSE_ERRORS_TOTAL,
        MetricKind::Counter,
        "Mutations that could not be parsed.",
        &[],
    ),
    def(
        n::CAPTURE_TRANSACTIONS_TOTAL,
        MetricKind::Counter,
        "Kafka transactions of the capture stage.",
        &[l::RESULT],
    ),
    def(
        n::CAPTURE_ERRORS_TOTAL,
        MetricKind::Counter,
        "Capture errors by class.",
        &[l::ERROR_CLASS],
    ),
    def(
        n::MASKER_EVENTS_TOTAL,
        MetricKind::Counter,
        "Events processed by the masker.",
        &[l::TABLE, l::RESULT],
    ),
    def(
        n::MASKER_MASKED_FIELDS_TOTAL,
        MetricKind::Counter,
        "Fields masked.",
        &[l::STRATEGY],
    ),
    def(
        n::MASKER_TRANSACTIONS_TOTAL,
        MetricKind::Counter,
        "Kafka transactions of the masker.",
        &[l::RESULT],
    ),
    def(
        n::MASKER_DLQ_EVENTS_TOTAL,
        MetricKind::Counter,
        "Events sent to the masker dead-letter topic.",
        &[],
    ),
    def(
        n::MASKER_PROCESSING_SECONDS,
        MetricKind::Histogram,
        "Time to mask one batch.",
        &[],
    ),
    def(
        n::MASKER_POLICY_VERSION,
        MetricKind::Gauge,
        "Version of the masking policy in force.",
        &[],
    ),
    def(
        n::MASKER_BACKLOG_EVENTS,
        MetricKind::Gauge,
        "Raw events not yet consumed by the masker.",
        &[],
    ),
    def(
        n::MASKER_LAG_SECONDS,
        MetricKind::Gauge,
        "Seconds between now and the source writetime of the newest masked event.",
        &[],
    ),
    def(
        n::MASKER_ERRORS_TOTAL,
        MetricKind::Counter,
        "Masker errors by class.",
        &[l::ERROR_CLASS],
    ),
    def(
        n::SINK_ROWS_WRITTEN_TOTAL,
        MetricKind::Counter,
        "Rows written to the destination.",
        &[l::DESTINATION, l::TABLE, l::OP],
    ),
    def(
        n::SINK_BATCH_WRITE_SECONDS,
        MetricKind::Histogram,
        "Time of one atomic batch write.",
        &[l::DESTINATION],
    ),
    def(
        n::SINK_ERRORS_TOTAL,
        MetricKind::Counter,
        "Destination write errors.",
        &[l::DESTINATION, l::ERROR_CLASS],
    ),
    def(
        n::SINK_RETRIES_TOTAL,
        MetricKind::Counter,
        "Batch write retries.",
        &[l::DESTINATION],
    ),
    def(
        n::SINK_DLQ_EVENTS_TOTAL,
        MetricKind::Counter,
        "Events sent to the sink dead-letter topic.",
        &[l::DESTINATION],
    ),
    def(
        n::SINK_BACKLOG_EVENTS,
        MetricKind::Gauge,
        "High watermark minus stored offset.",
        &[l::DESTINATION, l::PARTITION],
    ),
    def(
        n::SINK_LAG_SECONDS,
        MetricKind::Gauge,
        "Seconds between now and the source writetime of the newest committed event.",
        &[l::DESTINATION],
    ),
    def(
        n::SINK_END_TO_END_LATENCY_SECONDS,
        MetricKind::Histogram,
        "Source writetime to destination commit.",
        &[l::DESTINATION],
    ),
    def(
        n::SINK_BYTES_WRITTEN_TOTAL,
        MetricKind::Counter,
        "Payload bytes written to the destination.",
        &[l::DESTINATION],
    ),
    def(
        n::SINK_DESTINATION_UP,
        MetricKind::Gauge,
        "1 when the destination is reachable, else 0.",
        &[l::DESTINATION],
    ),
    def(
        n::KAFKA_TRANSACTION_COMMIT_SECONDS,
        MetricKind::Histogram,
        "Time to commit one Kafka transaction.",
        &[l::STAGE],
    ),
    def(
        n::KAFKA_REBALANCES_TOTAL,
        MetricKind::Counter,
        "Consumer group rebalances.",
        &[l::STAGE],
    ),
];

/// Buckets for latencies from 1 ms to 60 s (end-to-end latency, batch writes, commits).
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];
/// Buckets for in-process work from 100 µs to 10 s (masking a batch).
pub const PROCESSING_BUCKETS_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A registry with no prefix; every service exposes exactly one on `/metrics`.
pub fn new_registry() -> Registry {
    Registry::new()
}

/// Encodes everything in `registry` in the Prometheus text exposition format.
pub fn encode_text(registry: &Registry) -> Result<String, Error> {
    TextEncoder::new()
        .encode_to_string(&registry.gather())
        .map_err(Error::MetricEncoding)
}

fn lookup(name: &'static str) -> &'static MetricDef {
    // Every caller passes a constant from `names`, all of which are in `ALL` (tested).
    ALL.iter().find(|d| d.name == name).unwrap_or(&ALL[0])
}

/// Builds and registers metrics; `const_labels` are bound (e.g. `destination`).
struct Builder<'a> {
    registry: &'a Registry,
    const_labels: Vec<(&'static str, String)>,
}

impl Builder<'_> {
    fn opts(&self, def: &MetricDef) -> Opts {
        let mut opts = Opts::new(def.name, def.help);
        for (k, v) in &self.const_labels {
            opts = opts.const_label(*k, v.clone());
        }
        opts
    }

    fn variable_labels(&self, def: &MetricDef) -> Vec<&'static str> {
        def.labels
            .iter()
            .copied()
            .filter(|l| !self.const_labels.iter().any(|(k, _)| k == l))
            .collect()
    }

    fn register<C: prometheus::core::Collector + Clone + 'static>(
        &self,
        name: &'static str,
        c: C,
    ) -> Result<C, Error> {
        self.registry
            .register(Box::new(c.clone()))
            .map_err(|source| Error::MetricRegistration { name, source })?;
        Ok(c)
    }

    fn counter(&self, name: &'static str) -> Result<IntCounter, Error> {
        let def = lookup(name);
        let c = IntCounter::with_opts(self.opts(def))
            .map_err(|source| Error::MetricRegistration { name, source })?;
        self.register(name, c)
    }

    fn counter_vec(&self, name: &'static str) -> Result<IntCounterVec, Error> {
        let def = lookup(name);
        let c = IntCounterVec::new(self.opts(def), &self.variable_labels(def))
            .map_err(|source| Error::MetricRegistration { name, source })?;
        self.register(name, c)
    }

    fn gauge(&self, name: &'static str) -> Result<Gauge, Error> {
        let def = lookup(name);
        let g = Gauge::with_opts(self.opts(def))
            .map_err(|source| Error::MetricRegistration { name, source })?;
        self.register(name, g)
    }

    fn int_gauge(&self, name: &'static str) -> Result<IntGauge, Error> {
        let def = lookup(name);
        let g = IntGauge::with_opts(self.opts(def))
            .map_err(|source| Error::MetricRegistration { name, source })?;
        self.register(name, g)
    }

    fn int_gauge_vec(&self, name: &'static str) -> Result<IntGaugeVec, Error> {
        let def = lookup(name);
        let g = IntGaugeVec::new(self.opts(def), &self.variable_labels(def))
            .map_err(|source| Error::MetricRegistration { name, source })?;
        self.register(name, g)
    }

    fn histogram(&self, name: &'static str, buckets: &[f64]) -> Result<Histogram, Error> {
        let def = lookup(name);
        let opts = HistogramOpts::from(self.opts(def)).buckets(buckets.to_vec());
        let h = Histogram::with_opts(opts)
            .map_err(|source| Error::MetricRegistration { name, source })?;
        self.register(name, h)
    }
}

/// A counter vector by `error_class` with every class present at 0, so a rate over it exists
/// before the first error.
fn errors_by_class(b: &Builder<'_>, name: &'static str) -> Result<IntCounterVec, Error> {
    let v = b.counter_vec(name)?;
    for class in [ErrorClass::Retriable, ErrorClass::Poison, ErrorClass::Fatal] {
        v.with_label_values(&[class.as_str()]);
    }
    Ok(v)
}

/// Capture-stage metrics.
#[derive(Clone, Debug)]
pub struct CaptureMetrics {
    /// `cdc_capture_segments_read_total`.
    pub segments_read: IntCounter,
    /// `cdc_capture_mutations_read_total`.
    pub mutations_read: IntCounter,
    /// `cdc_capture_bytes_read_total`.
    pub bytes_read: IntCounter,
    events: IntCounterVec,
    /// `cdc_capture_lag_seconds`.
    pub lag_seconds: Gauge,
    /// `cdc_capture_cdc_raw_bytes`.
    pub cdc_raw_bytes: IntGauge,
    /// `cdc_capture_cdc_raw_fill_ratio`.
    pub cdc_raw_fill_ratio: Gauge,
    /// `cdc_capture_segments_pending`.
    pub segments_pending: IntGauge,
    /// `cdc_capture_parse_errors_total`.
    pub parse_errors: IntCounter,
    /// `cdc_capture_transactions_total{result="committed"}`.
    pub transactions_committed: IntCounter,
    /// `cdc_capture_transactions_total{result="aborted"}`.
    pub transactions_aborted: IntCounter,
    errors: IntCounterVec,
    /// `cdc_kafka_*{stage="capture"}`.
    pub kafka: KafkaMetrics,
}

impl CaptureMetrics {
    /// Registers the capture metrics in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, Error> {
        let b = Builder {
            registry,
            const_labels: Vec::new(),
        };
        let transactions = b.counter_vec(n::CAPTURE_TRANSACTIONS_TOTAL)?;
        Ok(CaptureMetrics {
            segments_read: b.counter(n::CAPTURE_SEGMENTS_READ_TOTAL)?,
            mutations_read: b.counter(n::CAPTURE_MUTATIONS_READ_TOTAL)?,
            bytes_read: b.counter(n::CAPTURE_BYTES_READ_TOTAL)?,
            events: b.counter_vec(n::CAPTURE_EVENTS_TOTAL)?,
            lag_seconds: b.gauge(n::CAPTURE_LAG_SECONDS)?,
            cdc_raw_bytes: b.int_gauge(n::CAPTURE_CDC_RAW_BYTES)?,
            cdc_raw_fill_ratio: b.gauge(n::CAPTURE_CDC_RAW_FILL_RATIO)?,
            segments_pending: b.int_gauge(n::CAPTURE_SEGMENTS_PENDING)?,
            parse_errors: b.counter(n::CAPTURE_PARSE_ERRORS_TOTAL)?,
            transactions_committed: transactions.with_label_values(&[results::COMMITTED]),
            transactions_aborted: transactions.with_label_values(&[results::ABORTED]),
            errors: errors_by_class(&b, n::CAPTURE_ERRORS_TOTAL)?,
            kafka: KafkaMetrics::new(registry, "capture")?,
        })
    }

    /// `cdc_capture_events_total{table, op}`; `table` is `keyspace.table`.
    pub fn events(&self, table: &str, op: &str) -> IntCounter {
        self.events.with_label_values(&[table, op])
    }

    /// `cdc_capture_errors_total{error_class}`.
    pub fn errors(&self, class: ErrorClass) -> IntCounter {
        self.errors.with_label_values(&[class.as_str()])
    }
}

/// Masker-stage metrics.
#[derive(Clone, Debug)]
pub struct MaskerMetrics {
    events: IntCounterVec,
    masked_fields: IntCounterVec,
    /// `cdc_masker_transactions_total{result="committed"}`.
    pub transactions_committed: IntCounter,
    /// `cdc_masker_transactions_total{result="aborted"}`.
    pub transactions_aborted: IntCounter,
    /// `cdc_masker_dlq_events_total`.
    pub dlq_events: IntCounter,
    /// `cdc_masker_processing_seconds`.
    pub processing_seconds: Histogram,
    /// `cdc_masker_policy_version`.
    pub policy_version: IntGauge,
    /// `cdc_masker_backlog_events`.
    pub backlog_events: IntGauge,
    /// `cdc_masker_lag_seconds`.
    pub lag_seconds: Gauge,
    errors: IntCounterVec,
    /// `cdc_kafka_*{stage="masker"}`.
    pub kafka: KafkaMetrics,
}

impl MaskerMetrics {
    /// Registers the masker metrics in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, Error> {
        let b = Builder {
            registry,
            const_labels: Vec::new(),
        };
        let transactions = b.counter_vec(n::MASKER_TRANSACTIONS_TOTAL)?;
        Ok(MaskerMetrics {
            events: b.counter_vec(n::MASKER_EVENTS_TOTAL)?,
            masked_fields: b.counter_vec(n::MASKER_MASKED_FIELDS_TOTAL)?,
            transactions_committed: transactions.with_label_values(&[results::COMMITTED]),
            transactions_aborted: transactions.with_label_values(&[results::ABORTED]),
            dlq_events: b.counter(n::MASKER_DLQ_EVENTS_TOTAL)?,
            processing_seconds: b
                .histogram(n::MASKER_PROCESSING_SECONDS, PROCESSING_BUCKETS_SECONDS)?,
            policy_version: b.int_gauge(n::MASKER_POLICY_VERSION)?,
            backlog_events: b.int_gauge(n::MASKER_BACKLOG_EVENTS)?,
            lag_seconds: b.gauge(n::MASKER_LAG_SECONDS)?,
            errors: errors_by_class(&b, n::MASKER_ERRORS_TOTAL)?,
            kafka: KafkaMetrics::new(registry, "masker")?,
        })
    }

    /// `cdc_masker_errors_total{error_class}`.
    pub fn errors(&self, class: ErrorClass) -> IntCounter {
        self.errors.with_label_values(&[class.as_str()])
    }

    /// `cdc_masker_events_total{table, result}`; `result` is `results::MASKED` or `results::DLQ`.
    pub fn events(&self, table: &str, result: &str) -> IntCounter {
        self.events.with_label_values(&[table, result])
    }

    /// `cdc_masker_masked_fields_total{strategy}`.
    pub fn masked_fields(&self, strategy: &str) -> IntCounter {
        self.masked_fields.with_label_values(&[strategy])
    }
}

/// Sink metrics with `destination` bound. Several destinations may share one registry.
#[derive(Clone, Debug)]
pub struct SinkMetrics {
    destination: String,
    rows_written: IntCounterVec,
    /// `cdc_sink_batch_write_seconds`.
    pub batch_write_seconds: Histogram,
    errors: IntCounterVec,
    /// `cdc_sink_retries_total`.
    pub retries: IntCounter,
    /// `cdc_sink_dlq_events_total`.
    pub dlq_events: IntCounter,
    backlog_events: IntGaugeVec,
    /// `cdc_sink_lag_seconds`.
    pub lag_seconds: Gauge,
    /// `cdc_sink_end_to_end_latency_seconds`.
    pub end_to_end_latency_seconds: Histogram,
    /// `cdc_sink_bytes_written_total`.
    pub bytes_written: IntCounter,
    /// `cdc_sink_destination_up`.
    pub destination_up: IntGauge,
    /// `cdc_kafka_*{stage="sink-<destination>"}`.
    pub kafka: KafkaMetrics,
}

impl SinkMetrics {
    /// Registers the sink metrics for `destination` (`postgres`, `clickhouse`, `timescaledb`).
    pub fn new(registry: &Registry, destination: &str) -> Result<Self, Error> {
        let b = Builder {
            registry,
            const_labels: vec![(l::DESTINATION, destination.to_owned())],
        };
        Ok(SinkMetrics {
            destination: destination.to_owned(),
            rows_written: b.counter_vec(n::SINK_ROWS_WRITTEN_TOTAL)?,
            batch_write_seconds: b
                .histogram(n::SINK_BATCH_WRITE_SECONDS, LATENCY_BUCKETS_SECONDS)?,
            errors: errors_by_class(&b, n::SINK_ERRORS_TOTAL)?,
            retries: b.counter(n::SINK_RETRIES_TOTAL)?,
            dlq_events: b.counter(n::SINK_DLQ_EVENTS_TOTAL)?,
            backlog_events: b.int_gauge_vec(n::SINK_BACKLOG_EVENTS)?,
            lag_seconds: b.gauge(n::SINK_LAG_SECONDS)?,
            end_to_end_latency_seconds: b
                .histogram(n::SINK_END_TO_END_LATENCY_SECONDS, LATENCY_BUCKETS_SECONDS)?,
            bytes_written: b.counter(n::SINK_BYTES_WRITTEN_TOTAL)?,
            destination_up: b.int_gauge(n::SINK_DESTINATION_UP)?,
            kafka: KafkaMetrics::new(registry, &format!("sink-{destination}"))?,
        })
    }

    /// The bound destination.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// `cdc_sink_rows_written_total{table, op}`.
    pub fn rows_written(&self, table: &str, op: &str) -> IntCounter {
        self.rows_written.with_label_values(&[table, op])
    }

    /// `cdc_sink_errors_total{error_class}`.
    pub fn errors(&self, class: ErrorClass) -> IntCounter {
        self.errors.with_label_values(&[class.as_str()])
    }

    /// `cdc_sink_backlog_events{partition}`.
    pub fn backlog_events(&self, partition: i32) -> IntGauge {
        self.backlog_events
            .with_label_values(&[&partition.to_string()])
    }
}

/// Kafka client metrics with `stage` bound.
#[derive(Clone, Debug)]
pub struct KafkaMetrics {
    /// `cdc_kafka_transaction_commit_seconds`.
    pub transaction_commit_seconds: Histogram,
    /// `cdc_kafka_rebalances_total`.
    pub rebalances: IntCounter,
}

impl KafkaMetrics {
    /// Registers the Kafka metrics for `stage` (`capture`, `masker`, `sink-postgres`, ...).
    pub fn new(registry: &Registry, stage: &str) -> Result<Self, Error> {
        let b = Builder {
            registry,
            const_labels: vec![(l::STAGE, stage.to_owned())],
        };
        Ok(KafkaMetrics {
            transaction_commit_seconds: b
                .histogram(n::KAFKA_TRANSACTION_COMMIT_SECONDS, LATENCY_BUCKETS_SECONDS)?,
            rebalances: b.counter(n::KAFKA_REBALANCES_TOTAL)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use regex::Regex;

    use super::*;

    #[test]
    fn names_follow_the_rules() {
        let pattern = Regex::new(r"^cdc_(capture|masker|sink|kafka)_[a-z0-9_]+$").expect("regex");
        let mut seen = BTreeSet::new();
        for def in ALL {
            assert!(pattern.is_match(def.name), "{}", def.name);
            assert!(seen.insert(def.name), "duplicate {}", def.name);
            match def.kind {
                MetricKind::Counter => assert!(
                    def.name.ends_with("_total"),
                    "counter {} must end in _total",
                    def.name
                ),
                MetricKind::Gauge | MetricKind::Histogram => {
                    assert!(
                        !def.name.ends_with("_total"),
                        "{} is not a counter",
                        def.name
                    )
                }
            }
            if def.kind == MetricKind::Histogram {
                assert!(
                    def.name.ends_with("_seconds") || def.name.ends_with("_bytes"),
                    "{} needs a base unit",
                    def.name
                );
            }
            for label in def.labels {
                assert!(
                    labels::ALL.contains(label),
                    "{} has unbounded label {label}",
                    def.name
                );
            }
            if def.name.starts_with("cdc_sink_") {
                assert!(
                    def.labels.contains(&labels::DESTINATION),
                    "{} lacks destination",
                    def.name
                );
            }
            assert!(!def.help.is_empty());
        }
    }
}

#[cfg(test)]
mod registry_tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn every_name_constant_is_defined() {
        let source = include_str!("metrics.rs");
        let names_mod = source
            .split("pub mod names {")
            .nth(1)
            .and_then(|s| s.split("\n}\n").next())
            .expect("names module");
        let consts: Vec<&str> = names_mod
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub const "))
            .filter_map(|l| l.split('"').nth(1))
            .collect();
        assert!(consts.len() >= 30, "found only {}", consts.len());
        for name in consts {
            assert!(ALL.iter().any(|d| d.name == name), "{name} is not in ALL");
        }
    }

    #[test]
    fn typed_handles_register_every_metric_with_its_kind() {
        let registry = new_registry();
        let capture = CaptureMetrics::new(&registry).expect("capture");
        let masker = MaskerMetrics::new(&registry).expect("masker");
        let pg = SinkMetrics::new(&registry, "postgres").expect("postgres");
        let ch = SinkMetrics::new(&registry, "clickhouse")
            .expect("second destination in the same registry");
        let kafka = KafkaMetrics::new(&registry, "test-stage").expect("kafka");
        assert!(matches!(
            SinkMetrics::new(&registry, "postgres"),
            Err(Error::MetricRegistration { .. })
        ));

        capture.events("shop.orders", "insert").inc();
        masker.events("shop.orders", results::MASKED).inc();
        masker.masked_fields("hash").inc_by(3);
        pg.rows_written("shop.orders", "insert").inc_by(10);
        pg.errors(ErrorClass::Retriable).inc();
        pg.backlog_events(3).set(42);
        ch.end_to_end_latency_seconds.observe(0.2);
        kafka.rebalances.inc();
        capture.kafka.transaction_commit_seconds.observe(0.01);
        masker.kafka.rebalances.inc();

        let families: BTreeMap<String, prometheus::proto::MetricType> = registry
            .gather()
            .into_iter()
            .map(|f| (f.name().to_owned(), f.get_field_type()))
            .collect();
        for def in ALL {
            let kind = families
                .get(def.name)
                .unwrap_or_else(|| panic!("{} not exported", def.name));
            let expected = match def.kind {
                MetricKind::Counter => prometheus::proto::MetricType::COUNTER,
                MetricKind::Gauge => prometheus::proto::MetricType::GAUGE,
                MetricKind::Histogram => prometheus::proto::MetricType::HISTOGRAM,
            };
            assert_eq!(*kind, expected, "{}", def.name);
        }

        let text = encode_text(&registry).expect("encode");
        assert!(text.contains(r#"cdc_sink_rows_written_total{destination="postgres",op="insert",table="shop.orders"} 10"#), "{text}");
        assert!(
            text.contains(
                r#"cdc_sink_errors_total{destination="postgres",error_class="retriable"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"cdc_sink_backlog_events{destination="postgres",partition="3"} 42"#),
            "{text}"
        );
        assert!(text.contains(r#"cdc_sink_end_to_end_latency_seconds_bucket{destination="clickhouse",le="0.25"} 1"#), "{text}");
        assert!(
            text.contains(r#"cdc_capture_transactions_total{result="committed"} 0"#),
            "{text}"
        );
        // Every error class is exported at 0 before the first error (rates and "flat" checks).
        for series in [
            r#"cdc_sink_errors_total{destination="clickhouse",error_class="retriable"} 0"#,
            r#"cdc_sink_errors_total{destination="postgres",error_class="poison"} 0"#,
            r#"cdc_capture_errors_total{error_class="fatal"} 0"#,
            r#"cdc_masker_errors_total{error_class="poison"} 0"#,
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
        for series in [
            r#"cdc_kafka_rebalances_total{stage="masker"} 1"#,
            r#"cdc_kafka_rebalances_total{stage="test-stage"} 1"#,
            r#"cdc_kafka_rebalances_total{stage="sink-clickhouse"} 0"#,
            r#"cdc_kafka_transaction_commit_seconds_count{stage="capture"} 1"#,
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
        capture.errors(ErrorClass::Poison).inc();
        masker.errors(ErrorClass::Retriable).inc_by(2);
        let text = encode_text(&registry).expect("encode");
        assert!(
            text.contains(r#"cdc_capture_errors_total{error_class="poison"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"cdc_masker_errors_total{error_class="retriable"} 2"#),
            "{text}"
        );
    }
}
