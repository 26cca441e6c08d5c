//! Capture's admin API (`cdc.admin.v1.Admin`, served on `capture.admin.listen_addr` beside
//! `/metrics`, `/livez`, `/readyz`):
//! - `Status`: health, lag (now − writetime of the newest published event), events/s, errors
//!   (unparsable mutations + aborted transactions), segments pending and `cdc_raw` use;
//! - `Pause` / `Resume`: no new segment is read; the batch in flight commits with its position
//!   first (see [`crate::CaptureRunner::with_pause_signal`]).
//!
//! Not supported (UNIMPLEMENTED with the reason): `Reload` (every capture setting shapes the
//! transactional id, the positions or the segment reading: restart to change them), `Replay`
//! (only sinks keep offsets of record) and dead letters (capture never dead-letters: an
//! undecodable mutation is logged, counted and skipped).

use std::time::{Duration, Instant};

use cdc_admin::stats::{self, HistogramSnapshot, MetricsView, Window};
use cdc_admin::{AdminHandler, Status, async_trait, pb};
use cdc_telemetry::metrics::{names, results};
use cdc_telemetry::{HealthState, Registry};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Capture's admin handler.
pub struct CaptureAdmin {
    registry: Registry,
    health: HealthState,
    pause: watch::Sender<bool>,
    window: Window,
    started: Instant,
}

impl std::fmt::Debug for CaptureAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureAdmin").finish_non_exhaustive()
    }
}

impl CaptureAdmin {
    /// `pause` is the switch given to [`crate::CaptureRunner::with_pause_signal`].
    pub fn new(registry: Registry, health: HealthState, pause: watch::Sender<bool>) -> Self {
        CaptureAdmin {
            registry,
            health,
            pause,
            window: Window::new(Duration::from_secs(10)),
            started: Instant::now(),
        }
    }

    /// Feeds the throughput window every second until `cancel`.
    pub async fn sample(self: std::sync::Arc<Self>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let view = MetricsView::gather(&self.registry);
            self.window.observe(
                view.sum(names::CAPTURE_EVENTS_TOTAL, &[]),
                HistogramSnapshot::default(),
            );
        }
    }
}

#[async_trait]
impl AdminHandler for CaptureAdmin {
    fn stage(&self) -> &str {
        "capture"
    }

    async fn status(&self) -> Result<pb::StatusResponse, Status> {
        let view = MetricsView::gather(&self.registry);
        let paused = *self.pause.borrow();
        let health = stats::overall(&self.health, paused);
        let errors = view.sum(names::CAPTURE_PARSE_ERRORS_TOTAL, &[])
            + view.sum(
                names::CAPTURE_TRANSACTIONS_TOTAL,
                &[("result", results::ABORTED)],
            );
        Ok(pb::StatusResponse {
            service: "capture".into(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            health: health as i32,
            paused,
            dependencies: stats::dependencies(&self.health),
            destinations: Vec::new(),
            policy_version: 0,
            stats: Some(pb::StageStats {
                lag_seconds: view.sum(names::CAPTURE_LAG_SECONDS, &[]),
                events_per_second: self.window.rate(),
                events_total: stats::count(view.sum(names::CAPTURE_EVENTS_TOTAL, &[])),
                errors_total: stats::count(errors),
                backlog_events: 0,
                dlq_events_total: 0,
                segments_pending: stats::count(view.sum(names::CAPTURE_SEGMENTS_PENDING, &[])),
                cdc_raw_fill_ratio: view.sum(names::CAPTURE_CDC_RAW_FILL_RATIO, &[]),
                cdc_raw_bytes: stats::count(view.sum(names::CAPTURE_CDC_RAW_BYTES, &[])),
            }),
            stage: "capture".into(),
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
        Err(cdc_admin::unsupported(
            "capture",
            "Reload",
            "its settings shape the transactional id, the stored positions and the segment \
             reading; restart it to apply a new configuration",
        ))
    }
}
