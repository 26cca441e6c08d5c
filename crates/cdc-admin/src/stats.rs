//! Status numbers read back from a service's own Prometheus registry, so `cdcctl status` and
//! `/metrics` never disagree: sums of counters and gauges by name and labels, histogram
//! percentiles, and a sliding window that turns counter totals into rates.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cdc_telemetry::{DependencyState, HealthState, Registry};
use prometheus::proto::MetricFamily;

use crate::pb;

/// A snapshot of every metric in a registry.
pub struct MetricsView {
    families: Vec<MetricFamily>,
}

impl std::fmt::Debug for MetricsView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsView")
            .field("families", &self.families.len())
            .finish()
    }
}

/// Cumulative bucket counts of one histogram (upper bound, observations at or below it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
}

impl HistogramSnapshot {
    /// Observations made since `earlier` (same buckets).
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        let buckets = self
            .buckets
            .iter()
            .map(|(le, c)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|(l, _)| l == le)
                    .map_or(0, |(_, c)| *c);
                (*le, c.saturating_sub(before))
            })
            .collect();
        HistogramSnapshot {
            buckets,
            count: self.count.saturating_sub(earlier.count),
        }
    }

    /// The `q` quantile (0..=1) by linear interpolation inside the bucket holding it, as
    /// Prometheus' `histogram_quantile` does; `0` without observations. Beyond the last finite
    /// bucket the last bound is returned.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut lower = 0.0;
        let mut below = 0u64;
        for &(upper, cumulative) in &self.buckets {
            if cumulative as f64 >= rank {
                let in_bucket = cumulative.saturating_sub(below);
                if in_bucket == 0 {
                    return upper;
                }
                let fraction = (rank - below as f64) / in_bucket as f64;
                return lower + (upper - lower) * fraction.clamp(0.0, 1.0);
            }
            lower = upper;
            below = cumulative;
        }
        lower
    }
}

impl MetricsView {
    /// Gathers `registry` now.
    pub fn gather(registry: &Registry) -> Self {
        MetricsView {
            families: registry.gather(),
        }
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a prometheus::proto::Metric> + 'a {
        self.families
            .iter()
            .filter(move |f| f.name() == name)
            .flat_map(|f| f.get_metric().iter())
            .filter(move |m| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
    }

    /// Sum of the counter or gauge `name` over every series carrying `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut family_type = None;
        for f in &self.families {
            if f.name() == name {
                family_type = Some(f.get_field_type());
            }
        }
        self.matching(name, labels)
            .map(|m| match family_type {
                Some(prometheus::proto::MetricType::COUNTER) => m.get_counter().value(),
                _ => m.get_gauge().value(),
            })
            .sum()
    }

    /// The histogram `name` summed over every series carrying `labels`.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> HistogramSnapshot {
        let mut out = HistogramSnapshot::default();
        for m in self.matching(name, labels) {
            let h = m.get_histogram();
            out.count += h.sample_count();
            for b in h.get_bucket() {
                let le = b.upper_bound();
                match out.buckets.iter_mut().find(|(l, _)| *l == le) {
                    Some((_, c)) => *c += b.cumulative_count(),
                    None => out.buckets.push((le, b.cumulative_count())),
                }
            }
        }
        out.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    events: f64,
    latency: HistogramSnapshot,
}

/// A sliding window over one event counter (and optionally a latency histogram): events per
/// second and latency percentiles of the last `window`. Feed it with [`Window::observe`] from a
/// periodic task (every second is plenty).
#[derive(Debug)]
pub struct Window {
    span: Duration,
    samples: Mutex<VecDeque<Sample>>,
}

impl Window {
    /// A window of `span` (e.g. 10 s).
    pub fn new(span: Duration) -> Self {
        Window {
            span,
            samples: Mutex::new(VecDeque::new()),
        }
    }

    /// Records the current totals.
    pub fn observe(&self, events_total: f64, latency: HistogramSnapshot) {
        self.observe_at(Instant::now(), events_total, latency);
    }

    fn observe_at(&self, at: Instant, events: f64, latency: HistogramSnapshot) {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        s.push_back(Sample {
            at,
            events,
            latency,
        });
        // Keep one sample older than the span so the rate covers the whole span.
        while s.len() > 2
            && s.get(1)
                .is_some_and(|x| at.duration_since(x.at) >= self.span)
        {
            s.pop_front();
        }
    }

