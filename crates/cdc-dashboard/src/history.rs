//! The dashboard's memory: the raw points of the last window (for rates and percentiles) and, per
//! destination and stage, a ring buffer of derived samples covering the retention (15 minutes by
//! default) for the charts. Bounded: nothing grows with uptime.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use crate::endpoint::{Endpoint, Role};
use crate::point::{
    DestinationPoint, StageKind, StagePoint, destination_point, destinations_in, stage_point,
    stages_in,
};
use crate::scrape::{Dependency, ServiceScrape};
use crate::status::{
    DestinationStatus, Health, StageStatus, Thresholds, destination_status, stage_status,
};

/// One chart sample of a destination.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationSample {
    /// Unix time, ms.
    pub t: i64,
    /// Health then.
    pub health: Health,
    /// Lag, s.
    pub lag_seconds: Option<f64>,
    /// Rows/s.
    pub throughput_rows_per_sec: Option<f64>,
    /// Errors/s.
    pub error_rate_per_sec: Option<f64>,
    /// Backlog, events.
    pub backlog_events: Option<f64>,
    /// p50 latency, s.
    pub latency_p50_seconds: Option<f64>,
    /// p95 latency, s.
    pub latency_p95_seconds: Option<f64>,
    /// p99 latency, s.
    pub latency_p99_seconds: Option<f64>,
}

/// One chart sample of a stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageSample {
    /// Unix time, ms.
    pub t: i64,
    /// Health then.
    pub health: Health,
    /// Events/s.
    pub throughput_events_per_sec: Option<f64>,
    /// Lag, s.
    pub lag_seconds: Option<f64>,
    /// Backlog, events.
    pub backlog_events: Option<f64>,
    /// Failures/s.
    pub error_rate_per_sec: Option<f64>,
}

/// A destination in the API.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationView {
    /// `postgres`, `clickhouse`, `timescaledb` (`name@service` when two services report one).
    pub name: String,
    /// The service reporting it.
    pub service: String,
    /// Current figures.
    #[serde(flatten)]
    pub status: DestinationStatus,
    /// The retention's samples, oldest first.
    pub history: Vec<DestinationSample>,
}

/// A stage in the API.
#[derive(Debug, Clone, Serialize)]
pub struct StageView {
    /// The service name (`capture`, `masker`, ...).
    pub name: String,
    /// Which stage it is.
    pub kind: StageKind,
    /// Current figures.
    #[serde(flatten)]
    pub status: StageStatus,
    /// The retention's samples, oldest first.
    pub history: Vec<StageSample>,
}

/// One polled service in the API.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    /// Service name.
    pub name: String,
    /// Admin base URL.
    pub url: String,
    /// `/metrics` answered.
    pub reachable: bool,
    /// `/readyz` verdict (`null`: no answer).
    pub ready: Option<bool>,
    /// Dependencies from `/readyz`.
    pub dependencies: Vec<Dependency>,
    /// Why it is unreachable.
    pub error: Option<String>,
    /// Poll duration, ms.
    pub scrape_ms: u64,
}

/// `GET /api/snapshot`.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Unix time of this answer, ms.
    pub generated_at_ms: i64,
    /// Poll interval, ms (the page refreshes at the same pace).
    pub interval_ms: u64,
    /// Window of rates and percentiles, s.
    pub window_secs: u64,
    /// History kept, s.
    pub retention_secs: u64,
    /// Lag above which health turns amber, s.
    pub lag_warn_seconds: f64,
    /// Polls done since start.
    pub polls: u64,
    /// Unix time of the last poll, ms.
    pub last_poll_ms: Option<i64>,
    /// Destinations, in configuration order.
    pub destinations: Vec<DestinationView>,
    /// Stages, in configuration order.
    pub stages: Vec<StageView>,
    /// Every polled service.
    pub services: Vec<ServiceView>,
}

/// The raw points of one poll, in configuration order.
struct Tick {
    at_ms: i64,
    destinations: Vec<(String, DestinationPoint)>,
    stages: Vec<(String, StagePoint)>,
}

fn find<'a, P>(list: &'a [(String, P)], key: &str) -> Option<&'a P> {
    list.iter().find(|(k, _)| k == key).map(|(_, p)| p)
}

struct Tracked<S, H> {
    service: String,
    status: S,
    history: VecDeque<H>,
}

