//! One scrape condensed into what the dashboard tracks: per destination (a sink's series with that
//! `destination` label) and per stage (capture, masker). Counters stay cumulative here; rates and
//! quantiles over a window are derived later ([`crate::status`]).

use std::collections::{BTreeMap, BTreeSet};

use cdc_telemetry::metrics::{labels, names, results};
use serde::Serialize;

use crate::quantile::Buckets;
use crate::scrape::ServiceScrape;

/// A pipeline stage that is not a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// Reads `cdc_raw` and publishes raw events.
    Capture,
    /// Masks raw events into masked topics.
    Masker,
}

/// What the service behind a point answered.
#[derive(Debug, Clone, Default)]
pub struct Reachability {
    /// The service that reported it.
    pub service: String,
    /// `/metrics` answered.
    pub reachable: bool,
    /// `/readyz` verdict, `None` when it did not answer.
    pub ready: Option<bool>,
    /// Dependencies `/readyz` lists as not up (`destination: retriable`).
    pub not_ready: Vec<String>,
    /// Why the service is unreachable, when it is.
    pub error: Option<String>,
}

impl Reachability {
    fn of(service: &str, scrape: &ServiceScrape) -> Reachability {
        Reachability {
            service: service.to_owned(),
            reachable: scrape.reachable,
            ready: scrape.ready,
            not_ready: scrape
                .dependencies
                .iter()
                .filter(|d| d.state != "up")
                .map(|d| match &d.message {
                    Some(m) => format!("{} {} ({m})", d.name, d.state),
                    None => format!("{} {}", d.name, d.state),
                })
                .collect(),
            error: scrape.error.clone(),
        }
    }
}

/// One destination at one scrape.
#[derive(Debug, Clone, Default)]
pub struct DestinationPoint {
    /// The service and how it answered.
    pub reach: Reachability,
    /// True when the scrape had any `cdc_sink_*` series for this destination.
    pub has_series: bool,
    /// `cdc_sink_destination_up`.
    pub destination_up: Option<f64>,
    /// `cdc_sink_lag_seconds`.
    pub lag_seconds: Option<f64>,
    /// `cdc_sink_backlog_events`, summed over partitions.
    pub backlog_events: Option<f64>,
    /// `cdc_sink_rows_written_total`, summed over tables and ops.
    pub rows_total: Option<f64>,
    /// `cdc_sink_rows_written_total` by `op`.
    pub rows_by_op: BTreeMap<String, f64>,
    /// `cdc_sink_bytes_written_total`.
    pub bytes_total: Option<f64>,
    /// `cdc_sink_errors_total`, summed over classes.
    pub errors_total: Option<f64>,
    /// `cdc_sink_errors_total` by `error_class`.
    pub errors_by_class: BTreeMap<String, f64>,
    /// `cdc_sink_retries_total`.
    pub retries_total: Option<f64>,
    /// `cdc_sink_dlq_events_total`.
    pub dlq_total: Option<f64>,
    /// `cdc_sink_end_to_end_latency_seconds` buckets.
    pub latency: Option<Buckets>,
}

/// One stage at one scrape.
#[derive(Debug, Clone)]
pub struct StagePoint {
    /// Which stage.
    pub kind: StageKind,
    /// The service and how it answered.
    pub reach: Reachability,
    /// Events out of the stage: `cdc_capture_events_total`, or `cdc_masker_events_total{result="masked"}`.
    pub events_total: Option<f64>,
    /// Failures: capture parse errors and aborted transactions; masker aborted transactions.
    pub errors_total: Option<f64>,
    /// `cdc_masker_dlq_events_total` (masker only).
    pub dlq_total: Option<f64>,
    /// `cdc_capture_lag_seconds` / `cdc_masker_lag_seconds`.
    pub lag_seconds: Option<f64>,
    /// `cdc_masker_backlog_events` (masker only).
    pub backlog_events: Option<f64>,
    /// `cdc_capture_cdc_raw_fill_ratio` (capture only).
    pub cdc_raw_fill_ratio: Option<f64>,
    /// `cdc_capture_segments_pending` (capture only).
    pub segments_pending: Option<f64>,
}

fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    }
}

/// Destinations a scrape reports (values of `destination` on `cdc_sink_*` series).
pub fn destinations_in(scrape: &ServiceScrape) -> BTreeSet<String> {
    scrape
        .metrics
        .as_ref()
        .map(|m| m.label_values("cdc_sink_", labels::DESTINATION))
        .unwrap_or_default()
}

/// Stages a scrape shows metrics of.
pub fn stages_in(scrape: &ServiceScrape) -> Vec<StageKind> {
    let Some(m) = scrape.metrics.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if m.has_prefix("cdc_capture_") {
        out.push(StageKind::Capture);
    }
    if m.has_prefix("cdc_masker_") {
        out.push(StageKind::Masker);
    }
    out
}

