//! How a consumer loop paces itself over consume errors.
//!
//! While Kafka is unreachable, librdkafka queues an error event (`AllBrokersDown`,
//! `BrokerTransportFailure`, …) for every failed connection attempt, and `recv` serves them one at
//! a time, possibly long after the broker is back. A loop that sleeps a growing backoff after each
//! error drains that queue at the backoff's pace: after a 45 s broker restart the sinks, sleeping
//! up to 5 s per error, stood still for minutes on errors that were already stale (chaos scenario
//! `kafka_broker_restart`). So each error costs only a short fixed [`PAUSE`](ConsumeErrorPacer::PAUSE)
//! (enough not to spin: librdkafka produces these at its reconnect rate, not per poll), and what
//! backs off is the log line instead.

use std::time::{Duration, Instant};

/// Paces and rate-limits consume errors; see the module docs.
#[derive(Debug, Clone)]
pub struct ConsumeErrorPacer {
    consecutive: u64,
    suppressed: u64,
    next_log: Option<Instant>,
    log_interval: Duration,
}

/// What to do about one consume error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorPace {
    /// Errors in a row, this one included.
    pub consecutive: u64,
    /// `Some(n)`: log this error, mentioning the `n` not logged since the previous line.
    pub log: Option<u64>,
    /// Sleep before the next `recv`.
    pub pause: Duration,
}

impl Default for ConsumeErrorPacer {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsumeErrorPacer {
    /// Sleep after each consume error.
    pub const PAUSE: Duration = Duration::from_millis(50);
    /// First gap between two logged errors of one streak; doubles up to [`Self::MAX_LOG_INTERVAL`].
    pub const FIRST_LOG_INTERVAL: Duration = Duration::from_secs(1);
    /// Longest gap between two logged errors while they keep coming.
    pub const MAX_LOG_INTERVAL: Duration = Duration::from_secs(30);

    pub fn new() -> Self {
        ConsumeErrorPacer {
            consecutive: 0,
            suppressed: 0,
            next_log: None,
            log_interval: Self::FIRST_LOG_INTERVAL,
        }
    }

    /// A message (or any successful `recv`) ends the streak.
    pub fn on_message(&mut self) {
        *self = Self::new();
    }

    /// Errors in a row so far.
    pub fn consecutive(&self) -> u64 {
        self.consecutive
    }

    /// Records one error seen at `now`.
    pub fn on_error(&mut self, now: Instant) -> ErrorPace {
        self.consecutive = self.consecutive.saturating_add(1);
        let log = match self.next_log {
            Some(at) if now < at => {
                self.suppressed = self.suppressed.saturating_add(1);
                None
            }
            Some(_) => {
                self.log_interval = (self.log_interval * 2).min(Self::MAX_LOG_INTERVAL);
                Some(std::mem::take(&mut self.suppressed))
            }
            None => Some(std::mem::take(&mut self.suppressed)),
        };
        if log.is_some() {
            self.next_log = Some(now + self.log_interval);
        }
        ErrorPace {
            consecutive: self.consecutive,
            log,
            pause: Self::PAUSE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_stale_errors_is_drained_at_the_short_pause_and_logged_once() {
        let mut p = ConsumeErrorPacer::new();
        let t0 = Instant::now();
        // 200 queued errors served back to back (each 50 ms apart): 10 s in all, not 200 × 5 s.
        let paces: Vec<ErrorPace> = (0..200u32)
            .map(|i| p.on_error(t0 + ConsumeErrorPacer::PAUSE * i))
            .collect();
        let total: Duration = paces.iter().map(|x| x.pause).sum();
        assert_eq!(total, Duration::from_secs(10));
        let logged: Vec<u64> = paces.iter().filter_map(|x| x.log).collect();
        // At 0 s, 1 s, 3 s and 7 s (gaps 1, 2, 4 s): four lines, counting what they skipped.
        assert_eq!(logged, vec![0, 19, 39, 79]);
        assert_eq!(paces.last().map(|x| x.consecutive), Some(200));
    }

    #[test]
    fn the_log_interval_caps_at_thirty_seconds_and_resets_after_a_message() {
        let mut p = ConsumeErrorPacer::new();
        let t0 = Instant::now();
        let mut logged_at = Vec::new();
        for s in 0..200u64 {
            if p.on_error(t0 + Duration::from_secs(s)).log.is_some() {
                logged_at.push(s);
            }
        }
        assert_eq!(logged_at, vec![0, 1, 3, 7, 15, 31, 61, 91, 121, 151, 181]);
        p.on_message();
        assert_eq!(p.consecutive(), 0);
        let after = p.on_error(t0 + Duration::from_secs(200));
        assert_eq!(after.log, Some(0), "a new streak logs its first error");
        assert_eq!(after.consecutive, 1);
    }
}
