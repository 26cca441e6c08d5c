//! `cdcctl verify`: compare Cassandra with each destination (see `cdcctl::verifier`).
//! Exit code 0 clean, 1 differences, 2 error (including a destination that could not be read).

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use cdcctl::compare::Difference;
use cdcctl::destinations::{self, DestKind};
use cdcctl::loadgen::parse_duration;
use cdcctl::verifier::{Verifier, VerifyOptions, VerifyReport};

/// Arguments of `cdcctl verify`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    cdcctl verify --keyspace demo\n  \
    cdcctl verify --table demo.patients --destination postgres --wait 60s --json\n\n\
Each table is compared row by row (keyed by primary key) up to --row-limit rows, beyond that by a\n\
digest per token range (Murmur3, as Cassandra's token()), drilling into the ranges that differ.\n\
Masked columns are compared through the masking policy of the config (masker.policy_file and\n\
masker.keys; nothing is written to the token vault). Output names keys and columns, never values;\n\
keys are hashed (key#...) when a key column is classified.\n\
Exit code: 0 clean, 1 differences, 2 error.")]
pub struct VerifyArgs {
    /// Keyspace to verify (repeatable). Default: every keyspace cassandra.keyspaces selects.
    #[arg(long = "keyspace", value_name = "KEYSPACE")]
    pub keyspaces: Vec<String>,
    /// Table `keyspace.table` to verify (repeatable).
    #[arg(long = "table", value_name = "KS.TABLE")]
    pub tables: Vec<String>,
    /// Destination to compare (repeatable). Default: every sink configured in sinks.*.
    #[arg(long = "destination", value_enum, value_name = "DESTINATION")]
    pub destinations: Vec<DestKind>,
    /// Tables with more rows are compared by token-range digests first.
    #[arg(long, default_value_t = 100_000)]
    pub row_limit: u64,
    /// Number of token ranges of the digests.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub ranges: u32,
    /// Repeat until clean or until this long has passed (`60s`, `2m`), then report the last
    /// result. The pipeline is asynchronous: use this right after writing to Cassandra.
    #[arg(long, value_parser = parse_duration)]
    pub wait: Option<Duration>,
    /// Differences listed per destination and table.
    #[arg(long, default_value_t = 20)]
    pub max_details: usize,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `cdcctl verify`.
pub async fn run(config_path: &Path, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let config = cdc_config::load(config_path)
        .with_context(|| format!("loading {}", config_path.display()))?;
    let kinds = destinations::select(&config, &args.destinations)?;
    let options = VerifyOptions {
        keyspaces: args.keyspaces.clone(),
        tables: args.tables.clone(),
        row_limit: args.row_limit,
        ranges: args.ranges,
        max_details: args.max_details,
        ..VerifyOptions::default()
    };
    let verifier = Verifier::connect(config_path, &config, &kinds, options).await?;
    let started = Instant::now();
    let deadline = args.wait.map(|w| started + w);
    let mut attempt = 0u32;
    let report = loop {
        attempt += 1;
        let result = verifier.run_once().await;
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let retry = remaining.is_some_and(|r| !r.is_zero());
        match result {
            Ok(report) if report.clean || !retry => break report,
            Ok(report) => {
                let open = report.results.iter().filter(|r| !r.is_clean()).count();
                eprintln!(
                    "verify: attempt {attempt}: {open} table/destination pair(s) differ, retrying for {:.0}s more",
                    remaining.unwrap_or_default().as_secs_f64()
                );
            }
            Err(e) if retry => {
                eprintln!("verify: attempt {attempt}: {e:#}; retrying");
            }
            Err(e) => return Err(e),
        }
        let pause = Duration::from_secs(2).min(remaining.unwrap_or_default());
        tokio::time::sleep(pause).await;
    };
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if let Some(o) = value.as_object_mut() {
            o.insert("attempts".into(), attempt.into());
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_report(&report, attempt);
    }
    Ok(if report.has_errors() {
        ExitCode::from(2)
    } else if report.clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_report(report: &VerifyReport, attempts: u32) {
    let header = [
        "DESTINATION",
        "TABLE",
        "MODE",
        "CASSANDRA",
        "DEST",
        "MISSING",
        "EXTRA",
        "STALE",
        "DUPLICATE",
        "STATUS",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| (*s).to_owned()).collect()];
    for r in &report.results {
        let status = if r.error.is_some() {
            "ERROR"
        } else if r.is_clean() {
            "ok"
        } else {
            "DIFFERS"
        };
        rows.push(vec![
            r.destination.clone(),
            r.table.clone(),
            r.mode.to_owned(),
            r.cassandra_rows.to_string(),
            r.destination_rows.to_string(),
            r.missing.to_string(),
            r.extra.to_string(),
            r.stale.to_string(),
            r.duplicate.to_string(),
            status.to_owned(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    for r in &report.results {
        let label = format!("{} {}", r.destination, r.table);
        if let Some(e) = &r.error {
            println!("{label}: error: {e}");
        }
        for n in &r.notes {
            println!("{label}: note: {n}");
        }
        for d in &r.differing_ranges {
            match d.tokens {
                Some((lo, hi)) => println!(
                    "{label}: token range {} ({lo}, {hi}]: {} rows in Cassandra, {} in the destination, digests differ",
                    d.index, d.cassandra_rows, d.destination_rows
                ),
                None => println!(
                    "{label}: key-hash bucket {}: {} rows in Cassandra, {} in the destination, digests differ",
                    d.index, d.cassandra_rows, d.destination_rows
                ),
            }
        }
        for d in &r.details {
            match d {
                Difference::Missing { key } => println!("{label}: missing {key}"),
                Difference::Extra { key } => println!("{label}: extra {key}"),
                Difference::Stale { key, columns } => {
                    println!("{label}: stale {key} (columns: {})", columns.join(", "))
                }
                Difference::Duplicate { key, copies } => {
                    println!("{label}: duplicate {key} ({copies} copies)")
                }
            }
        }
    }
    if !report.skipped_tables.is_empty() {
        println!(
            "skipped (no cdc or not captured): {}",
            report.skipped_tables.join(", ")
        );
    }
    let verdict = if report.has_errors() {
        "ERROR"
    } else if report.clean {
        "CLEAN"
    } else {
        "DIFFERENCES"
    };
    println!(
        "{verdict}: {} table(s) x {} destination(s) in {:.1}s ({attempts} attempt(s))",
        report.tables.len(),
        report.destinations.len(),
        report.elapsed_secs
    );
}
