//! Idempotent producers: a transactional one for exactly-once stages and a plain idempotent one for
//! dead-letter and admin writes.
//!
//! librdkafka's transaction calls block the calling thread (network round trips to the transaction
//! coordinator), so each runs in `tokio::task::spawn_blocking` on a shared handle of the producer.
//!
//! Transaction sequence: `init` once, then per batch `begin` → `send`… → `send_offsets` (optional)
//! → `commit`. `commit` flushes every outstanding message first: if any delivery failed, the commit
//! fails with an abortable error and nothing of the batch becomes visible. On an error with
//! [`Error::requires_abort`], call `abort` and redo the batch; on a `Fatal` error (another instance
//! with the same transactional id fenced this one) drop the producer and stop.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::client_log::TracingContext;
use crate::consumer::GroupMetadata;
use crate::error::{Error, ErrorClass, Result, TxnOp};
use crate::headers::{HeaderPair, to_owned_headers};
use crate::offsets::{PartitionOffset, offsets_to_tpl};
use crate::settings::{KafkaSettings, ProducerSettings};

type InnerProducer = FutureProducer<TracingContext>;

/// Pause between attempts to enqueue into a full producer queue.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(10);

/// Where a message was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Topic.
    pub topic: String,
    /// Partition the message landed in.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}

/// Resolves when the broker acknowledged (or refused) one message. Dropping it does not cancel the
/// delivery; a transaction commit waits for every message regardless.
#[must_use = "await it to learn the delivery result, or rely on commit() for transactional sends"]
pub struct PendingDelivery {
    topic: String,
    partition: Option<i32>,
    inner: rdkafka::producer::DeliveryFuture,
}

impl std::fmt::Debug for PendingDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingDelivery")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

impl Future for PendingDelivery {
    type Output = Result<DeliveryReport>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.inner.poll_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_canceled)) => Poll::Ready(Err(Error::DeliveryCanceled {
                topic: this.topic.clone(),
            })),
            Poll::Ready(Ok(Err((source, _message)))) => Poll::Ready(Err(Error::Produce {
                topic: this.topic.clone(),
                partition: this.partition,
                source: Box::new(source),
            })),
            Poll::Ready(Ok(Ok(delivery))) => Poll::Ready(Ok(DeliveryReport {
                topic: this.topic.clone(),
                partition: delivery.partition,
                offset: delivery.offset,
            })),
        }
    }
}

/// Enqueues one message, waiting (without blocking the runtime) for room in a full queue.
async fn enqueue(
    producer: &InnerProducer,
    topic: &str,
    partition: Option<i32>,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    headers: &[HeaderPair],
    queue_timeout: Duration,
) -> Result<PendingDelivery> {
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
    if !headers.is_empty() {
        record = record.headers(to_owned_headers(headers));
    }
    if let Some(p) = partition {
        record = record.partition(p);
    }
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(v) = payload {
        record = record.payload(v);
    }
    let deadline = Instant::now() + queue_timeout;
    loop {
        match producer.send_result(record) {
            Ok(inner) => {
                return Ok(PendingDelivery {
                    topic: topic.to_owned(),
                    partition,
                    inner,
                });
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                if Instant::now() < deadline =>
            {
                record = returned;
                tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
            }
            Err((source, _)) => {
                return Err(Error::Produce {
                    topic: topic.to_owned(),
                    partition,
                    source: Box::new(source),
                });
            }
        }
    }
}

/// Runs a blocking librdkafka call off the async runtime.
pub(crate) async fn blocking<T, F>(op: &'static str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|source| Error::BlockingTask { op, source })
}

fn create_producer(
    settings: &KafkaSettings,
    producer: &ProducerSettings,
    transactional_id: Option<&str>,
) -> Result<InnerProducer> {
    let config = settings.producer_config(producer, transactional_id)?;
    InnerProducer::from_config_and_context(&config, TracingContext).map_err(|source| {
        Error::ClientCreation {
            client: "producer",
            source: Box::new(source),
        }
    })
}

/// How many times `commit` / `abort` call librdkafka while it reports a retriable error. With
/// the default 30 s operation timeout this outlasts a broker restart; past the 60 s transaction
/// timeout the broker aborts the transaction and the call reports that instead.
pub const TXN_CALL_ATTEMPTS: u32 = 6;

/// Pause before resuming a transaction call: 0.5 s doubling per attempt, at most 5 s.
fn resume_pause(attempt: u32) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(10));
    Duration::from_millis(ms.min(5_000))
}

