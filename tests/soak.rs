//! Soak (issue 9, SC-010, SC-013): the whole pipeline under steady `cdcctl load` for a long time,
//! the RSS and CPU of every service sampled every minute, and a slope check that fails on a clear
//! upward memory trend. It ends like every chaos scenario (`chaos_support.rs`): `cdcctl verify` and
//! `cdcctl audit` clean, one TimescaleDB change row per event, every service still running with
//! the process id it started with (no restarts).
//!
//! ```sh
//! make soak DURATION=10m          # what CI runs (part of make test)
//! make soak DURATION=24h          # SC-010; SOAK_RATE (events/s, default 300) sets the load
//! ```
//!
//! Samples go to `target/soak/soak.json`; with `CDC_WRITE_SOAK=1` (set by `make soak`) also to
//! `docs/soak.md`. The trend rule is [`memory_trend`]; its unit tests below run with the
//! integration tests.

#[path = "e2e_support.rs"]
mod support;

#[path = "chaos_support.rs"]
mod chaos_support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cdc_testkit::process::memory;
use cdc_testkit::stack::repo_root;
use cdc_testkit::{Service, StackEnv};
use chaos_support::Scenario;
use serde_json::json;

/// One sample of one service.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    /// Minutes since the load started.
    minute: f64,
    /// Resident set size now, MiB.
    rss_mib: f64,
    /// CPU time used since the previous sample / wall time since it (1.0 = one core busy).
    cpu_cores: f64,
}

/// The verdict of [`memory_trend`] for one service.
#[derive(Debug, Clone, PartialEq)]
struct Trend {
    /// Least-squares slope of RSS over the samples after warm-up, MiB per hour.
    slope_mib_per_hour: f64,
    /// How well a straight line explains them (1 = perfectly, 0 = not at all).
    r_squared: f64,
    /// Last − first RSS after warm-up, MiB.
    rise_mib: f64,
    /// Mean RSS after warm-up, MiB.
    mean_mib: f64,
    /// True when the memory grows: see [`memory_trend`].
    growing: bool,
}

/// Net rise after warm-up, in MiB, below which memory is never called growing: allocator caches,
/// Kafka client queues and connection pools settle within a few MiB.
const RISE_FLOOR_MIB: f64 = 4.0;
/// Each half of the samples after warm-up must rise by more than this, in MiB.
const HALF_RISE_FLOOR_MIB: f64 = 1.0;
/// A line must explain at least this share of the variance to be a trend rather than noise.
const TREND_R_SQUARED: f64 = 0.6;

/// Fits a line to the RSS samples after warm-up (the first fifth of the run, at least the first two
/// samples) and calls the memory growing when all hold: the slope is upward, the line explains at
/// least 60 % of the variance (steady growth, not noise), RSS rose by more than 4 MiB and by more than
/// 5 % of its mean, and it rose by more than 1 MiB in each half of those samples (not one step). A service that levels off after warm-up passes; one that
/// keeps adding memory sample after sample fails. `None` with fewer than three samples after warm-up.
fn memory_trend(samples: &[Sample]) -> Option<Trend> {
    let warmup = (samples.len() / 5).max(2);
    let s = samples.get(warmup..)?;
    if s.len() < 3 {
        return None;
    }
    let n = s.len() as f64;
    let mean_x = s.iter().map(|p| p.minute).sum::<f64>() / n;
    let mean_y = s.iter().map(|p| p.rss_mib).sum::<f64>() / n;
    let sxx: f64 = s.iter().map(|p| (p.minute - mean_x).powi(2)).sum();
    let sxy: f64 = s
        .iter()
        .map(|p| (p.minute - mean_x) * (p.rss_mib - mean_y))
        .sum();
    let syy: f64 = s.iter().map(|p| (p.rss_mib - mean_y).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let slope_per_minute = sxy / sxx;
    let r_squared = if syy == 0.0 {
        0.0
    } else {
        (sxy * sxy) / (sxx * syy)
    };
    let rise = |part: &[Sample]| part[part.len() - 1].rss_mib - part[0].rss_mib;
    let rise_mib = rise(s);
    // Both halves must rise: one step (a buffer grown once) followed by a plateau is not a leak.
    let (first, second) = s.split_at(s.len() / 2);
    let halves_rise =
        first.len() >= 2 && rise(first) > HALF_RISE_FLOOR_MIB && rise(second) > HALF_RISE_FLOOR_MIB;
    let growing = slope_per_minute > 0.0
        && r_squared >= TREND_R_SQUARED
        && rise_mib > RISE_FLOOR_MIB
        && rise_mib > 0.05 * mean_y
        && halves_rise;
    Some(Trend {
        slope_mib_per_hour: slope_per_minute * 60.0,
        r_squared,
        rise_mib,
        mean_mib: mean_y,
        growing,
    })
}

/// `10m`, `90s`, `24h`, `1h30m` or plain seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().ok()?;
        number.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
    }
    (number.is_empty() && total > 0).then(|| Duration::from_secs(total))
}

