//! Issue 8 acceptance, logs (FR-018, ARCHITECTURE §9): a full run of the pipeline as processes on
//! the local stack, logs of every service captured (`RunningPipeline` writes each service's stdout
//! and stderr to `<service>.log`). Never skips.
//!
//! The run writes rows whose classified columns hold distinctive fake PII, updates and deletes
//! some, sends one undecodable message carrying fake PII to the masker's input and one to the
//! sinks' input (dead-letter paths log errors), replays PostgreSQL, and stops every service
//! (drain logs). Then:
//! - every line of every log is one JSON object: a log event with `timestamp` (RFC 3339 UTC),
//!   `level`, `target`, `service` (the service's name) and `message`, or (masker only) a batch
//!   audit record (`audit`, `ts`, `policy_version`, `tables`);
//! - per-batch info lines carry the documented context (`table`, `destination`, offsets,
//!   correlation id of dead letters);
//! - no value written — raw PII, its masked forms, or even an unclassified column — and no secret
//!   (the fake HMAC, token and vault keys, the vault roles' passwords) appears in any line.
//!
//! That the check could fail is shown twice: the scanner flags a line that does contain a needle,
//! and the raw values are read back from Cassandra (so they really went through the pipeline).

#[path = "e2e_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdc_kafka::{IdempotentProducer, KafkaSettings, ProducerSettings};
use cdc_telemetry::metrics::names as n;
use cdc_testkit::pipeline::{FAKE_HASH_KEY, FAKE_TOKEN_KEY, FAKE_VAULT_KEY_HEX};
use cdc_testkit::{Destination, PipelineSpec, RunningPipeline, Service, StackEnv, Warehouses};
use serde_json::Value;
use support::{
    Model, Op, Patient, Writer, await_model, cassandra, create_schema, hashed, partial4, policy,
    tokenized,
};

/// Rows with distinctive fake values (`leak.check` in every email).
fn leak_patient(id: i32, generation: u32) -> Patient {
    Patient {
        id,
        email: format!("fake.leak.check{id}.g{generation}@example.invalid"),
        ssn: format!("000-{:02}-12{id:02}", 90 + generation),
        phone: format!("555-0199-7{id:03}{generation}"),
        mrn: format!("MRN-LEAKCHECK-{id:04}-{generation}"),
        name: format!("Leakcheck Person {id}"),
        city: format!("Leakcheckville {id}"),
        age: 30 + id,
        admitted_at_ms: 1_700_000_000_000 + i64::from(id),
    }
}

/// The undecodable message sent to the masker's and the sinks' input topics.
const POISON_SSN: &str = "000-99-4321";
const POISON_EMAIL: &str = "fake.poison.leak@example.invalid";

async fn produce_poison(env: &StackEnv, topic: &str) {
    let payload = format!(
        r#"{{"not_a_change_event": true, "ssn": "{POISON_SSN}", "email": "{POISON_EMAIL}"}}"#
    );
    let settings = KafkaSettings::new(env.kafka_bootstrap.clone(), "e2e-logs-poison");
    let producer = IdempotentProducer::new(&settings, &ProducerSettings::default())
        .unwrap_or_else(|e| panic!("Kafka producer: {e}"));
    producer
        .send(topic, None, Some(b"poison"), Some(payload.as_bytes()), &[])
        .await
        .unwrap_or_else(|e| panic!("enqueue poison on {topic}: {e}"))
        .await
        .unwrap_or_else(|e| panic!("deliver poison to {topic}: {e}"));
}

/// Every (needle, line) pair where a log line contains a needle; needles are searched
/// case-insensitively and also in their JSON-escaped form.
fn findings<'a>(
    log: &'a str,
    needles: &'a [(String, &'static str)],
) -> Vec<(&'a str, &'static str, &'a str)> {
    let lower = log.to_lowercase();
    let mut out = Vec::new();
    for (needle, what) in needles {
        let n = needle.to_lowercase();
        let escaped = serde_json::to_string(&n).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        if lower.contains(&n) || lower.contains(escaped) {
            for line in log.lines() {
                let l = line.to_lowercase();
                if l.contains(&n) || l.contains(escaped) {
                    out.push((needle.as_str(), *what, line));
                }
            }
        }
    }
    out
}

/// Checks one line's shape — a log event, or a masker batch audit record — and returns it.
fn check_line(service: Service, line: &str) -> serde_json::Map<String, Value> {
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{service}: log line is not JSON ({e}): {line}"));
    let Value::Object(o) = v else {
        panic!("{service}: log line is not a JSON object: {line}");
    };
    let text = |k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{service}: log line lacks string `{k}`: {line}"))
            .to_owned()
    };
    if o.contains_key("audit") {
        // The masker's batch audit record (cdc_mask::audit), written beside the logs.
        assert_eq!(
            service,
            Service::Masker,
            "only the masker writes audit records: {line}"
        );
        assert_eq!(text("audit"), "masker_batch", "{line}");
        let ts = text("ts");
        assert!(
            ts.ends_with('Z') && ts.contains('T'),
            "audit ts {ts:?}: {line}"
        );
        assert!(o.get("policy_version").is_some_and(Value::is_u64), "{line}");
        assert!(o.get("tables").is_some_and(Value::is_object), "{line}");
        return o;
    }
    let ts = text("timestamp");
    assert!(
        ts.len() >= 20 && ts.as_bytes()[10] == b'T' && ts.ends_with('Z'),
        "{service}: timestamp {ts:?} is not RFC 3339 UTC: {line}"
    );
    let level = text("level");
    assert!(
        ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level.as_str()),
        "{service}: level {level:?}: {line}"
    );
    assert_eq!(text("service"), service.binary(), "{line}");
    text("target");
    text("message");
    o
}

