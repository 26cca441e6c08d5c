//! The crate's one error type and its retry class.

use std::net::SocketAddr;

pub use cdc_config::ErrorClass;

/// Errors of the dashboard: bad arguments, a malformed scrape, a server that cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An `--endpoint` argument is not `NAME=URL`.
    #[error(
        "invalid endpoint {spec:?}: {reason} (expected NAME=URL, e.g. sink-postgres=http://10.0.0.5:9103)"
    )]
    InvalidEndpoint {
        /// The argument as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A duration argument does not parse.
    #[error("invalid duration {value:?} for {option}: {reason} (e.g. 5s, 500ms, 2m)")]
    InvalidDuration {
        /// The option (`--interval`, ...).
        option: &'static str,
        /// The text given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `/metrics` body is not in the Prometheus text format.
    #[error("line {line} of the metrics text: {message}")]
    Exposition {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// The dashboard's listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Requested address.
        addr: SocketAddr,
        /// I/O error.
        source: std::io::Error,
    },
    /// The dashboard's HTTP server stopped with an I/O error.
    #[error("dashboard server failed: {0}")]
    Serve(#[source] std::io::Error),
}

impl Error {
    /// The retry class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::InvalidEndpoint { .. }
            | Error::InvalidDuration { .. }
            | Error::HttpClient(_)
            | Error::Bind { .. } => ErrorClass::Fatal,
            // The next scrape may be well formed (a service mid-upgrade).
            Error::Exposition { .. } => ErrorClass::Retriable,
            Error::Serve(_) => ErrorClass::Retriable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let bad = Error::InvalidEndpoint {
            spec: "x".into(),
            reason: "no '='".into(),
        };
        assert_eq!(bad.class(), ErrorClass::Fatal);
        assert!(bad.to_string().contains("NAME=URL"));
        let scrape = Error::Exposition {
            line: 3,
            message: "m".into(),
        };
        assert_eq!(scrape.class(), ErrorClass::Retriable);
        assert!(scrape.to_string().contains("line 3"));
        let addr: SocketAddr = "127.0.0.1:9400".parse().expect("addr");
        let bind = Error::Bind {
            addr,
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        assert_eq!(bind.class(), ErrorClass::Fatal);
        assert!(bind.to_string().contains("127.0.0.1:9400"));
    }
}
