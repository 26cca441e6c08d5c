//! The real binary, killed with SIGKILL three times while it writes 10,000 mixed events: the live
//! view ends equal to the expected state row for row, and no event is stored twice (issue 6
//! acceptance). Needs `make stack-up`; never skips.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cdc_sink::compliance::{ComplianceEnv, Fixture, Inspector, Row};
use cdc_testkit::StackEnv;

const T0: i64 = 1_700_000_000_000_000;

#[derive(Default)]
struct ModelRow {
    marker: Option<i64>,
    name: Option<(i64, bool, Option<String>)>,
    score: Option<(i64, bool, Option<i64>)>,
    deleted: Option<i64>,
}

fn lww<T>(cur: &mut Option<(i64, bool, Option<T>)>, wt: i64, value: Option<T>) {
    let tomb = value.is_none();
    if cur.as_ref().is_none_or(|(w, t, _)| (wt, tomb) > (*w, *t)) {
        *cur = Some((wt, tomb, value));
    }
}

impl ModelRow {
    fn live(&self) -> Option<Row> {
        let d = self.deleted.unwrap_or(i64::MIN);
        let name = self
            .name
            .as_ref()
            .filter(|(w, _, _)| *w > d)
            .and_then(|(_, _, v)| v.clone());
        let score = self
            .score
            .as_ref()
            .filter(|(w, _, _)| *w > d)
            .and_then(|(_, _, v)| *v);
        let marker = self.marker.is_some_and(|w| w > d);
        (marker || name.is_some() || score.is_some()).then_some((name, score))
    }
}

struct ClickHouse {
    client: clickhouse::Client,
}

#[async_trait::async_trait]
impl Inspector for ClickHouse {
    async fn live_rows(&self, keyspace: &str, table: &str) -> Result<BTreeMap<i32, Row>, String> {
        let rows: Vec<(i32, Option<String>, Option<i64>)> = self
            .client
            .query(&format!(
                "SELECT id, name, score FROM `{keyspace}`.`{table}`"
            ))
            .fetch_all()
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows.into_iter().map(|(i, n, s)| (i, (n, s))).collect())
    }

    async fn stored_offset(&self, _: &str, _: &str, _: i32) -> Result<Option<i64>, String> {
        Ok(None)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(19_871)
}

