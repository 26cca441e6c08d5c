//! The local stack answers as the pipeline expects (`make stack-up` first; these tests never skip).
//!
//! One test per promise of the foundation issue: Cassandra 5.0 with CDC writing `cdc_raw`, TimescaleDB with
//! hypertables, the PostgreSQL warehouse, the ClickHouse front speaking the HTTP interface to the
//! `clickhouse` crate (ReplacingMergeTree + FINAL, errors with codes), and the schema registry.
//! Kafka transactions are tested in `crates/cdc-kafka/tests/`.

use std::path::Path;
use std::time::{Duration, Instant};

use cdc_testkit::{StackEnv, unique_name};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

async fn cassandra(env: &StackEnv) -> Session {
    SessionBuilder::new()
        .known_node(&env.cassandra_cql)
        .connection_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to Cassandra at {}: {e}", env.cassandra_cql))
}

#[tokio::test]
async fn cassandra_answers_cql_and_is_release_5_0() {
    let env = StackEnv::load();
    let session = cassandra(&env).await;
    let rows = session
        .query_unpaged("SELECT release_version FROM system.local", &[])
        .await
        .expect("query system.local")
        .into_rows_result()
        .expect("rows");
    let (release,): (String,) = rows.first_row().expect("one row");
    assert!(
        release.starts_with("5.0."),
        "expected Cassandra 5.0.x, got {release}"
    );
}

/// Largest offset recorded in any `*_cdc.idx` file of `cdc_raw`, with the number of idx files.
fn cdc_idx_state(cdc_raw: &Path) -> (u64, usize) {
    let mut max = 0;
    let mut count = 0;
    for entry in std::fs::read_dir(cdc_raw)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", cdc_raw.display()))
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("CommitLog-") && name.ends_with("_cdc.idx")) {
            continue;
        }
        count += 1;
        // The idx is rewritten in place without a rename: an empty or partial read is retried later.
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if let Some(offset) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u64>().ok())
        {
            // A segment is identified by its id; offsets of different segments are not comparable,
            // so fold the id into the high bits: a newer segment always counts as "further".
            let id: u64 = name
                .trim_end_matches("_cdc.idx")
                .rsplit('-')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            max = max.max((id << 32) | offset);
        }
    }
    (max, count)
}

async fn wait_for_idx_growth(cdc_raw: &Path, before: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (now, _) = cdc_idx_state(cdc_raw);
        if now > before {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "no _cdc.idx in {} advanced within 30 s of CDC writes",
            cdc_raw.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn cdc_table_writes_land_in_cdc_raw_with_a_growing_idx() {
    let env = StackEnv::load();
    let session = cassandra(&env).await;
    let ks = unique_name("stack");
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
            ),
            &[],
        )
        .await
        .expect("create keyspace");
    session
        .query_unpaged(
            format!("CREATE TABLE {ks}.events (id int PRIMARY KEY, note text) WITH cdc = true"),
            &[],
        )
        .await
        .expect("create cdc table");

    let (before, _) = cdc_idx_state(&env.cassandra_cdc_raw);
    let insert = session
        .prepare(format!("INSERT INTO {ks}.events (id, note) VALUES (?, ?)"))
        .await
        .expect("prepare");
    for id in 0..200 {
        session
            .execute_unpaged(&insert, (id, "fake note for the stack test"))
            .await
            .expect("insert");
    }
    let first = wait_for_idx_growth(&env.cassandra_cdc_raw, before).await;

    // Every idx has its segment beside it.
    let (_, idx_files) = cdc_idx_state(&env.cassandra_cdc_raw);
    assert!(idx_files > 0);
    for entry in std::fs::read_dir(&env.cassandra_cdc_raw)
        .expect("list cdc_raw")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix("_cdc.idx") {
            let log = env.cassandra_cdc_raw.join(format!("{stem}.log"));
            assert!(log.exists(), "{name} has no {stem}.log beside it");
        }
    }

    for id in 200..400 {
        session
            .execute_unpaged(&insert, (id, "more fake notes"))
            .await
            .expect("insert");
    }
    let second = wait_for_idx_growth(&env.cassandra_cdc_raw, first).await;
    assert!(second > first);

    session
        .query_unpaged(format!("DROP KEYSPACE {ks}"), &[])
        .await
        .expect("drop keyspace");
}

