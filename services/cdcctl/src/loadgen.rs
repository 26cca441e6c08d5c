//! The load generator behind `cdcctl load`: writes inserts, updates and deletes of obviously fake
//! patient rows to a Cassandra table at a target rate.
//!
//! - [`Mix`] (`insert=60,update=30,delete=10`) and [`parse_duration`] (`30s`, `2m`, `500ms`);
//! - [`Generator`]: the pure, seeded decision of the next operation over a key space of `keys`
//!   integer ids. It tracks which keys are live so updates and deletes pick existing rows and
//!   inserts prefer absent ones; an update or delete with no live key becomes an insert. Tests
//!   drive it directly;
//! - [`demo_table_cql`] / [`create_schema`]: the demo table (`WITH cdc = true`);
//! - [`run`]: `concurrency` workers, each owning the keys `k % concurrency == worker` (so one
//!   key is never written by two workers at once and the final state is known), paced to
//!   `rate / concurrency` events per second, measuring the latency of each Cassandra write.
//!
//! Generated values are fake by construction: `fake.user<id>.<n>@example.invalid`, SSNs
//! `000-xx-xxxx` (area 000 is never issued), phones `555-01xx` (reserved for fiction), medical
//! record numbers `MRN-FAKE-xxxxxx`.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use serde::Serialize;

use crate::cassandra::cql_ident;

/// Percentages of inserts, updates and deletes (they sum to 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mix {
    pub insert: u8,
    pub update: u8,
    pub delete: u8,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            insert: 60,
            update: 30,
            delete: 10,
        }
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "insert={},update={},delete={}",
            self.insert, self.update, self.delete
        )
    }
}

impl FromStr for Mix {
    type Err = String;

    /// `insert=60,update=30,delete=10`; operations left out count 0; the total must be 100.
    fn from_str(s: &str) -> Result<Mix, String> {
        let mut mix = Mix {
            insert: 0,
            update: 0,
            delete: 0,
        };
        let mut seen = HashSet::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (op, pct) = part.split_once('=').ok_or_else(|| {
                format!("`{part}`: expected op=percent, e.g. insert=60,update=30,delete=10")
            })?;
            let op = op.trim();
            let pct: u8 = pct
                .trim()
                .parse()
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| format!("`{part}`: the percentage must be an integer 0-100"))?;
            if !seen.insert(op.to_owned()) {
                return Err(format!("`{op}` is given twice"));
            }
            match op {
                "insert" => mix.insert = pct,
                "update" => mix.update = pct,
                "delete" => mix.delete = pct,
                other => {
                    return Err(format!(
                        "unknown operation `{other}` (expected insert, update, delete)"
                    ));
                }
            }
        }
        let total = u32::from(mix.insert) + u32::from(mix.update) + u32::from(mix.delete);
        if total != 100 {
            return Err(format!(
                "the percentages must sum to 100, got {total} ({mix})"
            ));
        }
        Ok(mix)
    }
}

/// Parses `500ms`, `30s`, `2m`, `1h` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a duration like 30s, 2m, 500ms"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => n,
        "ms" => n / 1_000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3_600.0,
        other => return Err(format!("`{s}`: unknown unit `{other}` (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}`: a duration must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// One kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Insert,
    Update,
    Delete,
}

impl OpKind {
    /// `insert`, `update`, `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Insert => "insert",
            OpKind::Update => "update",
            OpKind::Delete => "delete",
        }
    }

    fn index(self) -> usize {
        match self {
            OpKind::Insert => 0,
            OpKind::Update => 1,
            OpKind::Delete => 2,
        }
    }
}

/// A whole fake patient row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patient {
    pub id: i32,
    pub email: String,
    pub ssn: String,
    pub phone: String,
    pub medical_record_number: String,
    pub name: String,
    pub city: String,
    pub age: i32,
    pub admitted_at_ms: i64,
}

