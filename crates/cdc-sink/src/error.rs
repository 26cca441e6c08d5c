//! The crate's one error type and its classifier.

use cdc_model::ErrorClass;

/// Errors of the sink framework and its adapters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A PostgreSQL/TimescaleDB statement failed.
    #[error("PostgreSQL {op} on {relation} failed: {}", PgSummary(source))]
    Postgres {
        op: &'static str,
        relation: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// No pooled connection could be had (names the destination, `postgres` or `timescaledb`,
    /// and where it is: `host:port/database`, no credentials).
    #[error("destination {destination} at {address}: PostgreSQL connection pool: {source}")]
    Pool {
        destination: String,
        address: String,
        #[source]
        source: deadpool_postgres::PoolError,
    },
    /// The destination settings are unusable.
    #[error("invalid sink configuration: {reason}")]
    Config { reason: String },
    /// A value the destination cannot store (names the column and types, never the value).
    #[error("column {keyspace}.{table}.{column}: {source}")]
    Value {
        keyspace: String,
        table: String,
        column: String,
        #[source]
        source: cdc_typemap::postgres::PgValueError,
    },
    /// A change this adapter does not apply yet.
    #[error("{keyspace}.{table}: {what} is not supported by this destination yet")]
    Unsupported {
        keyspace: String,
        table: String,
        what: String,
    },
    /// An event names a column whose type is unknown, or whose type changed incompatibly.
    #[error("{keyspace}.{table}.{column}: {reason}")]
    Schema {
        keyspace: String,
        table: String,
        column: String,
        reason: String,
    },
    /// A Kafka message that is not a valid envelope.
    #[error("message {topic}[{partition}]@{offset} is not a valid change envelope: {reason}")]
    Envelope {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
    /// A Kafka client call failed.
    #[error("Kafka {op}: {source}")]
    Kafka {
        op: &'static str,
        #[source]
        source: cdc_kafka::Error,
    },
    /// The destination adapter failed (boxed adapter error with its class).
    #[error("destination {destination}: {message}")]
    Destination {
        destination: String,
        class: ErrorClass,
        message: String,
    },
    /// Telemetry could not be set up.
    #[error("telemetry: {0}")]
    Telemetry(#[from] cdc_telemetry::Error),
}

/// A PostgreSQL error without its `DETAIL`/`WHERE` lines: PostgreSQL quotes row values there
/// (`Failing row contains (…)`), and error messages end up in logs and dead letters.
pub struct PgSummary<'a>(pub &'a tokio_postgres::Error);

impl std::fmt::Display for PgSummary<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(
                f,
                "db error: {} {}: {}",
                db.severity(),
                db.code().code(),
                db.message()
            ),
            None => write!(f, "{}", self.0),
        }
    }
}

/// SQLSTATE classes and codes that a retry can fix.
fn retriable_sqlstate(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources
        || code.starts_with("40") // serialization failure, deadlock
        || code == "57014" // statement timeout / cancel
        || code.starts_with("57P") // admin / crash shutdown, cannot connect now
        || code == "55P03" // lock not available
        || code == "XX000" // internal error: often transient
}

/// SQLSTATE classes meaning the data is bad for this destination.
fn poison_sqlstate(code: &str) -> bool {
    code.starts_with("22") || code.starts_with("23") // data exception, integrity violation
}

/// The class of a PostgreSQL error: no SQLSTATE (I/O, closed connection, timeout) is retriable.
pub fn classify_postgres(error: &tokio_postgres::Error) -> ErrorClass {
    match error.code() {
        None => ErrorClass::Retriable,
        Some(state) => classify_sqlstate(state.code()),
    }
}

/// The class of a SQLSTATE code.
pub fn classify_sqlstate(code: &str) -> ErrorClass {
    if retriable_sqlstate(code) {
        ErrorClass::Retriable
    } else if poison_sqlstate(code) {
        ErrorClass::Poison
    } else {
        // 42xxx (undefined object, permissions), 28xxx (auth), 3D000 (no database): fix the setup.
        ErrorClass::Fatal
    }
}

