//! The capture loop (CASSANDRA_COMMITLOG.md §1.7; ARCHITECTURE §5 "capture").
//!
//! Each pass lists `cdc_raw`, walks segments with an idx file in ascending id order from the
//! current position, reads each one only up to its `_cdc.idx` offset (to the end once COMPLETED),
//! decodes mutations after the checkpoint, builds events and queues them. A Kafka transaction
//! holds a batch of events *and* the new position (written to the positions topic, key = host id),
//! so after a crash the next instance (same `transactional.id`, which fences this one) resumes
//! exactly after the last committed mutation. A mutation's events are never split across
//! transactions. Segments are deleted only when COMPLETED, fully read and their last position is
//! committed, unless `retain_processed_segments` is set.
//!
//! Unknown table ids and unknown columns trigger one schema refresh and a re-read from the
//! checkpoint; ids still unknown afterwards (system tables, other keyspaces, tables dropped before
//! they were seen) are skipped without further refreshes. A write to a known table with
//! `cdc = false` in a captured keyspace triggers one refresh per `_cdc.idx` read before it is
//! dropped, so a table switched to `cdc = true` loses no write made after the ALTER (a write made
//! just before it but read after it is captured too). Undecodable mutations or values are
//! logged (segment and position, never values), counted in `cdc_capture_parse_errors_total` and
//! skipped: capture never stops on bad data. Before decoding up to a `_cdc.idx` offset, capture
//! compares `system.local.schema_version` with the one of its last refresh and refreshes on a
//! difference, so a column dropped and re-added with another type is decoded with the type in
//! force when the mutation was written (docs/schema-evolution.md).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backon::{BackoffBuilder, ExponentialBuilder};
use cdc_commitlog::{CdcIndex, MutationOutcome, ReadLimit, ReadOptions, SegmentEnd, SegmentReader};
use cdc_kafka::{
    HeaderPair, KafkaSettings, ProducerSettings, TopicAdmin, TransactionalProducer, TxnState,
};
use cdc_model::{CapturePosition, ErrorClass, TableSchema, json_codec, raw_topic};
use cdc_schema::{SchemaCatalog, SchemaHistory};
use cdc_telemetry::{CaptureMetrics, HealthState};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::dir_watch::DirWatch;
use crate::error::Error;
use crate::event_builder::{MutationContext, build_events};
use crate::position_store::{load_position, positions_topic_config};
use crate::segment_dir::{self, SegmentFiles};

pub use cdc_model::headers::{
    CORRELATION_ID as HEADER_CORRELATION_ID, SCHEMA_VERSION as HEADER_SCHEMA_VERSION,
};

/// Health dependency names.
pub const DEP_KAFKA: &str = "kafka";
pub const DEP_CASSANDRA: &str = "cassandra";
/// Marked down while an operator has paused the intake (admin API).
pub const DEP_INTAKE: &str = cdc_admin::HEALTH_INTAKE;

/// Decides per `(keyspace, table)` whether a CDC table is captured.
pub type TableFilter = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Everything the loop needs, already validated and resolved.
#[derive(Clone)]
pub struct CaptureSettings {
    pub cdc_raw_dir: PathBuf,
    /// Cluster name put in every event's source.
    pub cluster: String,
    pub host_id: Uuid,
    /// `capture-<host id>` in production; unique per test.
    pub transactional_id: String,
    /// `cdc.capture.positions` in production.
    pub positions_topic: String,
    pub poll_interval: Duration,
    pub batch_max_events: usize,
    /// Longest a non-full batch waits before it is committed.
    pub batch_linger: Duration,
    pub retain_processed_segments: bool,
    pub cdc_total_space_bytes: u64,
    pub table_filter: TableFilter,
    pub topic_partitions: i32,
    pub replication_factor: i32,
    /// Topic settings for created raw topics (e.g. `retention.ms`).
    pub raw_topic_config: BTreeMap<String, String>,
    /// Bound on Kafka admin and position reads.
    pub kafka_timeout: Duration,
    /// How often Kafka and Cassandra reachability is re-checked for `/readyz`.
    pub health_interval: Duration,
    /// How long a segment that is not COMPLETED, no longer grows and has newer segments with data
    /// is waited for before capture moves on (CASSANDRA_COMMITLOG.md §1.7 step 6).
    pub stale_segment_grace: Duration,
}

