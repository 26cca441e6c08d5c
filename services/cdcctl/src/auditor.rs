//! `cdcctl audit`: the compliance query of ARCHITECTURE §6, run against every destination's live
//! views (it needs no Cassandra and no masking key: only the policy's classifications).
//!
//! For each CDC view (a view with its `_state` table behind it) and each of its columns:
//!
//! - **classified** (policy `class: pii|phi` with hash, tokenize, redact or partial): every
//!   non-null value must be in that strategy's masked form ([`crate::pii::is_masked`]); for
//!   collections every string leaf must be; a column whose destination type cannot hold text is
//!   unmasked by construction (masking turns values into text);
//! - **passthrough**: allowed by policy (values encrypted upstream), not scanned, listed;
//! - **refused** (unclassified but matching a default rule with `on_unclassified_match: fail`): the
//!   masker refuses such events, so any value present is a finding;
//! - **unclassified** text (and JSON) columns: scanned for emails, US SSNs and phone numbers.
//!
//! Findings name destination, table, column, pattern and count, with a few sample row keys —
//! always hashed (`key#…`). Values are never returned or printed.

use std::collections::BTreeMap;
use std::path::Path;

use cdc_config::{PipelineConfig, SecretResolver};
use cdc_mask::Strategy;
use serde::Serialize;
use serde_json::Value as Json;

use crate::compare::{hashed_key, key_string};
use crate::destinations::{DestKind, Destination, Select, holds_text};
use crate::masking::{ColumnClass, column_class, policy_for_audit};
use crate::pii::{is_masked, json_is_masked, masked_form, pii_matches, pii_matches_json};

/// What to audit.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Keyspaces to audit; empty = every keyspace found in the destinations.
    pub keyspaces: Vec<String>,
    /// Sample row keys (hashed) listed per finding.
    pub max_samples: usize,
    /// Rows scanned per table; 0 = all.
    pub max_rows: u64,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            keyspaces: Vec::new(),
            max_samples: 5,
            max_rows: 0,
        }
    }
}

/// One finding: values of one pattern in one column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub destination: String,
    /// `ks.t`.
    pub table: String,
    pub column: String,
    /// `classified` or `unclassified`.
    pub class: &'static str,
    /// `email`, `ssn`, `phone` (unclassified), `unmasked:<strategy>`, `unmasked-type`,
    /// `unclassified-match:<rule>` (classified).
    pub pattern: String,
    /// What was expected (classified columns).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// Rows with such a value.
    pub count: u64,
    /// Hashed keys of the first rows.
    pub sample_keys: Vec<String>,
}

/// A passthrough column (allowed by policy, not scanned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Passthrough {
    pub destination: String,
    pub table: String,
    pub column: String,
}

/// A table that could not be audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditError {
    pub destination: String,
    pub table: Option<String>,
    pub error: String,
}

/// The audit's result.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// No finding and no error.
    pub clean: bool,
    pub destinations: Vec<String>,
    /// `destination:ks.t` of every view audited.
    pub tables: Vec<String>,
    pub classified_columns: u64,
    pub unclassified_text_columns: u64,
    pub rows_scanned: u64,
    pub passthrough: Vec<Passthrough>,
    pub findings: Vec<Finding>,
    pub errors: Vec<AuditError>,
}

/// What one column is checked for.
#[derive(Debug, Clone)]
enum Check {
    Masked {
        strategy: Strategy,
        json: bool,
    },
    /// Any non-null value is a finding (`pattern`).
    AnyValue {
        pattern: String,
        expected: String,
    },
    Pii {
        json: bool,
    },
}

/// Rows of one (column, pattern): what was expected, how many, hashed sample keys.
struct Hits {
    expected: Option<String>,
    count: u64,
    samples: Vec<String>,
}

fn is_json_type(kind: DestKind, type_name: &str) -> bool {
    match kind {
        DestKind::Clickhouse => {
            let t = type_name.trim_start_matches("Nullable(");
            t.starts_with("Array(") || t.starts_with("Map(") || t.starts_with("Tuple(")
        }
        _ => matches!(type_name, "jsonb" | "json"),
    }
}

/// Runs the audit.
pub async fn audit(
    config_path: &Path,
    config: &PipelineConfig,
    destinations: &[DestKind],
    options: &AuditOptions,
) -> anyhow::Result<AuditReport> {
    let policy = policy_for_audit(&config.masker, config_path)?;
    let resolver = SecretResolver::new(&config.secrets);
    let mut report = AuditReport {
        clean: true,
        destinations: destinations.iter().map(|d| d.name().to_owned()).collect(),
        tables: Vec::new(),
        classified_columns: 0,
        unclassified_text_columns: 0,
        rows_scanned: 0,
        passthrough: Vec::new(),
        findings: Vec::new(),
        errors: Vec::new(),
    };
    for kind in destinations {
        let dest = Destination::from_config(*kind, config, &resolver, config_path).await?;
        let keyspaces = options.keyspaces.clone();
        let wanted = move |ks: &str| keyspaces.is_empty() || keyspaces.iter().any(|k| k == ks);
        let tables = match dest.list_tables(&wanted).await {
            Ok(t) => t,
            Err(e) => {
                report.errors.push(AuditError {
                    destination: kind.name().to_owned(),
                    table: None,
                    error: format!("{e:#}"),
                });
                continue;
            }
        };
        for (ks, t) in tables {
            let name = format!("{ks}.{t}");
            report.tables.push(format!("{}:{name}", kind.name()));
            if let Err(e) = audit_table(&dest, &policy, &ks, &t, options, &mut report).await {
                report.errors.push(AuditError {
                    destination: kind.name().to_owned(),
                    table: Some(name),
                    error: format!("{e:#}"),
                });
            }
        }
    }
    report.clean = report.findings.is_empty() && report.errors.is_empty();
    Ok(report)
}

