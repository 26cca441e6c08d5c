//! The driver every sink runs: consume `cdc.masked.*` (read_committed, pattern subscription, its
//! own group), seek each assigned partition to the offset stored in the destination, batch per
//! table by rows/bytes/linger, write each batch atomically with its offsets through the
//! [`Destination`], retry retriable failures with exponential backoff and jitter, dead-letter
//! poison events to `cdc.dlq.sink-<destination>` and move on, wait (without dead-lettering) while
//! the destination is unreachable, and measure everything with `SinkMetrics`.
//!
//! Kafka group commits happen after each write and only feed lag dashboards: the destination is
//! the source of truth for offsets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
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
            backlog_interval: Duration::from_secs(10),
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

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    cdc_kafka::error_chain(e)
}

/// The sink driver. Build it, then [`SinkRunner::run`] until the token is cancelled.
pub struct SinkRunner<D: Destination> {
    destination: Arc<D>,
    kafka: KafkaSettings,
    config: RunnerConfig,
    metrics: SinkMetrics,
    health: HealthState,
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
        SinkRunner {
            destination,
            kafka,
            config,
            metrics,
            health,
        }
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
        let mut worker = Worker {
            runner: &self,
            consumer,
            dlq,
            admin,
            pending: HashMap::new(),
            positions: BTreeMap::new(),
        };
        let result = worker.run_loop(&mut rebalances, &cancel).await;
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
        let mut delay = Duration::from_millis(self.config.retry.initial_backoff_ms.max(1));
        let cap = Duration::from_millis(self.config.retry.max_backoff_ms.max(1));
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
        let r = &self.config.retry;
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

/// Per-run state of the driver.
struct Worker<'r, D: Destination> {
    runner: &'r SinkRunner<D>,
    consumer: ReadCommittedConsumer,
    dlq: IdempotentProducer,
    admin: TopicAdmin,
    pending: HashMap<String, Pending>,
    /// Next offset stored in the destination per partition (for the backlog gauge).
    positions: BTreeMap<TopicPartition, i64>,
}

enum Step {
    Cancelled,
    Rebalance(Option<RebalanceEvent>),
    Linger,
    Backlog,
    Message(Result<InboundMessage, cdc_kafka::Error>),
}

impl<D: Destination> Worker<'_, D> {
    async fn run_loop(
        &mut self,
        rebalances: &mut cdc_kafka::RebalanceEvents,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        let linger = Duration::from_millis(self.runner.config.batch.linger_ms);
        let mut backlog_tick = tokio::time::interval(self.runner.config.backlog_interval);
        loop {
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
                _ = backlog_tick.tick() => Step::Backlog,
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
                Step::Backlog => self.refresh_backlog().await,
                Step::Message(Ok(m)) => self.on_message(m, cancel).await?,
                Step::Message(Err(e)) => {
                    let class = e.class();
                    tracing::warn!(error = %chain(&e), error_class = class.as_str(), "Kafka consume failed");
                    if class == cdc_kafka::ErrorClass::Fatal {
                        self.runner
                            .health
                            .set_down(HEALTH_KAFKA, "fatal consumer error");
                        return Err(Error::Kafka {
                            op: "consume",
                            source: e,
                        });
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
                    })
            }
            RebalanceEvent::Revoked { partitions } => {
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
        let full = self.pending.get(&topic).is_some_and(|p| {
            p.events.len() >= self.runner.config.batch.max_rows as usize
                || p.bytes as u64 >= self.runner.config.batch.max_bytes
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
                    columns: Vec::new(),
                },
                _ => TableShape {
                    keyspace: String::new(),
                    table: topic.to_owned(),
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
        if !batch.events.is_empty() {
            let dest = Arc::clone(&self.runner.destination);
            loop {
                match self
                    .runner
                    .retrying(cancel, || dest.prepare_table(&batch.shape))
                    .await
                {
                    Ok(()) => break,
                    Err(WriteFailure::Cancelled) => return Ok(()),
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
        let committed = self.write_converging(batch, p.raws, true, cancel).await?;
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
                    // failing: the batch's events go to the DLQ and the partition moves on.
                    let healthy = self.runner.destination.check_health().await.is_ok();
                    if !healthy {
                        if !self.runner.wait_until_healthy(cancel).await {
                            return Ok(None);
                        }
                        continue;
                    }
                    let message = chain(&error);
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
    }

    async fn refresh_backlog(&mut self) {
        let topics: Vec<String> = {
            let mut t: Vec<String> = self.positions.keys().map(|tp| tp.topic.clone()).collect();
            t.dedup();
            t
        };
        for topic in topics {
            match self.runner_admin_watermarks(&topic).await {
                Ok(marks) => {
                    for w in marks {
                        let tp = TopicPartition::new(topic.clone(), w.partition);
                        if let Some(pos) = self.positions.get(&tp) {
                            self.runner
                                .metrics
                                .backlog_events(w.partition)
                                .set((w.high - pos).max(0));
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(topic = %topic, error = %chain(&e), "Reading high watermarks failed")
                }
            }
        }
    }

    async fn runner_admin_watermarks(
        &self,
        topic: &str,
    ) -> Result<Vec<cdc_kafka::PartitionWatermarks>, cdc_kafka::Error> {
        self.admin.high_watermarks(topic).await
    }
}
