//! The `sinks:` section: one optional block per destination, sharing batching, retry and consumer
//! settings (`SinkConfig`) and adding destination-specific settings under `destination`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::admin::AdminConfig;
use crate::secret::SecretRef;
use crate::validate::{Validator, key};

static IDENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$").expect("static regex"));
static TABLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_]+\.[A-Za-z0-9_]+$").expect("static regex"));

/// The sink services; each block is optional and only read by its own service.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinksConfig {
    /// PostgreSQL sink; unset = not deployed.
    pub postgres: Option<SinkConfig<PostgresDestinationConfig>>,
    /// ClickHouse sink; unset = not deployed.
    pub clickhouse: Option<SinkConfig<ClickHouseDestinationConfig>>,
    /// TimescaleDB sink; unset = not deployed.
    pub timescaledb: Option<SinkConfig<TimescaleDestinationConfig>>,
}

/// Per-destination defaults that differ between sinks.
pub trait DestinationKind {
    /// Destination name as used in metric labels, group ids and DLQ topics (`postgres`, ...).
    const NAME: &'static str;
    /// Default admin HTTP port.
    const ADMIN_PORT: u16;
}

/// Settings every sink shares, plus its destination-specific block.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(deserialize = "D: Deserialize<'de> + DestinationKind")
)]
pub struct SinkConfig<D> {
    /// Kafka consumer group (offsets of record live in the destination; the group is for lag dashboards).
    #[serde(default = "default_group_id::<D>")]
    pub group_id: String,
    /// Regular expression selecting the masked topics to consume.
    #[serde(default = "default_topics_pattern")]
    pub topics_pattern: String,
    /// Topic receiving events that failed after retries or are poison for this destination.
    #[serde(default = "default_dlq_topic::<D>")]
    pub dlq_topic: String,
    /// Partitions read and written concurrently (CR-007).
    #[serde(default = "default_parallelism")]
    pub parallelism: u32,
    /// Micro-batching (CR-005).
    #[serde(default)]
    pub batch: BatchConfig,
    /// Retry policy for retriable failures (CR-006).
    #[serde(default)]
    pub retry: RetryConfig,
    /// Deadline to flush and commit in-flight batches after SIGTERM, in seconds.
    #[serde(default = "default_drain_timeout_secs")]
    pub drain_timeout_secs: u64,
    /// Consumer group session timeout, in milliseconds. After a crash, or a Kafka broker restart
    /// that outlasts it, the group waits this long for the old membership to expire before it
    /// assigns the partitions again, so it bounds how long the sink stands still. Heartbeats run
    /// on Kafka's client thread: a slow destination write does not count against it.
    #[serde(default = "default_sink_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// Schema evolution (docs/schema-evolution.md): add a column to the destination before the
    /// first event that carries it, and re-create a column whose type changed (old values
    /// archived). `false`: such columns are not written, with a warning.
    #[serde(default = "default_auto_migrate")]
    pub auto_migrate: bool,
    /// Schema evolution: drop a destination column (with its bookkeeping columns) once the events
    /// say Cassandra dropped it, before the first event of the newer schema is written. `false`:
    /// the column is kept with the values it had and no longer written.
    #[serde(default)]
    pub drop_columns: bool,
    /// Primary-key columns renamed in Cassandra (`ALTER TABLE … RENAME from TO to`): events
    /// carrying `to` are written to the destination's existing `from` column. A rename not
    /// listed is handled as a new table (the old destination relations are retired).
    #[serde(default)]
    pub column_renames: Vec<ColumnRename>,
    /// Admin HTTP listener.
    #[serde(default = "default_admin::<D>")]
    pub admin: AdminConfig,
    /// Destination-specific settings.
    pub destination: D,
}

/// One primary-key column rename to map (see `SinkConfig::column_renames`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRename {
    /// The Cassandra table, `keyspace.table`.
    pub table: String,
    /// The column name before the rename: the destination's column.
    pub from: String,
    /// The column name after the rename, as the events carry it.
    pub to: String,
}

