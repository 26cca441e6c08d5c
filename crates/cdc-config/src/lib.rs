//! Typed pipeline configuration: one `pipeline.yaml` with a section per stage, `CDC__SECTION__KEY`
//! environment overrides, secret references (`env:`, `file:`, `vault:`) and validation messages that
//! name the file, the key path and what was expected. Validation touches nothing outside the process;
//! only [`SecretRef::resolve`] reads variables, files or Vault, and [`RefreshingSecret`] re-reads `file:`
//! and `vault:` references every `secrets.refresh_interval_secs` so rotated secrets apply without a
//! restart. Kafka client settings are derived in `cdc-kafka`, not here.

mod admin;
mod capture;
mod cassandra;
mod error;
mod filter;
mod kafka;
mod load;
mod masker;
mod pipeline;
mod refresh;
mod secret;
mod sink;
mod string_list;
mod telemetry;
mod validate;
mod vault;

pub use admin::AdminConfig;
pub use capture::CaptureConfig;
pub use cassandra::{CassandraConfig, KeyspaceFilter};
pub use error::{Error, ErrorClass, Issue};
pub use filter::glob_matches;
pub use kafka::{EventFormat, KafkaConfig, KafkaProtocol, KafkaSecurityConfig, SaslMechanism};
pub use load::{ENV_PREFIX, ENV_SEPARATOR, load, load_str, load_with_env};
pub use masker::{MaskerConfig, TokenVaultConfig};
pub use pipeline::PipelineConfig;
pub use refresh::RefreshingSecret;
pub use secret::{SecretRef, SecretResolver, SecretsConfig};
pub use sink::{
    BatchConfig, ClickHouseDestinationConfig, ColumnRename, DestinationKind, PgTlsConfig,
    PostgresDestinationConfig, RetryConfig, SinkConfig, SinksConfig, TimescaleDestinationConfig,
    TlsMode,
};
pub use telemetry::{LogFormat, TelemetryConfig};
pub use validate::Violation;

/// Re-exported so callers need not pin `secrecy` themselves to read resolved values.
pub use secrecy::{ExposeSecret, SecretString};
