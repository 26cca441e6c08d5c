//! `cdcctl status`: health, lag, throughput, errors, backlog and DLQ count of every stage and
//! destination, read from the services' admin endpoints (gRPC `cdc.admin.v1.Admin/Status`).
//!
//! Also home of what the admin-API commands (`status`, `dlq`, `replay`) share: which endpoints
//! to call ([`EndpointArgs`]), connecting, and printing tables.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use cdc_admin::{AdminClient, DEFAULT_CONNECT_TIMEOUT, pb};

/// The stages a pipeline runs, in pipeline order (the names `--endpoint` takes).
pub const STAGES: &[&str] = &[
    "capture",
    "masker",
    "sink-postgres",
    "sink-clickhouse",
    "sink-timescaledb",
];

/// Where the admin endpoints are; shared by `status`, `dlq` and `replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct EndpointArgs {
    /// Admin endpoint of a stage as NAME=ADDRESS, e.g. `sink-postgres=127.0.0.1:9103` (NAME is
    /// capture, masker, sink-postgres, sink-clickhouse or sink-timescaledb; `postgres` works for
    /// `sink-postgres`). Repeatable. When given, only these endpoints are used and the
    /// configuration file is not read; otherwise every stage configured in it is, at its
    /// `admin.listen_addr` (0.0.0.0 is reached as 127.0.0.1).
    #[arg(long = "endpoint", value_name = "NAME=ADDRESS", value_parser = parse_endpoint)]
    pub endpoints: Vec<(String, String)>,
    /// Seconds to wait for a service to accept the connection.
    #[arg(long, default_value_t = DEFAULT_CONNECT_TIMEOUT.as_secs(), value_name = "SECONDS")]
    pub connect_timeout: u64,
}

/// A stage name as given (`postgres` → `sink-postgres`), checked.
pub fn stage_name(name: &str) -> Result<String, String> {
    let n = name.trim();
    let full = if STAGES.contains(&n) {
        n.to_owned()
    } else if STAGES.contains(&format!("sink-{n}").as_str()) {
        format!("sink-{n}")
    } else {
        return Err(format!(
            "unknown stage `{n}`: expected one of {} (or postgres, clickhouse, timescaledb)",
            STAGES.join(", ")
        ));
    };
    Ok(full)
}

fn parse_endpoint(s: &str) -> Result<(String, String), String> {
    let (name, address) = s.split_once('=').ok_or_else(|| {
        format!("`{s}`: expected NAME=ADDRESS, e.g. sink-postgres=127.0.0.1:9103")
    })?;
    if address.trim().is_empty() {
        return Err(format!("`{s}`: the address is empty"));
    }
    Ok((stage_name(name)?, address.trim().to_owned()))
}

impl EndpointArgs {
    /// `(stage, address)` in pipeline order: the `--endpoint`s, else the configured stages.
    pub fn resolve(&self, config_path: &Path) -> anyhow::Result<Vec<(String, String)>> {
        if !self.endpoints.is_empty() {
            let mut out = self.endpoints.clone();
            out.sort_by_key(|(n, _)| STAGES.iter().position(|s| s == n));
            out.dedup_by(|a, b| a.0 == b.0);
            return Ok(out);
        }
        let config = cdc_config::load(config_path).with_context(|| {
            format!(
                "loading {} (or name the services with --endpoint NAME=ADDRESS)",
                config_path.display()
            )
        })?;
        let mut out = vec![
            ("capture".to_owned(), config.capture.admin.listen_addr),
            ("masker".to_owned(), config.masker.admin.listen_addr),
        ];
        if let Some(s) = &config.sinks.postgres {
            out.push(("sink-postgres".into(), s.admin.listen_addr));
        }
        if let Some(s) = &config.sinks.clickhouse {
            out.push(("sink-clickhouse".into(), s.admin.listen_addr));
        }
        if let Some(s) = &config.sinks.timescaledb {
            out.push(("sink-timescaledb".into(), s.admin.listen_addr));
        }
        Ok(out
            .into_iter()
            .map(|(n, a)| (n, cdc_admin::endpoint_url(&a.to_string())))
            .collect())
    }

    /// The address of one stage.
    pub fn address_of(&self, config_path: &Path, stage: &str) -> anyhow::Result<String> {
        let all = self.resolve(config_path)?;
        all.into_iter()
            .find(|(n, _)| n == stage)
            .map(|(_, a)| a)
            .with_context(|| {
                format!(
                    "{stage} is not configured in {} and no --endpoint {stage}=ADDRESS was given",
                    config_path.display()
                )
            })
    }

    /// Connects to `address` with the configured connect timeout and `request_timeout`.
    pub async fn connect(
        &self,
        address: &str,
        request_timeout: Duration,
    ) -> Result<AdminClient, cdc_admin::Error> {
        Ok(
            AdminClient::connect(address, Duration::from_secs(self.connect_timeout.max(1)))
                .await?
                .with_request_timeout(request_timeout),
        )
    }
}

