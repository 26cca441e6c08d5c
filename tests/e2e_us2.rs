//! User story 2 end to end (shared/SPEC.md): PII/PHI masked before it reaches any warehouse,
//! across the whole pipeline as processes on the local stack. Never skips.
//!
//! One pipeline, two phases:
//! 1. policy v1 (email, ssn hashed; phone partial; medical_record_number tokenized; name, city,
//!    age readable): every destination holds exactly the masked forms (computed here with the
//!    harness's fake keys), no plaintext PII in any relation of the keyspace (state tables and the
//!    TimescaleDB change history included), `cdcctl audit` clean, `cdcctl verify` clean;
//! 2. policy v2 adds `name` (hash), rewritten in place: events masked after the reload carry hashed
//!    names, rows written before keep theirs (no retroactive change) — which `cdcctl audit` then
//!    reports, and only for `name`.

#[path = "e2e_support.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cdc_testkit::{Destination, PipelineSpec, RunningPipeline, Service, StackEnv, Warehouses};
use support::{
    Model, Op, Patient, Writer, assert_verify_clean, audit, await_model, cassandra, create_schema,
    policy, update,
};

/// Every plaintext needle found in any relation of `ks`, per destination.
async fn plaintext_findings(wh: &Warehouses, ks: &str, needles: &[String]) -> Vec<String> {
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for d in Destination::ALL {
        let found = wh
            .find_text(d, ks, &needles)
            .await
            .unwrap_or_else(|e| panic!("{d}: scanning {ks}: {e}"));
        out.extend(found.into_iter().map(|(rel, _)| format!("{d}:{ks}.{rel}")));
    }
    out.sort();
    out.dedup();
    out
}

/// Waits until the masker logged the reload of policy `version`.
async fn wait_for_reload(pipeline: &RunningPipeline, version: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let marker = format!("\"policy_version\":{version}");
    loop {
        let log = std::fs::read_to_string(pipeline.log_path(Service::Masker)).unwrap_or_default();
        if log
            .lines()
            .any(|l| l.contains("Masking policy reloaded") && l.contains(&marker))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the masker did not reload policy v{version} within 30 s; log tail:\n{}",
            pipeline.log_tail(Service::Masker, 20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn us2_masked_in_every_destination_audit_clean_and_policy_change_applies_forward() {
    let env = StackEnv::load();
    let ks = cdc_testkit::unique_name("e2e_us2");
    let session = Arc::new(cassandra(&env).await);
    create_schema(&session, &ks).await;
    let pipeline = RunningPipeline::start(
        &env,
        PipelineSpec::new("us2", [ks.clone()]).policy(policy(&ks, 1, false)),
    )
    .await;
    let wh = Warehouses::connect(&env).await;
    let writer = Writer::new(Arc::clone(&session), &ks).await;
    let mut model = Model::default();

    // Phase 1: 300 patients, 100 of them updated (new email), under policy v1.
    let ops: Vec<Op> = (0..300)
        .map(|id| Op::Insert(Patient::fake(id, 0)))
        .chain((0..300).step_by(3).map(|id| update(id, 1)))
        .collect();
    writer.write(&mut model, false, ops).await;
    // Exact masked forms: hash_<hex>, tok_<hex>, ****<last 4>; name/city/age readable.
    await_model(&pipeline, &wh, &ks, &model).await;
    let mut needles: Vec<String> = Vec::new();
    for id in 0..300 {
        for g in 0..2 {
            let p = Patient::fake(id, g);
            needles.extend(p.pii().iter().map(|s| (*s).to_owned()));
        }
    }
    let leaks = plaintext_findings(&wh, &ks, &needles).await;
    assert!(
        leaks.is_empty(),
        "plaintext PII found in warehouse relations: {leaks:?}"
    );
    let (code, report, text) = audit(&pipeline, &ks).await;
    assert_eq!(code, 0, "cdcctl audit is not clean:\n{text}");
    assert_eq!(report["clean"], serde_json::Value::Bool(true), "{text}");
    assert!(
        report["classified_columns"].as_u64().unwrap_or(0) >= 3 * 4,
        "audit checked the four classified columns in three destinations:\n{text}"
    );
    assert_verify_clean(&pipeline, &ks).await;

    // Phase 2: the policy now classifies `name` too. Later events are masked with it; rows
    // already in the warehouses are not rewritten (an update of other columns leaves the old
    // name as it was written).
    pipeline.write_policy(&policy(&ks, 2, true));
    wait_for_reload(&pipeline, 2).await;
    let ops: Vec<Op> = (1000..1100)
        .map(|id| Op::Insert(Patient::fake(id, 0)))
        .collect();
    writer.write(&mut model, true, ops).await;
    let ops: Vec<Op> = (0..300).step_by(10).map(|id| update(id, 2)).collect();
    writer.write(&mut model, true, ops).await;
    await_model(&pipeline, &wh, &ks, &model).await;
    let mut needles: Vec<String> = Vec::new();
    for id in 1000..1100 {
        let p = Patient::fake(id, 0);
        needles.extend(p.pii().iter().map(|s| (*s).to_owned()));
        needles.push(p.name.clone());
    }
    for id in (0..300).step_by(10) {
        needles.extend(Patient::fake(id, 2).pii().iter().map(|s| (*s).to_owned()));
    }
    let leaks = plaintext_findings(&wh, &ks, &needles).await;
    assert!(
        leaks.is_empty(),
        "plaintext PII (or a newly classified name) found after the policy change: {leaks:?}"
    );

    // The audit now applies v2 to old rows too, and reports their readable names — in every
    // destination, and nothing else.
    let (code, report, text) = audit(&pipeline, &ks).await;
    assert_eq!(
        code, 1,
        "cdcctl audit reports the pre-change names:\n{text}"
    );
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    assert!(
        findings.iter().all(|f| f["column"] == "name"),
        "only `name` has findings:\n{text}"
    );
    for d in Destination::ALL {
        let rows: u64 = findings
            .iter()
            .filter(|f| f["destination"] == d.name())
            .filter_map(|f| f["count"].as_u64())
            .sum();
        assert_eq!(
            rows, 300,
            "{d}: the 300 rows written under v1 keep readable names"
        );
    }
}
