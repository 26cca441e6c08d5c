//! Bad input (issue 9, part 4), with the real service binaries:
//!
//! - malformed Kafka messages on the raw and masked topics go to the dead-letter topics and never
//!   crash the masker or a sink, while real events keep flowing (the chaos ending: verify, audit,
//!   one change row per event);
//! - an invalid configuration stops every service at start with exit code 1 and one error line
//!   naming the file and the key;
//! - an unreachable destination at start is reported (log line naming the destination and the
//!   failure, `/readyz` 503 naming the dependency) and retried with growing backoff, never a crash.
//!
//! Runs with the other integration tests (`make test-integration`): it stops no shared server.

#[path = "e2e_support.rs"]
mod support;

#[path = "chaos_support.rs"]
mod chaos_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cdc_testkit::pipeline::bin_path;
use cdc_testkit::{Destination, Service, StackEnv};
use chaos_support::Scenario;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Malformed payloads: binary garbage, an empty value, JSON that is not an envelope, truncated
/// JSON, a header-only record.
const GARBAGE: [&[u8]; 5] = [
    b"\x00\xff\xfe garbage, not an event \x01",
    b"",
    br#"{"not": "an envelope"}"#,
    br#"{"op": "insert", "keyspace": "#,
    b"\x00\x00\x00\x00\x07\x02\x04",
];

async fn produce_garbage(bootstrap: &str, topic: &str) -> usize {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "15000")
        .create()
        .unwrap_or_else(|e| panic!("Kafka producer: {e}"));
    for (i, payload) in GARBAGE.iter().enumerate() {
        let key = format!("garbage-{i}");
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload(*payload),
                Duration::from_secs(15),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce garbage to {topic}: {e}"));
    }
    GARBAGE.len()
}

