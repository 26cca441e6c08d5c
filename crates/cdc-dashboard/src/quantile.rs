//! Quantiles from cumulative histogram buckets, computed the way PromQL's `histogram_quantile`
//! does: find the bucket holding the rank and interpolate linearly inside it.

/// Cumulative bucket counts of one histogram, sorted by upper bound (`le`).
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    /// `(upper bound, cumulative count)`, ascending bounds, the last one `+Inf` when present.
    bounds: Vec<(f64, f64)>,
}

impl Buckets {
    /// Buckets from `(le, cumulative count)` pairs in any order. Counts that decrease with a
    /// larger bound (possible when a scrape races with an observation) are raised to keep the
    /// series monotonic, as Prometheus does.
    pub fn new(mut pairs: Vec<(f64, f64)>) -> Buckets {
        pairs.retain(|(le, c)| !le.is_nan() && c.is_finite());
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        pairs.dedup_by(|b, a| a.0 == b.0);
        let mut max = 0.0_f64;
        for (_, c) in &mut pairs {
            max = max.max(*c);
            *c = max;
        }
        Buckets { bounds: pairs }
    }

    /// `(upper bound, cumulative count)` pairs.
    pub fn bounds(&self) -> Vec<(f64, f64)> {
        self.bounds.clone()
    }

    /// Observations counted (the `+Inf` bucket, else the largest bucket).
    pub fn total(&self) -> f64 {
        self.bounds.last().map_or(0.0, |(_, c)| *c)
    }

