//! The driver every sink runs: consume `cdc.masked.*` (read_committed, pattern subscription, its
//! own group), seek each assigned partition to the offset stored in the destination, batch per
//! table by rows/bytes/linger, write each batch atomically with its offsets through the
//! [`Destination`], retry retriable failures with exponential backoff and jitter, dead-letter
//! poison events to `cdc.dlq.sink-<destination>` and move on, wait (without dead-lettering) while
//! the destination is unreachable, and measure everything with `SinkMetrics`.
//!
//! Kafka group commits happen after each write and only feed lag dashboards: the destination is
//! the source of truth for offsets.
//!
//! # Operator control (admin API)
//!
//! [`SinkRunner::control`] hands out a [`RunnerControl`]. Its commands run *inside* the driver
//! loop, between batches, so they never race a write:
//! - **pause**: pending batches are written, the assigned partitions are paused (the consumer keeps
//!   polling, so the member stays in its group and rebalances are still handled; partitions
//!   assigned while paused stay paused), and `/readyz` reports the `intake` dependency down;
//!   **resume** undoes it.
//! - **replay**: pending batches are written, the target offsets are resolved (given, or by
//!   timestamp with Kafka's offsets-for-times on every topic the sink consumes; the end of a
//!   partition when no message is that recent), stored in the destination with
//!   [`Destination::rewind_offsets`] (lower offsets win), and the assigned partitions are sought
//!   there. Other destinations are untouched: each stores its own offsets. Partitions assigned to
//!   another instance of the same sink pick the new offsets up at their next rebalance.
//! - **reapply**: dead-lettered events are written again through the destination, one at a time,
//!   without touching offsets (convergent apply makes a repeat harmless).
//! - **tuning** (batch limits, retry policy) is read at each use, so a reload applies at once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backon::{ExponentialBuilder, Retryable};
use cdc_config::{BatchConfig, RetryConfig};
use cdc_kafka::{
    ConsumerSettings, HeaderPair, IdempotentProducer, InboundMessage, KafkaSettings,
    PartitionOffset, ProducerSettings, ReadCommittedConsumer, RebalanceEvent, StartOffset,
    TopicAdmin, TopicPartition,
};
use cdc_model::{DeadLetter, ErrorClass, PayloadFormat, Topic};
use cdc_telemetry::{HealthState, SinkMetrics};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::destination::{
    BatchEvent, Destination, NextOffset, SourceOffset, TableBatch, TableShape, WriteOutcome,
};
use crate::envelope;
use crate::error::Error;

/// Health dependency names reported on `/readyz`.
pub const HEALTH_DESTINATION: &str = "destination";
/// Health dependency name of the Kafka consumer.
pub const HEALTH_KAFKA: &str = "kafka";
pub use cdc_model::headers::CORRELATION_ID as HEADER_CORRELATION_ID;
/// Health dependency marked down while an operator has paused the intake.
pub const HEALTH_INTAKE: &str = cdc_admin::HEALTH_INTAKE;

/// Where an operator's replay moves a destination's offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayTarget {
    /// Exactly these next offsets.
    Offsets(Vec<NextOffset>),
    /// Per partition of every topic the sink consumes, the first message at or after this time
    /// (milliseconds since the epoch); the partition's end when no message is that recent.
    Timestamp(i64),
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// The stored next offsets before (`None` where nothing was stored).
    pub previous: Vec<(TopicPartition, Option<i64>)>,
    /// The next offsets stored now.
    pub applied: Vec<NextOffset>,
}

/// One dead-lettered event to write again: the masked envelope and where it was first read.
#[derive(Debug, Clone)]
pub struct Reapply {
    pub payload: Vec<u8>,
    pub source: SourceOffset,
}

/// The settings a reload may change while the sink runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    pub batch: BatchConfig,
    pub retry: RetryConfig,
}

enum Command {
    Pause(oneshot::Sender<Result<(), Error>>),
    Resume(oneshot::Sender<Result<(), Error>>),
    Replay(ReplayTarget, oneshot::Sender<Result<ReplayReport, Error>>),
    Reapply(Vec<Reapply>, oneshot::Sender<Vec<Result<(), String>>>),
}

#[derive(Debug)]
struct Shared {
    paused: AtomicBool,
    /// Sum over partitions of high watermark − stored offset, at the last refresh.
    backlog: AtomicU64,
    tuning: RwLock<Tuning>,
}

/// A command and the time after which the driver drops it untouched (its caller gave up).
type Queued = (Instant, Command);

/// Default time a [`RunnerControl`] command may wait for the driver loop.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A handle on a [`SinkRunner`] for the admin API. Commands run in the driver loop between
/// batches; one the loop has not *started* within the timeout (a sink waiting for its
/// destination to come back takes none) is dropped untouched and reported as timed out.
#[derive(Debug, Clone)]
pub struct RunnerControl {
    destination: String,
    tx: mpsc::Sender<Queued>,
    shared: Arc<Shared>,
    timeout: Duration,
}

impl RunnerControl {
    /// The same handle with another command timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn unavailable(&self, message: String) -> Error {
        Error::Destination {
            destination: self.destination.clone(),
            class: ErrorClass::Retriable,
            message,
        }
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + self.timeout;
        let stopped = || self.unavailable("the sink's driver is not running".into());
        let timed_out = || {
            self.unavailable(format!(
                "the sink did not take the command within {} s (busy, or waiting for its \
                 destination); a command not started by then is dropped, one started runs to \
                 its end — check its log",
                self.timeout.as_secs()
            ))
        };
        let exchange = async {
            self.tx
                .send((deadline, make(reply)))
                .await
                .map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())
        };
        match tokio::time::timeout_at(deadline.into(), exchange).await {
            Ok(r) => r,
            Err(_) => Err(timed_out()),
        }
    }

    /// True while an operator has paused the intake.
    pub fn is_paused(&self) -> bool {
        self.shared.paused.load(Ordering::Relaxed)
    }

    /// Events not yet stored in the destination, over the assigned partitions (refreshed every
    /// backlog interval).
    pub fn backlog(&self) -> u64 {
        self.shared.backlog.load(Ordering::Relaxed)
    }

    /// The batch and retry settings in force.
    pub fn tuning(&self) -> Tuning {
        self.shared
            .tuning
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the batch and retry settings (used from the next batch on).
    pub fn set_tuning(&self, tuning: Tuning) {
        *self
            .shared
            .tuning
            .write()
            .unwrap_or_else(|e| e.into_inner()) = tuning;
    }

    /// Writes pending batches, then stops consuming.
    pub async fn pause(&self) -> Result<(), Error> {
        self.call(Command::Pause).await?
    }

    /// Restarts consuming after [`RunnerControl::pause`].
    pub async fn resume(&self) -> Result<(), Error> {
        self.call(Command::Resume).await?
    }

    /// Moves this destination's stored offsets and re-seeks (see the module documentation).
    pub async fn replay(&self, target: ReplayTarget) -> Result<ReplayReport, Error> {
        self.call(|reply| Command::Replay(target, reply)).await?
    }

    /// Writes dead-lettered events again; one result per event, in order (`Err` names why).
    pub async fn reapply(&self, events: Vec<Reapply>) -> Result<Vec<Result<(), String>>, Error> {
        self.call(|reply| Command::Reapply(events, reply)).await
    }
}

/// Everything the driver needs besides the adapter.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Consumer group; also the key under which the destination stores offsets.
    pub group_id: String,
    /// Regular expression of the topics to consume (must start with `^`).
    pub topics_pattern: String,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Partitions and replication of the DLQ topic when it has to be created.
    pub dlq_partitions: i32,
    pub dlq_replication: i32,
    /// `sink-postgres`, …: the `stage` of dead letters.
    pub stage: String,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    /// Time allowed to flush pending batches after cancellation.
    pub drain_timeout: Duration,
    /// Consumer tuning (group id is overwritten with `group_id`).
    pub consumer: ConsumerSettings,
    /// Interval of the backlog gauge refresh.
    pub backlog_interval: Duration,
    /// Writes in flight at once per flushed batch: a batch spanning several partitions is split
    /// into up to this many groups of partitions, each one atomic write of its rows and offsets
    /// (`sinks.<d>.parallelism`, CR-007); a table's open batch then holds up to this many times
    /// `batch.max_rows` / `max_bytes` (one write's worth per group). 1 writes each batch whole.
    pub parallelism: usize,
}

