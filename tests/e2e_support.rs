//! Shared by the end-to-end test binaries (`e2e_us1`, `e2e_us2`, `e2e_sc001`): the fake patients
//! table, a writer with explicit, strictly increasing write timestamps (so the expected final state
//! is known whatever order Cassandra and the pipeline see the writes in), the model of what each
//! destination must hold, and the checks: direct queries of the three warehouses plus
//! `cdcctl verify` / `cdcctl audit` of the pipeline's configuration.
//!
//! Every test owns its keyspace and its `RunningPipeline` (`cdc_testkit::pipeline`).

#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cdc_model::CqlValue;
use cdc_testkit::pipeline::{FAKE_HASH_KEY, FAKE_TOKEN_KEY, policy_header};
use cdc_testkit::{Destination, RunningPipeline, StackEnv, Warehouses};
use futures::StreamExt;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;

/// The table every e2e test writes (the columns of `cdcctl load`'s demo table).
pub const TABLE: &str = "patients";

/// How long the pipeline may take to converge after the last write.
pub const CONVERGE: Duration = Duration::from_secs(180);

/// Writes in flight at once.
const CONCURRENCY: usize = 32;

pub async fn cassandra(env: &StackEnv) -> Session {
    SessionBuilder::new()
        .known_node(&env.cassandra_cql)
        .connection_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to Cassandra at {}: {e}", env.cassandra_cql))
}

async fn cql(session: &Session, q: &str) {
    session
        .query_unpaged(q, &[])
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"));
}

/// Creates keyspace `ks` and `ks.patients` WITH cdc = true.
pub async fn create_schema(session: &Session, ks: &str) {
    cql(
        session,
        &format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
             {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        ),
    )
    .await;
    cql(
        session,
        &format!(
            "CREATE TABLE IF NOT EXISTS {ks}.{TABLE} (id int PRIMARY KEY, email text, ssn text, \
             phone text, medical_record_number text, name text, city text, age int, \
             admitted_at timestamp) WITH cdc = true"
        ),
    )
    .await;
    session
        .await_schema_agreement()
        .await
        .unwrap_or_else(|e| panic!("schema agreement: {e}"));
}

/// Masking policy version `version` for `ks.patients`: email and ssn hashed, phone partial (last
/// 4 kept), medical_record_number tokenized; `name`, `city`, `age`, `admitted_at` readable. With
/// `name_hashed`, `name` is classified too (the "add a PII field" policy change).
pub fn policy(ks: &str, version: u64, name_hashed: bool) -> String {
    let mut p = format!(
        "{}tables:\n  {ks}.{TABLE}:\n    \
         email: {{class: pii, strategy: hash}}\n    \
         ssn: {{class: pii, strategy: hash}}\n    \
         phone: {{class: pii, strategy: partial, keep_last: 4}}\n    \
         medical_record_number: {{class: phi, strategy: tokenize}}\n",
        policy_header(version)
    );
    if name_hashed {
        p.push_str("    name: {class: pii, strategy: hash}\n");
    }
    p
}

/// One fake patient row (every value obviously fake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patient {
    pub id: i32,
    pub email: String,
    pub ssn: String,
    pub phone: String,
    pub mrn: String,
    pub name: String,
    pub city: String,
    pub age: i32,
    pub admitted_at_ms: i64,
}

impl Patient {
    /// Row `id` in its `generation` (values differ per generation).
    pub fn fake(id: i32, generation: u32) -> Patient {
        Patient {
            id,
            email: format!("fake.user{id}.g{generation}@example.invalid"),
            ssn: format!("000-{:02}-{:04}", generation % 100, id % 10_000),
            phone: format!("555-01{:02}-{id:05}", generation % 100),
            mrn: format!("MRN-FAKE-{id:06}-{generation}"),
            name: format!("Fake Person {id}"),
            city: format!("Testville {}", id % 17),
            age: 20 + (id % 60),
            admitted_at_ms: 1_700_000_000_000 + i64::from(id) * 1000 + i64::from(generation),
        }
    }

