//! The crate's one error type. Messages name types, columns, offsets and topics, never values
//! (values can be PII).

use crate::ErrorClass;

/// Everything that can go wrong in cdc-model. Every variant is bad input (`Poison`) unless noted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    TypeParse(#[from] crate::CqlTypeParseError),

    /// Serialized value bytes that do not decode as `cql_type`.
    #[error("malformed {cql_type} value at byte {offset}: {reason}")]
    MalformedValue {
        cql_type: String,
        offset: usize,
        reason: String,
    },

    /// A value whose variant does not fit the type it is encoded as.
    #[error("cannot encode a {value_kind} value as CQL type {cql_type}")]
    TypeMismatch {
        cql_type: String,
        value_kind: &'static str,
    },

    /// A non-frozen collection/UDT cell path that does not decode for its column type.
    #[error("malformed cell path for {cql_type}: {reason}")]
    MalformedCellPath { cql_type: String, reason: String },

    /// A JSON envelope that does not follow the documented shape; `path` is a JSON pointer-ish
    /// location such as `after.tags.value[2]`.
    #[error("invalid JSON change event at {path}: {reason}")]
    Json { path: String, reason: String },

    /// An Avro body that does not match the schema derived for its table.
    #[error("invalid Avro change event at {path}: {reason}")]
    Avro { path: String, reason: String },

    /// apache-avro itself failed (schema parse, encode or decode).
    #[error("Avro {context}: {source}")]
    AvroLibrary {
        context: String,
        #[source]
        source: Box<apache_avro::Error>,
    },

    /// A message that is not in the Confluent wire format (magic byte 0, 4-byte schema id).
    #[error("not a Confluent-framed message: {reason}")]
    WireFormat { reason: String },

    /// The event names a column the table schema does not have.
    #[error("table {keyspace}.{table} has no column {column:?}")]
    UnknownColumn {
        keyspace: String,
        table: String,
        column: String,
    },

    /// A topic name that is not one of ours or is not a legal Kafka topic.
    #[error("invalid topic {topic:?}: {reason}")]
    Topic { topic: String, reason: String },

    /// A keyspace/table/stage name that cannot be part of a topic name.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },

    /// A model field with an impossible value.
    #[error("invalid {field}: {reason}")]
    InvalidField { field: String, reason: String },

    /// serde_json failed on a fixed record (dead letter, capture position).
    #[error("JSON {context}: {source}")]
    SerdeJson {
        context: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Nothing here is transient, so nothing is `Retriable`. Bad names come from configuration
    /// (`Fatal`: the stage cannot run with them); everything else is bad data (`Poison`: dead-letter
    /// the event, keep going).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Topic { .. } | Error::InvalidName { .. } => ErrorClass::Fatal,
            _ => ErrorClass::Poison,
        }
    }

    pub(crate) fn avro(context: impl Into<String>, source: apache_avro::Error) -> Self {
        Error::AvroLibrary {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_kind_of_error() {
        let malformed = crate::native_codec::decode_value(&crate::CqlType::Int, &[1]);
        assert!(matches!(&malformed, Err(e) if e.class() == ErrorClass::Poison));
        let topic = crate::raw_topic("ks", "bad-name");
        assert!(matches!(&topic, Err(e) if e.class() == ErrorClass::Fatal));
        let parse = crate::CqlType::parse("list<").map_err(Error::from);
        assert!(matches!(&parse, Err(e) if e.class() == ErrorClass::Poison));
        let wire = crate::avro_codec::unframe(&[9]);
        assert!(matches!(&wire, Err(e) if e.class() == ErrorClass::Poison));
    }
}
