//! The masking loop: collect a batch, mask it under one policy snapshot, store tokens in the vault,
//! then in one Kafka transaction produce the masked events (same partition), the dead letters and
//! the consumed offsets (`send_offsets_to_transaction` with the group metadata, so a zombie
//! instance is fenced). Any failure aborts the transaction and rewinds the batch's partitions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use cdc_kafka::{
    ConsumedOffsets, InboundMessage, ReadCommittedConsumer, RebalanceEvent, RebalanceEvents,
    StartOffset, TopicAdmin, TopicPartition, TransactionalProducer, TxnState,
};
use cdc_mask::audit::BatchAudit;
use cdc_mask::{CORRELATION_ID_HEADER, Masker, POLICY_VERSION_HEADER, TokenVault};
use cdc_model::{DeadLetter, ErrorClass, PayloadFormat, Topic};
use cdc_telemetry::metrics::results;
use cdc_telemetry::{HealthState, MaskerMetrics};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// Health dependency names shown by `/readyz`.
pub const KAFKA: &str = "kafka";
/// See [`KAFKA`].
pub const VAULT: &str = "token_vault";
/// Marked down while an operator has paused the intake (admin API).
pub const INTAKE: &str = "intake";

/// Where batch audit lines go.
pub trait AuditWriter: Send + Sync {
    /// Writes one JSON line.
    fn write_line(&self, line: &str);
}

/// Audit lines on stdout, beside the JSON logs.
#[derive(Debug, Default)]
pub struct StdoutAudit;

impl AuditWriter for StdoutAudit {
    fn write_line(&self, line: &str) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // Audit output is best effort against a closed stdout; the batch is already committed.
        let _ = writeln!(out, "{line}");
    }
}

/// Loop tuning.
#[derive(Debug, Clone)]
pub struct MaskerOptions {
    pub topics_pattern: String,
    pub dlq_topic: String,
    pub batch_max_events: usize,
    pub batch_linger: Duration,
    /// Replication factor of masked topics created here (partitions follow the raw topic).
    pub masked_topic_replication: i32,
    /// librdkafka topic settings for created masked topics (e.g. `retention.ms`).
    pub masked_topic_config: BTreeMap<String, String>,
    /// Vault write attempts after the first, with exponential backoff.
    pub vault_max_retries: usize,
    /// Pause after an aborted batch before it is redone.
    pub retry_delay: Duration,
}

/// The running stage.
pub struct Pipeline {
    pub options: MaskerOptions,
    pub consumer: ReadCommittedConsumer,
    pub rebalances: RebalanceEvents,
    pub producer: TransactionalProducer,
    pub admin: TopicAdmin,
    pub masker: watch::Receiver<Arc<Masker>>,
    pub vault: Option<Arc<dyn TokenVault>>,
    pub metrics: MaskerMetrics,
    pub health: HealthState,
    pub audit: Arc<dyn AuditWriter>,
}

struct Output {
    topic: String,
    partition: i32,
    key: Vec<u8>,
    payload: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    /// `masker.mask` of this event, closed when the batch's transaction is done.
    _span: tracing::Span,
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(i64::MAX)
}

fn table_of(topic: &str) -> Option<(String, String)> {
    match Topic::parse(topic).ok()? {
        Topic::Table {
            keyspace, table, ..
        } => Some((keyspace, table)),
        _ => None,
    }
}

const BACKLOG_INTERVAL: Duration = Duration::from_secs(5);

const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// `masker.mask`: consume, mask and produce one event under policy `policy_version`, a child of
/// the capture's span (from the `traceparent` header). Topic, offsets and the policy version only,
/// never values. `Span::none()` without trace export or when the change's trace is not sampled.
fn mask_span(m: &InboundMessage, policy_version: u64) -> tracing::Span {
    if !cdc_telemetry::propagation::exporting() {
        return tracing::Span::none();
    }
    if cdc_telemetry::propagation::sampled_parent(&m.headers).is_none() {
        return tracing::Span::none();
    }
    let correlation_id = cdc_kafka::header_value(&m.headers, CORRELATION_ID_HEADER)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    let table = table_of(&m.topic).map_or_else(String::new, |(k, t)| format!("{k}.{t}"));
    let span = tracing::info_span!(
        parent: None,
        "masker.mask",
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.source.name = m.topic.as_str(),
        messaging.destination.partition.id = m.partition,
        messaging.kafka.offset = m.offset,
        table = table.as_str(),
        policy_version,
        correlation_id = correlation_id.as_str(),
    );
    cdc_telemetry::propagation::set_span_parent(&span, &m.headers);
    span
}

