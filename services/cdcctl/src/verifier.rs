//! `cdcctl verify`: compares Cassandra with each destination, table by table.
//!
//! For each table (`WITH cdc = true`, in the selected keyspaces, captured per
//! `capture.include_tables`/`exclude_tables`):
//!
//! 1. Cassandra is scanned once. Each row is masked with the configured policy
//!    ([`crate::masking::RowMasker`], compute only) and put in canonical form
//!    ([`crate::canon`]). Rows are kept in memory while the table has at most `row_limit` rows;
//!    a digest per token range ([`crate::compare::RangeDigest`]) is kept in every case.
//! 2. Each destination's live view is scanned. Up to the limit, rows are compared key by key:
//!    missing, extra, stale (the differing columns are named, never their values) and duplicate
//!    (a key twice in the live view). Beyond the limit, rows are bucketed into the same `ranges`
//!    token ranges — the token of a destination row is computed from its partition key with
//!    Cassandra's Murmur3 ([`crate::token`]); when the partition key is masked, both sides bucket
//!    by a hash of the (masked) key instead — and the ranges whose digests differ are rescanned on
//!    both sides and compared row by row, as long as they hold at most `row_limit` rows.
//!
//! Keys are shown as JSON arrays of their canonical values, or hashed (`key#…`) when a key
//! column is classified by the masking policy. Values are never shown.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use cdc_config::{PipelineConfig, SecretResolver, glob_matches};
use cdc_model::{CqlType, TableSchema};
use cdc_schema::SchemaCatalog;
use serde::Serialize;

use crate::canon::{self, Canon};
use crate::cassandra;
use crate::compare::{
    self, ActualRows, Difference, DuplicateCounter, RangeDigest, RowComparison, key_bucket,
    key_string, row_digest,
};
use crate::destinations::{DestKind, Destination, Select, type_matches};
use crate::masking::{ColumnClass, RowMasker, column_class};
use crate::token::{range_index, range_start, token_of};

/// What to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Keyspaces to verify; empty = every keyspace `cassandra.keyspaces` selects (or those of
    /// `tables`).
    pub keyspaces: Vec<String>,
    /// `ks.t` tables to verify; empty = every table of the keyspaces.
    pub tables: Vec<String>,
    /// Tables with more rows are compared by token-range digests first.
    pub row_limit: u64,
    /// Number of token ranges of the digests.
    pub ranges: u32,
    /// Differences listed per destination and table.
    pub max_details: usize,
    /// CQL page size of Cassandra scans.
    pub page_size: i32,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            keyspaces: Vec::new(),
            tables: Vec::new(),
            row_limit: 100_000,
            ranges: 64,
            max_details: 20,
            page_size: 5_000,
        }
    }
}

/// A token range that differs (range mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RangeDifference {
    /// Index among the `ranges` ranges.
    pub index: u32,
    /// Exclusive lower and inclusive upper token (token mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<(i64, i64)>,
    pub cassandra_rows: u64,
    pub destination_rows: u64,
}

/// The result for one destination and table.
#[derive(Debug, Clone, Serialize)]
pub struct TableResult {
    pub destination: String,
    /// `ks.t`.
    pub table: String,
    /// `rows` (compared key by key) or `ranges` (token-range digests first).
    pub mode: &'static str,
    /// How rows were bucketed in range mode: `token` (Murmur3) or `key_hash` (masked key).
    pub bucketing: &'static str,
    pub cassandra_rows: u64,
    pub destination_rows: u64,
    pub missing: u64,
    pub extra: u64,
    pub stale: u64,
    pub duplicate: u64,
    pub differing_ranges: Vec<RangeDifference>,
    /// Remarks: a missing view or column, a type other than expected, partial detail.
    pub notes: Vec<String>,
    /// Why this table could not be compared on this destination.
    pub error: Option<String>,
    /// The first differences (keys only, hashed when classified).
    pub details: Vec<Difference>,
}

impl TableResult {
    /// No difference and no error.
    pub fn is_clean(&self) -> bool {
        self.error.is_none()
            && self.missing == 0
            && self.extra == 0
            && self.stale == 0
            && self.duplicate == 0
            && self.differing_ranges.is_empty()
    }
}