/// What an update changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// `email`, `phone`.
    Contact { email: String, phone: String },
    /// `city`, `age`, `admitted_at`.
    Visit {
        city: String,
        age: i32,
        admitted_at_ms: i64,
    },
}

/// The next operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Insert(Patient),
    Update { id: i32, update: Update },
    Delete { id: i32 },
}

impl Action {
    /// The operation kind.
    pub fn kind(&self) -> OpKind {
        match self {
            Action::Insert(_) => OpKind::Insert,
            Action::Update { .. } => OpKind::Update,
            Action::Delete { .. } => OpKind::Delete,
        }
    }

    /// The key written.
    pub fn id(&self) -> i32 {
        match self {
            Action::Insert(p) => p.id,
            Action::Update { id, .. } | Action::Delete { id } => *id,
        }
    }
}

const CITIES: &[&str] = &[
    "Springfield",
    "Riverton",
    "Lakeside",
    "Fairview",
    "Greenville",
    "Kingston",
    "Franklin",
    "Clinton",
];

/// A set of key positions with O(1) insert, remove and random pick.
#[derive(Debug, Clone, Default)]
struct IndexSet {
    items: Vec<usize>,
    pos: Vec<Option<usize>>,
}

impl IndexSet {
    fn with_capacity(n: usize) -> Self {
        IndexSet {
            items: Vec::new(),
            pos: vec![None; n],
        }
    }

    fn insert(&mut self, i: usize) {
        if self.pos[i].is_none() {
            self.pos[i] = Some(self.items.len());
            self.items.push(i);
        }
    }

    fn remove(&mut self, i: usize) {
        if let Some(p) = self.pos[i].take() {
            self.items.swap_remove(p);
            if let Some(moved) = self.items.get(p) {
                self.pos[*moved] = Some(p);
            }
        }
    }

    fn pick(&self, rng: &mut StdRng) -> Option<usize> {
        (!self.items.is_empty()).then(|| self.items[rng.random_range(0..self.items.len())])
    }
}

/// Decides operations over a fixed set of keys (pure and seeded).
#[derive(Debug, Clone)]
pub struct Generator {
    rng: StdRng,
    mix: Mix,
    keys: Vec<i32>,
    live: IndexSet,
    dead: IndexSet,
    now_ms: fn() -> i64,
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Generator {
    /// A generator over `keys`; `live` tells which keys exist in the table already.
    pub fn new(seed: u64, mix: Mix, keys: Vec<i32>, live: impl Fn(i32) -> bool) -> Generator {
        let mut l = IndexSet::with_capacity(keys.len());
        let mut d = IndexSet::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            if live(*k) {
                l.insert(i);
            } else {
                d.insert(i);
            }
        }
        Generator {
            rng: StdRng::seed_from_u64(seed),
            mix,
            keys,
            live: l,
            dead: d,
            now_ms: wall_ms,
        }
    }

    /// Number of keys that exist after the operations decided so far.
    pub fn live_count(&self) -> usize {
        self.live.items.len()
    }

    /// Whether `id` exists after the operations decided so far.
    pub fn is_live(&self, id: i32) -> bool {
        self.keys
            .iter()
            .position(|k| *k == id)
            .is_some_and(|i| self.live.pos[i].is_some())
    }

    fn email(&mut self, id: i32) -> String {
        format!(
            "fake.user{id}.{:04}@example.invalid",
            self.rng.random_range(0..10_000)
        )
    }

    fn phone(&mut self) -> String {
        format!("555-01{:02}", self.rng.random_range(0..100))
    }

    fn patient(&mut self, id: i32) -> Patient {
        let now = (self.now_ms)();
        Patient {
            id,
            email: self.email(id),
            ssn: format!(
                "000-{:02}-{:04}",
                self.rng.random_range(1..100),
                self.rng.random_range(1..10_000)
            ),
            phone: self.phone(),
            medical_record_number: format!("MRN-FAKE-{:06}", self.rng.random_range(0..1_000_000)),
            name: format!("Fake Patient {id}"),
            city: CITIES[self.rng.random_range(0..CITIES.len())].to_owned(),
            age: self.rng.random_range(0..100),
            admitted_at_ms: now - self.rng.random_range(0..30 * 86_400_000_i64),
        }
    }

