//! A `read_committed` consumer with manual offsets and rebalance events.
//!
//! Every consumer is built with `isolation.level=read_committed`, `enable.auto.commit=false` and
//! `enable.auto.offset.store=false`: a stage either commits offsets inside its producer transaction
//! (masker: [`ReadCommittedConsumer::group_metadata`] + `TransactionalProducer::send_offsets`) or
//! keeps them in its destination (sinks).
//!
//! # Seeking on assignment (sinks)
//!
//! librdkafka runs the rebalance callback on the thread that polls the consumer, i.e. inside
//! [`ReadCommittedConsumer::recv`]; it must not block there, so loading offsets from a database
//! cannot happen in the callback. With [`AssignMode::PauseUntilSeek`] the callback instead pauses
//! the newly assigned partitions (before anything is fetched) and sends
//! [`RebalanceEvent::Assigned`] on a channel. The sink loop then loads its stored offsets and calls
//! [`ReadCommittedConsumer::seek_and_resume`]:
//!
//! ```no_run
//! # async fn run(settings: cdc_kafka::KafkaSettings) -> cdc_kafka::Result<()> {
//! use cdc_kafka::{AssignMode, ConsumerSettings, RebalanceEvent, ReadCommittedConsumer, StartOffset};
//! let mut cs = ConsumerSettings::new("sink-postgres");
//! cs.assign_mode = AssignMode::PauseUntilSeek;
//! let (consumer, mut events) = ReadCommittedConsumer::new(&settings, &cs)?;
//! consumer.subscribe_pattern(r"^cdc\.masked\..*")?;
//! loop {
//!     tokio::select! {
//!         Some(event) = events.recv() => {
//!             if let RebalanceEvent::Assigned { partitions, .. } = event {
//!                 // Load from the destination; `Committed` where it has nothing stored.
//!                 let starts: Vec<_> = partitions.into_iter()
//!                     .map(|p| (p, StartOffset::Committed)).collect();
//!                 consumer.seek_and_resume(&starts).await?;
//!             }
//!         }
//!         message = consumer.recv() => { let _message = message?; /* write it */ }
//!     }
//! }
//! # }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::{FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance,
    StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::client_log::{log_global_error, log_line};
use crate::error::{Error, Result};
use crate::headers::{HeaderPair, from_headers};
use crate::offsets::{
    PartitionOffset, StartOffset, TopicPartition, offsets_to_tpl, partitions_to_tpl, seek_error,
    tpl_partitions,
};
use crate::producer::blocking;
use crate::settings::{AssignMode, ConsumerSettings, KafkaSettings};

/// Pause between seek attempts while a just-assigned partition's fetcher is still starting.
const SEEK_RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// Consumer group metadata (group, generation, member), for `send_offsets_to_transaction`.
#[derive(Clone)]
pub struct GroupMetadata(Arc<ConsumerGroupMetadata>);

impl GroupMetadata {
    pub(crate) fn inner(&self) -> &ConsumerGroupMetadata {
        &self.0
    }
}

impl std::fmt::Debug for GroupMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupMetadata").finish_non_exhaustive()
    }
}

/// A partition-assignment change, delivered in the order librdkafka reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RebalanceEvent {
    /// Partitions newly assigned to this member. With [`AssignMode::PauseUntilSeek`] they are
    /// `paused` until [`ReadCommittedConsumer::seek_and_resume`] is called for them.
    Assigned {
        /// The partitions.
        partitions: Vec<TopicPartition>,
        /// Whether they were paused.
        paused: bool,
    },
    /// Partitions taken away (sent before they are unassigned). Drop any state kept for them;
    /// work on them is no longer committed by this member.
    Revoked {
        /// The partitions.
        partitions: Vec<TopicPartition>,
    },
    /// The group reported a rebalance error.
    Failed {
        /// librdkafka's description.
        reason: String,
    },
}

/// The receiving end of a consumer's rebalance events.
#[derive(Debug)]
pub struct RebalanceEvents {
    rx: mpsc::UnboundedReceiver<RebalanceEvent>,
}

