//! The capture library's error type and its classifier.

use std::path::PathBuf;

use cdc_model::ErrorClass;

/// Everything that can go wrong in capture.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value in a mutation could not be decoded with the table's schema (the event is skipped
    /// and counted as a parse error).
    #[error(
        "{keyspace}.{table}: cannot decode {what} of the mutation ending at segment {segment_id} position {position}: {source}"
    )]
    Decode {
        keyspace: String,
        table: String,
        segment_id: i64,
        position: u32,
        what: String,
        #[source]
        source: Box<cdc_model::Error>,
    },
    /// A partition update whose shape contradicts the table schema.
    #[error(
        "{keyspace}.{table}: unexpected mutation shape at segment {segment_id} position {position}: {reason}"
    )]
    Shape {
        keyspace: String,
        table: String,
        segment_id: i64,
        position: u32,
        reason: String,
    },
    /// Commit-log bytes that could not be read.
    #[error("commit log: {0}")]
    CommitLog(#[from] cdc_commitlog::Error),
    /// Reading or deleting a file of `cdc_raw` failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Kafka refused or failed.
    #[error("kafka: {0}")]
    Kafka(#[from] cdc_kafka::Error),
    /// The schema catalog failed.
    #[error("schema: {0}")]
    Schema(#[from] cdc_schema::Error),
    /// An event could not be encoded for Kafka.
    #[error("encoding event {correlation_id}: {source}")]
    Encode {
        correlation_id: String,
        #[source]
        source: Box<cdc_model::Error>,
    },
    /// The committed capture position cannot be parsed.
    #[error("capture position in {topic} partition {partition} offset {offset}: {reason}")]
    Position {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
    /// The settings cannot work.
    #[error("invalid capture settings: {reason}")]
    Settings { reason: String },
    /// librdkafka declared the transactional producer unusable (not fenced); it was replaced and
    /// the batch is redone from the last committed position.
    #[error("transactional producer replaced after a fatal error: {cause}")]
    ProducerReplaced { cause: String },
}

impl Error {
    /// Poison: this mutation/event is bad, skip it and count it. Retriable: back off, redo from the
    /// last committed position. Fatal: stop (fenced producer, unreadable segment format, bad config).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Decode { .. } | Error::Shape { .. } | Error::Encode { .. } => ErrorClass::Poison,
            Error::CommitLog(e) => match e.class() {
                cdc_commitlog::ErrorClass::Retriable => ErrorClass::Retriable,
                cdc_commitlog::ErrorClass::Poison => ErrorClass::Poison,
                cdc_commitlog::ErrorClass::Fatal => ErrorClass::Fatal,
            },
            Error::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::PermissionDenied => ErrorClass::Fatal,
                _ => ErrorClass::Retriable,
            },
            Error::Kafka(e) => match e.class() {
                cdc_kafka::ErrorClass::Retriable => ErrorClass::Retriable,
                cdc_kafka::ErrorClass::Poison => ErrorClass::Poison,
                cdc_kafka::ErrorClass::Fatal => ErrorClass::Fatal,
            },
            Error::Schema(e) => e.class(),
            Error::Position { .. } | Error::Settings { .. } => ErrorClass::Fatal,
            Error::ProducerReplaced { .. } => ErrorClass::Retriable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifier() {
        let decode = Error::Decode {
            keyspace: "ks".into(),
            table: "t".into(),
            segment_id: 1,
            position: 2,
            what: "column v".into(),
            source: Box::new(cdc_model::Error::InvalidField {
                field: "v".into(),
                reason: "bad".into(),
            }),
        };
        assert_eq!(decode.class(), ErrorClass::Poison);
        let shape = Error::Shape {
            keyspace: "ks".into(),
            table: "t".into(),
            segment_id: 1,
            position: 2,
            reason: "x".into(),
        };
        assert_eq!(shape.class(), ErrorClass::Poison);
        let io = Error::Io {
            op: "read",
            path: "/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(io.class(), ErrorClass::Retriable);
        let denied = Error::Io {
            op: "read",
            path: "/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(denied.class(), ErrorClass::Fatal);
        let stale = Error::CommitLog(cdc_commitlog::Error::UnknownColumn {
            table_id: uuid::Uuid::nil(),
            column: "c".into(),
        });
        assert_eq!(stale.class(), ErrorClass::Retriable);
        let enc = Error::CommitLog(cdc_commitlog::Error::Encrypted {
            segment_id: 1,
            cipher: "AES".into(),
            key_alias: "k".into(),
        });
        assert_eq!(enc.class(), ErrorClass::Fatal);
        let crc = Error::CommitLog(cdc_commitlog::Error::EntryCrcMismatch {
            segment_id: 1,
            position: 9,
        });
        assert_eq!(crc.class(), ErrorClass::Poison);
        let pos = Error::Position {
            topic: "t".into(),
            partition: 0,
            offset: 1,
            reason: "json".into(),
        };
        assert_eq!(pos.class(), ErrorClass::Fatal);
        let settings = Error::Settings { reason: "x".into() };
        assert_eq!(settings.class(), ErrorClass::Fatal);
        let schema = Error::Schema(cdc_schema::Error::Query {
            what: "x",
            reason: "timeout".into(),
        });
        assert_eq!(schema.class(), ErrorClass::Retriable);
    }
}
