//! Head-to-head with Debezium's Cassandra 5 connector in its standalone mode (issue 12, item 2),
//! against the same Cassandra and Kafka, in one run. `dev/bench/debezium.sh` installs and runs the
//! connector (Maven Central, cached under `$CDC_STACK_CACHE`).
//!
//! Both tools consume (Debezium: delete) `cdc_raw` segments, and the stack's `cdc_raw` is shared by
//! every test, so neither reads it directly:
//!
//! - Backlog: `BENCH_H2H_EVENTS` (default 100,000) inserts into a fresh `cdc = true` table; the
//!   segments written meanwhile are copied twice, one copy per tool. Our `capture` (release binary,
//!   `cdc_testkit::pipeline`, keyspace filter on, the masker stopped) and then Debezium each drain
//!   their copy into Kafka, one after the other. Events/s = events of the table / (process spawn ->
//!   last event in Kafka), start-up included; CPU-seconds (utime + stime) and peak RSS (`VmHWM`) of
//!   the process at that moment.
//! - Write -> Kafka latency: 10 inserts every 10 ms for `BENCH_H2H_LATENCY_SECONDS` (default 20) per
//!   tool, each carrying its client write time in a text column; a consumer of the tool's topic
//!   (read_committed) takes receive time - write time. Our capture reads the live `cdc_raw` (retain
//!   mode); Debezium reads a mirror directory where this test hard-links each new segment as soon
//!   as it appears and copies its `_cdc.idx` every 20 ms (hard links share the data, so only the
//!   index copy can add delay, at most ~20 ms).
//!
//! `#[ignore]`d: `make bench-h2h` / `make bench`. With `CDC_WRITE_BENCHMARKS=1` the numbers
//! replace the "Head-to-head: Debezium" section of docs/benchmarks.md. When the connector cannot be
//! installed or started, the section records that (commands and error lines) instead.

#[path = "bench_support.rs"]
mod bench;
#[path = "e2e_support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cdc_kafka::{
    ConsumerSettings, KafkaSettings, ReadCommittedConsumer, StartOffset, TopicAdmin, TopicPartition,
};
use cdc_testkit::{PipelineSpec, RunningPipeline, Service, StackEnv};
use futures::StreamExt;
use scylla::client::session::Session;

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn repo_root() -> PathBuf {
    // Read at run time: a shared target dir may hold this binary built from another checkout.
    cdc_testkit::stack::repo_root()
}

/// The id of a commit-log segment file (`CommitLog-7-<id>.log` / `..._cdc.idx`).
fn segment_id(name: &str) -> Option<i64> {
    let stem = name
        .strip_suffix("_cdc.idx")
        .or_else(|| name.strip_suffix(".log"))?;
    stem.rsplit('-').next()?.parse().ok()
}

/// The id of the newest segment with an `_cdc.idx`: the one being written now (segments with
/// higher ids are only pre-allocated and empty).
fn max_segment_id(dir: &Path) -> i64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with("_cdc.idx"))
                .filter_map(|n| segment_id(&n))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// The `_cdc.idx` files with id >= `from` and their content.
fn index_state(dir: &Path, from: i64) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    (name.ends_with("_cdc.idx") && segment_id(&name).is_some_and(|id| id >= from))
                        .then(|| Some((name, std::fs::read(e.path()).ok()?)))
                        .flatten()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the node has synced the commit log twice since now (an index file changed or
/// appeared, twice, at least 400 ms apart), so every write acknowledged before the call is
/// below the offsets the `_cdc.idx` files give; at most 15 s (writes already synced change
/// nothing).
async fn wait_synced(dir: &Path, from: i64) {
    let mut seen = index_state(dir, from);
    let mut syncs = 0;
    let mut last_sync = Instant::now();
    let t0 = Instant::now();
    while syncs < 2 && t0.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = index_state(dir, from);
        if now != seen && (syncs == 0 || last_sync.elapsed() >= Duration::from_millis(400)) {
            syncs += 1;
            last_sync = Instant::now();
            seen = now;
        }
    }
}