    /// The observations made between `earlier` and `self` (bucket by bucket). When any bucket
    /// went down the process restarted in between: its counts since the restart are `self`.
    pub fn since(&self, earlier: &Buckets) -> Buckets {
        let mut out = Vec::with_capacity(self.bounds.len());
        for &(le, c) in &self.bounds {
            let before = earlier
                .bounds
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, c)| *c);
            if c < before {
                return self.clone();
            }
            out.push((le, c - before));
        }
        Buckets::new(out)
    }

    /// The `q`-quantile (0 ≤ q ≤ 1) of the observations, interpolated inside the bucket that holds
    /// its rank. `None` when there are no observations, no `+Inf` bucket or `q` is out of range.
    /// A rank in the `+Inf` bucket returns the largest finite bound (as PromQL does).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&q) {
            return None;
        }
        let (last_le, total) = *self.bounds.last()?;
        if last_le != f64::INFINITY || total <= 0.0 {
            return None;
        }
        let rank = q * total;
        // `c > 0` so that rank 0 lands in the first non-empty bucket, not an empty one before it.
        let idx = self
            .bounds
            .iter()
            .position(|(_, c)| *c >= rank && *c > 0.0)?;
        let (upper, count) = self.bounds[idx];
        if upper == f64::INFINITY {
            return self
                .bounds
                .len()
                .checked_sub(2)
                .map(|i| self.bounds[i].0)
                .filter(|b| b.is_finite());
        }
        let (lower, below) = if idx == 0 {
            if upper <= 0.0 {
                return Some(upper);
            }
            (0.0, 0.0)
        } else {
            self.bounds[idx - 1]
        };
        let in_bucket = count - below;
        if in_bucket <= 0.0 {
            return Some(upper);
        }
        Some(lower + (upper - lower) * (rank - below) / in_bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn interpolates_inside_the_bucket_holding_the_rank() {
        // 100 observations: 10 ≤ 0.1, 50 ≤ 0.5 (40 in (0.1, 0.5]), 90 ≤ 1, 100 total.
        let h = Buckets::new(vec![(0.1, 10.0), (0.5, 50.0), (1.0, 90.0), (INF, 100.0)]);
        // rank 50 is the top of the (0.1, 0.5] bucket.
        assert!(close(h.quantile(0.5), 0.5));
        // rank 30: 20 of the 40 in (0.1, 0.5] → halfway.
        assert!(close(h.quantile(0.3), 0.3));
        // rank 5 in the first bucket interpolates from 0.
        assert!(close(h.quantile(0.05), 0.05));
        // rank 95 is in +Inf: the largest finite bound.
        assert!(close(h.quantile(0.95), 1.0));
        // rank 89.1: (89.1 - 50) / 40 of the way through (0.5, 1].
        assert!(close(h.quantile(0.891), 0.5 + 0.5 * 39.1 / 40.0));
    }

    #[test]
    fn matches_promql_on_the_latency_buckets() {
        // cdc_sink_end_to_end_latency_seconds buckets, everything between 0.25 and 0.5.
        let bounds = cdc_telemetry::metrics::LATENCY_BUCKETS_SECONDS;
        let mut pairs: Vec<(f64, f64)> = bounds
            .iter()
            .map(|&b| (b, if b >= 0.5 { 200.0 } else { 0.0 }))
            .collect();
        pairs.push((INF, 200.0));
        let h = Buckets::new(pairs);
        assert!(close(h.quantile(0.5), 0.375));
        assert!(close(h.quantile(0.99), 0.25 + 0.25 * 0.99));
        assert!(close(h.quantile(0.0), 0.25));
    }

    #[test]
    fn no_observations_or_no_inf_bucket_gives_none() {
        assert_eq!(
            Buckets::new(vec![(1.0, 0.0), (INF, 0.0)]).quantile(0.5),
            None
        );
        assert_eq!(Buckets::new(vec![(1.0, 3.0)]).quantile(0.5), None);
        assert_eq!(Buckets::new(vec![]).quantile(0.5), None);
        let h = Buckets::new(vec![(1.0, 3.0), (INF, 3.0)]);
        assert_eq!(h.quantile(1.5), None);
        assert_eq!(h.quantile(-0.1), None);
        // Only +Inf: no finite bound to report.
        assert_eq!(Buckets::new(vec![(INF, 3.0)]).quantile(0.5), None);
    }

    #[test]
    fn unsorted_and_non_monotonic_input_is_repaired() {
        let h = Buckets::new(vec![(INF, 10.0), (1.0, 6.0), (0.5, 7.0)]);
        assert_eq!(h.bounds(), vec![(0.5, 7.0), (1.0, 7.0), (INF, 10.0)]);
    }

    #[test]
    fn since_subtracts_bucketwise_and_survives_a_restart() {
        let before = Buckets::new(vec![(0.1, 10.0), (1.0, 20.0), (INF, 20.0)]);
        let after = Buckets::new(vec![(0.1, 10.0), (1.0, 60.0), (INF, 62.0)]);
        let window = after.since(&before);
        assert_eq!(window.bounds(), vec![(0.1, 0.0), (1.0, 40.0), (INF, 42.0)]);
        // The window's median lies in (0.1, 1]: rank 21 of 40 there.
        assert!(close(window.quantile(0.5), 0.1 + 0.9 * 21.0 / 40.0));
        // A restart (counts went down): the new process's counts are the window.
        let restarted = Buckets::new(vec![(0.1, 1.0), (1.0, 2.0), (INF, 2.0)]);
        assert_eq!(restarted.since(&after), restarted);
    }

    proptest::proptest! {
        #[test]
        fn quantiles_are_monotonic_and_within_the_bounds(
            counts in proptest::collection::vec(0u32..1000, 1..16),
            q1 in 0.0f64..=1.0,
            q2 in 0.0f64..=1.0,
        ) {
            let bounds = cdc_telemetry::metrics::LATENCY_BUCKETS_SECONDS;
            let mut cum = 0.0;
            let mut pairs = Vec::new();
            for (i, c) in counts.iter().enumerate() {
                cum += f64::from(*c);
                pairs.push((bounds[i], cum));
            }
            pairs.push((INF, cum));
            let h = Buckets::new(pairs);
            let (lo, hi) = if q1 <= q2 { (q1, q2) } else { (q2, q1) };
            match (h.quantile(lo), h.quantile(hi)) {
                (Some(a), Some(b)) => {
                    proptest::prop_assert!(a <= b + 1e-12);
                    proptest::prop_assert!(a >= 0.0);
                    proptest::prop_assert!(b <= bounds[counts.len() - 1] + 1e-12);
                }
                (None, None) => proptest::prop_assert_eq!(cum, 0.0),
                other => proptest::prop_assert!(false, "{other:?}"),
            }
        }
    }
}
