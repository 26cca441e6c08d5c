//! The root of `pipeline.yaml`.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::capture::CaptureConfig;
use crate::cassandra::CassandraConfig;
use crate::kafka::KafkaConfig;
use crate::masker::MaskerConfig;
use crate::secret::SecretsConfig;
use crate::sink::SinksConfig;
use crate::telemetry::TelemetryConfig;
use crate::validate::{Validator, Violation, key};

static CLUSTER_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_-]{1,64}$").expect("static regex"));

/// The whole pipeline configuration: one section per stage. Every section has defaults, so a file
/// that names only what differs from them is complete.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Name of the source Cassandra cluster; part of event source ids and transactional ids.
    pub cluster_name: String,
    /// Kafka brokers, security, topic layout and event format.
    pub kafka: KafkaConfig,
    /// Source Cassandra cluster (CQL).
    pub cassandra: CassandraConfig,
    /// Capture sidecar.
    pub capture: CaptureConfig,
    /// Masking stage.
    pub masker: MaskerConfig,
    /// Destination sinks.
    pub sinks: SinksConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// How `vault:` secret references are resolved.
    pub secrets: SecretsConfig,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            cluster_name: "cassandra".to_owned(),
            kafka: KafkaConfig::default(),
            cassandra: CassandraConfig::default(),
            capture: CaptureConfig::default(),
            masker: MaskerConfig::default(),
            sinks: SinksConfig::default(),
            telemetry: TelemetryConfig::default(),
            secrets: SecretsConfig::default(),
        }
    }
}

impl PipelineConfig {
    /// Checks ranges and cross-field rules. Pure: touches no file, variable or network, so secret
    /// references are checked for form only. Reports every violation, not just the first.
    pub fn validate(&self) -> Result<(), Vec<Violation>> {
        let mut v = Validator::default();
        v.matches(
            "cluster_name".into(),
            &self.cluster_name,
            &CLUSTER_NAME,
            "a name of 1-64 [A-Za-z0-9_-]",
        );
        self.kafka.validate(&mut v, "kafka");
        self.cassandra.validate(&mut v, "cassandra");
        self.capture.validate(&mut v, "capture");
        self.masker.validate(&mut v, "masker");
        if let Some(s) = &self.sinks.postgres {
            s.validate(&mut v, "sinks.postgres");
        }
        if let Some(s) = &self.sinks.clickhouse {
            s.validate(&mut v, "sinks.clickhouse");
        }
        if let Some(s) = &self.sinks.timescaledb {
            s.validate(&mut v, "sinks.timescaledb");
        }
        self.telemetry.validate(&mut v, "telemetry");
        if let Some(addr) = &self.secrets.vault_addr {
            v.url(key("secrets", "vault_addr"), addr, &["http", "https"]);
        }
        if self
            .secrets
            .vault_token
            .as_ref()
            .is_some_and(|t| t.is_vault())
        {
            v.fail(
                key("secrets", "vault_token"),
                "an `env:` or `file:` reference (the token unlocks Vault)",
                "a `vault:` reference",
            );
        }
        v.int_range(
            key("secrets", "vault_request_timeout_ms"),
            self.secrets.vault_request_timeout_ms,
            100,
            600_000,
        );
        if let Some(secs) = self.secrets.refresh_interval_secs {
            v.int_range(key("secrets", "refresh_interval_secs"), secs, 1, 86_400);
        }
        v.into_result()
    }
}
