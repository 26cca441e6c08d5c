//! Rates and increases of counters over a window, tolerant of counter resets (a restarted service
//! starts its counters at zero again), as PromQL's `increase` and `rate` are — without their
//! extrapolation to the window edges: the dashboard reports what it saw.

/// The increase of a counter over `points` (`(time ms, value)`, ascending time). A value lower than
/// its predecessor is a reset: the counter counted from zero up to the new value since then.
pub fn increase(points: &[(i64, f64)]) -> f64 {
    let mut total = 0.0;
    for pair in points.windows(2) {
        let (prev, cur) = (pair[0].1, pair[1].1);
        total += if cur < prev { cur } else { cur - prev };
    }
    total
}

/// Per-second rate of a counter over `points`; `None` with fewer than two points or no time
/// between the first and the last.
pub fn rate(points: &[(i64, f64)]) -> Option<f64> {
    let (first, last) = (points.first()?, points.last()?);
    let span_ms = last.0 - first.0;
    (span_ms > 0).then(|| increase(points) * 1000.0 / span_ms as f64)
}

/// True when a gauge rose across `points` without ever going down and ended higher than it began
/// (a backlog that only grows). Needs at least `min_points`.
pub fn steadily_growing(points: &[(i64, f64)], min_points: usize) -> bool {
    points.len() >= min_points.max(2)
        && points.windows(2).all(|p| p[1].1 >= p[0].1)
        && points.last().map(|p| p.1) > points.first().map(|p| p.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increase_and_rate_of_a_steady_counter() {
        let p = [(0, 100.0), (5_000, 150.0), (10_000, 200.0)];
        assert_eq!(increase(&p), 100.0);
        assert_eq!(rate(&p), Some(10.0));
    }

    #[test]
    fn a_reset_counts_from_zero() {
        // 100 → 180 (+80), restart, counts 30 (+30), then 50 (+20).
        let p = [(0, 100.0), (5_000, 180.0), (10_000, 30.0), (15_000, 50.0)];
        assert_eq!(increase(&p), 130.0);
        assert!((rate(&p).expect("rate") - 130.0 / 15.0).abs() < 1e-9);
        // A reset to exactly zero loses nothing either.
        assert_eq!(increase(&[(0, 7.0), (1, 0.0), (2, 4.0)]), 4.0);
    }

    #[test]
    fn too_few_points_have_no_rate() {
        assert_eq!(rate(&[]), None);
        assert_eq!(rate(&[(0, 1.0)]), None);
        assert_eq!(rate(&[(5, 1.0), (5, 9.0)]), None);
        assert_eq!(increase(&[(0, 1.0)]), 0.0);
    }

    #[test]
    fn growth_needs_a_rise_and_no_fall() {
        assert!(steadily_growing(&[(0, 1.0), (1, 1.0), (2, 5.0)], 3));
        assert!(
            !steadily_growing(&[(0, 1.0), (1, 5.0)], 3),
            "too few points"
        );
        assert!(!steadily_growing(&[(0, 1.0), (1, 5.0), (2, 4.0)], 3));
        assert!(!steadily_growing(&[(0, 3.0), (1, 3.0), (2, 3.0)], 3));
    }

    proptest::proptest! {
        #[test]
        fn increase_of_a_monotonic_counter_is_last_minus_first(
            steps in proptest::collection::vec(0u32..10_000, 1..50),
        ) {
            let mut v = 0.0;
            let mut points = vec![(0i64, 0.0)];
            for (i, s) in steps.iter().enumerate() {
                v += f64::from(*s);
                points.push(((i as i64 + 1) * 1000, v));
            }
            proptest::prop_assert_eq!(increase(&points), v);
        }

        #[test]
        fn increase_is_never_negative(values in proptest::collection::vec(0u32..1000, 0..50)) {
            let points: Vec<(i64, f64)> =
                values.iter().enumerate().map(|(i, v)| (i as i64, f64::from(*v))).collect();
            proptest::prop_assert!(increase(&points) >= 0.0);
        }
    }
}