/// `destination` as reported by `service` in `scrape`.
pub fn destination_point(
    service: &str,
    scrape: &ServiceScrape,
    destination: &str,
) -> DestinationPoint {
    let mut p = DestinationPoint {
        reach: Reachability::of(service, scrape),
        ..DestinationPoint::default()
    };
    let Some(m) = scrape.metrics.as_ref() else {
        return p;
    };
    let f = [(labels::DESTINATION, destination)];
    p.has_series = m
        .samples
        .iter()
        .any(|s| s.name.starts_with("cdc_sink_") && s.matches(&f));
    p.destination_up = m.sum(names::SINK_DESTINATION_UP, &f);
    p.lag_seconds = m.sum(names::SINK_LAG_SECONDS, &f);
    p.backlog_events = m.sum(names::SINK_BACKLOG_EVENTS, &f);
    p.rows_total = m.sum(names::SINK_ROWS_WRITTEN_TOTAL, &f);
    p.rows_by_op = m.sum_by(names::SINK_ROWS_WRITTEN_TOTAL, &f, labels::OP);
    p.bytes_total = m.sum(names::SINK_BYTES_WRITTEN_TOTAL, &f);
    p.errors_total = m.sum(names::SINK_ERRORS_TOTAL, &f);
    p.errors_by_class = m.sum_by(names::SINK_ERRORS_TOTAL, &f, labels::ERROR_CLASS);
    p.retries_total = m.sum(names::SINK_RETRIES_TOTAL, &f);
    p.dlq_total = m.sum(names::SINK_DLQ_EVENTS_TOTAL, &f);
    p.latency = m.histogram(names::SINK_END_TO_END_LATENCY_SECONDS, &f);
    if p.has_series {
        // Labelled counters (by table/op, by class) export no series until their first
        // increment: for a sink that reports this destination, absent means zero.
        p.rows_total.get_or_insert(0.0);
        p.errors_total.get_or_insert(0.0);
    }
    // The lag gauge starts at 0 before anything is committed: no commit, no lag to show.
    if p.rows_total.is_none_or(|r| r <= 0.0) {
        p.lag_seconds = None;
    }
    p
}

/// The `kind` stage as reported by `service` in `scrape`.
pub fn stage_point(service: &str, scrape: &ServiceScrape, kind: StageKind) -> StagePoint {
    let mut p = StagePoint {
        kind,
        reach: Reachability::of(service, scrape),
        events_total: None,
        errors_total: None,
        dlq_total: None,
        lag_seconds: None,
        backlog_events: None,
        cdc_raw_fill_ratio: None,
        segments_pending: None,
    };
    let Some(m) = scrape.metrics.as_ref() else {
        return p;
    };
    let aborted = [(labels::RESULT, results::ABORTED)];
    match kind {
        StageKind::Capture => {
            p.events_total = m.sum(names::CAPTURE_EVENTS_TOTAL, &[]);
            p.errors_total = add(
                m.sum(names::CAPTURE_PARSE_ERRORS_TOTAL, &[]),
                m.sum(names::CAPTURE_TRANSACTIONS_TOTAL, &aborted),
            );
            p.lag_seconds = m.sum(names::CAPTURE_LAG_SECONDS, &[]);
            p.cdc_raw_fill_ratio = m.sum(names::CAPTURE_CDC_RAW_FILL_RATIO, &[]);
            p.segments_pending = m.sum(names::CAPTURE_SEGMENTS_PENDING, &[]);
            if m.has_prefix("cdc_capture_") {
                p.events_total.get_or_insert(0.0);
            }
        }
        StageKind::Masker => {
            p.events_total = m.sum(
                names::MASKER_EVENTS_TOTAL,
                &[(labels::RESULT, results::MASKED)],
            );
            p.errors_total = m.sum(names::MASKER_TRANSACTIONS_TOTAL, &aborted);
            p.dlq_total = m.sum(names::MASKER_DLQ_EVENTS_TOTAL, &[]);
            p.lag_seconds = m.sum(names::MASKER_LAG_SECONDS, &[]);
            p.backlog_events = m.sum(names::MASKER_BACKLOG_EVENTS, &[]);
            if m.has_prefix("cdc_masker_") {
                p.events_total.get_or_insert(0.0);
            }
        }
    }
    if p.events_total.is_none_or(|e| e <= 0.0) {
        p.lag_seconds = None;
    }
    p
}

