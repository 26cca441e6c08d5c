//! The ClickHouse adapter's errors and their classification by ClickHouse error code (the numeric
//! code the server puts in `X-ClickHouse-Exception-Code` and in `Code: N.` of the body).

use cdc_model::ErrorClass;
use cdc_typemap::clickhouse::ClickHouseValueError;

/// What went wrong in the ClickHouse adapter. Messages name tables, columns, codes and types,
/// never values or server message text (which can quote the data).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request to the server failed.
    #[error("ClickHouse {operation} on {relation} failed ({detail})")]
    Server {
        /// What the adapter was doing (`create table`, `insert rows`, ...).
        operation: &'static str,
        /// `database.table` (or the database) concerned.
        relation: String,
        /// The server's error code, when it sent one.
        code: Option<u32>,
        /// Code and exception name, or the transport failure kind.
        detail: String,
        /// Whether the failure happened below HTTP (connection, timeout).
        transport: bool,
    },
    /// A value the mapped ClickHouse column cannot hold.
    #[error("column {column} of {relation}: {source}")]
    Value {
        relation: String,
        column: String,
        #[source]
        source: ClickHouseValueError,
    },
    /// A change the adapter does not apply (names the column and why).
    #[error("column {column} of {relation}: {reason}")]
    Unsupported {
        relation: String,
        column: String,
        reason: &'static str,
    },
    /// A column's type in ClickHouse differs from the type the events carry. The adapter now
    /// archives and re-creates such a column (docs/schema-evolution.md); kept for callers that
    /// refuse instead of writing misaligned.
    #[error(
        "column {column} of {relation} is {existing} in ClickHouse but the events carry {wanted}"
    )]
    TypeChanged {
        relation: String,
        column: String,
        existing: String,
        wanted: String,
    },
    /// The existing state table does not match what the adapter expects.
    #[error("ClickHouse table {relation} has an unexpected layout: {reason}")]
    Layout { relation: String, reason: String },
    /// A topic that is not a `cdc.masked.<ks>.<table>` topic.
    #[error("topic {topic} is not a table topic")]
    Topic { topic: String },
    /// Invalid adapter settings.
    #[error("invalid ClickHouse settings: {reason}")]
    Config { reason: String },
}

/// Server codes that mean the data cannot be stored: retrying the same rows cannot help.
const POISON_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  // ATTEMPT_TO_READ_AFTER_EOF
    33,  // CANNOT_READ_ALL_DATA
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    131, // TOO_LARGE_STRING_SIZE
    321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    407, // DECIMAL_OVERFLOW
];

/// Server codes that mean misconfiguration or a bug: stop the sink.
const FATAL_CODES: &[u32] = &[
    16,  // NO_SUCH_COLUMN_IN_TABLE
    47,  // UNKNOWN_IDENTIFIER
    62,  // SYNTAX_ERROR
    115, // UNKNOWN_SETTING
    164, // READONLY
    192, // UNKNOWN_USER
    193, // WRONG_PASSWORD
    497, // ACCESS_DENIED
    516, // AUTHENTICATION_FAILED
];

/// The class of a server error code. Unknown codes (and the known transient ones: timeouts,
/// TOO_MANY_PARTS, network, memory, dropped table) are retried (bounded by `max_retries`, after
/// which the framework dead-letters), which is safe because every write is idempotent.
pub fn classify_code(code: u32) -> ErrorClass {
    if FATAL_CODES.contains(&code) {
        ErrorClass::Fatal
    } else if POISON_CODES.contains(&code) {
        ErrorClass::Poison
    } else {
        ErrorClass::Retriable
    }
}

