//! What the page shows, derived from the points of the last window: health with its reasons,
//! rates from counters (resets tolerated), end-to-end latency percentiles from the histogram
//! buckets observed in the window.
//!
//! Health, per destination and stage:
//! - **down** (red): the service does not answer `/metrics`, its `/readyz` says not ready, or
//!   `cdc_sink_destination_up` is 0;
//! - **degraded** (amber): errors, aborted transactions or dead letters in the window, lag above
//!   the threshold, a backlog that only grew over the whole window, `cdc_raw` filling up, no
//!   series yet, or `/readyz` not answering;
//! - **up** (green): none of the above.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::point::{DestinationPoint, Reachability, StagePoint};
use crate::rate::{increase, rate, steadily_growing};

/// Health of a destination or stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Working.
    #[default]
    Up,
    /// Working with problems.
    Degraded,
    /// Not working.
    Down,
}

/// Thresholds of the health rules.
#[derive(Debug, Clone)]
pub struct Thresholds {
    /// Window of rates, error counts and percentiles.
    pub window: Duration,
    /// Lag above which a destination or stage is degraded, in seconds.
    pub lag_warn_seconds: f64,
    /// `cdc_raw` fill ratio above which capture is degraded.
    pub cdc_raw_warn_ratio: f64,
    /// Points a backlog must have risen across before it counts as growing.
    pub growth_min_points: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            window: Duration::from_secs(30),
            lag_warn_seconds: 30.0,
            cdc_raw_warn_ratio: 0.8,
            growth_min_points: 4,
        }
    }
}

/// A destination's current figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DestinationStatus {
    /// Up, degraded or down.
    pub health: Health,
    /// Why it is not up.
    pub reasons: Vec<String>,
    /// `cdc_sink_destination_up`.
    pub destination_up: Option<f64>,
    /// Seconds behind the source (`cdc_sink_lag_seconds`).
    pub lag_seconds: Option<f64>,
    /// Rows written per second over the window.
    pub throughput_rows_per_sec: Option<f64>,
    /// Payload bytes written per second over the window.
    pub bytes_per_sec: Option<f64>,
    /// Write errors per second over the window.
    pub error_rate_per_sec: Option<f64>,
    /// Write errors in the window.
    pub errors_in_window: f64,
    /// Write errors since the service started.
    pub errors_total: Option<f64>,
    /// Write errors since start, by class.
    pub errors_by_class: BTreeMap<String, f64>,
    /// Batch retries since start.
    pub retries_total: Option<f64>,
    /// Events dead-lettered since start.
    pub dlq_total: Option<f64>,
    /// Events dead-lettered in the window.
    pub dlq_in_window: f64,
    /// Events not yet committed (high watermark − stored offset), all partitions.
    pub backlog_events: Option<f64>,
    /// Rows written since start.
    pub rows_total: Option<f64>,
    /// Rows written since start, by op.
    pub rows_by_op: BTreeMap<String, f64>,
    /// Median end-to-end latency of the window's events.
    pub latency_p50_seconds: Option<f64>,
    /// 95th percentile.
    pub latency_p95_seconds: Option<f64>,
    /// 99th percentile.
    pub latency_p99_seconds: Option<f64>,
    /// Events the percentiles are computed over.
    pub latency_events_in_window: f64,
}

/// A stage's current figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageStatus {
    /// Up, degraded or down.
    pub health: Health,
    /// Why it is not up.
    pub reasons: Vec<String>,
    /// Events out of the stage per second over the window.
    pub throughput_events_per_sec: Option<f64>,
    /// Events out since start.
    pub events_total: Option<f64>,
    /// Failures per second over the window.
    pub error_rate_per_sec: Option<f64>,
    /// Failures in the window.
    pub errors_in_window: f64,
    /// Failures since start.
    pub errors_total: Option<f64>,
    /// Dead letters since start (masker).
    pub dlq_total: Option<f64>,
    /// Dead letters in the window (masker).
    pub dlq_in_window: f64,
    /// Seconds behind the source.
    pub lag_seconds: Option<f64>,
    /// Events not yet consumed (masker).
    pub backlog_events: Option<f64>,
    /// `cdc_raw` fill ratio (capture).
    pub cdc_raw_fill_ratio: Option<f64>,
    /// Segments not yet fully committed (capture).
    pub segments_pending: Option<f64>,
}

