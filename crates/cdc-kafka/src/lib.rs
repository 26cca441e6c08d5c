//! The only place Kafka clients are configured: transactional producer, read_committed consumer and
//! topic admin. Other crates never call `ClientConfig::set` themselves; they fill a
//! [`KafkaSettings`] and use the clients built here.
//!
//! What this crate guarantees, whatever the settings: producers are idempotent with `acks=all`;
//! consumers read `read_committed` and never commit or store offsets on their own. Blocking
//! librdkafka calls (transactions, metadata, seeks, closing) run in `spawn_blocking`.
//!
//! What it must not do: know about events, schemas or destinations. Offsets are handed in and out
//! as plain values; where they are stored is the caller's business.
//!
//! Every error carries a class ([`ErrorClass`]): `Retriable` (for transactions, check
//! [`Error::requires_abort`] to abort and redo the batch), `Poison` (dead-letter the record),
//! `Fatal` (stop; e.g. fenced by a newer instance with the same transactional id).

mod admin;
mod client_log;
mod consume_pacing;
mod consumer;
mod error;
mod from_config;
mod headers;
mod offsets;
mod producer;
mod schema_registry;
mod settings;

pub use admin::{
    ConfigDrift, EnsureOutcome, PartitionDescription, PartitionWatermarks, TopicAdmin,
    TopicDescription,
};
pub use consume_pacing::{ConsumeErrorPacer, ErrorPace};
pub use consumer::{
    GroupMetadata, InboundMessage, ReadCommittedConsumer, RebalanceEvent, RebalanceEvents,
};
pub use error::{
    Error, ErrorClass, KafkaError, RDKafkaErrorCode, Result, TxnFlags, TxnOp, classify_code,
    classify_kafka_error, classify_txn, error_chain,
};
pub use from_config::{producer_settings_from_config, settings_from_config};
pub use headers::{HeaderPair, from_headers, header_value, to_owned_headers};
pub use offsets::{ConsumedOffsets, PartitionOffset, StartOffset, TopicPartition};
pub use producer::{
    DeliveryReport, IdempotentProducer, PendingDelivery, TransactionalProducer, TxnState,
};
pub use schema_registry::{RegistryError, SchemaRegistryClient};
pub use settings::{
    AssignMode, Compression, ConsumerSettings, KafkaSettings, OffsetReset, PROTECTED_KEYS,
    ProducerSettings, SaslMechanism, SaslSettings, SslSettings, transactional_id,
};

/// Alias matching the brief's name for the read_committed consumer.
pub type ExactlyOnceConsumer = ReadCommittedConsumer;