impl std::fmt::Debug for CaptureSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureSettings")
            .field("cdc_raw_dir", &self.cdc_raw_dir)
            .field("host_id", &self.host_id)
            .field("transactional_id", &self.transactional_id)
            .field("positions_topic", &self.positions_topic)
            .field("batch_max_events", &self.batch_max_events)
            .finish_non_exhaustive()
    }
}

/// One Kafka record ready to send.
#[derive(Debug, Clone)]
struct Prepared {
    topic: String,
    key: Vec<u8>,
    payload: Vec<u8>,
    headers: Vec<HeaderPair>,
    table: String,
    op: &'static str,
    max_writetime_micros: Option<i64>,
    /// `capture.publish`: opened when the change is read, closed when its transaction is done
    /// (the record is dropped); its context is in `headers`. Disabled without trace export.
    _span: tracing::Span,
}

/// Why a chunk stopped early to refresh the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshNeed {
    Table(Uuid),
    Column(Uuid),
    /// A captured-keyspace table known with `cdc = false`: it may have been switched on since the
    /// last refresh (an ALTER before the write), so check before dropping its changes.
    CdcFlag(Uuid),
}

/// What decoding part of a segment produced.
#[derive(Debug, Default)]
struct Chunk {
    messages: Vec<Prepared>,
    /// End of the last entry consumed (the new checkpoint), if any.
    last_end: Option<u64>,
    /// Why the reader stopped; `None` when the chunk stopped because it was full or for a refresh.
    end: Option<SegmentEnd>,
    refresh: Option<(RefreshNeed, u64)>,
    errors: Vec<Error>,
    mutations: u64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct ChunkInput<'a> {
    bytes: &'a [u8],
    segment_id: i64,
    limit: ReadLimit,
    resume_after: u64,
    max_messages: usize,
    /// A position at which the schema was already refreshed: unknowns there are final.
    refreshed_at: Option<(i64, u64)>,
    /// The schema was refreshed after the `_cdc.idx` read that set `limit`, so every entry up to
    /// the limit was written under a `cdc` flag the history already knows.
    schema_fresh: bool,
}

/// Pure apart from the history lookups: decodes entries after `resume_after` into messages.
fn decode_chunk(
    input: &ChunkInput<'_>,
    history: &SchemaHistory,
    settings: &CaptureSettings,
) -> Result<Chunk, Error> {
    let mut reader = SegmentReader::new(
        input.bytes,
        history,
        ReadOptions {
            limit: input.limit,
            resume_after: input.resume_after,
        },
    )?;
    let mut chunk = Chunk::default();
    let captured_at_ms = now_ms();
    let filter = |t: &TableSchema| (settings.table_filter)(&t.keyspace, &t.table);
    for item in reader.by_ref() {
        let entry = match item {
            Ok(entry) => entry,
            Err(e) => {
                chunk.errors.push(e.into());
                continue;
            }
        };
        let refreshed_here = input.refreshed_at == Some((input.segment_id, entry.start));
        match entry.result {
            Ok(MutationOutcome::Decoded(mutation)) => {
                if !input.schema_fresh && !refreshed_here {
                    let switched_off = mutation.partition_updates.iter().find_map(|u| {
                        history
                            .latest(u.table_id)
                            .filter(|t| !t.cdc && filter(t))
                            .map(|t| t.id)
                    });
                    if let Some(table_id) = switched_off {
                        chunk.refresh = Some((RefreshNeed::CdcFlag(table_id), entry.start));
                        return Ok(chunk);
                    }
                }
                let ctx = MutationContext {
                    cluster: &settings.cluster,
                    host_id: settings.host_id,
                    segment_id: input.segment_id,
                    position: u32::try_from(entry.end).unwrap_or(u32::MAX),
                    captured_at_ms,
                };
                let built = build_events(&mutation, history, &ctx, &filter);
                chunk.errors.extend(built.errors);
                for b in built.events {
                    match prepare(&b.event, &b.schema) {
                        Ok(p) => chunk.messages.push(p),
                        Err(e) => chunk.errors.push(e),
                    }
                }
            }
            Ok(MutationOutcome::UnknownTable { table_id }) => {
                if !history.is_known_unknown(table_id) {
                    if refreshed_here {
                        history.mark_unknown(table_id);
                    } else {
                        chunk.refresh = Some((RefreshNeed::Table(table_id), entry.start));
                        return Ok(chunk);
                    }
                }
            }
            Ok(_) => {}
            Err(cdc_commitlog::Error::UnknownColumn { table_id, .. }) if !refreshed_here => {
                chunk.refresh = Some((RefreshNeed::Column(table_id), entry.start));
                return Ok(chunk);
            }
            Err(e) => chunk.errors.push(e.into()),
        }
        chunk.mutations += 1;
        chunk.last_end = Some(entry.end);
        if chunk.messages.len() >= input.max_messages {
            return Ok(chunk);
        }
    }
    chunk.end = reader.end();
    Ok(chunk)
}