/// User + system CPU seconds of `pid` so far (`/proc/<pid>/stat`, in USER_HZ = 100 ticks/s).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: the fields after it start past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn results_path() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("soak")
        .join("soak.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak: run by `make soak DURATION=...` (10 minutes in make test)"]
async fn soak_steady_load_keeps_memory_flat() {
    let duration_text = std::env::var("SOAK_DURATION").unwrap_or_else(|_| "10m".into());
    let duration = parse_duration(&duration_text).unwrap_or_else(|| {
        panic!("SOAK_DURATION={duration_text:?}: expected e.g. 10m, 90s, 24h or 1h30m")
    });
    let rate: u32 = env_or("SOAK_RATE", 300);
    let every = Duration::from_secs(env_or("SOAK_SAMPLE_SECS", 60));

    let env = StackEnv::load();
    let mut sc = Scenario::start(
        "soak",
        "Soak: steady load, RSS and CPU of every service each minute, slope check",
        &env,
        |spec| spec,
    )
    .await;
    sc.fault = format!(
        "none: {} of steady load, RSS/CPU sampled every {} s",
        duration_text,
        every.as_secs()
    );
    let pids: BTreeMap<Service, u32> = Service::ALL
        .iter()
        .filter_map(|s| Some((*s, sc.pipeline.pid(*s)?)))
        .collect();
    assert_eq!(
        pids.len(),
        Service::ALL.len(),
        "a service has no process id"
    );

    let load = sc.start_load(rate, duration.as_secs(), 9);
    let started = Instant::now();
    let mut samples: BTreeMap<Service, Vec<Sample>> = BTreeMap::new();
    let mut last_cpu: BTreeMap<Service, (f64, Instant)> = pids
        .iter()
        .filter_map(|(s, pid)| Some((*s, (cpu_seconds(*pid)?, Instant::now()))))
        .collect();
    let mut next = started + every;
    while next <= started + duration {
        tokio::time::sleep_until(next.into()).await;
        next += every;
        let minute = started.elapsed().as_secs_f64() / 60.0;
        let mut line = format!("sample at {minute:5.1} min:");
        for (s, pid) in &pids {
            assert_eq!(
                sc.pipeline.pid(*s),
                Some(*pid),
                "{s} restarted or exited during the soak; last log lines:\n{}",
                sc.pipeline.log_tail(*s, 30)
            );
            let rss_mib = memory(*pid).map_or(0.0, |m| m.rss_kib as f64 / 1024.0);
            let cpu_now = cpu_seconds(*pid).unwrap_or(0.0);
            let now = Instant::now();
            let (cpu_before, at) = last_cpu.insert(*s, (cpu_now, now)).unwrap_or((0.0, now));
            let wall = now.duration_since(at).as_secs_f64().max(1e-3);
            let cpu_cores = (cpu_now - cpu_before) / wall;
            samples.entry(*s).or_default().push(Sample {
                minute,
                rss_mib,
                cpu_cores,
            });
            let _ = write!(
                line,
                " {}={rss_mib:.1}MiB/{:.0}%",
                s.binary(),
                cpu_cores * 100.0
            );
        }
        sc.log(line);
    }
    let report = load.finish().await;

    let trends: BTreeMap<Service, Trend> = samples
        .iter()
        .map(|(s, v)| {
            let t = memory_trend(v).unwrap_or_else(|| {
                panic!(
                    "{s}: {} samples are too few for a trend (SOAK_DURATION {duration_text}, one \
                     sample every {} s; at least 5 needed)",
                    v.len(),
                    every.as_secs()
                )
            });
            (*s, t)
        })
        .collect();
    for (s, t) in &trends {
        sc.notes.push(format!(
            "{}: RSS {:.1} MiB mean after warm-up, slope {:+.1} MiB/h (r² {:.2}, rise {:+.1} MiB){}",
            s.binary(),
            t.mean_mib,
            t.slope_mib_per_hour,
            t.r_squared,
            t.rise_mib,
            if t.growing { " — GROWING" } else { "" }
        ));
    }
    write_results(&duration_text, rate, every, &samples, &trends, &report);
    let growing: Vec<String> = trends
        .iter()
        .filter(|(_, t)| t.growing)
        .map(|(s, t)| {
            format!(
                "{s}: {:+.1} MiB/h, r² {:.2}, rose {:+.1} MiB",
                t.slope_mib_per_hour, t.r_squared, t.rise_mib
            )
        })
        .collect();
    assert!(
        growing.is_empty(),
        "memory grows steadily under steady load (a leak?): {growing:?}; samples in {}",
        results_path().display()
    );
    sc.finish(vec![report]).await;
}