fn default_group_id<D: DestinationKind>() -> String {
    format!("cdc-sink-{}", D::NAME)
}
fn default_topics_pattern() -> String {
    r"^cdc\.masked\..*".to_owned()
}
fn default_dlq_topic<D: DestinationKind>() -> String {
    format!("cdc.dlq.sink-{}", D::NAME)
}
fn default_parallelism() -> u32 {
    4
}
fn default_drain_timeout_secs() -> u64 {
    30
}
fn default_sink_session_timeout_ms() -> u64 {
    10_000
}
fn default_auto_migrate() -> bool {
    true
}
fn default_admin<D: DestinationKind>() -> AdminConfig {
    AdminConfig::on_port(D::ADMIN_PORT)
}

/// When a batch is flushed: whichever limit is reached first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Most rows in one destination write.
    pub max_rows: u32,
    /// Most payload bytes in one destination write.
    pub max_bytes: u64,
    /// Longest wait for a batch to fill, in milliseconds.
    pub linger_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_rows: 10_000,
            max_bytes: 16 * 1024 * 1024,
            linger_ms: 500,
        }
    }
}

/// Exponential backoff with jitter for retriable errors; after `max_retries` the batch's failing
/// events go to the DLQ and the partition moves on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries after the first attempt before dead-lettering.
    pub max_retries: u32,
    /// First backoff delay, in milliseconds.
    pub initial_backoff_ms: u64,
    /// Cap on the backoff delay, in milliseconds.
    pub max_backoff_ms: u64,
    /// Factor applied to the delay after each failed attempt.
    pub multiplier: f64,
    /// Randomise each delay (full jitter) so replicas do not retry in lockstep.
    pub jitter: bool,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 5,
            initial_backoff_ms: 200,
            max_backoff_ms: 30_000,
            multiplier: 2.0,
            jitter: true,
        }
    }
}

/// TLS use for PostgreSQL connections (libpq `sslmode` semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Never use TLS.
    Disable,
    /// Use TLS when the server offers it, plain otherwise (no certificate check).
    Prefer,
    /// Fail unless TLS is used; the certificate chain is checked only when `ca_file` is set.
    Require,
    /// TLS with the certificate chain checked against `ca_file` (or the public web roots); any host name.
    #[serde(alias = "verify_ca")]
    VerifyCa,
    /// TLS with the certificate chain and the host name checked.
    #[serde(alias = "verify_full")]
    VerifyFull,
}

impl TlsMode {
    /// The name as written in `pipeline.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

/// TLS of a PostgreSQL/TimescaleDB destination. Written either as a mode alone (`tls: require`) or
/// as a block (`tls: {mode: verify-full, ca_file: /etc/cdc/pg-ca.pem}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PgTlsConfig {
    /// `disable`, `prefer`, `require`, `verify-ca` or `verify-full` (libpq `sslmode` semantics).
    pub mode: TlsMode,
    /// PEM file of the CA certificate(s) that signed the server's certificate. With `require` it
    /// turns on the chain check (as libpq does with a root certificate); unset = the public web
    /// roots for `verify-ca`/`verify-full`, no check for `require`.
    pub ca_file: Option<PathBuf>,
}

impl Default for PgTlsConfig {
    fn default() -> Self {
        PgTlsConfig {
            mode: TlsMode::Prefer,
            ca_file: None,
        }
    }
}

impl From<TlsMode> for PgTlsConfig {
    fn from(mode: TlsMode) -> Self {
        PgTlsConfig {
            mode,
            ca_file: None,
        }
    }
}