/// FR-018's per-batch record of `service` for `table`: the capture's "Changes captured", a sink's
/// "Batch written" (info, with destination, table, offsets and correlation ids), the masker's
/// batch audit record.
fn is_batch_line(service: Service, o: &serde_json::Map<String, Value>, table: &str) -> bool {
    let str_of = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or_default();
    let info = str_of("level") == "INFO";
    match service {
        Service::Capture => {
            info && str_of("message") == "Changes captured"
                && str_of("tables").split(',').any(|t| t == table)
                && o.contains_key("segment_id")
                && o.contains_key("position")
                && o.contains_key("events")
        }
        Service::Masker => {
            str_of("audit") == "masker_batch"
                && o.get("tables")
                    .and_then(|t| t.get(table))
                    .and_then(|t| t.get("correlation_ids"))
                    .and_then(Value::as_array)
                    .is_some_and(|ids| !ids.is_empty())
        }
        sink => {
            info && str_of("message") == "Batch written"
                && Some(str_of("destination")) == sink.destination().map(|d| d.name())
                && str_of("table") == table
                && !str_of("next_offsets").is_empty()
                && !str_of("first_correlation_id").is_empty()
                && o.contains_key("rows")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_values_or_secrets_in_any_service_log_and_every_line_is_structured() {
    let env = StackEnv::load();
    let ks = cdc_testkit::unique_name("e2e_logs");
    let session = Arc::new(cassandra(&env).await);
    create_schema(&session, &ks).await;
    let pipeline = RunningPipeline::start(
        &env,
        PipelineSpec::new("logs", [ks.clone()]).policy(policy(&ks, 1, false)),
    )
    .await;
    let wh = Warehouses::connect(&env).await;
    let writer = Writer::new(Arc::clone(&session), &ks).await;
    let mut model = Model::default();
    let table = format!("{ks}.{}", support::TABLE);

    // Inserts, updates (new emails) and deletes of distinctive fake PII.
    let mut ops: Vec<Op> = (0..60).map(|id| Op::Insert(leak_patient(id, 0))).collect();
    ops.extend((0..60).step_by(3).map(|id| Op::Update {
        id,
        email: leak_patient(id, 1).email,
        city: leak_patient(id, 1).city,
        age: 90,
    }));
    ops.extend((0..60).step_by(7).map(Op::Delete));
    writer.write(&mut model, false, ops).await;
    await_model(&pipeline, &wh, &ks, &model).await;

    // Error paths: undecodable messages (with fake PII inside) on the raw and the masked topic.
    produce_poison(&env, &format!("cdc.raw.{table}")).await;
    produce_poison(&env, &format!("cdc.masked.{table}")).await;
    let started = Instant::now();
    loop {
        let masker = pipeline
            .metric(Service::Masker, n::MASKER_DLQ_EVENTS_TOTAL, &[])
            .await
            .unwrap_or(0.0);
        let mut sinks = 0;
        for d in Destination::ALL {
            if pipeline
                .metric(d.service(), n::SINK_DLQ_EVENTS_TOTAL, &[])
                .await
                .unwrap_or(0.0)
                >= 1.0
            {
                sinks += 1;
            }
        }
        if masker >= 1.0 && sinks == 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "poison messages not dead-lettered within 60 s (masker {masker}, sinks {sinks}/3)"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // An operator replay of PostgreSQL (re-applies every event; convergent).
    let (code, out, err) = support::cdcctl(
        &pipeline,
        &[
            "replay",
            "--destination",
            "postgres",
            "--to-timestamp",
            "1h",
            "--yes",
        ],
    )
    .await;
    assert_eq!(code, 0, "cdcctl replay failed:\n{out}\n{err}");
    // A few more writes after the replay, then everything converges and stops cleanly.
    let ops: Vec<Op> = (60..70).map(|id| Op::Insert(leak_patient(id, 0))).collect();
    writer.write(&mut model, false, ops).await;
    await_model(&pipeline, &wh, &ks, &model).await;
    let statuses = pipeline.stop_all().await;
    for (s, st) in &statuses {
        assert!(
            st.is_some_and(|st| st.success()),
            "{s} did not stop cleanly: {st:?}\n{}",
            pipeline.log_tail(*s, 20)
        );
    }

    // The raw values are real: Cassandra holds them.
    let probe = leak_patient(1, 0);
    let rows = session
        .query_unpaged(
            format!(
                "SELECT ssn, phone FROM {ks}.{} WHERE id = 1",
                support::TABLE
            ),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("read back from Cassandra: {e}"))
        .into_rows_result()
        .unwrap_or_else(|e| panic!("rows: {e}"));
    let (ssn, phone): (String, String) = rows
        .first_row()
        .unwrap_or_else(|e| panic!("row 1 in Cassandra: {e}"));
    assert_eq!(
        (ssn.as_str(), phone.as_str()),
        (probe.ssn.as_str(), probe.phone.as_str())
    );

    // Needles: every value written (raw and masked forms), the poison's PII, the secrets.
    let mut needles: Vec<(String, &'static str)> = Vec::new();
    for id in 0..70 {
        for generation in 0..2 {
            let p = leak_patient(id, generation);
            needles.push((p.email.clone(), "raw email"));
            needles.push((hashed(&p.email), "hashed email"));
            needles.push((p.city.clone(), "unclassified city"));
            if generation == 0 {
                needles.push((p.ssn.clone(), "raw ssn"));
                needles.push((hashed(&p.ssn), "hashed ssn"));
                needles.push((p.phone.clone(), "raw phone"));
                needles.push((partial4(&p.phone), "partially masked phone"));
                needles.push((p.mrn.clone(), "raw medical record number"));
                needles.push((tokenized(&p.mrn), "medical record token"));
                needles.push((p.name.clone(), "unclassified name"));
            }
        }
    }
    needles.push((POISON_SSN.to_owned(), "poison ssn"));
    needles.push((POISON_EMAIL.to_owned(), "poison email"));
    needles.push((FAKE_HASH_KEY.to_owned(), "HMAC key"));
    needles.push((FAKE_TOKEN_KEY.to_owned(), "token key"));
    needles.push((FAKE_VAULT_KEY_HEX.to_owned(), "vault encryption key"));
    needles.push(("dev-only-vault-writer".to_owned(), "vault writer password"));
    needles.push(("dev-only-vault-reader".to_owned(), "vault reader password"));
    for url in [&env.postgres_url, &env.timescale_url] {
        if let Some(password) = url
            .split_once("://")
            .and_then(|(_, r)| r.rsplit_once('@'))
            .and_then(|(cred, _)| cred.split_once(':'))
            .map(|(_, p)| p)
            .filter(|p| p.len() >= 6)
        {
            needles.push((password.to_owned(), "database password"));
        }
    }

    // The scanner finds a needle when there is one.
    let planted = format!(
        r#"{{"level":"INFO","message":"row","email":"{}"}}"#,
        probe.email
    );
    assert_eq!(
        findings(&planted, &needles).len(),
        1,
        "the scanner must flag a planted value"
    );

    let mut leaks = Vec::new();
    let mut fields_seen: BTreeMap<Service, BTreeMap<String, usize>> = BTreeMap::new();
    let mut levels: BTreeMap<Service, BTreeMap<String, usize>> = BTreeMap::new();
    let mut batch_lines: BTreeMap<Service, usize> = BTreeMap::new();
    for s in Service::ALL {
        let log = std::fs::read_to_string(pipeline.log_path(s))
            .unwrap_or_else(|e| panic!("{s}: cannot read {}: {e}", pipeline.log_path(s).display()));
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(lines.len() >= 3, "{s} logged only {} lines", lines.len());
        for line in &lines {
            let o = check_line(s, line);
            if is_batch_line(s, &o, &table) {
                *batch_lines.entry(s).or_default() += 1;
            }
            let seen = fields_seen.entry(s).or_default();
            for k in o.keys() {
                *seen.entry(k.clone()).or_default() += 1;
            }
            if o.contains_key("audit") {
                *levels
                    .entry(s)
                    .or_default()
                    .entry("audit".into())
                    .or_default() += 1;
            }
            if let Some(l) = o.get("level").and_then(Value::as_str) {
                *levels
                    .entry(s)
                    .or_default()
                    .entry(l.to_owned())
                    .or_default() += 1;
            }
        }
        for (needle, what, line) in findings(&log, &needles) {
            leaks.push(format!("{s}: {what} {needle:?} in: {line}"));
        }
        eprintln!(
            "{s}: {} JSON lines, levels {:?}",
            lines.len(),
            levels.get(&s).cloned().unwrap_or_default()
        );
    }
    assert!(
        leaks.is_empty(),
        "{} values or secrets found in service logs:\n{}",
        leaks.len(),
        leaks.join("\n")
    );

    // The documented context is there: per batch, an info line (capture, sinks) or an audit record
    // (masker) naming tables, destinations, offsets and correlation ids.
    let has = |s: Service, field: &str| fields_seen.get(&s).is_some_and(|f| f.contains_key(field));
    for field in ["table", "correlation_id", "offset"] {
        assert!(
            has(Service::Masker, field),
            "masker lines carry `{field}` (dead letter)"
        );
    }
    for s in Service::ALL {
        let n = batch_lines.get(&s).copied().unwrap_or(0);
        assert!(
            n >= 1,
            "{s}: no per-batch info line / audit record with its context; fields seen: {:?}",
            fields_seen.get(&s)
        );
    }
}