async fn postgres(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", redact_url(url)));
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("postgres connection ended: {e}");
        }
    });
    client
}

/// The URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[tokio::test]
async fn postgres_warehouse_is_postgresql_15() {
    let env = StackEnv::load();
    let client = postgres(&env.postgres_url).await;
    let row = client
        .query_one(
            "SELECT current_database(), current_setting('server_version_num')::int",
            &[],
        )
        .await
        .expect("query");
    let db: String = row.get(0);
    let version: i32 = row.get(1);
    assert_eq!(db, "warehouse");
    assert!(
        (150000..160000).contains(&version),
        "expected PostgreSQL 15, got {version}"
    );
}

#[tokio::test]
async fn timescaledb_extension_is_present_and_hypertables_work() {
    let env = StackEnv::load();
    let client = postgres(&env.timescale_url).await;
    let row = client
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'",
            &[],
        )
        .await
        .expect("timescaledb extension installed in the timeseries database");
    let version: String = row.get(0);
    assert!(
        version.starts_with("2."),
        "unexpected timescaledb version {version}"
    );

    let schema = unique_name("stack");
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.readings (ts timestamptz NOT NULL, device int NOT NULL, value double precision);
             SELECT create_hypertable('{schema}.readings', 'ts', chunk_time_interval => interval '1 day');
             INSERT INTO {schema}.readings
               SELECT now() - (i || ' hours')::interval, i % 3, i FROM generate_series(1, 100) AS i;"
        ))
        .await
        .expect("create hypertable and insert");
    let row = client
        .query_one(
            "SELECT num_chunks FROM timescaledb_information.hypertables
             WHERE hypertable_schema = $1 AND hypertable_name = 'readings'",
            &[&schema],
        )
        .await
        .expect("hypertable listed");
    let chunks: i64 = row.get(0);
    assert!(
        chunks >= 4,
        "100 hourly rows over a 1-day interval need at least 4 chunks, got {chunks}"
    );
    let count: i64 = client
        .query_one(&format!("SELECT count(*) FROM {schema}.readings"), &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 100);
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .expect("drop schema");
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Serialize, serde::Deserialize)]
struct VersionedRow {
    id: u32,
    name: String,
    version: u64,
    is_deleted: u8,
}

#[tokio::test]
async fn clickhouse_front_replacing_merge_tree_final_deduplicates() {
    let env = StackEnv::load();
    let db = unique_name("stack");
    let client = clickhouse::Client::default()
        .with_url(&env.clickhouse_url)
        .with_compression(clickhouse::Compression::None);
    client
        .query(&format!("CREATE DATABASE {db}"))
        .execute()
        .await
        .expect("create database");
    let client = client.with_database(&db);
    client
        .query(
            "CREATE TABLE people (id UInt32, name String, version UInt64, is_deleted UInt8)
             ENGINE = ReplacingMergeTree(version, is_deleted) ORDER BY id",
        )
        .execute()
        .await
        .expect("create ReplacingMergeTree table");

    for (version, name) in [(1u64, "first name"), (3, "third name"), (2, "second name")] {
        let mut insert = client
            .insert::<VersionedRow>("people")
            .await
            .expect("insert");
        insert
            .write(&VersionedRow {
                id: 7,
                name: name.into(),
                version,
                is_deleted: 0,
            })
            .await
            .expect("write row");
        insert
            .write(&VersionedRow {
                id: 8,
                name: "deleted later".into(),
                version,
                is_deleted: 0,
            })
            .await
            .expect("write row");
        insert.end().await.expect("end insert");
    }
    let mut tombstone = client
        .insert::<VersionedRow>("people")
        .await
        .expect("insert");
    tombstone
        .write(&VersionedRow {
            id: 8,
            name: String::new(),
            version: 9,
            is_deleted: 1,
        })
        .await
        .expect("write tombstone");
    tombstone.end().await.expect("end insert");

    let raw: u64 = client
        .query("SELECT count() FROM people")
        .fetch_one()
        .await
        .expect("count raw");
    assert!(raw >= 2, "raw table holds the versions (got {raw})");
    let rows = client
        .query("SELECT ?fields FROM people FINAL ORDER BY id")
        .fetch_all::<VersionedRow>()
        .await
        .expect("select final");
    assert_eq!(
        rows,
        vec![VersionedRow {
            id: 7,
            name: "third name".into(),
            version: 3,
            is_deleted: 0
        }],
        "FINAL keeps the highest version per key and hides the deleted key"
    );

    client
        .query(&format!("DROP DATABASE {db}"))
        .execute()
        .await
        .expect("drop database");
}