/// Where a [`TransactionalProducer`] is in the transaction protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    /// Built; `init` not yet done.
    Created,
    /// Initialised, no open transaction.
    Ready,
    /// A transaction is open.
    InTransaction,
    /// The open transaction hit an abortable error: only `abort` is allowed.
    AbortRequired,
    /// Fatal error (e.g. fenced): the producer is unusable.
    Failed,
}

impl TxnState {
    fn as_str(self) -> &'static str {
        match self {
            TxnState::Created => "not initialised",
            TxnState::Ready => "outside a transaction",
            TxnState::InTransaction => "in a transaction",
            TxnState::AbortRequired => "waiting for abort",
            TxnState::Failed => "failed",
        }
    }
}

/// An idempotent, transactional producer (`enable.idempotence=true`, `acks=all`).
///
/// Methods that change the transaction state take `&mut self`; `send` takes `&self`, so the
/// deliveries of one batch can be awaited concurrently. Do not cancel a transaction call midway
/// (e.g. in `select!`): the blocking call runs to completion regardless and the state would lag.
pub struct TransactionalProducer {
    producer: Arc<InnerProducer>,
    transactional_id: String,
    op_timeout: Duration,
    state: TxnState,
    /// What `reset` rebuilds the client from.
    settings: KafkaSettings,
    producer_settings: ProducerSettings,
    /// The last fatal error was a fencing: another producer owns the transactional id.
    fenced: bool,
}