/// Copies every segment file (log and index) with id >= `from` from `src` into `dst`.
fn copy_segments(src: &Path, dst: &Path, from: i64) -> u64 {
    std::fs::create_dir_all(dst).expect("create the segment copy");
    let mut names: Vec<String> = std::fs::read_dir(src)
        .expect("read cdc_raw")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| segment_id(n).is_some_and(|id| id >= from))
        .collect();
    // Indexes first: a segment only grows, so the copied index never points past the copied data.
    names.sort_by_key(|n| !n.ends_with("_cdc.idx"));
    let mut bytes = 0;
    for name in names {
        bytes += std::fs::copy(src.join(&name), dst.join(&name)).unwrap_or(0);
    }
    bytes
}

async fn cql(session: &Session, q: &str) {
    session
        .query_unpaged(q, &[])
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"));
}

/// Writes 10 rows every 10 ms for `secs`, each with `name = lat:<client write time µs>` and
/// `USING TIMESTAMP` of that time; ids start at `first_id`. Returns the number written.
async fn write_probes(session: &Arc<Session>, ks: &str, first_id: i32, secs: u64) -> usize {
    let insert = session
        .prepare(format!(
            "INSERT INTO {ks}.{} (id, name) VALUES (?, ?) USING TIMESTAMP ?",
            support::TABLE
        ))
        .await
        .expect("prepare probe");
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut id = first_id;
    let mut n = 0;
    while Instant::now() < until {
        tick.tick().await;
        for _ in 0..10 {
            let t = now_micros();
            session
                .execute_unpaged(&insert, (id, format!("lat:{t}"), t))
                .await
                .unwrap_or_else(|e| panic!("probe insert: {e}"));
            id += 1;
            n += 1;
        }
    }
    n
}

/// Reads `topic` (all partitions, from the end as of now) until `expected` probes written at or
/// after `since` (µs) arrived or `timeout`; returns each probe's receive time - write time in ms.
async fn probe_latencies(
    consumer: ReadCommittedConsumer,
    since: i64,
    expected: Arc<std::sync::atomic::AtomicUsize>,
    done_writing: Arc<AtomicBool>,
    timeout: Duration,
) -> Vec<f64> {
    let re = regex::Regex::new(r"lat:(\d{10,})").expect("regex");
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done_writing.load(Ordering::Relaxed) && out.len() >= expected.load(Ordering::Relaxed) {
            break;
        }
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            let received = now_micros();
            let text = String::from_utf8_lossy(m.payload.as_deref().unwrap_or_default());
            // One event may carry the value twice (e.g. Debezium's before/after): count it once.
            // Probes written before the measured window (while waiting for the first) are skipped.
            if let Some(c) = re.captures(&text)
                && let Ok(w) = c[1].parse::<i64>()
                && w >= since
            {
                out.push((received - w) as f64 / 1000.0);
            }
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

fn pct(sorted: &[f64], p: f64) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    format!("{:.0} ms", sorted[i])
}

async fn reader(kafka: &KafkaSettings, topic: &str, partitions: i32) -> ReadCommittedConsumer {
    let mut cs = ConsumerSettings::new(cdc_testkit::unique_name("bench-h2h-reader"));
    cs.operation_timeout_ms = 20_000;
    let (consumer, _events) = ReadCommittedConsumer::new(kafka, &cs).expect("consumer");
    let starts: Vec<_> = (0..partitions)
        .map(|p| (TopicPartition::new(topic, p), StartOffset::End))
        .collect();
    consumer.assign(&starts).expect("assign");
    consumer
}

/// Messages in `topic` (sum over partitions of high - low; exact for a non-transactional
/// producer, an over-count by the commit markers for a transactional one).
async fn topic_messages(admin: &TopicAdmin, topic: &str) -> u64 {
    admin
        .high_watermarks(topic)
        .await
        .map(|w| w.iter().map(|p| (p.high - p.low).max(0) as u64).sum())
        .unwrap_or(0)
}

/// One tool's numbers.
#[derive(Debug, Default, Clone)]
struct Result1 {
    events: u64,
    secs: f64,
    cpu_secs: f64,
    peak_rss_mib: f64,
    latencies_ms: Vec<f64>,
    probes_written: usize,
    note: String,
}