async fn audit_table(
    dest: &Destination,
    policy: &cdc_mask::Policy,
    ks: &str,
    t: &str,
    options: &AuditOptions,
    report: &mut AuditReport,
) -> anyhow::Result<()> {
    let kind = dest.kind;
    let table = format!("{ks}.{t}");
    let Some(columns) = dest.view_columns(ks, t).await? else {
        return Ok(());
    };
    let keys = dest.key_columns(ks, t).await?;
    let mut selects: Vec<Select> = keys
        .iter()
        .map(|k| Select::Text { column: k.clone() })
        .collect();
    let mut checks: Vec<(String, Check)> = Vec::new();
    for c in columns.iter().filter(|c| !c.name.starts_with("_cdc_")) {
        let json = is_json_type(kind, &c.type_name);
        let check = match column_class(policy, ks, t, &c.name) {
            ColumnClass::Passthrough => {
                report.passthrough.push(Passthrough {
                    destination: kind.name().to_owned(),
                    table: table.clone(),
                    column: c.name.clone(),
                });
                continue;
            }
            ColumnClass::Masked(strategy) => {
                report.classified_columns += 1;
                if holds_text(kind, &c.type_name) {
                    Check::Masked { strategy, json }
                } else {
                    Check::AnyValue {
                        pattern: "unmasked-type".into(),
                        expected: format!(
                            "{} in a text column (found type {})",
                            masked_form(&strategy),
                            c.type_name
                        ),
                    }
                }
            }
            ColumnClass::Refused(rule) => {
                report.classified_columns += 1;
                Check::AnyValue {
                    pattern: format!("unclassified-match:{rule}"),
                    expected: "no value (the policy refuses this column)".into(),
                }
            }
            ColumnClass::Clear => {
                if !holds_text(kind, &c.type_name) {
                    continue;
                }
                report.unclassified_text_columns += 1;
                Check::Pii { json }
            }
        };
        selects.push(if json {
            Select::Json {
                column: c.name.clone(),
            }
        } else {
            Select::Text {
                column: c.name.clone(),
            }
        });
        checks.push((c.name.clone(), check));
    }
    if checks.is_empty() {
        return Ok(());
    }
    let mut found: BTreeMap<(usize, String), Hits> = BTreeMap::new();
    let nkeys = keys.len();
    let mut rows = 0u64;
    let max_rows = options.max_rows;
    let max_samples = options.max_samples;
    dest.scan(ks, t, &selects, |texts| {
        rows += 1;
        let key = || hashed_key(&key_string(&texts[..nkeys]));
        for (i, (_, check)) in checks.iter().enumerate() {
            let Some(text) = texts[nkeys + i].as_deref() else {
                continue;
            };
            let mut hits: Vec<(String, Option<String>)> = Vec::new();
            match check {
                Check::Masked { strategy, json } => {
                    let ok = if *json {
                        match serde_json::from_str::<Json>(text) {
                            Ok(j) => {
                                for p in pii_matches_json(&j) {
                                    if !json_is_masked(strategy, &j) {
                                        continue;
                                    }
                                    hits.push((p.to_owned(), None));
                                }
                                json_is_masked(strategy, &j)
                            }
                            Err(_) => false,
                        }
                    } else {
                        is_masked(strategy, text)
                    };
                    if !ok {
                        hits.push((
                            format!("unmasked:{}", strategy.name()),
                            Some(masked_form(strategy)),
                        ));
                    }
                }
                Check::AnyValue { pattern, expected } => {
                    let empty = matches!(text, "" | "[]" | "{}" | "null");
                    if !empty {
                        hits.push((pattern.clone(), Some(expected.clone())));
                    }
                }
                Check::Pii { json } => {
                    let patterns = if *json {
                        serde_json::from_str::<Json>(text)
                            .map(|j| pii_matches_json(&j))
                            .unwrap_or_else(|_| pii_matches(text))
                    } else {
                        pii_matches(text)
                    };
                    hits.extend(patterns.into_iter().map(|p| (p.to_owned(), None)));
                }
            }
            for (pattern, expected) in hits {
                let e = found.entry((i, pattern)).or_insert(Hits {
                    expected,
                    count: 0,
                    samples: Vec::new(),
                });
                e.count += 1;
                if e.samples.len() < max_samples {
                    e.samples.push(key());
                }
            }
        }
        Ok(max_rows == 0 || rows < max_rows)
    })
    .await?;
    report.rows_scanned += rows;
    for ((i, pattern), hits) in found {
        let Hits {
            expected,
            count,
            samples,
        } = hits;
        let (column, check) = &checks[i];
        report.findings.push(Finding {
            destination: kind.name().to_owned(),
            table: table.clone(),
            column: column.clone(),
            class: if matches!(check, Check::Pii { .. }) {
                "unclassified"
            } else {
                "classified"
            },
            pattern,
            expected,
            count,
            sample_keys: samples,
        });
    }
    Ok(())
}