    /// The plaintext values that must never reach a warehouse.
    pub fn pii(&self) -> [&str; 4] {
        [&self.email, &self.ssn, &self.phone, &self.mrn]
    }
}

/// Columns read back from a destination, in the order of [`expected_row`].
pub fn columns(d: Destination) -> Vec<&'static str> {
    let admitted = match d {
        Destination::Clickhouse => "toUnixTimestamp64Milli(admitted_at)",
        _ => "(extract(epoch from admitted_at) * 1000)::bigint",
    };
    vec![
        "id",
        "email",
        "ssn",
        "phone",
        "medical_record_number",
        "name",
        "city",
        "age",
        admitted,
    ]
}

pub fn hashed(v: &str) -> String {
    cdc_mask::strategy::hash(FAKE_HASH_KEY.as_bytes(), v.as_bytes())
}

pub fn tokenized(v: &str) -> String {
    cdc_mask::strategy::token(FAKE_TOKEN_KEY.as_bytes(), v.as_bytes()).0
}

pub fn partial4(v: &str) -> String {
    cdc_mask::strategy::partial(&CqlValue::Text(v.to_owned()), 4)
}

/// What a destination must hold for `p`, masked per [`policy`] (`name_hashed` as there).
pub fn expected_row(p: &Patient, name_hashed: bool) -> Vec<Option<String>> {
    [
        p.id.to_string(),
        hashed(&p.email),
        hashed(&p.ssn),
        partial4(&p.phone),
        tokenized(&p.mrn),
        if name_hashed {
            hashed(&p.name)
        } else {
            p.name.clone()
        },
        p.city.clone(),
        p.age.to_string(),
        p.admitted_at_ms.to_string(),
    ]
    .into_iter()
    .map(Some)
    .collect()
}

/// Expected state of `ks.patients`: id → (row, whether `name` was masked when it was written).
#[derive(Debug, Default, Clone)]
pub struct Model {
    pub rows: BTreeMap<i32, (Patient, bool)>,
}

