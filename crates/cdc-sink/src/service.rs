//! What every sink binary does between parsing its arguments and exiting: load `pipeline.yaml`,
//! start logging, the admin server (`/metrics`, `/livez`, `/readyz` and the gRPC admin API on the
//! same port) and signal handling, then run the [`SinkRunner`] until SIGTERM and drain.
//!
//! The admin API of a sink ([`SinkAdmin`]):
//! - `Status`: health, lag, events/s, errors, backlog, DLQ count and end-to-end latency
//!   percentiles of its destination, read from its own metrics;
//! - `Pause` / `Resume`: intake stopped between batches (`/readyz` shows `intake` down);
//! - `Reload` (also on SIGHUP): re-reads the configuration file and applies the batch limits and
//!   retry policy of `sinks.<destination>`; anything else needs a restart (the summary says so);
//! - `Replay`: moves this destination's stored offsets (by offsets, or by timestamp) and re-seeks;
//! - `ListDeadLetters` / `ShowDeadLetter`: `cdc.dlq.sink-<destination>` read from the beginning;
//! - `ReplayDeadLetters`: the letters' original (masked) events are written again **through the
//!   destination** — not re-produced to Kafka, where every other sink would see them again — one
//!   at a time, without moving offsets; per-cell last-write-wins makes that safe whatever happened
//!   since. Each success is recorded in `<dlq topic>.replayed` so the same letter is not replayed
//!   twice (unless forced); a letter that fails again stays as it is and is reported.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cdc_admin::dead_letters::DeadLetterTopic;
use cdc_admin::stats::{self, MetricsView, Window};
use cdc_admin::{AdminHandler, Status, pb};
use cdc_config::{AdminConfig, PipelineConfig};
use cdc_model::ErrorClass;
use cdc_telemetry::metrics::names;
use cdc_telemetry::{HealthState, Registry, Shutdown, SinkMetrics};
use tokio_util::sync::CancellationToken;

use crate::destination::{Destination, NextOffset, SourceOffset};
use crate::error::Error;
use crate::runner::{Reapply, ReplayTarget, RunnerConfig, RunnerControl, SinkRunner};

/// Runs `destination` with the shared driver until SIGTERM/SIGINT. The admin API's `Reload`
/// answers UNIMPLEMENTED (no file to re-read): prefer [`serve_with_config_file`].
pub async fn serve<D: Destination>(
    config: &PipelineConfig,
    admin: &AdminConfig,
    runner_config: RunnerConfig,
    kafka: cdc_kafka::KafkaSettings,
    destination: D,
) -> Result<(), Error> {
    serve_inner(config, None, admin, runner_config, kafka, destination).await
}

/// As [`serve`], with the path `config` was loaded from, so `Reload` (admin API or SIGHUP) can
/// re-read it.
pub async fn serve_with_config_file<D: Destination>(
    config_path: &Path,
    config: &PipelineConfig,
    admin: &AdminConfig,
    runner_config: RunnerConfig,
    kafka: cdc_kafka::KafkaSettings,
    destination: D,
) -> Result<(), Error> {
    serve_inner(
        config,
        Some(config_path.to_path_buf()),
        admin,
        runner_config,
        kafka,
        destination,
    )
    .await
}

