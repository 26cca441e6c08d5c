//! `pipeline.yaml` → driver, Kafka and PostgreSQL settings. Pure except the functions that
//! resolve secret references.

use std::time::Duration;

use cdc_config::{
    DestinationKind, KafkaConfig, PostgresDestinationConfig, RefreshingSecret, SecretResolver,
    SinkConfig, TimescaleDestinationConfig,
};
use cdc_kafka::ConsumerSettings;

use crate::error::Error;
use crate::postgres::PgSettings;
use crate::runner::{RunnerConfig, Tuning};
use crate::timescaledb::TimescaleOptions;

/// The schema-evolution options of a sink block (`drop_columns`, `column_renames`).
pub fn evolution_options<D>(sink: &SinkConfig<D>) -> crate::evolving::EvolutionOptions {
    crate::evolving::EvolutionOptions {
        drop_columns: sink.drop_columns,
        column_renames: sink.column_renames.clone(),
    }
}

/// The driver settings of a sink block.
pub fn runner_config<D: DestinationKind>(
    sink: &SinkConfig<D>,
    kafka: &KafkaConfig,
) -> RunnerConfig {
    let mut c = RunnerConfig::new(D::NAME);
    c.group_id = sink.group_id.clone();
    c.consumer = ConsumerSettings::new(sink.group_id.clone());
    c.consumer.session_timeout_ms = u32::try_from(sink.session_timeout_ms).unwrap_or(u32::MAX);
    c.topics_pattern = sink.topics_pattern.clone();
    c.dlq_topic = sink.dlq_topic.clone();
    c.dlq_partitions = i32::try_from(kafka.topic_partitions).unwrap_or(1).max(1);
    c.dlq_replication = i32::from(kafka.replication_factor).max(1);
    c.batch = sink.batch.clone();
    c.retry = sink.retry.clone();
    c.drain_timeout = Duration::from_secs(sink.drain_timeout_secs);
    c.parallelism = usize::try_from(sink.parallelism).unwrap_or(1).max(1);
    c
}

/// The part of `sinks.<destination>` a running sink can take without a restart (a reload):
/// batch limits and retry policy. `None` when the block is absent.
pub fn tuning(config: &cdc_config::PipelineConfig, destination: &str) -> Option<Tuning> {
    fn of<D>(s: &SinkConfig<D>) -> Tuning {
        Tuning {
            batch: s.batch.clone(),
            retry: s.retry.clone(),
        }
    }
    match destination {
        "postgres" => config.sinks.postgres.as_ref().map(of),
        "clickhouse" => config.sinks.clickhouse.as_ref().map(of),
        "timescaledb" => config.sinks.timescaledb.as_ref().map(of),
        _ => None,
    }
}

/// `key: old -> new` for every tunable key that differs, keys named as in `pipeline.yaml`.
pub fn tuning_changes(destination: &str, old: &Tuning, new: &Tuning) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |key: &str, a: String, b: String| {
        if a != b {
            out.push(format!("sinks.{destination}.{key}: {a} -> {b}"));
        }
    };
    let (a, b) = (&old.batch, &new.batch);
    cmp(
        "batch.max_rows",
        a.max_rows.to_string(),
        b.max_rows.to_string(),
    );
    cmp(
        "batch.max_bytes",
        a.max_bytes.to_string(),
        b.max_bytes.to_string(),
    );
    cmp(
        "batch.linger_ms",
        a.linger_ms.to_string(),
        b.linger_ms.to_string(),
    );
    let (a, b) = (&old.retry, &new.retry);
    cmp(
        "retry.max_retries",
        a.max_retries.to_string(),
        b.max_retries.to_string(),
    );
    cmp(
        "retry.initial_backoff_ms",
        a.initial_backoff_ms.to_string(),
        b.initial_backoff_ms.to_string(),
    );
    cmp(
        "retry.max_backoff_ms",
        a.max_backoff_ms.to_string(),
        b.max_backoff_ms.to_string(),
    );
    cmp(
        "retry.multiplier",
        a.multiplier.to_string(),
        b.multiplier.to_string(),
    );
    cmp("retry.jitter", a.jitter.to_string(), b.jitter.to_string());
    out
}

fn secret_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config {
        reason: format!("cannot resolve {what}: {e}"),
    }
}

