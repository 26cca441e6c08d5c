//! `cdcctl dlq list|show|replay`: dead letters of the masker and the sinks, through each stage's
//! admin endpoint (the stage reads its own DLQ topic).
//!
//! Nothing printed here carries a payload. `show` gives the full failure context; for a sink
//! letter also the event's operation, primary key (as stored in the destinations, classified key
//! columns already masked) and the written columns' names, types and writetimes — never values.
//! The masker's letters hold unmasked input and are never decoded.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use cdc_admin::pb;

use super::replay::{confirm, parse_time, show_time};
use super::status::{EndpointArgs, stage_name, table};

/// Filters shared by `list` and `replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// Stage whose dead letters to read: postgres, clickhouse, timescaledb (their sinks) or
    /// masker. Default: every configured one.
    #[arg(long)]
    pub destination: Option<String>,
    /// Table as `keyspace.table` (or just `table`).
    #[arg(long)]
    pub table: Option<String>,
    /// Error class: retriable, poison or fatal.
    #[arg(long, value_parser = ["retriable", "poison", "fatal"])]
    pub error_class: Option<String>,
    /// Failed at or after: RFC 3339, epoch milliseconds, or a duration ago (`2h`, `7d`).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<i64>,
    /// Failed at or before (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<i64>,
    /// Only the letters of this correlation id.
    #[arg(long)]
    pub correlation_id: Option<String>,
}

impl FilterArgs {
    fn to_pb(&self) -> pb::DeadLetterFilter {
        pb::DeadLetterFilter {
            // The stage is chosen by endpoint; within a stage every letter is its own.
            destination: String::new(),
            table: self.table.clone().unwrap_or_default(),
            error_class: self.error_class.clone().unwrap_or_default(),
            since_ms: self.since.unwrap_or(0),
            until_ms: self.until.unwrap_or(0),
            correlation_id: self.correlation_id.clone().unwrap_or_default(),
        }
    }
}

/// `cdcctl dlq` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// List dead letters (newest N matching, oldest first).
    #[command(after_help = "\
Examples:
  cdcctl dlq list
  cdcctl dlq list --destination postgres --error-class poison --since 2h
  cdcctl dlq list --table shop.customers --since 2026-11-26T00:00:00Z --limit 20 --json")]
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Most letters to show per stage.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        endpoints: EndpointArgs,
    },
    /// Full context of the dead letters with one id: a correlation id, or `<partition>:<offset>`
    /// of the letter in its DLQ topic (the ID column of `dlq list`).
    #[command(after_help = "\
Exit status 1 when no letter has that id.

Examples:
  cdcctl dlq show 6f1c2a0e-...:1764150000000:3187:0
  cdcctl dlq show 0:17 --destination postgres --json")]
    Show {
        /// Correlation id or `<partition>:<offset>`.
        id: String,
        /// Only this stage (postgres, clickhouse, timescaledb, masker).
        #[arg(long)]
        destination: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        endpoints: EndpointArgs,
    },
    /// Apply matching dead letters again (each at most once unless --include-replayed).
    #[command(after_help = "\
A sink writes each letter's original (masked) event through its destination again — convergent, \
so safe whatever happened since — without moving offsets. The masker produces the raw event again \
to the raw topic and partition it came from, to be masked under the policy in force now. Each \
success is recorded in `<dlq topic>.replayed`; letters that fail again stay and are listed. \
Exit status 1 when any letter failed.

Examples:
  cdcctl dlq replay --destination postgres --table shop.customers --yes
  cdcctl dlq replay --correlation-id 6f1c2a0e-...:1764150000000:3187:0 --yes --json
  cdcctl dlq replay --destination masker --since 1h")]
    Replay {
        #[command(flatten)]
        filter: FilterArgs,
        /// Replay letters already replayed once too.
        #[arg(long)]
        include_replayed: bool,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        endpoints: EndpointArgs,
    },
}