async fn serve_inner<D: Destination>(
    config: &PipelineConfig,
    config_path: Option<PathBuf>,
    admin: &AdminConfig,
    runner_config: RunnerConfig,
    kafka: cdc_kafka::KafkaSettings,
    destination: D,
) -> Result<(), Error> {
    let shutdown = Shutdown::install()?;
    let cancel = shutdown.token();
    let registry = cdc_telemetry::new_registry();
    let health = HealthState::new();
    let metrics = SinkMetrics::new(&registry, destination.name())?;
    let name = destination.name().to_owned();
    tracing::info!(
        destination = %name,
        group_id = %runner_config.group_id,
        topics_pattern = %runner_config.topics_pattern,
        cluster = %config.cluster_name,
        "Sink starting"
    );
    let dlq = DeadLetterTopic::new(
        kafka.clone(),
        runner_config.dlq_topic.clone(),
        runner_config.dlq_replication,
    );
    let runner = SinkRunner::new(
        Arc::new(destination),
        kafka,
        runner_config,
        metrics,
        health.clone(),
    );
    let handler = Arc::new(SinkAdmin::new(
        &name,
        registry.clone(),
        health.clone(),
        runner.control(),
        dlq,
        config_path,
    ));
    let server = cdc_admin::serve(
        admin.listen_addr,
        registry.clone(),
        health.clone(),
        Arc::clone(&handler),
    )
    .await?;
    let admin_cancel = cancel.child_token();
    let admin_task = tokio::spawn(server.run(admin_cancel.clone()));
    let sampler = tokio::spawn(Arc::clone(&handler).sample(admin_cancel.clone()));
    let sighup = tokio::spawn(reload_on_sighup(
        Arc::clone(&handler),
        shutdown.reloads(),
        admin_cancel.clone(),
    ));
    let result = runner.run(cancel.clone()).await;
    if let Err(e) = &result {
        tracing::error!(error = %cdc_admin::dead_letters::redact_error(&cdc_kafka::error_chain(e)), error_class = %e.class(), "Sink stopped on an error");
    } else {
        tracing::info!("Sink stopped");
    }
    admin_cancel.cancel();
    let _ = admin_task.await;
    let _ = sampler.await;
    let _ = sighup.await;
    result
}

async fn reload_on_sighup(
    handler: Arc<SinkAdmin>,
    mut reloads: tokio::sync::watch::Receiver<u64>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            r = reloads.changed() => if r.is_err() { return },
        }
        match handler.reload().await {
            Ok(r) => tracing::info!(summary = %r.summary, "Configuration reloaded (SIGHUP)"),
            Err(e) => tracing::warn!(error = %e.message(), "Configuration reload (SIGHUP) failed"),
        }
    }
}

/// Time allowed for a pause, resume or replay to be taken by the driver loop.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed for re-applying dead letters (each one retried like a batch).
const REAPPLY_TIMEOUT: Duration = Duration::from_secs(300);

/// The admin API of a sink. See the module documentation.
pub struct SinkAdmin {
    stage: String,
    destination: String,
    registry: Registry,
    health: HealthState,
    control: RunnerControl,
    dlq: DeadLetterTopic,
    window: Window,
    started: Instant,
    config_path: Option<PathBuf>,
}

impl std::fmt::Debug for SinkAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkAdmin")
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

fn status_of(e: Error) -> Status {
    let message = cdc_admin::dead_letters::redact_error(&cdc_kafka::error_chain(&e));
    match &e {
        Error::Config { .. } => Status::invalid_argument(message),
        _ => match e.class() {
            ErrorClass::Retriable => Status::unavailable(message),
            ErrorClass::Poison => Status::failed_precondition(message),
            ErrorClass::Fatal => Status::internal(message),
        },
    }
}

impl SinkAdmin {
    /// The handler for destination `destination` (`postgres`, …).
    pub fn new(
        destination: &str,
        registry: Registry,
        health: HealthState,
        control: RunnerControl,
        dlq: DeadLetterTopic,
        config_path: Option<PathBuf>,
    ) -> Self {
        SinkAdmin {
            stage: format!("sink-{destination}"),
            destination: destination.to_owned(),
            registry,
            health,
            control,
            dlq,
            window: Window::new(Duration::from_secs(10)),
            started: Instant::now(),
            config_path,
        }
    }

    fn labels(&self) -> [(&str, &str); 1] {
        [("destination", self.destination.as_str())]
    }