fn prepare(event: &cdc_model::ChangeEvent, schema: &TableSchema) -> Result<Prepared, Error> {
    let encode_err = |source| Error::Encode {
        correlation_id: event.correlation_id.clone(),
        source: Box::new(source),
    };
    let topic = raw_topic(&event.source.keyspace, &event.source.table).map_err(encode_err)?;
    let payload = json_codec::encode_event(event, schema).map_err(encode_err)?;
    let mut headers = vec![
        (
            HEADER_CORRELATION_ID.to_owned(),
            event.correlation_id.clone().into_bytes(),
        ),
        (
            HEADER_SCHEMA_VERSION.to_owned(),
            schema.version.to_string().into_bytes(),
        ),
    ];
    let span = publish_span(event, &topic);
    cdc_telemetry::propagation::inject_span(&span, &mut headers);
    Ok(Prepared {
        topic,
        key: event.key_string().into_bytes(),
        payload,
        headers,
        table: format!("{}.{}", event.source.keyspace, event.source.table),
        op: event.op.as_str(),
        max_writetime_micros: event.max_writetime_micros(),
        _span: span,
    })
}

/// The root span of one change's trace (capture → masker → sinks, through the `traceparent`
/// header): where it was read (keyspace, table, segment, position) and where it is published.
/// Names and positions only, never cell values. `Span::none()` without trace export.
fn publish_span(event: &cdc_model::ChangeEvent, topic: &str) -> tracing::Span {
    if !cdc_telemetry::propagation::exporting() {
        return tracing::Span::none();
    }
    let s = &event.source;
    tracing::info_span!(
        parent: None,
        "capture.publish",
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.destination.name = topic,
        db.system.name = "cassandra",
        keyspace = s.keyspace.as_str(),
        table = s.table.as_str(),
        segment_id = s.segment_id,
        segment_position = s.segment_position,
        op = event.op.as_str(),
        schema_version = s.schema_version,
        correlation_id = event.correlation_id.as_str(),
    )
}

/// The batch being assembled: messages of whole mutations and the position after them.
#[derive(Debug, Default)]
struct Pending {
    messages: Vec<Prepared>,
    position: Option<(i64, u64)>,
    since: Option<Instant>,
    /// Segments read to their end (COMPLETED): deletable once a position at or past them commits.
    finished: BTreeSet<i64>,
}

/// The capture service state.
pub struct CaptureRunner {
    settings: CaptureSettings,
    kafka: KafkaSettings,
    producer: TransactionalProducer,
    admin: TopicAdmin,
    catalog: Arc<SchemaCatalog>,
    history: Arc<SchemaHistory>,
    metrics: CaptureMetrics,
    health: HealthState,
    committed: Option<CapturePosition>,
    ensured_topics: HashSet<String>,
    pending: Pending,
    finished: BTreeSet<i64>,
    last_commit: Instant,
    refreshed_at: Option<(i64, u64)>,
    /// Last idx state seen per segment and the checkpoint then: no re-read while unchanged.
    idle: BTreeMap<i64, (CdcIndex, u64)>,
    /// Not-COMPLETED segments with newer data beside them: idx state and since when unchanged.
    stalled: BTreeMap<i64, (CdcIndex, Instant)>,
    /// Segments given up as never completing (kept on disk).
    abandoned: BTreeSet<i64>,
    /// Segments whose header cannot be read (kept on disk).
    unreadable: BTreeSet<i64>,
    /// An operator's pause switch (admin API); `None` = never paused.
    pause: Option<tokio::sync::watch::Receiver<bool>>,
}

impl std::fmt::Debug for CaptureRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureRunner")
            .field("settings", &self.settings)
            .field("committed", &self.committed)
            .finish_non_exhaustive()
    }
}

