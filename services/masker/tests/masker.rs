//! The masker against the running stack (Kafka + the vault database). Each test produces its own
//! raw events (json_codec envelopes) to fresh topics, runs the masking pipeline in-process (or the
//! binary) and reads the masked topic read_committed. Fails, never skips, without the stack.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cdc_kafka::{
    ConsumerSettings, IdempotentProducer, InboundMessage, KafkaSettings, ProducerSettings,
    ReadCommittedConsumer, StartOffset, TopicAdmin, TopicPartition, TransactionalProducer,
    header_value,
};
use cdc_mask::{KeyRing, PgTokenVault, TokenVault};
use cdc_telemetry::{CancellationToken, HealthState, MaskerMetrics};
use cdc_testkit::{StackEnv, unique_name};
use masker::{AuditWriter, MaskerOptions, Pipeline, PolicySource, watch_policy};
use serde_json::{Value as Json, json};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(60);
const AES_KEY_HEX: &str = "2b7e151628aed2a6abf7158809cf4f3c2b7e151628aed2a6abf7158809cf4f3c";

fn kafka(client: &str) -> KafkaSettings {
    KafkaSettings::new(StackEnv::load().kafka_bootstrap, unique_name(client))
}

fn producer_settings() -> ProducerSettings {
    ProducerSettings {
        operation_timeout_ms: 15_000,
        linger_ms: 1,
        ..ProducerSettings::default()
    }
}

fn vault_admin_url() -> String {
    let pg = StackEnv::load().postgres_url;
    let base = pg
        .rsplit_once('/')
        .map_or(pg.as_str(), |(b, _)| b)
        .to_owned();
    base + "/vault"
}

fn vault_writer_url() -> String {
    let admin = vault_admin_url();
    let host = admin
        .split_once('@')
        .map_or(admin.as_str(), |(_, h)| h)
        .to_owned();
    format!("postgres://cdc_vault_writer:dev-only-vault-writer@{host}")
}

#[derive(Default)]
struct CapturedAudit(Mutex<Vec<String>>);

impl AuditWriter for CapturedAudit {
    fn write_line(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_owned());
    }
}

fn keys() -> KeyRing {
    let mut k = KeyRing::new();
    k.insert("hmac-test", b"fake-hmac-key-for-tests-only".to_vec());
    k.insert("tok-test", b"fake-token-key-for-tests-only".to_vec());
    k.insert("vault-test", AES_KEY_HEX.as_bytes().to_vec());
    k
}

struct Running {
    cancel: CancellationToken,
    handle: JoinHandle<Result<(), masker::Error>>,
    audit: Arc<CapturedAudit>,
    metrics: MaskerMetrics,
    registry: cdc_telemetry::Registry,
    health: HealthState,
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        let r = tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("masker stops");
        r.expect("join").expect("masker ran cleanly");
    }
}

struct Setup {
    keyspace: String,
    raw_topic: String,
    dlq_topic: String,
    vault_schema: Option<String>,
}

async fn setup(with_vault: bool) -> Setup {
    let keyspace = unique_name("mk");
    let raw_topic = cdc_model::raw_topic(&keyspace, "customers").unwrap();
    let admin = TopicAdmin::new(&kafka("admin"), Duration::from_secs(15)).unwrap();
    admin
        .ensure_topic(&raw_topic, 3, 1, &BTreeMap::new())
        .await
        .unwrap();
    let dlq_topic = format!("cdc.dlq.{}", unique_name("masker"));
    admin
        .ensure_topic(&dlq_topic, 1, 1, &BTreeMap::new())
        .await
        .unwrap();
    let vault_schema = if with_vault {
        let s = unique_name("tv");
        cdc_mask::migrate(&vault_admin_url(), &s).await.unwrap();
        Some(s)
    } else {
        None
    };
    Setup {
        keyspace,
        raw_topic,
        dlq_topic,
        vault_schema,
    }
}

async fn start(
    setup: &Setup,
    policy: &Path,
    vault_url: Option<String>,
    vault_retries: usize,
) -> Running {
    start_in_group(
        setup,
        policy,
        vault_url,
        vault_retries,
        unique_name("masker-group"),
    )
    .await
}