/// Kills a child (SIGTERM, then SIGKILL after 10 s) and reaps it.
fn stop_child(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Writes the connector's configuration into `dir`: a cassandra.yaml equal to the node's but with
/// every directory under `dir` (its `cdc_raw` is `cdc_raw_dir`), the driver's application.conf, a
/// logback.xml and debezium.properties.
fn debezium_conf(env: &StackEnv, dir: &Path, cdc_raw_dir: &Path, prefix: &str, http_port: u16) {
    let stack_dir = env
        .cassandra_cdc_raw
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let yaml = std::fs::read_to_string(stack_dir.join("conf/cassandra.yaml"))
        .expect("read the node's cassandra.yaml");
    let mut out = String::new();
    for line in yaml.lines() {
        let l = if line.starts_with("cdc_raw_directory:") {
            format!("cdc_raw_directory: {}", cdc_raw_dir.display())
        } else {
            let mut l = line.to_owned();
            for d in ["commitlog", "data", "saved_caches", "hints"] {
                let from = format!("{}/{d}", stack_dir.display());
                if l.trim_end().ends_with(&from) {
                    l = l.replace(&from, &dir.join(d).display().to_string());
                }
            }
            l
        };
        out.push_str(&l);
        out.push('\n');
    }
    for d in [
        "commitlog",
        "data",
        "saved_caches",
        "hints",
        "reloc",
        "offsets",
        "storage",
    ] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    std::fs::write(dir.join("cassandra.yaml"), out).expect("write cassandra.yaml");
    std::fs::write(
        dir.join("application.conf"),
        format!(
            "datastax-java-driver {{\n  basic.contact-points = [\"{}\"]\n  \
             basic.load-balancing-policy.local-datacenter = datacenter1\n}}\n",
            env.cassandra_cql
        ),
    )
    .expect("write application.conf");
    std::fs::write(
        dir.join("logback.xml"),
        "<configuration><appender name=\"E\" class=\"ch.qos.logback.core.ConsoleAppender\">\
         <target>System.err</target><encoder><pattern>%d{HH:mm:ss.SSS} %-5level %logger{36} %msg%n</pattern>\
         </encoder></appender><root level=\"WARN\"><appender-ref ref=\"E\"/></root></configuration>\n",
    )
    .expect("write logback.xml");
    let props = format!(
        "connector.name={prefix}\ntopic.prefix={prefix}\n\
         cassandra.config={dir}/cassandra.yaml\ncassandra.driver.config.file={dir}/application.conf\n\
         commit.log.relocation.dir={dir}/reloc\ncommit.log.real.time.processing.enabled=true\n\
         commit.log.marked.complete.poll.interval.ms=100\ncdc.dir.poll.interval.ms=100\n\
         offset.backing.store.dir={dir}/offsets\nhttp.port={http_port}\nsnapshot.mode=NEVER\n\
         kafka.producer.bootstrap.servers={bootstrap}\nkafka.producer.retries=3\n\
         kafka.producer.linger.ms=5\n\
         key.converter=org.apache.kafka.connect.json.JsonConverter\n\
         value.converter=org.apache.kafka.connect.json.JsonConverter\n\
         key.converter.schemas.enable=false\nvalue.converter.schemas.enable=false\n",
        dir = dir.display(),
        bootstrap = env.kafka_bootstrap,
    );
    std::fs::write(dir.join("debezium.properties"), props).expect("write debezium.properties");
}

fn spawn_debezium(dir: &Path) -> Child {
    let log = std::fs::File::create(dir.join("debezium.log")).expect("debezium.log");
    let err = log.try_clone().expect("debezium.log");
    Command::new("bash")
        .arg(repo_root().join("dev/bench/debezium.sh"))
        .arg("run")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("spawn dev/bench/debezium.sh run")
}

/// The last `n` distinct messages of a connector log (stack frames dropped; a message repeated
/// with only its timestamp changed is shown once with its count).
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: Vec<(String, usize)> = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("at ")) {
        // `HH:MM:SS.mmm LEVEL logger message`: compare without the timestamp.
        let key = line
            .split_once(' ')
            .map_or(line, |(_, rest)| rest)
            .to_owned();
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 += 1,
            None => out.push((key, 1)),
        }
    }
    out[out.len().saturating_sub(n)..]
        .iter()
        .map(|(l, c)| {
            if *c > 1 {
                format!("{l}  [x{c}]")
            } else {
                l.clone()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Debezium's producer needs its topics to exist (the stack's Kafka does not auto-create): one
/// per `cdc = true` table of the cluster, since the segments hold other tests' tables too.
/// Returns their names (deleted at the end of the run).
async fn create_debezium_topics(
    session: &Session,
    admin: &TopicAdmin,
    prefix: &str,
) -> Vec<String> {
    let rows = session
        .query_unpaged(
            "SELECT keyspace_name, table_name, cdc FROM system_schema.tables",
            &[],
        )
        .await
        .expect("system_schema.tables")
        .into_rows_result()
        .expect("rows");
    let tables: Vec<(String, String)> = rows
        .rows::<(String, String, Option<bool>)>()
        .expect("typed rows")
        .flatten()
        .filter(|(_, _, cdc)| *cdc == Some(true))
        .map(|(k, t, _)| (k, t))
        .collect();
    let topics: Vec<String> = tables
        .iter()
        .map(|(k, t)| format!("{prefix}.{k}.{t}"))
        .collect();
    futures::stream::iter(topics.clone())
        .map(|t| async move {
            let _ = admin.ensure_topic(&t, 1, 1, &BTreeMap::new()).await;
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    topics
}

/// Mirrors the live `cdc_raw` into `dst` for Debezium: hard-links each segment with id >=
/// `from` once, copies its index every 20 ms until the index says COMPLETED (then never again:
/// the connector deletes what it has processed).
async fn mirror(src: PathBuf, dst: PathBuf, from: i64, stop: Arc<AtomicBool>) {
    let mut linked: BTreeSet<String> = BTreeSet::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut last_idx: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(rd) = std::fs::read_dir(&src) {
            let mut names: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| segment_id(n).is_some_and(|id| id >= from))
                .collect();
            names.sort();
            for name in names {
                if name.ends_with(".log") {
                    if linked.insert(name.clone()) {
                        let _ = std::fs::hard_link(src.join(&name), dst.join(&name));
                    }
                } else if name.ends_with("_cdc.idx") && !finished.contains(&name) {
                    let log = name.replace("_cdc.idx", ".log");
                    if !linked.contains(&log) {
                        continue;
                    }
                    if let Ok(content) = std::fs::read(src.join(&name))
                        && last_idx.get(&name) != Some(&content)
                    {
                        let tmp = dst.join(format!(".{name}.tmp"));
                        if std::fs::write(&tmp, &content).is_ok() {
                            let _ = std::fs::rename(&tmp, dst.join(&name));
                        }
                        if String::from_utf8_lossy(&content).contains("COMPLETED") {
                            finished.insert(name.clone());
                        }
                        last_idx.insert(name, content);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: make bench-h2h"]
async fn head_to_head_with_debezium() {
    let env = StackEnv::load();
    let events: i32 = std::env::var("BENCH_H2H_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let lat_secs = bench::env_secs("BENCH_H2H_LATENCY_SECONDS", 20).as_secs();
    let load_before = bench::load_average();
    let kafka = KafkaSettings::new(&env.kafka_bootstrap, "bench-h2h");
    let admin = TopicAdmin::new(&kafka, Duration::from_secs(30)).expect("admin");
    let session = Arc::new(support::cassandra(&env).await);
    let ks = cdc_testkit::unique_name("bench_h2h");
    support::create_schema(&session, &ks).await;
    // The latency probes go to a table of their own, so neither tool has a backlog of it.
    let ks_lat = cdc_testkit::unique_name("bench_h2h_lat");
    support::create_schema(&session, &ks_lat).await;
    let work = tempfile::Builder::new()
        .prefix("cdc-bench-h2h-")
        .tempdir()
        .expect("tempdir");
    let ours_dir = work.path().join("ours_cdc_raw");
    let dbz_dir = work.path().join("debezium");
    let dbz_raw = dbz_dir.join("cdc_raw");

    // The backlog, copied once per tool.
    let from = max_segment_id(&env.cassandra_cdc_raw);
    let write_time = bench::insert_fake_patients(&session, &ks, support::TABLE, events).await;
    wait_synced(&env.cassandra_cdc_raw, from).await;
    let copied = copy_segments(&env.cassandra_cdc_raw, &ours_dir, from);
    copy_segments(&env.cassandra_cdc_raw, &dbz_raw, from);
    let expected = events as u64;

    // Ours: capture alone on its copy.
    let mut ours = Result1::default();
    {
        let t0 = Instant::now();
        let pipeline = RunningPipeline::start(
            &env,
            PipelineSpec::new("bench_h2h", [ks.clone()])
                .sinks(&[])
                .set("capture.cdc_raw_dir", ours_dir.display().to_string()),
        )
        .await;
        pipeline.kill9(Service::Masker);
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let n = pipeline
                .metric(Service::Capture, "cdc_capture_events_total", &[])
                .await
                .unwrap_or(0.0) as u64;
            if n >= expected || Instant::now() > deadline {
                ours.events = n;
                ours.secs = t0.elapsed().as_secs_f64();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(p) = pipeline.pid(Service::Capture).and_then(bench::proc_sample) {
            ours.cpu_secs = p.cpu_secs;
            ours.peak_rss_mib = p.peak_rss_kib as f64 / 1024.0;
        }
        pipeline.stop_all().await;

        // Latency: the capture on the live cdc_raw.
        let live = RunningPipeline::start(
            &env,
            PipelineSpec::new("bench_h2h_lat", [ks_lat.clone()]).sinks(&[]),
        )
        .await;
        live.kill9(Service::Masker);
        let topic = format!("cdc.raw.{ks_lat}.{}", support::TABLE);
        // The capture creates the topic with its first event (after scanning the shared cdc_raw).
        let started = Instant::now();
        while topic_messages(&admin, &topic).await == 0
            && started.elapsed() < Duration::from_secs(180)
        {
            write_probes(&session, &ks_lat, 10_000_000, 1).await;
        }
        let consumer = reader(&kafka, &topic, 4).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let expected_n = Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
        let done = Arc::new(AtomicBool::new(false));
        let lat = tokio::spawn(probe_latencies(
            consumer,
            now_micros(),
            Arc::clone(&expected_n),
            Arc::clone(&done),
            Duration::from_secs(lat_secs + 120),
        ));
        let n = write_probes(&session, &ks_lat, 11_000_000, lat_secs).await;
        ours.probes_written = n;
        expected_n.store(n, Ordering::Relaxed);
        done.store(true, Ordering::Relaxed);
        ours.latencies_ms = lat.await.expect("latency reader");
        live.stop_all().await;
    }

    // Debezium: install, then its copy; then the live mirror.
    let mut dbz = Result1::default();
    let version = Command::new("bash")
        .arg(repo_root().join("dev/bench/debezium.sh"))
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let install = Command::new("bash")
        .arg(repo_root().join("dev/bench/debezium.sh"))
        .arg("install")
        .output()
        .expect("run dev/bench/debezium.sh install");
    let dbz_ok = if !install.status.success() {
        dbz.note = format!(
            "`bash dev/bench/debezium.sh install` failed ({}):\n\n```\n{}\n```\n",
            install.status,
            String::from_utf8_lossy(&install.stderr)
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
        false
    } else {
        let prefix = cdc_testkit::unique_name("benchdbz");
        let created = create_debezium_topics(&session, &admin, &prefix).await;
        let topic = format!("{prefix}.{ks}.{}", support::TABLE);
        let lat_topic = format!("{prefix}.{ks_lat}.{}", support::TABLE);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(18999);
        debezium_conf(&env, &dbz_dir, &dbz_raw, &prefix, port);
        let t0 = Instant::now();
        let mut child = spawn_debezium(&dbz_dir);
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(900);
        let mut ok = true;
        loop {
            let n = topic_messages(&admin, &topic).await;
            if n >= expected {
                dbz.events = n;
                dbz.secs = t0.elapsed().as_secs_f64();
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                dbz.note = format!(
                    "The connector exited ({status}) after {n} of {expected} events; last log lines:\n\n```\n{}\n```\n",
                    log_tail(&dbz_dir.join("debezium.log"), 25)
                );
                ok = false;
                break;
            }
            if Instant::now() > deadline {
                dbz.note = format!(
                    "The connector delivered {n} of {expected} events in 900 s; last log lines:\n\n```\n{}\n```\n",
                    log_tail(&dbz_dir.join("debezium.log"), 25)
                );
                dbz.events = n;
                dbz.secs = t0.elapsed().as_secs_f64();
                ok = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(p) = bench::proc_sample(pid) {
            dbz.cpu_secs = p.cpu_secs;
            dbz.peak_rss_mib = p.peak_rss_kib as f64 / 1024.0;
        }
        stop_child(&mut child);

        if ok {
            // Latency: a fresh connector state on the live mirror.
            let mirror_dir = work.path().join("debezium-live");
            let mirror_raw = mirror_dir.join("cdc_raw");
            std::fs::create_dir_all(&mirror_raw).expect("mirror dir");
            debezium_conf(&env, &mirror_dir, &mirror_raw, &prefix, port);
            let stop = Arc::new(AtomicBool::new(false));
            let from = max_segment_id(&env.cassandra_cdc_raw);
            let m = tokio::spawn(mirror(
                env.cassandra_cdc_raw.clone(),
                mirror_raw.clone(),
                from,
                Arc::clone(&stop),
            ));
            let mut child = spawn_debezium(&mirror_dir);
            // Started once its first probe arrives.
            let started = Instant::now();
            while topic_messages(&admin, &lat_topic).await == 0
                && started.elapsed() < Duration::from_secs(180)
            {
                write_probes(&session, &ks_lat, 12_000_000, 1).await;
            }
            let consumer = reader(&kafka, &lat_topic, 1).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let expected_n = Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
            let done = Arc::new(AtomicBool::new(false));
            let lat = tokio::spawn(probe_latencies(
                consumer,
                now_micros(),
                Arc::clone(&expected_n),
                Arc::clone(&done),
                Duration::from_secs(lat_secs + 120),
            ));
            let n = write_probes(&session, &ks_lat, 13_000_000, lat_secs).await;
            dbz.probes_written = n;
            expected_n.store(n, Ordering::Relaxed);
            done.store(true, Ordering::Relaxed);
            dbz.latencies_ms = lat.await.expect("latency reader");
            stop.store(true, Ordering::Relaxed);
            let _ = m.await;
            stop_child(&mut child);
            if dbz.latencies_ms.is_empty() {
                dbz.note = format!(
                    "Write -> Kafka latency of the connector: not measured. No probe reached its topic while it \
                     ran on the live mirror (it did process and delete the mirrored segments, so it read them, \
                     but emitted none of the probe rows within the run); the cause was not found in the time \
                     this run had. It was not pointed at the stack's own `cdc_raw` instead because it deletes \
                     processed segments there, which would break every other test sharing the stack. Last \
                     distinct log lines:\n\n```\n{}\n```\n",
                    log_tail(&mirror_dir.join("debezium.log"), 15)
                );
            }
        }
        futures::stream::iter(created)
            .map(|t| {
                let admin = &admin;
                async move {
                    let _ = admin.delete_topic(&t).await;
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        true
    };
    cql(&session, &format!("DROP KEYSPACE IF EXISTS {ks}")).await;
    cql(&session, &format!("DROP KEYSPACE IF EXISTS {ks_lat}")).await;

    let row = |name: &str, r: &Result1| {
        let rate = if r.secs > 0.0 {
            r.events as f64 / r.secs
        } else {
            0.0
        };
        let per_m = if r.events > 0 {
            format!("{:.0}", r.cpu_secs * 1e6 / r.events as f64)
        } else {
            "-".into()
        };
        format!(
            "| {name} | {} in {:.1} s | {rate:.0} | {:.1} | {per_m} | {:.0} MiB | {} | {} | {} | {} of {} |",
            r.events,
            r.secs,
            r.cpu_secs,
            r.peak_rss_mib,
            pct(&r.latencies_ms, 0.5),
            pct(&r.latencies_ms, 0.95),
            pct(&r.latencies_ms, 0.99),
            r.latencies_ms.len(),
            r.probes_written
        )
    };
    let mut report = String::new();
    let _ = writeln!(
        report,
        "Backlog: {events} inserts written in {:.1} s, {:.1} MiB of segments copied per tool. Latency: {lat_secs} s \
         of 1,000 probes/s per tool. Machine load (`uptime`) before: {load_before}; at the end: {}.\n",
        write_time.as_secs_f64(),
        copied as f64 / 1048576.0,
        bench::load_average()
    );
    let _ = writeln!(
        report,
        "| Tool | backlog events -> Kafka | events/s (incl. start-up) | CPU-seconds | CPU-seconds per million events | peak RSS | write -> Kafka p50 | p95 | p99 | probes received of written |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let _ = writeln!(report, "{}", row("cdc-pipeline `capture`", &ours));
    let _ = writeln!(
        report,
        "{}",
        row(
            &format!("Debezium `debezium-connector-cassandra-5` {version}"),
            &dbz
        )
    );
    if !dbz.note.is_empty() {
        let _ = writeln!(report, "\n{}", dbz.note);
    }
    if dbz
        .latencies_ms
        .get(dbz.latencies_ms.len() / 2)
        .is_some_and(|p50| *p50 > 5_000.0)
    {
        let _ = writeln!(
            report,
            "\nThe connector's write -> Kafka latency above tracks commit-log segment completion (tens of \
             seconds: a 4 MiB segment fills at the rate the whole shared node is written), i.e. on the mirror \
             it emitted a segment's rows once the segment was COMPLETED rather than as its `_cdc.idx` offset \
             advanced. Whether its real-time reading would engage on the node's own `cdc_raw` was not \
             tested (it deletes processed segments there, which would break every other test sharing the \
             stack), so treat this figure as an upper bound for the connector, not a like-for-like result."
        );
    }
    println!("\n{report}");
    let _ = dbz_ok;

    if bench::writing_docs() {
        let body = format!(
            "`make bench-h2h` (`tests/bench_h2h.rs`, `dev/bench/debezium.sh`), run on {date}.\n\n\
             Machine:\n\n{machine}- Debezium: `io.debezium:debezium-connector-cassandra-5:{version}` from Maven Central, \
             standalone mode (`io.debezium.connector.cassandra.CassandraConnectorTask`), OpenJDK 17, `-Xmx1g`, G1, \
             class path = the node's own Cassandra 5.0.6 jars + the connector's; JSON converters without schemas; \
             real-time commit-log processing on (`commit.log.real.time.processing.enabled`), 100 ms polls.\n\
             - Ours: the `capture` release binary (100 ms poll, 50 ms batch linger, Kafka transactions, JSON).\n\n\
             Why 3.6.1.Final (the version of the rest of Debezium) is not used: Maven Central does not serve \
             `debezium-connector-cassandra-5:3.6.1.Final` (`mvn dependency:get -Dartifact=io.debezium:debezium-connector-cassandra-5:3.6.1.Final` \
             -> `Could not find artifact ... in central`); 3.4.0.Final is served, but its POM's parent \
             `io.debezium:debezium-connector-reactor-cassandra:pom:3.4.0.Final` is not, so Maven cannot resolve its \
             dependencies: `dev/bench/debezium.sh install` fetches the two connector jars alone and lists the \
             dependencies that parent declares by hand.\n\n\
             Method: both tools consume (Debezium deletes) `cdc_raw` segments and the stack's `cdc_raw` is shared \
             with every other test, so each reads its own copy of the backlog's segments (they also hold other \
             tests' mutations: ours skips them by its keyspace filter, Debezium emits them to topics created \
             for every `cdc = true` table beforehand, and only the benchmark table's topic is counted). \
             They run one after the other, never at the same time. Events/s = events of the table in Kafka / \
             (process spawn -> last event in Kafka), start-up included (the JVM's is a few seconds). CPU-seconds \
             and peak RSS (`VmHWM`) of the process at that moment. Latency = receive time by a read_committed \
             consumer - client write time (`USING TIMESTAMP`); ours on the live `cdc_raw`, Debezium on a mirror \
             (segments hard-linked as they appear, `_cdc.idx` copied every 20 ms: up to ~20 ms added). Both \
             include the node's 500 ms periodic commit-log sync. One run on a shared 2-core machine (load above).\n\n\
             {report}",
            date = bench::today(),
            machine = bench::machine_description(),
        );
        bench::write_section("Head-to-head: Debezium", &body);
    }
    assert!(
        ours.events >= expected,
        "our capture delivered {} of {expected} events",
        ours.events
    );
}