impl RebalanceEvents {
    /// The next event; `None` once the consumer is gone. Cancellation safe.
    pub async fn recv(&mut self) -> Option<RebalanceEvent> {
        self.rx.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<RebalanceEvent> {
        self.rx.try_recv().ok()
    }
}

/// Consumer context: forwards rebalances to the application and logs through `tracing`.
pub(crate) struct RebalanceContext {
    // Unbounded because the callback must never block; events are rare (one per rebalance).
    tx: mpsc::UnboundedSender<RebalanceEvent>,
    pause_on_assign: bool,
    group_id: String,
}

impl RebalanceContext {
    fn emit(&self, event: RebalanceEvent) {
        // A closed channel only means the application stopped listening.
        let _ = self.tx.send(event);
    }
}

impl ClientContext for RebalanceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_line(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        log_global_error(&error, reason);
    }
}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions = tpl_partitions(tpl);
            tracing::info!(group_id = %self.group_id, partitions = partitions.len(), "Partitions revoked");
            self.emit(RebalanceEvent::Revoked { partitions });
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions = tpl_partitions(tpl);
                let mut paused = false;
                if self.pause_on_assign && !partitions.is_empty() {
                    // Pausing also purges anything already fetched for these partitions.
                    match consumer.pause(tpl) {
                        Ok(()) => paused = true,
                        Err(e) => tracing::error!(
                            group_id = %self.group_id,
                            error = %e,
                            "Pausing newly assigned partitions failed"
                        ),
                    }
                }
                tracing::info!(group_id = %self.group_id, partitions = partitions.len(), paused, "Partitions assigned");
                self.emit(RebalanceEvent::Assigned { partitions, paused });
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(group_id = %self.group_id, error = %e, "Rebalance failed");
                self.emit(RebalanceEvent::Failed {
                    reason: e.to_string(),
                });
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(group_id = %self.group_id, error = %e, "Offset commit failed");
        }
    }
}

/// A message owned by the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Payload bytes; `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<HeaderPair>,
    /// Message timestamp in milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

type InnerConsumer = StreamConsumer<RebalanceContext>;

/// A `read_committed` group consumer. See the module documentation.
pub struct ReadCommittedConsumer {
    consumer: Arc<InnerConsumer>,
    group_id: String,
    op_timeout: Duration,
}

impl std::fmt::Debug for ReadCommittedConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCommittedConsumer")
            .field("group_id", &self.group_id)
            .finish_non_exhaustive()
    }
}

impl ReadCommittedConsumer {
    /// Builds the consumer (no network I/O until subscribe/assign). Must be called inside a Tokio
    /// runtime. Returns the rebalance event receiver alongside.
    pub fn new(
        settings: &KafkaSettings,
        consumer: &ConsumerSettings,
    ) -> Result<(Self, RebalanceEvents)> {
        let config = settings.consumer_config(consumer)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let context = RebalanceContext {
            tx,
            pause_on_assign: consumer.assign_mode == AssignMode::PauseUntilSeek,
            group_id: consumer.group_id.clone(),
        };
        let inner = InnerConsumer::from_config_and_context(&config, context).map_err(|source| {
            Error::ClientCreation {
                client: "consumer",
                source: Box::new(source),
            }
        })?;
        Ok((
            ReadCommittedConsumer {
                consumer: Arc::new(inner),
                group_id: consumer.group_id.clone(),
                op_timeout: consumer.operation_timeout(),
            },
            RebalanceEvents { rx },
        ))
    }