/// The input headers with the policy version set, and the trace context continued by the
/// event's `masker.mask` span (or passed through unchanged when that span is disabled).
fn output_headers(
    m: &InboundMessage,
    span: &tracing::Span,
    version: &[u8],
) -> Vec<(String, Vec<u8>)> {
    let mut headers: Vec<(String, Vec<u8>)> = m
        .headers
        .iter()
        .filter(|(k, _)| k != POLICY_VERSION_HEADER && !TRACE_HEADERS.contains(&k.as_str()))
        .cloned()
        .collect();
    let before = headers.len();
    cdc_telemetry::propagation::inject_span(span, &mut headers);
    if headers.len() == before {
        headers.extend(
            m.headers
                .iter()
                .filter(|(k, _)| TRACE_HEADERS.contains(&k.as_str()))
                .cloned(),
        );
    }
    headers.push((POLICY_VERSION_HEADER.to_owned(), version.to_vec()));
    headers
}

impl Pipeline {
    /// Runs until `cancel`; returns on a fatal error (e.g. fenced by a newer instance).
    pub async fn run(self, cancel: CancellationToken) -> Result<(), Error> {
        let (_keep, pause) = watch::channel(false);
        self.run_with_pause(cancel, pause).await
    }

    /// As [`Pipeline::run`], with an operator's pause switch (admin API): while it reads `true`
    /// no new batch starts (the one in flight commits first), the assigned partitions are paused
    /// (the consumer keeps polling, so the member stays in its group) and `/readyz` shows
    /// [`INTAKE`] down.
    pub async fn run_with_pause(
        mut self,
        cancel: CancellationToken,
        mut pause: watch::Receiver<bool>,
    ) -> Result<(), Error> {
        self.health.register(KAFKA);
        if self.vault.is_some() {
            self.health.register(VAULT);
        }
        self.producer.init().await?;
        // Dead letters are produced inside the batch transaction: the topic must exist first.
        self.admin
            .ensure_topic(
                &self.options.dlq_topic,
                1,
                self.options.masked_topic_replication,
                &BTreeMap::new(),
            )
            .await?;
        self.consumer
            .subscribe_pattern(&self.options.topics_pattern)?;
        self.health.set_up(KAFKA);
        self.metrics
            .policy_version
            .set(i64::try_from(self.masker.borrow().policy().version).unwrap_or(i64::MAX));
        let mut ensured: HashMap<String, String> = HashMap::new();
        // Next offset to read per partition, for the backlog gauge (refreshed every few seconds).
        let mut positions: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut backlog_checked = Instant::now();
        let mut consume_errors = cdc_kafka::ConsumeErrorPacer::new();
        loop {
            if *pause.borrow() {
                self.hold(&mut pause, &cancel).await?;
                if cancel.is_cancelled() {
                    break;
                }
            }
            let batch = tokio::select! {
                () = cancel.cancelled() => break,
                b = self.collect(&cancel, &mut pause, &mut consume_errors) => b?,
            };
            let batch = self.drop_revoked(batch);
            if batch.is_empty() {
                continue;
            }
            let started = Instant::now();
            match self.process(&batch, &mut ensured).await {
                Ok(()) => {
                    self.metrics
                        .processing_seconds
                        .observe(started.elapsed().as_secs_f64());
                    for m in &batch {
                        positions.insert((m.topic.clone(), m.partition), m.offset + 1);
                    }
                    if backlog_checked.elapsed() >= BACKLOG_INTERVAL {
                        backlog_checked = Instant::now();
                        self.update_backlog(&positions).await;
                    }
                }
                Err(e) => {
                    self.metrics.transactions_aborted.inc();
                    self.metrics.errors(e.class()).inc();
                    tracing::warn!(error = %e, class = e.class().as_str(), events = batch.len(), "Batch failed; aborting and rewinding");
                    // A producer librdkafka declared unusable (e.g. INVALID_TXN_STATE ending a
                    // transaction across a broker restart) is replaced; its open transaction is
                    // aborted by the new one's init, and the batch redone from its offsets.
                    let usable = if self.producer.state() == TxnState::Failed {
                        false
                    } else {
                        match self.producer.abort().await {
                            Ok(()) => true,
                            Err(abort) if abort.class() == ErrorClass::Fatal => {
                                tracing::error!(error = %abort, "Abort failed");
                                false
                            }
                            Err(abort) => {
                                tracing::error!(error = %abort, "Abort failed");
                                return Err(abort.into());
                            }
                        }
                    };
                    if !usable {
                        if cancel.is_cancelled() {
                            return Err(e);
                        }
                        self.replace_producer(&cancel).await?;
                    } else if e.class() == ErrorClass::Fatal {
                        self.health.set_down(KAFKA, e.to_string());
                        return Err(e);
                    }
                    self.rewind(&batch).await?;
                    tokio::time::sleep(self.options.retry_delay).await;
                }
            }
        }
        self.health.set_shutting_down();
        // Leave the group now (partitions move at once) and close clients off the runtime threads.
        let Pipeline {
            consumer,
            producer,
            admin,
            ..
        } = self;
        for (client, result) in [
            ("consumer", consumer.close().await),
            ("producer", producer.close().await),
            ("admin", admin.close().await),
        ] {
            if let Err(e) = result {
                tracing::warn!(client, error = %e, "Closing a Kafka client failed");
            }
        }
        Ok(())
    }

