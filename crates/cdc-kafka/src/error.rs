//! The crate's one error type and its classifier.
//!
//! Every error has a class (`Retriable | Poison | Fatal`). The class of a Kafka failure comes from the
//! librdkafka error code, and for transaction calls also from the flags librdkafka attaches
//! (`is_fatal`, `txn_requires_abort`, `is_retriable`). The mapping is pure and unit-tested below.

use std::time::Duration;

pub use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// What the caller should do about an error: the pipeline-wide class.
pub use cdc_model::ErrorClass;

/// The transaction operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOp {
    /// `init_transactions`.
    Init,
    /// `begin_transaction`.
    Begin,
    /// `send_offsets_to_transaction`.
    SendOffsets,
    /// `commit_transaction`.
    Commit,
    /// `abort_transaction`.
    Abort,
}

impl std::fmt::Display for TxnOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TxnOp::Init => "init",
            TxnOp::Begin => "begin",
            TxnOp::SendOffsets => "send_offsets",
            TxnOp::Commit => "commit",
            TxnOp::Abort => "abort",
        })
    }
}

/// The flags librdkafka attaches to a transaction error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxnFlags {
    /// `rd_kafka_error_is_fatal`: the producer instance is unusable.
    pub fatal: bool,
    /// `rd_kafka_error_is_retriable`: the same call may be retried.
    pub retriable: bool,
    /// `rd_kafka_error_txn_requires_abort`: abort the transaction, then start a new one.
    pub requires_abort: bool,
}

impl TxnFlags {
    /// The flags of a [`KafkaError`]; only `KafkaError::Transaction` carries any.
    pub fn of(error: &KafkaError) -> TxnFlags {
        match error {
            KafkaError::Transaction(e) => TxnFlags {
                fatal: e.is_fatal(),
                retriable: e.is_retriable(),
                requires_abort: e.txn_requires_abort(),
            },
            _ => TxnFlags::default(),
        }
    }
}

