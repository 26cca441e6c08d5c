//! Plain settings structs and the only code in the workspace that turns them into librdkafka
//! properties (`ClientConfig`). The exactly-once properties are set here and cannot be overridden.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};

/// Connection settings shared by every client.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// `client.id`, shown in broker logs and quotas.
    pub client_id: String,
    /// TLS, when the cluster requires it.
    pub ssl: Option<SslSettings>,
    /// SASL authentication, when the cluster requires it.
    pub sasl: Option<SaslSettings>,
    /// Extra librdkafka properties, applied before the ones this crate enforces. Keys that would
    /// weaken exactly-once (see [`PROTECTED_KEYS`]) are rejected by [`KafkaSettings::validate`].
    pub overrides: BTreeMap<String, String>,
}

/// TLS settings (`security.protocol` becomes `ssl` or `sasl_ssl`).
#[derive(Debug, Clone, Default)]
pub struct SslSettings {
    /// `ssl.ca.location`: CA bundle to verify brokers; system store when `None`.
    pub ca_location: Option<String>,
    /// `ssl.certificate.location`: client certificate for mutual TLS.
    pub certificate_location: Option<String>,
    /// `ssl.key.location`: client private key for mutual TLS.
    pub key_location: Option<String>,
    /// `ssl.key.password`.
    pub key_password: Option<SecretString>,
}

/// SASL mechanisms built into librdkafka without Cyrus SASL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `PLAIN` (only over TLS outside development).
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL settings (`security.protocol` becomes `sasl_plaintext` or `sasl_ssl`).
#[derive(Debug, Clone)]
pub struct SaslSettings {
    /// `sasl.mechanism`.
    pub mechanism: SaslMechanism,
    /// `sasl.username`.
    pub username: String,
    /// `sasl.password`.
    pub password: SecretString,
}

/// Batch compression of produced messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression.
    None,
    /// LZ4: cheapest CPU.
    Lz4,
    /// Zstandard: best ratio.
    #[default]
    Zstd,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Producer tuning. `Default` gives sensible production values.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// `transaction.timeout.ms`: the broker aborts a transaction left open longer than this.
    /// Must not exceed the broker's `transaction.max.timeout.ms` (15 min by default).
    pub transaction_timeout_ms: u32,
    /// `message.timeout.ms` (delivery timeout). For a transactional producer it must not exceed
    /// `transaction_timeout_ms`.
    pub delivery_timeout_ms: u32,
    /// `linger.ms`: how long to wait to fill a batch.
    pub linger_ms: u32,
    /// `compression.type`.
    pub compression: Compression,
    /// Bound on each blocking transaction call (init, send offsets, commit, abort) and on waiting for
    /// room in a full producer queue.
    pub operation_timeout_ms: u32,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        ProducerSettings {
            transaction_timeout_ms: 60_000,
            delivery_timeout_ms: 60_000,
            linger_ms: 5,
            compression: Compression::Zstd,
            operation_timeout_ms: 30_000,
        }
    }
}

impl ProducerSettings {
    pub(crate) fn operation_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.operation_timeout_ms))
    }
}

/// Where a consumer group with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// `earliest`: replay everything retained (the default for a pipeline that must not lose data).
    #[default]
    Earliest,
    /// `latest`.
    Latest,
}

/// What a consumer does with partitions it is assigned by the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AssignMode {
    /// Start from the group's committed offset (or `auto.offset.reset`). For stages whose offsets
    /// live in Kafka (the masker, committing through `send_offsets_to_transaction`).
    #[default]
    FromCommitted,
    /// Pause each newly assigned partition inside the rebalance callback, before anything is
    /// fetched, and wait for the application to call
    /// [`ReadCommittedConsumer::seek_and_resume`](crate::ReadCommittedConsumer::seek_and_resume)
    /// with the offsets it stores itself (sinks: the destination is the source of truth).
    PauseUntilSeek,
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// `group.id`.
    pub group_id: String,
    /// `auto.offset.reset`.
    pub auto_offset_reset: OffsetReset,
    /// Behaviour on partition assignment.
    pub assign_mode: AssignMode,
    /// `session.timeout.ms`.
    pub session_timeout_ms: u32,
    /// `max.poll.interval.ms`: the longest gap allowed between two `recv` calls.
    pub max_poll_interval_ms: u32,
    /// Bound on blocking consumer calls (committed offsets, seek).
    pub operation_timeout_ms: u32,
}

impl ConsumerSettings {
    /// Settings for `group_id` with production defaults.
    pub fn new(group_id: impl Into<String>) -> Self {
        ConsumerSettings {
            group_id: group_id.into(),
            auto_offset_reset: OffsetReset::Earliest,
            assign_mode: AssignMode::FromCommitted,
            session_timeout_ms: 45_000,
            max_poll_interval_ms: 300_000,
            operation_timeout_ms: 30_000,
        }
    }

    pub(crate) fn operation_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.operation_timeout_ms))
    }
}

