//! `cdcctl status`, `dlq list|show|replay` and `replay` against real sink binaries
//! (`sink-postgres`, `sink-timescaledb`) on the local stack. The test produces masked envelopes
//! itself, drives the sinks through `cdcctl` (and pause/resume through the admin client) and checks
//! the destinations: status numbers move, a pause stops writing and a resume continues, a poison
//! event is dead-lettered, shown without values and replayed once, a replay of PostgreSQL rewinds
//! only PostgreSQL and converges without duplicates (and one of TimescaleDB by timestamp leaves
//! its change history without duplicates), and a stopped sink is DOWN with exit status 1.
//!
//! Needs `make stack-up` and the workspace binaries (`cargo build --workspace --bins`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cdc_admin::AdminClient;
use cdc_sink::compliance::{ComplianceEnv, Fixture, Inspector, PgInspector, Row};
use cdc_testkit::StackEnv;
use cdc_testkit::pipeline::bin_path;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);
const T0: i64 = 1_700_000_000_000_000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Sinks {
    dir: tempfile::TempDir,
    config: PathBuf,
    pg_port: u16,
    ts_port: u16,
    pg_group: String,
    ts_group: String,
}

impl Sinks {
    fn write(stack: &StackEnv, fx: &Fixture) -> Sinks {
        let dir = tempfile::tempdir().expect("temp dir");
        let (pg_port, ts_port) = (free_port(), free_port());
        let pg_group = format!("{}_pg", fx.group);
        let ts_group = format!("{}_ts", fx.group);
        let pattern = format!("^{}$", fx.topic.replace('.', "\\."));
        let block = |name: &str, group: &str, port: u16, url: &str, db: &str| {
            [
                format!("  {name}:"),
                format!("    group_id: {group}"),
                format!("    topics_pattern: '{pattern}'"),
                format!("    dlq_topic: {}-{name}", fx.dlq_topic),
                "    batch: {max_rows: 200, linger_ms: 100}".to_owned(),
                "    retry: {initial_backoff_ms: 50, max_backoff_ms: 500, max_retries: 2}"
                    .to_owned(),
                format!("    admin: {{listen_addr: \"127.0.0.1:{port}\"}}"),
                "    destination:".to_owned(),
                format!("      url: plain:{url}"),
                format!("      database: {db}"),
                "      tls: disable".to_owned(),
            ]
            .join("\n")
        };
        let yaml = [
            "kafka:".to_owned(),
            format!("  bootstrap_servers: [\"{}\"]", stack.kafka_bootstrap),
            "  replication_factor: 1".to_owned(),
            "  topic_partitions: 3".to_owned(),
            "sinks:".to_owned(),
            block(
                "postgres",
                &pg_group,
                pg_port,
                &stack.postgres_url,
                "warehouse",
            ),
            block(
                "timescaledb",
                &ts_group,
                ts_port,
                &stack.timescale_url,
                "timeseries",
            ),
        ]
        .join("\n");
        let config = dir.path().join("pipeline.yaml");
        std::fs::write(&config, yaml).expect("write config");
        Sinks {
            dir,
            config,
            pg_port,
            ts_port,
            pg_group,
            ts_group,
        }
    }

    fn spawn(&self, binary: &str) -> tokio::process::Child {
        let log =
            std::fs::File::create(self.dir.path().join(format!("{binary}.log"))).expect("log file");
        tokio::process::Command::new(bin_path(binary))
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"))
    }

    fn endpoints(&self) -> Vec<String> {
        vec![
            "--endpoint".into(),
            format!("sink-postgres=127.0.0.1:{}", self.pg_port),
            "--endpoint".into(),
            format!("sink-timescaledb=127.0.0.1:{}", self.ts_port),
        ]
    }

