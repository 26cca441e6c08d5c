//! `cdcctl replay`: moves one destination's stored offsets (gRPC `Replay` on that destination's
//! sink). The sink finishes its in-flight batch, stores the new offsets in the destination (its
//! offset store of record) and re-seeks; the events from there on are applied again, which the
//! convergent apply makes harmless. Other destinations are untouched: each stores its own.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use cdc_admin::pb;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::status::{EndpointArgs, stage_name, table};

/// Arguments of `cdcctl replay`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The sink finishes its in-flight batch, stores the new offsets in the destination and re-seeks; \
events from there on are applied again (convergent, so no duplicates). A timestamp is resolved \
per partition to the first event at or after it (the partition's end when none is that recent). \
Other destinations keep their offsets.

Examples:
  cdcctl replay --destination postgres --to-timestamp 2026-11-26T10:00:00Z
  cdcctl replay --destination clickhouse --to-timestamp 1764151200000 --yes
  cdcctl replay --destination timescaledb \\
      --to-offsets cdc.masked.shop.customers:0:1200,cdc.masked.shop.customers:1:980 --yes --json")]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to_timestamp", "to_offsets"])))]
pub struct ReplayArgs {
    /// Destination to rewind: postgres, clickhouse or timescaledb.
    #[arg(long)]
    pub destination: String,
    /// Replay from this time: RFC 3339 (`2026-11-26T10:00:00Z`), milliseconds since the epoch, or
    /// a duration ago (`90m`, `2h`, `1d`).
    #[arg(long, value_name = "TIME")]
    pub to_timestamp: Option<String>,
    /// Replay from these next offsets: comma-separated `topic:partition:offset`.
    #[arg(long, value_name = "TOPIC:PARTITION:OFFSET,...", value_delimiter = ',')]
    pub to_offsets: Vec<String>,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub endpoints: EndpointArgs,
}

/// A time as RFC 3339 or milliseconds since the epoch (also accepted: a duration back from now,
/// `90s`, `15m`, `2h`, `7d`), in milliseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return if ms > 0 {
            Ok(ms)
        } else {
            Err(format!(
                "`{t}`: milliseconds since the epoch must be positive"
            ))
        };
    }
    if let Ok(dt) = OffsetDateTime::parse(t, &Rfc3339) {
        return i64::try_from(dt.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| format!("`{t}`: out of range"));
    }
    let unit = t.chars().last().unwrap_or(' ');
    let secs_per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => 0,
    };
    if secs_per > 0
        && let Ok(n) = t[..t.len() - 1].parse::<i64>()
        && n >= 0
    {
        let now = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        return i64::try_from(now)
            .map(|now| now - n * secs_per * 1000)
            .map_err(|_| format!("`{t}`: out of range"));
    }
    Err(format!(
        "`{t}`: expected RFC 3339 (2026-11-26T10:00:00Z), milliseconds since the epoch, or a \
         duration ago (15m, 2h, 7d)"
    ))
}

/// RFC 3339 of a time in milliseconds (for display).
pub fn show_time(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// `topic:partition:offset` (topics contain no `:`).
pub fn parse_offset(s: &str) -> Result<pb::PartitionOffset, String> {
    let t = s.trim();
    let mut parts = t.rsplitn(3, ':');
    let (Some(offset), Some(partition), Some(topic)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("`{t}`: expected topic:partition:offset"));
    };
    let partition: i32 = partition
        .parse()
        .ok()
        .filter(|p| *p >= 0)
        .ok_or_else(|| format!("`{t}`: the partition must be an integer >= 0"))?;
    let offset: i64 = offset
        .parse()
        .ok()
        .filter(|o| *o >= 0)
        .ok_or_else(|| format!("`{t}`: the offset must be an integer >= 0"))?;
    if topic.is_empty() {
        return Err(format!("`{t}`: the topic is empty"));
    }
    Ok(pb::PartitionOffset {
        topic: topic.to_owned(),
        partition,
        offset,
    })
}

/// Asks on the terminal; refuses without one (the caller must pass `--yes`).
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("{question}: refusing to proceed without --yes (stdin is not a terminal)");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES"))
}