/// The settings PostgreSQL and TimescaleDB share.
#[allow(clippy::too_many_arguments)]
async fn pg_settings(
    key: &str,
    url: &cdc_config::SecretRef,
    database: &str,
    pool_size: u32,
    connect_timeout_ms: u64,
    statement_timeout_ms: u64,
    tls: &cdc_config::PgTlsConfig,
    secrets: &SecretResolver,
    refresh: Option<Duration>,
) -> Result<PgSettings, Error> {
    let url_key = format!("{key}.url");
    let (value, source) = match refresh {
        Some(interval) if url.can_change() => {
            let source = RefreshingSecret::start(url.clone(), secrets.clone(), Some(interval))
                .await
                .map_err(|e| secret_error(&url_key, e))?;
            (source.current(), Some(source))
        }
        _ => (
            url.resolve_with(secrets)
                .await
                .map_err(|e| secret_error(&url_key, e))?,
            None,
        ),
    };
    let mut s = PgSettings::new(value);
    s.database = Some(database.to_owned());
    s.pool_size = pool_size as usize;
    s.connect_timeout_ms = connect_timeout_ms;
    s.statement_timeout_ms = statement_timeout_ms;
    s.tls = tls.clone();
    s.url_source = source;
    s.config_key = key.to_owned();
    Ok(s)
}

/// PostgreSQL settings (resolves the URL secret once).
pub async fn postgres_settings(
    d: &PostgresDestinationConfig,
    secrets: &SecretResolver,
) -> Result<PgSettings, Error> {
    postgres_settings_refreshing(d, secrets, None).await
}

/// PostgreSQL settings whose URL follows rotation: with `refresh` set (use
/// `config.secrets.refresh_interval()`) and a `file:`/`vault:` URL, the URL is re-read on that
/// period and every new pool connection uses its current value.
pub async fn postgres_settings_refreshing(
    d: &PostgresDestinationConfig,
    secrets: &SecretResolver,
    refresh: Option<Duration>,
) -> Result<PgSettings, Error> {
    pg_settings(
        "sinks.postgres.destination",
        &d.url,
        &d.database,
        d.pool_size,
        d.connect_timeout_ms,
        d.statement_timeout_ms,
        &d.tls,
        secrets,
        refresh,
    )
    .await
}

/// TimescaleDB settings (resolves the URL secret once) and hypertable options.
pub async fn timescale_settings(
    d: &TimescaleDestinationConfig,
    secrets: &SecretResolver,
) -> Result<(PgSettings, TimescaleOptions), Error> {
    timescale_settings_refreshing(d, secrets, None).await
}

/// TimescaleDB settings with the URL following rotation (see
/// [`postgres_settings_refreshing`]) and hypertable options.
pub async fn timescale_settings_refreshing(
    d: &TimescaleDestinationConfig,
    secrets: &SecretResolver,
    refresh: Option<Duration>,
) -> Result<(PgSettings, TimescaleOptions), Error> {
    let s = pg_settings(
        "sinks.timescaledb.destination",
        &d.url,
        &d.database,
        d.pool_size,
        d.connect_timeout_ms,
        d.statement_timeout_ms,
        &d.tls,
        secrets,
        refresh,
    )
    .await?;
    Ok((s, timescale_options(d)))
}

/// The hypertable options of a TimescaleDB block.
pub fn timescale_options(d: &TimescaleDestinationConfig) -> TimescaleOptions {
    TimescaleOptions {
        chunk_interval_secs: d.chunk_interval_secs,
        retention_secs: d.retention_secs,
        time_columns: d.time_columns.clone(),
    }
}

#[cfg(test)]
mod tests {
    use cdc_config::PipelineConfig;

    use super::*;

    #[test]
    fn runner_config_follows_the_sink_block() {
        let yaml = "sinks:\n  postgres:\n    group_id: g1\n    session_timeout_ms: 7000\n    batch: {max_rows: 7, linger_ms: 9}\n    retry: {max_retries: 2}\n    destination:\n      url: plain:postgres://fake@127.0.0.1/db\n";
        let config: PipelineConfig =
            cdc_config::load_str("test.yaml", yaml, Vec::<(String, String)>::new())
                .unwrap_or_else(|e| panic!("config: {e}"));
        let Some(pg) = &config.sinks.postgres else {
            panic!("postgres block parsed");
        };
        let c = runner_config(pg, &config.kafka);
        assert_eq!(c.group_id, "g1");
        assert_eq!(c.consumer.group_id, "g1");
        assert_eq!(c.consumer.session_timeout_ms, 7_000);
        assert_eq!(c.batch.max_rows, 7);
        assert_eq!(c.batch.linger_ms, 9);
        assert_eq!(c.retry.max_retries, 2);
        assert_eq!(c.dlq_topic, "cdc.dlq.sink-postgres");
        assert_eq!(c.topics_pattern, r"^cdc\.masked\..*");
        assert_eq!(c.stage, "sink-postgres");
    }