/// librdkafka's metadata refresh period, which also paces the discovery of topics matching a
/// consumer's subscription pattern.
const METADATA_REFRESH_KEY: &str = "topic.metadata.refresh.interval.ms";
/// Consumers refresh metadata this often (ms), so new `cdc.raw.*` / `cdc.masked.*` topics are
/// picked up within seconds.
const CONSUMER_METADATA_REFRESH_MS: u32 = 5_000;

/// librdkafka properties set by this crate that `overrides` may not change.
pub const PROTECTED_KEYS: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "transactional.id",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "isolation.level",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "group.id",
    "security.protocol",
    "sasl.password",
    "ssl.key.password",
];

impl KafkaSettings {
    /// Plaintext settings with no overrides.
    pub fn new(bootstrap_servers: impl Into<String>, client_id: impl Into<String>) -> Self {
        KafkaSettings {
            bootstrap_servers: bootstrap_servers.into(),
            client_id: client_id.into(),
            ssl: None,
            sasl: None,
            overrides: BTreeMap::new(),
        }
    }

    /// Pure checks; touches nothing outside the process.
    pub fn validate(&self) -> Result<()> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(invalid("bootstrap_servers is empty"));
        }
        if self.client_id.trim().is_empty() {
            return Err(invalid("client_id is empty"));
        }
        for key in self.overrides.keys() {
            if PROTECTED_KEYS.contains(&key.as_str()) {
                return Err(invalid(format!(
                    "override of `{key}` is not allowed: cdc-kafka sets it (use the typed setting)"
                )));
            }
        }
        if let Some(sasl) = &self.sasl
            && sasl.username.is_empty()
        {
            return Err(invalid("sasl.username is empty"));
        }
        Ok(())
    }

    fn security_protocol(&self) -> &'static str {
        match (self.ssl.is_some(), self.sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        }
    }

    /// Properties common to every client.
    fn base_config(&self) -> Result<ClientConfig> {
        self.validate()?;
        let mut config = ClientConfig::new();
        for (k, v) in &self.overrides {
            config.set(k, v);
        }
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            .set("security.protocol", self.security_protocol());
        if let Some(ssl) = &self.ssl {
            set_opt(&mut config, "ssl.ca.location", ssl.ca_location.as_deref());
            set_opt(
                &mut config,
                "ssl.certificate.location",
                ssl.certificate_location.as_deref(),
            );
            set_opt(&mut config, "ssl.key.location", ssl.key_location.as_deref());
            if let Some(p) = &ssl.key_password {
                config.set("ssl.key.password", p.expose_secret());
            }
        }
        if let Some(sasl) = &self.sasl {
            config
                .set("sasl.mechanism", sasl.mechanism.as_str())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", sasl.password.expose_secret());
        }
        Ok(config)
    }

    /// An idempotent, acks=all producer; transactional when `transactional_id` is given.
    pub(crate) fn producer_config(
        &self,
        producer: &ProducerSettings,
        transactional_id: Option<&str>,
    ) -> Result<ClientConfig> {
        if let Some(id) = transactional_id
            && id.trim().is_empty()
        {
            return Err(invalid("transactional id is empty"));
        }
        if transactional_id.is_some()
            && producer.delivery_timeout_ms > producer.transaction_timeout_ms
        {
            return Err(invalid(format!(
                "delivery_timeout_ms ({}) must not exceed transaction_timeout_ms ({})",
                producer.delivery_timeout_ms, producer.transaction_timeout_ms
            )));
        }
        if producer.operation_timeout_ms == 0 {
            return Err(invalid("operation_timeout_ms must be > 0"));
        }
        let mut config = self.base_config()?;
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", producer.compression.as_str())
            .set("linger.ms", producer.linger_ms.to_string())
            .set(
                "message.timeout.ms",
                producer.delivery_timeout_ms.to_string(),
            );
        if let Some(id) = transactional_id {
            config.set("transactional.id", id).set(
                "transaction.timeout.ms",
                producer.transaction_timeout_ms.to_string(),
            );
        }
        Ok(config)
    }

    /// A read_committed consumer with no automatic commit or offset store.
    pub(crate) fn consumer_config(&self, consumer: &ConsumerSettings) -> Result<ClientConfig> {
        if consumer.group_id.trim().is_empty() {
            return Err(invalid("group_id is empty"));
        }
        if consumer.operation_timeout_ms == 0 {
            return Err(invalid("operation_timeout_ms must be > 0"));
        }
        let mut config = self.base_config()?;
        config
            .set("group.id", &consumer.group_id)
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match consumer.auto_offset_reset {
                    OffsetReset::Earliest => "earliest",
                    OffsetReset::Latest => "latest",
                },
            )
            .set(
                "session.timeout.ms",
                consumer.session_timeout_ms.to_string(),
            )
            .set(
                "max.poll.interval.ms",
                consumer.max_poll_interval_ms.to_string(),
            );
        // A pattern subscription (masker, sinks) only sees a topic created after it started on the
        // next metadata refresh; librdkafka's default (5 minutes) would leave a new table's events
        // waiting that long. An explicit override still wins.
        if !self.overrides.contains_key(METADATA_REFRESH_KEY) {
            config.set(
                METADATA_REFRESH_KEY,
                CONSUMER_METADATA_REFRESH_MS.to_string(),
            );
        }
        Ok(config)
    }

    /// An admin client. Its watermark queries use librdkafka's default `isolation.level`
    /// (`read_committed`, which cannot be overridden here): they answer with the last stable offset,
    /// as the stages see it. Setting it explicitly would only draw a "consumer property" warning.
    pub(crate) fn admin_config(&self) -> Result<ClientConfig> {
        self.base_config()
    }
}

