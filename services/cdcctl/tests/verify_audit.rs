//! `cdcctl verify` and `cdcctl audit` against the local stack (`make stack-up`); they fail, never
//! skip, without it.
//!
//! The destinations' expected state is put in place through the real sink code path: rows are
//! loaded into Cassandra with `cdcctl load`, read back, turned into INSERT change events, masked by
//! `cdc_mask::Masker` (the masker's code) and written with each adapter's
//! `Destination::write_batch` into PostgreSQL, TimescaleDB and ClickHouse. Then the tests corrupt
//! single rows and unmask single values and check that verify and audit name them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cdc_config::SecretString;
use cdc_mask::{KeyRing, Masker, Policy, PolicyContext};
use cdc_model::{
    CellChange, CellValue, ChangeEvent, ColumnKind, ColumnSchema, CqlType, CqlValue, KeyColumn,
    Liveness, Operation, SourceInfo, TableSchema,
};
use cdc_sink::clickhouse::{ClickHouseDestination, ClickHouseSettings};
use cdc_sink::postgres::{PgSettings, PostgresDestination};
use cdc_sink::timescaledb::{TimescaleOptions, timescale_destination};
use cdc_sink::{
    BatchEvent, ColumnDef, Destination, NextOffset, SourceOffset, TableBatch, TableShape,
    WriteOutcome,
};
use cdc_testkit::{StackEnv, unique_name};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::value::CqlTimestamp;
use serde_json::Value as Json;

const HMAC_KEY: &str = "fake-hmac-key-for-cdcctl-tests";
const TOKEN_KEY: &str = "fake-token-key-for-cdcctl-tests";
const VAULT_KEY: &str = "2b7e151628aed2a6abf7158809cf4f3c2b7e151628aed2a6abf7158809cf4f3c";
const TABLE: &str = "patients";

fn cdcctl(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cdcctl"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("cdcctl runs")
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json_of(o: &Output) -> Json {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(o)))
}

fn policy_yaml(ks: &str) -> String {
    format!(
        "version: 1\nhash_key_id: hmac-test\ntoken_key_id: tok-test\ndefault_rules: []\ntables:\n  {ks}.{TABLE}:\n    email: {{class: pii, strategy: hash}}\n    ssn: {{class: pii, strategy: hash}}\n    phone: {{class: pii, strategy: partial, keep_last: 2}}\n    medical_record_number: {{class: phi, strategy: tokenize}}\n    name: {{class: pii, strategy: redact, placeholder: \"[redacted]\"}}\n"
    )
}

/// A pipeline.yaml for the stack. The token vault URL points nowhere: verify and audit must
/// never need it.
fn config_yaml(env: &StackEnv, policy: &Path) -> String {
    format!(
        "cassandra:\n  contact_points: [\"{cql}\"]\nmasker:\n  policy_file: {policy}\n  keys:\n    hmac-test: plain:{HMAC_KEY}\n    tok-test: plain:{TOKEN_KEY}\n    vault-test: plain:{VAULT_KEY}\n  vault:\n    url: plain:postgres://nobody:nothing@127.0.0.1:1/none\n    schema: never_used\n    encryption_key_id: vault-test\nsinks:\n  postgres:\n    destination:\n      url: plain:{pg}\n      tls: disable\n  clickhouse:\n    destination:\n      url: {ch}\n  timescaledb:\n    destination:\n      url: plain:{ts}\n      tls: disable\n",
        cql = env.cassandra_cql,
        policy = policy.display(),
        pg = env.postgres_url,
        ch = env.clickhouse_url,
        ts = env.timescale_url,
    )
}