/// The result of one verification pass.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// True when every table matches on every destination.
    pub clean: bool,
    pub destinations: Vec<String>,
    pub tables: Vec<String>,
    /// Tables of the selected keyspaces left out (no `cdc = true`, or not captured).
    pub skipped_tables: Vec<String>,
    pub results: Vec<TableResult>,
    pub elapsed_secs: f64,
}

impl VerifyReport {
    /// Whether any result is an error (rather than a difference).
    pub fn has_errors(&self) -> bool {
        self.results.iter().any(|r| r.error.is_some())
    }
}

/// The connected verifier.
pub struct Verifier {
    catalog: SchemaCatalog,
    masker: RowMasker,
    destinations: Vec<Destination>,
    options: VerifyOptions,
    include_tables: Vec<String>,
    exclude_tables: Vec<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("destinations", &self.destinations)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The layout of one table for comparison.
struct Plan {
    schema: TableSchema,
    masked: TableSchema,
    /// Indexes (in `schema.columns`) of the partition-key then clustering columns.
    key_idx: Vec<usize>,
    pk_len: usize,
    /// Indexes of the other columns.
    value_idx: Vec<usize>,
    value_names: Vec<String>,
    classified_key: bool,
    token_mode: bool,
}

impl Plan {
    fn name(&self) -> String {
        format!("{}.{}", self.schema.keyspace, self.schema.table)
    }

    fn bucket_of(&self, token: Option<i64>, key: &[Canon], ranges: u32) -> u32 {
        if self.token_mode {
            token.map_or(0, |t| range_index(t, ranges))
        } else {
            key_bucket(&key[..self.pk_len], ranges)
        }
    }

    /// The token of a destination row's partition key (token mode).
    fn token_from_key(&self, key: &[Canon]) -> Option<i64> {
        let mut values = Vec::with_capacity(self.pk_len);
        for (i, c) in key.iter().take(self.pk_len).enumerate() {
            let ty = &self.schema.columns[self.key_idx[i]].cql_type;
            values.push((ty, canon::key_value_from_canon(ty, c.as_deref()?)?));
        }
        let refs: Vec<(&CqlType, &cdc_model::CqlValue)> =
            values.iter().map(|(t, v)| (*t, v)).collect();
        token_of(&refs).ok()
    }

    fn split(&self, row: &[Canon]) -> (Vec<Canon>, Vec<Canon>) {
        (
            self.key_idx.iter().map(|i| row[*i].clone()).collect(),
            self.value_idx.iter().map(|i| row[*i].clone()).collect(),
        )
    }
}

/// Key types whose canonical form rebuilds the exact value (so a token can be computed).
fn tokenizable(ty: &CqlType) -> bool {
    matches!(
        ty,
        CqlType::Text
            | CqlType::Ascii
            | CqlType::Blob
            | CqlType::Boolean
            | CqlType::Tinyint
            | CqlType::Smallint
            | CqlType::Int
            | CqlType::Bigint
            | CqlType::Varint
            | CqlType::Date
            | CqlType::Timestamp
            | CqlType::Uuid
            | CqlType::Timeuuid
            | CqlType::Double
            | CqlType::Float
    )
}

struct SourceScan {
    rows: u64,
    digests: Vec<RangeDigest>,
    /// All rows (row mode), `None` once the table exceeded the limit.
    all: Option<BTreeMap<String, Vec<Canon>>>,
}

struct DestScan {
    rows: u64,
    digests: Vec<RangeDigest>,
    all: Option<ActualRows>,
    duplicates: DuplicateCounter,
    notes: Vec<String>,
}

fn included(include: &[String], exclude: &[String], name: &str) -> bool {
    (include.is_empty() || include.iter().any(|p| glob_matches(p, name)))
        && !exclude.iter().any(|p| glob_matches(p, name))
}

impl Verifier {
    /// Connects to Cassandra (schema), builds the masker and the destinations.
    pub async fn connect(
        config_path: &Path,
        config: &PipelineConfig,
        destinations: &[DestKind],
        options: VerifyOptions,
    ) -> anyhow::Result<Verifier> {
        let resolver = SecretResolver::new(&config.secrets);
        let masker = RowMasker::from_config(&config.masker, &resolver, config_path).await?;
        let mut dests = Vec::new();
        for kind in destinations {
            dests.push(Destination::from_config(*kind, config, &resolver, config_path).await?);
        }
        let mut keyspaces: BTreeSet<String> = options.keyspaces.iter().cloned().collect();
        for t in &options.tables {
            let (ks, _) = t
                .split_once('.')
                .with_context(|| format!("--table {t}: expected keyspace.table"))?;
            keyspaces.insert(ks.to_owned());
        }
        let ks_filter = config.cassandra.keyspaces.clone();
        let catalog = cassandra::connect(&config.cassandra, &resolver, move |ks| {
            if keyspaces.is_empty() {
                ks_filter.includes(ks)
            } else {
                keyspaces.contains(ks)
            }
        })
        .await?;
        Ok(Verifier {
            catalog,
            masker,
            destinations: dests,
            options,
            include_tables: config.capture.include_tables.clone(),
            exclude_tables: config.capture.exclude_tables.clone(),
        })
    }