impl<'de> Deserialize<'de> for PgTlsConfig {
    fn deserialize<De: serde::Deserializer<'de>>(deserializer: De) -> Result<Self, De::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Block {
            #[serde(default = "default_tls_mode")]
            mode: TlsMode,
            #[serde(default)]
            ca_file: Option<PathBuf>,
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = PgTlsConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a TLS mode (disable, prefer, require, verify-ca, verify-full) or a block {mode, ca_file}",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PgTlsConfig, E> {
                use serde::de::IntoDeserializer;
                let mode = TlsMode::deserialize(v.into_deserializer())?;
                Ok(mode.into())
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                map: M,
            ) -> Result<PgTlsConfig, M::Error> {
                let b = Block::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(PgTlsConfig {
                    mode: b.mode,
                    ca_file: b.ca_file,
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// PostgreSQL destination.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresDestinationConfig {
    /// Connection URL (`postgres://user:password@host:port/db`) as a secret reference.
    pub url: SecretRef,
    /// Database to write to; overrides a database named in `url`.
    #[serde(default = "default_pg_database")]
    pub database: String,
    /// Connections in the pool (at least `parallelism`).
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Timeout of establishing a connection, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Server-side `statement_timeout`, in milliseconds.
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// TLS: a mode (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`) or `{mode, ca_file}`.
    #[serde(default)]
    pub tls: PgTlsConfig,
    /// How long delete markers are kept before purge (like `gc_grace_seconds`), in seconds.
    #[serde(default = "default_tombstone_grace_secs")]
    pub tombstone_grace_secs: u64,
}

impl DestinationKind for PostgresDestinationConfig {
    const NAME: &'static str = "postgres";
    const ADMIN_PORT: u16 = 9103;
}

/// TimescaleDB destination: PostgreSQL settings plus hypertable layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimescaleDestinationConfig {
    /// Connection URL (`postgres://user:password@host:port/db`) as a secret reference.
    pub url: SecretRef,
    /// Database to write to; overrides a database named in `url`.
    #[serde(default = "default_ts_database")]
    pub database: String,
    /// Connections in the pool (at least `parallelism`).
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Timeout of establishing a connection, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Server-side `statement_timeout`, in milliseconds.
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// TLS: a mode (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`) or `{mode, ca_file}`.
    #[serde(default)]
    pub tls: PgTlsConfig,
    /// How long delete markers are kept before purge (like `gc_grace_seconds`), in seconds.
    #[serde(default = "default_tombstone_grace_secs")]
    pub tombstone_grace_secs: u64,
    /// `chunk_time_interval` of created hypertables, in seconds.
    #[serde(default = "default_chunk_interval_secs")]
    pub chunk_interval_secs: u64,
    /// Retention policy on `<table>_changes` hypertables, in seconds; unset = keep forever.
    #[serde(default)]
    pub retention_secs: Option<u64>,
    /// Time column per table (`keyspace.table` → column) that makes its current-state table a hypertable;
    /// a partition or clustering key column of type `timestamp` or `date` (checked when the table is first
    /// written, since only then is its schema known).
    #[serde(default)]
    pub time_columns: BTreeMap<String, String>,
}

impl DestinationKind for TimescaleDestinationConfig {
    const NAME: &'static str = "timescaledb";
    const ADMIN_PORT: u16 = 9105;
}

/// ClickHouse destination (HTTP interface).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseDestinationConfig {
    /// HTTP(S) URL of the ClickHouse server, without credentials.
    #[serde(default = "default_clickhouse_url")]
    pub url: String,
    /// ClickHouse user.
    #[serde(default = "default_clickhouse_user")]
    pub user: String,
    /// Password of `user` as a secret reference; unset = no password.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// Prefix of destination database names (`<prefix><keyspace>`); unset = the keyspace name.
    #[serde(default)]
    pub database_prefix: Option<String>,
    /// TTL applied to created tables, in seconds; unset = no TTL.
    #[serde(default)]
    pub table_ttl_secs: Option<u64>,
    /// Timeout of one HTTP request, in milliseconds.
    #[serde(default = "default_statement_timeout_ms")]
    pub request_timeout_ms: u64,
}

impl DestinationKind for ClickHouseDestinationConfig {
    const NAME: &'static str = "clickhouse";
    const ADMIN_PORT: u16 = 9104;
}

fn default_pg_database() -> String {
    "warehouse".to_owned()
}
fn default_ts_database() -> String {
    "timeseries".to_owned()
}
fn default_pool_size() -> u32 {
    8
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_statement_timeout_ms() -> u64 {
    30_000
}
fn default_tls_mode() -> TlsMode {
    TlsMode::Prefer
}
fn default_tombstone_grace_secs() -> u64 {
    864_000
}
fn default_chunk_interval_secs() -> u64 {
    86_400
}
fn default_clickhouse_url() -> String {
    "http://127.0.0.1:8123".to_owned()
}
fn default_clickhouse_user() -> String {
    "default".to_owned()
}

/// Validation of the destination-specific block (sealed: not re-exported).
pub trait ValidateDestination {
    fn validate(&self, v: &mut Validator, prefix: &str, parallelism: u32);
}

/// The settings PostgreSQL and TimescaleDB share, borrowed for validation.
struct PgCommon<'a> {
    database: &'a str,
    pool_size: u32,
    connect_timeout_ms: u64,
    statement_timeout_ms: u64,
    tombstone_grace_secs: u64,
    tls: &'a PgTlsConfig,
}