#[tokio::test]
async fn clickhouse_front_reports_errors_with_exception_code() {
    let env = StackEnv::load();
    let http = reqwest::Client::new();

    // A query that fails while running: HTTP 500, like clickhouse-server.
    let response = http
        .post(&env.clickhouse_url)
        .body("SELECT throwIf(number = 0, 'a deliberate test failure') FROM numbers(1)")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 500);
    let code = exception_code(&response);
    let body = response.text().await.expect("body");
    assert_eq!(
        code, "395",
        "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO is code 395; body: {body}"
    );
    assert!(
        body.starts_with("Code: 395. DB::Exception:"),
        "body: {body}"
    );

    // Unknown objects keep clickhouse-server's status mapping (404) and still carry the code.
    let response = http
        .post(&env.clickhouse_url)
        .body("SELECT * FROM no_such_database_for_sure.no_table")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(
        exception_code(&response),
        "81",
        "UNKNOWN_DATABASE is code 81"
    );

    // The crate surfaces the same error.
    let client = clickhouse::Client::default()
        .with_url(&env.clickhouse_url)
        .with_compression(clickhouse::Compression::None);
    let err = client
        .query("SELECT definitely_not_a_function(1)")
        .execute()
        .await
        .expect_err("an unknown function is an error");
    assert!(
        err.to_string().contains("Code: 46"),
        "unexpected error: {err}"
    );
}

fn exception_code(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("X-ClickHouse-Exception-Code")
        .expect("X-ClickHouse-Exception-Code header")
        .to_str()
        .expect("ascii")
        .to_string()
}

#[tokio::test]
async fn schema_registry_stores_and_returns_an_avro_schema() {
    let env = StackEnv::load();
    let url = env
        .schema_registry_url
        .clone()
        .expect("CDC_SCHEMA_REGISTRY_URL is set by the stack");
    let subject = format!("{}-value", unique_name("stack"));
    let schema = r#"{"type":"record","name":"Probe","namespace":"cdc.test","fields":[{"name":"id","type":"int"}]}"#;
    let http = reqwest::Client::new();
    let registered: serde_json::Value = http
        .post(format!("{url}/subjects/{subject}/versions"))
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .json(&serde_json::json!({ "schema": schema }))
        .send()
        .await
        .expect("register")
        .error_for_status()
        .expect("register status")
        .json()
        .await
        .expect("register body");
    let id = registered["id"].as_i64().expect("numeric id");
    let fetched: serde_json::Value = http
        .get(format!("{url}/schemas/ids/{id}"))
        .send()
        .await
        .expect("fetch")
        .error_for_status()
        .expect("fetch status")
        .json()
        .await
        .expect("fetch body");
    let returned: serde_json::Value =
        serde_json::from_str(fetched["schema"].as_str().expect("schema string")).expect("json");
    let original: serde_json::Value = serde_json::from_str(schema).expect("json");
    assert_eq!(returned["name"], original["name"]);
    assert_eq!(returned["fields"], original["fields"]);
}