    fn plan(&self, schema: TableSchema) -> anyhow::Result<Plan> {
        let masked = self.masker.masked_schema(&schema)?;
        let pk: Vec<usize> = schema
            .partition_key()
            .iter()
            .filter_map(|c| schema.columns.iter().position(|x| x.name == c.name))
            .collect();
        let ck: Vec<usize> = schema
            .clustering_key()
            .iter()
            .filter_map(|c| schema.columns.iter().position(|x| x.name == c.name))
            .collect();
        let key_idx: Vec<usize> = pk.iter().chain(&ck).copied().collect();
        let value_idx: Vec<usize> = (0..schema.columns.len())
            .filter(|i| !key_idx.contains(i))
            .collect();
        let class = |i: usize| {
            column_class(
                self.masker.policy(),
                &schema.keyspace,
                &schema.table,
                &schema.columns[i].name,
            )
        };
        let classified_key = key_idx
            .iter()
            .any(|i| matches!(class(*i), ColumnClass::Masked(_) | ColumnClass::Refused(_)));
        let token_mode = pk.iter().all(|i| {
            masked.columns[*i].cql_type == schema.columns[*i].cql_type
                && tokenizable(&schema.columns[*i].cql_type)
        });
        Ok(Plan {
            value_names: value_idx
                .iter()
                .map(|i| schema.columns[*i].name.clone())
                .collect(),
            pk_len: pk.len(),
            schema,
            masked,
            key_idx,
            value_idx,
            classified_key,
            token_mode,
        })
    }

    /// The tables to verify and the ones skipped, by name.
    async fn tables(&self) -> anyhow::Result<(Vec<TableSchema>, Vec<String>)> {
        let all = cassandra::table_schemas(&self.catalog).await?;
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        for t in all {
            let name = format!("{}.{}", t.keyspace, t.table);
            if !self.options.tables.is_empty() {
                if self.options.tables.contains(&name)
                    || (self.options.keyspaces.contains(&t.keyspace))
                {
                    out.push(t);
                }
                continue;
            }
            if !t.cdc || !included(&self.include_tables, &self.exclude_tables, &name) {
                skipped.push(name);
                continue;
            }
            out.push(t);
        }
        for wanted in &self.options.tables {
            if !out
                .iter()
                .any(|t| &format!("{}.{}", t.keyspace, t.table) == wanted)
            {
                anyhow::bail!("--table {wanted}: no such table in Cassandra");
            }
        }
        Ok((out, skipped))
    }