/// Errors of the Kafka layer. Match on [`Error::class`], not on variants, to decide what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Settings rejected before any client was built.
    #[error("invalid Kafka settings: {reason}")]
    InvalidSettings {
        /// What is wrong, naming the setting.
        reason: String,
    },

    /// librdkafka refused to create a client (bad property, unreadable certificate, ...).
    #[error("creating the Kafka {client} client failed")]
    ClientCreation {
        /// `producer`, `consumer` or `admin`.
        client: &'static str,
        /// The librdkafka error.
        #[source]
        source: Box<KafkaError>,
    },

    /// A transaction call failed.
    #[error(
        "Kafka transaction {op} failed for transactional id {transactional_id} \
         (fatal: {}, requires abort: {}, retriable: {})",
        flags.fatal, flags.requires_abort, flags.retriable
    )]
    Transaction {
        /// The failed call.
        op: TxnOp,
        /// The producer's `transactional.id`.
        transactional_id: String,
        /// librdkafka's flags on the error.
        flags: TxnFlags,
        /// The librdkafka error.
        #[source]
        source: Box<KafkaError>,
    },

    /// A message could not be enqueued or was not delivered.
    #[error("producing to topic {topic} (partition {partition:?}) failed")]
    Produce {
        /// Target topic.
        topic: String,
        /// Target partition, when the caller chose one.
        partition: Option<i32>,
        /// The librdkafka error.
        #[source]
        source: Box<KafkaError>,
    },

    /// The producer was dropped before it reported a delivery result.
    #[error("the producer was dropped before the delivery to topic {topic} was reported")]
    DeliveryCanceled {
        /// Target topic.
        topic: String,
    },

    /// Receiving from a consumer failed.
    #[error("consuming for group {group_id} failed")]
    Consume {
        /// Consumer group.
        group_id: String,
        /// The librdkafka error.
        #[source]
        source: Box<KafkaError>,
    },

    /// Subscribing or assigning partitions failed.
    #[error("subscribing group {group_id} to {what} failed")]
    Subscribe {
        /// Consumer group.
        group_id: String,
        /// Topics, pattern or partitions.
        what: String,
        /// The librdkafka error.
        #[source]
        source: Box<KafkaError>,
    },

    /// Seeking, pausing or resuming one partition failed.
    #[error("positioning {topic}[{partition}] at {offset:?} failed")]
    Seek {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The requested start, when there was one.
        offset: Option<i64>,
        /// The librdkafka error.
        #[source]
        source: Box<KafkaError>,
    },

    /// Reading or committing consumer-group offsets failed.
    #[error("{op} offsets of group {group_id} failed")]
    Offsets {
        /// `fetch committed` or `commit`.
        op: &'static str,
        /// Consumer group.
        group_id: String,
        /// The librdkafka error.
        #[source]
        source: Box<KafkaError>,
    },

    /// The consumer has no group metadata (it was built without a group).
    #[error("consumer group metadata of group {group_id} is unavailable")]
    GroupMetadataUnavailable {
        /// Consumer group.
        group_id: String,
    },

    /// Fetching cluster or topic metadata (or watermarks) failed.
    #[error("fetching metadata for topic {topic:?} failed")]
    Metadata {
        /// The topic asked about, `None` for the whole cluster.
        topic: Option<String>,
        /// The librdkafka error.
        #[source]
        source: Box<KafkaError>,
    },

    /// An admin request failed as a whole.
    #[error("admin {op} for topic {topic} failed")]
    Admin {
        /// `create topic`, `delete topic`, `describe configs`.
        op: &'static str,
        /// Topic.
        topic: String,
        /// The librdkafka error.
        #[source]
        source: Box<KafkaError>,
    },

    /// The broker answered an admin request for one topic with an error code.
    #[error("admin {op} for topic {topic} was refused: {code}")]
    TopicRefused {
        /// `create topic`, `delete topic`, `describe configs`.
        op: &'static str,
        /// Topic.
        topic: String,
        /// Broker error code.
        code: RDKafkaErrorCode,
    },

    /// A topic the caller expects is absent from the cluster metadata.
    #[error("topic {topic} does not exist")]
    TopicNotFound {
        /// Topic.
        topic: String,
    },

    /// `ensure_topic` found the topic with fewer partitions than asked for. Keyed topics must not be
    /// silently accepted with another partition count: it changes which partition holds a key.
    #[error("topic {topic} exists with {actual} partitions, {wanted} were asked for")]
    TooFewPartitions {
        /// Topic.
        topic: String,
        /// Partitions asked for.
        wanted: i32,
        /// Partitions found.
        actual: i32,
    },

    /// A call made in the wrong state (e.g. `send` outside a transaction): a programming error.
    #[error("{op} is not allowed while the producer is {state}")]
    InvalidState {
        /// The call.
        op: &'static str,
        /// The state it was made in.
        state: &'static str,
    },

    /// A bounded wait ran out.
    #[error("{op} did not complete within {after:?}")]
    Timeout {
        /// What was waited for.
        op: &'static str,
        /// The bound.
        after: Duration,
    },

    /// A schema-registry request failed (Avro format).
    #[error(transparent)]
    Registry(#[from] crate::schema_registry::RegistryError),

    /// The blocking task that ran a librdkafka call panicked or was cancelled.
    #[error("the blocking task for {op} failed")]
    BlockingTask {
        /// The call.
        op: &'static str,
        /// Tokio's join error.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What the caller should do.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Transaction { flags, source, .. } => classify_txn(source_code(source), *flags),
            Error::Produce { source, .. }
            | Error::Consume { source, .. }
            | Error::Seek { source, .. }
            | Error::Offsets { source, .. }
            | Error::Metadata { source, .. }
            | Error::Admin { source, .. } => classify_kafka_error(source),
            Error::TopicRefused { code, .. } => classify_code(*code),
            Error::Subscribe { source, .. } => match &**source {
                // A bad topic list or pattern is a configuration error whatever its code.
                KafkaError::Subscription(_) => ErrorClass::Fatal,
                other => classify_kafka_error(other),
            },
            Error::Timeout { .. } => ErrorClass::Retriable,
            Error::Registry(e) => e.class,
            Error::InvalidSettings { .. }
            | Error::ClientCreation { .. }
            | Error::DeliveryCanceled { .. }
            | Error::GroupMetadataUnavailable { .. }
            | Error::TopicNotFound { .. }
            | Error::TooFewPartitions { .. }
            | Error::InvalidState { .. }
            | Error::BlockingTask { .. } => ErrorClass::Fatal,
        }
    }

    /// True when the current transaction must be aborted (and the batch redone in a new one)
    /// before anything else; the error's class is then `Retriable`.
    pub fn requires_abort(&self) -> bool {
        match self {
            Error::Transaction { flags, source, .. } => {
                classify_txn(source_code(source), *flags) == ErrorClass::Retriable
                    && flags.requires_abort
            }
            _ => false,
        }
    }

    /// The error says another producer took over this transactional id (fencing).
    pub fn is_fenced(&self) -> bool {
        self.code().is_some_and(is_fencing)
    }

    /// A transaction call librdkafka allows to repeat as is (`rd_kafka_error_is_retriable`,
    /// neither fatal nor requiring an abort), e.g. `commit_transaction` after a timeout.
    pub fn call_retriable(&self) -> bool {
        match self {
            Error::Transaction { flags, source, .. } => {
                flags.retriable
                    && !flags.requires_abort
                    && classify_txn(source_code(source), *flags) == ErrorClass::Retriable
            }
            _ => false,
        }
    }

    /// The librdkafka error code underneath, when there is one.
    pub fn code(&self) -> Option<RDKafkaErrorCode> {
        match self {
            Error::ClientCreation { source, .. }
            | Error::Transaction { source, .. }
            | Error::Produce { source, .. }
            | Error::Consume { source, .. }
            | Error::Subscribe { source, .. }
            | Error::Seek { source, .. }
            | Error::Offsets { source, .. }
            | Error::Metadata { source, .. }
            | Error::Admin { source, .. } => source.rdkafka_error_code(),
            Error::TopicRefused { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn transaction(op: TxnOp, transactional_id: &str, source: KafkaError) -> Error {
        Error::Transaction {
            op,
            transactional_id: transactional_id.to_owned(),
            flags: TxnFlags::of(&source),
            source: Box::new(source),
        }
    }
}

/// Renders an error with its whole `source()` chain, `outer: inner: innermost`, for logs.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let text = e.to_string();
        // Some librdkafka errors repeat their source in their own message.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

fn source_code(error: &KafkaError) -> RDKafkaErrorCode {
    error
        .rdkafka_error_code()
        .unwrap_or(RDKafkaErrorCode::Unknown)
}

/// Classifies a transaction error from its code and librdkafka's flags.
///
/// Order matters: fatal beats everything (a fenced producer must stop even if the error is also
/// flagged abortable), then abort-and-retry, then plain retry, then the code alone.
pub fn classify_txn(code: RDKafkaErrorCode, flags: TxnFlags) -> ErrorClass {
    if flags.fatal {
        return ErrorClass::Fatal;
    }
    if is_fencing(code) {
        return ErrorClass::Fatal;
    }
    if flags.requires_abort || flags.retriable {
        return ErrorClass::Retriable;
    }
    classify_code(code)
}

/// Classifies any [`KafkaError`] (non-transaction calls, delivery reports, consumer errors).
pub fn classify_kafka_error(error: &KafkaError) -> ErrorClass {
    match error {
        KafkaError::Transaction(e) => classify_txn(e.code(), TxnFlags::of(error)),
        KafkaError::MessageConsumptionFatal(_) => ErrorClass::Fatal,
        KafkaError::ClientConfig(..)
        | KafkaError::ClientCreation(_)
        | KafkaError::Nul(_)
        | KafkaError::Subscription(_)
        | KafkaError::AdminOpCreation(_)
        | KafkaError::Canceled => ErrorClass::Fatal,
        KafkaError::NoMessageReceived | KafkaError::PartitionEOF(_) => ErrorClass::Retriable,
        // Only a message string: "Local: Unrepresentable offset" and similar caller mistakes.
        KafkaError::Seek(_) | KafkaError::PauseResume(_) => ErrorClass::Fatal,
        other => match other.rdkafka_error_code() {
            Some(code) => classify_code(code),
            None => ErrorClass::Fatal,
        },
    }
}

/// Codes that mean another producer with the same `transactional.id` took over.
fn is_fencing(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::TransactionCoordinatorFenced
            | RDKafkaErrorCode::FencedInstanceId
    )
}

/// Classifies a librdkafka error code (local `-1xx` codes and broker codes).
///
/// Unknown codes are `Fatal`: a crash-and-resume from the last committed transaction is safe, an
/// endless retry of something never seen before is not.
pub fn classify_code(code: RDKafkaErrorCode) -> ErrorClass {
    use RDKafkaErrorCode as C;
    if is_fencing(code) {
        return ErrorClass::Fatal;
    }
    match code {
        // Connectivity, leadership moves, coordinator churn, back-pressure.
        C::BrokerTransportFailure
        | C::AllBrokersDown
        | C::Resolve
        | C::RequestTimedOut
        | C::OperationTimedOut
        | C::MessageTimedOut
        | C::TimedOutQueue
        | C::QueueFull
        | C::NetworkException
        | C::LeaderNotAvailable
        | C::NotLeaderForPartition
        | C::BrokerNotAvailable
        | C::ReplicaNotAvailable
        | C::PreferredLeaderNotAvailable
        | C::FencedLeaderEpoch
        | C::UnknownLeaderEpoch
        | C::NotEnoughReplicas
        | C::NotEnoughReplicasAfterAppend
        | C::ISRInsufficient
        | C::KafkaStorageError
        | C::CoordinatorLoadInProgress
        | C::CoordinatorNotAvailable
        | C::NotCoordinator
        | C::WaitingForCoordinator
        | C::ConcurrentTransactions
        | C::RebalanceInProgress
        | C::IllegalGeneration
        | C::UnknownMemberId
        | C::UnstableOffsetCommit
        | C::OffsetNotAvailable
        | C::ThrottlingQuotaExceeded
        | C::NotController
        | C::InProgress
        | C::PreviousInProgress
        | C::Retry
        // Metadata for a topic just created has not propagated yet.
        | C::UnknownTopicOrPartition
        | C::UnknownTopic
        | C::UnknownPartition
        // Messages purged by an abort: redo them in the next transaction.
        | C::PurgeQueue
        | C::PurgeInflight
        | C::AssignmentLost
        | C::RebootstrapRequired => ErrorClass::Retriable,

        // The record itself is unacceptable.
        C::MessageSizeTooLarge
        | C::InvalidMessageSize
        | C::InvalidRecord
        | C::InvalidMessage
        | C::BadMessage
        | C::MessageBatchTooLarge
        | C::InvalidTimestamp
        | C::KeySerialization
        | C::ValueSerialization
        | C::KeyDeserialization
        | C::ValueDeserialization => ErrorClass::Poison,

        // Authorisation, configuration, protocol state: no retry will fix these.
        C::TransactionalIdAuthorizationFailed
        | C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::SaslAuthenticationFailed
        | C::Authentication
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState
        | C::SSL
        | C::InvalidConfig
        | C::InvalidArgument
        | C::InvalidTransactionTimeout
        | C::InvalidTransactionalState
        | C::InvalidProducerIdMapping
        | C::UnknownProducerId
        | C::OutOfOrderSequenceNumber
        | C::UnsupportedVersion
        | C::UnsupportedForMessageFormat
        | C::UnsupportedCompressionType
        | C::UnsupportedFeature
        | C::InvalidTopic
        | C::InvalidPartitions
        | C::InvalidReplicationFactor
        | C::InvalidRequiredAcks
        | C::PolicyViolation
        | C::InvalidRequest
        | C::InvalidGroupId
        | C::InvalidSessionTimeout
        | C::State
        | C::Fatal
        | C::NotConfigured
        | C::GaplessGuarantee
        | C::Inconsistent => ErrorClass::Fatal,

        _ => ErrorClass::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connectivity_codes_are_retriable() {
        for code in [
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::RequestTimedOut,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::CoordinatorLoadInProgress,
            RDKafkaErrorCode::ConcurrentTransactions,
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::PurgeQueue,
        ] {
            assert_eq!(classify_code(code), ErrorClass::Retriable, "{code:?}");
        }
    }

    #[test]
    fn fencing_and_authorisation_codes_are_fatal() {
        for code in [
            RDKafkaErrorCode::ProducerFenced,
            RDKafkaErrorCode::InvalidProducerEpoch,
            RDKafkaErrorCode::Fenced,
            RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::SaslAuthenticationFailed,
            RDKafkaErrorCode::InvalidTransactionTimeout,
            RDKafkaErrorCode::Fatal,
        ] {
            assert_eq!(classify_code(code), ErrorClass::Fatal, "{code:?}");
        }
    }

    #[test]
    fn bad_records_are_poison() {
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidRecord,
            RDKafkaErrorCode::InvalidMessage,
            RDKafkaErrorCode::BadMessage,
            RDKafkaErrorCode::InvalidTimestamp,
        ] {
            assert_eq!(classify_code(code), ErrorClass::Poison, "{code:?}");
        }
    }

    #[test]
    fn error_chain_renders_sources_once() {
        let e = Error::Produce {
            topic: "t".into(),
            partition: Some(1),
            source: Box::new(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge,
            )),
        };
        let chain = error_chain(&e);
        assert!(
            chain.starts_with("producing to topic t (partition Some(1)) failed: "),
            "{chain}"
        );
        assert!(chain.contains("Message production error"), "{chain}");
    }

    #[test]
    fn unknown_codes_are_fatal() {
        assert_eq!(classify_code(RDKafkaErrorCode::Unknown), ErrorClass::Fatal);
        assert_eq!(classify_code(RDKafkaErrorCode::Fail), ErrorClass::Fatal);
    }

    #[test]
    fn txn_flags_take_precedence_in_order() {
        let fatal = TxnFlags {
            fatal: true,
            retriable: true,
            requires_abort: true,
        };
        assert_eq!(
            classify_txn(RDKafkaErrorCode::RequestTimedOut, fatal),
            ErrorClass::Fatal
        );

        let abortable = TxnFlags {
            requires_abort: true,
            ..TxnFlags::default()
        };
        // An abortable error whose code is a bad record still only needs abort-and-retry of the
        // transaction: the record is dealt with by whoever built the batch.
        assert_eq!(
            classify_txn(RDKafkaErrorCode::MessageSizeTooLarge, abortable),
            ErrorClass::Retriable
        );

        let retriable = TxnFlags {
            retriable: true,
            ..TxnFlags::default()
        };
        assert_eq!(
            classify_txn(RDKafkaErrorCode::InvalidConfig, retriable),
            ErrorClass::Retriable
        );

        // Without flags the code decides.
        assert_eq!(
            classify_txn(RDKafkaErrorCode::AllBrokersDown, TxnFlags::default()),
            ErrorClass::Retriable
        );
        assert_eq!(
            classify_txn(RDKafkaErrorCode::InvalidRecord, TxnFlags::default()),
            ErrorClass::Poison
        );
    }

    #[test]
    fn fencing_is_fatal_even_when_flagged_abortable() {
        let abortable = TxnFlags {
            requires_abort: true,
            retriable: true,
            fatal: false,
        };
        assert_eq!(
            classify_txn(RDKafkaErrorCode::ProducerFenced, abortable),
            ErrorClass::Fatal
        );
        assert_eq!(
            classify_txn(RDKafkaErrorCode::InvalidProducerEpoch, abortable),
            ErrorClass::Fatal
        );
    }

    #[test]
    fn kafka_error_variants_are_classified() {
        assert_eq!(
            classify_kafka_error(&KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge
            )),
            ErrorClass::Poison
        );
        assert_eq!(
            classify_kafka_error(&KafkaError::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure
            )),
            ErrorClass::Retriable
        );
        assert_eq!(
            classify_kafka_error(&KafkaError::MessageConsumptionFatal(
                RDKafkaErrorCode::BrokerTransportFailure
            )),
            ErrorClass::Fatal
        );
        assert_eq!(
            classify_kafka_error(&KafkaError::ClientCreation("bad".into())),
            ErrorClass::Fatal
        );
        assert_eq!(
            classify_kafka_error(&KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)),
            ErrorClass::Retriable
        );
        assert_eq!(
            classify_kafka_error(&KafkaError::Canceled),
            ErrorClass::Fatal
        );
    }

    #[test]
    fn error_class_and_abort_flag() {
        let e = Error::Transaction {
            op: TxnOp::Commit,
            transactional_id: "capture-a".into(),
            flags: TxnFlags {
                requires_abort: true,
                ..TxnFlags::default()
            },
            source: Box::new(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut,
            )),
        };
        assert_eq!(e.class(), ErrorClass::Retriable);
        assert!(e.requires_abort());
        assert!(
            !e.call_retriable(),
            "an abortable error must not be resumed"
        );

        let timed_out = Error::Transaction {
            op: TxnOp::Commit,
            transactional_id: "masker-a".into(),
            flags: TxnFlags {
                retriable: true,
                ..TxnFlags::default()
            },
            source: Box::new(KafkaError::MessageProduction(
                RDKafkaErrorCode::OperationTimedOut,
            )),
        };
        assert!(timed_out.call_retriable());
        assert!(!timed_out.requires_abort());
        let fenced_but_flagged = Error::Transaction {
            op: TxnOp::Commit,
            transactional_id: "masker-a".into(),
            flags: TxnFlags {
                retriable: true,
                ..TxnFlags::default()
            },
            source: Box::new(KafkaError::MessageProduction(
                RDKafkaErrorCode::ProducerFenced,
            )),
        };
        assert!(!fenced_but_flagged.call_retriable());

        let fenced = Error::Transaction {
            op: TxnOp::Commit,
            transactional_id: "capture-a".into(),
            flags: TxnFlags {
                fatal: true,
                ..TxnFlags::default()
            },
            source: Box::new(KafkaError::MessageProduction(RDKafkaErrorCode::Fenced)),
        };
        assert_eq!(fenced.class(), ErrorClass::Fatal);
        assert!(!fenced.requires_abort());

        let produce = Error::Produce {
            topic: "t".into(),
            partition: None,
            source: Box::new(KafkaError::MessageProduction(
                RDKafkaErrorCode::InvalidRecord,
            )),
        };
        assert_eq!(produce.class(), ErrorClass::Poison);
        assert_eq!(produce.code(), Some(RDKafkaErrorCode::InvalidRecord));

        let subscribe = Error::Subscribe {
            group_id: "g".into(),
            what: "pattern".into(),
            source: Box::new(KafkaError::Subscription("bad regex".into())),
        };
        assert_eq!(subscribe.class(), ErrorClass::Fatal);

        assert_eq!(
            Error::Timeout {
                op: "x",
                after: Duration::from_secs(1)
            }
            .class(),
            ErrorClass::Retriable
        );
        assert_eq!(
            Error::TooFewPartitions {
                topic: "t".into(),
                wanted: 3,
                actual: 1
            }
            .class(),
            ErrorClass::Fatal
        );
        assert_eq!(ErrorClass::Poison.as_str(), "poison");
    }
}
