//! The admin API of capture and the masker, on the real binaries of a whole pipeline (capture,
//! masker, sink-postgres) started by the test kit: `cdcctl status` finds every stage through
//! pipeline.yaml, capture and the masker pause and resume, the masker reloads its policy on
//! request (the new version shows in status), the masker's dead letters list, and what a stage does
//! not support is refused with a message naming it.
//!
//! Needs `make stack-up` and the workspace binaries (`cargo build --workspace --bins`).

use std::time::{Duration, Instant};

use cdc_admin::AdminClient;
use cdc_testkit::pipeline::{Destination, PipelineSpec, RunningPipeline, Service, policy_header};
use cdc_testkit::{StackEnv, unique_name};
use serde_json::Value;

fn policy(keyspace: &str, version: u64) -> String {
    format!(
        "{}tables:\n  {keyspace}.patients:\n    email: {{class: pii, strategy: hash}}\n",
        policy_header(version)
    )
}

fn status(pipeline: &RunningPipeline) -> (Value, Option<i32>) {
    let out = pipeline
        .cdcctl()
        .args(["status", "--json"])
        .output()
        .expect("run cdcctl status");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code())
}

fn stage<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["stages"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("{name} in {v}"))
}

async fn wait_status(
    pipeline: &RunningPipeline,
    what: &str,
    check: impl Fn(&Value, Option<i32>) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (v, code) = status(pipeline);
        if check(&v, code) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: last status {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn client(pipeline: &RunningPipeline, service: Service) -> AdminClient {
    AdminClient::connect(&pipeline.admin_url(service), Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("admin client of {service}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_and_masker_answer_the_admin_api() {
    let env = StackEnv::load();
    let ks = unique_name("adm_pipe");
    let spec = PipelineSpec::new("admin", [ks.clone()])
        .policy(policy(&ks, 1))
        .sinks(&[Destination::Postgres]);
    let pipeline = RunningPipeline::start(&env, spec).await;

    // Every stage of pipeline.yaml, found without --endpoint.
    let all_up = wait_status(&pipeline, "every stage UP", |_, code| code == Some(0)).await;
    let names: Vec<&str> = all_up["stages"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["capture", "masker", "sink-postgres"], "{all_up}");
    let capture = stage(&all_up, "capture");
    assert!(
        capture["cdc_raw_fill_ratio"].as_f64().is_some(),
        "{capture}"
    );
    assert!(capture["segments_pending"].as_u64().is_some(), "{capture}");
    assert_eq!(stage(&all_up, "masker")["policy_version"], 1);

    // Capture pauses and resumes.
    let mut capture_admin = client(&pipeline, Service::Capture).await;
    capture_admin.pause().await.expect("pause capture");
    let paused = wait_status(&pipeline, "capture paused", |v, code| {
        code == Some(1) && stage(v, "capture")["paused"] == true
    })
    .await;
    assert_eq!(stage(&paused, "capture")["health"], "DEGRADED");
    // The loop takes the pause between two passes over cdc_raw; /readyz then shows it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, readyz) = pipeline
            .admin_get(Service::Capture, "/readyz")
            .await
            .expect("capture /readyz answers");
        if code == 503 && readyz.contains("intake") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "paused capture /readyz: {code} {readyz}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    capture_admin.resume().await.expect("resume capture");
    wait_status(&pipeline, "capture resumed", |v, code| {
        code == Some(0) && stage(v, "capture")["paused"] == false
    })
    .await;
    let refused = capture_admin
        .reload()
        .await
        .expect_err("capture has no reload");
    let text = refused.to_string();
    assert!(
        text.contains("capture") && text.contains("restart"),
        "{text}"
    );

    // The masker: pause/resume, reload on request.
    let mut masker_admin = client(&pipeline, Service::Masker).await;
    masker_admin.pause().await.expect("pause masker");
    wait_status(&pipeline, "masker paused", |v, code| {
        code == Some(1) && stage(v, "masker")["paused"] == true
    })
    .await;
    masker_admin.resume().await.expect("resume masker");
    wait_status(&pipeline, "masker resumed", |v, code| {
        code == Some(0) && stage(v, "masker")["paused"] == false
    })
    .await;
    pipeline.write_policy(&policy(&ks, 2));
    let summary = masker_admin.reload().await.expect("reload policy");
    assert!(summary.contains("-> 2"), "{summary}");
    wait_status(&pipeline, "policy version 2 in force", |v, _| {
        stage(v, "masker")["policy_version"] == 2
    })
    .await;
    pipeline.write_policy("version: 3\nthis is: [not a policy\n");
    let bad = masker_admin
        .reload()
        .await
        .expect_err("a bad policy is refused");
    assert!(bad.to_string().contains("previous policy stays"), "{bad}");
    assert_eq!(stage(&status(&pipeline).0, "masker")["policy_version"], 2);

    // The masker's dead letters (none yet) and what it does not support.
    let out = pipeline
        .cdcctl()
        .args(["dlq", "list", "--destination", "masker", "--json"])
        .output()
        .expect("dlq list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).expect("dlq JSON");
    assert_eq!(
        listed["dead_letters"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
    let out = pipeline
        .cdcctl()
        .args([
            "replay",
            "--destination",
            "masker",
            "--to-timestamp",
            "1h",
            "--yes",
        ])
        .output()
        .expect("replay masker");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only sinks keep offsets"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pipeline.stop_all().await;
}
