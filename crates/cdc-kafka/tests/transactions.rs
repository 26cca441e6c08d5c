//! Integration tests against the real local Kafka (`CDC_KAFKA_BOOTSTRAP`, see `make stack-up`).
//! They fail, never skip, when the stack is not up. Every test uses fresh topics, groups and
//! transactional ids.

use std::collections::BTreeMap;
use std::time::Duration;

use cdc_kafka::{
    AssignMode, ConsumedOffsets, ConsumerSettings, EnsureOutcome, Error, ErrorClass,
    IdempotentProducer, InboundMessage, KafkaSettings, ProducerSettings, ReadCommittedConsumer,
    RebalanceEvent, StartOffset, TopicAdmin, TopicPartition, TransactionalProducer, TxnState,
    header_value,
};
use cdc_testkit::{StackEnv, unique_name};

/// Bound on any single wait for messages or rebalances.
const WAIT: Duration = Duration::from_secs(20);

fn settings(client: &str) -> KafkaSettings {
    let env = StackEnv::load();
    KafkaSettings::new(env.kafka_bootstrap, unique_name(client))
}

fn producer_settings() -> ProducerSettings {
    ProducerSettings {
        // Short enough that a broken broker fails the test well inside the time budget.
        operation_timeout_ms: 15_000,
        linger_ms: 1,
        ..ProducerSettings::default()
    }
}

fn consumer_settings(group: &str) -> ConsumerSettings {
    let mut c = ConsumerSettings::new(group);
    c.session_timeout_ms = 10_000;
    c.operation_timeout_ms = 15_000;
    c
}

fn admin() -> TopicAdmin {
    TopicAdmin::new(&settings("admin"), Duration::from_secs(15)).expect("admin client")
}

async fn topic(admin: &TopicAdmin, prefix: &str, partitions: i32) -> String {
    let name = unique_name(prefix);
    let outcome = admin
        .ensure_topic(&name, partitions, 1, &BTreeMap::new())
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {}", cdc_kafka::error_chain(&e)));
    assert_eq!(outcome, EnsureOutcome::Created);
    name
}

async fn transactional(txn_id: &str) -> TransactionalProducer {
    let mut p = TransactionalProducer::new(&settings("txn"), &producer_settings(), txn_id)
        .expect("transactional producer");
    p.init().await.expect("init_transactions");
    p
}

/// A consumer reading `topic` partition 0 from the beginning, without group management.
fn reader(topic: &str) -> ReadCommittedConsumer {
    let (consumer, _events) = ReadCommittedConsumer::new(
        &settings("reader"),
        &consumer_settings(&unique_name("reader")),
    )
    .expect("consumer");
    consumer
        .assign(&[(TopicPartition::new(topic, 0), StartOffset::Beginning)])
        .expect("assign");
    consumer
}

async fn recv(consumer: &ReadCommittedConsumer) -> InboundMessage {
    tokio::time::timeout(WAIT, consumer.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("consume")
}

/// Reads until a message with payload `last` arrives; returns every payload seen, in order.
async fn read_until(consumer: &ReadCommittedConsumer, last: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let m = recv(consumer).await;
        let payload = String::from_utf8(m.payload.unwrap_or_default()).expect("utf-8 payload");
        let done = payload == last;
        seen.push(payload);
        if done {
            return seen;
        }
    }
}

async fn send_all(p: &TransactionalProducer, topic: &str, payloads: &[String]) {
    let mut pending = Vec::new();
    for (i, v) in payloads.iter().enumerate() {
        let key = format!("k{i}");
        pending.push(
            p.send(
                topic,
                Some(0),
                Some(key.as_bytes()),
                Some(v.as_bytes()),
                &[],
            )
            .await
            .expect("enqueue"),
        );
    }
    for d in pending {
        d.await.expect("delivery");
    }
}