/// Everything the dashboard remembers.
pub struct History {
    interval: Duration,
    retention: Duration,
    thresholds: Thresholds,
    ticks: VecDeque<Tick>,
    destinations: Vec<(String, Tracked<DestinationStatus, DestinationSample>)>,
    stages: Vec<(String, StageKind, Tracked<StageStatus, StageSample>)>,
    services: Vec<ServiceView>,
    polls: u64,
    last_poll_ms: Option<i64>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl History {
    /// Empty history for polls every `interval`, keeping `retention` of samples.
    pub fn new(interval: Duration, retention: Duration, thresholds: Thresholds) -> History {
        History {
            interval,
            retention,
            thresholds,
            ticks: VecDeque::new(),
            destinations: Vec::new(),
            stages: Vec::new(),
            services: Vec::new(),
            polls: 0,
            last_poll_ms: None,
        }
    }

    /// Samples one chart keeps at most (retention / interval, plus the current one).
    pub fn capacity(&self) -> usize {
        let n = self.retention.as_millis() / self.interval.as_millis().max(1);
        usize::try_from(n).unwrap_or(usize::MAX).saturating_add(1)
    }

    /// Records the poll made at `at_ms` (unix ms) of every endpoint and derives the new status.
    pub fn record(&mut self, at_ms: i64, scrapes: &[(Endpoint, ServiceScrape)]) {
        let mut tick = Tick {
            at_ms,
            destinations: Vec::new(),
            stages: Vec::new(),
        };
        for (endpoint, scrape) in scrapes {
            let service = endpoint.name.as_str();
            // Destinations: the one its name promises, those its metrics show, and those it showed
            // before (so a service that stops answering still has its destinations shown down).
            let mut dests: Vec<String> = Vec::new();
            if let Role::Sink { destination } = &endpoint.role {
                dests.push(destination.clone());
            }
            dests.extend(destinations_in(scrape));
            dests.extend(
                self.destinations
                    .iter()
                    .filter(|(_, t)| t.service == service)
                    .map(|(k, _)| base_name(k).to_owned()),
            );
            dests.sort();
            dests.dedup();
            for d in dests {
                let key = self.destination_key(&d, service, &tick.destinations);
                if find(&tick.destinations, &key).is_none() {
                    tick.destinations
                        .push((key, destination_point(service, scrape, &d)));
                }
            }
            let mut kinds = match endpoint.role {
                Role::Capture => vec![StageKind::Capture],
                Role::Masker => vec![StageKind::Masker],
                _ => Vec::new(),
            };
            kinds.extend(stages_in(scrape));
            kinds.extend(
                self.stages
                    .iter()
                    .filter(|(_, _, t)| t.service == service)
                    .map(|(_, k, _)| *k),
            );
            let mut unique: Vec<StageKind> = Vec::new();
            for k in kinds {
                if !unique.contains(&k) {
                    unique.push(k);
                }
            }
            let kinds = unique;
            let multiple = kinds.len() > 1;
            for kind in kinds {
                let key = if multiple {
                    format!("{service}/{}", stage_label(kind))
                } else {
                    service.to_owned()
                };
                if find(&tick.stages, &key).is_none() {
                    tick.stages.push((key, stage_point(service, scrape, kind)));
                }
            }
        }
        self.services = scrapes
            .iter()
            .map(|(e, s)| ServiceView {
                name: e.name.clone(),
                url: e.base_url.clone(),
                reachable: s.reachable,
                ready: s.ready,
                dependencies: s.dependencies.clone(),
                error: s.error.clone(),
                scrape_ms: u64::try_from(s.took.as_millis()).unwrap_or(u64::MAX),
            })
            .collect();

        self.ticks.push_back(tick);
        let oldest = at_ms - ms(self.thresholds.window);
        while self.ticks.front().is_some_and(|t| t.at_ms < oldest) {
            self.ticks.pop_front();
        }
        self.polls += 1;
        self.last_poll_ms = Some(at_ms);
        self.derive(at_ms);
    }

    fn destination_key(
        &self,
        destination: &str,
        service: &str,
        this_tick: &[(String, DestinationPoint)],
    ) -> String {
        let taken_by_other = self
            .destinations
            .iter()
            .any(|(k, t)| k == destination && t.service != service)
            || find(this_tick, destination).is_some_and(|p| p.reach.service != service);
        if taken_by_other {
            format!("{destination}@{service}")
        } else {
            destination.to_owned()
        }
    }

    fn derive(&mut self, at_ms: i64) {
        let capacity = self.capacity();
        let horizon = at_ms - ms(self.retention);
        let Some(latest) = self.ticks.back() else {
            return;
        };
        for (key, point) in &latest.destinations {
            let window: Vec<(i64, &DestinationPoint)> = self
                .ticks
                .iter()
                .filter_map(|t| find(&t.destinations, key).map(|p| (t.at_ms, p)))
                .collect();
            let status = destination_status(&window, &self.thresholds);
            let sample = DestinationSample {
                t: at_ms,
                health: status.health,
                lag_seconds: status.lag_seconds,
                throughput_rows_per_sec: status.throughput_rows_per_sec,
                error_rate_per_sec: status.error_rate_per_sec,
                backlog_events: status.backlog_events,
                latency_p50_seconds: status.latency_p50_seconds,
                latency_p95_seconds: status.latency_p95_seconds,
                latency_p99_seconds: status.latency_p99_seconds,
            };
            let tracked = match self.destinations.iter_mut().find(|(k, _)| k == key) {
                Some((_, t)) => t,
                None => {
                    self.destinations.push((
                        key.clone(),
                        Tracked {
                            service: point.reach.service.clone(),
                            status: DestinationStatus::default(),
                            history: VecDeque::with_capacity(capacity),
                        },
                    ));
                    let last = self.destinations.len() - 1;
                    &mut self.destinations[last].1
                }
            };
            tracked.status = status;
            push_bounded(&mut tracked.history, sample, capacity, horizon, |s| s.t);
        }
        for (key, point) in &latest.stages {
            let window: Vec<(i64, &StagePoint)> = self
                .ticks
                .iter()
                .filter_map(|t| find(&t.stages, key).map(|p| (t.at_ms, p)))
                .collect();
            let status = stage_status(&window, &self.thresholds);
            let sample = StageSample {
                t: at_ms,
                health: status.health,
                throughput_events_per_sec: status.throughput_events_per_sec,
                lag_seconds: status.lag_seconds,
                backlog_events: status.backlog_events,
                error_rate_per_sec: status.error_rate_per_sec,
            };
            let tracked = match self.stages.iter_mut().find(|(k, _, _)| k == key) {
                Some((_, _, t)) => t,
                None => {
                    self.stages.push((
                        key.clone(),
                        point.kind,
                        Tracked {
                            service: point.reach.service.clone(),
                            status: StageStatus::default(),
                            history: VecDeque::with_capacity(capacity),
                        },
                    ));
                    let last = self.stages.len() - 1;
                    &mut self.stages[last].2
                }
            };
            tracked.status = status;
            push_bounded(&mut tracked.history, sample, capacity, horizon, |s| s.t);
        }
    }

    /// The API answer at `now_ms`.
    pub fn snapshot(&self, now_ms: i64) -> Snapshot {
        Snapshot {
            generated_at_ms: now_ms,
            interval_ms: u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX),
            window_secs: self.thresholds.window.as_secs(),
            retention_secs: self.retention.as_secs(),
            lag_warn_seconds: self.thresholds.lag_warn_seconds,
            polls: self.polls,
            last_poll_ms: self.last_poll_ms,
            destinations: self
                .destinations
                .iter()
                .map(|(name, t)| DestinationView {
                    name: name.clone(),
                    service: t.service.clone(),
                    status: t.status.clone(),
                    history: t.history.iter().cloned().collect(),
                })
                .collect(),
            stages: self
                .stages
                .iter()
                .map(|(name, kind, t)| StageView {
                    name: name.clone(),
                    kind: *kind,
                    status: t.status.clone(),
                    history: t.history.iter().cloned().collect(),
                })
                .collect(),
            services: self.services.clone(),
        }
    }
}