async fn start_in_group(
    setup: &Setup,
    policy: &Path,
    vault_url: Option<String>,
    vault_retries: usize,
    group: String,
) -> Running {
    let source = PolicySource {
        path: policy.to_owned(),
        keys: keys(),
        vault_key_id: setup.vault_schema.as_ref().map(|_| "vault-test".to_owned()),
    };
    let masker = Arc::new(source.build().expect("policy builds"));
    let (tx, rx) = tokio::sync::watch::channel(masker);
    let cancel = CancellationToken::new();
    let (_hup_tx, hup_rx) = tokio::sync::watch::channel(0u64);
    tokio::spawn(watch_policy(
        source,
        tx,
        hup_rx,
        Duration::from_millis(200),
        cancel.clone(),
    ));
    let vault: Option<Arc<dyn TokenVault>> = setup.vault_schema.as_ref().map(|s| {
        Arc::new(
            PgTokenVault::new(
                vault_url.clone().unwrap_or_else(vault_writer_url),
                s.clone(),
                Duration::from_secs(2),
            )
            .unwrap(),
        ) as Arc<dyn TokenVault>
    });
    let settings = kafka("masker");
    let mut consumer_settings = ConsumerSettings::new(group);
    consumer_settings.session_timeout_ms = 10_000;
    let (consumer, rebalances) = ReadCommittedConsumer::new(&settings, &consumer_settings).unwrap();
    let registry = cdc_telemetry::new_registry();
    let metrics = MaskerMetrics::new(&registry).unwrap();
    let audit = Arc::new(CapturedAudit::default());
    let health = HealthState::new();
    let pipeline = Pipeline {
        options: MaskerOptions {
            topics_pattern: format!("^cdc\\.raw\\.{}\\..*", setup.keyspace),
            dlq_topic: setup.dlq_topic.clone(),
            batch_max_events: 200,
            batch_linger: Duration::from_millis(100),
            masked_topic_replication: 1,
            masked_topic_config: BTreeMap::new(),
            vault_max_retries: vault_retries,
            retry_delay: Duration::from_millis(200),
        },
        consumer,
        rebalances,
        producer: TransactionalProducer::new(
            &settings,
            &producer_settings(),
            &unique_name("masker-txn"),
        )
        .unwrap(),
        admin: TopicAdmin::new(&settings, Duration::from_secs(15)).unwrap(),
        masker: rx,
        vault,
        metrics: metrics.clone(),
        health: health.clone(),
        audit: audit.clone(),
    };
    let handle = tokio::spawn(pipeline.run(cancel.clone()));
    Running {
        cancel,
        handle,
        audit,
        metrics,
        registry,
        health,
    }
}

/// A fake customer row; every PII value embeds `i` so each is distinct.
struct Row {
    id: i32,
    email: String,
    ssn: String,
    mrn: String,
    notes: String,
}

impl Row {
    fn new(i: i32) -> Row {
        Row {
            id: i,
            email: format!("fake.user{i}@example.test"),
            ssn: format!("000-00-{i:04}"),
            mrn: format!("MRN-FAKE-{i:06}"),
            notes: format!("fake-note-{i}"),
        }
    }

    fn pii(&self) -> [&str; 3] {
        [&self.email, &self.ssn, &self.mrn]
    }
}

fn cell(value: Json) -> Json {
    json!({"writetime": 1_700_000_000_000_000i64, "ttl": null, "expires_at": null, "value": value})
}

fn envelope(keyspace: &str, row: &Row) -> Vec<u8> {
    let j = json!({
        "op": "c", "ts_ms": 1_700_000_000_000i64, "correlation_id": format!("h:1:{}:0", row.id),
        "source": {"cluster": "test", "host_id": "00000000-0000-0000-0000-000000000001",
                   "keyspace": keyspace, "table": "customers",
                   "table_id": "00000000-0000-0000-0000-000000000002", "schema_version": 1,
                   "segment_id": 1, "segment_position": row.id, "index": 0},
        "static": false,
        "columns": [
            {"name": "id", "type": "int", "kind": "partition_key"},
            {"name": "email", "type": "text", "kind": "regular"},
            {"name": "ssn", "type": "text", "kind": "regular"},
            {"name": "medical_record_number", "type": "text", "kind": "regular"},
            {"name": "name", "type": "text", "kind": "regular"},
            {"name": "city", "type": "text", "kind": "regular"},
            {"name": "age", "type": "int", "kind": "regular"},
            {"name": "notes", "type": "text", "kind": "regular"}
        ],
        "key": {"id": row.id}, "clustering": {},
        "liveness": {"writetime": 1_700_000_000_000_000i64, "ttl": null, "expires_at": null},
        "deletion": null,
        "after": {
            "email": cell(json!(row.email)),
            "ssn": cell(json!(row.ssn)),
            "medical_record_number": cell(json!(row.mrn)),
            "name": cell(json!(format!("Fake Name {}", row.id))),
            "city": cell(json!("Testville")),
            "age": cell(json!(30 + row.id % 50)),
            "notes": cell(json!(row.notes))
        }
    });
    serde_json::to_vec(&j).unwrap()
}