impl RunnerConfig {
    /// Defaults for `destination` (`postgres`, …): group `cdc-sink-<destination>`, DLQ
    /// `cdc.dlq.sink-<destination>`, pattern `^cdc\.masked\..*`.
    pub fn new(destination: &str) -> Self {
        let group_id = format!("cdc-sink-{destination}");
        RunnerConfig {
            consumer: ConsumerSettings::new(group_id.clone()),
            group_id,
            topics_pattern: r"^cdc\.masked\..*".to_owned(),
            dlq_topic: format!("cdc.dlq.sink-{destination}"),
            dlq_partitions: 1,
            dlq_replication: 1,
            stage: format!("sink-{destination}"),
            batch: BatchConfig::default(),
            retry: RetryConfig::default(),
            drain_timeout: Duration::from_secs(30),
            backlog_interval: Duration::from_secs(2),
            parallelism: 4,
        }
    }
}

/// One Kafka message kept for dead-lettering.
#[derive(Debug, Clone)]
struct RawMessage {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: Vec<HeaderPair>,
}

/// The open batch of one topic (= one table).
#[derive(Debug)]
struct Pending {
    shape: Option<TableShape>,
    events: Vec<BatchEvent>,
    raws: Vec<RawMessage>,
    bytes: usize,
    started: Instant,
    /// Next offset per partition (covers dead-lettered messages too).
    next: BTreeMap<i32, i64>,
}

impl Pending {
    fn new() -> Self {
        Pending {
            shape: None,
            events: Vec::new(),
            raws: Vec::new(),
            bytes: 0,
            started: Instant::now(),
            next: BTreeMap::new(),
        }
    }
}

/// How a write attempt sequence ended, when it did not succeed.
enum WriteFailure<E> {
    /// Not retriable: the data is bad.
    Poison(E),
    /// Retriable, still failing after `max_retries`.
    Exhausted {
        error: E,
        retries: u32,
    },
    Fatal(E),
    Cancelled,
}

/// Failure bookkeeping for dead letters.
#[derive(Debug, Clone, Copy)]
struct FailureContext {
    class: ErrorClass,
    retries: u32,
    first_ms: i64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// An error and its sources as one line, for logs and dead letters. A database's `DETAIL:` line
/// is withheld: PostgreSQL quotes row values there (`Failing row contains (…)`).
/// `sink.write_batch`, one per event of `batch` whose change is traced (a sampled `traceparent`
/// header from the masker): a child of the masker's span, so the change's trace runs capture →
/// masker → this sink. Destination, table, rows and the Kafka position only, never values. Empty
/// without trace export.
fn write_spans(destination: &str, batch: &TableBatch, raws: &[RawMessage]) -> Vec<tracing::Span> {
    if !cdc_telemetry::propagation::exporting() {
        return Vec::new();
    }
    let system = match destination {
        "postgres" | "timescaledb" => "postgresql",
        other => other,
    };
    let table = format!("{}.{}", batch.shape.keyspace, batch.shape.table);
    let rows = batch.events.len();
    batch
        .events
        .iter()
        .zip(raws)
        .filter(|(_, raw)| cdc_telemetry::propagation::sampled_parent(&raw.headers).is_some())
        .map(|(be, raw)| {
            let span = tracing::info_span!(
                parent: None,
                "sink.write_batch",
                otel.kind = "consumer",
                destination,
                db.system.name = system,
                db.collection.name = table.as_str(),
                db.operation.name = "write_batch",
                db.operation.batch.size = rows,
                messaging.system = "kafka",
                messaging.source.name = be.source.topic.as_str(),
                messaging.destination.partition.id = be.source.partition,
                messaging.kafka.offset = be.source.offset,
                table = table.as_str(),
                rows,
                op = be.event.op.as_str(),
                correlation_id = be.event.correlation_id.as_str(),
            );
            cdc_telemetry::propagation::set_span_parent(&span, &raw.headers);
            span
        })
        .collect()
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    cdc_admin::dead_letters::redact_error(&cdc_kafka::error_chain(e))
}

/// The sink driver. Build it, then [`SinkRunner::run`] until the token is cancelled.
pub struct SinkRunner<D: Destination> {
    destination: Arc<D>,
    kafka: KafkaSettings,
    config: RunnerConfig,
    metrics: SinkMetrics,
    health: HealthState,
    shared: Arc<Shared>,
    control_tx: mpsc::Sender<Queued>,
    commands: std::sync::Mutex<Option<mpsc::Receiver<Queued>>>,
}

impl<D: Destination> std::fmt::Debug for SinkRunner<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkRunner")
            .field("destination", &self.destination.name())
            .field("group_id", &self.config.group_id)
            .finish_non_exhaustive()
    }
}

impl<D: Destination> SinkRunner<D> {
    pub fn new(
        destination: Arc<D>,
        kafka: KafkaSettings,
        config: RunnerConfig,
        metrics: SinkMetrics,
        health: HealthState,
    ) -> Self {
        health.register(HEALTH_DESTINATION);
        health.register(HEALTH_KAFKA);
        let shared = Arc::new(Shared {
            paused: AtomicBool::new(false),
            backlog: AtomicU64::new(0),
            tuning: RwLock::new(Tuning {
                batch: config.batch.clone(),
                retry: config.retry.clone(),
            }),
        });
        let (control_tx, commands) = mpsc::channel(8);
        SinkRunner {
            destination,
            kafka,
            config,
            metrics,
            health,
            shared,
            control_tx,
            commands: std::sync::Mutex::new(Some(commands)),
        }
    }

    /// The handle the admin API drives this runner with.
    pub fn control(&self) -> RunnerControl {
        RunnerControl {
            destination: self.destination.name().to_owned(),
            tx: self.control_tx.clone(),
            shared: Arc::clone(&self.shared),
            timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }

    fn batch_config(&self) -> BatchConfig {
        self.shared
            .tuning
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .batch
            .clone()
    }

    fn retry_config(&self) -> RetryConfig {
        self.shared
            .tuning
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .retry
            .clone()
    }

    /// Runs until `cancel` fires (then drains pending batches within the drain timeout) or a
    /// fatal error.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), Error> {
        if !self.wait_until_healthy(&cancel).await {
            return Ok(());
        }
        let mut consumer_settings = self.config.consumer.clone();
        consumer_settings.group_id = self.config.group_id.clone();
        consumer_settings.assign_mode = cdc_kafka::AssignMode::PauseUntilSeek;
        let (consumer, mut rebalances) =
            ReadCommittedConsumer::new(&self.kafka, &consumer_settings).map_err(|source| {
                Error::Kafka {
                    op: "create consumer",
                    source,
                }
            })?;
        let dlq = IdempotentProducer::new(&self.kafka, &ProducerSettings::default()).map_err(
            |source| Error::Kafka {
                op: "create DLQ producer",
                source,
            },
        )?;
        let admin = TopicAdmin::new(&self.kafka, Duration::from_secs(15)).map_err(|source| {
            Error::Kafka {
                op: "create admin client",
                source,
            }
        })?;
        if let Err(e) = admin
            .ensure_topic(
                &self.config.dlq_topic,
                self.config.dlq_partitions,
                self.config.dlq_replication,
                &BTreeMap::new(),
            )
            .await
        {
            tracing::warn!(topic = %self.config.dlq_topic, error = %chain(&e), "Could not ensure the DLQ topic");
        }
        consumer
            .subscribe_pattern(&self.config.topics_pattern)
            .map_err(|source| Error::Kafka {
                op: "subscribe",
                source,
            })?;
        self.health.set_up(HEALTH_KAFKA);
        // The backlog gauge is refreshed by a task of its own, so it keeps growing while the
        // driver waits for a down destination.
        let positions = Positions::default();
        let backlog_cancel = cancel.child_token();
        let backlog_task = match TopicAdmin::new(&self.kafka, Duration::from_secs(15)) {
            Ok(backlog_admin) => Some(tokio::spawn(backlog_loop(
                backlog_admin,
                positions.clone(),
                self.metrics.clone(),
                Arc::clone(&self.shared),
                self.config.backlog_interval,
                backlog_cancel.clone(),
            ))),
            Err(e) => {
                tracing::warn!(error = %chain(&e), "No admin client for the backlog gauge; it stays at its last value");
                None
            }
        };
        let commands = self
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // A second `run` of the same runner has no control channel (it never happens in practice).
        let commands = commands.unwrap_or_else(|| mpsc::channel(1).1);
        let mut worker = Worker {
            runner: &self,
            consumer,
            dlq,
            admin,
            pending: HashMap::new(),
            positions,
            commands,
            assigned: HashMap::new(),
        };
        let result = worker.run_loop(&mut rebalances, &cancel).await;
        backlog_cancel.cancel();
        if let Some(task) = backlog_task {
            let _ = task.await;
        }
        self.health.set_shutting_down();
        let drained = worker.drain().await;
        let Worker {
            consumer,
            dlq,
            admin,
            ..
        } = worker;
        let _ = dlq.flush().await;
        let _ = consumer.close().await;
        let _ = dlq.close().await;
        let _ = admin.close().await;
        result.and(drained)
    }

