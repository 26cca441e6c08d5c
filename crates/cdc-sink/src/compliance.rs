//! The shared compliance suite every destination adapter must pass (STYLE §12), against the
//! running local stack. An adapter's integration test calls [`run_all`] with a factory for its
//! destination and an [`Inspector`] reading the live relation back.
//!
//! The suite produces JSON envelopes itself on a fresh `cdc.masked.<ks>.<t>` topic (3 partitions)
//! for the table `(id int PRIMARY KEY, name text, score bigint)`, runs the [`SinkRunner`]
//! in-process and checks: 1,000 inserts → 1,000 rows; 500 updates; 200 deletes; rapid changes to
//! one key → final state; out-of-order writetimes → Cassandra's answer; a replay of every event
//! writes nothing twice; offsets stored with the rows (a restarted sink resumes at the end);
//! a poison event is dead-lettered with its context while later events flow; the required metrics
//! are emitted with the `destination` label.
//!
//! Not for production code paths: it panics on failed expectations, as tests do.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cdc_kafka::{
    ConsumerSettings, IdempotentProducer, KafkaSettings, ProducerSettings, ReadCommittedConsumer,
    StartOffset, TopicAdmin, TopicPartition,
};
use cdc_model::{
    CellChange, CellValue, ChangeEvent, ColumnKind, ColumnSchema, CqlType, CqlValue, DeadLetter,
    Deletion, DeletionScope, KeyColumn, Liveness, Operation, SourceInfo, TableSchema, json_codec,
};
use cdc_telemetry::{HealthState, SinkMetrics};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::destination::Destination;
use crate::error::Error;
use crate::runner::{RunnerConfig, SinkRunner};

/// A live row of the compliance table: `name`, `score`.
pub type Row = (Option<String>, Option<i64>);

/// Reads the destination back.
#[async_trait]
pub trait Inspector: Send + Sync {
    /// The live rows of `keyspace.table` (the user-facing relation), by `id`.
    async fn live_rows(&self, keyspace: &str, table: &str) -> Result<BTreeMap<i32, Row>, String>;
    /// Rows in the change-history relation, when the destination keeps one (TimescaleDB).
    async fn change_count(&self, _keyspace: &str, _table: &str) -> Result<Option<u64>, String> {
        Ok(None)
    }
    /// The offset stored for `(group, topic, partition)`.
    async fn stored_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, String>;
}

/// Where the stack is and how an adapter spells a value it must reject.
#[derive(Debug, Clone)]
pub struct ComplianceEnv {
    pub kafka_bootstrap: String,
    /// A `name` (text) value this destination rejects as poison; `None` skips the DLQ case.
    pub poison_name: Option<String>,
}