    /// The next operation (and its effect on which keys exist). `None` only for an empty key set.
    pub fn next_action(&mut self) -> Option<Action> {
        if self.keys.is_empty() {
            return None;
        }
        let roll = self.rng.random_range(0..100u8);
        let wanted = if roll < self.mix.insert {
            OpKind::Insert
        } else if roll < self.mix.insert + self.mix.update {
            OpKind::Update
        } else {
            OpKind::Delete
        };
        let existing = self.live.pick(&mut self.rng);
        let action = match (wanted, existing) {
            (OpKind::Update, Some(i)) => {
                let id = self.keys[i];
                let update = if self.rng.random_bool(0.5) {
                    Update::Contact {
                        email: self.email(id),
                        phone: self.phone(),
                    }
                } else {
                    let now = (self.now_ms)();
                    Update::Visit {
                        city: CITIES[self.rng.random_range(0..CITIES.len())].to_owned(),
                        age: self.rng.random_range(0..100),
                        admitted_at_ms: now - self.rng.random_range(0..86_400_000_i64),
                    }
                };
                Action::Update { id, update }
            }
            (OpKind::Delete, Some(i)) => {
                self.live.remove(i);
                self.dead.insert(i);
                Action::Delete { id: self.keys[i] }
            }
            // An insert, or an update/delete with nothing live: insert, preferring an absent key.
            _ => {
                let i = match self.dead.pick(&mut self.rng) {
                    Some(i) => i,
                    None => self.rng.random_range(0..self.keys.len()),
                };
                self.dead.remove(i);
                self.live.insert(i);
                let id = self.keys[i];
                Action::Insert(self.patient(id))
            }
        };
        Some(action)
    }

    /// Undoes the liveness effect of an action whose write failed (its outcome is unknown; the
    /// previous state is the better guess for an insert or delete that raised an error).
    pub fn failed(&mut self, action: &Action) {
        let Some(i) = self.keys.iter().position(|k| *k == action.id()) else {
            return;
        };
        match action {
            Action::Insert(_) => {
                self.live.remove(i);
                self.dead.insert(i);
            }
            Action::Delete { .. } => {
                self.dead.remove(i);
                self.live.insert(i);
            }
            Action::Update { .. } => {}
        }
    }
}

/// Replication of a keyspace created by `--create-schema`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    Simple {
        factor: u32,
    },
    /// `(datacenter, factor)` pairs.
    NetworkTopology(Vec<(String, u32)>),
}

impl Replication {
    fn cql(&self) -> String {
        match self {
            Replication::Simple { factor } => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {factor}}}")
            }
            Replication::NetworkTopology(dcs) => {
                let parts: Vec<String> = dcs
                    .iter()
                    .map(|(dc, rf)| format!("'{}': {rf}", dc.replace('\'', "''")))
                    .collect();
                format!(
                    "{{'class': 'NetworkTopologyStrategy', {}}}",
                    parts.join(", ")
                )
            }
        }
    }
}

/// Parses `dc1:3,dc2:3` for NetworkTopologyStrategy.
pub fn parse_network_topology(s: &str) -> Result<Replication, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (dc, rf) = part
            .split_once(':')
            .ok_or_else(|| format!("`{part}`: expected datacenter:replication_factor"))?;
        let rf: u32 = rf.trim().parse().ok().filter(|r| *r > 0).ok_or_else(|| {
            format!("`{part}`: the replication factor must be a positive integer")
        })?;
        out.push((dc.trim().to_owned(), rf));
    }
    if out.is_empty() {
        return Err("expected at least one datacenter:replication_factor".into());
    }
    Ok(Replication::NetworkTopology(out))
}