/// The stages with dead letters to call: one (`--destination`) or every configured one.
fn stages(
    config: &Path,
    endpoints: &EndpointArgs,
    destination: Option<&str>,
) -> anyhow::Result<Vec<(String, String)>> {
    let all = endpoints.resolve(config)?;
    match destination {
        Some(d) => {
            let stage = stage_name(d).map_err(anyhow::Error::msg)?;
            if stage == "capture" {
                anyhow::bail!("--destination capture: capture has no dead letters");
            }
            let address = all
                .into_iter()
                .find(|(n, _)| *n == stage)
                .map(|(_, a)| a)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{stage} is not configured in {} and no --endpoint {stage}=ADDRESS was given",
                        config.display()
                    )
                })?;
            Ok(vec![(stage, address)])
        }
        None => Ok(all.into_iter().filter(|(n, _)| n != "capture").collect()),
    }
}

fn summary_row(stage: &str, s: &pb::DeadLetterSummary) -> Vec<String> {
    let id = s
        .dlq
        .as_ref()
        .map_or_else(String::new, |d| format!("{}:{}", d.partition, d.offset));
    let source = s.source.as_ref().map_or_else(String::new, |o| {
        format!("{}[{}]@{}", o.topic, o.partition, o.offset)
    });
    let mut error = s.error.replace('\n', " ");
    if error.chars().count() > 80 {
        error = error.chars().take(77).collect::<String>() + "...";
    }
    vec![
        stage.to_owned(),
        id,
        show_time(s.last_failure_ms),
        s.table.clone(),
        s.error_class.clone(),
        s.retry_count.to_string(),
        if s.replayed { "yes" } else { "no" }.to_owned(),
        s.correlation_id.clone(),
        source,
        error,
    ]
}

fn summary_json(stage: &str, s: &pb::DeadLetterSummary) -> serde_json::Value {
    serde_json::json!({
        "stage": stage,
        "id": s.dlq.as_ref().map(|d| format!("{}:{}", d.partition, d.offset)),
        "dlq_topic": s.dlq.as_ref().map(|d| d.topic.clone()),
        "correlation_id": s.correlation_id,
        "destination": s.destination,
        "table": s.table,
        "error_class": s.error_class,
        "error": s.error,
        "retry_count": s.retry_count,
        "first_failure": show_time(s.first_failure_ms),
        "last_failure": show_time(s.last_failure_ms),
        "first_failure_ms": s.first_failure_ms,
        "last_failure_ms": s.last_failure_ms,
        "source": s.source.as_ref().map(|o| serde_json::json!({
            "topic": o.topic, "partition": o.partition, "offset": o.offset,
        })),
        "replayed": s.replayed,
        "payload_format": s.payload_format,
    })
}

const LIST_HEADER: &[&str] = &[
    "STAGE",
    "ID",
    "FAILED_AT",
    "TABLE",
    "CLASS",
    "RETRIES",
    "REPLAYED",
    "CORRELATION_ID",
    "SOURCE",
    "ERROR",
];

/// Runs `cdcctl dlq ...`.
pub async fn run(config: &Path, cmd: &DlqCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DlqCommand::List {
            filter,
            limit,
            json,
            endpoints,
        } => list(config, filter, *limit, *json, endpoints).await,
        DlqCommand::Show {
            id,
            destination,
            json,
            endpoints,
        } => show(config, id, destination.as_deref(), *json, endpoints).await,
        DlqCommand::Replay {
            filter,
            include_replayed,
            yes,
            json,
            endpoints,
        } => replay(config, filter, *include_replayed, *yes, *json, endpoints).await,
    }
}

