//! Driver behaviour with an in-memory destination: an unreachable destination pauses the sink
//! (no dead letters, `/readyz` not ready) and everything arrives after recovery.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cdc_kafka::TopicPartition;
use cdc_model::ErrorClass;
use cdc_sink::compliance::{ComplianceEnv, Fixture};
use cdc_sink::{Destination, TableBatch, TableShape, WriteOutcome};
use cdc_testkit::StackEnv;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
#[error("memory destination is down")]
struct Down;

#[derive(Default)]
struct Memory {
    down: AtomicBool,
    events: Mutex<usize>,
    offsets: Mutex<BTreeMap<(String, String, i32), i64>>,
}

#[derive(Clone)]
struct MemoryDestination(Arc<Memory>);

#[async_trait]
impl Destination for MemoryDestination {
    type Error = Down;

    fn name(&self) -> &str {
        "memory"
    }

    async fn check_health(&self) -> Result<(), Down> {
        if self.0.down.load(Ordering::SeqCst) {
            Err(Down)
        } else {
            Ok(())
        }
    }

    async fn prepare_table(&self, _shape: &TableShape) -> Result<(), Down> {
        self.check_health().await
    }

    async fn load_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<i64>)>, Down> {
        self.check_health().await?;
        let offsets = self.0.offsets.lock().await;
        Ok(partitions
            .iter()
            .map(|tp| {
                let k = (group.to_owned(), tp.topic.clone(), tp.partition);
                (tp.clone(), offsets.get(&k).copied())
            })
            .collect())
    }

    async fn write_batch(&self, group: &str, batch: &TableBatch) -> Result<WriteOutcome, Down> {
        self.check_health().await?;
        *self.0.events.lock().await += batch.events.len();
        let mut offsets = self.0.offsets.lock().await;
        for o in &batch.next_offsets {
            offsets.insert(
                (group.to_owned(), o.topic.clone(), o.partition),
                o.next_offset,
            );
        }
        Ok(WriteOutcome::Written {
            rows: batch.events.len() as u64,
        })
    }

    fn classify(&self, _error: &Down) -> ErrorClass {
        ErrorClass::Retriable
    }

    fn is_overloaded(&self, _error: &Down) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_destination_pauses_without_dead_letters_and_catches_up() {
    let stack = StackEnv::load();
    let env = ComplianceEnv {
        kafka_bootstrap: stack.kafka_bootstrap,
        poison_name: None,
    };
    let mut fx = Fixture::new(&env, "fw_outage").await;
    let memory = Arc::new(Memory::default());
    let sink = fx.start(MemoryDestination(Arc::clone(&memory)));
    // Up first, so partitions get assigned; then the destination goes away.
    let first: Vec<_> = (0..10).map(|i| fx.events.insert(i, "a", 1, 10)).collect();
    fx.produce(&first).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while *memory.events.lock().await < 10 {
        assert!(Instant::now() < deadline, "first events written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    memory.down.store(true, Ordering::SeqCst);
    let during: Vec<_> = (10..110).map(|i| fx.events.insert(i, "b", 2, 20)).collect();
    fx.produce(&during).await;
    // Retries (3, up to 500 ms) are exhausted well within this time.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        *memory.events.lock().await,
        10,
        "nothing written while down"
    );
    assert!(
        !sink.health.is_ready(),
        "/readyz reports the destination down"
    );
    let text = sink.metrics_text();
    assert!(
        text.lines()
            .any(|l| l.starts_with("cdc_sink_destination_up") && l.ends_with(" 0")),
        "destination_up is 0"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("cdc_sink_retries_total") && !l.ends_with(" 0")),
        "retries counted"
    );
    memory.down.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    while *memory.events.lock().await < 110 {
        assert!(Instant::now() < deadline, "caught up after recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sink.health.is_ready(), "/readyz ready again");
    assert_eq!(*memory.events.lock().await, 110, "each event written once");
    let stored: i64 = memory.offsets.lock().await.values().sum();
    assert_eq!(stored, 110, "offsets cover every message");
    assert!(
        fx.dead_letters(1, Duration::from_secs(3)).await.is_empty(),
        "no dead letters"
    );
    sink.stop().await;
}