/// The columns of the demo table, in order, with their CQL types.
pub const DEMO_COLUMNS: &[(&str, &str)] = &[
    ("id", "int"),
    ("email", "text"),
    ("ssn", "text"),
    ("phone", "text"),
    ("medical_record_number", "text"),
    ("name", "text"),
    ("city", "text"),
    ("age", "int"),
    ("admitted_at", "timestamp"),
];

/// `CREATE KEYSPACE` and `CREATE TABLE … WITH cdc = true` of the demo table.
pub fn demo_table_cql(keyspace: &str, table: &str, replication: &Replication) -> [String; 2] {
    let cols: Vec<String> = DEMO_COLUMNS
        .iter()
        .map(|(n, t)| {
            if *n == "id" {
                format!("{} {t} PRIMARY KEY", cql_ident(n))
            } else {
                format!("{} {t}", cql_ident(n))
            }
        })
        .collect();
    [
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {}",
            cql_ident(keyspace),
            replication.cql()
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {}.{} ({}) WITH cdc = true",
            cql_ident(keyspace),
            cql_ident(table),
            cols.join(", ")
        ),
    ]
}

/// Creates the keyspace and the demo table (idempotent) and waits for schema agreement.
pub async fn create_schema(
    session: &Session,
    keyspace: &str,
    table: &str,
    replication: &Replication,
) -> anyhow::Result<()> {
    for cql in demo_table_cql(keyspace, table, replication) {
        session
            .query_unpaged(cql, &[])
            .await
            .with_context(|| format!("creating {keyspace}.{table}"))?;
    }
    session
        .await_schema_agreement()
        .await
        .context("waiting for schema agreement")?;
    Ok(())
}