    /// Feeds the throughput/latency window every second until `cancel`.
    pub async fn sample(self: Arc<Self>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let view = MetricsView::gather(&self.registry);
            let labels = self.labels();
            self.window.observe(
                view.sum(names::SINK_ROWS_WRITTEN_TOTAL, &labels),
                view.histogram(names::SINK_END_TO_END_LATENCY_SECONDS, &labels),
            );
        }
    }

    fn replay_target(&self, request: pb::ReplayRequest) -> Result<ReplayTarget, Status> {
        use pb::replay_request::Target;
        let wanted = request.destination.trim();
        if !wanted.is_empty() && wanted != self.destination && wanted != self.stage {
            return Err(Status::invalid_argument(format!(
                "this endpoint is {}; destination `{wanted}` keeps its own offsets and is \
                 replayed through its own sink's admin endpoint",
                self.stage
            )));
        }
        match request.target {
            Some(Target::ToTimestampMs(ts)) if ts > 0 => Ok(ReplayTarget::Timestamp(ts)),
            Some(Target::ToTimestampMs(ts)) => Err(Status::invalid_argument(format!(
                "to_timestamp_ms must be a positive time in milliseconds since the epoch, got {ts}"
            ))),
            Some(Target::ToOffsets(list)) => {
                if list.offsets.is_empty() {
                    return Err(Status::invalid_argument("to_offsets is empty"));
                }
                let mut seen = std::collections::HashSet::new();
                let mut out = Vec::new();
                for o in list.offsets {
                    if o.topic.is_empty() || o.partition < 0 || o.offset < 0 {
                        return Err(Status::invalid_argument(format!(
                            "to_offsets: `{}:{}:{}` needs a topic, a partition >= 0 and an offset >= 0",
                            o.topic, o.partition, o.offset
                        )));
                    }
                    if !seen.insert((o.topic.clone(), o.partition)) {
                        return Err(Status::invalid_argument(format!(
                            "to_offsets names {}:{} twice",
                            o.topic, o.partition
                        )));
                    }
                    out.push(NextOffset {
                        topic: o.topic,
                        partition: o.partition,
                        next_offset: o.offset,
                    });
                }
                Ok(ReplayTarget::Offsets(out))
            }
            None => Err(Status::invalid_argument(
                "give to_timestamp_ms or to_offsets",
            )),
        }
    }
}

#[async_trait]
impl AdminHandler for SinkAdmin {
    fn stage(&self) -> &str {
        &self.stage
    }

    async fn status(&self) -> Result<pb::StatusResponse, Status> {
        let view = MetricsView::gather(&self.registry);
        let labels = self.labels();
        let events_total = stats::count(view.sum(names::SINK_ROWS_WRITTEN_TOTAL, &labels));
        let errors = stats::count(view.sum(names::SINK_ERRORS_TOTAL, &labels));
        let dlq = stats::count(view.sum(names::SINK_DLQ_EVENTS_TOTAL, &labels));
        let lag = view.sum(names::SINK_LAG_SECONDS, &labels);
        let lifetime = view.histogram(names::SINK_END_TO_END_LATENCY_SECONDS, &labels);
        let (p50, p95, p99) = self.window.latency_percentiles(&lifetime);
        let rate = self.window.rate();
        let paused = self.control.is_paused();
        let backlog = self.control.backlog();
        let health = stats::overall(&self.health, paused);
        Ok(pb::StatusResponse {
            service: self.stage.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            health: health as i32,
            paused,
            dependencies: stats::dependencies(&self.health),
            destinations: vec![pb::DestinationStatus {
                destination: self.destination.clone(),
                health: health as i32,
                lag_seconds: lag,
                events_per_second: rate,
                errors_total: errors,
                backlog_events: backlog,
                dlq_events_total: dlq,
                latency_p50_seconds: p50,
                latency_p95_seconds: p95,
                latency_p99_seconds: p99,
                paused,
                events_total,
            }],
            policy_version: 0,
            stats: Some(pb::StageStats {
                lag_seconds: lag,
                events_per_second: rate,
                events_total,
                errors_total: errors,
                backlog_events: backlog,
                dlq_events_total: dlq,
                ..Default::default()
            }),
            stage: self.stage.clone(),
            uptime_seconds: self.started.elapsed().as_secs(),
        })
    }

    async fn pause(&self) -> Result<pb::PauseResponse, Status> {
        self.control
            .clone()
            .with_timeout(COMMAND_TIMEOUT)
            .pause()
            .await
            .map_err(status_of)?;
        Ok(pb::PauseResponse {})
    }

    async fn resume(&self) -> Result<pb::ResumeResponse, Status> {
        self.control
            .clone()
            .with_timeout(COMMAND_TIMEOUT)
            .resume()
            .await
            .map_err(status_of)?;
        Ok(pb::ResumeResponse {})
    }