impl Error {
    /// Retriable / Poison / Fatal (ARCHITECTURE §8).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Server {
                code: Some(code), ..
            } => classify_code(*code),
            Error::Server { .. } => ErrorClass::Retriable,
            Error::Value { .. } | Error::Unsupported { .. } | Error::TypeChanged { .. } => {
                ErrorClass::Poison
            }
            Error::Layout { .. } | Error::Topic { .. } | Error::Config { .. } => ErrorClass::Fatal,
        }
    }

    /// True when the table or database vanished (the cached layout must be forgotten).
    pub fn is_missing_relation(&self) -> bool {
        matches!(
            self,
            Error::Server {
                code: Some(60 | 81),
                ..
            }
        )
    }

    /// Wraps a `clickhouse` crate error.
    pub fn server(
        operation: &'static str,
        relation: impl Into<String>,
        error: &clickhouse::error::Error,
    ) -> Error {
        use clickhouse::error::Error as E;
        let relation = relation.into();
        let (code, detail, transport) = match error {
            E::BadResponse(text) => {
                let (code, name) = parse_exception(text);
                let detail = match (code, name) {
                    (Some(c), Some(n)) => format!("code {c} {n}"),
                    (Some(c), None) => format!("code {c}"),
                    _ => "bad response without an error code".to_owned(),
                };
                (code, detail, false)
            }
            E::Network(_) => (None, "network error".to_owned(), true),
            E::TimedOut => (None, "timed out".to_owned(), true),
            other => (
                None,
                format!("client error: {}", client_error_kind(other)),
                false,
            ),
        };
        Error::Server {
            operation,
            relation,
            code,
            detail,
            transport,
        }
    }
}

impl Error {
    /// Names the server in a transport failure (`network error at http://host:port`), so an
    /// operator sees where the unreachable ClickHouse is. `url` loses any `user:password@`.
    #[must_use]
    pub fn at_server(mut self, url: &str) -> Error {
        if let Error::Server {
            detail,
            transport: true,
            ..
        } = &mut self
        {
            let shown = match url.split_once("://") {
                Some((scheme, rest)) => {
                    format!(
                        "{scheme}://{}",
                        rest.rsplit_once('@').map_or(rest, |(_, h)| h)
                    )
                }
                None => url.rsplit_once('@').map_or(url, |(_, h)| h).to_owned(),
            };
            detail.push_str(" at ");
            detail.push_str(&shown);
        }
        self
    }
}

fn client_error_kind(error: &clickhouse::error::Error) -> &'static str {
    use clickhouse::error::Error as E;
    match error {
        E::InvalidParams(_) => "invalid params",
        E::Compression(_) | E::Decompression(_) => "compression",
        E::DataFormat(_) | E::NotEnoughData | E::InvalidUtf8Encoding(_) => "data format",
        E::RowNotFound => "row not found",
        E::SchemaMismatch(_) | E::InvalidColumnsHeader(_) => "schema mismatch",
        _ => "other",
    }
}

