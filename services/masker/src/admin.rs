//! The masker's admin API (`cdc.admin.v1.Admin`, served on `masker.admin.listen_addr` beside
//! `/metrics`, `/livez`, `/readyz`):
//! - `Status`: health, lag, events/s, errors (aborted transactions), backlog, DLQ count and the
//!   policy version in force;
//! - `Pause` / `Resume`: no new batch starts; the one in flight commits first;
//! - `Reload`: re-reads the policy file now; a policy that does not parse or check is refused and
//!   the previous one stays in force (as with the file watcher); applies to later batches only;
//! - `ListDeadLetters` / `ShowDeadLetter`: `cdc.dlq.masker`. Its payloads are the *unmasked*
//!   raw events, so they are never decoded or shown: only the failure context;
//! - `ReplayDeadLetters`: the raw event is produced again, unchanged, to the raw topic and
//!   partition it came from (inside the trust boundary), so the masker masks it with the policy in
//!   force now — the fix for letters that failed for want of a strategy, a key or the vault.
//!   Letters whose payload could not be decoded at all cannot be replayed.
//! - `Replay`: not supported (only sinks keep offsets of record).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cdc_admin::dead_letters::DeadLetterTopic;
use cdc_admin::stats::{self, HistogramSnapshot, MetricsView, Window};
use cdc_admin::{AdminHandler, Status, async_trait, pb};
use cdc_kafka::{IdempotentProducer, KafkaSettings, ProducerSettings};
use cdc_mask::Masker;
use cdc_telemetry::metrics::{names, results};
use cdc_telemetry::{HealthState, Registry};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::PolicySource;

/// The masker's admin handler.
pub struct MaskerAdmin {
    registry: Registry,
    health: HealthState,
    pause: watch::Sender<bool>,
    policy: watch::Sender<Arc<Masker>>,
    source: PolicySource,
    dlq: DeadLetterTopic,
    kafka: KafkaSettings,
    window: Window,
    started: Instant,
}

impl std::fmt::Debug for MaskerAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaskerAdmin").finish_non_exhaustive()
    }
}

impl MaskerAdmin {
    /// `pause` is the switch given to [`crate::Pipeline::run_with_pause`]; `policy` the sender
    /// the pipeline's policy receiver listens to.
    pub fn new(
        registry: Registry,
        health: HealthState,
        pause: watch::Sender<bool>,
        policy: watch::Sender<Arc<Masker>>,
        source: PolicySource,
        dlq: DeadLetterTopic,
        kafka: KafkaSettings,
    ) -> Self {
        MaskerAdmin {
            registry,
            health,
            pause,
            policy,
            source,
            dlq,
            kafka,
            window: Window::new(Duration::from_secs(10)),
            started: Instant::now(),
        }
    }

    fn events_total(view: &MetricsView) -> f64 {
        view.sum(names::MASKER_EVENTS_TOTAL, &[("result", results::MASKED)])
    }

    /// Feeds the throughput window every second until `cancel`.
    pub async fn sample(self: Arc<Self>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let view = MetricsView::gather(&self.registry);
            self.window
                .observe(Self::events_total(&view), HistogramSnapshot::default());
        }
    }
}

#[async_trait]
impl AdminHandler for MaskerAdmin {
    fn stage(&self) -> &str {
        "masker"
    }

    async fn status(&self) -> Result<pb::StatusResponse, Status> {
        let view = MetricsView::gather(&self.registry);
        let paused = *self.pause.borrow();
        let health = stats::overall(&self.health, paused);
        let policy_version =
            u32::try_from(self.policy.borrow().policy().version).unwrap_or(u32::MAX);
        Ok(pb::StatusResponse {
            service: "masker".into(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            health: health as i32,
            paused,
            dependencies: stats::dependencies(&self.health),
            destinations: Vec::new(),
            policy_version,
            stats: Some(pb::StageStats {
                lag_seconds: view.sum(names::MASKER_LAG_SECONDS, &[]),
                events_per_second: self.window.rate(),
                events_total: stats::count(Self::events_total(&view)),
                errors_total: stats::count(view.sum(
                    names::MASKER_TRANSACTIONS_TOTAL,
                    &[("result", results::ABORTED)],
                )),
                backlog_events: stats::count(view.sum(names::MASKER_BACKLOG_EVENTS, &[])),
                dlq_events_total: stats::count(view.sum(names::MASKER_DLQ_EVENTS_TOTAL, &[])),
                ..Default::default()
            }),
            stage: "masker".into(),
            uptime_seconds: self.started.elapsed().as_secs(),
        })
    }

    async fn pause(&self) -> Result<pb::PauseResponse, Status> {
        self.pause.send_replace(true);
        Ok(pb::PauseResponse {})
    }

    async fn resume(&self) -> Result<pb::ResumeResponse, Status> {
        self.pause.send_replace(false);
        Ok(pb::ResumeResponse {})
    }

    async fn reload(&self) -> Result<pb::ReloadResponse, Status> {
        let file = self.source.path.display().to_string();
        let masker = self.source.build().map_err(|e| {
            Status::failed_precondition(format!(
                "policy {file} refused, the previous policy stays in force: {e}"
            ))
        })?;
        let version = masker.policy().version;
        let previous = self.policy.send_replace(Arc::new(masker)).policy().version;
        tracing::info!(
            file,
            policy_version = version,
            previous_version = previous,
            "Masking policy reloaded (admin)"
        );
        Ok(pb::ReloadResponse {
            summary: format!(
                "policy {file} re-read: version {previous} -> {version}; applies to events masked \
                 from the next batch on (earlier events are not re-masked). Other settings need a restart."
            ),
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
        // The payload is the unmasked input: never decoded here.
        Ok(self.dlq.show(&request.id, false).await?)
    }

    async fn replay_dead_letters(
        &self,
        request: pb::ReplayDeadLettersRequest,
    ) -> Result<pb::ReplayDeadLettersResponse, Status> {
        let selection = self.dlq.select_for_replay(&request).await?;
        if selection.letters.is_empty() {
            return Ok(pb::ReplayDeadLettersResponse {
                replayed: 0,
                skipped_already_replayed: selection.already_replayed,
                failed: Vec::new(),
                skipped_unreplayable: selection.unreplayable,
            });
        }
        let producer = IdempotentProducer::new(&self.kafka, &ProducerSettings::default())
            .map_err(|e| Status::unavailable(cdc_kafka::error_chain(&e)))?;
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for l in &selection.letters {
            let Ok(letter) = &l.letter else { continue };
            let sent = async {
                producer
                    .send(
                        &letter.topic,
                        Some(letter.partition),
                        l.key.as_deref(),
                        Some(&letter.payload),
                        &l.headers,
                    )
                    .await?
                    .await
            }
            .await;
            match sent {
                Ok(_) => done.push(l),
                Err(e) => failed.push(pb::DeadLetterFailure {
                    letter: Some(cdc_admin::dead_letters::summary(self.dlq.topic(), l)),
                    error: format!(
                        "producing to {}[{}]: {}",
                        letter.topic,
                        letter.partition,
                        cdc_kafka::error_chain(&e)
                    ),
                }),
            }
        }
        let _ = producer.flush().await;
        let _ = producer.close().await;
        self.dlq.mark_replayed(&done).await?;
        tracing::info!(
            replayed = done.len(),
            failed = failed.len(),
            "Masker dead letters re-produced to their raw topics"
        );
        Ok(pb::ReplayDeadLettersResponse {
            replayed: done.len() as u64,
            skipped_already_replayed: selection.already_replayed,
            failed,
            skipped_unreplayable: selection.unreplayable,
        })
    }
}
