//! `cdcctl load` against the local stack's Cassandra (`make stack-up`); fails, never skips,
//! without it.

use std::path::Path;
use std::process::{Command, Output};

use cdc_testkit::{StackEnv, unique_name};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use serde_json::Value as Json;

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

fn config(dir: &Path, env: &StackEnv) -> std::path::PathBuf {
    let path = dir.join("pipeline.yaml");
    std::fs::write(
        &path,
        format!(
            "cassandra:\n  contact_points: [\"{}\"]\n",
            env.cassandra_cql
        ),
    )
    .unwrap();
    path
}

async fn session(env: &StackEnv) -> Session {
    SessionBuilder::new()
        .known_node(&env.cassandra_cql)
        .build()
        .await
        .expect("Cassandra answers (make stack-up)")
}

async fn count(session: &Session, ks: &str, table: &str) -> i64 {
    let rows = session
        .query_unpaged(format!("SELECT count(*) FROM {ks}.{table}"), &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    rows.first_row::<(i64,)>().unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_writes_at_the_target_rate_and_reports() {
    let env = StackEnv::load();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &env);
    let ks = unique_name("load");
    let out = cdcctl(
        &config,
        &[
            "load",
            "--keyspace",
            &ks,
            "--create-schema",
            "--rate",
            "40",
            "--duration",
            "4s",
            "--keys",
            "60",
            "--seed",
            "7",
            "--concurrency",
            "2",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r: Json =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    let total = r["events"]["total"].as_u64().unwrap();
    // 40/s for 4 s: 160 events scheduled, the last ones may miss the deadline.
    assert!((120..=161).contains(&total), "{r}");
    let by_op = ["insert", "update", "delete"].map(|k| r["events"][k].as_u64().unwrap());
    assert_eq!(by_op.iter().sum::<u64>(), total);
    assert!(by_op.iter().all(|n| *n > 0), "every operation ran: {r}");
    assert_eq!(r["errors"]["total"], 0, "{r}");
    let rate = r["achieved_rate"].as_f64().unwrap();
    assert!((25.0..=45.0).contains(&rate), "achieved rate {rate}: {r}");
    assert!(r["latency"]["p50_ms"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["latency"]["p99_ms"].as_f64().unwrap() >= r["latency"]["p50_ms"].as_f64().unwrap());
    assert_eq!(r["keyspace"], ks.as_str());
    assert_eq!(r["table"], "patients");
    assert_eq!(r["initial_rows"], 0);
    // The generator's view of the table is exact: every write succeeded and keys are per worker.
    let s = session(&env).await;
    let live = r["live_rows"].as_i64().unwrap();
    assert!(live > 0);
    assert_eq!(count(&s, &ks, "patients").await, live, "{r}");
    // CDC is on for the created table.
    let cdc = s
        .query_unpaged(
            "SELECT cdc FROM system_schema.tables WHERE keyspace_name = ? AND table_name = 'patients'",
            (ks.as_str(),),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .first_row::<(Option<bool>,)>()
        .unwrap()
        .0;
    assert_eq!(cdc, Some(true));
    // Values are obviously fake.
    let rows = s
        .query_unpaged(format!("SELECT email, ssn, phone FROM {ks}.patients"), &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    for row in rows
        .rows::<(Option<String>, Option<String>, Option<String>)>()
        .unwrap()
    {
        let (email, ssn, phone) = row.unwrap();
        assert!(email.unwrap().ends_with("@example.invalid"));
        assert!(ssn.unwrap().starts_with("000-"));
        assert!(phone.unwrap().starts_with("555-01"));
    }

    // A second run by event count on the same table starts from the rows that exist.
    let out = cdcctl(
        &config,
        &[
            "load",
            "--keyspace",
            &ks,
            "--events",
            "25",
            "--rate",
            "0",
            "--mix",
            "insert=100",
            "--keys",
            "1000",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r2: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r2["events"]["total"], 25);
    assert_eq!(r2["events"]["insert"], 25);
    assert_eq!(r2["initial_rows"].as_i64().unwrap(), live);
    assert_eq!(
        count(&s, &ks, "patients").await,
        r2["live_rows"].as_i64().unwrap()
    );
    assert_eq!(r2["live_rows"].as_i64().unwrap(), live + 25);

    // Human report.
    let out = cdcctl(
        &config,
        &["load", "--keyspace", &ks, "--events", "5", "--rate", "0"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("events      5"), "{text}");
    assert!(text.contains("latency     p50"), "{text}");
    s.query_unpaged(format!("DROP KEYSPACE {ks}"), &[])
        .await
        .unwrap();
}

#[test]
fn bad_arguments_get_clear_errors() {
    let env = StackEnv::load();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &env);
    let out = cdcctl(&config, &["load", "--mix", "insert=60,update=30"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--mix") && err.contains("must sum to 100, got 90"),
        "{err}"
    );
    let out = cdcctl(&config, &["load", "--mix", "insert=50,upsert=50"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown operation `upsert`"));
    let out = cdcctl(&config, &["load", "--duration", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected a duration"));
    // A table that does not exist, without --create-schema.
    let ks = unique_name("noload");
    let out = cdcctl(&config, &["load", "--keyspace", &ks, "--events", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist (run with --create-schema"),
        "{}",
        show(&out)
    );
}