    async fn reload(&self) -> Result<pb::ReloadResponse, Status> {
        let Some(path) = &self.config_path else {
            return Err(cdc_admin::unsupported(
                &self.stage,
                "Reload",
                "it was started without a configuration file path",
            ));
        };
        let config = cdc_config::load(path).map_err(|e| {
            Status::failed_precondition(format!(
                "{} does not load; nothing applied: {e}",
                path.display()
            ))
        })?;
        let Some(new) = crate::settings::tuning(&config, &self.destination) else {
            return Err(Status::failed_precondition(format!(
                "{} no longer configures sinks.{}; nothing applied",
                path.display(),
                self.destination
            )));
        };
        let old = self.control.tuning();
        let changes = crate::settings::tuning_changes(&self.destination, &old, &new);
        self.control.set_tuning(new);
        let applied = if changes.is_empty() {
            "no change to batch or retry settings".to_owned()
        } else {
            format!("applied {}", changes.join(", "))
        };
        let summary = format!(
            "{} re-read: {applied}. Batch limits and the retry policy apply from the next batch; \
             other settings (connections, topics, group, admin address, log level) need a restart.",
            path.display()
        );
        tracing::info!(file = %path.display(), changes = changes.len(), "Configuration reloaded");
        Ok(pb::ReloadResponse { summary })
    }

    async fn replay(&self, request: pb::ReplayRequest) -> Result<pb::ReplayResponse, Status> {
        let target = self.replay_target(request)?;
        let report = self
            .control
            .clone()
            .with_timeout(COMMAND_TIMEOUT)
            .replay(target)
            .await
            .map_err(status_of)?;
        Ok(pb::ReplayResponse {
            previous: report
                .previous
                .into_iter()
                .map(|(tp, o)| pb::PartitionOffset {
                    topic: tp.topic,
                    partition: tp.partition,
                    // -1: nothing was stored (the sink started at the beginning).
                    offset: o.unwrap_or(-1),
                })
                .collect(),
            applied: report
                .applied
                .into_iter()
                .map(|o| pb::PartitionOffset {
                    topic: o.topic,
                    partition: o.partition,
                    offset: o.next_offset,
                })
                .collect(),
        })
    }

    async fn list_dead_letters(
        &self,
        request: pb::ListDeadLettersRequest,
    ) -> Result<pb::ListDeadLettersResponse, Status> {
        Ok(self.dlq.list(&request).await?)
    }

    async fn show_dead_letter(
        &self,
        request: pb::ShowDeadLetterRequest,
    ) -> Result<pb::ShowDeadLetterResponse, Status> {
        // Sink letters hold masked envelopes: their key and column names may be shown.
        Ok(self.dlq.show(&request.id, true).await?)
    }

    async fn replay_dead_letters(
        &self,
        request: pb::ReplayDeadLettersRequest,
    ) -> Result<pb::ReplayDeadLettersResponse, Status> {
        let selection = self.dlq.select_for_replay(&request).await?;
        let mut events = Vec::with_capacity(selection.letters.len());
        for l in &selection.letters {
            if let Ok(letter) = &l.letter {
                events.push(Reapply {
                    payload: letter.payload.clone(),
                    source: SourceOffset {
                        topic: letter.topic.clone(),
                        partition: letter.partition,
                        offset: letter.offset,
                    },
                });
            }
        }
        let results = if events.is_empty() {
            Vec::new()
        } else {
            self.control
                .clone()
                .with_timeout(REAPPLY_TIMEOUT)
                .reapply(events)
                .await
                .map_err(status_of)?
        };
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for (l, r) in selection.letters.iter().zip(results) {
            match r {
                Ok(()) => done.push(l),
                Err(error) => failed.push(pb::DeadLetterFailure {
                    letter: Some(cdc_admin::dead_letters::summary(self.dlq.topic(), l)),
                    error,
                }),
            }
        }
        self.dlq.mark_replayed(&done).await?;
        tracing::info!(
            replayed = done.len(),
            failed = failed.len(),
            skipped_already_replayed = selection.already_replayed,
            "Dead letters replayed through the destination"
        );
        Ok(pb::ReplayDeadLettersResponse {
            replayed: done.len() as u64,
            skipped_already_replayed: selection.already_replayed,
            failed,
            skipped_unreplayable: selection.unreplayable,
        })
    }
}