fn unique(prefix: &str) -> String {
    let id = Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// The compliance table's schema.
pub fn schema(keyspace: &str, table: &str) -> TableSchema {
    TableSchema {
        keyspace: keyspace.to_owned(),
        table: table.to_owned(),
        id: Uuid::from_u128(0x5eed),
        cdc: true,
        version: 1,
        columns: vec![
            ColumnSchema {
                name: "id".into(),
                cql_type: CqlType::Int,
                kind: ColumnKind::PartitionKey { position: 0 },
            },
            ColumnSchema {
                name: "name".into(),
                cql_type: CqlType::Text,
                kind: ColumnKind::Regular,
            },
            ColumnSchema {
                name: "score".into(),
                cql_type: CqlType::Bigint,
                kind: ColumnKind::Regular,
            },
        ],
        dropped_columns: Vec::new(),
    }
}

/// Builds events for one table.
#[derive(Debug, Clone)]
pub struct EventFactory {
    pub keyspace: String,
    pub table: String,
    seq: u32,
}

impl EventFactory {
    pub fn new(keyspace: &str, table: &str) -> Self {
        EventFactory {
            keyspace: keyspace.to_owned(),
            table: table.to_owned(),
            seq: 0,
        }
    }

    fn base(&mut self, id: i32, op: Operation) -> ChangeEvent {
        self.seq += 1;
        let source = SourceInfo {
            cluster: "compliance".into(),
            host_id: Uuid::from_u128(1),
            keyspace: self.keyspace.clone(),
            table: self.table.clone(),
            table_id: Uuid::from_u128(0x5eed),
            schema_version: 1,
            segment_id: 1,
            segment_position: self.seq,
            index: 0,
        };
        ChangeEvent {
            correlation_id: source.correlation_id(),
            source,
            op,
            partition_key: vec![KeyColumn::new("id", CqlValue::Int(id))],
            clustering_key: Vec::new(),
            is_static: false,
            liveness: None,
            deletion: None,
            cells: Vec::new(),
            captured_at_ms: 0,
        }
    }

    fn cell(column: &str, wt: i64, value: Option<CqlValue>) -> CellChange {
        CellChange {
            column: column.into(),
            writetime_micros: wt,
            ttl: None,
            change: match value {
                Some(value) => CellValue::Set { value },
                None => CellValue::Tombstone,
            },
        }
    }

    /// `INSERT INTO t (id, name, score) VALUES (…) USING TIMESTAMP wt`.
    pub fn insert(&mut self, id: i32, name: &str, score: i64, wt: i64) -> ChangeEvent {
        let mut e = self.base(id, Operation::Insert);
        e.liveness = Some(Liveness {
            writetime_micros: wt,
            ttl: None,
        });
        e.cells = vec![
            Self::cell("name", wt, Some(CqlValue::Text(name.into()))),
            Self::cell("score", wt, Some(CqlValue::Bigint(score))),
        ];
        e
    }

    /// `UPDATE t USING TIMESTAMP wt SET score = … WHERE id = …`.
    pub fn update_score(&mut self, id: i32, score: i64, wt: i64) -> ChangeEvent {
        let mut e = self.base(id, Operation::Update);
        e.cells = vec![Self::cell("score", wt, Some(CqlValue::Bigint(score)))];
        e
    }

    /// `UPDATE t USING TIMESTAMP wt SET name = … WHERE id = …`.
    pub fn update_name(&mut self, id: i32, name: &str, wt: i64) -> ChangeEvent {
        let mut e = self.base(id, Operation::Update);
        e.cells = vec![Self::cell("name", wt, Some(CqlValue::Text(name.into())))];
        e
    }

    /// `DELETE name FROM t USING TIMESTAMP wt WHERE id = …`.
    pub fn delete_name(&mut self, id: i32, wt: i64) -> ChangeEvent {
        let mut e = self.base(id, Operation::Update);
        e.cells = vec![Self::cell("name", wt, None)];
        e
    }

    /// `DELETE FROM t USING TIMESTAMP wt WHERE id = …` (a partition deletion: no clustering).
    pub fn delete(&mut self, id: i32, wt: i64) -> ChangeEvent {
        let mut e = self.base(id, Operation::Delete);
        e.deletion = Some(Deletion {
            scope: DeletionScope::Partition,
            marked_for_delete_at_micros: wt,
            local_deletion_time_secs: wt / 1_000_000,
        });
        e
    }
}

/// One fresh topic, group and DLQ for a scenario.
pub struct Fixture {
    pub env: ComplianceEnv,
    pub keyspace: String,
    pub table: String,
    pub topic: String,
    pub dlq_topic: String,
    pub group: String,
    pub events: EventFactory,
    producer: IdempotentProducer,
}

impl Fixture {
    /// Creates the topics (3 partitions) and a producer.
    pub async fn new(env: &ComplianceEnv, prefix: &str) -> Fixture {
        let keyspace = unique(prefix);
        let table = "t".to_owned();
        let topic = format!("cdc.masked.{keyspace}.{table}");
        let dlq_topic = format!("cdc.dlq.{}", unique("sink-test").replace('_', "-"));
        let settings = KafkaSettings::new(env.kafka_bootstrap.clone(), unique("compliance"));
        let admin = TopicAdmin::new(&settings, Duration::from_secs(15)).expect("admin client");
        admin
            .ensure_topic(&topic, 3, 1, &BTreeMap::new())
            .await
            .expect("create masked topic");
        admin
            .ensure_topic(&dlq_topic, 1, 1, &BTreeMap::new())
            .await
            .expect("create DLQ topic");
        let producer =
            IdempotentProducer::new(&settings, &ProducerSettings::default()).expect("producer");
        Fixture {
            env: env.clone(),
            events: EventFactory::new(&keyspace, &table),
            group: unique("cdc_sink_test"),
            keyspace,
            table,
            topic,
            dlq_topic,
            producer,
        }
    }

    /// Produces events as the masker would (key = partition key string, JSON envelope).
    pub async fn produce(&self, events: &[ChangeEvent]) {
        self.produce_with_schema(events, &schema(&self.keyspace, &self.table))
            .await;
    }

    /// Produces events of a table with another schema (same topic).
    pub async fn produce_with_schema(&self, events: &[ChangeEvent], schema: &TableSchema) {
        let mut pending = Vec::with_capacity(events.len());
        for e in events {
            let payload = json_codec::encode_event(e, schema).expect("encode event");
            let headers = vec![(
                crate::runner::HEADER_CORRELATION_ID.to_owned(),
                e.correlation_id.clone().into_bytes(),
            )];
            pending.push(
                self.producer
                    .send(
                        &self.topic,
                        None,
                        Some(e.key_string().as_bytes()),
                        Some(&payload),
                        &headers,
                    )
                    .await
                    .expect("enqueue"),
            );
        }
        for p in pending {
            p.await.expect("delivery");
        }
    }

    /// Produces raw bytes (e.g. an undecodable payload).
    pub async fn produce_raw(&self, key: &[u8], payload: &[u8]) {
        self.producer
            .send(&self.topic, None, Some(key), Some(payload), &[])
            .await
            .expect("enqueue")
            .await
            .expect("delivery");
    }

    /// The runner settings of this fixture (small batches, fast retries).
    pub fn runner_config(&self, destination: &str) -> RunnerConfig {
        let mut c = RunnerConfig::new(destination);
        c.group_id = self.group.clone();
        c.consumer = ConsumerSettings::new(self.group.clone());
        c.consumer.session_timeout_ms = 10_000;
        c.consumer.operation_timeout_ms = 15_000;
        c.topics_pattern = format!("^{}$", self.topic.replace('.', "\\."));
        c.dlq_topic = self.dlq_topic.clone();
        c.stage = format!("sink-{destination}");
        c.batch.max_rows = 300;
        c.batch.linger_ms = 200;
        c.retry.initial_backoff_ms = 50;
        c.retry.max_backoff_ms = 500;
        c.retry.max_retries = 3;
        c.drain_timeout = Duration::from_secs(10);
        c.backlog_interval = Duration::from_secs(1);
        c
    }

    /// Starts a sink in-process.
    pub fn start<D: Destination>(&self, destination: D) -> RunningSink {
        let registry = prometheus::Registry::new();
        let name = destination.name().to_owned();
        let metrics = SinkMetrics::new(&registry, &name).expect("metrics");
        let health = HealthState::new();
        let settings = KafkaSettings::new(self.env.kafka_bootstrap.clone(), unique("sink"));
        let runner = SinkRunner::new(
            Arc::new(destination),
            settings,
            self.runner_config(&name),
            metrics,
            health.clone(),
        );
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let handle = tokio::spawn(async move { runner.run(token).await });
        RunningSink {
            cancel,
            handle,
            registry,
            health,
        }
    }

    /// Waits until the live rows satisfy `check`, failing after `timeout` with the last state.
    pub async fn wait_rows<I: Inspector>(
        &self,
        inspector: &I,
        timeout: Duration,
        what: &str,
        check: impl Fn(&BTreeMap<i32, Row>) -> bool,
    ) -> BTreeMap<i32, Row> {
        let deadline = Instant::now() + timeout;
        loop {
            let rows = inspector
                .live_rows(&self.keyspace, &self.table)
                .await
                .unwrap_or_default();
            if check(&rows) {
                return rows;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not reached within {timeout:?}; {} live rows: {:?}",
                rows.len(),
                // Fake test data only (see the fixture): safe to show.
                rows.iter().take(10).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Reads every dead letter on the fixture's DLQ topic, waiting up to `timeout` for `n`.
    pub async fn dead_letters(&self, n: usize, timeout: Duration) -> Vec<DeadLetter> {
        let settings = KafkaSettings::new(self.env.kafka_bootstrap.clone(), unique("dlq-reader"));
        let (consumer, _events) =
            ReadCommittedConsumer::new(&settings, &ConsumerSettings::new(unique("dlq_reader")))
                .expect("DLQ consumer");
        consumer
            .assign(&[(
                TopicPartition::new(self.dlq_topic.clone(), 0),
                StartOffset::Beginning,
            )])
            .expect("assign DLQ");
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n && Instant::now() < deadline {
            if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await
                && let Some(p) = m.payload
            {
                out.push(DeadLetter::from_json(&p).expect("dead letter JSON"));
            }
        }
        let _ = consumer.close().await;
        out
    }
}

/// A sink running in-process.
pub struct RunningSink {
    pub cancel: CancellationToken,
    pub handle: JoinHandle<Result<(), Error>>,
    pub registry: prometheus::Registry,
    pub health: HealthState,
}

impl RunningSink {
    /// Cancels and waits for a clean stop.
    pub async fn stop(self) {
        self.cancel.cancel();
        let r = tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("sink stops within 60 s")
            .expect("sink task");
        if let Err(e) = r {
            panic!("sink failed: {e}");
        }
    }

    /// The Prometheus text of the sink's registry.
    pub fn metrics_text(&self) -> String {
        cdc_telemetry::metrics::encode_text(&self.registry).expect("encode metrics")
    }
}

const WAIT: Duration = Duration::from_secs(90);
const SHORT_WAIT: Duration = Duration::from_secs(30);
const T0: i64 = 1_700_000_000_000_000;

/// 1,000 inserts, 500 updates, 200 deletes, replay of everything, offsets and metrics.
pub async fn inserts_updates_deletes_replay<D: Destination, I: Inspector>(
    env: &ComplianceEnv,
    make: impl Fn() -> D,
    inspector: &I,
) {
    let mut fx = Fixture::new(env, "cmp_iud").await;
    let mut all = Vec::new();
    let inserts: Vec<ChangeEvent> = (0..1_000)
        .map(|i| {
            fx.events
                .insert(i, &format!("user-{i}"), i64::from(i), T0 + i64::from(i))
        })
        .collect();
    all.extend(inserts.iter().cloned());
    let sink = fx.start(make());
    fx.produce(&inserts).await;
    fx.wait_rows(inspector, WAIT, "1,000 inserts", |r| r.len() == 1_000)
        .await;

    let updates: Vec<ChangeEvent> = (0..500)
        .map(|i| {
            fx.events
                .update_score(i, 10_000 + i64::from(i), T0 + 1_000_000 + i64::from(i))
        })
        .collect();
    all.extend(updates.iter().cloned());
    fx.produce(&updates).await;
    fx.wait_rows(inspector, WAIT, "500 updates", |r| {
        r.len() == 1_000
            && (0..500).all(|i| r.get(&i).and_then(|x| x.1) == Some(10_000 + i64::from(i)))
    })
    .await;

    let deletes: Vec<ChangeEvent> = (800..1_000)
        .map(|i| fx.events.delete(i, T0 + 2_000_000 + i64::from(i)))
        .collect();
    all.extend(deletes.iter().cloned());
    fx.produce(&deletes).await;
    let rows = fx
        .wait_rows(inspector, WAIT, "200 deletes", |r| r.len() == 800)
        .await;
    for i in 0..800 {
        let expected_score = if i < 500 {
            10_000 + i64::from(i)
        } else {
            i64::from(i)
        };
        assert_eq!(
            rows.get(&i),
            Some(&(Some(format!("user-{i}")), Some(expected_score))),
            "row {i}"
        );
    }
    let history_before = inspector
        .change_count(&fx.keyspace, &fx.table)
        .await
        .expect("change count");
    if let Some(n) = history_before {
        assert_eq!(n, 1_700, "one history row per applied change");
    }

    // Required metrics, labelled by destination.
    let text = sink.metrics_text();
    for name in [
        "cdc_sink_rows_written_total",
        "cdc_sink_batch_write_seconds",
        "cdc_sink_end_to_end_latency_seconds",
        "cdc_sink_lag_seconds",
        "cdc_sink_destination_up",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(name) && l.contains("destination=\"")),
            "metric {name} emitted with a destination label"
        );
    }
    assert!(
        sink.health.is_ready(),
        "/readyz is ready while everything is up"
    );
    sink.stop().await;

    // Offsets were stored with the rows: they cover every produced message.
    let mut stored_total = 0;
    for p in 0..3 {
        stored_total += inspector
            .stored_offset(&fx.group, &fx.topic, p)
            .await
            .expect("stored offset")
            .unwrap_or(0);
    }
    assert_eq!(
        stored_total, 1_700,
        "stored offsets cover all 1,700 messages"
    );

    // Replay: every event again (as after a crash before offsets, or a replica duplicate).
    let sink = fx.start(make());
    fx.produce(&all).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let mut total = 0;
        for p in 0..3 {
            total += inspector
                .stored_offset(&fx.group, &fx.topic, p)
                .await
                .expect("stored offset")
                .unwrap_or(0);
        }
        if total == 3_400 {
            break;
        }
        assert!(Instant::now() < deadline, "replayed messages consumed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let replayed = inspector
        .live_rows(&fx.keyspace, &fx.table)
        .await
        .expect("rows");
    assert_eq!(replayed, rows, "a replay changes nothing");
    if let Some(before) = history_before {
        let after = inspector
            .change_count(&fx.keyspace, &fx.table)
            .await
            .expect("change count");
        assert_eq!(after, Some(before), "a replay inserts no history rows");
    }
    sink.stop().await;
    fx.events = EventFactory::new(&fx.keyspace, &fx.table);
}

/// Rapid changes to one key and out-of-order writetimes converge to Cassandra's answer.
pub async fn convergence<D: Destination, I: Inspector>(
    env: &ComplianceEnv,
    make: impl Fn() -> D,
    inspector: &I,
) {
    let mut fx = Fixture::new(env, "cmp_conv").await;
    let mut events = Vec::new();
    // Key 1: 200 rapid score updates, the last one wins.
    events.push(fx.events.insert(1, "rapid", 0, T0));
    for s in 1..=200 {
        events.push(fx.events.update_score(1, s, T0 + s));
    }
    // Key 2: arrivals out of writetime order. Cassandra's answer: score 7 (wt +40, arrived
    // first), name "newest" (wt +30); the older write (wt +10) arriving last changes nothing.
    events.push(fx.events.update_score(2, 7, T0 + 40));
    events.push(fx.events.insert(2, "newest", 5, T0 + 30));
    events.push(fx.events.update_name(2, "older", T0 + 10));
    // Key 3: deleted at +50; an older insert (+40) arriving later must not resurrect it.
    events.push(fx.events.delete(3, T0 + 50));
    events.push(fx.events.insert(3, "zombie", 1, T0 + 40));
    // Key 4: deleted at +50, then re-inserted at +60: live again.
    events.push(fx.events.insert(4, "first", 1, T0 + 10));
    events.push(fx.events.delete(4, T0 + 50));
    events.push(fx.events.insert(4, "again", 2, T0 + 60));
    // Key 5: a cell tombstone ties with a write at the same writetime: the tombstone wins.
    events.push(fx.events.insert(5, "tie", 3, T0 + 10));
    events.push(fx.events.update_name(5, "tie-later", T0 + 20));
    events.push(fx.events.delete_name(5, T0 + 20));
    // Key 6: only a partial update (no row marker): the row exists with just the score.
    events.push(fx.events.update_score(6, 66, T0 + 10));
    let sink = fx.start(make());
    // Keys 1..6 hash across partitions; each arrives in the order above within its partition.
    fx.produce(&events).await;
    let expected: BTreeMap<i32, Row> = [
        (1, (Some("rapid".to_owned()), Some(200))),
        (2, (Some("newest".to_owned()), Some(7))),
        (4, (Some("again".to_owned()), Some(2))),
        (5, (None, Some(3))),
        (6, (None, Some(66))),
    ]
    .into_iter()
    .collect();
    let rows = fx
        .wait_rows(inspector, SHORT_WAIT, "convergence", |r| r == &expected)
        .await;
    assert_eq!(rows, expected);
    // The same events again, in reverse order: still the same answer.
    let reversed: Vec<ChangeEvent> = events.iter().rev().cloned().collect();
    fx.produce(&reversed).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rows = fx
        .wait_rows(inspector, WAIT, "convergence after reversed replay", |r| {
            r == &expected
        })
        .await;
    assert_eq!(rows, expected);
    sink.stop().await;
}

/// A poison event is dead-lettered with its context while later events keep flowing; an
/// undecodable message too.
pub async fn poison_goes_to_dlq<D: Destination, I: Inspector>(
    env: &ComplianceEnv,
    make: impl Fn() -> D,
    inspector: &I,
) {
    let Some(poison) = env.poison_name.clone() else {
        return;
    };
    let mut fx = Fixture::new(env, "cmp_dlq").await;
    let sink = fx.start(make());
    let mut before: Vec<ChangeEvent> = (0..50)
        .map(|i| fx.events.insert(i, "ok", 1, T0 + 10))
        .collect();
    let bad = fx.events.insert(1_000, &poison, 1, T0 + 10);
    before.push(bad.clone());
    let after: Vec<ChangeEvent> = (50..100)
        .map(|i| fx.events.insert(i, "ok", 1, T0 + 10))
        .collect();
    fx.produce(&before).await;
    fx.produce_raw(b"[1]", b"{not an envelope").await;
    fx.produce(&after).await;
    let rows = fx
        .wait_rows(
            inspector,
            Duration::from_secs(120),
            "events after the poison",
            |r| r.len() == 100,
        )
        .await;
    assert!(
        !rows.contains_key(&1_000),
        "the poison event is not written"
    );
    let letters = fx.dead_letters(2, Duration::from_secs(60)).await;
    assert_eq!(letters.len(), 2, "two dead letters");
    let letter = letters
        .iter()
        .find(|l| l.correlation_id.as_deref() == Some(bad.correlation_id.as_str()))
        .expect("the poison event's dead letter");
    assert_eq!(letter.error_class, cdc_model::ErrorClass::Poison);
    assert_eq!(letter.topic, fx.topic);
    assert!(letter.offset >= 0);
    assert_eq!(
        letter.destination.as_deref(),
        Some(sink_name(&sink).as_str())
    );
    assert!(letter.stage.starts_with("sink-"));
    assert!(
        letter.error_message.contains("name"),
        "the error names the column"
    );
    assert!(
        !letter.error_message.contains(&poison),
        "the error message carries no value"
    );
    assert!(
        letter.first_failure_at_ms > 0 && letter.last_failure_at_ms >= letter.first_failure_at_ms
    );
    assert!(
        letters
            .iter()
            .any(|l| l.payload_format == cdc_model::PayloadFormat::Raw),
        "the undecodable message is dead-lettered raw"
    );
    let text = sink.metrics_text();
    assert!(
        text.lines()
            .any(|l| l.starts_with("cdc_sink_dlq_events_total") && l.ends_with(" 2")),
        "DLQ counter is 2"
    );
    sink.stop().await;
}

fn sink_name(sink: &RunningSink) -> String {
    let text = sink.metrics_text();
    text.lines()
        .find_map(|l| {
            let rest = l.split("destination=\"").nth(1)?;
            rest.split('"').next().map(str::to_owned)
        })
        .unwrap_or_default()
}

/// Every scenario, in order.
pub async fn run_all<D: Destination, I: Inspector>(
    env: &ComplianceEnv,
    make: impl Fn() -> D,
    inspector: &I,
) {
    inserts_updates_deletes_replay(env, &make, inspector).await;
    convergence(env, &make, inspector).await;
    poison_goes_to_dlq(env, &make, inspector).await;
}

async fn stored_total<I: Inspector>(inspector: &I, fx: &Fixture) -> i64 {
    let mut total = 0;
    for p in 0..3 {
        total += inspector
            .stored_offset(&fx.group, &fx.topic, p)
            .await
            .unwrap_or(None)
            .unwrap_or(0);
    }
    total
}

/// What the model of the crash scenario expects for one key.
#[derive(Debug, Clone, Default)]
struct ModelRow {
    marker: bool,
    name: Option<String>,
    score: Option<i64>,
}

/// `kill -9` of the sink binary at three random points while it applies 10,000 events (inserts,
/// updates, deletes, re-writes after deletes over 2,000 keys), then a clean run: the final state is
/// exactly the model's and the history relation (when kept) has one row per event.
///
/// `config_yaml` gets `(bootstrap, topic pattern, group, dlq topic, admin port)` and returns a
/// pipeline.yaml configuring the binary's sink.
pub async fn kill_nine_during_10k_events<I: Inspector>(
    env: &ComplianceEnv,
    binary: &std::path::Path,
    config_yaml: impl Fn(&str, &str, &str, &str, u16) -> String,
    inspector: &I,
) {
    let mut fx = Fixture::new(env, "cmp_kill").await;
    let mut events = Vec::with_capacity(10_000);
    let mut model: BTreeMap<i32, ModelRow> = BTreeMap::new();
    for i in 0..10_000i32 {
        let key = i % 2_000;
        let round = i / 2_000;
        let wt = T0 + i64::from(i);
        let row = model.entry(key).or_default();
        let e = match round {
            0 => {
                *row = ModelRow {
                    marker: true,
                    name: Some(format!("n{key}")),
                    score: Some(0),
                };
                fx.events.insert(key, &format!("n{key}"), 0, wt)
            }
            2 if key % 5 == 0 => {
                *row = ModelRow::default();
                fx.events.delete(key, wt)
            }
            2 => {
                row.name = Some(format!("m{key}"));
                fx.events.update_name(key, &format!("m{key}"), wt)
            }
            4 if key % 7 == 0 => {
                *row = ModelRow::default();
                fx.events.delete(key, wt)
            }
            r => {
                row.score = Some(i64::from(r));
                fx.events.update_score(key, i64::from(r), wt)
            }
        };
        events.push(e);
    }
    let expected: BTreeMap<i32, Row> = model
        .into_iter()
        .filter(|(_, r)| r.marker || r.name.is_some() || r.score.is_some())
        .map(|(k, r)| (k, (r.name, r.score)))
        .collect();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let pattern = format!("^{}$", fx.topic.replace('.', "\\."));
    let yaml = config_yaml(
        &env.kafka_bootstrap,
        &pattern,
        &fx.group,
        &fx.dlq_topic,
        port,
    );
    let path = std::env::temp_dir().join(format!("{}.yaml", unique("cdc_kill9")));
    std::fs::write(&path, yaml).expect("write config");
    let spawn = || {
        tokio::process::Command::new(binary)
            .arg("--config")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start sink binary")
    };
    fx.produce(&events[..5_000]).await;
    let mut produced_rest = false;
    for round in 0..3 {
        let mut child = spawn();
        if !produced_rest {
            fx.produce(&events[5_000..]).await;
            produced_rest = true;
        }
        // Kill only once this run has made progress, at a random point after it.
        let before = stored_total(inspector, &fx).await;
        let deadline = Instant::now() + Duration::from_secs(90);
        while stored_total(inspector, &fx).await <= before && before < 10_000 {
            assert!(
                Instant::now() < deadline,
                "round {round}: the sink makes progress"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..600u64))).await;
        child.start_kill().expect("kill -9");
        eprintln!(
            "round {round}: killed with {} of 10000 offsets stored",
            stored_total(inspector, &fx).await
        );
        let status = child.wait().await.expect("wait for killed sink");
        assert!(!status.success(), "round {round}: the sink was killed");
    }
    let mut child = spawn();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let total = stored_total(inspector, &fx).await;
        if total == 10_000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "all 10,000 messages applied after the kills (stored offsets sum to {total})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rows = inspector
        .live_rows(&fx.keyspace, &fx.table)
        .await
        .expect("live rows");
    let _ = child.start_kill();
    let _ = child.wait().await;
    let _ = std::fs::remove_file(&path);
    assert_eq!(rows.len(), expected.len(), "live row count");
    assert!(rows == expected, "final state equals the model");
    if let Some(n) = inspector
        .change_count(&fx.keyspace, &fx.table)
        .await
        .expect("change count")
    {
        assert_eq!(n, 10_000, "one history row per event, no duplicates");
    }
    assert!(
        fx.dead_letters(1, Duration::from_secs(3)).await.is_empty(),
        "no dead letters"
    );
}

/// Reads PostgreSQL/TimescaleDB back for the suite.
#[derive(Debug, Clone)]
pub struct PgInspector {
    pub url: String,
}

impl PgInspector {
    async fn client(&self) -> Result<tokio_postgres::Client, String> {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(client)
    }
}

#[async_trait]
impl Inspector for PgInspector {
    async fn live_rows(&self, keyspace: &str, table: &str) -> Result<BTreeMap<i32, Row>, String> {
        let client = self.client().await?;
        let view = crate::postgres::naming::live_view(keyspace, table);
        let rows = client
            .query(&format!("SELECT id, name, score FROM {view}"), &[])
            .await
            .map_err(|e| e.to_string())?;
        let mut out = BTreeMap::new();
        for r in rows {
            let id: i32 = r.get(0);
            let previous = out.insert(id, (r.get(1), r.get(2)));
            assert!(previous.is_none(), "duplicate live row for id {id}");
        }
        Ok(out)
    }

    async fn change_count(&self, keyspace: &str, table: &str) -> Result<Option<u64>, String> {
        let client = self.client().await?;
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2)",
                &[
                    &crate::postgres::naming::schema_name(keyspace),
                    &format!("{table}_changes"),
                ],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        if !exists {
            return Ok(None);
        }
        let n: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}",
                    crate::postgres::naming::changes_table(keyspace, table)
                ),
                &[],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        Ok(Some(n as u64))
    }

    async fn stored_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, String> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT next_offset FROM public._cdc_offsets WHERE \"group\" = $1 AND topic = $2 AND \"partition\" = $3",
                &[&group, &topic, &partition],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.map(|r| r.get(0)))
    }
}