/// `(time, value)` of every point in `window` where `f` has a value.
fn series<P>(window: &[(i64, &P)], f: impl Fn(&P) -> Option<f64>) -> Vec<(i64, f64)> {
    window
        .iter()
        .filter_map(|(t, p)| f(p).map(|v| (*t, v)))
        .collect()
}

fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

/// Health from reachability alone: `Some((Down, reason))` when the service cannot be trusted.
fn reach_verdict(r: &Reachability) -> Option<String> {
    if !r.reachable {
        return Some(match &r.error {
            Some(e) => format!("{} does not answer ({e})", r.service),
            None => format!("{} does not answer", r.service),
        });
    }
    if r.ready == Some(false) {
        return Some(if r.not_ready.is_empty() {
            format!("{} is not ready", r.service)
        } else {
            format!("{} is not ready: {}", r.service, r.not_ready.join(", "))
        });
    }
    None
}

fn fmt_count(n: f64) -> String {
    format!("{}", n.round() as i64)
}

/// A destination's status from the points of the window (ascending time, last = now).
pub fn destination_status(
    window: &[(i64, &DestinationPoint)],
    th: &Thresholds,
) -> DestinationStatus {
    let Some((_, cur)) = window.last() else {
        return DestinationStatus {
            health: Health::Down,
            reasons: vec!["not polled yet".into()],
            ..DestinationStatus::default()
        };
    };
    let w = secs(th.window);
    let mut s = DestinationStatus {
        destination_up: cur.destination_up,
        lag_seconds: cur.lag_seconds,
        errors_total: cur.errors_total,
        errors_by_class: cur.errors_by_class.clone(),
        retries_total: cur.retries_total,
        dlq_total: cur.dlq_total,
        backlog_events: cur.backlog_events,
        rows_total: cur.rows_total,
        rows_by_op: cur.rows_by_op.clone(),
        ..DestinationStatus::default()
    };
    if cur.reach.reachable {
        // Rates only over the part of the window the service answered in.
        let live: Vec<(i64, &DestinationPoint)> = window
            .iter()
            .filter(|(_, p)| p.reach.reachable)
            .map(|(t, p)| (*t, *p))
            .collect();
        s.throughput_rows_per_sec = rate(&series(&live, |p| p.rows_total));
        s.bytes_per_sec = rate(&series(&live, |p| p.bytes_total));
        let errors = series(&live, |p| p.errors_total);
        s.error_rate_per_sec = rate(&errors);
        s.errors_in_window = increase(&errors);
        s.dlq_in_window = increase(&series(&live, |p| p.dlq_total));
        let hists: Vec<_> = live
            .iter()
            .filter_map(|(_, p)| p.latency.as_ref())
            .collect();
        if let (Some(first), Some(last)) = (hists.first(), hists.last())
            && hists.len() >= 2
        {
            let observed = last.since(first);
            s.latency_events_in_window = observed.total();
            s.latency_p50_seconds = observed.quantile(0.5);
            s.latency_p95_seconds = observed.quantile(0.95);
            s.latency_p99_seconds = observed.quantile(0.99);
        }
    }

    let mut down = Vec::new();
    let mut degraded = Vec::new();
    if let Some(r) = reach_verdict(&cur.reach) {
        down.push(r);
    } else {
        if cur.destination_up == Some(0.0) {
            down.push("destination unreachable (cdc_sink_destination_up = 0)".into());
        }
        if !cur.has_series {
            degraded.push(format!(
                "{} exports no series for it yet",
                cur.reach.service
            ));
        }
        if cur.reach.ready.is_none() {
            degraded.push(format!("{} did not answer /readyz", cur.reach.service));
        }
    }
    if s.errors_in_window > 0.0 {
        let classes: Vec<String> = s
            .errors_by_class
            .iter()
            .filter(|(_, n)| **n > 0.0)
            .map(|(c, n)| format!("{c} {}", fmt_count(*n)))
            .collect();
        degraded.push(format!(
            "{} write errors in the last {w} s (since start: {})",
            fmt_count(s.errors_in_window),
            classes.join(", ")
        ));
    }
    if s.dlq_in_window > 0.0 {
        degraded.push(format!(
            "{} events dead-lettered in the last {w} s",
            fmt_count(s.dlq_in_window)
        ));
    }
    if let Some(lag) = s.lag_seconds.filter(|l| *l > th.lag_warn_seconds) {
        degraded.push(format!("lag {lag:.1} s above {} s", th.lag_warn_seconds));
    }
    let backlog = series(window, |p| p.backlog_events);
    if steadily_growing(&backlog, th.growth_min_points) {
        degraded.push(format!(
            "backlog grew from {} to {} events over the last {w} s",
            fmt_count(backlog[0].1),
            fmt_count(backlog[backlog.len() - 1].1)
        ));
    }
    (s.health, s.reasons) = verdict(down, degraded);
    s
}

