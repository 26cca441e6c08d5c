//! The `telemetry:` section: logs and traces (metrics are always on, served by the admin listener).

use serde::{Deserialize, Serialize};

use crate::validate::{Validator, key};

/// Logging and tracing settings shared by every service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Log filter in `RUST_LOG` syntax (e.g. `info,cdc_sink=debug`); `RUST_LOG` itself wins when set.
    pub log_level: String,
    /// `json` (one object per line, for aggregation) or `pretty` (humans at a terminal).
    pub log_format: LogFormat,
    /// OTLP gRPC endpoint for traces, e.g. `http://otel-collector:4317`; unset = no trace export.
    pub otlp_endpoint: Option<String>,
    /// Service name in logs and traces; unset = the binary's own name (e.g. `sink-postgres`).
    pub service_name: Option<String>,
    /// Fraction of new traces sampled (0.0-1.0); traces continued from Kafka headers follow their parent.
    pub trace_sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            log_level: "info".to_owned(),
            log_format: LogFormat::Json,
            otlp_endpoint: None,
            service_name: None,
            trace_sample_ratio: 1.0,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable multi-line output.
    Pretty,
}

impl TelemetryConfig {
    pub(crate) fn validate(&self, v: &mut Validator, prefix: &str) {
        let ok = !self.log_level.trim().is_empty()
            && self
                .log_level
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-=,:.[]{}\"*/ ".contains(c));
        if !ok {
            v.fail(
                key(prefix, "log_level"),
                "a RUST_LOG-style filter such as `info,cdc_sink=debug`",
                format!("{:?}", self.log_level),
            );
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            v.url(key(prefix, "otlp_endpoint"), endpoint, &["http", "https"]);
        }
        if let Some(name) = &self.service_name {
            v.name(key(prefix, "service_name"), name);
        }
        v.float_range(
            key(prefix, "trace_sample_ratio"),
            self.trace_sample_ratio,
            0.0,
            1.0,
        );
    }
}