    #[test]
    fn session_timeout_defaults_to_ten_seconds_and_is_range_checked() {
        let load = |extra: &str| {
            let yaml = format!(
                "sinks:\n  postgres:\n{extra}    destination:\n      url: plain:postgres://fake@127.0.0.1/db\n"
            );
            cdc_config::load_str("test.yaml", &yaml, Vec::<(String, String)>::new())
        };
        let config = load("").unwrap_or_else(|e| panic!("config: {e}"));
        let Some(pg) = &config.sinks.postgres else {
            panic!("postgres block parsed");
        };
        assert_eq!(
            runner_config(pg, &config.kafka).consumer.session_timeout_ms,
            10_000
        );
        let err = load("    session_timeout_ms: 1000\n")
            .err()
            .unwrap_or_else(|| panic!("1000 ms accepted"))
            .to_string();
        assert!(err.contains("sinks.postgres.session_timeout_ms"), "{err}");
    }

    #[test]
    fn tuning_follows_the_block_and_reports_changes() {
        let yaml = |rows: u32| {
            format!(
                "sinks:\n  postgres:\n    batch: {{max_rows: {rows}, linger_ms: 9}}\n    destination:\n      url: plain:postgres://fake@127.0.0.1/db\n"
            )
        };
        let load = |text: String| {
            cdc_config::load_str("test.yaml", &text, Vec::<(String, String)>::new())
                .unwrap_or_else(|e| panic!("config: {e}"))
        };
        let a = tuning(&load(yaml(7)), "postgres").unwrap_or_else(|| panic!("postgres block"));
        let b = tuning(&load(yaml(8)), "postgres").unwrap_or_else(|| panic!("postgres block"));
        assert!(tuning(&load(yaml(7)), "clickhouse").is_none());
        assert_eq!(a.batch.max_rows, 7);
        assert_eq!(
            tuning_changes("postgres", &a, &b),
            vec!["sinks.postgres.batch.max_rows: 7 -> 8".to_owned()]
        );
        assert!(tuning_changes("postgres", &a, &a).is_empty());
    }

    #[tokio::test]
    async fn a_file_url_follows_rotation_when_refresh_is_on() {
        use cdc_config::ExposeSecret;
        let dir = std::env::temp_dir().join(format!(
            "cdc-sink-settings-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let file = dir.join("url");
        std::fs::write(&file, "postgres://fake:pw1@127.0.0.1:1/db\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let yaml = format!(
            "sinks:\n  timescaledb:\n    destination:\n      url: file:{}\n      tls: {{mode: require}}\n      time_columns: {{ks.t: ts}}\n",
            file.display()
        );
        let config: PipelineConfig =
            cdc_config::load_str("test.yaml", &yaml, Vec::<(String, String)>::new())
                .unwrap_or_else(|e| panic!("config: {e}"));
        let Some(ts) = &config.sinks.timescaledb else {
            panic!("timescaledb block parsed");
        };
        let resolver = SecretResolver::from_env();

        // Refresh off: resolved once, nothing follows the file.
        let (fixed, options) = timescale_settings(&ts.destination, &resolver)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(fixed.url_source.is_none());
        assert_eq!(fixed.config_key, "sinks.timescaledb.destination");
        assert_eq!(fixed.tls.mode, cdc_config::TlsMode::Require);
        assert_eq!(
            options.time_columns.get("ks.t").map(String::as_str),
            Some("ts")
        );

        // Refresh on: the settings' source sees the rotated file.
        let (s, _) = timescale_settings_refreshing(
            &ts.destination,
            &resolver,
            Some(Duration::from_millis(50)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let source = s.url_source.clone().unwrap_or_else(|| panic!("refreshing"));
        assert_eq!(s.url.expose_secret(), "postgres://fake:pw1@127.0.0.1:1/db");
        let mut changes = source.subscribe();
        std::fs::write(&file, "postgres://fake:pw2@127.0.0.1:1/db\n")
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .unwrap_or_else(|_| panic!("rotation seen within 5 s"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            source.current().expose_secret(),
            "postgres://fake:pw2@127.0.0.1:1/db"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