    /// One verification pass over every selected table and destination.
    pub async fn run_once(&self) -> anyhow::Result<VerifyReport> {
        let started = Instant::now();
        let (tables, skipped) = self.tables().await?;
        let mut results = Vec::new();
        let mut names = Vec::new();
        for schema in tables {
            let name = format!("{}.{}", schema.keyspace, schema.table);
            names.push(name.clone());
            match self.plan(schema) {
                Ok(plan) => results.extend(self.verify_table(&plan).await),
                Err(e) => {
                    for d in &self.destinations {
                        results.push(error_result(d.kind, &name, format!("{e:#}")));
                    }
                }
            }
        }
        Ok(VerifyReport {
            clean: results.iter().all(TableResult::is_clean),
            destinations: self
                .destinations
                .iter()
                .map(|d| d.kind.name().to_owned())
                .collect(),
            tables: names,
            skipped_tables: skipped,
            results,
            elapsed_secs: started.elapsed().as_secs_f64(),
        })
    }

    async fn scan_source(
        &self,
        plan: &Plan,
        keep_all: bool,
        only: Option<&BTreeSet<u32>>,
    ) -> anyhow::Result<(SourceScan, BTreeMap<u32, BTreeMap<String, Vec<Canon>>>)> {
        let ranges = self.options.ranges;
        let limit = self.options.row_limit;
        let mut scan = SourceScan {
            rows: 0,
            digests: vec![RangeDigest::default(); ranges as usize],
            all: keep_all.then(BTreeMap::new),
        };
        let mut by_bucket: BTreeMap<u32, BTreeMap<String, Vec<Canon>>> = BTreeMap::new();
        let session = self.catalog.session();
        cassandra::scan(session, &plan.schema, self.options.page_size, |row| {
            let masked = self.masker.mask_row(&plan.schema, &row.values)?;
            let canon: Vec<Canon> = plan
                .masked
                .columns
                .iter()
                .zip(&masked)
                .map(|(c, v)| canon::from_cql(&c.cql_type, v.as_ref()))
                .collect();
            let (key, values) = plan.split(&canon);
            let bucket = plan.bucket_of(Some(row.token), &key, ranges);
            let key = key_string(&key);
            scan.rows += 1;
            if let Some(set) = only {
                if set.contains(&bucket) {
                    by_bucket.entry(bucket).or_default().insert(key, values);
                }
                return Ok(true);
            }
            scan.digests[bucket as usize].add(row_digest(&key, &values));
            if let Some(all) = &mut scan.all {
                if scan.rows > limit {
                    scan.all = None;
                } else {
                    all.insert(key, values);
                }
            }
            Ok(true)
        })
        .await?;
        Ok((scan, by_bucket))
    }

    async fn scan_destination(
        &self,
        plan: &Plan,
        dest: &Destination,
        keep_all: bool,
        only: Option<&BTreeSet<u32>>,
    ) -> anyhow::Result<Option<DestScan>> {
        let ks = &plan.schema.keyspace;
        let tb = &plan.schema.table;
        let Some(view) = dest.view_columns(ks, tb).await? else {
            return Ok(None);
        };
        let mut notes = Vec::new();
        let mut selects = Vec::new();
        // Per schema column: index into the select list, and whether it is typed.
        let mut slot: Vec<Option<(usize, bool)>> = Vec::new();
        for c in &plan.masked.columns {
            // A renamed key column listed in the sink's column_renames keeps its old name there.
            let name = dest.column_name(ks, tb, &c.name);
            match view.iter().find(|v| v.name == name) {
                None => {
                    notes.push(format!(
                        "column {} is missing from {} (read as null)",
                        c.name,
                        dest.relation(ks, tb)
                    ));
                    slot.push(None);
                }
                Some(v) if type_matches(dest.kind, &v.type_name, &c.cql_type) => {
                    slot.push(Some((selects.len(), true)));
                    selects.push(Select::Typed {
                        column: name.to_owned(),
                        cql_type: c.cql_type.clone(),
                    });
                }
                Some(v) => {
                    notes.push(format!(
                        "column {} has type {} in {}, not the type expected for {} (compared as text)",
                        c.name,
                        v.type_name,
                        dest.relation(ks, tb),
                        c.cql_type
                    ));
                    slot.push(Some((selects.len(), false)));
                    selects.push(Select::Text {
                        column: name.to_owned(),
                    });
                }
            }
        }
        let ranges = self.options.ranges;
        let cap = self
            .options
            .row_limit
            .saturating_mul(2)
            .saturating_add(1_000);
        let mut scan = DestScan {
            rows: 0,
            digests: vec![RangeDigest::default(); ranges as usize],
            all: keep_all.then(ActualRows::new),
            duplicates: DuplicateCounter::default(),
            notes,
        };
        let dialect = dest.kind.dialect();
        let mut overflow = false;
        dest.scan(ks, tb, &selects, |texts| {
            let canon: Vec<Canon> = plan
                .masked
                .columns
                .iter()
                .zip(&slot)
                .map(|(c, s)| match s {
                    None => None,
                    Some((i, true)) => canon::from_text(&c.cql_type, texts[*i].as_deref(), dialect),
                    Some((i, false)) => texts[*i].clone(),
                })
                .collect();
            let (key, values) = plan.split(&canon);
            let token = if plan.token_mode {
                plan.token_from_key(&key)
            } else {
                None
            };
            let bucket = plan.bucket_of(token, &key, ranges);
            let key = key_string(&key);
            scan.rows += 1;
            if let Some(set) = only {
                if set.contains(&bucket)
                    && let Some(all) = &mut scan.all
                {
                    compare::add_actual(all, key, values);
                }
                return Ok(true);
            }
            scan.duplicates.add(&key);
            scan.digests[bucket as usize].add(row_digest(&key, &values));
            if let Some(all) = &mut scan.all {
                if scan.rows > cap {
                    scan.all = None;
                    overflow = true;
                } else {
                    compare::add_actual(all, key, values);
                }
            }
            Ok(true)
        })
        .await?;
        if overflow {
            scan.notes.push(format!(
                "the destination holds more than {cap} rows: compared by token ranges"
            ));
        }
        Ok(Some(scan))
    }