    /// Polls the destination's health until it answers; `false` when cancelled first.
    async fn wait_until_healthy(&self, cancel: &CancellationToken) -> bool {
        let retry = self.retry_config();
        let mut delay = Duration::from_millis(retry.initial_backoff_ms.max(1));
        let cap = Duration::from_millis(retry.max_backoff_ms.max(1));
        loop {
            match self.destination.check_health().await {
                Ok(()) => {
                    self.health.set_up(HEALTH_DESTINATION);
                    self.metrics.destination_up.set(1);
                    return true;
                }
                Err(e) => {
                    let class = self.destination.classify(&e);
                    self.health.set_down(HEALTH_DESTINATION, class.as_str());
                    self.metrics.destination_up.set(0);
                    tracing::warn!(destination = self.destination.name(), error = %chain(&e), error_class = %class, "Destination unreachable; consumption paused");
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(cap);
        }
    }

    fn backoff(&self) -> ExponentialBuilder {
        let r = &self.retry_config();
        let b = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(r.initial_backoff_ms.max(1)))
            .with_max_delay(Duration::from_millis(r.max_backoff_ms.max(1)))
            .with_factor(r.multiplier as f32)
            .with_max_times(r.max_retries as usize);
        if r.jitter { b.with_jitter() } else { b }
    }

    /// One operation retried on `Retriable` errors, cancellable.
    async fn retrying<T, F, Fut>(
        &self,
        cancel: &CancellationToken,
        op: F,
    ) -> Result<T, WriteFailure<D::Error>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, D::Error>>,
    {
        let retries = AtomicU32::new(0);
        let dest = &self.destination;
        let metrics = &self.metrics;
        let attempt = op
            .retry(self.backoff())
            .sleep(tokio::time::sleep)
            .when(|e| dest.classify(e) == ErrorClass::Retriable)
            .notify(|e, after| {
                retries.fetch_add(1, Ordering::Relaxed);
                metrics.retries.inc();
                metrics.errors(ErrorClass::Retriable).inc();
                tracing::warn!(destination = dest.name(), error = %chain(e), retry_in_ms = after.as_millis() as u64, "Destination write failed; retrying");
            });
        let outcome = tokio::select! {
            r = attempt => r,
            () = cancel.cancelled() => return Err(WriteFailure::Cancelled),
        };
        outcome.map_err(|e| {
            let class = dest.classify(&e);
            metrics.errors(class).inc();
            match class {
                ErrorClass::Poison => WriteFailure::Poison(e),
                ErrorClass::Retriable => WriteFailure::Exhausted {
                    error: e,
                    retries: retries.load(Ordering::Relaxed),
                },
                _ => WriteFailure::Fatal(e),
            }
        })
    }
}

/// The next offset stored in the destination per partition, shared by the driver (which writes
/// it) and the backlog task (which reads it).
#[derive(Debug, Clone, Default)]
struct Positions(Arc<std::sync::Mutex<BTreeMap<TopicPartition, i64>>>);

impl Positions {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<TopicPartition, i64>> {
        // Single inserts and removes: a panic while holding the lock leaves the map usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&mut self, tp: TopicPartition, next_offset: i64) {
        self.map().insert(tp, next_offset);
    }

    fn remove(&mut self, tp: &TopicPartition) {
        self.map().remove(tp);
    }
}

/// Backlog (high watermark − stored offset) per partition number, summed over the topics.
fn backlog_by_partition(
    positions: &BTreeMap<TopicPartition, i64>,
    marks: &[(String, i32, i64)],
) -> BTreeMap<i32, i64> {
    let mut out = BTreeMap::new();
    for (topic, partition, high) in marks {
        let tp = TopicPartition::new(topic.clone(), *partition);
        if let Some(pos) = positions.get(&tp) {
            *out.entry(*partition).or_default() += (high - pos).max(0);
        }
    }
    out
}

/// Refreshes `cdc_sink_backlog_events{partition}` and the status backlog every `interval` until
/// cancelled. A topic whose watermarks cannot be read keeps the previous values.
async fn backlog_loop(
    admin: TopicAdmin,
    positions: Positions,
    metrics: SinkMetrics,
    shared: Arc<Shared>,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut exported: BTreeSet<i32> = BTreeSet::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let snapshot = positions.map().clone();
        let topics: BTreeSet<&str> = snapshot.keys().map(|tp| tp.topic.as_str()).collect();
        let mut marks = Vec::new();
        for topic in topics {
            match admin.high_watermarks(topic).await {
                Ok(ws) => marks.extend(
                    ws.into_iter()
                        .map(|w| (topic.to_owned(), w.partition, w.high)),
                ),
                Err(e) => {
                    tracing::debug!(topic = %topic, error = %chain(&e), "Reading high watermarks failed");
                }
            }
        }
        let by_partition = backlog_by_partition(&snapshot, &marks);
        // Partitions no longer assigned here read 0 rather than their last value.
        for partition in exported.difference(&by_partition.keys().copied().collect()) {
            metrics.backlog_events(*partition).set(0);
        }
        for (partition, behind) in &by_partition {
            metrics.backlog_events(*partition).set(*behind);
        }
        exported.extend(by_partition.keys().copied());
        let total: i64 = by_partition.values().sum();
        shared
            .backlog
            .store(u64::try_from(total).unwrap_or(0), Ordering::Relaxed);
    }
    let _ = admin.close().await;
}

/// Splits `batch` (with its dead-letter copies `raws`, index-aligned with its events) into up
/// to `groups` batches by partition: partitions are dealt round-robin in partition order, each
/// event goes with its partition (order kept), each batch carries its partitions' offsets —
/// including partitions with no events left (dead-lettered or skipped messages).
fn split_by_partition(
    batch: TableBatch,
    raws: Vec<RawMessage>,
    groups: usize,
) -> Vec<(TableBatch, Vec<RawMessage>)> {
    let mut partitions: Vec<i32> = batch.next_offsets.iter().map(|o| o.partition).collect();
    for be in &batch.events {
        partitions.push(be.source.partition);
    }
    partitions.sort_unstable();
    partitions.dedup();
    let n = groups.clamp(1, partitions.len().max(1));
    let slot: HashMap<i32, usize> = partitions
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, i % n))
        .collect();
    let mut out: Vec<(TableBatch, Vec<RawMessage>)> = (0..n)
        .map(|_| {
            (
                TableBatch {
                    shape: batch.shape.clone(),
                    events: Vec::new(),
                    next_offsets: Vec::new(),
                },
                Vec::new(),
            )
        })
        .collect();
    for o in batch.next_offsets {
        out[slot[&o.partition]].0.next_offsets.push(o);
    }
    for (be, raw) in batch.events.into_iter().zip(raws) {
        let g = &mut out[slot[&be.source.partition]];
        g.0.events.push(be);
        g.1.push(raw);
    }
    out.retain(|(b, _)| !b.events.is_empty() || !b.next_offsets.is_empty());
    out
}

