//! The masker service's error type.

use cdc_model::ErrorClass;

/// Why the masking loop stopped or a batch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Kafka client call failed.
    #[error("kafka: {0}")]
    Kafka(#[from] cdc_kafka::Error),
    /// Policy, keys or vault.
    #[error("masking: {0}")]
    Mask(#[from] cdc_mask::Error),
    /// A dead letter could not be serialized.
    #[error("dead letter: {0}")]
    DeadLetter(#[source] cdc_model::Error),
    /// A raw topic whose masked counterpart cannot be named.
    #[error("topic {topic}: {source}")]
    Topic {
        topic: String,
        #[source]
        source: cdc_model::Error,
    },
}

impl Error {
    /// The error's class; `Fatal` stops the service.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Kafka(e) => e.class(),
            Error::Mask(e) => e.class(),
            Error::DeadLetter(_) => ErrorClass::Poison,
            Error::Topic { .. } => ErrorClass::Poison,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let e = Error::Mask(cdc_mask::Error::Crypto { op: "encrypt" });
        assert_eq!(e.class(), ErrorClass::Poison);
        let e = Error::Mask(cdc_mask::Error::BadKey {
            key_id: "k".into(),
            reason: "short".into(),
        });
        assert_eq!(e.class(), ErrorClass::Fatal);
        let e = Error::Kafka(cdc_kafka::Error::InvalidSettings { reason: "x".into() });
        assert_eq!(e.class(), ErrorClass::Fatal);
    }
}