/// Runs `cdcctl replay`.
pub async fn run(config: &Path, args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let stage = stage_name(&args.destination).map_err(anyhow::Error::msg)?;
    let Some(destination) = stage.strip_prefix("sink-").map(str::to_owned) else {
        anyhow::bail!(
            "--destination {}: only sinks keep offsets (postgres, clickhouse, timescaledb)",
            args.destination
        );
    };
    let (target, plan) = match &args.to_timestamp {
        Some(t) => {
            let ms = parse_time(t).map_err(|e| anyhow::anyhow!("--to-timestamp {e}"))?;
            (
                pb::replay_request::Target::ToTimestampMs(ms),
                format!("from {} ({ms} ms)", show_time(ms)),
            )
        }
        None => {
            let offsets = args
                .to_offsets
                .iter()
                .map(|s| parse_offset(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("--to-offsets {e}"))?;
            let n = offsets.len();
            (
                pb::replay_request::Target::ToOffsets(pb::OffsetList { offsets }),
                format!("to the given offsets of {n} partition(s)"),
            )
        }
    };
    let address = args.endpoints.address_of(config, &stage)?;
    if !args.yes
        && !confirm(&format!(
            "Replay destination {destination} {plan} (via {})? Events from there on are applied again",
            cdc_admin::endpoint_url(&address)
        ))?
    {
        eprintln!("cdcctl: replay cancelled");
        return Ok(ExitCode::from(1));
    }
    let mut client = args
        .endpoints
        .connect(&address, Duration::from_secs(90))
        .await?;
    let report = client
        .replay(&destination, target)
        .await
        .with_context(|| format!("replaying {destination}"))?;
    if args.json {
        let po = |v: &[pb::PartitionOffset]| -> Vec<serde_json::Value> {
            v.iter()
                .map(|o| {
                    serde_json::json!({
                        "topic": o.topic,
                        "partition": o.partition,
                        // -1: nothing was stored before.
                        "offset": o.offset,
                    })
                })
                .collect()
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "destination": destination,
                "previous": po(&report.previous),
                "applied": po(&report.applied),
            }))?
        );
    } else {
        let previous = |o: &pb::PartitionOffset| {
            report
                .previous
                .iter()
                .find(|p| p.topic == o.topic && p.partition == o.partition)
                .map_or("-".to_owned(), |p| {
                    if p.offset < 0 {
                        "none".to_owned()
                    } else {
                        p.offset.to_string()
                    }
                })
        };
        let rows: Vec<Vec<String>> = report
            .applied
            .iter()
            .map(|o| {
                vec![
                    o.topic.clone(),
                    o.partition.to_string(),
                    previous(o),
                    o.offset.to_string(),
                ]
            })
            .collect();
        println!(
            "Replayed {destination}: {} partition(s) rewound; the sink is re-reading from the applied offsets.\n",
            rows.len()
        );
        print!(
            "{}",
            table(&["TOPIC", "PARTITION", "PREVIOUS", "APPLIED"], &rows)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_offsets_parse() {
        assert_eq!(parse_time("1764151200000"), Ok(1_764_151_200_000));
        assert_eq!(parse_time("2026-11-26T10:00:00Z"), Ok(1_795_687_200_000));
        let ago = parse_time("15m").unwrap_or(0);
        let now = OffsetDateTime::now_utc().unix_timestamp() * 1000;
        assert!((now - 15 * 60_000 - ago).abs() < 5_000, "{ago}");
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("-5").is_err());
        assert_eq!(
            parse_offset("cdc.masked.shop.t:2:41"),
            Ok(pb::PartitionOffset {
                topic: "cdc.masked.shop.t".into(),
                partition: 2,
                offset: 41
            })
        );
        assert!(parse_offset("t:2").is_err());
        assert!(parse_offset("t:x:1").is_err());
        assert!(parse_offset("t:1:-1").is_err());
        assert_eq!(show_time(1_795_687_200_000), "2026-11-26T10:00:00Z");
    }
}