/// SQLSTATE 53300 `too_many_connections`: the server answered but refused a new connection
/// (`max_connections`, or a role's or database's connection limit reached).
const TOO_MANY_CONNECTIONS: &str = "53300";

impl Error {
    /// True when the server is up but refused a connection for lack of slots (SQLSTATE 53300:
    /// "sorry, too many clients already", "too many connections for role …"). Retriable, but
    /// unlike an unreachable server it is not waited out: after the retries the batch is
    /// dead-lettered (SPEC US-3 scenario 3, ARCHITECTURE §8) and replayed once healthy.
    pub fn is_overloaded(&self) -> bool {
        let code = match self {
            Error::Postgres { source, .. }
            | Error::Pool {
                source: deadpool_postgres::PoolError::Backend(source),
                ..
            } => source.code(),
            _ => None,
        };
        code.is_some_and(|c| c.code() == TOO_MANY_CONNECTIONS)
    }

    /// What to do about the error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Postgres { source, .. } => classify_postgres(source),
            Error::Pool { source, .. } => match source {
                deadpool_postgres::PoolError::Backend(e) => classify_postgres(e),
                deadpool_postgres::PoolError::Timeout(_) | deadpool_postgres::PoolError::Closed => {
                    ErrorClass::Retriable
                }
                _ => ErrorClass::Retriable,
            },
            Error::Config { .. } | Error::Telemetry(_) => ErrorClass::Fatal,
            Error::Value { source, .. } => source.class(),
            Error::Unsupported { .. } | Error::Schema { .. } | Error::Envelope { .. } => {
                ErrorClass::Poison
            }
            Error::Kafka { source, .. } => match source.class() {
                cdc_kafka::ErrorClass::Retriable => ErrorClass::Retriable,
                cdc_kafka::ErrorClass::Poison => ErrorClass::Poison,
                cdc_kafka::ErrorClass::Fatal => ErrorClass::Fatal,
            },
            Error::Destination { class, .. } => *class,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_sqlstates() {
        assert_eq!(classify_sqlstate("08006"), ErrorClass::Retriable);
        assert_eq!(classify_sqlstate("40001"), ErrorClass::Retriable);
        assert_eq!(classify_sqlstate("40P01"), ErrorClass::Retriable);
        assert_eq!(classify_sqlstate("57014"), ErrorClass::Retriable);
        assert_eq!(classify_sqlstate("57P01"), ErrorClass::Retriable);
        assert_eq!(classify_sqlstate("53300"), ErrorClass::Retriable);
        assert_eq!(classify_sqlstate("22021"), ErrorClass::Poison);
        assert_eq!(classify_sqlstate("23505"), ErrorClass::Poison);
        assert_eq!(classify_sqlstate("42501"), ErrorClass::Fatal);
        assert_eq!(classify_sqlstate("28P01"), ErrorClass::Fatal);
        assert_eq!(classify_sqlstate("3D000"), ErrorClass::Fatal);
    }

    #[test]
    fn classifies_variants() {
        let e = Error::Config { reason: "x".into() };
        assert_eq!(e.class(), ErrorClass::Fatal);
        let e = Error::Unsupported {
            keyspace: "ks".into(),
            table: "t".into(),
            what: "counters".into(),
        };
        assert_eq!(e.class(), ErrorClass::Poison);
        let e = Error::Envelope {
            topic: "t".into(),
            partition: 0,
            offset: 1,
            reason: "x".into(),
        };
        assert_eq!(e.class(), ErrorClass::Poison);
        let e = Error::Destination {
            destination: "postgres".into(),
            class: ErrorClass::Retriable,
            message: "down".into(),
        };
        assert_eq!(e.class(), ErrorClass::Retriable);
        let e = Error::Value {
            keyspace: "ks".into(),
            table: "t".into(),
            column: "c".into(),
            source: cdc_typemap::postgres::PgValueError::NulCharacter {
                cql: "text".into(),
                pg: "text",
            },
        };
        assert_eq!(e.class(), ErrorClass::Poison);
    }
}
