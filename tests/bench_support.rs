//! Shared by the benchmark test binaries (`bench_e2e`, `bench_h2h`, `bench_scaling`; run by
//! `make bench`, never by `make test`): process footprint from `/proc`, latency quantiles from a
//! Prometheus histogram's buckets, the machine description, and the writer of one section of
//! docs/benchmarks.md. Nothing here asserts a benchmark figure.

#![allow(dead_code)] // each bench binary uses a different part of this module

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use scylla::client::session::Session;

/// CPU time and peak resident set of one process, read from `/proc/<pid>/stat` and
/// `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// utime + stime, in seconds.
    pub cpu_secs: f64,
    /// VmHWM (peak resident set since the process started), in KiB.
    pub peak_rss_kib: u64,
    /// VmRSS (current resident set), in KiB.
    pub rss_kib: u64,
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`, 100 when that fails).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// The process's CPU time and memory; `None` when it is gone.
pub fn proc_sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: the fields after it start past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu_secs: (utime + stime) / clock_ticks(),
        peak_rss_kib: kib("VmHWM:"),
        rss_kib: kib("VmRSS:"),
    })
}

/// The cumulative buckets `(upper bound, count)` of histogram `name` on a `/metrics` text, summed
/// over the series whose labels contain every pair of `labels`; the `+Inf` bucket last.
pub fn histogram_buckets(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((label_text, value)) = rest.split_once('}') else {
            continue;
        };
        if !labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
        {
            continue;
        }
        let Some(le) = label_text
            .split(',')
            .find_map(|kv| kv.strip_prefix("le=\""))
            .map(|v| v.trim_end_matches('"'))
        else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            match le.parse::<f64>() {
                Ok(v) => v,
                Err(_) => continue,
            }
        };
        let Some(count) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        match buckets.iter_mut().find(|(b, _)| *b == le) {
            Some(slot) => slot.1 += count,
            None => buckets.push((le, count)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// `after - before` bucket by bucket (the observations made between two scrapes).
pub fn bucket_delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|(le, c)| {
            let b = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, (c - b).max(0.0))
        })
        .collect()
}

/// The `q` quantile of cumulative buckets, interpolated linearly inside its bucket (as
/// Prometheus' `histogram_quantile`); `None` without observations, `Some(INFINITY)` when it
/// falls in the `+Inf` bucket.
pub fn bucket_quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev_le = 0.0;
    let mut prev_count = 0.0;
    for (le, count) in buckets {
        if *count >= rank {
            if le.is_infinite() {
                return Some(f64::INFINITY);
            }
            let in_bucket = count - prev_count;
            let frac = if in_bucket > 0.0 {
                (rank - prev_count) / in_bucket
            } else {
                1.0
            };
            return Some(prev_le + (le - prev_le) * frac);
        }
        prev_le = *le;
        prev_count = *count;
    }
    None
}

/// Seconds as `812 ms` or `1.93 s`.
pub fn fmt_secs(s: Option<f64>) -> String {
    match s {
        None => "-".to_owned(),
        Some(v) if v.is_infinite() => "> 60 s".to_owned(),
        Some(v) if v < 1.0 => format!("{:.0} ms", v * 1e3),
        Some(v) => format!("{v:.2} s"),
    }
}

fn sh(cmd: &str) -> String {
    Command::new("bash")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Today's date (UTC), `YYYY-MM-DD`.
pub fn today() -> String {
    sh("date -u +%Y-%m-%d")
}

/// `uptime`'s load averages, e.g. `load average: 2.10, 1.87, 1.40`.
pub fn load_average() -> String {
    let up = sh("uptime");
    up.find("load average")
        .map_or(up.clone(), |i| up[i..].to_owned())
}

/// One line per fact: CPU model and count, memory, kernel, rustc, stack versions.
pub fn machine_description() -> String {
    let cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'");
    let mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo");
    format!(
        "- CPU: {cpu}, {} cores (`nproc`), shared with the whole local stack and other builds\n\
         - Memory: {mem}; kernel {}\n\
         - {}, release profile\n\
         - Cassandra 5.0.6 (single node, `commitlog_sync: periodic` 500 ms, `cdc_enabled`), Kafka 4.1.1 \
         (single KRaft node), PostgreSQL, TimescaleDB, ClickHouse (chdb behind the stack's test HTTP front), \
         all on the same machine (`make stack-up`)\n",
        sh("nproc"),
        sh("uname -r"),
        sh("rustc --version"),
    )
}

/// Replaces the section `## {title}` of docs/benchmarks.md (up to the next `## ` heading) with
/// `body`, or appends it. Other sections are kept as they are.
pub fn write_section(title: &str, body: &str) {
    // Read at run time: a shared target dir may hold this binary built from another checkout.
    let path = cdc_testkit::stack::repo_root().join("docs/benchmarks.md");
    let text = std::fs::read_to_string(&path).expect("read docs/benchmarks.md");
    let heading = format!("## {title}\n");
    let section = format!("{heading}\n{}\n", body.trim_end());
    let new = match text.find(&heading) {
        Some(i) => {
            let after = i + heading.len();
            let end = text[after..]
                .find("\n## ")
                .map_or(text.len(), |j| after + j + 1);
            format!("{}{}\n{}", &text[..i], section, &text[end..])
        }
        None => format!("{}\n\n{}", text.trim_end(), section),
    };
    std::fs::write(&path, new.trim_end().to_owned() + "\n").expect("write docs/benchmarks.md");
}