    async fn verify_table(&self, plan: &Plan) -> Vec<TableResult> {
        let name = plan.name();
        let ranges = self.options.ranges;
        let (source, _) = match self.scan_source(plan, true, None).await {
            Ok(s) => s,
            Err(e) => {
                return self
                    .destinations
                    .iter()
                    .map(|d| error_result(d.kind, &name, format!("{e:#}")))
                    .collect();
            }
        };
        let row_mode = source.all.is_some();
        let mut results = Vec::new();
        // Range mode: (result index, differing ranges) to drill into.
        let mut drill: Vec<(usize, BTreeSet<u32>)> = Vec::new();
        for dest in &self.destinations {
            let mut r = TableResult {
                destination: dest.kind.name().to_owned(),
                table: name.clone(),
                mode: if row_mode { "rows" } else { "ranges" },
                bucketing: if plan.token_mode { "token" } else { "key_hash" },
                cassandra_rows: source.rows,
                destination_rows: 0,
                missing: 0,
                extra: 0,
                stale: 0,
                duplicate: 0,
                differing_ranges: Vec::new(),
                notes: Vec::new(),
                error: None,
                details: Vec::new(),
            };
            match self.scan_destination(plan, dest, row_mode, None).await {
                Err(e) => r.error = Some(format!("{e:#}")),
                Ok(None) => {
                    r.notes.push(format!(
                        "{} has no view {}",
                        dest.kind.name(),
                        dest.relation(&plan.schema.keyspace, &plan.schema.table)
                    ));
                    r.missing = source.rows;
                    if let Some(all) = &source.all {
                        r.details = all
                            .keys()
                            .take(self.options.max_details)
                            .map(|k| Difference::Missing {
                                key: compare::display_key(k, plan.classified_key),
                            })
                            .collect();
                    }
                }
                Ok(Some(scan)) => {
                    r.destination_rows = scan.rows;
                    r.notes.extend(scan.notes);
                    match (&source.all, &scan.all) {
                        (Some(expected), Some(actual)) => {
                            let cmp = compare::compare_rows(
                                &plan.value_names,
                                expected,
                                actual,
                                plan.classified_key,
                                self.options.max_details,
                            );
                            apply(&mut r, cmp);
                        }
                        _ => {
                            r.mode = "ranges";
                            r.duplicate = scan.duplicates.duplicated_keys();
                            let differing =
                                compare::differing_ranges(&source.digests, &scan.digests);
                            r.differing_ranges = differing
                                .iter()
                                .map(|i| RangeDifference {
                                    index: *i,
                                    tokens: plan.token_mode.then(|| {
                                        let end = if *i + 1 >= ranges {
                                            i64::MAX
                                        } else {
                                            range_start(*i + 1, ranges)
                                        };
                                        (range_start(*i, ranges), end)
                                    }),
                                    cassandra_rows: source.digests[*i as usize].rows,
                                    destination_rows: scan.digests[*i as usize].rows,
                                })
                                .collect();
                            if !differing.is_empty() {
                                drill.push((results.len(), differing.into_iter().collect()));
                            }
                        }
                    }
                }
            }
            results.push(r);
        }
        if !drill.is_empty() {
            self.drill_down(plan, &source, &mut results, &drill).await;
        }
        results
    }