/// A deterministic transactional id for one stage instance, e.g. `capture-<host id>`.
///
/// It must be stable across restarts of the same instance (so a restarted instance fences its
/// predecessor and aborts its open transaction) and distinct between instances.
pub fn transactional_id(stage: &str, instance: &str) -> String {
    format!("{stage}-{instance}")
}

fn set_opt(config: &mut ClientConfig, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        config.set(key, v);
    }
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidSettings {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> KafkaSettings {
        KafkaSettings::new("127.0.0.1:19092", "cdc-test")
    }

    #[test]
    fn transactional_producer_enforces_exactly_once_properties() {
        let producer = ProducerSettings {
            compression: Compression::Lz4,
            ..ProducerSettings::default()
        };
        let c = settings()
            .producer_config(&producer, Some("capture-host1"))
            .unwrap();
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("transactional.id"), Some("capture-host1"));
        assert_eq!(c.get("transaction.timeout.ms"), Some("60000"));
        assert_eq!(c.get("compression.type"), Some("lz4"));
        assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:19092"));
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
    }

    #[test]
    fn idempotent_producer_has_no_transactional_id() {
        let c = settings()
            .producer_config(&ProducerSettings::default(), None)
            .unwrap();
        assert_eq!(c.get("transactional.id"), None);
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("compression.type"), Some("zstd"));
    }

    #[test]
    fn consumer_is_read_committed_without_auto_commit() {
        let c = settings()
            .consumer_config(&ConsumerSettings::new("sink-pg"))
            .unwrap();
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(c.get("group.id"), Some("sink-pg"));
        assert_eq!(c.get("topic.metadata.refresh.interval.ms"), Some("5000"));
    }

    #[test]
    fn protected_overrides_are_rejected_others_applied() {
        let mut s = settings();
        s.overrides
            .insert("isolation.level".into(), "read_uncommitted".into());
        let err = s
            .consumer_config(&ConsumerSettings::new("g"))
            .expect_err("protected key");
        assert!(err.to_string().contains("isolation.level"), "{err}");

        let mut s = settings();
        s.overrides
            .insert("socket.keepalive.enable".into(), "true".into());
        let c = s.consumer_config(&ConsumerSettings::new("g")).unwrap();
        assert_eq!(c.get("socket.keepalive.enable"), Some("true"));
    }

    #[test]
    fn delivery_timeout_must_fit_in_transaction_timeout() {
        let producer = ProducerSettings {
            transaction_timeout_ms: 10_000,
            delivery_timeout_ms: 20_000,
            ..ProducerSettings::default()
        };
        assert!(settings().producer_config(&producer, Some("x")).is_err());
        // Without transactions the bound does not apply.
        assert!(settings().producer_config(&producer, None).is_ok());
    }

    #[test]
    fn security_protocol_follows_ssl_and_sasl() {
        let mut s = settings();
        s.sasl = Some(SaslSettings {
            mechanism: SaslMechanism::ScramSha512,
            username: "cdc".into(),
            password: SecretString::from("secret"),
        });
        let c = s.admin_config().unwrap();
        assert_eq!(c.get("security.protocol"), Some("sasl_plaintext"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        s.ssl = Some(SslSettings {
            ca_location: Some("/etc/ca.pem".into()),
            ..SslSettings::default()
        });
        let c = s.admin_config().unwrap();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/ca.pem"));
        // Secrets never reach Debug output.
        assert!(!format!("{s:?}").contains("secret\""));
    }

    #[test]
    fn empty_identity_is_rejected() {
        assert!(KafkaSettings::new("", "c").validate().is_err());
        assert!(KafkaSettings::new("h:1", " ").validate().is_err());
        assert!(
            settings()
                .consumer_config(&ConsumerSettings::new(""))
                .is_err()
        );
        assert!(
            settings()
                .producer_config(&ProducerSettings::default(), Some(""))
                .is_err()
        );
    }

    #[test]
    fn transactional_ids_are_deterministic() {
        assert_eq!(transactional_id("capture", "host-1"), "capture-host-1");
        assert_eq!(
            transactional_id("capture", "host-1"),
            transactional_id("capture", "host-1")
        );
    }
}