fn write_results(
    duration_text: &str,
    rate: u32,
    every: Duration,
    samples: &BTreeMap<Service, Vec<Sample>>,
    trends: &BTreeMap<Service, Trend>,
    load: &chaos_support::LoadReport,
) {
    let result = json!({
        "duration": duration_text,
        "rate": rate,
        "sample_secs": every.as_secs(),
        "events": load.events,
        "achieved_rate": load.achieved_rate,
        "services": samples.iter().map(|(s, v)| {
            let t = &trends[s];
            (s.binary().to_owned(), json!({
                "samples": v.iter().map(|p| json!({"minute": p.minute, "rss_mib": p.rss_mib, "cpu_cores": p.cpu_cores})).collect::<Vec<_>>(),
                "slope_mib_per_hour": t.slope_mib_per_hour,
                "r_squared": t.r_squared,
                "rise_mib": t.rise_mib,
                "mean_mib": t.mean_mib,
                "growing": t.growing,
            }))
        }).collect::<serde_json::Map<_, _>>(),
    });
    let path = results_path();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(
        &path,
        serde_json::to_string_pretty(&result).unwrap_or_default(),
    );
    if std::env::var("CDC_WRITE_SOAK").as_deref() != Ok("1") {
        return;
    }
    let mut md = String::from(
        "# Soak\n\nGenerated by `make soak DURATION=...` (`tests/soak.rs`); do not edit by hand.\n\n",
    );
    let _ = writeln!(
        md,
        "Run: {duration_text} of `cdcctl load` at {rate} events/s ({} events written, {:.1} events/s achieved), \
         the five services as processes (debug build) against the local stack, RSS (`VmRSS`) and CPU \
         (user + system time / wall time; 100 % = one core) of each sampled every {} s. It ended with \
         `cdcctl verify` and `cdcctl audit` clean and no service restarted.\n",
        load.events,
        load.achieved_rate,
        every.as_secs()
    );
    md.push_str(
        "Trend rule (`memory_trend`): after a warm-up (the first fifth of the samples, at least two), a \
         least-squares line through RSS; memory is called growing when the slope is upward, the line \
         explains at least 60 % of the variance, RSS rose by more than 4 MiB and more than 5 % of \
         its mean, and by more than 1 MiB in each half of those samples (a single step is not a leak). For a 24-hour run (SC-010): `make soak DURATION=24h` — the same rule over 1,440 \
         samples.\n\n",
    );
    md.push_str("| Service | mean RSS after warm-up (MiB) | slope (MiB/h) | r² | rise (MiB) | mean CPU | verdict |\n|---|---:|---:|---:|---:|---:|---|\n");
    for (s, t) in trends {
        let cpu = samples[s].iter().map(|p| p.cpu_cores).sum::<f64>() / samples[s].len() as f64;
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:+.1} | {:.2} | {:+.1} | {:.0} % | {} |",
            s.binary(),
            t.mean_mib,
            t.slope_mib_per_hour,
            t.r_squared,
            t.rise_mib,
            cpu * 100.0,
            if t.growing { "growing" } else { "flat" }
        );
    }
    md.push_str("\nSamples (RSS MiB / CPU %):\n\n| minute |");
    for s in samples.keys() {
        let _ = write!(md, " {} |", s.binary());
    }
    md.push_str("\n|---:|");
    md.push_str(&"---:|".repeat(samples.len()));
    md.push('\n');
    let rows = samples.values().map(Vec::len).max().unwrap_or(0);
    for i in 0..rows {
        let minute = samples
            .values()
            .find_map(|v| v.get(i))
            .map_or(0.0, |p| p.minute);
        let _ = write!(md, "| {minute:.1} |");
        for v in samples.values() {
            match v.get(i) {
                Some(p) => {
                    let _ = write!(md, " {:.1} / {:.0} % |", p.rss_mib, p.cpu_cores * 100.0);
                }
                None => md.push_str(" |"),
            }
        }
        md.push('\n');
    }
    let doc = repo_root().join("docs/soak.md");
    std::fs::write(&doc, md).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    eprintln!("wrote {}", doc.display());
}