    /// Builds a new transactional producer for the same id and initialises it, retrying while
    /// Kafka is unreachable. Fails after a fencing (another instance owns the id).
    async fn replace_producer(&mut self, cancel: &CancellationToken) -> Result<(), Error> {
        self.health
            .set_down(KAFKA, "replacing the transactional producer");
        self.producer.reset().await?;
        let mut attempt: u32 = 0;
        loop {
            match self.producer.init().await {
                Ok(()) => break,
                Err(e) if e.class() == ErrorClass::Retriable && !cancel.is_cancelled() => {
                    attempt += 1;
                    let pause = (self.options.retry_delay * attempt).min(Duration::from_secs(10));
                    tracing::warn!(error = %e, attempt, "Initialising the new producer failed; retrying");
                    tokio::time::sleep(pause).await;
                }
                Err(e) => {
                    self.health.set_down(KAFKA, e.to_string());
                    return Err(e.into());
                }
            }
        }
        self.health.set_up(KAFKA);
        tracing::info!("Transactional producer replaced; redoing the batch");
        Ok(())
    }

    /// `cdc_masker_backlog_events`: committed raw events not yet masked, over the partitions
    /// this instance has worked on. Best effort: a failed watermark read keeps the last value.
    async fn update_backlog(&self, positions: &BTreeMap<(String, i32), i64>) {
        let topics: BTreeSet<&str> = positions.keys().map(|(t, _)| t.as_str()).collect();
        let mut backlog = 0i64;
        for topic in topics {
            match self.admin.high_watermarks(topic).await {
                Ok(marks) => {
                    for w in marks {
                        if let Some(pos) = positions.get(&(topic.to_owned(), w.partition)) {
                            backlog += (w.high - pos).max(0);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(topic, error = %e, "Backlog watermarks unavailable");
                    return;
                }
            }
        }
        self.metrics.backlog_events.set(backlog);
    }

    /// Up to `batch_max_events` messages; returns once the batch is full or `batch_linger` after
    /// its first message. Empty when a pause comes before the first message.
    async fn collect(
        &mut self,
        cancel: &CancellationToken,
        pause: &mut watch::Receiver<bool>,
        errors: &mut cdc_kafka::ConsumeErrorPacer,
    ) -> Result<Vec<InboundMessage>, Error> {
        let mut batch = Vec::new();
        let first = tokio::select! {
            m = self.consumer.recv() => m,
            // Nothing received yet, so nothing is lost by stopping here. (A dropped switch can
            // never pause: wait for nothing then.)
            paused = async { pause.wait_for(|p| *p).await.is_ok() } => {
                if paused {
                    return Ok(batch);
                }
                self.consumer.recv().await
            }
        };
        match first {
            Ok(first) => {
                errors.on_message();
                batch.push(first);
            }
            Err(e) => return self.consume_error(e.into(), batch, errors).await,
        }
        let deadline = tokio::time::Instant::now() + self.options.batch_linger;
        while batch.len() < self.options.batch_max_events {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep_until(deadline) => break,
                m = self.consumer.recv() => match m {
                    Ok(m) => batch.push(m),
                    // Keep what was read: those offsets are consumed and must be masked.
                    Err(e) => return self.consume_error(e.into(), batch, errors).await,
                },
            }
        }
        Ok(batch)
    }

    /// Waits while paused. A message can still come from a partition assigned during the pause:
    /// it is put back (sought) and its partition paused too, so nothing is skipped.
    async fn hold(
        &mut self,
        pause: &mut watch::Receiver<bool>,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        let assigned = self.consumer.assignment()?;
        self.consumer.pause(&assigned)?;
        self.health.set_down(
            INTAKE,
            "paused by an operator (`cdcctl` resume restarts it)",
        );
        tracing::info!(partitions = assigned.len(), "Intake paused by an operator");
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                r = pause.changed() => {
                    if r.is_err() || !*pause.borrow() {
                        break;
                    }
                }
                m = self.consumer.recv() => match m {
                    Ok(m) => {
                        let tp = TopicPartition::new(m.topic.clone(), m.partition);
                        self.consumer
                            .seek_and_resume(&[(tp.clone(), StartOffset::At(m.offset))])
                            .await?;
                        self.consumer.pause(&[tp])?;
                    }
                    Err(e) => {
                        let e: Error = e.into();
                        if e.class() == ErrorClass::Fatal {
                            self.health.set_down(KAFKA, e.to_string());
                            return Err(e);
                        }
                        tracing::warn!(error = %e, "Consume error while paused");
                        tokio::time::sleep(self.options.retry_delay).await;
                    }
                },
            }
        }
        let assigned = self.consumer.assignment()?;
        self.consumer.resume(&assigned)?;
        self.health.set_up(INTAKE);
        if !cancel.is_cancelled() {
            tracing::info!(partitions = assigned.len(), "Intake resumed by an operator");
        }
        Ok(())
    }

    /// A consumer error: fatal ones stop the stage; others are logged (rate-limited) and the batch
    /// read so far is processed (after a short pause when it is empty, so a broken broker is not
    /// spun on, while errors queued during an outage drain fast: `cdc_kafka::ConsumeErrorPacer`).
    async fn consume_error(
        &self,
        e: Error,
        batch: Vec<InboundMessage>,
        errors: &mut cdc_kafka::ConsumeErrorPacer,
    ) -> Result<Vec<InboundMessage>, Error> {
        if e.class() == ErrorClass::Fatal {
            self.health.set_down(KAFKA, e.to_string());
            return Err(e);
        }
        let pace = errors.on_error(std::time::Instant::now());
        if let Some(not_logged) = pace.log {
            tracing::warn!(
                error = %e,
                class = e.class().as_str(),
                consecutive = pace.consecutive,
                not_logged,
                "Consume error"
            );
        }
        if batch.is_empty() {
            tokio::time::sleep(pace.pause).await;
        }
        Ok(batch)
    }

    /// Drops messages of partitions revoked while the batch was collected: their new owner
    /// resumes from the committed offset.
    fn drop_revoked(&mut self, mut batch: Vec<InboundMessage>) -> Vec<InboundMessage> {
        let mut revoked = BTreeSet::new();
        while let Some(ev) = self.rebalances.try_recv() {
            match ev {
                RebalanceEvent::Revoked { partitions } => {
                    revoked.extend(partitions.into_iter().map(|tp| (tp.topic, tp.partition)));
                }
                RebalanceEvent::Assigned { partitions, .. } => {
                    self.metrics.kafka.rebalances.inc();
                    for tp in partitions {
                        revoked.remove(&(tp.topic, tp.partition));
                    }
                }
                RebalanceEvent::Failed { reason } => {
                    tracing::warn!(reason, "Rebalance failed");
                }
                _ => {}
            }
        }
        if !revoked.is_empty() {
            batch.retain(|m| !revoked.contains(&(m.topic.clone(), m.partition)));
        }
        batch
    }

    async fn rewind(&self, batch: &[InboundMessage]) -> Result<(), Error> {
        let mut first: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for m in batch {
            first
                .entry((m.topic.clone(), m.partition))
                .and_modify(|o| *o = (*o).min(m.offset))
                .or_insert(m.offset);
        }
        let assigned: BTreeSet<(String, i32)> = self
            .consumer
            .assignment()?
            .into_iter()
            .map(|tp| (tp.topic, tp.partition))
            .collect();
        let starts: Vec<(TopicPartition, StartOffset)> = first
            .into_iter()
            .filter(|(k, _)| assigned.contains(k))
            .map(|((t, p), o)| (TopicPartition::new(t, p), StartOffset::At(o)))
            .collect();
        self.consumer.seek_and_resume(&starts).await?;
        Ok(())
    }

    async fn masked_topic_for(
        &self,
        raw: &str,
        ensured: &mut HashMap<String, String>,
    ) -> Result<String, Error> {
        if let Some(t) = ensured.get(raw) {
            return Ok(t.clone());
        }
        let (ks, table) = table_of(raw).ok_or_else(|| Error::Topic {
            topic: raw.to_owned(),
            source: cdc_model::Error::Json {
                path: "topic".into(),
                reason: "not a cdc.raw.<keyspace>.<table> topic".into(),
            },
        })?;
        let masked = cdc_model::masked_topic(&ks, &table).map_err(|source| Error::Topic {
            topic: raw.to_owned(),
            source,
        })?;
        let partitions = i32::try_from(self.admin.describe(raw).await?.partitions.len())
            .unwrap_or(i32::MAX)
            .max(1);
        self.admin
            .ensure_topic(
                &masked,
                partitions,
                self.options.masked_topic_replication,
                &self.options.masked_topic_config,
            )
            .await?;
        ensured.insert(raw.to_owned(), masked.clone());
        Ok(masked)
    }

    async fn process(
        &mut self,
        batch: &[InboundMessage],
        ensured: &mut HashMap<String, String>,
    ) -> Result<(), Error> {
        // One policy snapshot per batch: a reload applies to later batches only.
        let masker = Arc::clone(&self.masker.borrow());
        let version = masker.policy().version;
        let version_bytes = version.to_string().into_bytes();
        let mut audit = BatchAudit::new(version, self.producer.transactional_id());
        let mut outputs: Vec<(usize, Output, Vec<cdc_mask::MaskedField>, String)> = Vec::new();
        let mut entries = Vec::new();
        let mut dead: Vec<(usize, cdc_mask::Error)> = Vec::new();
        let mut newest_micros: Option<i64> = None;
        for (i, m) in batch.iter().enumerate() {
            let span = mask_span(m, version);
            let result = match &m.payload {
                Some(p) => masker.mask_envelope(p),
                None => Err(cdc_mask::Error::Codec(cdc_model::Error::Json {
                    path: "$".into(),
                    reason: "empty (tombstone) message".into(),
                })),
            };
            match result {
                Ok((payload, masked)) => {
                    let topic = match self.masked_topic_for(&m.topic, ensured).await {
                        Ok(t) => t,
                        // A raw topic without a masked counterpart: dead-letter, don't loop.
                        Err(Error::Topic { source, .. }) => {
                            dead.push((i, cdc_mask::Error::Codec(source)));
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let headers = output_headers(m, &span, &version_bytes);
                    entries.extend(masked.vault_entries.iter().cloned());
                    newest_micros = newest_micros.max(masked.event.max_writetime_micros());
                    let table = format!("{}.{}", masked.schema.keyspace, masked.schema.table);
                    outputs.push((
                        i,
                        Output {
                            topic,
                            partition: m.partition,
                            key: masked.event.key_string().into_bytes(),
                            payload,
                            headers,
                            _span: span,
                        },
                        masked.fields,
                        table,
                    ));
                }
                Err(e) => dead.push((i, e)),
            }
        }
        if !entries.is_empty()
            && let Err(e) = self.store_tokens(&entries).await
        {
            // A misconfigured vault (credentials, missing schema) stops the stage; an outage
            // beyond retries sends the events that needed it to the DLQ. Never out unmasked.
            if e.class() == ErrorClass::Fatal {
                return Err(e.into());
            }
            {
                let (needs_vault, rest): (Vec<_>, Vec<_>) = outputs
                    .into_iter()
                    .partition(|(_, _, fields, _)| fields.iter().any(|f| f.strategy == "tokenize"));
                outputs = rest;
                for (i, _, fields, table) in needs_vault {
                    let column = fields
                        .iter()
                        .find(|f| f.strategy == "tokenize")
                        .map_or_else(String::new, |f| f.column.clone());
                    dead.push((
                        i,
                        cdc_mask::Error::Unmaskable {
                            table,
                            column,
                            reason: format!("token vault unavailable after retries: {e}"),
                        },
                    ));
                }
            }
        }
        let mut offsets = ConsumedOffsets::new();
        for m in batch {
            offsets.record(&m.topic, m.partition, m.offset);
        }
        self.producer.begin().await?;
        for (i, out, fields, table) in &outputs {
            let _pending = self
                .producer
                .send(
                    &out.topic,
                    Some(out.partition),
                    Some(&out.key),
                    Some(&out.payload),
                    &out.headers,
                )
                .await?;
            let cid = cdc_kafka::header_value(&batch[*i].headers, CORRELATION_ID_HEADER)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_else(|| {
                    format!(
                        "{}:{}:{}",
                        batch[*i].topic, batch[*i].partition, batch[*i].offset
                    )
                });
            audit.masked(table, &cid, fields);
        }
        let failed_at = now_ms();
        for (i, e) in &dead {
            let m = &batch[*i];
            let table =
                table_of(&m.topic).map_or_else(|| m.topic.clone(), |(k, t)| format!("{k}.{t}"));
            let cid = cdc_kafka::header_value(&m.headers, CORRELATION_ID_HEADER)
                .map(|v| String::from_utf8_lossy(v).into_owned());
            let letter = DeadLetter {
                payload: m.payload.clone().unwrap_or_default(),
                payload_format: if matches!(e, cdc_mask::Error::Codec(_)) {
                    PayloadFormat::Raw
                } else {
                    PayloadFormat::Json
                },
                error_message: e.to_string(),
                error_class: e.class(),
                stage: "masker".into(),
                destination: None,
                retry_count: 0,
                first_failure_at_ms: failed_at,
                last_failure_at_ms: failed_at,
                topic: m.topic.clone(),
                partition: m.partition,
                offset: m.offset,
                correlation_id: cid.clone(),
            };
            let bytes = letter.to_json().map_err(Error::DeadLetter)?;
            let _pending = self
                .producer
                .send(
                    &self.options.dlq_topic,
                    None,
                    m.key.as_deref(),
                    Some(&bytes),
                    &m.headers,
                )
                .await?;
            tracing::warn!(table, topic = %m.topic, partition = m.partition, offset = m.offset, correlation_id = cid.as_deref().unwrap_or(""), error = %e, "Event dead-lettered");
            audit.refused(&table, cid.as_deref().unwrap_or(""), &e.to_string());
        }
        let group = self.consumer.group_metadata()?;
        self.producer
            .send_offsets(&offsets.to_vec(), &group)
            .await?;
        let committing = Instant::now();
        self.producer.commit().await?;
        self.metrics
            .kafka
            .transaction_commit_seconds
            .observe(committing.elapsed().as_secs_f64());

        self.metrics.transactions_committed.inc();
        self.metrics
            .policy_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        for (_, _, fields, table) in &outputs {
            self.metrics.events(table, results::MASKED).inc();
            for f in fields {
                self.metrics.masked_fields(f.strategy).inc();
            }
        }
        for (i, e) in &dead {
            let m = &batch[*i];
            let table = table_of(&m.topic)
                .map_or_else(|| "unknown".to_owned(), |(k, t)| format!("{k}.{t}"));
            self.metrics.events(&table, results::DLQ).inc();
            self.metrics.dlq_events.inc();
            self.metrics.errors(e.class()).inc();
        }
        if let Some(micros) = newest_micros {
            // Seconds between now and the source writetime of the newest event masked.
            self.metrics
                .lag_seconds
                .set((now_ms() as f64 / 1_000.0 - micros as f64 / 1_000_000.0).max(0.0));
        }
        self.audit.write_line(&audit.to_json_line());
        Ok(())
    }

    async fn store_tokens(&self, entries: &[cdc_mask::VaultEntry]) -> Result<(), cdc_mask::Error> {
        let Some(vault) = &self.vault else {
            return Err(cdc_mask::Error::UnknownToken);
        };
        let result = (|| async { vault.put(entries).await })
            .retry(
                ExponentialBuilder::default()
                    .with_jitter()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(2))
                    .with_max_times(self.options.vault_max_retries),
            )
            .when(|e: &cdc_mask::Error| e.class() == ErrorClass::Retriable)
            .await;
        match &result {
            Ok(_) => self.health.set_up(VAULT),
            Err(e) => self.health.set_down(VAULT, e.to_string()),
        }
        result.map(|_| ())
    }
}