    /// Row-by-row comparison inside the differing ranges, when they are small enough.
    async fn drill_down(
        &self,
        plan: &Plan,
        source: &SourceScan,
        results: &mut [TableResult],
        drill: &[(usize, BTreeSet<u32>)],
    ) {
        let union: BTreeSet<u32> = drill.iter().flat_map(|(_, s)| s.iter().copied()).collect();
        let rows_in_union: u64 = union.iter().map(|i| source.digests[*i as usize].rows).sum();
        let too_many = rows_in_union > self.options.row_limit;
        let expected = if too_many {
            None
        } else {
            match self.scan_source(plan, false, Some(&union)).await {
                Ok((_, by_bucket)) => Some(by_bucket),
                Err(e) => {
                    for (i, _) in drill {
                        results[*i].error = Some(format!("{e:#}"));
                    }
                    return;
                }
            }
        };
        for (i, set) in drill {
            let r = &mut results[*i];
            let dest = self
                .destinations
                .iter()
                .find(|d| d.kind.name() == r.destination);
            let (Some(expected), Some(dest)) = (&expected, dest) else {
                // Too many rows to list: estimate from counts.
                for d in &r.differing_ranges {
                    if d.cassandra_rows > d.destination_rows {
                        r.missing += d.cassandra_rows - d.destination_rows;
                    } else if d.destination_rows > d.cassandra_rows {
                        r.extra += d.destination_rows - d.cassandra_rows;
                    } else {
                        r.stale += 1;
                    }
                }
                r.notes.push(format!(
                    "the differing ranges hold {rows_in_union} rows, more than --row-limit: counts are estimated from range sizes (stale counts ranges)"
                ));
                continue;
            };
            let mut want: BTreeMap<String, Vec<Canon>> = BTreeMap::new();
            for b in set {
                if let Some(rows) = expected.get(b) {
                    want.extend(rows.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            match self.scan_destination(plan, dest, true, Some(set)).await {
                Ok(Some(scan)) => {
                    let actual = scan.all.unwrap_or_default();
                    let cmp = compare::compare_rows(
                        &plan.value_names,
                        &want,
                        &actual,
                        plan.classified_key,
                        self.options.max_details,
                    );
                    let dup = r.duplicate.max(cmp.duplicate);
                    apply(r, cmp);
                    r.duplicate = dup;
                }
                Ok(None) => r.error = Some("the view disappeared during verification".into()),
                Err(e) => r.error = Some(format!("{e:#}")),
            }
        }
    }
}

fn apply(r: &mut TableResult, cmp: RowComparison) {
    r.missing = cmp.missing;
    r.extra = cmp.extra;
    r.stale = cmp.stale;
    r.duplicate = cmp.duplicate;
    r.details = cmp.details;
}

fn error_result(kind: DestKind, table: &str, error: String) -> TableResult {
    TableResult {
        destination: kind.name().to_owned(),
        table: table.to_owned(),
        mode: "rows",
        bucketing: "token",
        cassandra_rows: 0,
        destination_rows: 0,
        missing: 0,
        extra: 0,
        stale: 0,
        duplicate: 0,
        differing_ranges: Vec::new(),
        notes: Vec::new(),
        error: Some(error),
        details: Vec::new(),
    }
}