impl PgCommon<'_> {
    fn validate(&self, v: &mut Validator, prefix: &str, parallelism: u32) {
        v.matches(
            key(prefix, "database"),
            self.database,
            &IDENT,
            "a database name (identifier, at most 63 characters)",
        );
        // Each partition writer holds one connection while it writes a batch.
        v.int_range(
            key(prefix, "pool_size"),
            u64::from(self.pool_size),
            u64::from(parallelism.max(1)),
            1_000,
        );
        v.int_range(
            key(prefix, "connect_timeout_ms"),
            self.connect_timeout_ms,
            100,
            600_000,
        );
        v.int_range(
            key(prefix, "statement_timeout_ms"),
            self.statement_timeout_ms,
            100,
            3_600_000,
        );
        v.int_range(
            key(prefix, "tombstone_grace_secs"),
            self.tombstone_grace_secs,
            0,
            10 * 365 * 86_400,
        );
        let tls = key(prefix, "tls");
        if let Some(ca) = &self.tls.ca_file {
            if !ca.is_absolute() {
                v.fail(
                    key(&tls, "ca_file"),
                    "an absolute path to a PEM file",
                    format!("{:?}", ca.display().to_string()),
                );
            }
            if matches!(self.tls.mode, TlsMode::Disable | TlsMode::Prefer) {
                v.fail(
                    key(&tls, "ca_file"),
                    "unset unless tls.mode is require, verify-ca or verify-full",
                    format!("a CA file with mode {}", self.tls.mode.as_str()),
                );
            }
        }
    }
}

impl ValidateDestination for PostgresDestinationConfig {
    fn validate(&self, v: &mut Validator, prefix: &str, parallelism: u32) {
        PgCommon {
            database: &self.database,
            pool_size: self.pool_size,
            connect_timeout_ms: self.connect_timeout_ms,
            statement_timeout_ms: self.statement_timeout_ms,
            tombstone_grace_secs: self.tombstone_grace_secs,
            tls: &self.tls,
        }
        .validate(v, prefix, parallelism);
    }
}

impl ValidateDestination for TimescaleDestinationConfig {
    fn validate(&self, v: &mut Validator, prefix: &str, parallelism: u32) {
        PgCommon {
            database: &self.database,
            pool_size: self.pool_size,
            connect_timeout_ms: self.connect_timeout_ms,
            statement_timeout_ms: self.statement_timeout_ms,
            tombstone_grace_secs: self.tombstone_grace_secs,
            tls: &self.tls,
        }
        .validate(v, prefix, parallelism);
        v.int_range(
            key(prefix, "chunk_interval_secs"),
            self.chunk_interval_secs,
            60,
            365 * 86_400,
        );
        if let Some(r) = self.retention_secs {
            v.int_range(key(prefix, "retention_secs"), r, 3_600, 100 * 365 * 86_400);
        }
        for (table, column) in &self.time_columns {
            let k = key(prefix, &format!("time_columns.{table}"));
            v.matches(k.clone(), table, &TABLE, "a `keyspace.table` key");
            v.matches(k, column, &IDENT, "a column name");
        }
    }
}

impl ValidateDestination for ClickHouseDestinationConfig {
    fn validate(&self, v: &mut Validator, prefix: &str, _parallelism: u32) {
        v.url(key(prefix, "url"), &self.url, &["http", "https"]);
        if let Ok(url) = reqwest::Url::parse(&self.url)
            && (!url.username().is_empty() || url.password().is_some())
        {
            // Do not echo the URL: it carries a credential.
            v.fail(
                key(prefix, "url"),
                "a URL without credentials (use `user` and `password`)",
                "a URL with user info",
            );
        }
        v.name(key(prefix, "user"), &self.user);
        if let Some(p) = &self.database_prefix {
            let ok = p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                v.fail(
                    key(prefix, "database_prefix"),
                    "a prefix of [A-Za-z0-9_]",
                    format!("{p:?}"),
                );
            }
        }
        if let Some(ttl) = self.table_ttl_secs {
            v.int_range(key(prefix, "table_ttl_secs"), ttl, 60, 100 * 365 * 86_400);
        }
        v.int_range(
            key(prefix, "request_timeout_ms"),
            self.request_timeout_ms,
            100,
            3_600_000,
        );
    }
}