async fn list(
    config: &Path,
    filter: &FilterArgs,
    limit: u32,
    json: bool,
    endpoints: &EndpointArgs,
) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut totals = Vec::new();
    for (stage, address) in stages(config, endpoints, filter.destination.as_deref())? {
        let answer = async {
            let mut c = endpoints.connect(&address, Duration::from_secs(60)).await?;
            c.list_dead_letters(filter.to_pb(), limit).await
        }
        .await;
        match answer {
            Ok(r) => {
                totals.push(serde_json::json!({
                    "stage": stage, "matching": r.total_matching, "scanned": r.scanned,
                    "shown": r.dead_letters.len(),
                }));
                if r.total_matching > r.dead_letters.len() as u64 {
                    problems.push(format!(
                        "{stage}: showing the newest {} of {} matching letters (--limit)",
                        r.dead_letters.len(),
                        r.total_matching
                    ));
                }
                for s in &r.dead_letters {
                    rows.push(summary_row(&stage, s));
                    out.push(summary_json(&stage, s));
                }
            }
            Err(e) => problems.push(format!("{stage}: {e}")),
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "dead_letters": out,
                "stages": totals,
                "errors": problems.iter().filter(|p| !p.contains("--limit")).collect::<Vec<_>>(),
            }))?
        );
    } else {
        if rows.is_empty() {
            println!("No dead letters match.");
        } else {
            print!("{}", table(LIST_HEADER, &rows));
        }
        for p in &problems {
            eprintln!("{p}");
        }
    }
    let failed = problems.iter().any(|p| !p.contains("--limit"));
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn detail_text(stage: &str, d: &pb::DeadLetterDetail) -> String {
    let s = d.summary.clone().unwrap_or_default();
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        if !v.is_empty() {
            out.push_str(&format!("{k:<16}{v}\n"));
        }
    };
    line("stage", stage.to_owned());
    if let Some(dlq) = &s.dlq {
        line(
            "letter",
            format!(
                "{}[{}]@{} (id {}:{})",
                dlq.topic, dlq.partition, dlq.offset, dlq.partition, dlq.offset
            ),
        );
    }
    line("correlation id", s.correlation_id.clone());
    line("destination", s.destination.clone());
    line("table", s.table.clone());
    if let Some(o) = &s.source {
        line(
            "read from",
            format!("{}[{}]@{}", o.topic, o.partition, o.offset),
        );
    }
    line("error class", s.error_class.clone());
    line("error", s.error.clone());
    line("retries", s.retry_count.to_string());
    line("first failure", show_time(s.first_failure_ms));
    line("last failure", show_time(s.last_failure_ms));
    line("replayed", if s.replayed { "yes" } else { "no" }.to_owned());
    line(
        "payload",
        format!(
            "{} bytes, {} (not shown)",
            d.payload_bytes, s.payload_format
        ),
    );
    if let Some(e) = &d.event {
        line("operation", e.op.clone());
        let keys = |k: &[pb::KeyValue]| {
            k.iter()
                .map(|k| format!("{}={}", k.name, k.value))
                .collect::<Vec<_>>()
                .join(", ")
        };
        line("partition key", keys(&e.partition_key));
        line("clustering key", keys(&e.clustering_key));
        line(
            "source",
            format!(
                "host {} segment {} position {}",
                e.source_host, e.source_segment_id, e.source_position
            ),
        );
        for c in &e.cells {
            line(
                "column",
                format!(
                    "{} {} {} writetime {}{}",
                    c.column,
                    c.cql_type,
                    c.change,
                    c.writetime_micros,
                    if c.expiring { " (ttl)" } else { "" }
                ),
            );
        }
    }
    line("note", d.note.clone());
    out
}

fn detail_json(stage: &str, d: &pb::DeadLetterDetail) -> serde_json::Value {
    let s = d.summary.clone().unwrap_or_default();
    let mut v = summary_json(stage, &s);
    v["payload_bytes"] = d.payload_bytes.into();
    if !d.note.is_empty() {
        v["note"] = d.note.clone().into();
    }
    if let Some(e) = &d.event {
        let keys = |k: &[pb::KeyValue]| -> Vec<serde_json::Value> {
            k.iter()
                .map(|k| serde_json::json!({"name": k.name, "cql_type": k.cql_type, "value": k.value}))
                .collect()
        };
        v["event"] = serde_json::json!({
            "op": e.op,
            "keyspace": e.keyspace,
            "table": e.table,
            "partition_key": keys(&e.partition_key),
            "clustering_key": keys(&e.clustering_key),
            "cells": e.cells.iter().map(|c| serde_json::json!({
                "column": c.column, "cql_type": c.cql_type, "change": c.change,
                "writetime_micros": c.writetime_micros, "expiring": c.expiring,
            })).collect::<Vec<_>>(),
            "max_writetime_micros": e.max_writetime_micros,
            "source_host": e.source_host,
            "source_segment_id": e.source_segment_id,
            "source_position": e.source_position,
        });
    }
    v
}