#[cfg(test)]
mod trend_tests {
    use super::*;

    fn series(rss: &[f64]) -> Vec<Sample> {
        rss.iter()
            .enumerate()
            .map(|(i, r)| Sample {
                minute: (i + 1) as f64,
                rss_mib: *r,
                cpu_cores: 0.1,
            })
            .collect()
    }

    #[test]
    fn steady_growth_is_flagged() {
        // 1 MiB more every minute after a warm-up: a leak of ~60 MiB/h.
        let t = memory_trend(&series(&[
            20.0, 30.0, 31.0, 32.0, 33.2, 33.9, 35.1, 36.0, 37.0, 38.1,
        ]))
        .expect("enough samples");
        assert!(t.growing, "{t:?}");
        assert!((t.slope_mib_per_hour - 60.0).abs() < 6.0, "{t:?}");
    }

    #[test]
    fn warm_up_then_flat_passes() {
        // Grows during warm-up (caches, pools), then noise around a level.
        let t = memory_trend(&series(&[
            12.0, 25.0, 40.1, 39.8, 40.3, 40.0, 39.9, 40.4, 40.1, 40.2,
        ]))
        .expect("enough samples");
        assert!(!t.growing, "{t:?}");
    }

    #[test]
    fn one_step_then_a_plateau_is_not_a_trend() {
        // A single jump (a larger batch buffer allocated once), flat after it: the rise, the
        // slope and the fit alone would call it growing.
        let t = memory_trend(&series(&[
            30.0, 30.0, 30.0, 30.1, 30.0, 38.0, 38.1, 38.0, 38.0, 38.1,
        ]))
        .expect("enough samples");
        assert!(
            t.rise_mib > RISE_FLOOR_MIB && t.slope_mib_per_hour > 0.0,
            "{t:?}"
        );
        assert!(t.r_squared >= TREND_R_SQUARED, "{t:?}");
        assert!(!t.growing, "{t:?}");
    }

    #[test]
    fn small_slow_drift_is_not_flagged() {
        // Steady but tiny (0.2 MiB/min on 200 MiB): under the rise floor in a 10-minute run.
        let rss: Vec<f64> = (0..10).map(|i| 200.0 + 0.2 * f64::from(i)).collect();
        let t = memory_trend(&series(&rss)).expect("enough samples");
        assert!(!t.growing, "{t:?}");
    }

    #[test]
    fn too_few_samples_give_no_verdict() {
        assert_eq!(memory_trend(&series(&[1.0, 2.0, 3.0, 4.0])), None);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("10x"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("10m5"), None);
    }

    #[test]
    fn cpu_seconds_of_this_process_are_read() {
        // Burn a little CPU so the counter is above zero.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        let secs = cpu_seconds(std::process::id()).expect("own /proc/<pid>/stat");
        assert!(secs > 0.0, "{secs}");
    }
}