fn spawn_sink(
    env: &StackEnv,
    fx: &Fixture,
    config: &std::path::Path,
    log: &std::path::Path,
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("open sink log: {e}"));
    let err = log
        .try_clone()
        .unwrap_or_else(|e| panic!("clone sink log: {e}"));
    Command::new(env!("CARGO_BIN_EXE_sink-clickhouse"))
        .arg("--config")
        .arg(config)
        .env("CDC__KAFKA__BOOTSTRAP_SERVERS", &env.kafka_bootstrap)
        .env("CDC__SINKS__CLICKHOUSE__GROUP_ID", &fx.group)
        .env(
            "CDC__SINKS__CLICKHOUSE__TOPICS_PATTERN",
            format!("^{}$", fx.topic.replace('.', "\\.")),
        )
        .env("CDC__SINKS__CLICKHOUSE__DLQ_TOPIC", &fx.dlq_topic)
        .env("CDC__SINKS__CLICKHOUSE__BATCH__MAX_ROWS", "40")
        .env("CDC__SINKS__CLICKHOUSE__BATCH__LINGER_MS", "100")
        .env(
            "CDC__SINKS__CLICKHOUSE__ADMIN__LISTEN_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .env(
            "CDC__SINKS__CLICKHOUSE__DESTINATION__URL",
            &env.clickhouse_url,
        )
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap_or_else(|e| panic!("start sink-clickhouse: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_kill_9_restarts_during_10000_mixed_events() {
    let env = StackEnv::load();
    let compliance = ComplianceEnv {
        kafka_bootstrap: env.kafka_bootstrap.clone(),
        poison_name: None,
    };
    let mut fx = Fixture::new(&compliance, "ch_kill9").await;

    // A config derived from the documented example: local Kafka, no password.
    let example = cdc_testkit::stack::repo_root().join("config/pipeline.example.yaml");
    let text = std::fs::read_to_string(&example).unwrap_or_else(|e| panic!("read example: {e}"));
    let text = text
        .replace("  replication_factor: 3", "  replication_factor: 1")
        .replace(
            "      password: env:CDC_CLICKHOUSE_PASSWORD",
            "      password: null",
        );
    let dir = std::env::temp_dir().join(format!("{}-sink", fx.keyspace));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("temp dir: {e}"));
    let config = dir.join("pipeline.yaml");
    std::fs::write(&config, text).unwrap_or_else(|e| panic!("write config: {e}"));
    let log = dir.join("sink.log");

    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut model: BTreeMap<i32, ModelRow> = BTreeMap::new();
    let mut events = Vec::with_capacity(10_000);
    for i in 0..10_000i64 {
        let id = (next() % 400) as i32;
        let wt = T0 + ((i * 7919) % 10_007) * 10;
        let row = model.entry(id).or_default();
        events.push(match next() % 10 {
            0..=3 => {
                let name = format!("name {i}");
                row.marker = Some(row.marker.map_or(wt, |m| m.max(wt)));
                lww(&mut row.name, wt, Some(name.clone()));
                lww(&mut row.score, wt, Some(i));
                fx.events.insert(id, &name, i, wt)
            }
            4..=6 => {
                lww(&mut row.score, wt, Some(-i));
                fx.events.update_score(id, -i, wt)
            }
            7 => {
                lww(&mut row.name, wt, Some(format!("renamed {i}")));
                fx.events.update_name(id, &format!("renamed {i}"), wt)
            }
            8 => {
                lww::<String>(&mut row.name, wt, None);
                fx.events.delete_name(id, wt)
            }
            _ => {
                row.deleted = Some(row.deleted.map_or(wt, |d| d.max(wt)));
                fx.events.delete(id, wt)
            }
        });
    }
    let expected: BTreeMap<i32, Row> = model
        .iter()
        .filter_map(|(id, r)| r.live().map(|l| (*id, l)))
        .collect();
    fx.produce(&events).await;

    let client = clickhouse::Client::default()
        .with_url(env.clickhouse_url.clone())
        .with_compression(clickhouse::Compression::None);
    let stored = || {
        let client = client.clone();
        let sql = format!(
            "SELECT count() FROM `{}`.`_cdc_state_{}`",
            fx.keyspace, fx.table
        );
        async move { client.query(&sql).fetch_one::<u64>().await.unwrap_or(0) }
    };

    let mut sink = spawn_sink(&env, &fx, &config, &log);
    for round in 0..3u64 {
        let threshold = round * 3_000 + 500 + next() % 2_500;
        // Generous: each restart waits for the killed member's session to expire.
        let deadline = Instant::now() + Duration::from_secs(180);
        while stored().await < threshold {
            assert!(
                Instant::now() < deadline,
                "no progress towards {threshold} stored events; see {}",
                log.display()
            );
            if let Ok(Some(status)) = sink.try_wait() {
                panic!("sink exited early with {status}; see {}", log.display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Child::kill is SIGKILL on Unix: no drain, no offset flush, no group leave.
        sink.kill().unwrap_or_else(|e| panic!("kill -9: {e}"));
        let _ = sink.wait();
        eprintln!(
            "kill -9 #{round}: {} of 10000 events stored",
            stored().await
        );
        sink = spawn_sink(&env, &fx, &config, &log);
    }
    let inspector = ClickHouse {
        client: client.clone(),
    };
    let rows = fx
        .wait_rows(
            &inspector,
            Duration::from_secs(300),
            "state after three kill -9 restarts",
            |r| r == &expected,
        )
        .await;
    // SIGTERM for a clean stop.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(sink.id().to_string())
        .status();
    let _ = sink.wait();
    assert_eq!(rows, expected);
    let duplicates: u64 = client
        .query(&format!(
            "SELECT count() FROM (SELECT _cdc_partition, _cdc_offset, _cdc_kind, count() AS c \
             FROM `{}`.`_cdc_state_{}` GROUP BY _cdc_partition, _cdc_offset, _cdc_kind HAVING c > 1)",
            fx.keyspace, fx.table
        ))
        .fetch_one()
        .await
        .unwrap_or(u64::MAX);
    assert_eq!(duplicates, 0, "no event stored twice");
    assert_eq!(stored().await, 10_000);
    let _ = client
        .query(&format!("DROP DATABASE IF EXISTS `{}`", fx.keyspace))
        .execute()
        .await;
}