async fn show(
    config: &Path,
    id: &str,
    destination: Option<&str>,
    json: bool,
    endpoints: &EndpointArgs,
) -> anyhow::Result<ExitCode> {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for (stage, address) in stages(config, endpoints, destination)? {
        let answer = async {
            let mut c = endpoints.connect(&address, Duration::from_secs(60)).await?;
            c.show_dead_letter(id).await
        }
        .await;
        match answer {
            Ok(r) => found.extend(r.dead_letters.into_iter().map(|d| (stage.clone(), d))),
            Err(e) => problems.push(format!("{stage}: {e}")),
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "dead_letters": found.iter().map(|(s, d)| detail_json(s, d)).collect::<Vec<_>>(),
                "errors": problems,
            }))?
        );
    } else {
        for (i, (stage, d)) in found.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print!("{}", detail_text(stage, d));
        }
        for p in &problems {
            eprintln!("{p}");
        }
        if found.is_empty() {
            eprintln!("cdcctl: no dead letter has id `{id}`");
        }
    }
    Ok(if !problems.is_empty() {
        ExitCode::from(2)
    } else if found.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn replay(
    config: &Path,
    filter: &FilterArgs,
    include_replayed: bool,
    yes: bool,
    json: bool,
    endpoints: &EndpointArgs,
) -> anyhow::Result<ExitCode> {
    let targets = stages(config, endpoints, filter.destination.as_deref())?;
    // Show what would be replayed first.
    let mut planned = 0u64;
    let mut plan = Vec::new();
    for (stage, address) in &targets {
        let mut c = endpoints.connect(address, Duration::from_secs(60)).await?;
        let r = c.list_dead_letters(filter.to_pb(), 1).await?;
        plan.push(format!("{stage}: {} matching letter(s)", r.total_matching));
        planned += r.total_matching;
    }
    if planned == 0 {
        if json {
            println!(
                "{}",
                serde_json::json!({"replayed": 0, "failed": [], "stages": []})
            );
        } else {
            println!("No dead letters match; nothing replayed.");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !yes
        && !confirm(&format!(
            "Replay {}{}?",
            plan.join(", "),
            if include_replayed {
                " (including letters already replayed)"
            } else {
                " (letters already replayed are skipped)"
            }
        ))?
    {
        eprintln!("cdcctl: dlq replay cancelled");
        return Ok(ExitCode::from(1));
    }
    let mut results = Vec::new();
    let mut any_failed = false;
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (stage, address) in &targets {
        let mut c = endpoints.connect(address, Duration::from_secs(330)).await?;
        let r = c
            .replay_dead_letters(filter.to_pb(), include_replayed)
            .await?;
        any_failed |= !r.failed.is_empty();
        rows.push(vec![
            stage.clone(),
            r.replayed.to_string(),
            r.failed.len().to_string(),
            r.skipped_already_replayed.to_string(),
            r.skipped_unreplayable.to_string(),
        ]);
        for f in &r.failed {
            let letter = f.letter.clone().unwrap_or_default();
            failures.push(format!(
                "{stage} {} ({}): {}",
                letter
                    .dlq
                    .as_ref()
                    .map_or_else(String::new, |d| format!("{}:{}", d.partition, d.offset)),
                letter.correlation_id,
                f.error
            ));
        }
        results.push(serde_json::json!({
            "stage": stage,
            "replayed": r.replayed,
            "skipped_already_replayed": r.skipped_already_replayed,
            "skipped_unreplayable": r.skipped_unreplayable,
            "failed": r.failed.iter().map(|f| serde_json::json!({
                "letter": f.letter.as_ref().map(|l| summary_json(stage, l)),
                "error": f.error,
            })).collect::<Vec<_>>(),
        }));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "stages": results }))?
        );
    } else {
        print!(
            "{}",
            table(
                &[
                    "STAGE",
                    "REPLAYED",
                    "FAILED",
                    "ALREADY_REPLAYED",
                    "UNREPLAYABLE"
                ],
                &rows
            )
        );
        for f in failures {
            println!("failed: {f}");
        }
    }
    Ok(if any_failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