fn payloads(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_transaction_is_visible_to_read_committed_consumer() {
    let admin = admin();
    let topic = topic(&admin, "eos_commit", 1).await;
    let mut p = transactional(&unique_name("capture")).await;

    p.begin().await.expect("begin");
    let headers = vec![
        ("traceparent".to_owned(), b"00-0af7651916cd43dd-01".to_vec()),
        ("policy_version".to_owned(), vec![0, 0, 0, 7]),
    ];
    let mut pending = Vec::new();
    for i in 0..3 {
        let payload = format!("committed-{i}");
        pending.push(
            p.send(
                &topic,
                None,
                Some(b"key"),
                Some(payload.as_bytes()),
                &headers,
            )
            .await
            .expect("enqueue"),
        );
    }
    p.commit().await.expect("commit");
    assert_eq!(p.state(), TxnState::Ready);
    // commit() flushed everything: every delivery has resolved.
    for (i, d) in pending.into_iter().enumerate() {
        let report = d.await.expect("delivered");
        assert_eq!(report.partition, 0);
        assert_eq!(report.offset, i as i64);
    }

    let consumer = reader(&topic);
    for i in 0..3 {
        let m = recv(&consumer).await;
        assert_eq!(m.offset, i);
        assert_eq!(m.key.as_deref(), Some(&b"key"[..]));
        assert_eq!(m.payload, Some(format!("committed-{i}").into_bytes()));
        assert_eq!(m.headers, headers);
        assert_eq!(
            header_value(&m.headers, "policy_version"),
            Some(&[0u8, 0, 0, 7][..])
        );
    }

    consumer.close().await.expect("close consumer");
    p.close().await.expect("close producer");
    admin.delete_topic(&topic).await.expect("delete topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_transaction_is_invisible() {
    let admin = admin();
    let topic = topic(&admin, "eos_abort", 1).await;
    let mut p = transactional(&unique_name("capture")).await;

    let aborted = payloads("aborted", 5);
    p.begin().await.expect("begin");
    // Wait for the broker to acknowledge them: they are in the log when the abort marker lands.
    send_all(&p, &topic, &aborted).await;
    p.abort().await.expect("abort");
    assert_eq!(p.state(), TxnState::Ready);

    let committed = payloads("committed", 3);
    p.begin().await.expect("begin");
    send_all(&p, &topic, &committed).await;
    p.commit().await.expect("commit");

    // The aborted records stay in the log: 5 aborted + abort marker + 3 committed + commit marker.
    // The watermark is the last stable offset, which passes the batch once the coordinator has
    // written the commit marker (asynchronously after commit() returns).
    let high = tokio::time::timeout(WAIT, async {
        loop {
            let marks = admin.high_watermarks(&topic).await.expect("watermarks");
            assert_eq!(marks.len(), 1);
            if marks[0].high >= 10 {
                break marks[0].high;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the commit marker never landed");
    assert_eq!(high, 10);

    let consumer = reader(&topic);
    let seen = read_until(&consumer, "committed-2").await;
    assert_eq!(seen, committed, "only the committed batch is visible");

    consumer.close().await.expect("close consumer");
    p.close().await.expect("close producer");
    admin.delete_topic(&topic).await.expect("delete topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_offsets_moves_group_offset_only_on_commit() {
    let admin = admin();
    let input = topic(&admin, "eos_in", 1).await;
    let output = topic(&admin, "eos_out", 1).await;
    let input_p0 = TopicPartition::new(&input, 0);

    // Seed the input outside any transaction.
    let seeder = IdempotentProducer::new(&settings("seed"), &producer_settings()).expect("seeder");
    for i in 0..10 {
        let v = format!("in-{i}");
        let d = seeder
            .send(&input, Some(0), None, Some(v.as_bytes()), &[])
            .await
            .expect("enqueue");
        d.await.expect("seed delivery");
    }
    seeder.close().await.expect("close seeder");

    // Consume the input as member of group G, like the masker.
    let group = unique_name("masker");
    let (consumer, _events) =
        ReadCommittedConsumer::new(&settings("masker"), &consumer_settings(&group))
            .expect("consumer");
    consumer.subscribe(&[&input]).expect("subscribe");
    let mut consumed = ConsumedOffsets::new();
    let mut transformed = Vec::new();
    for _ in 0..10 {
        let m = recv(&consumer).await;
        consumed.record(&m.topic, m.partition, m.offset);
        transformed.push(format!(
            "masked-{}",
            String::from_utf8(m.payload.unwrap_or_default()).expect("utf-8")
        ));
    }
    let offsets = consumed.to_vec();
    assert_eq!(
        offsets,
        vec![cdc_kafka::PartitionOffset::new(&input, 0, 10)]
    );
    let group_metadata = consumer.group_metadata().expect("group metadata");

    // A fresh client in the same group, only to read what the group has committed.
    let (checker, _checker_events) =
        ReadCommittedConsumer::new(&settings("checker"), &consumer_settings(&group))
            .expect("checker");

    let mut p = transactional(&unique_name("masker")).await;

    // Attempt 1: produce + offsets, then abort.
    p.begin().await.expect("begin");
    send_all(&p, &output, &transformed).await;
    p.send_offsets(&offsets, &group_metadata)
        .await
        .expect("send offsets");
    p.abort().await.expect("abort");
    let committed = checker
        .committed_offsets(std::slice::from_ref(&input_p0))
        .await
        .expect("committed offsets");
    assert_eq!(
        committed,
        vec![(input_p0.clone(), None)],
        "an aborted transaction must not move the group offset"
    );

    // Attempt 2: the same batch again, committed.
    p.begin().await.expect("begin");
    send_all(&p, &output, &transformed).await;
    p.send_offsets(&offsets, &group_metadata)
        .await
        .expect("send offsets");
    p.commit().await.expect("commit");
    let committed = checker
        .committed_offsets(std::slice::from_ref(&input_p0))
        .await
        .expect("committed offsets");
    assert_eq!(
        committed,
        vec![(input_p0.clone(), Some(10))],
        "the committed transaction moves the group offset past the batch"
    );

    // The output holds exactly one copy of the batch for read_committed readers.
    let out = reader(&output);
    let seen = read_until(&out, "masked-in-9").await;
    assert_eq!(seen, transformed);

    out.close().await.expect("close");
    checker.close().await.expect("close");
    consumer.close().await.expect("close");
    p.close().await.expect("close");
    admin.delete_topic(&input).await.expect("delete");
    admin.delete_topic(&output).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_producer_with_same_transactional_id_fences_the_first() {
    let admin = admin();
    let topic = topic(&admin, "eos_fence", 1).await;
    let txn_id = unique_name("capture");

    let mut first = transactional(&txn_id).await;
    first.begin().await.expect("begin");
    send_all(&first, &topic, &payloads("zombie", 2)).await;

    // A restarted instance with the same id: init fences the first and aborts its transaction.
    let mut second = transactional(&txn_id).await;

    let err = first
        .commit()
        .await
        .expect_err("the fenced producer must not commit");
    assert_eq!(
        err.class(),
        ErrorClass::Fatal,
        "fencing must be fatal, got {}: {err:?}",
        cdc_kafka::error_chain(&err)
    );
    assert!(matches!(err, Error::Transaction { .. }), "{err:?}");
    assert_eq!(first.state(), TxnState::Failed);
    // A failed producer refuses further work.
    assert!(matches!(
        first.begin().await,
        Err(Error::InvalidState { .. })
    ));

    second.begin().await.expect("begin");
    send_all(&second, &topic, &payloads("live", 1)).await;
    second.commit().await.expect("the new instance commits");

    let consumer = reader(&topic);
    let seen = read_until(&consumer, "live-0").await;
    assert_eq!(seen, vec!["live-0".to_owned()]);

    consumer.close().await.expect("close");
    first.close().await.expect("close");
    second.close().await.expect("close");
    admin.delete_topic(&topic).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_topic_is_idempotent() {
    let admin = admin();
    let name = unique_name("cdc_capture_positions");
    let compact: BTreeMap<String, String> = [("cleanup.policy".to_owned(), "compact".to_owned())]
        .into_iter()
        .collect();

    let first = admin
        .ensure_topic(&name, 3, 1, &compact)
        .await
        .expect("create");
    assert_eq!(first, EnsureOutcome::Created);
    let second = admin
        .ensure_topic(&name, 3, 1, &compact)
        .await
        .expect("ensure again");
    assert_eq!(
        second,
        EnsureOutcome::Existed {
            partitions: 3,
            config_drift: vec![]
        }
    );

    let description = admin.describe(&name).await.expect("describe");
    assert_eq!(
        description
            .partitions
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let config = admin.topic_config(&name).await.expect("configs");
    assert_eq!(
        config.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    assert!(admin.list_topics().await.expect("list").contains(&name));
    let marks = admin.high_watermarks(&name).await.expect("watermarks");
    assert_eq!(marks.len(), 3);
    assert!(marks.iter().all(|m| m.high == 0 && m.low == 0), "{marks:?}");

    // More partitions than exist: reported, not silently accepted.
    let err = admin
        .ensure_topic(&name, 6, 1, &compact)
        .await
        .expect_err("too few partitions");
    assert!(
        matches!(
            err,
            Error::TooFewPartitions {
                wanted: 6,
                actual: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Fatal);

    // A differing setting is reported as drift, not changed.
    let delete: BTreeMap<String, String> = [("cleanup.policy".to_owned(), "delete".to_owned())]
        .into_iter()
        .collect();
    match admin
        .ensure_topic(&name, 3, 1, &delete)
        .await
        .expect("ensure")
    {
        EnsureOutcome::Existed { config_drift, .. } => {
            assert_eq!(config_drift.len(), 1);
            assert_eq!(config_drift[0].actual.as_deref(), Some("compact"));
        }
        other => panic!("expected Existed, got {other:?}"),
    }

    admin.delete_topic(&name).await.expect("delete");
    admin
        .delete_topic(&name)
        .await
        .expect("delete is idempotent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigned_partitions_stay_paused_until_the_sink_seeks() {
    let admin = admin();
    let topic = topic(&admin, "cdc_masked_seek", 1).await;
    let mut p = transactional(&unique_name("masker")).await;
    p.begin().await.expect("begin");
    send_all(&p, &topic, &payloads("m", 10)).await;
    p.commit().await.expect("commit");

    let mut cs = consumer_settings(&unique_name("sink"));
    cs.assign_mode = AssignMode::PauseUntilSeek;
    let (consumer, mut events) = ReadCommittedConsumer::new(&settings("sink"), &cs).expect("sink");
    consumer.subscribe(&[&topic]).expect("subscribe");

    // recv() drives the group protocol; the assignment arrives on the event channel.
    let assigned = tokio::time::timeout(WAIT, async {
        loop {
            tokio::select! {
                Some(event) = events.recv() => {
                    if let RebalanceEvent::Assigned { partitions, paused } = event {
                        break (partitions, paused);
                    }
                }
                m = consumer.recv() => panic!("message before the seek: {m:?}"),
            }
        }
    })
    .await
    .expect("no assignment");
    assert_eq!(assigned, (vec![TopicPartition::new(&topic, 0)], true));

    // Paused: nothing is delivered although 10 messages are waiting.
    let idle = tokio::time::timeout(Duration::from_millis(1500), consumer.recv()).await;
    assert!(idle.is_err(), "paused partition delivered {idle:?}");

    // The sink's stored offset says 7 is next.
    consumer
        .seek_and_resume(&[(TopicPartition::new(&topic, 0), StartOffset::At(7))])
        .await
        .expect("seek and resume");
    let offsets: Vec<i64> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(recv(&consumer).await.offset);
        }
        v
    };
    assert_eq!(offsets, vec![7, 8, 9]);

    consumer.close().await.expect("close");
    p.close().await.expect("close");
    admin.delete_topic(&topic).await.expect("delete");
}