    /// Events per second between the oldest and newest sample; 0 with fewer than two samples.
    pub fn rate(&self) -> f64 {
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        match (s.front(), s.back()) {
            (Some(a), Some(b)) if b.at > a.at => {
                (b.events - a.events).max(0.0) / b.at.duration_since(a.at).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// p50, p95, p99 of the observations inside the window; of `lifetime` when the window saw
    /// none (an idle service still shows its last known latencies).
    pub fn latency_percentiles(&self, lifetime: &HistogramSnapshot) -> (f64, f64, f64) {
        let recent = {
            let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
            match (s.front(), s.back()) {
                (Some(a), Some(b)) => b.latency.since(&a.latency),
                _ => HistogramSnapshot::default(),
            }
        };
        let h = if recent.count > 0 { &recent } else { lifetime };
        (h.quantile(0.50), h.quantile(0.95), h.quantile(0.99))
    }
}

/// The dependencies of `/readyz` as protobuf messages.
pub fn dependencies(health: &HealthState) -> Vec<pb::DependencyStatus> {
    health
        .snapshot()
        .dependencies
        .into_iter()
        .map(|d| pb::DependencyStatus {
            name: d.name,
            health: match d.state {
                DependencyState::Up => pb::Health::Up,
                DependencyState::Down => pb::Health::Down,
                DependencyState::Unknown => pb::Health::Degraded,
            } as i32,
            message: d.message.unwrap_or_default(),
            checked_at_ms: d
                .last_checked
                .and_then(|t| {
                    time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .map_or(0, |t| (t.unix_timestamp_nanos() / 1_000_000) as i64),
        })
        .collect()
}

/// Overall health: UP when ready and not paused; DEGRADED otherwise (the process answers, so it
/// is not DOWN — `cdcctl` reports DOWN for services it cannot reach).
pub fn overall(health: &HealthState, paused: bool) -> pb::Health {
    if health.is_ready() && !paused {
        pb::Health::Up
    } else {
        pb::Health::Degraded
    }
}

/// Nonnegative float to an integer count.
pub fn count(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};

    use super::*;

    #[test]
    fn sums_and_quantiles_come_from_the_registry() {
        let registry = Registry::new();
        let c = IntCounterVec::new(
            Opts::new("x_total", "x").const_label("destination", "pg"),
            &["op"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        registry
            .register(Box::new(c.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        c.with_label_values(&["insert"]).inc_by(3);
        c.with_label_values(&["delete"]).inc_by(2);
        let h = Histogram::with_opts(
            HistogramOpts::new("lat_seconds", "l").buckets(vec![1.0, 2.0, 4.0]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        registry
            .register(Box::new(h.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        for v in [0.5, 1.5, 1.5, 3.0] {
            h.observe(v);
        }
        let view = MetricsView::gather(&registry);
        assert_eq!(view.sum("x_total", &[("destination", "pg")]), 5.0);
        assert_eq!(view.sum("x_total", &[("op", "delete")]), 2.0);
        assert_eq!(view.sum("x_total", &[("destination", "ch")]), 0.0);
        let snap = view.histogram("lat_seconds", &[]);
        assert_eq!(snap.count, 4);
        // rank 2 of 4 sits in (1, 2], which holds observations 2..=3: halfway → 1.5.
        assert!(
            (snap.quantile(0.5) - 1.5).abs() < 1e-9,
            "{}",
            snap.quantile(0.5)
        );
        assert!(snap.quantile(0.99) > 2.0 && snap.quantile(0.99) <= 4.0);
        assert_eq!(HistogramSnapshot::default().quantile(0.5), 0.0);
    }

    #[test]
    fn the_window_turns_totals_into_rates() {
        let w = Window::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(w.rate(), 0.0);
        w.observe_at(t0, 100.0, HistogramSnapshot::default());
        w.observe_at(
            t0 + Duration::from_secs(2),
            300.0,
            HistogramSnapshot::default(),
        );
        assert!((w.rate() - 100.0).abs() < 1e-9);
        // Old samples fall out of the window: the rate follows the recent slope.
        for i in 3..30u64 {
            w.observe_at(
                t0 + Duration::from_secs(i),
                300.0,
                HistogramSnapshot::default(),
            );
        }
        assert_eq!(w.rate(), 0.0);
        let lifetime = HistogramSnapshot {
            buckets: vec![(1.0, 4), (2.0, 4)],
            count: 4,
        };
        let (p50, _, _) = w.latency_percentiles(&lifetime);
        assert!(
            p50 > 0.0 && p50 <= 1.0,
            "falls back to the lifetime histogram"
        );
    }
}