fn base_name(key: &str) -> &str {
    key.split('@').next().unwrap_or(key)
}

fn stage_label(kind: StageKind) -> &'static str {
    match kind {
        StageKind::Capture => "capture",
        StageKind::Masker => "masker",
    }
}

/// Appends `item`, then drops the oldest while over `capacity` or older than `horizon`.
fn push_bounded<T>(
    buf: &mut VecDeque<T>,
    item: T,
    capacity: usize,
    horizon: i64,
    t: impl Fn(&T) -> i64,
) {
    buf.push_back(item);
    while buf.len() > capacity || buf.front().is_some_and(|x| t(x) < horizon) {
        buf.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::scrape_of;

    fn sink_scrape(dest: &str, rows: u64) -> ServiceScrape {
        scrape_of(&format!(
            "cdc_sink_rows_written_total{{destination=\"{dest}\",op=\"insert\",table=\"a.t\"}} {rows}\ncdc_sink_destination_up{{destination=\"{dest}\"}} 1\ncdc_sink_lag_seconds{{destination=\"{dest}\"}} 0.5\n"
        ))
    }

    fn endpoints() -> Vec<Endpoint> {
        vec![
            Endpoint::new("capture", "http://127.0.0.1:9101"),
            Endpoint::new("sink-postgres", "http://127.0.0.1:9103"),
            Endpoint::new("sink-clickhouse", "http://127.0.0.1:9104"),
        ]
    }

    #[test]
    fn a_stopped_sink_turns_its_destination_red_and_only_it() {
        let eps = endpoints();
        let mut h = History::new(
            Duration::from_secs(5),
            Duration::from_secs(900),
            Thresholds::default(),
        );
        let unreachable = ServiceScrape {
            error: Some("connection refused".into()),
            ..ServiceScrape::default()
        };
        for i in 0..4u64 {
            let ch = if i < 3 {
                sink_scrape("clickhouse", i * 100)
            } else {
                unreachable.clone()
            };
            h.record(
                i as i64 * 5_000,
                &[
                    (eps[0].clone(), unreachable.clone()),
                    (eps[1].clone(), sink_scrape("postgres", i * 500)),
                    (eps[2].clone(), ch),
                ],
            );
        }
        let snap = h.snapshot(20_000);
        assert_eq!(snap.polls, 4);
        let names: Vec<&str> = snap.destinations.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, vec!["postgres", "clickhouse"], "configuration order");
        let pg = &snap.destinations[0];
        assert_eq!(pg.status.health, Health::Up, "{:?}", pg.status.reasons);
        assert_eq!(pg.status.throughput_rows_per_sec, Some(100.0));
        assert_eq!(pg.history.len(), 4);
        let ch = &snap.destinations[1];
        assert_eq!(ch.status.health, Health::Down);
        assert_eq!(ch.history.last().map(|s| s.health), Some(Health::Down));
        assert_eq!(ch.history[2].health, Health::Up);
        assert_eq!(snap.stages.len(), 1);
        assert_eq!(snap.stages[0].status.health, Health::Down);
        assert_eq!(snap.services.len(), 3);
        assert!(!snap.services[2].reachable);

        let json = serde_json::to_value(&snap).expect("json");
        assert_eq!(json["destinations"][1]["health"], "down");
        assert_eq!(json["destinations"][0]["throughput_rows_per_sec"], 100.0);
        assert!(json["destinations"][0]["history"][3]["t"].is_i64());
    }

    #[test]
    fn history_is_a_bounded_ring() {
        let eps = endpoints();
        let mut h = History::new(
            Duration::from_secs(5),
            Duration::from_secs(60),
            Thresholds::default(),
        );
        assert_eq!(h.capacity(), 13);
        for i in 0..100u64 {
            h.record(
                i as i64 * 5_000,
                &[(eps[1].clone(), sink_scrape("postgres", i))],
            );
        }
        let snap = h.snapshot(500_000);
        let hist = &snap.destinations[0].history;
        assert_eq!(hist.len(), 13);
        assert_eq!(hist.first().map(|s| s.t), Some(99 * 5_000 - 60_000));
        // Raw points are kept for the window only (30 s / 5 s + 1).
        assert_eq!(h.ticks.len(), 7);
    }

    #[test]
    fn other_services_show_what_their_metrics_hold_and_names_stay_unique() {
        let mut h = History::new(
            Duration::from_secs(5),
            Duration::from_secs(900),
            Thresholds::default(),
        );
        let a = Endpoint::new("sink-postgres", "http://a:1");
        let b = Endpoint::new("pg-replica", "http://b:1");
        h.record(
            0,
            &[
                (a.clone(), sink_scrape("postgres", 1)),
                (b.clone(), sink_scrape("postgres", 2)),
            ],
        );
        let snap = h.snapshot(0);
        let names: Vec<&str> = snap.destinations.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, vec!["postgres", "postgres@pg-replica"]);
        // The replica stops answering: its destination stays listed, down.
        h.record(
            5_000,
            &[
                (a, sink_scrape("postgres", 3)),
                (b, ServiceScrape::default()),
            ],
        );
        let snap = h.snapshot(5_000);
        assert_eq!(snap.destinations[1].status.health, Health::Down);
        assert_eq!(snap.destinations[0].status.health, Health::Up);
    }
}
