//! The crate's error type and its classifier.

use cdc_model::ErrorClass;

/// Everything that can go wrong while reading or interpreting `system_schema`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No CQL session could be opened.
    #[error("cannot connect to Cassandra at {contact_points}: {reason}")]
    Connect {
        contact_points: String,
        reason: String,
    },
    /// A query failed (timeout, node unavailable, connection lost).
    #[error("CQL query on {what} failed: {reason}")]
    Query { what: &'static str, reason: String },
    /// The rows did not have the shape this reader expects (an unsupported Cassandra version).
    #[error("unexpected rows from {what}: {reason}")]
    Rows { what: &'static str, reason: String },
    /// A type string of `system_schema` could not be parsed; the table is skipped.
    #[error("table {keyspace}.{table}: cannot parse the type of column {column}: {source}")]
    TypeParse {
        keyspace: String,
        table: String,
        column: String,
        #[source]
        source: Box<cdc_model::CqlTypeParseError>,
    },
    /// A column row that contradicts the table's shape (unknown kind, bad position).
    #[error("table {keyspace}.{table}: column {column}: {reason}")]
    InvalidColumn {
        keyspace: String,
        table: String,
        column: String,
        reason: String,
    },
    /// `system.local` did not give a host id.
    #[error("cannot read the local host id: {reason}")]
    HostId { reason: String },
}

impl Error {
    /// Retriable: the cluster may answer later. Poison: one table's schema is unusable (it is
    /// skipped, capture continues). Fatal: this reader does not understand the server.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Connect { .. } | Error::Query { .. } => ErrorClass::Retriable,
            Error::TypeParse { .. } | Error::InvalidColumn { .. } => ErrorClass::Poison,
            Error::Rows { .. } | Error::HostId { .. } => ErrorClass::Fatal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifier() {
        let q = Error::Query {
            what: "system_schema.tables",
            reason: "timeout".into(),
        };
        assert_eq!(q.class(), ErrorClass::Retriable);
        let c = Error::Connect {
            contact_points: "127.0.0.1:9042".into(),
            reason: "refused".into(),
        };
        assert_eq!(c.class(), ErrorClass::Retriable);
        let p = Error::TypeParse {
            keyspace: "ks".into(),
            table: "t".into(),
            column: "c".into(),
            source: Box::new(cdc_model::CqlType::parse("nosuchtype").unwrap_err()),
        };
        assert_eq!(p.class(), ErrorClass::Poison);
        let i = Error::InvalidColumn {
            keyspace: "ks".into(),
            table: "t".into(),
            column: "c".into(),
            reason: "kind".into(),
        };
        assert_eq!(i.class(), ErrorClass::Poison);
        let r = Error::Rows {
            what: "system_schema.columns",
            reason: "type".into(),
        };
        assert_eq!(r.class(), ErrorClass::Fatal);
        let h = Error::HostId {
            reason: "null".into(),
        };
        assert_eq!(h.class(), ErrorClass::Fatal);
    }
}
