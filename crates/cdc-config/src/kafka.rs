//! The `kafka:` section: brokers, security, topic layout, transactions and the event format.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::secret::SecretRef;
use crate::validate::{Validator, key};

/// Kafka cluster settings shared by every stage. Only `cdc-kafka` turns these into client settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers as `host:port`; a list or one comma-separated string.
    #[serde(deserialize_with = "crate::string_list::deserialize")]
    pub bootstrap_servers: Vec<String>,
    /// How clients authenticate and encrypt.
    pub security: KafkaSecurityConfig,
    /// Partitions of every `cdc.raw.*` / `cdc.masked.*` topic the pipeline creates (the unit of parallelism).
    pub topic_partitions: u32,
    /// Replication factor of created topics (1 only for a single-broker development cluster).
    pub replication_factor: u16,
    /// Producer `transaction.timeout.ms`: how long the broker waits before aborting an open transaction.
    pub transaction_timeout_ms: u64,
    /// Retention of `cdc.raw.*` topics (they hold unmasked PII, keep it short), in milliseconds.
    pub raw_topic_retention_ms: u64,
    /// Retention of `cdc.masked.*` topics (the replay window of the sinks), in milliseconds.
    pub masked_topic_retention_ms: u64,
    /// Confluent-compatible schema registry; required when `format` is `avro`.
    pub schema_registry_url: Option<String>,
    /// Encoding of event payloads on Kafka.
    pub format: EventFormat,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: vec!["127.0.0.1:9092".to_owned()],
            security: KafkaSecurityConfig::default(),
            topic_partitions: 16,
            replication_factor: 3,
            transaction_timeout_ms: 60_000,
            raw_topic_retention_ms: 86_400_000,
            masked_topic_retention_ms: 604_800_000,
            schema_registry_url: None,
            format: EventFormat::Json,
        }
    }
}

/// Payload encoding on Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventFormat {
    /// JSON envelope (self-describing, no registry).
    Json,
    /// Avro with schemas in the schema registry.
    Avro,
}

/// `security.protocol` of the Kafka clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaProtocol {
    /// No TLS, no authentication (development only).
    Plaintext,
    /// TLS, optionally with a client certificate.
    Ssl,
    /// TLS plus SASL username/password.
    SaslSsl,
}

/// SASL mechanism for `sasl_ssl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaslMechanism {
    /// `PLAIN`.
    Plain,
    /// `SCRAM-SHA-256`.
    #[serde(rename = "scram_sha_256")]
    ScramSha256,
    /// `SCRAM-SHA-512`.
    #[serde(rename = "scram_sha_512")]
    ScramSha512,
}

/// Transport security of the Kafka clients. Fields that do not apply to `protocol` are ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSecurityConfig {
    /// `plaintext`, `ssl` or `sasl_ssl`.
    pub protocol: KafkaProtocol,
    /// PEM CA bundle to verify brokers; unset = system roots.
    pub ca_cert_path: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `client_key_path`).
    pub client_cert_path: Option<PathBuf>,
    /// PEM client private key for mutual TLS (with `client_cert_path`).
    pub client_key_path: Option<PathBuf>,
    /// Password of an encrypted client key, as a secret reference.
    pub client_key_password: Option<SecretRef>,
    /// SASL mechanism used with `sasl_ssl`.
    pub sasl_mechanism: SaslMechanism,
    /// SASL username as a secret reference (required with `sasl_ssl`).
    pub sasl_username: Option<SecretRef>,
    /// SASL password as a secret reference (required with `sasl_ssl`).
    pub sasl_password: Option<SecretRef>,
}

impl Default for KafkaSecurityConfig {
    fn default() -> Self {
        KafkaSecurityConfig {
            protocol: KafkaProtocol::Plaintext,
            ca_cert_path: None,
            client_cert_path: None,
            client_key_path: None,
            client_key_password: None,
            sasl_mechanism: SaslMechanism::ScramSha512,
            sasl_username: None,
            sasl_password: None,
        }
    }
}

impl KafkaConfig {
    pub(crate) fn validate(&self, v: &mut Validator, prefix: &str) {
        let servers = key(prefix, "bootstrap_servers");
        if self.bootstrap_servers.is_empty() {
            v.fail(servers.clone(), "at least one `host:port`", "an empty list");
        }
        for (i, s) in self.bootstrap_servers.iter().enumerate() {
            let ok = s
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                v.fail(
                    format!("{servers}[{i}]"),
                    "`host:port` with a port between 1 and 65535",
                    format!("{s:?}"),
                );
            }
        }
        v.int_range(
            key(prefix, "topic_partitions"),
            u64::from(self.topic_partitions),
            1,
            10_000,
        );
        v.int_range(
            key(prefix, "replication_factor"),
            u64::from(self.replication_factor),
            1,
            15,
        );
        // Kafka's own bounds: above 15 min the broker's transaction.max.timeout.ms rejects it by default.
        v.int_range(
            key(prefix, "transaction_timeout_ms"),
            self.transaction_timeout_ms,
            1_000,
            900_000,
        );
        v.int_range(
            key(prefix, "raw_topic_retention_ms"),
            self.raw_topic_retention_ms,
            60_000,
            u64::from(u32::MAX) * 1000,
        );
        v.int_range(
            key(prefix, "masked_topic_retention_ms"),
            self.masked_topic_retention_ms,
            60_000,
            u64::from(u32::MAX) * 1000,
        );
        match (&self.schema_registry_url, self.format) {
            (Some(url), _) => v.url(key(prefix, "schema_registry_url"), url, &["http", "https"]),
            (None, EventFormat::Avro) => v.fail(
                key(prefix, "schema_registry_url"),
                "a schema registry URL because format is avro",
                "nothing",
            ),
            (None, EventFormat::Json) => {}
        }
        self.security.validate(v, &key(prefix, "security"));
    }
}

impl KafkaSecurityConfig {
    fn validate(&self, v: &mut Validator, prefix: &str) {
        if self.protocol == KafkaProtocol::SaslSsl {
            for (field, value) in [
                ("sasl_username", &self.sasl_username),
                ("sasl_password", &self.sasl_password),
            ] {
                if value.is_none() {
                    v.fail(
                        key(prefix, field),
                        "a secret reference because protocol is sasl_ssl",
                        "nothing",
                    );
                }
            }
        }
        if self.client_cert_path.is_some() != self.client_key_path.is_some() {
            v.fail(
                key(prefix, "client_key_path"),
                "client_cert_path and client_key_path set together or not at all",
                "only one of them",
            );
        }
    }
}