/// Per-run state of the driver.
struct Worker<'r, D: Destination> {
    runner: &'r SinkRunner<D>,
    consumer: ReadCommittedConsumer,
    dlq: IdempotentProducer,
    admin: TopicAdmin,
    pending: HashMap<String, Pending>,
    /// Next offset stored in the destination per partition (for the backlog gauge).
    positions: Positions,
    commands: mpsc::Receiver<Queued>,
    /// Partitions assigned to this member, per topic (sizes a table's batch for `parallelism`).
    assigned: HashMap<String, BTreeSet<i32>>,
}

enum Step {
    Cancelled,
    Rebalance(Option<RebalanceEvent>),
    Linger,
    Command(Option<Queued>),
    Message(Result<InboundMessage, cdc_kafka::Error>),
}

impl<D: Destination> Worker<'_, D> {
    async fn run_loop(
        &mut self,
        rebalances: &mut cdc_kafka::RebalanceEvents,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        // Consecutive consume errors (Kafka unreachable): paced so a broker outage neither
        // spins nor floods the log.
        let mut consume_errors = cdc_kafka::ConsumeErrorPacer::new();
        loop {
            // Read each turn: a reload may change it.
            let linger = Duration::from_millis(self.runner.batch_config().linger_ms);
            let deadline = self.pending.values().map(|p| p.started + linger).min();
            let step = tokio::select! {
                biased;
                () = cancel.cancelled() => Step::Cancelled,
                ev = rebalances.recv() => Step::Rebalance(ev),
                () = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d.into()).await,
                        None => std::future::pending().await,
                    }
                } => Step::Linger,
                c = self.commands.recv() => Step::Command(c),
                m = self.consumer.recv() => Step::Message(m),
            };
            match step {
                Step::Cancelled => return Ok(()),
                Step::Rebalance(None) => return Ok(()),
                Step::Rebalance(Some(ev)) => self.on_rebalance(ev, cancel).await?,
                Step::Linger => {
                    let now = Instant::now();
                    let due: Vec<String> = self
                        .pending
                        .iter()
                        .filter(|(_, p)| p.started + linger <= now)
                        .map(|(t, _)| t.clone())
                        .collect();
                    for topic in due {
                        self.flush(&topic, cancel).await?;
                    }
                }
                Step::Command(None) => {}
                Step::Command(Some((deadline, c))) => {
                    // The caller gave up: do nothing it would not know about.
                    if Instant::now() < deadline {
                        self.on_command(c, rebalances, cancel).await?;
                    }
                }
                Step::Message(Ok(m)) => {
                    consume_errors.on_message();
                    self.on_message(m, cancel).await?;
                }
                Step::Message(Err(e)) => {
                    let class = e.class();
                    // Stale errors queued during a Kafka outage are drained quickly; the log
                    // line backs off instead (see `cdc_kafka::ConsumeErrorPacer`).
                    let pace = consume_errors.on_error(Instant::now());
                    let pause = pace.pause;
                    if let Some(not_logged) = pace.log {
                        tracing::warn!(
                            error = %chain(&e),
                            error_class = class.as_str(),
                            consecutive = pace.consecutive,
                            not_logged,
                            "Kafka consume failed"
                        );
                    }
                    if class == cdc_kafka::ErrorClass::Fatal {
                        self.runner
                            .health
                            .set_down(HEALTH_KAFKA, "fatal consumer error");
                        return Err(Error::Kafka {
                            op: "consume",
                            source: e,
                        });
                    }
                    tokio::select! {
                        () = cancel.cancelled() => return Ok(()),
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// Flushes every pending batch within the drain timeout.
    async fn drain(&mut self) -> Result<(), Error> {
        let deadline = CancellationToken::new();
        let guard = deadline.clone();
        let timeout = self.runner.config.drain_timeout;
        let timer = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            guard.cancel();
        });
        let topics: Vec<String> = self.pending.keys().cloned().collect();
        let mut result = Ok(());
        for t in topics {
            if let Err(e) = self.flush(&t, &deadline).await {
                result = Err(e);
            }
        }
        timer.abort();
        result
    }

    async fn on_rebalance(
        &mut self,
        ev: RebalanceEvent,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        match ev {
            RebalanceEvent::Assigned { partitions, .. } => {
                self.runner.metrics.kafka.rebalances.inc();
                for tp in &partitions {
                    self.assigned
                        .entry(tp.topic.clone())
                        .or_default()
                        .insert(tp.partition);
                }
                if partitions.is_empty() {
                    return Ok(());
                }
                let group = self.runner.config.group_id.clone();
                let dest = Arc::clone(&self.runner.destination);
                let stored = loop {
                    match self
                        .runner
                        .retrying(cancel, || dest.load_offsets(&group, &partitions))
                        .await
                    {
                        Ok(s) => break s,
                        Err(WriteFailure::Cancelled) => return Ok(()),
                        Err(WriteFailure::Fatal(e) | WriteFailure::Poison(e)) => {
                            return Err(Error::Destination {
                                destination: dest.name().to_owned(),
                                class: ErrorClass::Fatal,
                                message: format!("loading offsets: {}", chain(&e)),
                            });
                        }
                        Err(WriteFailure::Exhausted { .. }) => {
                            if !self.runner.wait_until_healthy(cancel).await {
                                return Ok(());
                            }
                        }
                    }
                };
                let starts: Vec<(TopicPartition, StartOffset)> = stored
                    .into_iter()
                    .map(|(tp, next)| {
                        let start = next.map_or(StartOffset::Beginning, StartOffset::At);
                        if let Some(n) = next {
                            self.positions.insert(tp.clone(), n);
                        }
                        (tp, start)
                    })
                    .collect();
                tracing::info!(
                    partitions = starts.len(),
                    "Seeking assigned partitions to the offsets stored in the destination"
                );
                self.consumer
                    .seek_and_resume(&starts)
                    .await
                    .map_err(|source| Error::Kafka {
                        op: "seek assigned partitions",
                        source,
                    })?;
                if self.runner.shared.paused.load(Ordering::Relaxed) {
                    // Paused by an operator: new partitions wait too.
                    self.consumer
                        .pause(&partitions)
                        .map_err(|source| Error::Kafka {
                            op: "pause newly assigned partitions",
                            source,
                        })?;
                }
                Ok(())
            }
            RebalanceEvent::Revoked { partitions } => {
                for tp in &partitions {
                    if let Some(set) = self.assigned.get_mut(&tp.topic) {
                        set.remove(&tp.partition);
                    }
                }
                // Abandon what is not written yet: the next owner resumes from the stored offsets.
                for tp in &partitions {
                    self.positions.remove(tp);
                    if let Some(p) = self.pending.get_mut(&tp.topic) {
                        let keep: Vec<bool> = p
                            .events
                            .iter()
                            .map(|e| e.source.partition != tp.partition)
                            .collect();
                        let mut it = keep.iter();
                        p.events.retain(|_| *it.next().unwrap_or(&true));
                        let mut it = keep.iter();
                        p.raws.retain(|_| *it.next().unwrap_or(&true));
                        p.next.remove(&tp.partition);
                        if p.next.is_empty() {
                            self.pending.remove(&tp.topic);
                        }
                    }
                }
                Ok(())
            }
            RebalanceEvent::Failed { reason } => {
                tracing::warn!(reason = %reason, "Consumer group rebalance failed");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Writes every pending batch (before a pause or a replay).
    async fn flush_all(&mut self, cancel: &CancellationToken) -> Result<(), Error> {
        let topics: Vec<String> = self.pending.keys().cloned().collect();
        for t in topics {
            self.flush(&t, cancel).await?;
        }
        Ok(())
    }

    /// Handles rebalance events already queued, so a command sees the current assignment.
    async fn settle_rebalances(
        &mut self,
        rebalances: &mut cdc_kafka::RebalanceEvents,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        while let Some(ev) = rebalances.try_recv() {
            self.on_rebalance(ev, cancel).await?;
        }
        Ok(())
    }

    fn assignment(&self) -> Result<Vec<TopicPartition>, Error> {
        self.consumer.assignment().map_err(|source| Error::Kafka {
            op: "read the assignment",
            source,
        })
    }

    /// Runs one operator command. Errors of the command go back to the caller; only a failure
    /// that would have stopped the sink anyway (a fatal write while flushing) stops it.
    async fn on_command(
        &mut self,
        command: Command,
        rebalances: &mut cdc_kafka::RebalanceEvents,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        let name = self.runner.destination.name().to_owned();
        let relay = |e: &Error| Error::Destination {
            destination: name.clone(),
            class: ErrorClass::Fatal,
            message: e.to_string(),
        };
        match command {
            Command::Pause(reply) => {
                if let Err(e) = self.flush_all(cancel).await {
                    let _ = reply.send(Err(relay(&e)));
                    return Err(e);
                }
                let paused = self.assignment().and_then(|assigned| {
                    self.consumer
                        .pause(&assigned)
                        .map(|()| assigned.len())
                        .map_err(|source| Error::Kafka {
                            op: "pause partitions",
                            source,
                        })
                });
                if let Ok(partitions) = &paused {
                    self.runner.shared.paused.store(true, Ordering::Relaxed);
                    self.runner.health.set_down(
                        HEALTH_INTAKE,
                        "paused by an operator (`cdcctl` resume restarts it)",
                    );
                    tracing::info!(
                        destination = %name,
                        partitions,
                        "Intake paused by an operator"
                    );
                }
                let _ = reply.send(paused.map(|_| ()));
            }
            Command::Resume(reply) => {
                let result = match self.settle_rebalances(rebalances, cancel).await {
                    Ok(()) => self.assignment().and_then(|assigned| {
                        self.consumer
                            .resume(&assigned)
                            .map_err(|source| Error::Kafka {
                                op: "resume partitions",
                                source,
                            })
                    }),
                    Err(e) => {
                        let _ = reply.send(Err(relay(&e)));
                        return Err(e);
                    }
                };
                if result.is_ok() {
                    self.runner.shared.paused.store(false, Ordering::Relaxed);
                    self.runner.health.set_up(HEALTH_INTAKE);
                    tracing::info!(destination = %name, "Intake resumed by an operator");
                }
                let _ = reply.send(result);
            }
            Command::Replay(target, reply) => {
                if let Err(e) = self.settle_rebalances(rebalances, cancel).await {
                    let _ = reply.send(Err(relay(&e)));
                    return Err(e);
                }
                if let Err(e) = self.flush_all(cancel).await {
                    let _ = reply.send(Err(relay(&e)));
                    return Err(e);
                }
                let result = self.replay(target, cancel).await;
                let _ = reply.send(result);
            }
            Command::Reapply(events, reply) => {
                let results = self.reapply(events, cancel).await;
                let _ = reply.send(results);
            }
        }
        Ok(())
    }

    fn failure(&self, what: &str, f: WriteFailure<D::Error>) -> Error {
        let (class, message) = match f {
            WriteFailure::Poison(e) => (ErrorClass::Poison, chain(&e)),
            WriteFailure::Exhausted { error, retries } => (
                ErrorClass::Retriable,
                format!("still failing after {retries} retries: {}", chain(&error)),
            ),
            WriteFailure::Fatal(e) => (ErrorClass::Fatal, chain(&e)),
            WriteFailure::Cancelled => (ErrorClass::Retriable, "the sink is stopping".into()),
        };
        Error::Destination {
            destination: self.runner.destination.name().to_owned(),
            class,
            message: format!("{what}: {message}"),
        }
    }

    /// The next offsets at `ts_ms` on every partition of every topic this sink consumes.
    async fn offsets_at(&self, ts_ms: i64) -> Result<Vec<NextOffset>, Error> {
        let pattern = &self.runner.config.topics_pattern;
        let re = regex::Regex::new(pattern).map_err(|e| Error::Config {
            reason: format!("topics_pattern `{pattern}` is not a regular expression: {e}"),
        })?;
        let kafka = |op: &'static str| move |source| Error::Kafka { op, source };
        let topics = self
            .admin
            .list_topics()
            .await
            .map_err(kafka("list topics"))?;
        let mut query = Vec::new();
        let mut ends: HashMap<TopicPartition, i64> = HashMap::new();
        for topic in topics
            .into_iter()
            .filter(|t| !t.starts_with("__") && re.is_match(t))
        {
            for w in self
                .admin
                .high_watermarks(&topic)
                .await
                .map_err(kafka("read high watermarks"))?
            {
                let tp = TopicPartition::new(topic.clone(), w.partition);
                ends.insert(tp.clone(), w.high);
                query.push((tp, ts_ms));
            }
        }
        let found = self
            .consumer
            .offsets_for_times(&query)
            .await
            .map_err(kafka("look offsets up by time"))?;
        let mut out: Vec<NextOffset> = found
            .into_iter()
            .map(|(tp, offset)| NextOffset {
                next_offset: offset.unwrap_or_else(|| ends.get(&tp).copied().unwrap_or(0)),
                topic: tp.topic,
                partition: tp.partition,
            })
            .collect();
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    async fn replay(
        &mut self,
        target: ReplayTarget,
        cancel: &CancellationToken,
    ) -> Result<ReplayReport, Error> {
        let applied = match target {
            ReplayTarget::Offsets(o) => o,
            ReplayTarget::Timestamp(ts) => self.offsets_at(ts).await?,
        };
        if applied.is_empty() {
            return Err(Error::Config {
                reason: format!(
                    "nothing to replay: no partition of a topic matching `{}`",
                    self.runner.config.topics_pattern
                ),
            });
        }
        let partitions: Vec<TopicPartition> = applied
            .iter()
            .map(|o| TopicPartition::new(o.topic.clone(), o.partition))
            .collect();
        let dest = Arc::clone(&self.runner.destination);
        let group = self.runner.config.group_id.clone();
        let previous = self
            .runner
            .retrying(cancel, || dest.load_offsets(&group, &partitions))
            .await
            .map_err(|f| self.failure("loading the stored offsets", f))?;
        self.runner
            .retrying(cancel, || dest.rewind_offsets(&group, &applied))
            .await
            .map_err(|f| self.failure("storing the replay offsets", f))?;
        let assigned: HashSet<TopicPartition> = self.assignment()?.into_iter().collect();
        let mut starts = Vec::new();
        for o in &applied {
            let tp = TopicPartition::new(o.topic.clone(), o.partition);
            if assigned.contains(&tp) {
                self.positions.insert(tp.clone(), o.next_offset);
                starts.push((tp, StartOffset::At(o.next_offset)));
            }
        }
        self.consumer
            .seek_and_resume(&starts)
            .await
            .map_err(|source| Error::Kafka {
                op: "seek to the replay offsets",
                source,
            })?;
        if self.runner.shared.paused.load(Ordering::Relaxed) {
            let sought: Vec<TopicPartition> = starts.into_iter().map(|(tp, _)| tp).collect();
            self.consumer
                .pause(&sought)
                .map_err(|source| Error::Kafka {
                    op: "keep replayed partitions paused",
                    source,
                })?;
        }
        tracing::info!(
            destination = dest.name(),
            partitions = applied.len(),
            "Offsets replayed by an operator"
        );
        Ok(ReplayReport { previous, applied })
    }

    async fn reapply(
        &mut self,
        events: Vec<Reapply>,
        cancel: &CancellationToken,
    ) -> Vec<Result<(), String>> {
        let dest = Arc::clone(&self.runner.destination);
        let group = self.runner.config.group_id.clone();
        let mut out = Vec::with_capacity(events.len());
        for r in events {
            let (event, shape) = match envelope::decode(&r.payload) {
                Ok(x) => x,
                Err(reason) => {
                    out.push(Err(format!("not a change envelope: {reason}")));
                    continue;
                }
            };
            if let Err(f) = self
                .runner
                .retrying(cancel, || dest.prepare_table(&shape))
                .await
            {
                out.push(Err(self.failure("preparing the table", f).to_string()));
                continue;
            }
            let table = format!("{}.{}", shape.keyspace, shape.table);
            let op = event.op.as_str();
            let batch = TableBatch {
                shape,
                events: vec![BatchEvent {
                    event,
                    source: r.source,
                    payload_bytes: r.payload.len(),
                }],
                next_offsets: Vec::new(),
            };
            match self
                .runner
                .retrying(cancel, || dest.write_batch(&group, &batch))
                .await
            {
                Ok(WriteOutcome::Written { .. }) => {
                    self.runner.metrics.rows_written(&table, op).inc();
                    out.push(Ok(()));
                }
                Ok(WriteOutcome::Rejected(rejections)) => out.push(Err(rejections
                    .into_iter()
                    .map(|r| r.reason)
                    .collect::<Vec<_>>()
                    .join("; "))),
                Err(f) => out.push(Err(self.failure("writing", f).to_string())),
            }
        }
        out
    }

    async fn on_message(
        &mut self,
        m: InboundMessage,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        let topic = m.topic.clone();
        let Some(payload) = m.payload else {
            // A Kafka tombstone carries no change; just move past it.
            self.pending
                .entry(topic.clone())
                .or_insert_with(Pending::new)
                .next
                .insert(m.partition, m.offset + 1);
            return Ok(());
        };
        let raw = RawMessage {
            key: m.key,
            payload,
            headers: m.headers,
        };
        match envelope::decode(&raw.payload) {
            Ok((event, shape)) => {
                let size = raw.payload.len();
                let p = self
                    .pending
                    .entry(topic.clone())
                    .or_insert_with(Pending::new);
                match &mut p.shape {
                    Some(s) => {
                        s.merge(&shape);
                    }
                    None => p.shape = Some(shape),
                }
                p.events.push(BatchEvent {
                    event,
                    source: SourceOffset {
                        topic: topic.clone(),
                        partition: m.partition,
                        offset: m.offset,
                    },
                    payload_bytes: size,
                });
                p.raws.push(raw);
                p.bytes += size;
                p.next.insert(m.partition, m.offset + 1);
            }
            Err(reason) => {
                let error = Error::Envelope {
                    topic: topic.clone(),
                    partition: m.partition,
                    offset: m.offset,
                    reason,
                };
                self.runner.metrics.errors(ErrorClass::Poison).inc();
                let source = SourceOffset {
                    topic: topic.clone(),
                    partition: m.partition,
                    offset: m.offset,
                };
                let now = now_ms();
                self.dead_letter(
                    &raw,
                    &source,
                    None,
                    &error.to_string(),
                    FailureContext {
                        class: ErrorClass::Poison,
                        retries: 0,
                        first_ms: now,
                    },
                    PayloadFormat::Raw,
                )
                .await?;
                self.pending
                    .entry(topic.clone())
                    .or_insert_with(Pending::new)
                    .next
                    .insert(m.partition, m.offset + 1);
            }
        }
        let batch = self.runner.batch_config();
        let parallelism = self.runner.config.parallelism;
        let assigned = self.assigned.get(&topic).map_or(0, BTreeSet::len);
        let full = self.pending.get(&topic).is_some_and(|p| {
            // Sized for one write per assigned partition (up to `parallelism`): Kafka delivers a
            // backlog partition by partition, so a batch sized by the partitions seen so far
            // would rarely span more than one.
            let writes = p.next.len().max(assigned).clamp(1, parallelism.max(1));
            p.events.len() >= batch.max_rows as usize * writes
                || p.bytes as u64 >= batch.max_bytes.saturating_mul(writes as u64)
        });
        if full {
            self.flush(&topic, cancel).await?;
        }
        Ok(())
    }

    async fn dead_letter(
        &self,
        raw: &RawMessage,
        source: &SourceOffset,
        correlation_id: Option<String>,
        message: &str,
        ctx: FailureContext,
        format: PayloadFormat,
    ) -> Result<(), Error> {
        let letter = DeadLetter {
            payload: raw.payload.clone(),
            payload_format: format,
            error_message: message.to_owned(),
            error_class: ctx.class,
            stage: self.runner.config.stage.clone(),
            destination: Some(self.runner.destination.name().to_owned()),
            retry_count: ctx.retries,
            first_failure_at_ms: ctx.first_ms,
            last_failure_at_ms: now_ms(),
            topic: source.topic.clone(),
            partition: source.partition,
            offset: source.offset,
            correlation_id: correlation_id.clone(),
        };
        let bytes = letter.to_json().map_err(|e| Error::Destination {
            destination: self.runner.destination.name().to_owned(),
            class: ErrorClass::Fatal,
            message: format!("serializing a dead letter: {e}"),
        })?;
        let mut headers = raw.headers.clone();
        if let Some(id) = &correlation_id
            && cdc_kafka::header_value(&headers, HEADER_CORRELATION_ID).is_none()
        {
            headers.push((HEADER_CORRELATION_ID.to_owned(), id.clone().into_bytes()));
        }
        // The dead letter must be durable before the offsets move past the event.
        let topic = &self.runner.config.dlq_topic;
        let send = || async {
            self.dlq
                .send(topic, None, raw.key.as_deref(), Some(&bytes), &headers)
                .await?
                .await
        };
        send.retry(
            ExponentialBuilder::default()
                .with_max_times(10)
                .with_max_delay(Duration::from_secs(10))
                .with_jitter(),
        )
        .sleep(tokio::time::sleep)
        .when(|e: &cdc_kafka::Error| e.class() == cdc_kafka::ErrorClass::Retriable)
        .await
        .map_err(|source| Error::Kafka {
            op: "dead-letter",
            source,
        })?;
        self.runner.metrics.dlq_events.inc();
        tracing::warn!(
            topic = %source.topic, partition = source.partition, offset = source.offset,
            correlation_id = correlation_id.as_deref().unwrap_or(""),
            error_class = %ctx.class, dlq_topic = %topic,
            "Event dead-lettered"
        );
        Ok(())
    }

    async fn flush(&mut self, topic: &str, cancel: &CancellationToken) -> Result<(), Error> {
        let Some(p) = self.pending.remove(topic) else {
            return Ok(());
        };
        let shape = match p.shape {
            Some(s) => s,
            None => match Topic::parse(topic) {
                Ok(Topic::Table {
                    keyspace, table, ..
                }) => TableShape {
                    keyspace,
                    table,
                    dropped: Default::default(),
                    columns: Vec::new(),
                },
                _ => TableShape {
                    keyspace: String::new(),
                    table: topic.to_owned(),
                    dropped: Default::default(),
                    columns: Vec::new(),
                },
            },
        };
        let next_offsets: Vec<NextOffset> = p
            .next
            .iter()
            .map(|(&partition, &next_offset)| NextOffset {
                topic: topic.to_owned(),
                partition,
                next_offset,
            })
            .collect();
        let batch = TableBatch {
            shape,
            events: p.events,
            next_offsets,
        };
        // Closed when this flush returns: the batch is written and its offsets stored.
        let _spans = write_spans(self.runner.destination.name(), &batch, &p.raws);
        let mut batch = batch;
        let mut raws = p.raws;
        if !batch.events.is_empty() {
            let dest = Arc::clone(&self.runner.destination);
            let first_failure = now_ms();
            loop {
                match self
                    .runner
                    .retrying(cancel, || dest.prepare_table(&batch.shape))
                    .await
                {
                    Ok(()) => break,
                    Err(WriteFailure::Cancelled) => return Ok(()),
                    Err(WriteFailure::Exhausted { error, retries })
                        if dest.is_overloaded(&error) =>
                    {
                        // Refusing connections: the batch goes to the DLQ; its offsets are
                        // stored (below) once the destination takes a write again.
                        self.dead_letter_exhausted(
                            &mut batch,
                            &mut raws,
                            &error,
                            retries,
                            first_failure,
                        )
                        .await?;
                        break;
                    }
                    Err(WriteFailure::Exhausted { .. }) => {
                        if !self.runner.wait_until_healthy(cancel).await {
                            return Ok(());
                        }
                    }
                    Err(WriteFailure::Poison(e) | WriteFailure::Fatal(e)) => {
                        return Err(Error::Destination {
                            destination: dest.name().to_owned(),
                            class: ErrorClass::Fatal,
                            message: format!(
                                "preparing {}.{}: {}",
                                batch.shape.keyspace,
                                batch.shape.table,
                                chain(&e)
                            ),
                        });
                    }
                }
            }
        }
        let partitions = batch.next_offsets.len();
        let committed = if self.runner.config.parallelism > 1 && partitions > 1 {
            self.write_partition_groups(batch, raws, cancel).await?
        } else {
            self.write_converging(batch, raws, true, cancel).await?
        };
        if let Some(offsets) = committed {
            let kafka_offsets: Vec<PartitionOffset> = offsets
                .iter()
                .map(|o| PartitionOffset::new(o.topic.clone(), o.partition, o.next_offset))
                .collect();
            for o in &offsets {
                self.positions.insert(
                    TopicPartition::new(o.topic.clone(), o.partition),
                    o.next_offset,
                );
            }
            if let Err(e) = self.consumer.commit_offsets(&kafka_offsets) {
                tracing::debug!(error = %chain(&e), "Group offset commit for dashboards failed");
            }
        }
        Ok(())
    }

    /// Writes `batch` as up to `parallelism` concurrent atomic writes, one per group of
    /// partitions (each partition's events stay in order, in one group). A group whose first
    /// attempt does not succeed — nothing of it was stored: each write is atomic — then goes
    /// through [`write_converging`](Self::write_converging) (retries, dead letters, waiting for
    /// the destination), one group after another. Returns the offsets stored; on cancellation
    /// only those of the groups already written.
    async fn write_partition_groups(
        &mut self,
        batch: TableBatch,
        raws: Vec<RawMessage>,
        cancel: &CancellationToken,
    ) -> Result<Option<Vec<NextOffset>>, Error> {
        let groups = split_by_partition(batch, raws, self.runner.config.parallelism);
        let dest = Arc::clone(&self.runner.destination);
        let group_id = self.runner.config.group_id.clone();
        let attempts = futures::future::join_all(groups.iter().map(|(b, _)| {
            let (dest, group_id) = (&dest, &group_id);
            async move {
                let started = Instant::now();
                let result = dest.write_batch(group_id, b).await;
                (result, started.elapsed())
            }
        }))
        .await;
        let mut stored = Vec::new();
        for ((b, raws), (result, took)) in groups.into_iter().zip(attempts) {
            match result {
                Ok(WriteOutcome::Written { rows }) => {
                    self.record_success(&b, rows, took);
                    stored.extend(b.next_offsets);
                }
                other => {
                    if let Err(e) = &other {
                        tracing::debug!(destination = dest.name(), error = %chain(e), "Concurrent write failed; writing the group on its own");
                    }
                    match self.write_converging(b, raws, true, cancel).await? {
                        Some(offsets) => stored.extend(offsets),
                        None => return Ok(Some(stored)),
                    }
                }
            }
        }
        Ok(Some(stored))
    }

    /// Writes `batch` until its offsets are stored: dead-letters rejected events, splits on an
    /// unattributed poison error, waits while the destination is down. `None` when cancelled.
    async fn write_converging(
        &mut self,
        mut batch: TableBatch,
        mut raws: Vec<RawMessage>,
        allow_split: bool,
        cancel: &CancellationToken,
    ) -> Result<Option<Vec<NextOffset>>, Error> {
        let dest = Arc::clone(&self.runner.destination);
        let group = self.runner.config.group_id.clone();
        let first_failure = now_ms();
        loop {
            let started = Instant::now();
            let result = self
                .runner
                .retrying(cancel, || dest.write_batch(&group, &batch))
                .await;
            match result {
                Ok(WriteOutcome::Written { rows }) => {
                    self.record_success(&batch, rows, started.elapsed());
                    return Ok(Some(batch.next_offsets));
                }
                Ok(WriteOutcome::Rejected(mut rejections)) => {
                    rejections.sort_by_key(|r| std::cmp::Reverse(r.index));
                    rejections.dedup_by_key(|r| r.index);
                    self.runner
                        .metrics
                        .errors(ErrorClass::Poison)
                        .inc_by(rejections.len() as u64);
                    for r in rejections {
                        if r.index >= batch.events.len() {
                            continue;
                        }
                        let be = batch.events.remove(r.index);
                        let raw = raws.remove(r.index);
                        self.dead_letter(
                            &raw,
                            &be.source,
                            Some(be.event.correlation_id.clone()),
                            &r.reason,
                            FailureContext {
                                class: ErrorClass::Poison,
                                retries: 0,
                                first_ms: first_failure,
                            },
                            PayloadFormat::Json,
                        )
                        .await?;
                    }
                }
                Err(WriteFailure::Poison(e)) if allow_split && batch.events.len() > 1 => {
                    tracing::warn!(destination = dest.name(), error = %chain(&e), events = batch.events.len(), "Batch rejected without naming the event; writing one event at a time");
                    return Box::pin(self.write_singly(batch, raws, cancel)).await;
                }
                Err(WriteFailure::Poison(e)) => {
                    let message = chain(&e);
                    for (be, raw) in batch.events.drain(..).zip(raws.drain(..)) {
                        self.dead_letter(
                            &raw,
                            &be.source,
                            Some(be.event.correlation_id.clone()),
                            &message,
                            FailureContext {
                                class: ErrorClass::Poison,
                                retries: 0,
                                first_ms: first_failure,
                            },
                            PayloadFormat::Json,
                        )
                        .await?;
                    }
                }
                Err(WriteFailure::Exhausted { error, retries }) => {
                    // Down destination: wait for it (no dead letters). Reachable but still
                    // failing, or refusing connections for lack of slots (overloaded): the
                    // batch's events go to the DLQ and the partition moves on.
                    let overloaded = self.runner.destination.is_overloaded(&error);
                    let healthy =
                        overloaded || self.runner.destination.check_health().await.is_ok();
                    if overloaded {
                        tracing::warn!(destination = dest.name(), error = %chain(&error), retries, events = batch.events.len(), "Destination refuses connections after every retry; dead-lettering the batch");
                    }
                    if !healthy {
                        if !self.runner.wait_until_healthy(cancel).await {
                            return Ok(None);
                        }
                        continue;
                    }
                    self.dead_letter_exhausted(
                        &mut batch,
                        &mut raws,
                        &error,
                        retries,
                        first_failure,
                    )
                    .await?;
                }
                Err(WriteFailure::Fatal(e)) => {
                    self.runner
                        .health
                        .set_down(HEALTH_DESTINATION, "fatal destination error");
                    return Err(Error::Destination {
                        destination: dest.name().to_owned(),
                        class: ErrorClass::Fatal,
                        message: chain(&e),
                    });
                }
                Err(WriteFailure::Cancelled) => return Ok(None),
            }
        }
    }

    /// Dead-letters every event of `batch` after a retriable `error` outlasted the retries (the
    /// batch keeps its offsets, stored by the next write of it).
    async fn dead_letter_exhausted(
        &mut self,
        batch: &mut TableBatch,
        raws: &mut Vec<RawMessage>,
        error: &D::Error,
        retries: u32,
        first_failure: i64,
    ) -> Result<(), Error> {
        let message = chain(error);
        for (be, raw) in batch.events.drain(..).zip(raws.drain(..)) {
            self.dead_letter(
                &raw,
                &be.source,
                Some(be.event.correlation_id.clone()),
                &message,
                FailureContext {
                    class: ErrorClass::Retriable,
                    retries,
                    first_ms: first_failure,
                },
                PayloadFormat::Json,
            )
            .await?;
        }
        Ok(())
    }

    /// Writes the events of `batch` one by one (each with its own offset), then the batch's
    /// offsets; used to find the events behind an unattributed poison error.
    async fn write_singly(
        &mut self,
        batch: TableBatch,
        raws: Vec<RawMessage>,
        cancel: &CancellationToken,
    ) -> Result<Option<Vec<NextOffset>>, Error> {
        let TableBatch {
            shape,
            events,
            next_offsets,
        } = batch;
        for (be, raw) in events.into_iter().zip(raws) {
            let single = TableBatch {
                shape: shape.clone(),
                next_offsets: vec![NextOffset {
                    topic: be.source.topic.clone(),
                    partition: be.source.partition,
                    next_offset: be.source.offset + 1,
                }],
                events: vec![be],
            };
            if self
                .write_converging(single, vec![raw], false, cancel)
                .await?
                .is_none()
            {
                return Ok(None);
            }
        }
        let rest = TableBatch {
            shape,
            events: Vec::new(),
            next_offsets,
        };
        self.write_converging(rest, Vec::new(), false, cancel).await
    }

    fn record_success(&self, batch: &TableBatch, _rows: u64, took: Duration) {
        let m = &self.runner.metrics;
        m.batch_write_seconds.observe(took.as_secs_f64());
        self.runner.health.set_up(HEALTH_DESTINATION);
        m.destination_up.set(1);
        let table = format!("{}.{}", batch.shape.keyspace, batch.shape.table);
        let now = now_micros();
        let mut newest: Option<i64> = None;
        let mut by_op: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut bytes = 0u64;
        for be in &batch.events {
            *by_op.entry(be.event.op.as_str()).or_default() += 1;
            bytes += be.payload_bytes as u64;
            if let Some(wt) = be.event.max_writetime_micros() {
                newest = Some(newest.map_or(wt, |n: i64| n.max(wt)));
                m.end_to_end_latency_seconds
                    .observe(((now - wt).max(0)) as f64 / 1e6);
            }
        }
        for (op, n) in by_op {
            m.rows_written(&table, op).inc_by(n);
        }
        m.bytes_written.inc_by(bytes);
        if let Some(wt) = newest {
            m.lag_seconds.set(((now - wt).max(0)) as f64 / 1e6);
        }
        // FR-018: one info line per write — where from and how much, never values.
        if let (Some(first), Some(last)) = (batch.events.first(), batch.events.last()) {
            let offsets: Vec<String> = batch
                .next_offsets
                .iter()
                .map(|o| format!("{}:{}", o.partition, o.next_offset))
                .collect();
            tracing::info!(
                destination = self.runner.destination.name(),
                table = %table,
                topic = %first.source.topic,
                rows = batch.events.len(),
                bytes,
                next_offsets = %offsets.join(","),
                first_correlation_id = %first.event.correlation_id,
                last_correlation_id = %last.event.correlation_id,
                took_ms = took.as_millis() as u64,
                "Batch written"
            );
        }
    }
}

#[cfg(test)]
mod backlog_tests {
    use super::*;

    fn event_at(partition: i32, offset: i64) -> BatchEvent {
        BatchEvent {
            event: crate::compliance::EventFactory::new("ks", "t").insert(
                i32::try_from(offset).unwrap(),
                "fake-name",
                offset,
                1_000 + offset,
            ),
            source: SourceOffset {
                topic: "cdc.masked.ks.t".into(),
                partition,
                offset,
            },
            payload_bytes: 1,
        }
    }

    #[test]
    fn split_by_partition_keeps_each_partition_whole_and_in_order() {
        let events: Vec<BatchEvent> = [(0, 10), (1, 20), (2, 30), (0, 11), (1, 21), (0, 12)]
            .iter()
            .map(|&(p, o)| event_at(p, o))
            .collect();
        let raws: Vec<RawMessage> = events
            .iter()
            .map(|e| RawMessage {
                key: None,
                payload: e.source.offset.to_string().into_bytes(),
                headers: Vec::new(),
            })
            .collect();
        let next = |partition, next_offset| NextOffset {
            topic: "cdc.masked.ks.t".into(),
            partition,
            next_offset,
        };
        let batch = TableBatch {
            shape: TableShape {
                keyspace: "ks".into(),
                table: "t".into(),
                dropped: Default::default(),
                columns: Vec::new(),
            },
            events,
            // Partition 3 only advanced (its message was dead-lettered).
            next_offsets: vec![next(0, 13), next(1, 22), next(2, 31), next(3, 5)],
        };
        let groups = split_by_partition(batch, raws, 2);
        assert_eq!(groups.len(), 2);
        let offsets = |g: &(TableBatch, Vec<RawMessage>)| -> Vec<(i32, i64)> {
            g.0.events
                .iter()
                .map(|e| (e.source.partition, e.source.offset))
                .collect()
        };
        // Partitions 0 and 2 in the first group, 1 and 3 in the second; order kept.
        assert_eq!(
            offsets(&groups[0]),
            vec![(0, 10), (2, 30), (0, 11), (0, 12)]
        );
        assert_eq!(offsets(&groups[1]), vec![(1, 20), (1, 21)]);
        let stored: Vec<Vec<(i32, i64)>> = groups
            .iter()
            .map(|g| {
                g.0.next_offsets
                    .iter()
                    .map(|o| (o.partition, o.next_offset))
                    .collect()
            })
            .collect();
        assert_eq!(stored, vec![vec![(0, 13), (2, 31)], vec![(1, 22), (3, 5)]]);
        // Dead-letter copies travel with their events.
        for g in &groups {
            let want: Vec<Vec<u8>> =
                g.0.events
                    .iter()
                    .map(|e| e.source.offset.to_string().into_bytes())
                    .collect();
            let got: Vec<Vec<u8>> = g.1.iter().map(|r| r.payload.clone()).collect();
            assert_eq!(got, want);
        }
        // More groups than partitions: one per partition; one group: the batch whole.
        let one = TableBatch {
            shape: groups[0].0.shape.clone(),
            events: vec![event_at(0, 1)],
            next_offsets: vec![next(0, 2)],
        };
        let raws = vec![RawMessage {
            key: None,
            payload: Vec::new(),
            headers: Vec::new(),
        }];
        assert_eq!(split_by_partition(one, raws, 8).len(), 1);
    }

    #[test]
    fn backlog_sums_topics_per_partition_and_ignores_unassigned_ones() {
        let mut positions = BTreeMap::new();
        positions.insert(TopicPartition::new("cdc.masked.ks.a", 0), 10);
        positions.insert(TopicPartition::new("cdc.masked.ks.b", 0), 5);
        positions.insert(TopicPartition::new("cdc.masked.ks.a", 1), 7);
        let marks = vec![
            ("cdc.masked.ks.a".to_owned(), 0, 12),
            ("cdc.masked.ks.b".to_owned(), 0, 9),
            ("cdc.masked.ks.a".to_owned(), 1, 3), // behind a stored offset: never negative
            ("cdc.masked.ks.a".to_owned(), 2, 50), // not assigned here
        ];
        let got = backlog_by_partition(&positions, &marks);
        assert_eq!(got, BTreeMap::from([(0, 2 + 4), (1, 0)]));
    }
}
