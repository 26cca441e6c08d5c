//! The crate's one error type and its retry class.

use std::net::SocketAddr;

pub use cdc_config::ErrorClass;

/// Errors from setting up logging, tracing, metrics, the admin server and signal handling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The log filter (`RUST_LOG` or `telemetry.log_level`) does not parse.
    #[error("invalid log filter {directive:?} (from {origin}): {source}")]
    LogFilter {
        /// The filter text.
        directive: String,
        /// `RUST_LOG` or `telemetry.log_level`.
        origin: &'static str,
        /// Parser error.
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global tracing subscriber was already installed (`init` called twice).
    #[error("a global tracing subscriber is already installed")]
    SubscriberAlreadySet(#[source] tracing_subscriber::util::TryInitError),
    /// The OTLP span exporter could not be built.
    #[error("cannot build the OTLP exporter for {endpoint}: {source}")]
    OtlpExporter {
        /// Configured endpoint.
        endpoint: String,
        /// Builder error.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// A metric could not be registered (usually: registered twice with the same labels).
    #[error("cannot register metric {name}: {source}")]
    MetricRegistration {
        /// Metric name.
        name: &'static str,
        /// Registry error.
        source: prometheus::Error,
    },
    /// Metrics could not be encoded in the text exposition format.
    #[error("cannot encode metrics: {0}")]
    MetricEncoding(#[source] prometheus::Error),
    /// The admin listener could not bind.
    #[error("cannot bind the admin server to {addr}: {source}")]
    Bind {
        /// Requested address.
        addr: SocketAddr,
        /// I/O error.
        source: std::io::Error,
    },
    /// The admin server stopped with an I/O error.
    #[error("admin server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signal(#[source] std::io::Error),
}

impl Error {
    /// The retry class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Serve(_) => ErrorClass::Retriable,
            _ => ErrorClass::Fatal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        let io = || std::io::Error::other("x");
        assert_eq!(Error::Serve(io()).class(), ErrorClass::Retriable);
        assert_eq!(Error::Signal(io()).class(), ErrorClass::Fatal);
        assert_eq!(
            Error::Bind {
                addr: ([127, 0, 0, 1], 1).into(),
                source: io()
            }
            .class(),
            ErrorClass::Fatal
        );
        let reg = Error::MetricRegistration {
            name: "x",
            source: prometheus::Error::AlreadyReg,
        };
        assert_eq!(reg.class(), ErrorClass::Fatal);
        assert_eq!(
            Error::MetricEncoding(prometheus::Error::AlreadyReg).class(),
            ErrorClass::Fatal
        );
        let parse = "=bad="
            .parse::<tracing_subscriber::EnvFilter>()
            .expect_err("bad filter");
        let filter = Error::LogFilter {
            directive: "=bad=".into(),
            origin: "RUST_LOG",
            source: parse,
        };
        assert_eq!(filter.class(), ErrorClass::Fatal);
    }
}