/// Extracts the code and exception name from a ClickHouse error text:
/// `Code: 62. DB::Exception: … (SYNTAX_ERROR) (version …)`, or a bare code (the crate reports the
/// `X-ClickHouse-Exception-Code` header alone when the body is unreadable).
pub fn parse_exception(text: &str) -> (Option<u32>, Option<String>) {
    let trimmed = text.trim();
    if let Ok(code) = trimmed.parse::<u32>() {
        return (Some(code), None);
    }
    let code = trimmed.find("Code: ").and_then(|i| {
        let digits: String = trimmed[i + 6..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse::<u32>().ok()
    });
    // The exception name is the last parenthesised UPPER_SNAKE word before "(version".
    let head = trimmed.split("(version").next().unwrap_or(trimmed);
    let name = head.rsplit('(').find_map(|part| {
        let word = part.split(')').next()?.trim();
        let ok = !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        ok.then(|| word.to_owned())
    });
    (code, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Server codes worth retrying: timeouts, overload, network, merges falling behind.
    const RETRIABLE_CODES: &[u32] = &[
        3,   // UNEXPECTED_END_OF_FILE (connection cut mid-request)
        159, // TIMEOUT_EXCEEDED
        202, // TOO_MANY_SIMULTANEOUS_QUERIES
        203, // NO_FREE_CONNECTION
        209, // SOCKET_TIMEOUT
        210, // NETWORK_ERROR
        236, // ABORTED
        241, // MEMORY_LIMIT_EXCEEDED
        242, // TABLE_IS_READ_ONLY
        252, // TOO_MANY_PARTS
        285, // TOO_FEW_LIVE_REPLICAS
        319, // UNKNOWN_STATUS_OF_INSERT
        394, // QUERY_WAS_CANCELLED
        425, // SYSTEM_ERROR
        439, // CANNOT_SCHEDULE_TASK
        473, // DEADLOCK_AVOIDED
        999, // KEEPER_EXCEPTION
        60,  // UNKNOWN_TABLE: dropped under us; the next attempt re-creates it
        81,  // UNKNOWN_DATABASE: likewise
    ];

    #[test]
    fn codes_are_classified() {
        for &code in RETRIABLE_CODES.iter().chain(&[12345]) {
            assert_eq!(classify_code(code), ErrorClass::Retriable, "{code}");
        }
        for code in [6, 27, 53, 72, 117, 321, 349, 407] {
            assert_eq!(classify_code(code), ErrorClass::Poison, "{code}");
        }
        for code in [62, 115, 164, 497, 516] {
            assert_eq!(classify_code(code), ErrorClass::Fatal, "{code}");
        }
    }

    #[test]
    fn exception_texts_are_parsed_without_keeping_the_message() {
        let text = "Code: 252. DB::Exception: Too many parts (300) in table 'x'. (TOO_MANY_PARTS) (version 26.9.2.1 (official build))\n";
        assert_eq!(
            parse_exception(text),
            (Some(252), Some("TOO_MANY_PARTS".into()))
        );
        assert_eq!(parse_exception("53"), (Some(53), None));
        assert_eq!(parse_exception("500 Internal Server Error"), (None, None));
        let err = Error::server(
            "insert rows",
            "ks.t",
            &clickhouse::error::Error::BadResponse(
                "Code: 27. DB::Exception: Cannot parse input: 'fake.user@example.test'. (CANNOT_PARSE_INPUT_ASSERTION_FAILED) (version 26.9)".into(),
            ),
        );
        assert_eq!(err.class(), ErrorClass::Poison);
        assert!(!err.to_string().contains("example.test"), "{err}");
        assert!(
            err.to_string()
                .contains("CANNOT_PARSE_INPUT_ASSERTION_FAILED")
        );
        let net = Error::server("ping", "server", &clickhouse::error::Error::TimedOut);
        assert_eq!(net.class(), ErrorClass::Retriable);
        let shown = Error::server("ping", "server", &clickhouse::error::Error::TimedOut)
            .at_server("http://fake-user:fake-password@127.0.0.1:18123")
            .to_string();
        assert!(
            shown.ends_with("(timed out at http://127.0.0.1:18123)"),
            "{shown}"
        );
        let not_transport = Error::server(
            "insert rows",
            "ks.t",
            &clickhouse::error::Error::BadResponse("Code: 27. DB::Exception".into()),
        )
        .at_server("http://127.0.0.1:18123");
        assert!(
            !not_transport.to_string().contains("18123"),
            "{not_transport}"
        );
        let missing = Error::server(
            "insert rows",
            "ks.t",
            &clickhouse::error::Error::BadResponse(
                "Code: 60. DB::Exception: x. (UNKNOWN_TABLE)".into(),
            ),
        );
        assert!(missing.is_missing_relation());
        assert_eq!(missing.class(), ErrorClass::Retriable);
    }

    #[test]
    fn adapter_errors_are_classified() {
        let value = Error::Value {
            relation: "ks.t".into(),
            column: "c".into(),
            source: ClickHouseValueError::NullNotAllowed {
                expected: "Int32".into(),
            },
        };
        assert_eq!(value.class(), ErrorClass::Poison);
        let layout = Error::Layout {
            relation: "ks.t".into(),
            reason: "x".into(),
        };
        assert_eq!(layout.class(), ErrorClass::Fatal);
        assert_eq!(
            Error::Config { reason: "x".into() }.class(),
            ErrorClass::Fatal
        );
    }
}