    fn log_tail(&self, binary: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{binary}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// Runs cdcctl with the test's configuration file.
async fn cdcctl(config: &Path, args: &[String]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_cdcctl"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run cdcctl")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "cdcctl printed no JSON ({e}); stdout: {}; stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn stage<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["stages"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("{name} in {status}"))
}

async fn status_json(sinks: &Sinks) -> (Value, Option<i32>) {
    let mut a = args(&["status", "--json"]);
    a.extend(sinks.endpoints());
    let out = cdcctl(&sinks.config, &a).await;
    (json_of(&out), out.status.code())
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn rows(inspector: &PgInspector, fx: &Fixture) -> BTreeMap<i32, Row> {
    inspector
        .live_rows(&fx.keyspace, &fx.table)
        .await
        .unwrap_or_default()
}

async fn wait_rows(
    inspector: &PgInspector,
    fx: &Fixture,
    what: &str,
    n: usize,
) -> BTreeMap<i32, Row> {
    wait_for(what, async || {
        let r = rows(inspector, fx).await;
        (r.len() == n).then_some(r)
    })
    .await
}

async fn offsets(inspector: &PgInspector, group: &str, topic: &str) -> Vec<Option<i64>> {
    let mut out = Vec::new();
    for p in 0..3 {
        out.push(
            inspector
                .stored_offset(group, topic, p)
                .await
                .expect("stored offset"),
        );
    }
    out
}

fn events_total(status: &Value, name: &str) -> u64 {
    stage(status, name)["events_total"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_pause_dlq_and_replay_through_cdcctl() {
    let stack = StackEnv::load();
    let env = ComplianceEnv {
        kafka_bootstrap: stack.kafka_bootstrap.clone(),
        poison_name: None,
    };
    let started_ms = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("time")
        - 60_000;
    let mut fx = Fixture::new(&env, "cdcctl_adm").await;
    let pg = PgInspector {
        url: stack.postgres_url.clone(),
    };
    let ts = PgInspector {
        url: stack.timescale_url.clone(),
    };
    let sinks = Sinks::write(&stack, &fx);
    let mut pg_sink = sinks.spawn("sink-postgres");
    let mut ts_sink = sinks.spawn("sink-timescaledb");

    // Both sinks come up: exit status 0, nothing written yet.
    let baseline = wait_for("both sinks UP", async || {
        let (s, code) = status_json(&sinks).await;
        (code == Some(0)).then_some(s)
    })
    .await;
    assert_eq!(baseline["healthy"], true);
    assert_eq!(events_total(&baseline, "sink-postgres"), 0);

    // Status numbers move after events.
    let mut batch = Vec::new();
    for i in 0..300 {
        batch.push(
            fx.events
                .insert(i, &format!("n{i}"), i64::from(i), T0 + i64::from(i)),
        );
    }
    fx.produce(&batch).await;
    wait_rows(&pg, &fx, "300 rows in PostgreSQL", 300).await;
    wait_rows(&ts, &fx, "300 rows in TimescaleDB", 300).await;
    let (after, code) = status_json(&sinks).await;
    assert_eq!(code, Some(0), "{after}");
    assert!(events_total(&after, "sink-postgres") >= 300, "{after}");
    assert!(events_total(&after, "sink-timescaledb") >= 300, "{after}");
    let pg_dest = &stage(&after, "sink-postgres")["destinations"][0];
    assert_eq!(pg_dest["destination"], "postgres");
    assert!(
        pg_dest["latency_p99_seconds"].as_f64().unwrap_or(0.0) > 0.0,
        "{pg_dest}"
    );
    let human = cdcctl(&sinks.config, &{
        let mut a = args(&["status"]);
        a.extend(sinks.endpoints());
        a
    })
    .await;
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("sink-postgres") && text.contains("UP"),
        "{text}"
    );
    assert!(text.contains("DESTINATION"), "{text}");

    // Pause stops writing (and shows), resume continues.
    let mut pg_admin = AdminClient::connect(
        &format!("127.0.0.1:{}", sinks.pg_port),
        Duration::from_secs(5),
    )
    .await
    .expect("admin client");
    pg_admin.pause().await.expect("pause");
    let (paused, code) = status_json(&sinks).await;
    assert_eq!(code, Some(1), "a paused stage is degraded: {paused}");
    let pg_stage = stage(&paused, "sink-postgres");
    assert_eq!(pg_stage["health"], "DEGRADED");
    assert_eq!(pg_stage["paused"], true);
    assert!(
        pg_stage["dependencies"].as_array().is_some_and(|d| d
            .iter()
            .any(|d| d["name"] == "intake" && d["health"] == "DOWN")),
        "{pg_stage}"
    );
    assert_eq!(stage(&paused, "sink-timescaledb")["health"], "UP");
    let mut batch = Vec::new();
    for i in 300..400 {
        batch.push(
            fx.events
                .insert(i, &format!("n{i}"), i64::from(i), T0 + i64::from(i)),
        );
    }
    fx.produce(&batch).await;
    wait_rows(&ts, &fx, "TimescaleDB keeps writing", 400).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rows(&pg, &fx).await.len(),
        300,
        "paused PostgreSQL wrote nothing"
    );
    pg_admin.resume().await.expect("resume");
    wait_rows(&pg, &fx, "PostgreSQL continues after resume", 400).await;
    let (_, code) = status_json(&sinks).await;
    assert_eq!(code, Some(0), "resumed: healthy again");

    // Reload re-reads the file and applies (and names) the batch limits that changed.
    let text = std::fs::read_to_string(&sinks.config).expect("read config");
    std::fs::write(
        &sinks.config,
        text.replacen("max_rows: 200", "max_rows: 250", 1),
    )
    .expect("edit config");
    let summary = pg_admin.reload().await.expect("reload");
    assert!(
        summary.contains("sinks.postgres.batch.max_rows: 200 -> 250"),
        "{summary}"
    );

    // A poison event for PostgreSQL only (a constraint the operator added), dead-lettered.
    let state = cdc_sink::postgres::naming::state_table(&fx.keyspace, &fx.table);
    let (client, conn) = tokio_postgres::connect(&stack.postgres_url, tokio_postgres::NoTls)
        .await
        .expect("connect PostgreSQL");
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "ALTER TABLE {state} ADD CONSTRAINT cdc_test_no_poison CHECK (name IS DISTINCT FROM 'poison-name')"
        ))
        .await
        .expect("add constraint");
    let poison = fx.events.insert(1000, "poison-name", 1, T0 + 1000);
    let poison_id = poison.correlation_id.clone();
    let fine = fx.events.insert(1001, "n1001", 1, T0 + 1001);
    fx.produce(&[poison, fine]).await;
    wait_rows(&ts, &fx, "TimescaleDB takes both", 402).await;
    let pg_rows = wait_rows(&pg, &fx, "PostgreSQL takes the good one", 401).await;
    assert!(pg_rows.contains_key(&1001) && !pg_rows.contains_key(&1000));
    let listed = wait_for("the poison event in dlq list", async || {
        let out = cdcctl(
            &sinks.config,
            &args(&["dlq", "list", "--destination", "postgres", "--json"]),
        )
        .await;
        let v = json_of(&out);
        (v["dead_letters"].as_array().is_some_and(|a| !a.is_empty()) && out.status.success())
            .then_some(v)
    })
    .await;
    let letters = listed["dead_letters"].as_array().expect("letters");
    assert_eq!(letters.len(), 1, "{listed}");
    let letter = &letters[0];
    assert_eq!(letter["correlation_id"], poison_id.as_str());
    assert_eq!(letter["error_class"], "poison");
    assert_eq!(letter["table"], format!("{}.{}", fx.keyspace, fx.table));
    assert_eq!(letter["replayed"], false);
    let filtered = json_of(
        &cdcctl(
            &sinks.config,
            &args(&[
                "dlq",
                "list",
                "--destination",
                "postgres",
                "--error-class",
                "retriable",
                "--json",
            ]),
        )
        .await,
    );
    assert_eq!(filtered["dead_letters"].as_array().map(Vec::len), Some(0));
    let shown = cdcctl(
        &sinks.config,
        &args(&[
            "dlq",
            "show",
            &poison_id,
            "--destination",
            "postgres",
            "--json",
        ]),
    )
    .await;
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let shown_text = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        !shown_text.contains("poison-name"),
        "no values shown: {shown_text}"
    );
    let detail = &json_of(&shown)["dead_letters"][0];
    assert_eq!(detail["event"]["op"], "insert");
    assert_eq!(detail["event"]["partition_key"][0]["value"], "1000");
    assert!(
        detail["event"]["cells"].as_array().is_some_and(|c| c
            .iter()
            .any(|c| c["column"] == "name" && c["change"] == "set")),
        "{detail}"
    );
    let missing = cdcctl(
        &sinks.config,
        &args(&["dlq", "show", "no-such-id", "--destination", "postgres"]),
    )
    .await;
    assert_eq!(missing.status.code(), Some(1));
    // Without --yes and without a terminal, nothing is replayed.
    let refused = cdcctl(
        &sinks.config,
        &args(&["dlq", "replay", "--destination", "postgres"]),
    )
    .await;
    assert_eq!(refused.status.code(), Some(2));
    client
        .batch_execute(&format!(
            "ALTER TABLE {state} DROP CONSTRAINT cdc_test_no_poison"
        ))
        .await
        .expect("drop constraint");
    let replayed = cdcctl(
        &sinks.config,
        &args(&[
            "dlq",
            "replay",
            "--destination",
            "postgres",
            "--yes",
            "--json",
        ]),
    )
    .await;
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    let r = json_of(&replayed);
    assert_eq!(r["stages"][0]["replayed"], 1, "{r}");
    let pg_rows = wait_rows(&pg, &fx, "the replayed letter applied", 402).await;
    assert_eq!(
        pg_rows.get(&1000),
        Some(&(Some("poison-name".to_owned()), Some(1)))
    );
    let again = json_of(
        &cdcctl(
            &sinks.config,
            &args(&[
                "dlq",
                "replay",
                "--destination",
                "postgres",
                "--yes",
                "--json",
            ]),
        )
        .await,
    );
    assert_eq!(again["stages"][0]["replayed"], 0, "{again}");
    assert_eq!(again["stages"][0]["skipped_already_replayed"], 1, "{again}");
    let relisted = json_of(
        &cdcctl(
            &sinks.config,
            &args(&["dlq", "list", "--destination", "postgres", "--json"]),
        )
        .await,
    );
    assert_eq!(relisted["dead_letters"][0]["replayed"], true, "{relisted}");

    // Replay PostgreSQL from offset 0: only PostgreSQL rewinds, rows converge, no duplicates.
    let pg_before = offsets(&pg, &sinks.pg_group, &fx.topic).await;
    let ts_before = offsets(&ts, &sinks.ts_group, &fx.topic).await;
    let changes_before = ts
        .change_count(&fx.keyspace, &fx.table)
        .await
        .expect("change count")
        .expect("TimescaleDB keeps a change history");
    assert_eq!(changes_before, 402, "one history row per event");
    let rows_before = rows(&pg, &fx).await;
    let (st, _) = status_json(&sinks).await;
    let pg_events_before = events_total(&st, "sink-postgres");
    let to_offsets = (0..3)
        .map(|p| format!("{}:{p}:0", fx.topic))
        .collect::<Vec<_>>()
        .join(",");
    let out = cdcctl(
        &sinks.config,
        &args(&[
            "replay",
            "--destination",
            "postgres",
            "--to-offsets",
            &to_offsets,
            "--yes",
            "--json",
        ]),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_of(&out);
    for (p, before) in pg_before.iter().enumerate() {
        let prev = report["previous"]
            .as_array()
            .and_then(|a| a.iter().find(|o| o["partition"] == p))
            .unwrap_or_else(|| panic!("previous offset of partition {p}: {report}"));
        assert_eq!(prev["offset"].as_i64(), *before, "{report}");
        let applied = report["applied"]
            .as_array()
            .and_then(|a| a.iter().find(|o| o["partition"] == p))
            .unwrap_or_else(|| panic!("applied offset of partition {p}: {report}"));
        assert_eq!(applied["offset"], 0, "{report}");
    }
    wait_for("PostgreSQL re-reads everything", async || {
        let (st, _) = status_json(&sinks).await;
        (events_total(&st, "sink-postgres") >= pg_events_before + 402).then_some(())
    })
    .await;
    wait_for("PostgreSQL offsets back at the end", async || {
        (offsets(&pg, &sinks.pg_group, &fx.topic).await == pg_before).then_some(())
    })
    .await;
    assert_eq!(
        rows(&pg, &fx).await,
        rows_before,
        "the replay converges to the same rows"
    );
    assert_eq!(
        offsets(&ts, &sinks.ts_group, &fx.topic).await,
        ts_before,
        "TimescaleDB's offsets are untouched"
    );

    // Replay TimescaleDB by time: its change history gets no duplicates; PostgreSQL untouched.
    let (st, _) = status_json(&sinks).await;
    let ts_events_before = events_total(&st, "sink-timescaledb");
    let out = cdcctl(
        &sinks.config,
        &args(&[
            "replay",
            "--destination",
            "timescaledb",
            "--to-timestamp",
            &started_ms.to_string(),
            "--yes",
            "--json",
        ]),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_of(&out);
    let applied = report["applied"].as_array().expect("applied offsets");
    assert_eq!(applied.len(), 3, "every partition of the topic: {report}");
    assert!(applied.iter().all(|o| o["offset"] == 0), "{report}");
    wait_for("TimescaleDB re-reads everything", async || {
        let (st, _) = status_json(&sinks).await;
        (events_total(&st, "sink-timescaledb") >= ts_events_before + 402).then_some(())
    })
    .await;
    wait_for("TimescaleDB offsets back at the end", async || {
        (offsets(&ts, &sinks.ts_group, &fx.topic).await == ts_before).then_some(())
    })
    .await;
    assert_eq!(
        ts.change_count(&fx.keyspace, &fx.table)
            .await
            .expect("count"),
        Some(changes_before),
        "no duplicate change rows after the replay"
    );
    assert_eq!(rows(&ts, &fx).await.len(), 402);
    assert_eq!(offsets(&pg, &sinks.pg_group, &fx.topic).await, pg_before);

    // A stopped sink shows DOWN and the exit status is 1.
    pg_sink.start_kill().expect("stop sink-postgres");
    let _ = pg_sink.wait().await;
    let (down, code) = status_json(&sinks).await;
    assert_eq!(code, Some(1), "{down}");
    assert_eq!(stage(&down, "sink-postgres")["health"], "DOWN");
    assert!(
        stage(&down, "sink-postgres")["error"]
            .as_str()
            .is_some_and(|e| e.contains(&sinks.pg_port.to_string()))
    );
    assert_eq!(stage(&down, "sink-timescaledb")["health"], "UP");
    let mut human = args(&["status"]);
    human.extend(sinks.endpoints());
    let text = cdcctl(&sinks.config, &human).await;
    assert_eq!(text.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&text.stdout).contains("DOWN"));

    if std::env::var_os("CDC_TEST_SHOW_LOGS").is_some() {
        eprintln!("{}", sinks.log_tail("sink-timescaledb"));
    }
    let _ = ts_sink.start_kill();
    let _ = ts_sink.wait().await;
}