impl CaptureRunner {
    /// Prepares everything: positions topic, producer (fencing any previous instance), the last
    /// committed position, a first schema read.
    pub async fn start(
        settings: CaptureSettings,
        kafka: KafkaSettings,
        producer_settings: &ProducerSettings,
        catalog: Arc<SchemaCatalog>,
        metrics: CaptureMetrics,
        health: HealthState,
    ) -> Result<Self, Error> {
        if settings.batch_max_events == 0 {
            return Err(Error::Settings {
                reason: "batch_max_events must be >= 1".into(),
            });
        }
        health.register(DEP_KAFKA);
        health.register(DEP_CASSANDRA);
        let admin = TopicAdmin::new(&kafka, settings.kafka_timeout)?;
        admin
            .ensure_topic(
                &settings.positions_topic,
                1,
                settings.replication_factor,
                &positions_topic_config(),
            )
            .await?;
        let mut producer =
            TransactionalProducer::new(&kafka, producer_settings, &settings.transactional_id)?;
        producer.init().await?;
        health.set_up(DEP_KAFKA);
        let committed = load_position(
            &kafka,
            &admin,
            &settings.positions_topic,
            &settings.host_id.to_string(),
            settings.kafka_timeout,
        )
        .await?;
        catalog.refresh().await?;
        health.set_up(DEP_CASSANDRA);
        tracing::info!(
            transactional_id = %settings.transactional_id,
            segment_id = committed.map(|p| p.segment_id),
            position = committed.map(|p| p.position),
            "Capture starting"
        );
        let history = catalog.history();
        Ok(CaptureRunner {
            settings,
            kafka,
            producer,
            admin,
            catalog,
            history,
            metrics,
            health,
            committed,
            ensured_topics: HashSet::new(),
            pending: Pending::default(),
            finished: BTreeSet::new(),
            last_commit: Instant::now(),
            refreshed_at: None,
            idle: BTreeMap::new(),
            stalled: BTreeMap::new(),
            abandoned: BTreeSet::new(),
            unreadable: BTreeSet::new(),
            pause: None,
        })
    }

    /// Lets an operator pause the intake: while `pause` reads `true` no new segment is read and
    /// the batch in flight is committed (the transaction semantics are unchanged: a batch and its
    /// position commit together). `/readyz` shows [`DEP_INTAKE`] down meanwhile.
    pub fn with_pause_signal(mut self, pause: tokio::sync::watch::Receiver<bool>) -> Self {
        self.pause = Some(pause);
        self
    }

    fn is_paused(&self) -> bool {
        self.pause.as_ref().is_some_and(|p| *p.borrow())
    }

    /// Commits what is pending, then waits until resumed or cancelled.
    async fn hold(&mut self, cancel: &CancellationToken) {
        if let Err(e) = self.commit_pending(true).await {
            tracing::warn!(error = %e, error_class = e.class().as_str(), "Committing before the pause failed; redoing from the last committed position after it");
            self.reset_to_committed();
        }
        self.health.set_down(
            DEP_INTAKE,
            "paused by an operator (`cdcctl` resume restarts it)",
        );
        tracing::info!("Intake paused by an operator");
        if let Some(mut pause) = self.pause.clone() {
            tokio::select! {
                () = cancel.cancelled() => {}
                _ = pause.wait_for(|p| !*p) => {}
            }
        }
        self.health.set_up(DEP_INTAKE);
        if !cancel.is_cancelled() {
            tracing::info!("Intake resumed by an operator");
        }
    }

    /// The last committed position.
    pub fn committed(&self) -> Option<CapturePosition> {
        self.committed
    }

    /// Runs until `cancel` fires, then commits what is pending (within the caller's deadline).
    pub async fn run(mut self, cancel: CancellationToken) -> Result<(), Error> {
        let health_task = self.spawn_health(cancel.clone());
        let result = self.run_loop(&cancel).await;
        health_task.abort();
        let drained = if result.is_ok() {
            self.commit_pending(true).await
        } else {
            Ok(())
        };
        self.health.set_shutting_down();
        if self.producer.state() == TxnState::InTransaction
            || self.producer.state() == TxnState::AbortRequired
        {
            let _ = self.producer.abort().await;
        }
        let _ = self.producer.close().await;
        result.and(drained)
    }