fn schema(ks: &str) -> TableSchema {
    let col = |name: &str, cql_type: CqlType, kind: ColumnKind| ColumnSchema {
        name: name.into(),
        cql_type,
        kind,
    };
    TableSchema {
        keyspace: ks.into(),
        table: TABLE.into(),
        id: uuid::Uuid::from_u128(7),
        cdc: true,
        version: 1,
        columns: vec![
            col("id", CqlType::Int, ColumnKind::PartitionKey { position: 0 }),
            col("admitted_at", CqlType::Timestamp, ColumnKind::Regular),
            col("age", CqlType::Int, ColumnKind::Regular),
            col("city", CqlType::Text, ColumnKind::Regular),
            col("email", CqlType::Text, ColumnKind::Regular),
            col("medical_record_number", CqlType::Text, ColumnKind::Regular),
            col("name", CqlType::Text, ColumnKind::Regular),
            col("phone", CqlType::Text, ColumnKind::Regular),
            col("ssn", CqlType::Text, ColumnKind::Regular),
        ],
        dropped_columns: vec![],
    }
}

fn masker(policy_text: &str) -> Masker {
    let mut keys = KeyRing::new();
    keys.insert("hmac-test", HMAC_KEY.as_bytes().to_vec());
    keys.insert("tok-test", TOKEN_KEY.as_bytes().to_vec());
    keys.insert("vault-test", VAULT_KEY.as_bytes().to_vec());
    let policy = Policy::parse(
        "policy.yaml",
        policy_text,
        PolicyContext {
            keys: &keys,
            vault_configured: true,
        },
    )
    .expect("policy parses");
    Masker::new(policy, keys, Some("vault-test".into())).expect("masker")
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// One Cassandra row of the demo table, typed.
type PatientRow = (
    i32,
    Option<CqlTimestamp>,
    Option<i32>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

async fn cassandra(env: &StackEnv) -> Session {
    SessionBuilder::new()
        .known_node(&env.cassandra_cql)
        .build()
        .await
        .expect("Cassandra answers (make stack-up)")
}

async fn read_rows(session: &Session, ks: &str) -> Vec<PatientRow> {
    let rows = session
        .query_unpaged(
            format!("SELECT id, admitted_at, age, city, email, medical_record_number, name, phone, ssn FROM {ks}.{TABLE}"),
            &[],
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    rows.rows::<PatientRow>()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn text(v: &Option<String>) -> Option<CqlValue> {
    v.clone().map(CqlValue::Text)
}

/// The INSERT event the capture stage would produce for a row, at writetime `wt`.
fn insert_event(ks: &str, row: &PatientRow, wt: i64) -> ChangeEvent {
    let values: Vec<(&str, Option<CqlValue>)> = vec![
        ("admitted_at", row.1.map(|t| CqlValue::Timestamp(t.0))),
        ("age", row.2.map(CqlValue::Int)),
        ("city", text(&row.3)),
        ("email", text(&row.4)),
        ("medical_record_number", text(&row.5)),
        ("name", text(&row.6)),
        ("phone", text(&row.7)),
        ("ssn", text(&row.8)),
    ];
    let source = SourceInfo {
        cluster: "test".into(),
        host_id: uuid::Uuid::nil(),
        keyspace: ks.into(),
        table: TABLE.into(),
        table_id: uuid::Uuid::from_u128(7),
        schema_version: 1,
        segment_id: 1,
        segment_position: row.0 as u32,
        index: 0,
    };
    ChangeEvent {
        correlation_id: source.correlation_id(),
        source,
        op: Operation::Insert,
        partition_key: vec![KeyColumn::new("id", CqlValue::Int(row.0))],
        clustering_key: vec![],
        is_static: false,
        liveness: Some(Liveness {
            writetime_micros: wt,
            ttl: None,
        }),
        deletion: None,
        cells: values
            .into_iter()
            .filter_map(|(c, v)| {
                v.map(|value| CellChange {
                    column: c.into(),
                    writetime_micros: wt,
                    ttl: None,
                    change: CellValue::Set { value },
                })
            })
            .collect(),
        captured_at_ms: 0,
    }
}

struct Sinks {
    pg: PostgresDestination,
    ts: PostgresDestination,
    ch: ClickHouseDestination,
    topic: String,
    next_offset: std::sync::atomic::AtomicI64,
}

impl Sinks {
    async fn new(env: &StackEnv, ks: &str) -> Sinks {
        let pg = PostgresDestination::new(&PgSettings::new(SecretString::from(
            env.postgres_url.clone(),
        )))
        .unwrap();
        let ts = timescale_destination(
            &PgSettings::new(SecretString::from(env.timescale_url.clone())),
            &TimescaleOptions::default(),
        )
        .unwrap();
        let ch =
            ClickHouseDestination::new(ClickHouseSettings::for_url(env.clickhouse_url.clone()));
        pg.check_health().await.expect("PostgreSQL answers");
        ts.check_health().await.expect("TimescaleDB answers");
        ch.check_health().await.expect("ClickHouse answers");
        Sinks {
            pg,
            ts,
            ch,
            topic: format!("cdc.masked.{ks}.{TABLE}"),
            next_offset: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// Masks `events` and writes them to the chosen destinations as one batch each.
    async fn write(
        &self,
        masker: &Masker,
        schema: &TableSchema,
        events: &[ChangeEvent],
        to: &[&str],
    ) {
        let masked: Vec<_> = events
            .iter()
            .map(|e| masker.mask_event(e, schema).expect("masks"))
            .collect();
        let shape = TableShape {
            keyspace: schema.keyspace.clone(),
            table: schema.table.clone(),
            dropped: Default::default(),
            columns: masked[0]
                .schema
                .columns
                .iter()
                .map(|c| ColumnDef {
                    name: c.name.clone(),
                    cql_type: c.cql_type.clone(),
                    kind: c.kind,
                })
                .collect(),
        };
        let first = self
            .next_offset
            .fetch_add(events.len() as i64, std::sync::atomic::Ordering::SeqCst);
        let batch = TableBatch {
            shape: shape.clone(),
            events: masked
                .into_iter()
                .enumerate()
                .map(|(i, m)| BatchEvent {
                    event: m.event,
                    source: SourceOffset {
                        topic: self.topic.clone(),
                        partition: 0,
                        offset: first + i as i64,
                    },
                    payload_bytes: 100,
                })
                .collect(),
            next_offsets: vec![NextOffset {
                topic: self.topic.clone(),
                partition: 0,
                next_offset: first + events.len() as i64,
            }],
        };
        let group = "cdcctl-test";
        for name in to {
            let outcome = match *name {
                "postgres" => {
                    self.pg.prepare_table(&shape).await.unwrap();
                    self.pg.write_batch(group, &batch).await.unwrap()
                }
                "timescaledb" => {
                    self.ts.prepare_table(&shape).await.unwrap();
                    self.ts.write_batch(group, &batch).await.unwrap()
                }
                "clickhouse" => {
                    self.ch.prepare_table(&shape).await.unwrap();
                    self.ch.write_batch(group, &batch).await.unwrap()
                }
                other => panic!("unknown destination {other}"),
            };
            assert!(
                matches!(outcome, WriteOutcome::Written { .. }),
                "{name}: {outcome:?}"
            );
        }
    }
}

async fn pg_exec(url: &str, sql: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL answers");
    let handle = tokio::spawn(conn);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = handle.await;
}

fn result<'a>(report: &'a Json, destination: &str) -> &'a Json {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["destination"] == destination)
        .unwrap_or_else(|| panic!("no result for {destination}: {report}"))
}

fn counts(r: &Json) -> [u64; 4] {
    ["missing", "extra", "stale", "duplicate"].map(|k| r[k].as_u64().unwrap())
}

struct Setup {
    env: StackEnv,
    ks: String,
    _dir: tempfile::TempDir,
    config: PathBuf,
    masker: Masker,
    schema: TableSchema,
    rows: Vec<PatientRow>,
    sinks: Sinks,
}

/// A keyspace with 40 fake rows loaded by `cdcctl load`, the config and the sinks.
async fn setup(prefix: &str) -> Setup {
    let env = StackEnv::load();
    let ks = unique_name(prefix);
    let dir = tempfile::tempdir().unwrap();
    let policy_path = dir.path().join("policy.yaml");
    let policy_text = policy_yaml(&ks);
    std::fs::write(&policy_path, &policy_text).unwrap();
    let config = dir.path().join("pipeline.yaml");
    std::fs::write(&config, config_yaml(&env, &policy_path)).unwrap();
    let load = cdcctl(
        &config,
        &[
            "load",
            "--keyspace",
            &ks,
            "--table",
            TABLE,
            "--create-schema",
            "--events",
            "40",
            "--rate",
            "0",
            "--mix",
            "insert=100",
            "--keys",
            "40",
            "--json",
        ],
    );
    assert_eq!(load.status.code(), Some(0), "{}", show(&load));
    let session = cassandra(&env).await;
    let rows = read_rows(&session, &ks).await;
    assert_eq!(rows.len(), 40, "cdcctl load wrote 40 distinct keys");
    let sinks = Sinks::new(&env, &ks).await;
    Setup {
        masker: masker(&policy_text),
        schema: schema(&ks),
        env,
        ks,
        _dir: dir,
        config,
        rows,
        sinks,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_audit_find_corrupted_and_unmasked_rows() {
    let s = setup("vfy").await;
    let wt = now_us();
    let events: Vec<ChangeEvent> = s.rows.iter().map(|r| insert_event(&s.ks, r, wt)).collect();
    s.sinks
        .write(
            &s.masker,
            &s.schema,
            &events,
            &["postgres", "timescaledb", "clickhouse"],
        )
        .await;

    // Clean: every destination holds exactly the masked Cassandra rows.
    let out = cdcctl(&s.config, &["verify", "--keyspace", &s.ks, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report = json_of(&out);
    assert_eq!(report["clean"], true);
    for d in ["postgres", "timescaledb", "clickhouse"] {
        let r = result(&report, d);
        assert_eq!(r["cassandra_rows"], 40, "{r}");
        assert_eq!(r["destination_rows"], 40, "{r}");
        assert_eq!(counts(r), [0, 0, 0, 0], "{r}");
        assert_eq!(r["mode"], "rows");
    }
    // The same through token-range digests (row limit below the table size).
    let out = cdcctl(
        &s.config,
        &[
            "verify",
            "--keyspace",
            &s.ks,
            "--row-limit",
            "10",
            "--ranges",
            "8",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report = json_of(&out);
    for d in ["postgres", "timescaledb", "clickhouse"] {
        let r = result(&report, d);
        assert_eq!(r["mode"], "ranges", "{r}");
        assert_eq!(r["bucketing"], "token", "{r}");
    }

    let audit = cdcctl(&s.config, &["audit", "--keyspace", &s.ks, "--json"]);
    assert_eq!(audit.status.code(), Some(0), "{}", show(&audit));
    let a = json_of(&audit);
    assert_eq!(a["findings"].as_array().unwrap().len(), 0, "{a}");
    assert_eq!(a["tables"].as_array().unwrap().len(), 3, "{a}");
    assert_eq!(
        a["classified_columns"], 15,
        "5 classified columns x 3 destinations: {a}"
    );

    // Corrupt one row per destination, each in a different way.
    let ids: Vec<i32> = s.rows.iter().map(|r| r.0).collect();
    let (stale_id, missing_id) = (ids[0], ids[1]);
    pg_exec(
        &s.env.postgres_url,
        &format!(
            "UPDATE \"{}\".\"{TABLE}_state\" SET city = 'Nowhere' WHERE id = {stale_id}",
            s.ks
        ),
    )
    .await;
    pg_exec(
        &s.env.timescale_url,
        &format!(
            "DELETE FROM \"{}\".\"{TABLE}_state\" WHERE id = {missing_id}",
            s.ks
        ),
    )
    .await;
    let mut extra = s.rows[2].clone();
    extra.0 = 1_000_000;
    s.sinks
        .write(
            &s.masker,
            &s.schema,
            &[insert_event(&s.ks, &extra, now_us())],
            &["clickhouse"],
        )
        .await;

    let out = cdcctl(&s.config, &["verify", "--keyspace", &s.ks, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = json_of(&out);
    assert_eq!(report["clean"], false);
    let pg = result(&report, "postgres");
    assert_eq!(counts(pg), [0, 0, 1, 0], "{pg}");
    assert_eq!(pg["details"][0]["kind"], "stale");
    assert_eq!(pg["details"][0]["key"], format!("[\"{stale_id}\"]"));
    assert_eq!(pg["details"][0]["columns"], serde_json::json!(["city"]));
    let ts = result(&report, "timescaledb");
    assert_eq!(counts(ts), [1, 0, 0, 0], "{ts}");
    assert_eq!(ts["details"][0]["kind"], "missing");
    assert_eq!(ts["details"][0]["key"], format!("[\"{missing_id}\"]"));
    let ch = result(&report, "clickhouse");
    assert_eq!(counts(ch), [0, 1, 0, 0], "{ch}");
    assert_eq!(ch["details"][0]["kind"], "extra");
    assert_eq!(ch["details"][0]["key"], "[\"1000000\"]");
    assert_eq!(ch["destination_rows"], 41);

    // The same differences found through token ranges (drill-down into the differing ranges).
    let out = cdcctl(
        &s.config,
        &[
            "verify",
            "--keyspace",
            &s.ks,
            "--row-limit",
            "10",
            "--ranges",
            "16",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = json_of(&out);
    assert_eq!(
        counts(result(&report, "postgres")),
        [0, 0, 1, 0],
        "{report}"
    );
    assert_eq!(
        counts(result(&report, "timescaledb")),
        [1, 0, 0, 0],
        "{report}"
    );
    assert_eq!(
        counts(result(&report, "clickhouse")),
        [0, 1, 0, 0],
        "{report}"
    );
    for d in ["postgres", "timescaledb", "clickhouse"] {
        assert_eq!(
            result(&report, d)["differing_ranges"]
                .as_array()
                .unwrap()
                .len(),
            1,
            "{report}"
        );
    }

    // The human output names the difference kinds, never a value.
    let out = cdcctl(&s.config, &["verify", "--keyspace", &s.ks]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "postgres {}.{TABLE}: stale [\"{stale_id}\"] (columns: city)",
            s.ks
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "timescaledb {}.{TABLE}: missing [\"{missing_id}\"]",
            s.ks
        )),
        "{stdout}"
    );
    assert!(stdout.contains("DIFFERENCES"), "{stdout}");
    assert!(
        !stdout.contains("Nowhere") && !stdout.contains("example.invalid"),
        "{stdout}"
    );

    // Unmask values: a fake SSN in a classified column (PostgreSQL) and a fake email in an
    // unclassified one (ClickHouse, written through the adapter as a masked event would be).
    let ssn = "000-12-3456";
    let leak = "fake.leak@example.invalid";
    pg_exec(
        &s.env.postgres_url,
        &format!(
            "UPDATE \"{}\".\"{TABLE}_state\" SET ssn = '{ssn}' WHERE id = {}",
            s.ks, ids[3]
        ),
    )
    .await;
    let mut leaky = s.rows[4].clone();
    leaky.3 = Some(leak.to_owned());
    s.sinks
        .write(
            &s.masker,
            &s.schema,
            &[insert_event(&s.ks, &leaky, now_us())],
            &["clickhouse"],
        )
        .await;

    let audit = cdcctl(&s.config, &["audit", "--keyspace", &s.ks, "--json"]);
    assert_eq!(audit.status.code(), Some(1), "{}", show(&audit));
    let text = String::from_utf8_lossy(&audit.stdout).into_owned();
    assert!(
        !text.contains(ssn) && !text.contains(leak),
        "a value leaked: {text}"
    );
    let a = json_of(&audit);
    let findings = a["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{a}");
    let find = |d: &str| {
        findings
            .iter()
            .find(|f| f["destination"] == d)
            .unwrap_or_else(|| panic!("{a}"))
    };
    let f = find("postgres");
    assert_eq!(f["table"], format!("{}.{TABLE}", s.ks));
    assert_eq!(f["column"], "ssn");
    assert_eq!(f["class"], "classified");
    assert_eq!(f["pattern"], "unmasked:hash");
    assert_eq!(f["count"], 1);
    assert!(
        f["sample_keys"][0].as_str().unwrap().starts_with("key#"),
        "{f}"
    );
    let f = find("clickhouse");
    assert_eq!(f["column"], "city");
    assert_eq!(f["class"], "unclassified");
    assert_eq!(f["pattern"], "email");
    assert_eq!(f["count"], 1);

    let human = cdcctl(&s.config, &["audit", "--keyspace", &s.ks]);
    assert_eq!(human.status.code(), Some(1), "{}", show(&human));
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        !text.contains(ssn) && !text.contains(leak),
        "a value leaked: {text}"
    );
    assert!(
        text.contains(&format!(
            "FINDING postgres {}.{TABLE} column ssn (classified): unmasked:hash in 1 row(s)",
            s.ks
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "FINDING clickhouse {}.{TABLE} column city (unclassified): email in 1 row(s)",
            s.ks
        )),
        "{text}"
    );
    // Verify now also sees the unmasked SSN as a stale row (compared through the masking).
    let out = cdcctl(
        &s.config,
        &[
            "verify",
            "--keyspace",
            &s.ks,
            "--destination",
            "postgres",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = json_of(&out);
    assert_eq!(
        counts(result(&report, "postgres")),
        [0, 0, 2, 0],
        "{report}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(ssn));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_waits_for_a_destination_to_catch_up() {
    let s = setup("vfw").await;
    let wt = now_us();
    let events: Vec<ChangeEvent> = s.rows.iter().map(|r| insert_event(&s.ks, r, wt)).collect();
    // Half the rows now, the rest while verify is waiting.
    s.sinks
        .write(&s.masker, &s.schema, &events[..20], &["postgres"])
        .await;
    let config = s.config.clone();
    let ks = s.ks.clone();
    let waiting = tokio::task::spawn_blocking(move || {
        cdcctl(
            &config,
            &[
                "verify",
                "--keyspace",
                &ks,
                "--destination",
                "postgres",
                "--wait",
                "60s",
                "--json",
            ],
        )
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    s.sinks
        .write(&s.masker, &s.schema, &events[20..], &["postgres"])
        .await;
    let out = waiting.await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report = json_of(&out);
    assert_eq!(report["clean"], true);
    assert!(report["attempts"].as_u64().unwrap() >= 2, "{report}");
    assert_eq!(report["destinations"], serde_json::json!(["postgres"]));

    // Without --wait a missing view is reported at once, as missing rows.
    let out = cdcctl(
        &s.config,
        &[
            "verify",
            "--keyspace",
            &s.ks,
            "--destination",
            "clickhouse",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let r = json_of(&out);
    assert_eq!(counts(result(&r, "clickhouse")), [40, 0, 0, 0], "{r}");

    // A destination that is not configured is an error (exit 2) naming the key.
    let dir = tempfile::tempdir().unwrap();
    let only_pg = dir.path().join("pg.yaml");
    let text = std::fs::read_to_string(&s.config).unwrap();
    let cut = text.find("  clickhouse:").unwrap();
    std::fs::write(&only_pg, &text[..cut]).unwrap();
    let out = cdcctl(&only_pg, &["verify", "--destination", "clickhouse"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sinks.clickhouse is not configured"),
        "{}",
        show(&out)
    );
}

/// `cdcctl::token` agrees with Cassandra's `token()` on many keys of several types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn murmur3_tokens_match_cassandra() {
    let env = StackEnv::load();
    let session = cassandra(&env).await;
    let ks = unique_name("tok");
    session
        .query_unpaged(
            format!("CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"),
            &[],
        )
        .await
        .unwrap();
    session
        .query_unpaged(format!("CREATE TABLE {ks}.t (k text PRIMARY KEY)"), &[])
        .await
        .unwrap();
    session
        .query_unpaged(format!("CREATE TABLE {ks}.b (k bigint PRIMARY KEY)"), &[])
        .await
        .unwrap();
    session
        .query_unpaged(
            format!("CREATE TABLE {ks}.c (a int, b text, u uuid, PRIMARY KEY ((a, b, u)))"),
            &[],
        )
        .await
        .unwrap();
    let mut texts = Vec::new();
    for i in 0..200u32 {
        // Lengths 1..60 cover every tail length; some keys end in multi-byte characters.
        let len = (i % 60) as usize + 1;
        let mut k: String = (0..len)
            .map(|j| char::from(b'a' + ((i as usize * 7 + j) % 26) as u8))
            .collect();
        if i % 3 == 0 {
            k.push('é');
        }
        texts.push(k);
    }
    for k in &texts {
        session
            .query_unpaged(format!("INSERT INTO {ks}.t (k) VALUES (?)"), (k,))
            .await
            .unwrap();
    }
    for i in 0..100i64 {
        let k = i.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as i64);
        session
            .query_unpaged(format!("INSERT INTO {ks}.b (k) VALUES (?)"), (k,))
            .await
            .unwrap();
        let u = uuid::Uuid::from_u128(i as u128 * 0x1234_5678_9abc_def1);
        session
            .query_unpaged(
                format!("INSERT INTO {ks}.c (a, b, u) VALUES (?, ?, ?)"),
                (i as i32, format!("b{i}"), u),
            )
            .await
            .unwrap();
    }
    let rows = session
        .query_unpaged(format!("SELECT k, token(k) FROM {ks}.t"), &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let mut checked = 0;
    for r in rows.rows::<(String, i64)>().unwrap() {
        let (k, t) = r.unwrap();
        let mine =
            cdcctl::token::token_of(&[(&CqlType::Text, &CqlValue::Text(k.clone()))]).unwrap();
        assert_eq!(mine, t, "text key {k:?}");
        checked += 1;
    }
    assert_eq!(checked, texts.len());
    let rows = session
        .query_unpaged(format!("SELECT k, token(k) FROM {ks}.b"), &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    for r in rows.rows::<(i64, i64)>().unwrap() {
        let (k, t) = r.unwrap();
        assert_eq!(
            cdcctl::token::token_of(&[(&CqlType::Bigint, &CqlValue::Bigint(k))]).unwrap(),
            t
        );
    }
    let rows = session
        .query_unpaged(format!("SELECT a, b, u, token(a, b, u) FROM {ks}.c"), &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let mut n = 0;
    for r in rows.rows::<(i32, String, uuid::Uuid, i64)>().unwrap() {
        let (a, b, u, t) = r.unwrap();
        let mine = cdcctl::token::token_of(&[
            (&CqlType::Int, &CqlValue::Int(a)),
            (&CqlType::Text, &CqlValue::Text(b)),
            (&CqlType::Uuid, &CqlValue::Uuid(u)),
        ])
        .unwrap();
        assert_eq!(mine, t, "composite key {a}");
        n += 1;
    }
    assert_eq!(n, 100);
    session
        .query_unpaged(format!("DROP KEYSPACE {ks}"), &[])
        .await
        .unwrap();
}