impl<D: ValidateDestination> SinkConfig<D> {
    fn validate_column_renames(&self, v: &mut Validator, prefix: &str) {
        let mut seen_from = std::collections::BTreeSet::new();
        let mut seen_to = std::collections::BTreeSet::new();
        for (i, r) in self.column_renames.iter().enumerate() {
            let item = format!("{prefix}[{i}]");
            v.matches(
                key(&item, "table"),
                &r.table,
                &TABLE,
                "keyspace.table of [A-Za-z0-9_]",
            );
            for (field, name) in [("from", &r.from), ("to", &r.to)] {
                if name.is_empty() || name.len() > 63 || name.chars().any(char::is_control) {
                    v.fail(
                        key(&item, field),
                        "a column name (1-63 characters, no control characters)",
                        format!("{name:?}"),
                    );
                }
            }
            if r.from == r.to {
                v.fail(
                    key(&item, "to"),
                    "a name other than `from`",
                    format!("{:?}", r.to),
                );
            }
            if !seen_from.insert((r.table.as_str(), r.from.as_str())) {
                v.fail(
                    key(&item, "from"),
                    "one rename per column of a table",
                    format!("{:?} again for {:?}", r.from, r.table),
                );
            }
            if !seen_to.insert((r.table.as_str(), r.to.as_str())) {
                v.fail(
                    key(&item, "to"),
                    "one rename to each new name of a table",
                    format!("{:?} again for {:?}", r.to, r.table),
                );
            }
        }
    }

    pub(crate) fn validate(&self, v: &mut Validator, prefix: &str) {
        v.name(key(prefix, "group_id"), &self.group_id);
        v.regex(key(prefix, "topics_pattern"), &self.topics_pattern);
        v.topic(key(prefix, "dlq_topic"), &self.dlq_topic);
        v.int_range(
            key(prefix, "parallelism"),
            u64::from(self.parallelism),
            1,
            1_024,
        );
        v.int_range(
            key(prefix, "session_timeout_ms"),
            self.session_timeout_ms,
            6_000,
            300_000,
        );
        let b = key(prefix, "batch");
        v.int_range(
            key(&b, "max_rows"),
            u64::from(self.batch.max_rows),
            1,
            1_000_000,
        );
        v.int_range(key(&b, "max_bytes"), self.batch.max_bytes, 1_024, 1 << 30);
        v.int_range(key(&b, "linger_ms"), self.batch.linger_ms, 0, 60_000);
        let r = key(prefix, "retry");
        v.int_range(
            key(&r, "max_retries"),
            u64::from(self.retry.max_retries),
            0,
            100,
        );
        v.int_range(
            key(&r, "initial_backoff_ms"),
            self.retry.initial_backoff_ms,
            1,
            600_000,
        );
        v.int_range(
            key(&r, "max_backoff_ms"),
            self.retry.max_backoff_ms,
            1,
            3_600_000,
        );
        if self.retry.max_backoff_ms < self.retry.initial_backoff_ms {
            v.fail(
                key(&r, "max_backoff_ms"),
                format!(
                    "at least initial_backoff_ms ({})",
                    self.retry.initial_backoff_ms
                ),
                self.retry.max_backoff_ms.to_string(),
            );
        }
        v.float_range(key(&r, "multiplier"), self.retry.multiplier, 1.0, 10.0);
        v.int_range(
            key(prefix, "drain_timeout_secs"),
            self.drain_timeout_secs,
            1,
            3_600,
        );
        self.validate_column_renames(v, &key(prefix, "column_renames"));
        self.admin.validate(v, &key(prefix, "admin"));
        self.destination
            .validate(v, &key(prefix, "destination"), self.parallelism);
    }
}