fn verdict(down: Vec<String>, degraded: Vec<String>) -> (Health, Vec<String>) {
    let health = if !down.is_empty() {
        Health::Down
    } else if !degraded.is_empty() {
        Health::Degraded
    } else {
        Health::Up
    };
    (health, down.into_iter().chain(degraded).collect())
}

/// A stage's status from the points of the window (ascending time, last = now).
pub fn stage_status(window: &[(i64, &StagePoint)], th: &Thresholds) -> StageStatus {
    let Some((_, cur)) = window.last() else {
        return StageStatus {
            health: Health::Down,
            reasons: vec!["not polled yet".into()],
            ..StageStatus::default()
        };
    };
    let w = secs(th.window);
    let mut s = StageStatus {
        events_total: cur.events_total,
        errors_total: cur.errors_total,
        dlq_total: cur.dlq_total,
        lag_seconds: cur.lag_seconds,
        backlog_events: cur.backlog_events,
        cdc_raw_fill_ratio: cur.cdc_raw_fill_ratio,
        segments_pending: cur.segments_pending,
        ..StageStatus::default()
    };
    if cur.reach.reachable {
        let live: Vec<(i64, &StagePoint)> = window
            .iter()
            .filter(|(_, p)| p.reach.reachable)
            .map(|(t, p)| (*t, *p))
            .collect();
        s.throughput_events_per_sec = rate(&series(&live, |p| p.events_total));
        let errors = series(&live, |p| p.errors_total);
        s.error_rate_per_sec = rate(&errors);
        s.errors_in_window = increase(&errors);
        s.dlq_in_window = increase(&series(&live, |p| p.dlq_total));
    }
    let mut down = Vec::new();
    let mut degraded = Vec::new();
    if let Some(r) = reach_verdict(&cur.reach) {
        down.push(r);
    } else if cur.reach.ready.is_none() {
        degraded.push(format!("{} did not answer /readyz", cur.reach.service));
    }
    if s.errors_in_window > 0.0 {
        degraded.push(format!(
            "{} failures (parse errors, aborted transactions) in the last {w} s",
            fmt_count(s.errors_in_window)
        ));
    }
    if s.dlq_in_window > 0.0 {
        degraded.push(format!(
            "{} events dead-lettered in the last {w} s",
            fmt_count(s.dlq_in_window)
        ));
    }
    if let Some(lag) = s.lag_seconds.filter(|l| *l > th.lag_warn_seconds) {
        degraded.push(format!("lag {lag:.1} s above {} s", th.lag_warn_seconds));
    }
    if let Some(fill) = s.cdc_raw_fill_ratio.filter(|f| *f > th.cdc_raw_warn_ratio) {
        degraded.push(format!(
            "cdc_raw {:.0} % full (Cassandra rejects writes at 100 %)",
            fill * 100.0
        ));
    }
    let backlog = series(window, |p| p.backlog_events);
    if steadily_growing(&backlog, th.growth_min_points) {
        degraded.push(format!(
            "backlog grew from {} to {} events over the last {w} s",
            fmt_count(backlog[0].1),
            fmt_count(backlog[backlog.len() - 1].1)
        ));
    }
    (s.health, s.reasons) = verdict(down, degraded);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::{StageKind, destination_point, scrape_of, stage_point};
    use crate::scrape::ServiceScrape;

    fn sink(
        rows: u64,
        errors: u64,
        lag: f64,
        backlog: u64,
        fast: u64,
        slow: u64,
    ) -> DestinationPoint {
        let text = format!(
            r#"cdc_sink_rows_written_total{{destination="postgres",op="insert",table="a.t"}} {rows}
cdc_sink_errors_total{{destination="postgres",error_class="retriable"}} {errors}
cdc_sink_lag_seconds{{destination="postgres"}} {lag}
cdc_sink_backlog_events{{destination="postgres",partition="0"}} {backlog}
cdc_sink_destination_up{{destination="postgres"}} 1
cdc_sink_end_to_end_latency_seconds_bucket{{destination="postgres",le="0.1"}} {fast}
cdc_sink_end_to_end_latency_seconds_bucket{{destination="postgres",le="1"}} {all}
cdc_sink_end_to_end_latency_seconds_bucket{{destination="postgres",le="+Inf"}} {all}
"#,
            all = fast + slow
        );
        destination_point("sink-postgres", &scrape_of(&text), "postgres")
    }

    fn window(points: &[DestinationPoint]) -> Vec<(i64, &DestinationPoint)> {
        points
            .iter()
            .enumerate()
            .map(|(i, p)| (i as i64 * 5_000, p))
            .collect()
    }

    #[test]
    fn healthy_destination_has_rates_and_window_percentiles() {
        // 10 s: +1000 rows; latency: before the window 100 fast; in it 100 fast + 100 slow.
        let points = [
            sink(0, 0, 0.5, 10, 100, 0),
            sink(400, 0, 0.5, 12, 150, 50),
            sink(1000, 0, 0.7, 8, 200, 100),
        ];
        let s = destination_status(&window(&points), &Thresholds::default());
        assert_eq!(s.health, Health::Up, "{:?}", s.reasons);
        assert_eq!(s.throughput_rows_per_sec, Some(100.0));
        assert_eq!(s.error_rate_per_sec, Some(0.0));
        assert_eq!(s.lag_seconds, Some(0.7));
        assert_eq!(s.backlog_events, Some(8.0));
        assert_eq!(s.latency_events_in_window, 200.0);
        // Window: 100 in (0, 0.1], 100 in (0.1, 1]: median at the top of the first bucket.
        let p50 = s.latency_p50_seconds.expect("p50");
        assert!((p50 - 0.1).abs() < 1e-9, "{p50}");
        let p99 = s.latency_p99_seconds.expect("p99");
        assert!((p99 - (0.1 + 0.9 * 98.0 / 100.0)).abs() < 1e-9, "{p99}");
    }

    #[test]
    fn a_restart_does_not_produce_negative_or_huge_rates() {
        let points = [
            sink(5000, 0, 0.1, 0, 0, 0),
            sink(5200, 0, 0.1, 0, 0, 0),
            sink(100, 0, 0.1, 0, 0, 0),
        ];
        let s = destination_status(&window(&points), &Thresholds::default());
        // +200, then a reset counted from zero: +100 over 10 s.
        assert_eq!(s.throughput_rows_per_sec, Some(30.0));
    }

    #[test]
    fn errors_lag_and_a_growing_backlog_degrade() {
        let th = Thresholds::default();
        let errs = [sink(0, 0, 1.0, 0, 0, 0), sink(10, 3, 1.0, 0, 0, 0)];
        let s = destination_status(&window(&errs), &th);
        assert_eq!(s.health, Health::Degraded);
        assert_eq!(s.errors_in_window, 3.0);
        assert!(s.reasons[0].contains("3 write errors"), "{:?}", s.reasons);
        assert!(s.reasons[0].contains("retriable 3"), "{:?}", s.reasons);

        let lag = [sink(10, 0, 45.0, 0, 0, 0)];
        let s = destination_status(&window(&lag), &th);
        assert_eq!(s.health, Health::Degraded);
        assert!(s.reasons[0].contains("lag 45.0 s"), "{:?}", s.reasons);

        let growing = [
            sink(0, 0, 1.0, 10, 0, 0),
            sink(0, 0, 1.0, 10, 0, 0),
            sink(0, 0, 1.0, 50, 0, 0),
            sink(0, 0, 1.0, 90, 0, 0),
        ];
        let s = destination_status(&window(&growing), &th);
        assert_eq!(s.health, Health::Degraded);
        assert!(s.reasons[0].contains("from 10 to 90"), "{:?}", s.reasons);
        // Fluctuating under load is not growth.
        let busy = [
            sink(0, 0, 1.0, 10, 0, 0),
            sink(0, 0, 1.0, 300, 0, 0),
            sink(0, 0, 1.0, 20, 0, 0),
            sink(0, 0, 1.0, 200, 0, 0),
        ];
        assert_eq!(destination_status(&window(&busy), &th).health, Health::Up);
    }

    #[test]
    fn unreachable_not_ready_or_destination_down_is_red() {
        let th = Thresholds::default();
        let ok = sink(100, 0, 1.0, 0, 0, 0);
        let gone = destination_point(
            "sink-postgres",
            &ServiceScrape {
                error: Some("connection refused".into()),
                ..ServiceScrape::default()
            },
            "postgres",
        );
        let s = destination_status(&window(&[ok.clone(), gone]), &th);
        assert_eq!(s.health, Health::Down);
        assert!(s.reasons[0].contains("sink-postgres does not answer (connection refused)"));
        assert_eq!(s.throughput_rows_per_sec, None);

        let mut not_ready = ok.clone();
        not_ready.reach.ready = Some(false);
        not_ready.reach.not_ready = vec!["destination down (retriable)".into()];
        let s = destination_status(&window(&[not_ready]), &th);
        assert_eq!(s.health, Health::Down);
        assert!(
            s.reasons[0].contains("not ready: destination down"),
            "{:?}",
            s.reasons
        );

        let mut dest_down = ok;
        dest_down.destination_up = Some(0.0);
        let s = destination_status(&window(&[dest_down]), &th);
        assert_eq!(s.health, Health::Down);
        assert!(s.reasons[0].contains("cdc_sink_destination_up = 0"));
    }

    #[test]
    fn stages() {
        let th = Thresholds::default();
        let capture = |events: u64, fill: f64| {
            stage_point(
                "capture",
                &scrape_of(&format!(
                    "cdc_capture_events_total{{op=\"insert\",table=\"a.t\"}} {events}\ncdc_capture_cdc_raw_fill_ratio {fill}\ncdc_capture_lag_seconds 0.4\n"
                )),
                StageKind::Capture,
            )
        };
        let pts = [capture(0, 0.1), capture(50, 0.1)];
        let w: Vec<(i64, &StagePoint)> = vec![(0, &pts[0]), (5_000, &pts[1])];
        let s = stage_status(&w, &th);
        assert_eq!(s.health, Health::Up, "{:?}", s.reasons);
        assert_eq!(s.throughput_events_per_sec, Some(10.0));

        let full = [capture(0, 0.93)];
        let s = stage_status(&[(0, &full[0])], &th);
        assert_eq!(s.health, Health::Degraded);
        assert!(
            s.reasons[0].contains("cdc_raw 93 % full"),
            "{:?}",
            s.reasons
        );

        let gone = stage_point("masker", &ServiceScrape::default(), StageKind::Masker);
        let s = stage_status(&[(0, &gone)], &th);
        assert_eq!(s.health, Health::Down);
        assert!(s.reasons[0].contains("masker does not answer"));
    }
}
