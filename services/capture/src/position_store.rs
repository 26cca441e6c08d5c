//! The committed capture position of one node: the latest value for the node's key in the
//! compacted topic `cdc.capture.positions`, read under `read_committed`.
//!
//! Call [`load_position`] only after the transactional producer's `init()`: that fences a previous
//! instance and resolves its open transaction, so what is read here is final.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use cdc_kafka::{
    ConsumerSettings, KafkaError, KafkaSettings, ReadCommittedConsumer, StartOffset, TopicAdmin,
    TopicPartition,
};
use cdc_model::CapturePosition;

use crate::error::Error;

/// Topic settings of the positions topic: compacted, one record per node survives.
pub fn positions_topic_config() -> BTreeMap<String, String> {
    BTreeMap::from([("cleanup.policy".to_owned(), "compact".to_owned())])
}

/// Reads the last committed position stored under `key` in `topic`; `None` when there is none.
pub async fn load_position(
    settings: &KafkaSettings,
    admin: &TopicAdmin,
    topic: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<CapturePosition>, Error> {
    let watermarks = admin.high_watermarks(topic).await?;
    let mut pending: HashSet<i32> = watermarks
        .iter()
        .filter(|w| w.high > w.low)
        .map(|w| w.partition)
        .collect();
    if pending.is_empty() {
        return Ok(None);
    }
    let mut reader_settings = settings.clone();
    reader_settings
        .overrides
        .insert("enable.partition.eof".into(), "true".into());
    let mut consumer_settings =
        ConsumerSettings::new(format!("{}-position-reader", settings.client_id));
    consumer_settings.operation_timeout_ms = u32::try_from(timeout.as_millis())
        .unwrap_or(u32::MAX)
        .max(1);
    let (consumer, _events) = ReadCommittedConsumer::new(&reader_settings, &consumer_settings)?;
    let starts: Vec<_> = pending
        .iter()
        .map(|p| (TopicPartition::new(topic, *p), StartOffset::Beginning))
        .collect();
    consumer.assign(&starts)?;
    let mut latest: Option<CapturePosition> = None;
    let deadline = tokio::time::Instant::now() + timeout;
    while !pending.is_empty() {
        let next = tokio::time::timeout_at(deadline, consumer.recv()).await;
        let message = match next {
            Err(_) => {
                return Err(Error::Position {
                    topic: topic.to_owned(),
                    partition: pending.iter().copied().next().unwrap_or(-1),
                    offset: -1,
                    reason: format!("end of partition not reached within {timeout:?}"),
                });
            }
            Ok(Err(cdc_kafka::Error::Consume { source, .. }))
                if matches!(*source, KafkaError::PartitionEOF(_)) =>
            {
                if let KafkaError::PartitionEOF(p) = *source {
                    pending.remove(&p);
                }
                continue;
            }
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(m)) => m,
        };
        if message.key.as_deref() != Some(key.as_bytes()) {
            continue;
        }
        let Some(payload) = message.payload.as_deref() else {
            latest = None; // A tombstone resets the node's position.
            continue;
        };
        let position = CapturePosition::from_json(payload).map_err(|e| Error::Position {
            topic: topic.to_owned(),
            partition: message.partition,
            offset: message.offset,
            reason: e.to_string(),
        })?;
        // The last committed record wins (an operator may rewind on purpose).
        latest = Some(position);
    }
    if let Err(e) = consumer.close().await {
        tracing::debug!(error = %e, "Closing the position reader failed");
    }
    Ok(latest)
}