/// Parses `text` as a scrape of a reachable, ready service (tests of this crate).
#[cfg(test)]
pub(crate) fn scrape_of(text: &str) -> ServiceScrape {
    ServiceScrape {
        reachable: true,
        ready: Some(true),
        metrics: Some(crate::exposition::Exposition::parse(text).expect("test metrics parse")),
        ..ServiceScrape::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::Dependency;

    #[test]
    fn sink_series_are_filtered_by_destination_and_summed() {
        let s = scrape_of(
            r#"cdc_sink_rows_written_total{destination="postgres",op="insert",table="a.t"} 10
cdc_sink_rows_written_total{destination="postgres",op="delete",table="a.u"} 2
cdc_sink_rows_written_total{destination="clickhouse",op="insert",table="a.t"} 99
cdc_sink_backlog_events{destination="postgres",partition="0"} 3
cdc_sink_backlog_events{destination="postgres",partition="1"} 4
cdc_sink_errors_total{destination="postgres",error_class="retriable"} 1
cdc_sink_errors_total{destination="postgres",error_class="poison"} 2
cdc_sink_destination_up{destination="postgres"} 1
cdc_sink_end_to_end_latency_seconds_bucket{destination="postgres",le="1"} 5
cdc_sink_end_to_end_latency_seconds_bucket{destination="postgres",le="+Inf"} 6
"#,
        );
        assert_eq!(
            destinations_in(&s),
            BTreeSet::from(["clickhouse".to_owned(), "postgres".to_owned()])
        );
        let p = destination_point("sink-postgres", &s, "postgres");
        assert!(p.has_series && p.reach.reachable);
        assert_eq!(p.rows_total, Some(12.0));
        assert_eq!(p.rows_by_op.get("delete"), Some(&2.0));
        assert_eq!(p.backlog_events, Some(7.0));
        assert_eq!(p.errors_total, Some(3.0));
        assert_eq!(p.errors_by_class.get("poison"), Some(&2.0));
        assert_eq!(p.destination_up, Some(1.0));
        assert_eq!(p.lag_seconds, None, "not exported: unknown, not zero");
        assert_eq!(p.retries_total, None);
        assert_eq!(p.latency.expect("histogram").total(), 6.0);
        let absent = destination_point("sink-postgres", &s, "timescaledb");
        assert!(!absent.has_series);
        assert_eq!(absent.rows_total, None);
    }

    #[test]
    fn a_fresh_sink_has_zero_rows_and_errors_and_no_lag_yet() {
        let fresh = scrape_of(
            "cdc_sink_lag_seconds{destination=\"clickhouse\"} 0\ncdc_sink_retries_total{destination=\"clickhouse\"} 0\n",
        );
        let p = destination_point("sink-clickhouse", &fresh, "clickhouse");
        assert_eq!(p.rows_total, Some(0.0));
        assert_eq!(p.errors_total, Some(0.0));
        assert_eq!(p.lag_seconds, None, "the gauge's initial 0 is not a lag");
        let written = scrape_of(
            "cdc_sink_lag_seconds{destination=\"clickhouse\"} 0.25\ncdc_sink_rows_written_total{destination=\"clickhouse\",op=\"insert\",table=\"a.t\"} 3\n",
        );
        let p = destination_point("sink-clickhouse", &written, "clickhouse");
        assert_eq!(p.lag_seconds, Some(0.25));

        let masker = scrape_of("cdc_masker_lag_seconds 0\ncdc_masker_backlog_events 0\n");
        let m = stage_point("masker", &masker, StageKind::Masker);
        assert_eq!(m.events_total, Some(0.0));
        assert_eq!(m.lag_seconds, None);
    }

    #[test]
    fn stage_series() {
        let s = scrape_of(
            r#"cdc_capture_events_total{op="insert",table="a.t"} 5
cdc_capture_events_total{op="update",table="a.t"} 6
cdc_capture_parse_errors_total 1
cdc_capture_transactions_total{result="aborted"} 2
cdc_capture_transactions_total{result="committed"} 9
cdc_capture_cdc_raw_fill_ratio 0.25
cdc_masker_events_total{result="masked",table="a.t"} 7
cdc_masker_events_total{result="dlq",table="a.t"} 1
cdc_masker_dlq_events_total 1
"#,
        );
        assert_eq!(stages_in(&s), vec![StageKind::Capture, StageKind::Masker]);
        let c = stage_point("capture", &s, StageKind::Capture);
        assert_eq!(c.events_total, Some(11.0));
        assert_eq!(c.errors_total, Some(3.0));
        assert_eq!(c.cdc_raw_fill_ratio, Some(0.25));
        let m = stage_point("masker", &s, StageKind::Masker);
        assert_eq!(m.events_total, Some(7.0));
        assert_eq!(m.dlq_total, Some(1.0));
        assert_eq!(m.errors_total, None);
    }

    #[test]
    fn unreachable_and_not_ready_services() {
        let down = ServiceScrape {
            error: Some("http://127.0.0.1:1/metrics: connection refused or unreachable".into()),
            ..ServiceScrape::default()
        };
        let p = destination_point("sink-clickhouse", &down, "clickhouse");
        assert!(!p.reach.reachable);
        assert!(p.reach.error.expect("why").contains("refused"));
        assert_eq!(p.rows_total, None);

        let mut not_ready = scrape_of("cdc_sink_destination_up{destination=\"clickhouse\"} 0\n");
        not_ready.ready = Some(false);
        not_ready.dependencies = vec![
            Dependency {
                name: "kafka".into(),
                state: "up".into(),
                message: None,
            },
            Dependency {
                name: "destination".into(),
                state: "down".into(),
                message: Some("retriable".into()),
            },
        ];
        let p = destination_point("sink-clickhouse", &not_ready, "clickhouse");
        assert_eq!(
            p.reach.not_ready,
            vec!["destination down (retriable)".to_owned()]
        );
        assert_eq!(p.destination_up, Some(0.0));
    }
}