impl std::fmt::Debug for TransactionalProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionalProducer")
            .field("transactional_id", &self.transactional_id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl TransactionalProducer {
    /// Builds the producer (no network I/O yet). `transactional_id` must be stable for this stage
    /// instance, e.g. [`transactional_id`](crate::transactional_id)`("capture", host_id)`.
    pub fn new(
        settings: &KafkaSettings,
        producer: &ProducerSettings,
        transactional_id: &str,
    ) -> Result<Self> {
        let inner = create_producer(settings, producer, Some(transactional_id))?;
        Ok(TransactionalProducer {
            producer: Arc::new(inner),
            transactional_id: transactional_id.to_owned(),
            op_timeout: producer.operation_timeout(),
            settings: settings.clone(),
            producer_settings: producer.clone(),
            fenced: false,
            state: TxnState::Created,
        })
    }

    /// The producer's `transactional.id`.
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// Current protocol state.
    pub fn state(&self) -> TxnState {
        self.state
    }

    fn expect_state(&self, op: &'static str, allowed: &[TxnState]) -> Result<()> {
        if allowed.contains(&self.state) {
            Ok(())
        } else {
            Err(Error::InvalidState {
                op,
                state: self.state.as_str(),
            })
        }
    }

    fn note_error(&mut self, error: &Error) {
        if error.class() == ErrorClass::Fatal {
            self.state = TxnState::Failed;
            self.fenced = error.is_fenced();
        } else if error.requires_abort() {
            self.state = TxnState::AbortRequired;
        }
        tracing::warn!(
            transactional_id = %self.transactional_id,
            error_class = error.class().as_str(),
            requires_abort = error.requires_abort(),
            error = %crate::error_chain(error),
            "Kafka transaction call failed"
        );
    }

    async fn run_txn<F>(&mut self, op: TxnOp, call: F) -> Result<()>
    where
        F: FnOnce(&InnerProducer, Duration) -> rdkafka::error::KafkaResult<()> + Send + 'static,
    {
        let producer = Arc::clone(&self.producer);
        let timeout = self.op_timeout;
        let outcome = blocking("kafka transaction call", move || call(&producer, timeout)).await;
        let result = match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(Error::transaction(op, &self.transactional_id, source)),
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            self.note_error(e);
        }
        result
    }

    /// Registers the transactional id with the coordinator, fencing any previous producer with the
    /// same id and aborting its open transaction. Retriable errors leave the state unchanged.
    pub async fn init(&mut self) -> Result<()> {
        self.expect_state("init", &[TxnState::Created])?;
        self.run_txn(TxnOp::Init, |p, t| p.init_transactions(t))
            .await?;
        self.state = TxnState::Ready;
        Ok(())
    }

    /// Replaces a producer that librdkafka declared unusable (a fatal error that is not a
    /// fencing: e.g. `INVALID_TXN_STATE` when ending a transaction across a broker restart) with a
    /// new client for the same `transactional.id`; call [`init`](Self::init) next, which aborts
    /// whatever the old client left open. Refuses after fencing: another instance owns the id,
    /// and taking it back would fence that one in turn.
    pub async fn reset(&mut self) -> Result<()> {
        if self.fenced {
            return Err(Error::InvalidState {
                op: "reset",
                state: "fenced by another producer with the same transactional id",
            });
        }
        let fresh = create_producer(
            &self.settings,
            &self.producer_settings,
            Some(&self.transactional_id),
        )?;
        let old = std::mem::replace(&mut self.producer, Arc::new(fresh));
        self.state = TxnState::Created;
        tracing::warn!(
            transactional_id = %self.transactional_id,
            "Replacing the transactional producer after a fatal error"
        );
        // librdkafka's destructor may wait for the old client's queues: off the runtime threads.
        if let Ok(old) = Arc::try_unwrap(old) {
            blocking("close producer", move || drop(old)).await?;
        }
        Ok(())
    }

    /// Opens a transaction.
    pub async fn begin(&mut self) -> Result<()> {
        self.expect_state("begin", &[TxnState::Ready])?;
        self.run_txn(TxnOp::Begin, |p, _| p.begin_transaction())
            .await?;
        self.state = TxnState::InTransaction;
        Ok(())
    }

    /// Enqueues one message in the open transaction. `payload: None` writes a tombstone;
    /// `partition: None` lets the partitioner hash the key. The returned future reports the
    /// delivery; `commit` waits for all of them anyway.
    pub async fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: &[HeaderPair],
    ) -> Result<PendingDelivery> {
        self.expect_state("send", &[TxnState::InTransaction])?;
        enqueue(
            &self.producer,
            topic,
            partition,
            key,
            payload,
            headers,
            self.op_timeout,
        )
        .await
    }

    /// Adds consumer offsets (the next offset to read per partition) to the open transaction: they
    /// are committed to `group` if and only if the transaction commits.
    pub async fn send_offsets(
        &mut self,
        offsets: &[PartitionOffset],
        group: &GroupMetadata,
    ) -> Result<()> {
        self.expect_state("send_offsets", &[TxnState::InTransaction])?;
        if offsets.is_empty() {
            return Ok(());
        }
        let tpl = offsets_to_tpl(offsets)?;
        let group = group.clone();
        self.run_txn(TxnOp::SendOffsets, move |p, t| {
            p.send_offsets_to_transaction(&tpl, group.inner(), t)
        })
        .await
    }

    /// Repeats `call` while librdkafka marks its error retriable (e.g. a commit that timed out
    /// while the coordinator moved): calling `commit_transaction` / `abort_transaction` again
    /// resumes the call in progress, whereas any other call in between fails with "Conflicting
    /// ... API call is already in progress". Gives up after [`TXN_CALL_ATTEMPTS`] calls.
    async fn run_txn_resuming<F>(&mut self, op: TxnOp, call: F) -> Result<()>
    where
        F: Fn(&InnerProducer, Duration) -> rdkafka::error::KafkaResult<()> + Send + Copy + 'static,
    {
        let mut attempt = 1;
        loop {
            match self.run_txn(op, call).await {
                Err(e) if e.call_retriable() && attempt < TXN_CALL_ATTEMPTS => {
                    let pause = resume_pause(attempt);
                    tracing::info!(
                        transactional_id = %self.transactional_id,
                        op = %op,
                        attempt,
                        pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                        "Resuming the Kafka transaction call"
                    );
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Flushes every outstanding message, then commits the transaction. A call that librdkafka
    /// marks retriable is resumed (up to [`TXN_CALL_ATTEMPTS`] calls); an error that
    /// [`Error::requires_abort`] leaves only `abort`.
    pub async fn commit(&mut self) -> Result<()> {
        self.expect_state("commit", &[TxnState::InTransaction])?;
        self.run_txn_resuming(TxnOp::Commit, |p, t| p.commit_transaction(t))
            .await?;
        self.state = TxnState::Ready;
        Ok(())
    }

    /// Aborts the open transaction: its messages (including unsent ones, whose deliveries fail
    /// with a purge error) and offsets are discarded. A no-op when no transaction is open.
    pub async fn abort(&mut self) -> Result<()> {
        if self.state == TxnState::Ready {
            return Ok(());
        }
        self.expect_state("abort", &[TxnState::InTransaction, TxnState::AbortRequired])?;
        self.run_txn_resuming(TxnOp::Abort, |p, t| p.abort_transaction(t))
            .await?;
        self.state = TxnState::Ready;
        Ok(())
    }

    /// Drops the producer off the async runtime (librdkafka's destructor purges and waits).
    pub async fn close(self) -> Result<()> {
        let producer = self.producer;
        blocking("close producer", move || drop(producer)).await
    }
}

/// An idempotent, non-transactional producer (`acks=all`): for dead-letter topics and one-off
/// writes where exactly-once is not required but reordering and duplicates from retries are not
/// wanted.
pub struct IdempotentProducer {
    producer: Arc<InnerProducer>,
    op_timeout: Duration,
}

impl std::fmt::Debug for IdempotentProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotentProducer").finish_non_exhaustive()
    }
}

impl IdempotentProducer {
    /// Builds the producer (no network I/O yet).
    pub fn new(settings: &KafkaSettings, producer: &ProducerSettings) -> Result<Self> {
        Ok(IdempotentProducer {
            producer: Arc::new(create_producer(settings, producer, None)?),
            op_timeout: producer.operation_timeout(),
        })
    }

    /// Enqueues one message; see [`TransactionalProducer::send`].
    pub async fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: &[HeaderPair],
    ) -> Result<PendingDelivery> {
        enqueue(
            &self.producer,
            topic,
            partition,
            key,
            payload,
            headers,
            self.op_timeout,
        )
        .await
    }

    /// Waits until every enqueued message is delivered or failed.
    pub async fn flush(&self) -> Result<()> {
        let producer = Arc::clone(&self.producer);
        let timeout = self.op_timeout;
        blocking("flush producer", move || producer.flush(timeout))
            .await?
            .map_err(|source| Error::Produce {
                topic: "*".to_owned(),
                partition: None,
                source: Box::new(source),
            })
    }

    /// Drops the producer off the async runtime.
    pub async fn close(self) -> Result<()> {
        let producer = self.producer;
        blocking("close producer", move || drop(producer)).await
    }
}

#[cfg(test)]
mod resume_tests {
    use super::*;

    #[test]
    fn resume_pause_doubles_up_to_five_seconds() {
        let pauses: Vec<u64> = (1..=TXN_CALL_ATTEMPTS)
            .map(|a| u64::try_from(resume_pause(a).as_millis()).unwrap())
            .collect();
        assert_eq!(pauses, vec![500, 1_000, 2_000, 4_000, 5_000, 5_000]);
        assert_eq!(resume_pause(u32::MAX), Duration::from_millis(5_000));
    }
}