async fn produce(setup: &Setup, rows: &[Row]) {
    let p = IdempotentProducer::new(&kafka("raw"), &producer_settings()).unwrap();
    for row in rows {
        let key = format!("[{}]", row.id);
        let headers = vec![
            (
                "cdc-correlation-id".to_owned(),
                format!("h:1:{}:0", row.id).into_bytes(),
            ),
            (
                "traceparent".to_owned(),
                b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_vec(),
            ),
        ];
        let _pending = p
            .send(
                &setup.raw_topic,
                None,
                Some(key.as_bytes()),
                Some(&envelope(&setup.keyspace, row)),
                &headers,
            )
            .await
            .unwrap();
    }
    p.flush().await.unwrap();
}

/// Reads `topic` read_committed from the beginning until `n` messages arrived (or fails after WAIT).
async fn read(topic: &str, n: usize) -> Vec<InboundMessage> {
    read_within(topic, n, WAIT).await
}

async fn read_within(topic: &str, n: usize, within: Duration) -> Vec<InboundMessage> {
    let admin = TopicAdmin::new(&kafka("admin"), Duration::from_secs(15)).unwrap();
    let deadline = tokio::time::Instant::now() + within;
    // The masker creates the masked topic on its first batch.
    let partitions = loop {
        match admin.describe(topic).await {
            Ok(d) if !d.partitions.is_empty() => break d.partitions.len(),
            _ if tokio::time::Instant::now() > deadline => panic!("topic {topic} never appeared"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let (c, _) = ReadCommittedConsumer::new(
        &kafka("reader"),
        &ConsumerSettings::new(unique_name("reader")),
    )
    .unwrap();
    let starts: Vec<_> = (0..partitions)
        .map(|p| {
            (
                TopicPartition::new(topic, i32::try_from(p).unwrap()),
                StartOffset::Beginning,
            )
        })
        .collect();
    c.assign(&starts).unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Ok(m) => out.push(m.unwrap()),
            Err(_) => panic!("read {} of {n} messages from {topic}", out.len()),
        }
    }
    // Anything beyond n would be a duplicate: give it a moment to show up.
    if let Ok(m) = tokio::time::timeout(Duration::from_secs(2), c.recv()).await {
        out.push(m.unwrap());
    }
    out
}

fn masked_topic(setup: &Setup) -> String {
    cdc_model::masked_topic(&setup.keyspace, "customers").unwrap()
}

fn write_policy(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("masking-policy.yaml");
    // Write then rename so the watcher never reads half a file.
    let tmp = dir.join("masking-policy.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

const POLICY_V1: &str = r#"
version: 1
hash_key_id: hmac-test
token_key_id: tok-test
tables:
  KS.customers:
    email: {class: pii, strategy: hash}
    ssn: {class: pii, strategy: hash}
    medical_record_number: {class: phi, strategy: tokenize}
"#;

fn policy_text(setup: &Setup, template: &str) -> String {
    template.replace("KS", &setup.keyspace)
}

fn all_bytes(m: &InboundMessage) -> Vec<u8> {
    let mut b = m.key.clone().unwrap_or_default();
    b.extend(m.payload.clone().unwrap_or_default());
    for (k, v) in &m.headers {
        b.extend(k.as_bytes());
        b.extend(v);
    }
    b
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn us2_pii_is_hashed_phi_tokenized_and_the_rest_stays_readable() {
    let setup = setup(true).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), &policy_text(&setup, POLICY_V1));
    let running = start(&setup, &policy, None, 3).await;
    let rows: Vec<Row> = (0..50).map(Row::new).collect();
    produce(&setup, &rows).await;
    let masked = read(&masked_topic(&setup), rows.len()).await;
    assert_eq!(masked.len(), rows.len(), "exactly once");

    let (admin, conn) = tokio_postgres::connect(&vault_admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let schema = setup.vault_schema.clone().unwrap();
    let mut ids = Vec::new();
    for m in &masked {
        assert_eq!(
            header_value(&m.headers, "cdc-policy-version"),
            Some(&b"1"[..])
        );
        assert!(
            header_value(&m.headers, "traceparent").is_some(),
            "trace context continues"
        );
        let event = cdc_model::json_codec::decode_event(m.payload.as_deref().unwrap()).unwrap();
        let text = |c: &str| match &event.cell(c).unwrap().change {
            cdc_model::CellValue::Set {
                value: cdc_model::CqlValue::Text(s),
            } => s.clone(),
            other => panic!("{c}: {other:?}"),
        };
        assert!(text("email").starts_with("hash_"));
        assert!(text("ssn").starts_with("hash_"));
        let token = text("medical_record_number");
        assert!(token.starts_with("tok_"));
        let n: i64 = admin
            .query_one(
                &format!("SELECT count(*) FROM {schema}.tokens WHERE token = $1"),
                &[&token],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "vault row for the token");
        assert!(text("name").starts_with("Fake Name "));
        assert_eq!(text("city"), "Testville");
        let cdc_model::CqlValue::Int(id) = event.partition_key[0].value else {
            panic!()
        };
        assert!(
            matches!(&event.cell("age").unwrap().change, cdc_model::CellValue::Set { value: cdc_model::CqlValue::Int(a) } if *a == 30 + id % 50)
        );
        assert_eq!(m.key.as_deref(), Some(format!("[{id}]").as_bytes()));
        ids.push(id);
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..50).collect::<Vec<_>>());

    // No raw PII anywhere in the masked topic (keys, payloads, headers) nor in the audit lines.
    for m in &masked {
        let b = all_bytes(m);
        for row in &rows {
            for pii in row.pii() {
                assert!(!contains(&b, pii), "raw PII found in the masked topic");
            }
        }
    }
    let audit = running.audit.0.lock().unwrap().clone();
    assert!(!audit.is_empty());
    let joined = audit.join("\n");
    for row in &rows {
        for pii in row.pii() {
            assert!(!joined.contains(pii), "raw PII found in the audit log");
        }
    }
    let first: Json = serde_json::from_str(&audit[0]).unwrap();
    let table = format!("{}.customers", setup.keyspace);
    assert_eq!(first["policy_version"], 1);
    assert_eq!(
        first["tables"][&table]["columns"]["medical_record_number"]["strategy"],
        "tokenize"
    );
    assert!(
        first["tables"][&table]["correlation_ids"][0]
            .as_str()
            .unwrap()
            .starts_with("h:1:")
    );

    assert!(running.metrics.transactions_committed.get() >= 1);
    assert_eq!(running.metrics.masked_fields("tokenize").get(), 50);
    assert_eq!(running.metrics.policy_version.get(), 1);
    assert!(running.metrics.lag_seconds.get() > 0.0);
    let snapshot = running.health.snapshot();
    assert!(snapshot.ready, "{snapshot:?}");
    let deps: Vec<&str> = snapshot
        .dependencies
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(deps, vec!["kafka", "token_vault"]);
    let text = cdc_telemetry::metrics::encode_text(&running.registry).unwrap();
    assert!(text.contains("cdc_masker_events_total"));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_change_while_running_masks_later_events_only() {
    let setup = setup(true).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), &policy_text(&setup, POLICY_V1));
    let running = start(&setup, &policy, None, 3).await;
    let before: Vec<Row> = (0..10).map(Row::new).collect();
    produce(&setup, &before).await;
    let first = read(&masked_topic(&setup), before.len()).await;
    assert_eq!(first.len(), 10);

    let v2 =
        POLICY_V1.replace("version: 1", "version: 2") + "    notes: {class: pii, strategy: hash}\n";
    write_policy(dir.path(), &policy_text(&setup, &v2));
    let deadline = tokio::time::Instant::now() + WAIT;
    // The reload is visible in the metric once a batch ran under it; wait for the file to be read.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after: Vec<Row> = (10..20).map(Row::new).collect();
    produce(&setup, &after).await;
    let all = read(&masked_topic(&setup), 20).await;
    assert_eq!(all.len(), 20, "exactly once");
    for m in &all {
        let event = cdc_model::json_codec::decode_event(m.payload.as_deref().unwrap()).unwrap();
        let cdc_model::CqlValue::Int(id) = event.partition_key[0].value else {
            panic!()
        };
        let notes = match &event.cell("notes").unwrap().change {
            cdc_model::CellValue::Set {
                value: cdc_model::CqlValue::Text(s),
            } => s.clone(),
            other => panic!("{other:?}"),
        };
        let version = header_value(&m.headers, "cdc-policy-version").unwrap();
        if id < 10 {
            assert_eq!(
                notes,
                format!("fake-note-{id}"),
                "earlier events are never re-masked"
            );
            assert_eq!(version, b"1");
        } else {
            assert!(
                notes.starts_with("hash_"),
                "later events follow the new policy"
            );
            assert_eq!(version, b"2");
        }
    }
    assert!(tokio::time::Instant::now() < deadline);
    assert_eq!(running.metrics.policy_version.get(), 2);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmaskable_events_and_vault_outage_go_to_the_dlq_never_unmasked() {
    let setup = setup(true).await;
    let dir = tempfile::tempdir().unwrap();
    // `notes` matches a custom default rule and the policy says fail for unclassified matches.
    let text = policy_text(&setup, POLICY_V1)
        + "on_unclassified_match: fail\ndefault_rules:\n  - {name: notes, pattern: '^notes$', class: pii, strategy: hash}\n";
    let policy = write_policy(dir.path(), &text);
    let running = start(&setup, &policy, None, 1).await;
    let rows: Vec<Row> = (0..5).map(Row::new).collect();
    produce(&setup, &rows).await;
    let dead = read(&setup.dlq_topic, rows.len()).await;
    assert_eq!(dead.len(), rows.len());
    for m in &dead {
        let letter = cdc_model::DeadLetter::from_json(m.payload.as_deref().unwrap()).unwrap();
        assert!(
            letter.error_message.contains("`notes`"),
            "{}",
            letter.error_message
        );
        assert_eq!(letter.stage, "masker");
        assert_eq!(letter.topic, setup.raw_topic);
        for row in &rows {
            for v in row.pii().into_iter().chain([row.notes.as_str()]) {
                assert!(!letter.error_message.contains(v));
            }
        }
    }
    assert_eq!(running.metrics.dlq_events.get(), 5);
    running.stop().await;

    // A vault that cannot be reached: tokenized events are refused, nothing unmasked goes out.
    let setup = Setup {
        dlq_topic: format!("cdc.dlq.{}", unique_name("masker")),
        ..setup
    };
    TopicAdmin::new(&kafka("admin"), Duration::from_secs(15))
        .unwrap()
        .ensure_topic(&setup.dlq_topic, 1, 1, &BTreeMap::new())
        .await
        .unwrap();
    let policy = write_policy(dir.path(), &policy_text(&setup, POLICY_V1));
    let running = start(
        &setup,
        &policy,
        Some("postgres://cdc_vault_writer:x@127.0.0.1:1/vault".into()),
        1,
    )
    .await;
    let dead = read(&setup.dlq_topic, rows.len()).await;
    assert_eq!(dead.len(), rows.len());
    for m in &dead {
        let letter = cdc_model::DeadLetter::from_json(m.payload.as_deref().unwrap()).unwrap();
        assert!(
            letter.error_message.contains("medical_record_number"),
            "{}",
            letter.error_message
        );
        assert!(
            letter.error_message.contains("vault"),
            "{}",
            letter.error_message
        );
    }
    running.stop().await;
}

#[test]
fn bad_policies_fail_at_start_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_policy(
        dir.path(),
        "version: 1\nhash_key_id: hmac-test\ntables:\n  a.b:\n    email: {class: pii, strategy: scramble}\n",
    );
    let source = PolicySource {
        path: path.clone(),
        keys: keys(),
        vault_key_id: None,
    };
    let msg = source.build().unwrap_err().to_string();
    assert!(
        msg.contains(&path.display().to_string())
            && msg.contains("tables.a.b.email.strategy")
            && msg.contains("scramble"),
        "{msg}"
    );

    let path = write_policy(
        dir.path(),
        "version: 1\nhash_key_id: hmac-test\ntables:\n  a.b:\n    ssn: {class: pii, strategy: hash, key_id: hmac-missing}\n",
    );
    let source = PolicySource {
        path: path.clone(),
        keys: keys(),
        vault_key_id: None,
    };
    let msg = source.build().unwrap_err().to_string();
    assert!(
        msg.contains(&path.display().to_string())
            && msg.contains("tables.a.b.ssn.key_id")
            && msg.contains("hmac-missing"),
        "{msg}"
    );
}

#[test]
fn masker_binary_refuses_to_start_with_a_policy_naming_a_missing_secret() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), "version: 1\nhash_key_id: hmac-2025\n");
    let config = dir.path().join("pipeline.yaml");
    std::fs::write(
        &config,
        format!(
            "masker:\n  policy_file: {}\n  keys:\n    other-key: plain:fake-dev-key\n",
            policy.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_masker"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&policy.display().to_string())
            && stderr.contains("hash_key_id")
            && stderr.contains("hmac-2025"),
        "{stderr}"
    );
    assert!(!stderr.contains("fake-dev-key"));
}

