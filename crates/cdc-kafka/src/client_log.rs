//! Routes librdkafka's log lines and global errors to `tracing` with key/value fields.

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

use crate::error::classify_kafka_error;

/// Client context for producers and admin clients.
#[derive(Debug, Clone, Default)]
pub(crate) struct TracingContext;

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_line(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        log_global_error(&error, reason);
    }
}

pub(crate) fn log_line(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility = fac, message, "Librdkafka error")
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", facility = fac, message, "Librdkafka warning")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility = fac, message, "Librdkafka notice")
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", facility = fac, message, "Librdkafka debug")
        }
    }
}

/// Global errors are mostly transient (a broker connection dropped) and handled by librdkafka
/// itself; they are logged, not returned.
pub(crate) fn log_global_error(error: &KafkaError, reason: &str) {
    let class = classify_kafka_error(error).as_str();
    tracing::warn!(
        target: "librdkafka",
        error = %error,
        reason,
        error_class = class,
        "Kafka client error"
    );
}