    fn spawn_health(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let catalog = Arc::clone(&self.catalog);
        let health = self.health.clone();
        let kafka = self.kafka.clone();
        let topic = self.settings.positions_topic.clone();
        let interval = self.settings.health_interval;
        let timeout = self.settings.kafka_timeout;
        tokio::spawn(async move {
            let admin = TopicAdmin::new(&kafka, timeout).ok();
            loop {
                match catalog.ping().await {
                    Ok(()) => health.set_up(DEP_CASSANDRA),
                    Err(e) => health.set_down(DEP_CASSANDRA, e.to_string()),
                }
                if let Some(admin) = &admin {
                    match admin.high_watermarks(&topic).await {
                        Ok(_) => health.set_up(DEP_KAFKA),
                        Err(e) => health.set_down(DEP_KAFKA, e.to_string()),
                    }
                }
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        })
    }

    async fn run_loop(&mut self, cancel: &CancellationToken) -> Result<(), Error> {
        // Consecutive failed passes back off exponentially (with jitter, capped); a good pass resets.
        let poll = self.settings.poll_interval;
        let backoff = move || {
            ExponentialBuilder::default()
                .with_min_delay(poll)
                .with_max_delay(Duration::from_secs(30))
                .with_jitter()
                .without_max_times()
                .build()
        };
        let mut delays = backoff();
        let watch = DirWatch::start(&self.settings.cdc_raw_dir);
        while !cancel.is_cancelled() {
            if self.is_paused() {
                self.hold(cancel).await;
                continue;
            }
            let delay = match self.pass(cancel).await {
                Ok(()) => {
                    delays = backoff();
                    self.settings.poll_interval
                }
                Err(e) if e.class() == ErrorClass::Fatal => {
                    tracing::error!(error = %e, error_class = "fatal", "Capture stopping");
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(error = %e, error_class = e.class().as_str(), "Capture pass failed; redoing from the last committed position");
                    self.reset_to_committed();
                    delays.next().unwrap_or(Duration::from_secs(30))
                }
            };
            let woken = async {
                match &watch {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            };
            let paused = async {
                match self.pause.clone() {
                    Some(mut p) => {
                        // A dropped switch can never pause: wait for nothing then.
                        if p.wait_for(|p| *p).await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                () = paused => {}
                () = tokio::time::sleep(delay) => {}
                // A change in cdc_raw (typically an idx rewrite) ends the wait early, but never
                // shortens a back-off after a failure.
                () = woken, if delay <= self.settings.poll_interval => {}
            }
        }
        Ok(())
    }

    fn reset_to_committed(&mut self) {
        self.pending = Pending::default();
        self.idle.clear();
    }

    /// The position reading continues from: pending (not yet committed) first.
    fn cursor(&self) -> Option<(i64, u64)> {
        self.pending.position.or(self
            .committed
            .map(|p| (p.segment_id, u64::from(p.position))))
    }

    fn report_errors(&self, errors: Vec<Error>) {
        for e in errors {
            self.metrics.parse_errors.inc();
            self.metrics.errors(e.class()).inc();
            tracing::warn!(error = %e, error_class = e.class().as_str(), "Mutation skipped");
        }
    }

    fn update_dir_metrics(&self, segments: &[SegmentFiles]) {
        if let Ok(bytes) = segment_dir::dir_bytes(&self.settings.cdc_raw_dir) {
            self.metrics
                .cdc_raw_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            self.metrics
                .cdc_raw_fill_ratio
                .set(bytes as f64 / self.settings.cdc_total_space_bytes.max(1) as f64);
        }
        let from = self.cursor().map_or(i64::MIN, |c| c.0);
        let pending = segments
            .iter()
            .filter(|s| s.id >= from && s.idx.is_some())
            .count();
        self.metrics
            .segments_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// One walk over `cdc_raw`.
    async fn pass(&mut self, cancel: &CancellationToken) -> Result<(), Error> {
        let segments = segment_dir::list_segments(&self.settings.cdc_raw_dir)?;
        self.update_dir_metrics(&segments);
        for seg in &segments {
            if cancel.is_cancelled() || self.is_paused() {
                break;
            }
            let cursor = self.cursor();
            if cursor.is_some_and(|(s, _)| seg.id < s) {
                continue;
            }
            let (Some(idx_path), Some(log_path)) = (&seg.idx, &seg.log) else {
                continue; // No idx: no CDC data yet. No log: deleted under us.
            };
            let Some(idx) = segment_dir::read_idx(idx_path)? else {
                continue;
            };
            let Some(limit) = idx.limit() else {
                break; // Torn idx: retry next pass; never skip ahead of an unread segment.
            };
            let resume_after = match cursor {
                Some((s, p)) if s == seg.id => p,
                _ => 0,
            };
            if self.finished.contains(&seg.id) || self.pending.finished.contains(&seg.id) {
                continue;
            }
            if self.unreadable.contains(&seg.id) {
                continue;
            }
            if self.abandoned.contains(&seg.id) {
                if limit == ReadLimit::Completed {
                    tracing::error!(
                        segment_id = seg.id,
                        "A segment given up as never completing was completed later; data after the read point was not captured"
                    );
                    self.abandoned.remove(&seg.id);
                }
                continue;
            }
            if self.idle.get(&seg.id) == Some(&(idx, resume_after)) {
                if self.stalled_past_grace(seg.id, idx, &segments) {
                    continue;
                }
                break;
            }
            // Segments are up to `commitlog_segment_size` (32 MiB by default) and are read
            // again whenever the idx moves: off the async runtime's worker threads.
            let read_path = log_path.clone();
            let read = tokio::task::spawn_blocking(move || segment_dir::read_segment(&read_path))
                .await
                .map_err(|e| Error::Io {
                    op: "read",
                    path: log_path.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?;
            let Some(bytes) = read? else {
                continue;
            };
            let done = self
                .read_segment(seg.id, &bytes, limit, resume_after)
                .await?;
            match done {
                SegmentProgress::Finished => {
                    self.metrics.segments_read.inc();
                    self.pending.finished.insert(seg.id);
                }
                SegmentProgress::Unreadable => {
                    self.unreadable.insert(seg.id);
                }
                SegmentProgress::Waiting => {
                    let now = self
                        .cursor()
                        .map_or(0, |c| if c.0 == seg.id { c.1 } else { 0 });
                    self.idle.insert(seg.id, (idx, now));
                    if self.stalled_past_grace(seg.id, idx, &segments) {
                        continue;
                    }
                    break;
                }
            }
        }
        self.commit_pending(false).await?;
        self.delete_finished().await;
        Ok(())
    }

    /// CASSANDRA_COMMITLOG.md §1.7 step 6: a segment that stopped growing, is not COMPLETED and has
    /// a newer segment with data beside it (a crash without replay of that segment) is given up
    /// after `stale_segment_grace`, so capture does not stall forever. It is never deleted.
    fn stalled_past_grace(&mut self, id: i64, idx: CdcIndex, segments: &[SegmentFiles]) -> bool {
        let newer = segments.iter().any(|s| s.id > id && s.idx.is_some());
        if !newer {
            self.stalled.remove(&id);
            return false;
        }
        let since = match self.stalled.get(&id) {
            Some((seen, since)) if *seen == idx => *since,
            _ => {
                self.stalled.insert(id, (idx, Instant::now()));
                return false;
            }
        };
        if since.elapsed() < self.settings.stale_segment_grace {
            return false;
        }
        tracing::warn!(
            segment_id = id,
            grace_secs = self.settings.stale_segment_grace.as_secs(),
            "Segment never completed while newer segments have data; moving on"
        );
        self.stalled.remove(&id);
        self.abandoned.insert(id);
        true
    }

    async fn read_segment(
        &mut self,
        segment_id: i64,
        bytes: &[u8],
        limit: ReadLimit,
        mut resume_after: u64,
    ) -> Result<SegmentProgress, Error> {
        // The `_cdc.idx` offset (`limit`) was read before this call: a schema change made before
        // any mutation up to it is visible now (see `SchemaCatalog::refresh_if_changed`).
        let mut schema_fresh = match self.catalog.refresh_if_changed().await {
            Ok(_) => true,
            Err(e) => {
                // Cassandra unreachable: no writes land either; unknown columns still refresh.
                tracing::warn!(error = %e, "Cannot read the Cassandra schema version");
                false
            }
        };
        loop {
            let input = ChunkInput {
                bytes,
                segment_id,
                limit,
                resume_after,
                max_messages: self
                    .settings
                    .batch_max_events
                    .saturating_sub(self.pending.messages.len())
                    .max(1),
                refreshed_at: self.refreshed_at,
                schema_fresh,
            };
            let chunk = match decode_chunk(&input, &self.history, &self.settings) {
                Ok(chunk) => chunk,
                // A segment whose header is corrupt can never be read: skip it, never loop on it.
                // A header shorter than declared: just created (wait), or corrupt once COMPLETED.
                Err(Error::CommitLog(cdc_commitlog::Error::HeaderIncomplete { .. }))
                    if limit != ReadLimit::Completed =>
                {
                    return Ok(SegmentProgress::Waiting);
                }
                Err(e)
                    if e.class() == ErrorClass::Poison
                        || matches!(
                            e,
                            Error::CommitLog(cdc_commitlog::Error::HeaderIncomplete { .. })
                        ) =>
                {
                    self.metrics.parse_errors.inc();
                    self.metrics.errors(ErrorClass::Poison).inc();
                    tracing::error!(segment_id, error = %e, "Unreadable segment skipped");
                    return Ok(SegmentProgress::Unreadable);
                }
                Err(e) => return Err(e),
            };
            self.metrics.mutations_read.inc_by(chunk.mutations);
            self.report_errors(chunk.errors);
            if let Some(end) = chunk.last_end {
                self.metrics
                    .bytes_read
                    .inc_by(end.saturating_sub(resume_after));
                resume_after = end;
                if !chunk.messages.is_empty() && self.pending.since.is_none() {
                    self.pending.since = Some(Instant::now());
                }
                self.pending.messages.extend(chunk.messages);
                self.pending.position = Some((segment_id, end));
            }
            if let Some((need, at)) = chunk.refresh {
                tracing::debug!(?need, segment_id, position = at, "Refreshing the schema");
                self.catalog.refresh().await?;
                self.refreshed_at = Some((segment_id, at));
                schema_fresh = true;
                continue;
            }
            if self.pending.messages.len() >= self.settings.batch_max_events {
                self.commit_pending(true).await?;
            }
            match chunk.end {
                None => continue,
                Some(SegmentEnd::EndOfSegment { position }) if limit == ReadLimit::Completed => {
                    self.pending.position = Some((segment_id, position.max(resume_after)));
                    return Ok(SegmentProgress::Finished);
                }
                Some(SegmentEnd::Failed { position }) if limit == ReadLimit::Completed => {
                    // A corrupt marker in a closed segment: nothing after it can be read.
                    self.metrics.parse_errors.inc();
                    self.metrics.errors(ErrorClass::Poison).inc();
                    tracing::error!(
                        segment_id,
                        position,
                        "Corrupt sync marker in a completed segment; the rest of it is skipped"
                    );
                    self.pending.position = Some((segment_id, position.max(resume_after)));
                    return Ok(SegmentProgress::Finished);
                }
                Some(_) => return Ok(SegmentProgress::Waiting),
            }
        }
    }

    async fn ensure_topics(&mut self) -> Result<(), Error> {
        let topics: BTreeSet<String> = self
            .pending
            .messages
            .iter()
            .filter(|m| !self.ensured_topics.contains(&m.topic))
            .map(|m| m.topic.clone())
            .collect();
        for topic in topics {
            self.admin
                .ensure_topic(
                    &topic,
                    self.settings.topic_partitions,
                    self.settings.replication_factor,
                    &self.settings.raw_topic_config,
                )
                .await?;
            self.ensured_topics.insert(topic);
        }
        Ok(())
    }

    /// Commits pending events and position in one transaction. Without `force`, waits for the
    /// batch to fill or the linger to pass.
    /// Builds a new transactional producer for the same id and initialises it; retriable init
    /// failures (Kafka still unreachable) are returned and the next pass tries again.
    async fn replace_producer(&mut self) -> Result<(), Error> {
        if self.producer.state() == cdc_kafka::TxnState::Failed {
            self.producer.reset().await?;
        }
        self.producer.init().await?;
        tracing::info!("Transactional producer replaced; redoing from the last committed position");
        Ok(())
    }

    async fn commit_pending(&mut self, force: bool) -> Result<(), Error> {
        let Some((segment_id, position)) = self.pending.position else {
            return Ok(());
        };
        let full = self.pending.messages.len() >= self.settings.batch_max_events;
        let lingered = self
            .pending
            .since
            .is_none_or(|t| t.elapsed() >= self.settings.batch_linger);
        let position_only = self.pending.messages.is_empty();
        // A position-only advance (nothing captured) is committed at a calmer pace.
        let calm =
            self.last_commit.elapsed() >= self.settings.batch_linger.max(Duration::from_secs(1));
        if !force && !full && !(if position_only { calm } else { lingered }) {
            return Ok(());
        }
        let result = self.transaction(segment_id, position).await;
        match result {
            Ok(new) => {
                self.metrics.transactions_committed.inc();
                self.health.set_up(DEP_KAFKA);
                let now_micros = now_ms().saturating_mul(1_000);
                let mut newest: Option<i64> = None;
                for m in &self.pending.messages {
                    self.metrics.events(&m.table, m.op).inc();
                    newest = newest.max(m.max_writetime_micros);
                }
                if let Some(w) = newest {
                    self.metrics
                        .lag_seconds
                        .set(now_micros.saturating_sub(w) as f64 / 1e6);
                }
                if !self.pending.messages.is_empty() {
                    // FR-018: one info line per committed batch of changes read, never values.
                    let tables: std::collections::BTreeSet<&str> = self
                        .pending
                        .messages
                        .iter()
                        .map(|m| m.table.as_str())
                        .collect();
                    tracing::info!(
                        events = self.pending.messages.len(),
                        tables = %tables.into_iter().collect::<Vec<_>>().join(","),
                        segment_id = new.segment_id,
                        position = new.position,
                        "Changes captured"
                    );
                }
                self.committed = Some(new);
                self.finished.append(&mut self.pending.finished);
                self.pending = Pending::default();
                self.last_commit = Instant::now();
                Ok(())
            }
            Err(e) => {
                self.metrics.transactions_aborted.inc();
                self.metrics.errors(e.class()).inc();
                if matches!(e, Error::Kafka(_)) {
                    self.health.set_down(DEP_KAFKA, e.to_string());
                }
                if e.class() != ErrorClass::Fatal {
                    let _ = self.producer.abort().await;
                }
                // A producer librdkafka declared unusable (e.g. INVALID_TXN_STATE ending a
                // transaction across a broker restart) is replaced, unless fenced: the new one's
                // init aborts what the old left open, and the batch is redone.
                if self.producer.state() == cdc_kafka::TxnState::Failed {
                    self.replace_producer().await?;
                    return Err(Error::ProducerReplaced {
                        cause: e.to_string(),
                    });
                }
                Err(e)
            }
        }
    }

    async fn transaction(
        &mut self,
        segment_id: i64,
        position: u64,
    ) -> Result<CapturePosition, Error> {
        self.ensure_topics().await?;
        let new = CapturePosition {
            host_id: self.settings.host_id,
            segment_id,
            position: u32::try_from(position).unwrap_or(u32::MAX),
            updated_at_ms: now_ms(),
        };
        let value = new.to_json().map_err(|e| Error::Position {
            topic: self.settings.positions_topic.clone(),
            partition: -1,
            offset: -1,
            reason: e.to_string(),
        })?;
        // After a replacement whose init failed (Kafka still away), initialise first.
        if matches!(
            self.producer.state(),
            cdc_kafka::TxnState::Created | cdc_kafka::TxnState::Failed
        ) {
            self.replace_producer().await?;
        }
        self.producer.begin().await?;
        for m in &self.pending.messages {
            // Delivery is awaited by commit(), which fails if any message failed.
            let _delivery = self
                .producer
                .send(&m.topic, None, Some(&m.key), Some(&m.payload), &m.headers)
                .await?;
        }
        let _delivery = self
            .producer
            .send(
                &self.settings.positions_topic,
                None,
                Some(new.key().as_bytes()),
                Some(&value),
                &[],
            )
            .await?;
        let committing = Instant::now();
        self.producer.commit().await?;
        self.metrics
            .kafka
            .transaction_commit_seconds
            .observe(committing.elapsed().as_secs_f64());
        Ok(new)
    }

    /// Deletes COMPLETED segments that were read to the end and whose position is committed.
    async fn delete_finished(&mut self) {
        if self.settings.retain_processed_segments {
            return;
        }
        let Some(committed) = self.committed else {
            return;
        };
        let deletable: Vec<i64> = self
            .finished
            .iter()
            .copied()
            .filter(|id| *id <= committed.segment_id)
            .collect();
        if deletable.is_empty() {
            return;
        }
        let Ok(segments) = segment_dir::list_segments(&self.settings.cdc_raw_dir) else {
            return;
        };
        for seg in segments.iter().filter(|s| deletable.contains(&s.id)) {
            match segment_dir::delete_segment(seg) {
                Ok(()) => {
                    tracing::info!(segment_id = seg.id, "Processed segment deleted");
                    self.finished.remove(&seg.id);
                    self.idle.remove(&seg.id);
                }
                Err(e) => {
                    tracing::warn!(segment_id = seg.id, error = %e, "Deleting a processed segment failed")
                }
            }
        }
    }
}

enum SegmentProgress {
    /// Read to the end of a COMPLETED segment.
    Finished,
    /// Stopped at the durable limit or the end of the bytes: read again when the idx changes.
    Waiting,
    /// The segment header is corrupt: skipped (kept on disk for an operator).
    Unreadable,
}
