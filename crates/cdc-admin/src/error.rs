//! The crate's error type; every error knows its class.

use cdc_model::ErrorClass;

/// Errors of the admin API (client side and the shared server helpers).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint string cannot be used.
    #[error("invalid admin endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// As given.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },

    /// Nothing answers at the endpoint (service down, wrong port, firewall) within the timeout.
    #[error("admin endpoint {endpoint} is unreachable: {reason}")]
    Unreachable {
        /// The URL tried.
        endpoint: String,
        /// The transport's explanation.
        reason: String,
    },

    /// The service answered with an error.
    #[error("{rpc} on {endpoint} failed ({code:?}): {message}")]
    Rpc {
        /// The URL called.
        endpoint: String,
        /// The RPC name.
        rpc: &'static str,
        /// gRPC status code.
        code: tonic::Code,
        /// The service's message.
        message: String,
    },

    /// A Kafka operation on a dead-letter topic failed.
    #[error("{op} on topic {topic} failed")]
    Kafka {
        /// What was done (`read dead letters`, `record replayed letters`, …).
        op: &'static str,
        /// The topic.
        topic: String,
        /// The Kafka error.
        #[source]
        source: cdc_kafka::Error,
    },

    /// Reading a topic did not reach its end in time.
    #[error("reading topic {topic} did not finish within {after_ms} ms")]
    ReadTimeout {
        /// The topic.
        topic: String,
        /// The budget.
        after_ms: u64,
    },

    /// A request argument is invalid.
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// What is wrong, naming the field.
        reason: String,
    },
}

impl Error {
    /// Retriable (try again later), Poison (bad input) or Fatal.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::InvalidEndpoint { .. } | Error::InvalidArgument { .. } => ErrorClass::Poison,
            Error::Unreachable { .. } | Error::ReadTimeout { .. } => ErrorClass::Retriable,
            Error::Rpc { code, .. } => match code {
                tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::ResourceExhausted
                | tonic::Code::Aborted => ErrorClass::Retriable,
                tonic::Code::InvalidArgument
                | tonic::Code::NotFound
                | tonic::Code::FailedPrecondition
                | tonic::Code::OutOfRange => ErrorClass::Poison,
                _ => ErrorClass::Fatal,
            },
            Error::Kafka { source, .. } => source.class(),
        }
    }

    /// True when the service could not be reached at all (`cdcctl status` shows it DOWN).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let message = cdc_kafka::error_chain(&e);
        match e.class() {
            ErrorClass::Retriable => tonic::Status::unavailable(message),
            ErrorClass::Poison => tonic::Status::invalid_argument(message),
            ErrorClass::Fatal => tonic::Status::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_cause() {
        let down = Error::Unreachable {
            endpoint: "http://127.0.0.1:9".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(down.class(), ErrorClass::Retriable);
        assert!(down.is_unreachable());
        assert!(down.to_string().contains("http://127.0.0.1:9"));
        let bad = Error::Rpc {
            endpoint: "e".into(),
            rpc: "Replay",
            code: tonic::Code::InvalidArgument,
            message: "m".into(),
        };
        assert_eq!(bad.class(), ErrorClass::Poison);
        assert!(!bad.is_unreachable());
        let status: tonic::Status = Error::InvalidArgument {
            reason: "to_offsets: empty".into(),
        }
        .into();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
}