/// Kills the masker process when dropped (also on a failed assertion).
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_binary(config: &Path, instance: &str, log: &Path) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Proc(
        std::process::Command::new(env!("CARGO_BIN_EXE_masker"))
            .arg("--config")
            .arg(config)
            .env("CDC_INSTANCE_ID", instance)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_three_times_during_10000_events_is_exactly_once_and_fully_masked() {
    const N: i32 = 10_000;
    let setup = setup(true).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), &policy_text(&setup, POLICY_V1));
    let config = dir.path().join("pipeline.yaml");
    let schema = setup.vault_schema.clone().unwrap();
    std::fs::write(
        &config,
        format!(
            r#"kafka:
  bootstrap_servers: {bootstrap}
  replication_factor: 1
masker:
  policy_file: {policy}
  group_id: {group}
  topics_pattern: '^cdc\.raw\.{ks}\..*'
  dlq_topic: {dlq}
  batch_max_events: 500
  batch_linger_ms: 50
  session_timeout_ms: 6000
  keys:
    hmac-test: plain:fake-hmac-key-for-tests-only
    tok-test: plain:fake-token-key-for-tests-only
    vault-test: plain:{aes}
  vault:
    url: plain:{vault}
    schema: {schema}
    encryption_key_id: vault-test
  admin:
    listen_addr: 127.0.0.1:{port}
telemetry:
  log_level: warn
"#,
            bootstrap = StackEnv::load().kafka_bootstrap,
            policy = policy.display(),
            group = unique_name("masker-group"),
            ks = setup.keyspace,
            dlq = setup.dlq_topic,
            aes = AES_KEY_HEX,
            vault = vault_writer_url(),
            port = free_port(),
        ),
    )
    .unwrap();
    let instance = unique_name("kill9");
    let log = dir.path().join("masker.log");

    let rows: Vec<Row> = (0..N).map(Row::new).collect();
    let producer = {
        let setup = Setup {
            keyspace: setup.keyspace.clone(),
            raw_topic: setup.raw_topic.clone(),
            dlq_topic: setup.dlq_topic.clone(),
            vault_schema: None,
        };
        tokio::spawn(async move {
            for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
                let rows: Vec<Row> = chunk.iter().map(|i| Row::new(*i)).collect();
                produce(&setup, &rows).await;
                tokio::time::sleep(Duration::from_millis(1_500)).await;
            }
        })
    };
    let admin = TopicAdmin::new(&kafka("admin"), Duration::from_secs(15)).unwrap();
    let masked = masked_topic(&setup);
    let progress = async |admin: &TopicAdmin| -> i64 {
        admin
            .high_watermarks(&masked)
            .await
            .map_or(0, |w| w.iter().map(|p| p.high).sum())
    };
    for round in 0..3 {
        let mut p = spawn_binary(&config, &instance, &log);
        // Let it make some progress (commit at least one batch beyond the previous round), then kill -9.
        let before = progress(&admin).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while progress(&admin).await <= before && tokio::time::Instant::now() < deadline {
            assert!(
                p.0.try_wait().unwrap().is_none(),
                "masker exited early: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(300 + 200 * round)).await;
        assert!(
            !producer.is_finished(),
            "kill {round} must land while events are still flowing"
        );
        p.0.kill().unwrap(); // SIGKILL
        let _ = p.0.wait();
    }
    producer.await.unwrap();
    let _last = spawn_binary(&config, &instance, &log);
    let out = read_within(&masked, rows.len(), Duration::from_secs(300)).await;
    assert_eq!(out.len(), rows.len(), "no duplicates (read_committed)");
    let mut seen = std::collections::BTreeSet::new();
    for m in &out {
        let b = all_bytes(m);
        let event = cdc_model::json_codec::decode_event(m.payload.as_deref().unwrap()).unwrap();
        let cdc_model::CqlValue::Int(id) = event.partition_key[0].value else {
            panic!()
        };
        assert!(seen.insert(id), "duplicate event {id}");
        let row = &rows[usize::try_from(id).unwrap()];
        for pii in row.pii() {
            assert!(!contains(&b, pii), "unmasked PII for event {id}");
        }
        assert!(matches!(&event.cell("email").unwrap().change,
            cdc_model::CellValue::Set { value: cdc_model::CqlValue::Text(s) } if s.starts_with("hash_")));
    }
    assert_eq!(seen.len(), rows.len(), "none missing");
}

#[tokio::test]
async fn sighup_reloads_and_a_broken_edit_keeps_the_policy_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_policy(dir.path(), "version: 1\nhash_key_id: hmac-test\n");
    let source = PolicySource {
        path: path.clone(),
        keys: keys(),
        vault_key_id: None,
    };
    let (tx, mut rx) = tokio::sync::watch::channel(Arc::new(source.build().unwrap()));
    let (hup_tx, hup_rx) = tokio::sync::watch::channel(0u64);
    let cancel = CancellationToken::new();
    // Polling is effectively off: only SIGHUP triggers a reload here.
    let watcher = tokio::spawn(watch_policy(
        source,
        tx,
        hup_rx,
        Duration::from_secs(3_600),
        cancel.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;

    write_policy(dir.path(), "version: 2\nhash_key_id: hmac-test\n");
    hup_tx.send_modify(|n| *n += 1);
    tokio::time::timeout(WAIT, rx.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rx.borrow().policy().version, 2);

    write_policy(
        dir.path(),
        "version: 3\nhash_key_id: hmac-test\ntables:\n  a.b:\n    c: {class: pii, strategy: nope}\n",
    );
    hup_tx.send_modify(|n| *n += 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rx.borrow().policy().version,
        2,
        "a broken policy never replaces a working one"
    );
    cancel.cancel();
    watcher.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_partitions_and_a_leaving_one_loses_nothing() {
    const N: i32 = 3_000;
    let setup = setup(true).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), &policy_text(&setup, POLICY_V1));
    let group = unique_name("masker-group");
    let a = start_in_group(&setup, &policy, None, 3, group.clone()).await;
    let b = start_in_group(&setup, &policy, None, 3, group).await;
    let rows: Vec<Row> = (0..N).map(Row::new).collect();
    produce(&setup, &rows[..1_500]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // One instance leaves mid-stream (graceful stop): its partitions move to the other.
    a.stop().await;
    produce(&setup, &rows[1_500..]).await;
    let out = read_within(&masked_topic(&setup), rows.len(), Duration::from_secs(120)).await;
    assert_eq!(out.len(), rows.len(), "no duplicates");
    let mut seen = std::collections::BTreeSet::new();
    for m in &out {
        let event = cdc_model::json_codec::decode_event(m.payload.as_deref().unwrap()).unwrap();
        let cdc_model::CqlValue::Int(id) = event.partition_key[0].value else {
            panic!()
        };
        assert!(seen.insert(id), "duplicate {id}");
    }
    assert_eq!(seen.len(), rows.len(), "none missing");
    b.stop().await;
}