/// Whether the run should write docs/benchmarks.md (`CDC_WRITE_BENCHMARKS=1`, set by `make bench`).
pub fn writing_docs() -> bool {
    std::env::var("CDC_WRITE_BENCHMARKS").is_ok_and(|v| v == "1")
}

/// A duration from the environment variable `name` in whole seconds, else `default`.
pub fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// `n` inserts into `ks.<table>` (the e2e `patients` shape, 64 in flight); every value fake.
/// Returns the wall time of the inserts (statement preparation excluded).
pub async fn insert_fake_patients(
    session: &Arc<Session>,
    ks: &str,
    table: &str,
    n: i32,
) -> Duration {
    let insert = session
        .prepare(format!(
            "INSERT INTO {ks}.{table} (id, email, ssn, phone, medical_record_number, name, city, age) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .await
        .expect("prepare insert");
    let t0 = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (s, p) = (Arc::clone(session), insert.clone());
            async move {
                s.execute_unpaged(
                    &p,
                    (
                        i,
                        format!("fake.user{i}@example.invalid"),
                        format!("000-00-{:04}", i % 10000),
                        format!("555-01{:02}", i % 100),
                        format!("MRN-FAKE-{i}"),
                        format!("Fake Name {i}"),
                        "Faketown",
                        30 + i % 50,
                    ),
                )
                .await
                .unwrap_or_else(|e| panic!("insert {i}: {e}"));
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    t0.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let text = "x_bucket{destination=\"pg\",le=\"0.5\"} 50\n\
                    x_bucket{destination=\"pg\",le=\"1\"} 90\n\
                    x_bucket{destination=\"pg\",le=\"+Inf\"} 100\n\
                    x_bucket{destination=\"ch\",le=\"0.5\"} 7\n";
        let b = histogram_buckets(text, "x", &[("destination", "pg")]);
        assert_eq!(b.len(), 3);
        assert_eq!(bucket_quantile(&b, 0.5), Some(0.5));
        assert_eq!(bucket_quantile(&b, 0.7), Some(0.75));
        assert_eq!(bucket_quantile(&b, 0.99), Some(f64::INFINITY));
        let d = bucket_delta(&[(0.5, 10.0), (1.0, 10.0), (f64::INFINITY, 10.0)], &b);
        assert_eq!(d[0].1, 40.0);
    }
}