/// Arguments of `cdcctl status`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit status: 0 when every stage is UP, 1 when any is DEGRADED (paused, a dependency down) or \
DOWN (unreachable), 2 on a usage or configuration error.

Examples:
  cdcctl status                                   # every stage in /etc/cdc/pipeline.yaml
  cdcctl --config config/pipeline.demo.yaml status
  cdcctl status --json | jq '.stages[] | {name, health}'
  cdcctl status --endpoint sink-postgres=127.0.0.1:9103 --endpoint masker=10.0.0.7:9102")]
pub struct StatusArgs {
    #[command(flatten)]
    pub endpoints: EndpointArgs,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// One stage's answer (or why there is none).
#[derive(Debug)]
pub struct StageReport {
    pub name: String,
    pub endpoint: String,
    pub result: Result<pb::StatusResponse, cdc_admin::Error>,
}

fn health_name(h: i32) -> &'static str {
    match pb::Health::try_from(h).unwrap_or(pb::Health::Unspecified) {
        pb::Health::Up => "UP",
        pb::Health::Degraded => "DEGRADED",
        pb::Health::Down => "DOWN",
        pb::Health::Unspecified => "UNKNOWN",
    }
}

impl StageReport {
    /// `UP`, `DEGRADED`, `DOWN` (unreachable) or `ERROR` (answered with an error).
    pub fn health(&self) -> &'static str {
        match &self.result {
            Ok(s) => health_name(s.health),
            Err(e) if e.is_unreachable() => "DOWN",
            Err(_) => "ERROR",
        }
    }
}