/// Checks that `keyspace.table` exists with the demo columns (names and types).
pub async fn check_table(session: &Session, keyspace: &str, table: &str) -> anyhow::Result<()> {
    let rows = session
        .query_unpaged(
            "SELECT column_name, type FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?",
            (keyspace, table),
        )
        .await
        .context("reading system_schema.columns")?
        .into_rows_result()
        .context("reading system_schema.columns")?;
    let cols: Vec<(String, String)> = rows
        .rows::<(String, String)>()
        .context("reading system_schema.columns")?
        .collect::<Result<_, _>>()
        .context("reading system_schema.columns")?;
    if cols.is_empty() {
        return Err(anyhow!(
            "table {keyspace}.{table} does not exist (run with --create-schema to create the demo table)"
        ));
    }
    for (name, ty) in DEMO_COLUMNS {
        match cols.iter().find(|(n, _)| n == name) {
            None => {
                return Err(anyhow!(
                    "table {keyspace}.{table} has no column {name} ({ty}): cdcctl load writes the demo table's columns"
                ));
            }
            Some((_, t)) if t != ty => {
                return Err(anyhow!(
                    "column {name} of {keyspace}.{table} is {t}, cdcctl load writes {ty}"
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// What `run` does.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub keyspace: String,
    pub table: String,
    /// Target events per second over all workers; 0 = as fast as possible.
    pub rate: f64,
    /// Stop after this long (None = no time limit).
    pub duration: Option<Duration>,
    /// Stop after this many events (None = no count limit).
    pub events: Option<u64>,
    pub mix: Mix,
    /// Size of the key space (ids `0..keys`).
    pub keys: u32,
    pub seed: u64,
    pub concurrency: u32,
}

/// Live counters (for progress output while `run` works).
#[derive(Debug, Default)]
pub struct Counters {
    done: [AtomicU64; 3],
    errors: [AtomicU64; 3],
    stop: AtomicBool,
}

impl Counters {
    /// Events written so far, by operation (insert, update, delete).
    pub fn done(&self) -> [u64; 3] {
        [0, 1, 2].map(|i| self.done[i].load(Ordering::Relaxed))
    }

    /// Failed writes so far.
    pub fn errors(&self) -> u64 {
        self.errors.iter().map(|e| e.load(Ordering::Relaxed)).sum()
    }

    /// Asks the workers to stop after their current write (Ctrl-C).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Counts by operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OpCounts {
    pub insert: u64,
    pub update: u64,
    pub delete: u64,
    pub total: u64,
}

impl OpCounts {
    fn from(a: [u64; 3]) -> OpCounts {
        OpCounts {
            insert: a[0],
            update: a[1],
            delete: a[2],
            total: a.iter().sum(),
        }
    }
}

/// Latency percentiles of the Cassandra writes, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The final report.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub keyspace: String,
    pub table: String,
    pub mix: String,
    pub seed: u64,
    pub keys: u32,
    pub concurrency: u32,
    /// Writes that succeeded, by operation.
    pub events: OpCounts,
    /// Writes that failed, by operation.
    pub errors: OpCounts,
    pub elapsed_secs: f64,
    pub target_rate: f64,
    pub achieved_rate: f64,
    pub latency: Latency,
    /// Rows that exist at the end, as far as the generator knows (the table started with
    /// `initial_rows` of the key space).
    pub live_rows: u64,
    pub initial_rows: u64,
    /// Whether the run was interrupted (Ctrl-C).
    pub interrupted: bool,
}

/// The value at quantile `q` of sorted samples (µs), in ms.
pub fn percentile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    f64::from(sorted_us[rank - 1]) / 1_000.0
}

struct Statements {
    insert: PreparedStatement,
    contact: PreparedStatement,
    visit: PreparedStatement,
    delete: PreparedStatement,
}

async fn prepare(session: &Session, ks: &str, t: &str) -> anyhow::Result<Statements> {
    let rel = format!("{}.{}", cql_ident(ks), cql_ident(t));
    let p = |cql: String| async move {
        session
            .prepare(cql)
            .await
            .with_context(|| format!("preparing statements on {ks}.{t}"))
    };
    Ok(Statements {
        insert: p(format!(
            "INSERT INTO {rel} (id, email, ssn, phone, medical_record_number, name, city, age, admitted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .await?,
        contact: p(format!("UPDATE {rel} SET email = ?, phone = ? WHERE id = ?")).await?,
        visit: p(format!(
            "UPDATE {rel} SET city = ?, age = ?, admitted_at = ? WHERE id = ?"
        ))
        .await?,
        delete: p(format!("DELETE FROM {rel} WHERE id = ?")).await?,
    })
}

async fn execute(session: &Session, st: &Statements, action: &Action) -> anyhow::Result<()> {
    let r = match action {
        Action::Insert(p) => {
            session
                .execute_unpaged(
                    &st.insert,
                    (
                        p.id,
                        &p.email,
                        &p.ssn,
                        &p.phone,
                        &p.medical_record_number,
                        &p.name,
                        &p.city,
                        p.age,
                        CqlTimestamp(p.admitted_at_ms),
                    ),
                )
                .await
        }
        Action::Update {
            id,
            update: Update::Contact { email, phone },
        } => {
            session
                .execute_unpaged(&st.contact, (email, phone, *id))
                .await
        }
        Action::Update {
            id,
            update:
                Update::Visit {
                    city,
                    age,
                    admitted_at_ms,
                },
        } => {
            session
                .execute_unpaged(&st.visit, (city, *age, CqlTimestamp(*admitted_at_ms), *id))
                .await
        }
        Action::Delete { id } => session.execute_unpaged(&st.delete, (*id,)).await,
    };
    r.map(|_| ())
        .map_err(|e| anyhow!("{} failed: {e}", action.kind().as_str()))
}

/// The ids of `0..keys` present in the table now.
async fn existing_ids(
    session: &Session,
    ks: &str,
    t: &str,
    keys: u32,
) -> anyhow::Result<HashSet<i32>> {
    let cql = format!("SELECT id FROM {}.{}", cql_ident(ks), cql_ident(t));
    let mut rows = session
        .query_iter(cql, &[])
        .await
        .with_context(|| format!("reading the ids of {ks}.{t}"))?
        .rows_stream::<(i32,)>()
        .with_context(|| format!("reading the ids of {ks}.{t}"))?;
    let mut out = HashSet::new();
    while let Some(r) = rows.next().await {
        let (id,) = r.with_context(|| format!("reading the ids of {ks}.{t}"))?;
        if id >= 0 && (id as i64) < i64::from(keys) {
            out.insert(id);
        }
    }
    Ok(out)
}

/// Generates the load. `counters` is updated as writes complete (for progress output) and can
/// stop the run early.
pub async fn run(
    session: &Session,
    options: &LoadOptions,
    counters: Arc<Counters>,
) -> anyhow::Result<LoadReport> {
    if options.keys == 0 || options.keys > i32::MAX as u32 {
        return Err(anyhow!("--keys must be between 1 and {}", i32::MAX));
    }
    if options.duration.is_none() && options.events.is_none() {
        return Err(anyhow!("give --duration or --events"));
    }
    let workers = options.concurrency.clamp(1, options.keys);
    let statements = prepare(session, &options.keyspace, &options.table).await?;
    let existing = existing_ids(session, &options.keyspace, &options.table, options.keys).await?;
    let initial_rows = existing.len() as u64;
    let existing = Arc::new(existing);
    let started = Instant::now();
    let deadline = options.duration.map(|d| started + d);
    let per_worker_rate = if options.rate > 0.0 {
        Some(options.rate / f64::from(workers))
    } else {
        None
    };
    let mut workers_futs = Vec::new();
    for w in 0..workers {
        let keys: Vec<i32> = (0..options.keys as i32)
            .filter(|k| (*k as u32) % workers == w)
            .collect();
        let existing = Arc::clone(&existing);
        let mut generator = Generator::new(
            options.seed.wrapping_add(u64::from(w)),
            options.mix,
            keys,
            move |k| existing.contains(&k),
        );
        let budget = options
            .events
            .map(|n| n / u64::from(workers) + u64::from(u64::from(w) < n % u64::from(workers)));
        let statements = &statements;
        let counters = Arc::clone(&counters);
        // Workers run concurrently on this task (I/O bound; no 'static session needed).
        workers_futs.push(async move {
            let mut latencies: Vec<u32> = Vec::new();
            let mut i: u64 = 0;
            let start = Instant::now();
            loop {
                if budget.is_some_and(|b| i >= b) || counters.stopped() {
                    break;
                }
                if let Some(rate) = per_worker_rate {
                    let at = start + Duration::from_secs_f64(i as f64 / rate);
                    if deadline.is_some_and(|d| at >= d) {
                        break;
                    }
                    tokio::time::sleep_until(at.into()).await;
                } else if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let Some(action) = generator.next_action() else {
                    break;
                };
                let t0 = Instant::now();
                let result = execute(session, statements, &action).await;
                let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
                let k = action.kind().index();
                match result {
                    Ok(()) => {
                        latencies.push(us);
                        counters.done[k].fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        generator.failed(&action);
                        counters.errors[k].fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
            }
            (latencies, generator.live_count() as u64)
        });
    }
    let mut latencies = Vec::new();
    let mut live_rows = 0;
    for (l, live) in futures::future::join_all(workers_futs).await {
        latencies.extend(l);
        live_rows += live;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let done = counters.done();
    let errors = [0, 1, 2].map(|i| counters.errors[i].load(Ordering::Relaxed));
    let total = done.iter().sum::<u64>() + errors.iter().sum::<u64>();
    Ok(LoadReport {
        keyspace: options.keyspace.clone(),
        table: options.table.clone(),
        mix: options.mix.to_string(),
        seed: options.seed,
        keys: options.keys,
        concurrency: workers,
        events: OpCounts::from(done),
        errors: OpCounts::from(errors),
        elapsed_secs: elapsed,
        target_rate: options.rate,
        achieved_rate: if elapsed > 0.0 {
            total as f64 / elapsed
        } else {
            0.0
        },
        latency: Latency {
            p50_ms: percentile_ms(&latencies, 0.50),
            p99_ms: percentile_ms(&latencies, 0.99),
            max_ms: latencies.last().map_or(0.0, |m| f64::from(*m) / 1_000.0),
        },
        live_rows,
        initial_rows,
        interrupted: counters.stopped(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_validates() {
        assert_eq!(
            "insert=60,update=30,delete=10".parse::<Mix>(),
            Ok(Mix::default())
        );
        assert_eq!(
            "insert=100".parse::<Mix>(),
            Ok(Mix {
                insert: 100,
                update: 0,
                delete: 0
            })
        );
        let e = "insert=60,update=30".parse::<Mix>().unwrap_err();
        assert!(e.contains("sum to 100, got 90"), "{e}");
        assert!(
            "insert=60,upsert=40"
                .parse::<Mix>()
                .unwrap_err()
                .contains("unknown operation `upsert`")
        );
        assert!(
            "insert=abc"
                .parse::<Mix>()
                .unwrap_err()
                .contains("integer 0-100")
        );
        assert!(
            "insert=50,insert=50"
                .parse::<Mix>()
                .unwrap_err()
                .contains("twice")
        );
        assert!("insert".parse::<Mix>().unwrap_err().contains("op=percent"));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn generator_tracks_live_keys() {
        let mut g = Generator::new(7, Mix::default(), (0..50).collect(), |_| false);
        let mut live = HashSet::new();
        let mut counts = [0u64; 3];
        for _ in 0..2_000 {
            let a = g.next_action().unwrap();
            counts[a.kind().index()] += 1;
            match &a {
                Action::Insert(p) => {
                    assert!(p.email.ends_with("@example.invalid"));
                    assert!(p.ssn.starts_with("000-"));
                    assert!(p.phone.starts_with("555-01"));
                    live.insert(p.id);
                }
                Action::Update { id, .. } => assert!(live.contains(id), "update of absent {id}"),
                Action::Delete { id } => assert!(live.remove(id), "delete of absent {id}"),
            }
        }
        assert_eq!(g.live_count(), live.len());
        assert!(counts.iter().all(|c| *c > 0), "{counts:?}");
        // Same seed, same sequence.
        let mut a = Generator::new(1, Mix::default(), (0..10).collect(), |k| k < 5);
        let mut b = Generator::new(1, Mix::default(), (0..10).collect(), |k| k < 5);
        for _ in 0..100 {
            let x = a.next_action().map(|x| (x.kind(), x.id()));
            assert_eq!(x, b.next_action().map(|x| (x.kind(), x.id())));
        }
    }

    #[test]
    fn failed_writes_restore_liveness() {
        let mut g = Generator::new(3, "insert=100".parse().unwrap(), vec![1], |_| false);
        let a = g.next_action().unwrap();
        assert!(g.is_live(1));
        g.failed(&a);
        assert!(!g.is_live(1));
        assert_eq!(g.live_count(), 0);
    }

    #[test]
    fn replication_and_ddl() {
        let [ks, t] = demo_table_cql("demo", "patients", &Replication::Simple { factor: 1 });
        assert!(ks.contains("'SimpleStrategy', 'replication_factor': 1"));
        assert!(t.ends_with("WITH cdc = true"));
        assert!(t.contains("\"id\" int PRIMARY KEY"));
        let nts = parse_network_topology("dc1:3, dc2:2").unwrap();
        assert_eq!(
            nts.cql(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
        );
        assert!(parse_network_topology("dc1").is_err());
    }

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile_ms(&v, 0.5), 50.0);
        assert_eq!(percentile_ms(&v, 0.99), 99.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
    }
}
