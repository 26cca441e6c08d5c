//! The admin API end to end on real sockets and the stack's Kafka: gRPC and the HTTP probes on
//! one listener, UNIMPLEMENTED defaults that name the stage, and dead letters read from a real
//! topic, filtered and marked replayed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cdc_admin::dead_letters::DeadLetterTopic;
use cdc_admin::{AdminClient, AdminHandler, Status, async_trait, pb};
use cdc_kafka::{IdempotentProducer, KafkaSettings, ProducerSettings, TopicAdmin};
use cdc_model::{DeadLetter, ErrorClass, PayloadFormat};
use cdc_telemetry::{CancellationToken, HealthState};
use cdc_testkit::{StackEnv, unique_name};

struct Probe;

#[async_trait]
impl AdminHandler for Probe {
    fn stage(&self) -> &str {
        "probe-stage"
    }

    async fn status(&self) -> Result<pb::StatusResponse, Status> {
        Ok(pb::StatusResponse {
            service: "probe".into(),
            health: pb::Health::Up as i32,
            stats: Some(pb::StageStats {
                events_total: 42,
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}

#[tokio::test]
async fn grpc_and_http_probes_share_one_listener() {
    let registry = cdc_telemetry::new_registry();
    let metrics = cdc_telemetry::CaptureMetrics::new(&registry).expect("metrics");
    metrics.parse_errors.inc();
    let health = HealthState::new();
    health.register("kafka");
    health.set_up("kafka");
    let server = cdc_admin::serve(
        "127.0.0.1:0".parse().expect("addr"),
        registry,
        health,
        Arc::new(Probe),
    )
    .await
    .expect("bind");
    let addr = server.local_addr();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(server.run(cancel.clone()));

    let http = reqwest::Client::new();
    let livez = http
        .get(format!("http://{addr}/livez"))
        .send()
        .await
        .expect("livez");
    assert_eq!(livez.status(), 200);
    let metrics_text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    assert!(metrics_text.contains("cdc_capture_parse_errors_total 1"));
    assert_eq!(
        http.get(format!("http://{addr}/readyz"))
            .send()
            .await
            .expect("readyz")
            .status(),
        200
    );
    // The gRPC routes take no fallback: unknown paths stay 404.
    assert_eq!(
        http.get(format!("http://{addr}/nope"))
            .send()
            .await
            .expect("unknown path")
            .status(),
        404
    );

    let mut client = AdminClient::connect(&addr.to_string(), Duration::from_secs(3))
        .await
        .expect("connect");
    let status = client.status().await.expect("status");
    assert_eq!(status.service, "probe");
    assert_eq!(status.stats.map(|s| s.events_total), Some(42));
    let err = client
        .replay("postgres", pb::replay_request::Target::ToTimestampMs(1))
        .await
        .expect_err("replay is not implemented by the probe");
    match &err {
        cdc_admin::Error::Rpc { code, message, .. } => {
            assert_eq!(*code, tonic::Code::Unimplemented);
            assert!(message.contains("probe-stage"), "{message}");
            assert!(
                message.contains("sink"),
                "says where to go instead: {message}"
            );
        }
        other => panic!("expected an RPC error, got {other}"),
    }
    assert!(err.to_string().contains(&addr.to_string()), "{err}");

    cancel.cancel();
    task.await.expect("join").expect("server stops cleanly");
    let down = AdminClient::connect(&addr.to_string(), Duration::from_secs(2))
        .await
        .expect_err("stopped server refuses");
    assert!(down.is_unreachable(), "{down}");
}

fn letter(cid: &str, class: ErrorClass, at_ms: i64, table: &str, offset: i64) -> DeadLetter {
    DeadLetter {
        // Fake, obviously test-only content.
        payload: br#"{"not":"an envelope","email":"fake.user1@example.invalid"}"#.to_vec(),
        payload_format: PayloadFormat::Json,
        error_message: format!("column {table}.name: value rejected"),
        error_class: class,
        stage: "sink-postgres".into(),
        destination: Some("postgres".into()),
        retry_count: 2,
        first_failure_at_ms: at_ms - 10,
        last_failure_at_ms: at_ms,
        topic: format!("cdc.masked.{table}"),
        partition: 1,
        offset,
        correlation_id: Some(cid.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_filtered_shown_and_marked_replayed() {
    let env = StackEnv::load();
    let kafka = KafkaSettings::new(env.kafka_bootstrap.clone(), unique_name("admin-test"));
    let topic = format!("cdc.dlq.{}", unique_name("admintest").replace('_', "-"));
    let admin = TopicAdmin::new(&kafka, Duration::from_secs(15)).expect("admin");
    admin
        .ensure_topic(&topic, 2, 1, &BTreeMap::new())
        .await
        .expect("create DLQ topic");
    let _ = admin.close().await;
    let producer = IdempotentProducer::new(&kafka, &ProducerSettings::default()).expect("producer");
    let letters = [
        letter(
            "n1:1:10:0",
            ErrorClass::Poison,
            1_000_000,
            "shop.customers",
            5,
        ),
        letter(
            "n1:1:20:0",
            ErrorClass::Retriable,
            2_000_000,
            "shop.orders",
            6,
        ),
        letter("n1:1:30:0", ErrorClass::Poison, 3_000_000, "shop.orders", 7),
    ];
    for (i, l) in letters.iter().enumerate() {
        let json = l.to_json().expect("encode letter");
        producer
            .send(
                &topic,
                Some(i32::from(i == 2)),
                Some(b"k"),
                Some(&json),
                &[],
            )
            .await
            .expect("enqueue")
            .await
            .expect("deliver");
    }
    producer
        .send(&topic, Some(0), None, Some(b"garbage"), &[])
        .await
        .expect("enqueue")
        .await
        .expect("deliver");
    let _ = producer.close().await;

    let dlq = DeadLetterTopic::new(kafka.clone(), topic.clone(), 1);
    let all = dlq
        .list(&pb::ListDeadLettersRequest::default())
        .await
        .expect("list");
    assert_eq!(all.scanned, 4);
    assert_eq!(all.total_matching, 4, "the unreadable letter is listed too");
    assert!(
        !format!("{all:?}").contains("example.invalid"),
        "listings never carry payloads"
    );
    let poison = dlq
        .list(&pb::ListDeadLettersRequest {
            filter: Some(pb::DeadLetterFilter {
                error_class: "poison".into(),
                table: "shop.orders".into(),
                ..Default::default()
            }),
            limit: 10,
        })
        .await
        .expect("filtered list");
    assert_eq!(poison.dead_letters.len(), 1);
    let only = &poison.dead_letters[0];
    assert_eq!(only.correlation_id, "n1:1:30:0");
    assert_eq!(only.source.as_ref().map(|s| s.offset), Some(7));
    assert_eq!(only.dlq.as_ref().map(|d| d.partition), Some(1));
    let limited = dlq
        .list(&pb::ListDeadLettersRequest {
            filter: Some(pb::DeadLetterFilter {
                since_ms: 1_500_000,
                // Excludes the unreadable letter (filtered by its Kafka timestamp: now).
                until_ms: 5_000_000,
                ..Default::default()
            }),
            limit: 1,
        })
        .await
        .expect("limited list");
    assert_eq!(limited.total_matching, 2);
    assert_eq!(limited.dead_letters.len(), 1);
    assert_eq!(
        limited.dead_letters[0].correlation_id, "n1:1:30:0",
        "the newest matching letters are kept"
    );

    let shown = dlq.show("n1:1:20:0", true).await.expect("show");
    assert_eq!(shown.dead_letters.len(), 1);
    let detail = &shown.dead_letters[0];
    assert!(detail.event.is_none(), "not an envelope: no event detail");
    assert!(detail.note.contains("does not decode"), "{}", detail.note);
    assert!(!format!("{shown:?}").contains("example.invalid"));

    let request = pb::ReplayDeadLettersRequest {
        filter: Some(pb::DeadLetterFilter {
            table: "orders".into(),
            ..Default::default()
        }),
        include_replayed: false,
    };
    let selection = dlq.select_for_replay(&request).await.expect("select");
    assert_eq!(selection.letters.len(), 2);
    dlq.mark_replayed(&[&selection.letters[0]])
        .await
        .expect("mark replayed");
    let again = dlq.select_for_replay(&request).await.expect("select again");
    assert_eq!(again.letters.len(), 1);
    assert_eq!(again.already_replayed, 1);
    let listed = dlq
        .list(&pb::ListDeadLettersRequest::default())
        .await
        .expect("list after replay");
    assert_eq!(
        listed.dead_letters.iter().filter(|l| l.replayed).count(),
        1,
        "the replayed letter is marked"
    );
    let forced = dlq
        .select_for_replay(&pb::ReplayDeadLettersRequest {
            include_replayed: true,
            ..request
        })
        .await
        .expect("forced selection");
    assert_eq!(forced.letters.len(), 2);
    let everything = dlq
        .select_for_replay(&pb::ReplayDeadLettersRequest::default())
        .await
        .expect("select all");
    assert_eq!(
        everything.unreplayable, 1,
        "the unreadable letter cannot be replayed"
    );
}