/// Calls `Status` on every endpoint concurrently.
pub async fn collect(endpoints: &EndpointArgs, stages: Vec<(String, String)>) -> Vec<StageReport> {
    let mut set = tokio::task::JoinSet::new();
    for (i, (name, address)) in stages.into_iter().enumerate() {
        let endpoints = endpoints.clone();
        set.spawn(async move {
            let endpoint = cdc_admin::endpoint_url(&address);
            let result = match endpoints.connect(&address, Duration::from_secs(10)).await {
                Ok(mut c) => c.status().await,
                Err(e) => Err(e),
            };
            (
                i,
                StageReport {
                    name,
                    endpoint,
                    result,
                },
            )
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(r) = joined {
            out.push(r);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Left-aligned text table with a header row.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn ms(v: f64) -> String {
    format!("{:.0}", v * 1000.0)
}

/// The human rendering of a status report.
pub fn render(reports: &[StageReport]) -> String {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut dest_rows = Vec::new();
    for r in reports {
        match &r.result {
            Ok(s) => {
                let st = s.stats.unwrap_or_default();
                let is_sink = r.name.starts_with("sink-");
                rows.push(vec![
                    r.name.clone(),
                    r.health().to_owned(),
                    if s.paused { "yes" } else { "no" }.to_owned(),
                    num(st.lag_seconds),
                    num(st.events_per_second),
                    st.events_total.to_string(),
                    st.errors_total.to_string(),
                    if r.name == "capture" {
                        format!("{} seg", st.segments_pending)
                    } else {
                        st.backlog_events.to_string()
                    },
                    if r.name == "capture" {
                        "-".to_owned()
                    } else {
                        st.dlq_events_total.to_string()
                    },
                ]);
                if r.name == "capture" {
                    notes.push(format!(
                        "capture: cdc_raw {:.1}% full ({} MiB), {} segment(s) pending",
                        st.cdc_raw_fill_ratio * 100.0,
                        st.cdc_raw_bytes / (1024 * 1024),
                        st.segments_pending
                    ));
                }
                if r.name == "masker" {
                    notes.push(format!("masker: policy version {}", s.policy_version));
                }
                for d in &s.dependencies {
                    if d.health != pb::Health::Up as i32 {
                        notes.push(format!(
                            "{}: {} {}{}",
                            r.name,
                            d.name,
                            health_name(d.health).to_lowercase(),
                            if d.message.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", d.message)
                            }
                        ));
                    }
                }
                if is_sink {
                    for d in &s.destinations {
                        dest_rows.push(vec![
                            d.destination.clone(),
                            health_name(d.health).to_owned(),
                            num(d.lag_seconds),
                            num(d.events_per_second),
                            d.errors_total.to_string(),
                            d.backlog_events.to_string(),
                            d.dlq_events_total.to_string(),
                            ms(d.latency_p50_seconds),
                            ms(d.latency_p95_seconds),
                            ms(d.latency_p99_seconds),
                        ]);
                    }
                }
            }
            Err(e) => {
                rows.push(vec![
                    r.name.clone(),
                    r.health().to_owned(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
                notes.push(format!("{}: {e}", r.name));
                if let Some(d) = r.name.strip_prefix("sink-") {
                    dest_rows.push(vec![
                        d.to_owned(),
                        r.health().to_owned(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                    ]);
                }
            }
        }
    }
    let mut out = table(
        &[
            "STAGE", "HEALTH", "PAUSED", "LAG_S", "EVENTS/S", "EVENTS", "ERRORS", "BACKLOG", "DLQ",
        ],
        &rows,
    );
    if !dest_rows.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &[
                "DESTINATION",
                "HEALTH",
                "LAG_S",
                "EVENTS/S",
                "ERRORS",
                "BACKLOG",
                "DLQ",
                "P50_MS",
                "P95_MS",
                "P99_MS",
            ],
            &dest_rows,
        ));
    }
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    out
}

/// The JSON rendering of a status report.
pub fn to_json(reports: &[StageReport]) -> serde_json::Value {
    let stages: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            let mut v = serde_json::json!({
                "name": r.name,
                "endpoint": r.endpoint,
                "health": r.health(),
            });
            match &r.result {
                Ok(s) => {
                    let st = s.stats.unwrap_or_default();
                    v["paused"] = s.paused.into();
                    v["version"] = s.version.clone().into();
                    v["uptime_seconds"] = s.uptime_seconds.into();
                    v["lag_seconds"] = st.lag_seconds.into();
                    v["events_per_second"] = st.events_per_second.into();
                    v["events_total"] = st.events_total.into();
                    v["errors_total"] = st.errors_total.into();
                    v["backlog_events"] = st.backlog_events.into();
                    v["dlq_events_total"] = st.dlq_events_total.into();
                    if r.name == "capture" {
                        v["segments_pending"] = st.segments_pending.into();
                        v["cdc_raw_fill_ratio"] = st.cdc_raw_fill_ratio.into();
                        v["cdc_raw_bytes"] = st.cdc_raw_bytes.into();
                    }
                    if r.name == "masker" {
                        v["policy_version"] = s.policy_version.into();
                    }
                    v["dependencies"] = s
                        .dependencies
                        .iter()
                        .map(|d| {
                            serde_json::json!({
                                "name": d.name,
                                "health": health_name(d.health),
                                "message": d.message,
                            })
                        })
                        .collect();
                    v["destinations"] = s
                        .destinations
                        .iter()
                        .map(|d| {
                            serde_json::json!({
                                "destination": d.destination,
                                "health": health_name(d.health),
                                "paused": d.paused,
                                "lag_seconds": d.lag_seconds,
                                "events_per_second": d.events_per_second,
                                "events_total": d.events_total,
                                "errors_total": d.errors_total,
                                "backlog_events": d.backlog_events,
                                "dlq_events_total": d.dlq_events_total,
                                "latency_p50_seconds": d.latency_p50_seconds,
                                "latency_p95_seconds": d.latency_p95_seconds,
                                "latency_p99_seconds": d.latency_p99_seconds,
                            })
                        })
                        .collect();
                }
                Err(e) => v["error"] = e.to_string().into(),
            }
            v
        })
        .collect();
    serde_json::json!({
        "healthy": reports.iter().all(|r| r.health() == "UP"),
        "stages": stages,
    })
}

/// Runs `cdcctl status`.
pub async fn run(config: &Path, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let stages = args.endpoints.resolve(config)?;
    let reports = collect(&args.endpoints, stages).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&reports))?);
    } else {
        print!("{}", render(&reports));
    }
    Ok(if reports.iter().all(|r| r.health() == "UP") {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names_and_addresses() {
        assert_eq!(
            parse_endpoint("postgres=127.0.0.1:9103"),
            Ok(("sink-postgres".into(), "127.0.0.1:9103".into()))
        );
        assert_eq!(
            parse_endpoint("capture=http://h:9101"),
            Ok(("capture".into(), "http://h:9101".into()))
        );
        assert!(parse_endpoint("nope=1:2").is_err());
        assert!(parse_endpoint("masker").is_err());
    }

    #[test]
    fn an_unreachable_stage_renders_down() {
        let reports = vec![StageReport {
            name: "sink-clickhouse".into(),
            endpoint: "http://127.0.0.1:9104".into(),
            result: Err(cdc_admin::Error::Unreachable {
                endpoint: "http://127.0.0.1:9104".into(),
                reason: "connection refused".into(),
            }),
        }];
        let text = render(&reports);
        assert!(text.contains("sink-clickhouse  DOWN"), "{text}");
        assert!(text.contains("clickhouse   DOWN"), "{text}");
        assert!(text.contains("connection refused"), "{text}");
        let json = to_json(&reports);
        assert_eq!(json["healthy"], false);
        assert_eq!(json["stages"][0]["health"], "DOWN");
    }
}