impl Model {
    pub fn expected(&self) -> Vec<Vec<Option<String>>> {
        self.rows
            .values()
            .map(|(p, masked)| expected_row(p, *masked))
            .collect()
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One write to Cassandra.
#[derive(Debug, Clone)]
pub enum Op {
    /// INSERT of every column.
    Insert(Patient),
    /// UPDATE of email, city and age of a live row.
    Update {
        id: i32,
        email: String,
        city: String,
        age: i32,
    },
    /// Row DELETE.
    Delete(i32),
}

/// Writes with explicit `USING TIMESTAMP` values from one strictly increasing clock, and keeps the
/// model of the resulting state. Ops are stamped in the order given, so the model applies them in
/// that order whatever order they reach Cassandra in.
#[derive(Clone)]
pub struct Writer {
    session: Arc<Session>,
    insert: PreparedStatement,
    update: PreparedStatement,
    delete: PreparedStatement,
    clock: Arc<AtomicI64>,
}

impl Writer {
    pub async fn new(session: Arc<Session>, ks: &str) -> Writer {
        let prepare = |q: String| {
            let session = Arc::clone(&session);
            async move {
                session
                    .prepare(q.clone())
                    .await
                    .unwrap_or_else(|e| panic!("prepare {q}: {e}"))
            }
        };
        let insert = prepare(format!(
            "INSERT INTO {ks}.{TABLE} (id, email, ssn, phone, medical_record_number, name, city, \
             age, admitted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
        ))
        .await;
        let update = prepare(format!(
            "UPDATE {ks}.{TABLE} USING TIMESTAMP ? SET email = ?, city = ?, age = ? WHERE id = ?"
        ))
        .await;
        let delete = prepare(format!(
            "DELETE FROM {ks}.{TABLE} USING TIMESTAMP ? WHERE id = ?"
        ))
        .await;
        Writer {
            session,
            insert,
            update,
            delete,
            clock: Arc::new(AtomicI64::new(now_micros())),
        }
    }

    /// Applies `ops` to the model (in order) and writes them, `CONCURRENCY` at a time.
    pub async fn write(&self, model: &mut Model, name_masked: bool, ops: Vec<Op>) {
        let mut stamped = Vec::with_capacity(ops.len());
        for op in ops {
            let ts = self.clock.fetch_add(1, Ordering::SeqCst) + 1;
            match &op {
                Op::Insert(p) => {
                    model.rows.insert(p.id, (p.clone(), name_masked));
                }
                Op::Update {
                    id,
                    email,
                    city,
                    age,
                } => {
                    let (row, _) = model
                        .rows
                        .get_mut(id)
                        .unwrap_or_else(|| panic!("test bug: update of missing row {id}"));
                    row.email = email.clone();
                    row.city = city.clone();
                    row.age = *age;
                }
                Op::Delete(id) => {
                    model.rows.remove(id);
                }
            }
            stamped.push((ts, op));
        }
        futures::stream::iter(stamped)
            .map(|(ts, op)| self.execute(ts, op))
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
    }

    async fn execute(&self, ts: i64, op: Op) {
        let result = match &op {
            Op::Insert(p) => {
                self.session
                    .execute_unpaged(
                        &self.insert,
                        (
                            p.id,
                            p.email.as_str(),
                            p.ssn.as_str(),
                            p.phone.as_str(),
                            p.mrn.as_str(),
                            p.name.as_str(),
                            p.city.as_str(),
                            p.age,
                            CqlTimestamp(p.admitted_at_ms),
                            ts,
                        ),
                    )
                    .await
            }
            Op::Update {
                id,
                email,
                city,
                age,
            } => {
                self.session
                    .execute_unpaged(&self.update, (ts, email.as_str(), city.as_str(), *age, *id))
                    .await
            }
            Op::Delete(id) => self.session.execute_unpaged(&self.delete, (ts, *id)).await,
        };
        if let Err(e) = result {
            panic!("Cassandra write failed: {e}");
        }
    }
}

/// An update of row `id` to generation `generation`'s email and city.
pub fn update(id: i32, generation: u32) -> Op {
    let p = Patient::fake(id, generation);
    Op::Update {
        id,
        email: p.email,
        city: format!("Updated City {generation}"),
        age: 100 + (id % 20),
    }
}

/// Rows of `ks.patients` in `d`, ordered by id (`Err` while the relation does not exist).
pub async fn read_rows(
    wh: &Warehouses,
    d: Destination,
    ks: &str,
) -> Result<Vec<Vec<Option<String>>>, String> {
    wh.rows(d, ks, TABLE, &columns(d), "id").await
}

/// A short description of how `actual` differs from `expected` (ids and column names only).
pub fn describe_diff(expected: &[Vec<Option<String>>], actual: &[Vec<Option<String>>]) -> String {
    let key = |r: &Vec<Option<String>>| r.first().cloned().flatten().unwrap_or_default();
    let exp: BTreeMap<String, &Vec<Option<String>>> =
        expected.iter().map(|r| (key(r), r)).collect();
    let mut act: BTreeMap<String, Vec<&Vec<Option<String>>>> = BTreeMap::new();
    for r in actual {
        act.entry(key(r)).or_default().push(r);
    }
    let names = columns(Destination::Postgres);
    let missing: Vec<&String> = exp.keys().filter(|k| !act.contains_key(*k)).collect();
    let extra: Vec<&String> = act.keys().filter(|k| !exp.contains_key(*k)).collect();
    let dup: Vec<&String> = act
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(k, _)| k)
        .collect();
    let mut stale = Vec::new();
    for (k, e) in &exp {
        if let Some(a) = act.get(k).and_then(|v| v.first()) {
            let cols: Vec<&str> = e
                .iter()
                .zip(a.iter())
                .zip(&names)
                .filter(|((x, y), _)| x != y)
                .map(|(_, n)| *n)
                .collect();
            if !cols.is_empty() {
                stale.push(format!("{k}:{}", cols.join("+")));
            }
        }
    }
    let head = |v: Vec<String>| v.into_iter().take(10).collect::<Vec<_>>().join(", ");
    format!(
        "{} rows expected, {} present; missing {} [{}]; extra {} [{}]; duplicated {} [{}]; stale {} [{}]",
        expected.len(),
        actual.len(),
        missing.len(),
        head(missing.into_iter().cloned().collect()),
        extra.len(),
        head(extra.into_iter().cloned().collect()),
        dup.len(),
        head(dup.into_iter().cloned().collect()),
        stale.len(),
        head(stale),
    )
}

/// Polls the three destinations until each holds exactly the model's rows (masked values
/// included), for at most [`CONVERGE`]. Panics with the differences and the sinks' log tails.
pub async fn await_model(pipeline: &RunningPipeline, wh: &Warehouses, ks: &str, model: &Model) {
    let expected = model.expected();
    let started = Instant::now();
    let mut pending: Vec<Destination> = Destination::ALL.to_vec();
    let mut last: BTreeMap<Destination, String> = BTreeMap::new();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for d in pending {
            match read_rows(wh, d, ks).await {
                Ok(rows) if rows == expected => {}
                Ok(rows) => {
                    last.insert(d, describe_diff(&expected, &rows));
                    still.push(d);
                }
                Err(e) => {
                    last.insert(d, e);
                    still.push(d);
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if started.elapsed() > CONVERGE {
            let detail: Vec<String> = pending
                .iter()
                .map(|d| {
                    format!(
                        "{d}: {}\n--- {} log tail ---\n{}",
                        last.get(d).map_or("", String::as_str),
                        d.service(),
                        pipeline.log_tail(d.service(), 15)
                    )
                })
                .collect();
            panic!(
                "destinations did not converge to the expected {} rows of {ks}.{TABLE} within \
                 {CONVERGE:?}:\n{}\n--- masker log tail ---\n{}\n--- capture log tail ---\n{}",
                expected.len(),
                detail.join("\n"),
                pipeline.log_tail(cdc_testkit::Service::Masker, 15),
                pipeline.log_tail(cdc_testkit::Service::Capture, 15),
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "{ks}: {} rows identical in PostgreSQL, ClickHouse and TimescaleDB after {:.1}s",
        expected.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Runs a `cdcctl` command of the pipeline; returns (exit code, stdout, stderr).
pub async fn cdcctl(pipeline: &RunningPipeline, args: &[&str]) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::from(pipeline.cdcctl());
    cmd.args(args);
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run cdcctl {args:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `cdcctl verify --keyspace ks --wait 120s --json` must exit 0 (clean in every destination).
pub async fn assert_verify_clean(pipeline: &RunningPipeline, ks: &str) {
    let started = Instant::now();
    let (code, stdout, stderr) = cdcctl(
        pipeline,
        &["verify", "--keyspace", ks, "--wait", "120s", "--json"],
    )
    .await;
    assert_eq!(
        code, 0,
        "cdcctl verify of {ks} is not clean (exit {code}):\n{stdout}\n{stderr}"
    );
    eprintln!(
        "{ks}: cdcctl verify clean in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// `cdcctl audit --keyspace ks --json`: exit code and the JSON report.
pub async fn audit(pipeline: &RunningPipeline, ks: &str) -> (i32, serde_json::Value, String) {
    let (code, stdout, stderr) = cdcctl(pipeline, &["audit", "--keyspace", ks, "--json"]).await;
    let report = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (code, report, format!("{stdout}\n{stderr}"))
}