    /// The consumer group.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    fn subscribe_error(&self, what: String, source: KafkaError) -> Error {
        Error::Subscribe {
            group_id: self.group_id.clone(),
            what,
            source: Box::new(source),
        }
    }

    /// Joins the group for these topics (replacing any previous subscription).
    pub fn subscribe(&self, topics: &[&str]) -> Result<()> {
        self.consumer
            .subscribe(topics)
            .map_err(|e| self.subscribe_error(format!("topics {topics:?}"), e))
    }

    /// Joins the group for every topic matching a regular expression, e.g. `^cdc\.masked\..*`.
    /// librdkafka treats a subscription as a pattern only when it starts with `^`.
    pub fn subscribe_pattern(&self, pattern: &str) -> Result<()> {
        if !pattern.starts_with('^') {
            return Err(Error::InvalidSettings {
                reason: format!("topic pattern `{pattern}` must start with `^`"),
            });
        }
        self.consumer
            .subscribe(&[pattern])
            .map_err(|e| self.subscribe_error(format!("pattern {pattern}"), e))
    }

    /// Reads exactly these partitions from these positions, outside group management (no
    /// rebalances). Replaces any previous assignment.
    pub fn assign(&self, starts: &[(TopicPartition, StartOffset)]) -> Result<()> {
        let mut tpl = TopicPartitionList::with_capacity(starts.len());
        for (tp, start) in starts {
            tpl.add_partition_offset(&tp.topic, tp.partition, start.to_rdkafka())
                .map_err(|e| seek_error(tp, start.absolute(), e))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| self.subscribe_error(format!("{} partitions", starts.len()), e))
    }

    /// The partitions currently assigned.
    pub fn assignment(&self) -> Result<Vec<TopicPartition>> {
        self.consumer
            .assignment()
            .map(|tpl| tpl_partitions(&tpl))
            .map_err(|e| self.subscribe_error("assignment".into(), e))
    }

    /// The next committed message (transactions not yet committed are never returned).
    /// Cancellation safe. Also drives rebalances: keep calling it.
    pub async fn recv(&self) -> Result<InboundMessage> {
        let message = self
            .consumer
            .recv()
            .await
            .map_err(|source| Error::Consume {
                group_id: self.group_id.clone(),
                source: Box::new(source),
            })?;
        Ok(InboundMessage {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers: message.headers().map(from_headers).unwrap_or_default(),
            timestamp_ms: message.timestamp().to_millis(),
        })
    }

    /// Positions assigned partitions and resumes them (see the module documentation).
    ///
    /// `StartOffset::Committed` resumes at the group's committed offset without seeking. A
    /// partition assigned a moment ago may not accept a seek until its fetcher started: such seeks
    /// are retried until the operation timeout.
    pub async fn seek_and_resume(&self, starts: &[(TopicPartition, StartOffset)]) -> Result<()> {
        let deadline = Instant::now() + self.op_timeout;
        let mut pending: Vec<(TopicPartition, StartOffset)> = starts
            .iter()
            .filter(|(_, s)| *s != StartOffset::Committed)
            .cloned()
            .collect();
        while !pending.is_empty() {
            let mut tpl = TopicPartitionList::with_capacity(pending.len());
            for (tp, start) in &pending {
                tpl.add_partition_offset(&tp.topic, tp.partition, start.to_rdkafka())
                    .map_err(|e| seek_error(tp, start.absolute(), e))?;
            }
            let consumer = Arc::clone(&self.consumer);
            let timeout = self.op_timeout;
            let sought = blocking("seek partitions", move || {
                consumer.seek_partitions(tpl, timeout)
            })
            .await?
            .map_err(|e| seek_error(&pending[0].0, pending[0].1.absolute(), e))?;

            let mut retry = Vec::new();
            for (tp, start) in pending {
                let outcome = sought
                    .find_partition(&tp.topic, tp.partition)
                    .map(|e| e.error())
                    .unwrap_or(Ok(()));
                match outcome {
                    Ok(()) => {}
                    Err(e)
                        if matches!(
                            e.rdkafka_error_code(),
                            Some(RDKafkaErrorCode::State | RDKafkaErrorCode::PreviousInProgress)
                        ) =>
                    {
                        retry.push((tp, start));
                    }
                    Err(e) => return Err(seek_error(&tp, start.absolute(), e)),
                }
            }
            pending = retry;
            if !pending.is_empty() {
                if Instant::now() >= deadline {
                    return Err(Error::Timeout {
                        op: "seek of newly assigned partitions",
                        after: self.op_timeout,
                    });
                }
                tokio::time::sleep(SEEK_RETRY_BACKOFF).await;
            }
        }
        let all: Vec<TopicPartition> = starts.iter().map(|(tp, _)| tp.clone()).collect();
        if all.is_empty() {
            return Ok(());
        }
        self.consumer
            .resume(&partitions_to_tpl(&all))
            .map_err(|e| seek_error(&all[0], None, e))
    }

    /// Group metadata for `TransactionalProducer::send_offsets`.
    pub fn group_metadata(&self) -> Result<GroupMetadata> {
        self.consumer
            .group_metadata()
            .map(|m| GroupMetadata(Arc::new(m)))
            .ok_or_else(|| Error::GroupMetadataUnavailable {
                group_id: self.group_id.clone(),
            })
    }

    /// The group's committed offsets (next offset to read) for these partitions; `None` where the
    /// group has committed nothing.
    pub async fn committed_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<i64>)>> {
        let tpl = partitions_to_tpl(partitions);
        let consumer = Arc::clone(&self.consumer);
        let timeout = self.op_timeout;
        let committed = blocking("fetch committed offsets", move || {
            consumer.committed_offsets(tpl, timeout)
        })
        .await?
        .map_err(|source| Error::Offsets {
            op: "fetch committed",
            group_id: self.group_id.clone(),
            source: Box::new(source),
        })?;
        Ok(partitions
            .iter()
            .map(|tp| {
                let offset =
                    committed
                        .find_partition(&tp.topic, tp.partition)
                        .and_then(|e| match e.offset() {
                            Offset::Offset(n) => Some(n),
                            _ => None,
                        });
                (tp.clone(), offset)
            })
            .collect())
    }

    /// Commits offsets to the group asynchronously (failures are logged). For sinks, whose real
    /// offsets live in the destination, this only feeds lag dashboards.
    pub fn commit_offsets(&self, offsets: &[PartitionOffset]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let tpl = offsets_to_tpl(offsets)?;
        self.consumer
            .commit(&tpl, CommitMode::Async)
            .map_err(|source| Error::Offsets {
                op: "commit",
                group_id: self.group_id.clone(),
                source: Box::new(source),
            })
    }

    /// Stops fetching these partitions (an operator's pause). Messages already fetched for them
    /// are discarded; after [`ReadCommittedConsumer::resume`] fetching restarts right after the
    /// last message [`ReadCommittedConsumer::recv`] returned. Keep calling `recv` meanwhile: it
    /// drives rebalances (and keeps the member in its group).
    pub fn pause(&self, partitions: &[TopicPartition]) -> Result<()> {
        if partitions.is_empty() {
            return Ok(());
        }
        self.consumer
            .pause(&partitions_to_tpl(partitions))
            .map_err(|e| seek_error(&partitions[0], None, e))
    }

    /// Restarts fetching partitions stopped by [`ReadCommittedConsumer::pause`].
    pub fn resume(&self, partitions: &[TopicPartition]) -> Result<()> {
        if partitions.is_empty() {
            return Ok(());
        }
        self.consumer
            .resume(&partitions_to_tpl(partitions))
            .map_err(|e| seek_error(&partitions[0], None, e))
    }

    /// For each partition, the earliest offset whose message timestamp is at or after the given
    /// time (milliseconds since the epoch); `None` when no message is that recent (the caller
    /// usually takes the high watermark then). Works on any partition, assigned or not.
    pub async fn offsets_for_times(
        &self,
        query: &[(TopicPartition, i64)],
    ) -> Result<Vec<(TopicPartition, Option<i64>)>> {
        if query.is_empty() {
            return Ok(Vec::new());
        }
        let mut tpl = TopicPartitionList::with_capacity(query.len());
        for (tp, ts) in query {
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*ts))
                .map_err(|e| seek_error(tp, Some(*ts), e))?;
        }
        let consumer = Arc::clone(&self.consumer);
        let timeout = self.op_timeout;
        let found = blocking("offsets for times", move || {
            consumer.offsets_for_times(tpl, timeout)
        })
        .await?
        .map_err(|source| Error::Offsets {
            op: "look up by timestamp",
            group_id: self.group_id.clone(),
            source: Box::new(source),
        })?;
        query
            .iter()
            .map(|(tp, ts)| {
                let Some(e) = found.find_partition(&tp.topic, tp.partition) else {
                    return Ok((tp.clone(), None));
                };
                e.error().map_err(|err| seek_error(tp, Some(*ts), err))?;
                Ok((
                    tp.clone(),
                    match e.offset() {
                        Offset::Offset(n) if n >= 0 => Some(n),
                        _ => None,
                    },
                ))
            })
            .collect()
    }

    /// Leaves the group and drops the consumer off the async runtime (librdkafka's close blocks).
    pub async fn close(self) -> Result<()> {
        let consumer = self.consumer;
        blocking("close consumer", move || drop(consumer)).await
    }
}
