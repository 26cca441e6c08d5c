//! `cdcctl audit`: the compliance query of ARCHITECTURE §6 across the destinations (see
//! `cdcctl::auditor`). Exit code 0 clean, 1 findings, 2 error.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use cdcctl::auditor::{AuditOptions, AuditReport, audit};
use cdcctl::destinations::{self, DestKind};

/// Arguments of `cdcctl audit`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    cdcctl audit\n  \
    cdcctl audit --destination clickhouse --keyspace demo --json\n\n\
Every column the masking policy (masker.policy_file) classifies must hold only masked forms\n\
(hash_<64 hex>, tok_<32 hex>, the redaction placeholder, partial '*' masks); passthrough columns\n\
are allowed and listed. Unclassified text columns are scanned for emails, US SSNs and phone\n\
numbers. Findings name destination, table, column, pattern and count with hashed row keys —\n\
never a value. No masking key is needed.\n\
Exit code: 0 clean, 1 findings, 2 error.")]
pub struct AuditArgs {
    /// Destination to audit (repeatable). Default: every sink configured in sinks.*.
    #[arg(long = "destination", value_enum, value_name = "DESTINATION")]
    pub destinations: Vec<DestKind>,
    /// Keyspace to audit (repeatable). Default: every keyspace found in the destinations.
    #[arg(long = "keyspace", value_name = "KEYSPACE")]
    pub keyspaces: Vec<String>,
    /// Hashed sample row keys listed per finding.
    #[arg(long, default_value_t = 5)]
    pub max_samples: usize,
    /// Rows scanned per table; 0 = all (what SC-004 asks for).
    #[arg(long, default_value_t = 0)]
    pub max_rows: u64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `cdcctl audit`.
pub async fn run(config_path: &Path, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let config = cdc_config::load(config_path)
        .with_context(|| format!("loading {}", config_path.display()))?;
    let kinds = destinations::select(&config, &args.destinations)?;
    let options = AuditOptions {
        keyspaces: args.keyspaces.clone(),
        max_samples: args.max_samples,
        max_rows: args.max_rows,
    };
    let report = audit(config_path, &config, &kinds, &options).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if !report.errors.is_empty() {
        ExitCode::from(2)
    } else if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_report(r: &AuditReport) {
    for f in &r.findings {
        let expected = f
            .expected
            .as_deref()
            .map(|e| format!(", expected {e}"))
            .unwrap_or_default();
        println!(
            "FINDING {} {} column {} ({}): {} in {} row(s){expected}; sample keys: {}",
            f.destination,
            f.table,
            f.column,
            f.class,
            f.pattern,
            f.count,
            f.sample_keys.join(", ")
        );
    }
    for p in &r.passthrough {
        println!(
            "passthrough (allowed by policy, not scanned): {} {} column {}",
            p.destination, p.table, p.column
        );
    }
    for e in &r.errors {
        println!(
            "ERROR {}{}: {}",
            e.destination,
            e.table
                .as_deref()
                .map(|t| format!(" {t}"))
                .unwrap_or_default(),
            e.error
        );
    }
    let verdict = if !r.errors.is_empty() {
        "ERROR"
    } else if r.findings.is_empty() {
        "CLEAN"
    } else {
        "FINDINGS"
    };
    println!(
        "{verdict}: {} finding(s); {} view(s) on {}; {} classified and {} unclassified text column(s); {} row(s) scanned",
        r.findings.len(),
        r.tables.len(),
        r.destinations.join(", "),
        r.classified_columns,
        r.unclassified_text_columns,
        r.rows_scanned
    );
}