/// Records in `topic` (Σ high − low over partitions; transaction markers count too, so this is an
/// upper bound of the messages).
async fn records(sc: &Scenario, topic: &str) -> i64 {
    sc.kafka
        .high_watermarks(topic)
        .await
        .map(|ms| ms.iter().map(|m| m.high - m.low).sum())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_messages_on_raw_and_masked_topics_go_to_the_dlq() {
    let env = StackEnv::load();
    let mut sc = Scenario::start(
        "malformed-input",
        "malformed messages on the raw and masked topics",
        &env,
        |spec| spec,
    )
    .await;
    let pids: Vec<Option<u32>> = Service::ALL.iter().map(|s| sc.pipeline.pid(*s)).collect();
    let load = sc.start_load(100, 25, 81);
    let raw = format!("cdc.raw.{}.{}", sc.ks, support::TABLE);
    let masked = sc.masked_topic();
    // The topics exist once the first events went through.
    let deadline = Instant::now() + Duration::from_secs(60);
    while records(&sc, &masked).await == 0 {
        assert!(
            Instant::now() < deadline,
            "no events reached {masked} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let masker_dlq0 = sc
        .metric(Service::Masker, "cdc_masker_dlq_events_total", &[])
        .await
        .unwrap_or(0.0);
    let n = produce_garbage(&env.kafka_bootstrap, &raw).await;
    produce_garbage(&env.kafka_bootstrap, &masked).await;
    sc.log(format!(
        "{n} malformed messages produced to {raw} and to {masked}"
    ));
    sc.fault = format!(
        "{n} malformed messages (garbage bytes, empty, non-envelope JSON, truncated JSON) \
         produced to the raw and to the masked topic mid-load"
    );

    // The masker dead-letters the raw garbage; each sink dead-letters the masked garbage.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let names = sc.pipeline.names().clone();
    let mut pending: Vec<(String, String)> = vec![("masker".into(), names.masker_dlq_topic)];
    for d in Destination::ALL {
        pending.push((
            d.service().binary().into(),
            names.sink_dlq_topics[&d].clone(),
        ));
    }
    while !pending.is_empty() {
        let mut still = Vec::new();
        for (who, topic) in pending {
            if records(&sc, &topic).await >= n as i64 {
                sc.recovered(
                    format!("{who}: {n} malformed in its DLQ"),
                    started.elapsed().as_secs_f64(),
                );
            } else {
                still.push((who, topic));
            }
        }
        pending = still;
        if Instant::now() > deadline {
            let tails: Vec<String> = pending
                .iter()
                .map(|(who, _)| {
                    let s = Service::ALL
                        .into_iter()
                        .find(|s| s.binary() == who)
                        .unwrap_or(Service::Masker);
                    format!("--- {who} ---\n{}", sc.pipeline.log_tail(s, 20))
                })
                .collect();
            panic!(
                "malformed messages not dead-lettered within 120 s by {:?}\n{}",
                pending,
                tails.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let masker_dlq = sc
        .metric(Service::Masker, "cdc_masker_dlq_events_total", &[])
        .await
        .unwrap_or(0.0)
        - masker_dlq0;
    assert!(
        masker_dlq >= n as f64,
        "cdc_masker_dlq_events_total grew by {masker_dlq}, expected ≥ {n}"
    );
    for d in Destination::ALL {
        let v = sc
            .metric(
                d.service(),
                "cdc_sink_dlq_events_total",
                &[("destination", d.name())],
            )
            .await
            .unwrap_or(0.0);
        assert!(
            v >= n as f64,
            "cdc_sink_dlq_events_total{{destination=\"{d}\"}} is {v}, expected ≥ {n}"
        );
    }
    let after: Vec<Option<u32>> = Service::ALL.iter().map(|s| sc.pipeline.pid(*s)).collect();
    assert_eq!(
        pids, after,
        "a service restarted or died on malformed input"
    );
    sc.notes.push(format!(
        "{n} malformed messages per topic: all in the masker's DLQ and in each sink's DLQ \
         (cdc_masker_dlq_events_total / cdc_sink_dlq_events_total), no process restarted, real \
         events kept flowing"
    ));
    let report = load.finish().await;
    sc.finish(vec![report]).await;
}

/// Runs `binary --config <path>` with a clean environment for backtraces; waits at most 30 s.
fn run_with_config(binary: &str, config: &std::path::Path) -> (Option<i32>, String) {
    let mut child = Command::new(bin_path(binary))
        .arg("--config")
        .arg(config)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn invalid_config_fails_at_start_with_one_line_naming_file_and_key() {
    let dir = tempfile_dir();
    let cases = [
        (
            "type.yaml",
            "kafka:\n  bootstrap_servers: [\"127.0.0.1:19092\"]\nsinks:\n  postgres:\n    batch:\n      max_rows: lots\n",
            "sinks.postgres.batch.max_rows",
        ),
        (
            "range.yaml",
            "kafka:\n  bootstrap_servers: [\"127.0.0.1:19092\"]\nsinks:\n  clickhouse:\n    destination: {url: \"http://127.0.0.1:18123\"}\n    batch:\n      max_rows: 0\n",
            "sinks.clickhouse.batch.max_rows",
        ),
        (
            "unknown.yaml",
            "kafka:\n  bootstrap_servers: [\"127.0.0.1:19092\"]\n  bootstrap_server: typo\n",
            "kafka.bootstrap_server",
        ),
    ];
    for (file, text, key) in cases {
        let path = dir.join(file);
        std::fs::write(&path, text).expect("write config");
        for s in Service::ALL {
            let (code, out) = run_with_config(s.binary(), &path);
            assert_eq!(code, Some(1), "{s} with {file}: exit {code:?}\n{out}");
            let path_text = path.display().to_string();
            let line = out
                .lines()
                .find(|l| l.contains(&path_text) && l.contains(key));
            assert!(
                line.is_some(),
                "{s} with {file}: no single line names both {path_text} and `{key}`:\n{out}"
            );
            assert!(
                !out.contains("panicked") && !out.contains("Stack backtrace"),
                "{s} with {file}: a panic or backtrace instead of an error line:\n{out}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(cdc_testkit::unique_name("chaos_bad_config"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_destination_at_start_is_reported_and_retried_not_a_crash() {
    let env = StackEnv::load();
    let dir = tempfile_dir();
    let port = free_port();
    let dead = free_port(); // nothing listens there
    let name = cdc_testkit::unique_name("unreachable");
    let path = dir.join("pipeline.yaml");
    std::fs::write(
        &path,
        format!(
            "kafka:\n  bootstrap_servers: [\"{kafka}\"]\nsinks:\n  postgres:\n    \
             group_id: {name}\n    topics_pattern: '^cdc\\.masked\\.{name}\\..+$'\n    \
             dlq_topic: cdc.dlq.{name}\n    admin: {{listen_addr: \"127.0.0.1:{port}\"}}\n    \
             destination:\n      url: \"plain:postgres://cdc:cdc@127.0.0.1:{dead}/warehouse\"\n      \
             database: warehouse\n",
            kafka = env.kafka_bootstrap
        ),
    )
    .expect("write config");
    let log_path = dir.join("sink.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = Command::new(bin_path("sink-postgres"))
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start sink-postgres");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut readyz = (0, String::new());
    while Instant::now() < deadline {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            readyz = (r.status().as_u16(), r.text().await.unwrap_or_default());
            if readyz.1.contains("\"down\"") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Still alive after a few retries: a missing destination is waited for, not a crash.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let alive = child.try_wait().ok().flatten().is_none();
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        alive,
        "sink-postgres exited on an unreachable destination:\n{text}"
    );
    assert_eq!(readyz.0, 503, "/readyz: {readyz:?}");
    assert!(
        readyz.1.contains("\"destination\"") && readyz.1.contains("\"down\""),
        "/readyz names the destination as down: {}",
        readyz.1
    );
    let reported: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("destination postgres") && l.contains("Connection refused"))
        .collect();
    assert!(
        reported.len() >= 2,
        "no repeated log line naming the destination and the failure:\n{text}"
    );
    let at = format!("destination postgres at 127.0.0.1:{dead}/warehouse");
    assert!(
        reported.iter().all(|l| l.contains(&at)),
        "the log line does not say where the destination is ({at}):\n{}",
        reported.join("\n")
    );
    assert!(
        !text.contains("cdc:cdc@"),
        "the log shows the destination's credentials:\n{text}"
    );
}
