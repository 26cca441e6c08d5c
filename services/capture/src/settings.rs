//! `pipeline.yaml` → the capture settings, Kafka client settings and CQL catalog settings.
//! Pure except [`catalog_settings`], which resolves secret references. Kafka client settings come
//! from `cdc_kafka::settings_from_config`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cdc_config::{CassandraConfig, ExposeSecret, PipelineConfig, SecretResolver};
use cdc_model::CAPTURE_POSITIONS_TOPIC;
use cdc_schema::CatalogSettings;
use uuid::Uuid;

use crate::error::Error;
use crate::runner::CaptureSettings;

/// Builds the loop settings. `transactional_id` and `positions_topic` default to
/// `capture-<host id>` and `cdc.capture.positions`.
pub fn capture_settings(
    config: &PipelineConfig,
    host_id: Uuid,
    transactional_id: Option<String>,
    positions_topic: Option<String>,
) -> Result<CaptureSettings, Error> {
    let c = &config.capture;
    let keyspaces = config.cassandra.keyspaces.clone();
    let capture = c.clone();
    let table_filter =
        Arc::new(move |ks: &str, t: &str| keyspaces.includes(ks) && capture.includes_table(ks, t));
    let partitions = i32::try_from(config.kafka.topic_partitions).map_err(|_| Error::Settings {
        reason: "kafka.topic_partitions out of range".into(),
    })?;
    Ok(CaptureSettings {
        cdc_raw_dir: c.cdc_raw_dir.clone(),
        cluster: config.cluster_name.clone(),
        host_id,
        transactional_id: transactional_id
            .unwrap_or_else(|| cdc_kafka::transactional_id("capture", &host_id.to_string())),
        positions_topic: positions_topic.unwrap_or_else(|| CAPTURE_POSITIONS_TOPIC.to_owned()),
        poll_interval: Duration::from_millis(c.poll_interval_ms),
        batch_max_events: c.batch_max_events as usize,
        batch_linger: Duration::from_millis(c.batch_linger_ms),
        retain_processed_segments: c.retain_processed_segments,
        cdc_total_space_bytes: c.cdc_total_space_bytes,
        table_filter,
        topic_partitions: partitions,
        replication_factor: i32::from(config.kafka.replication_factor),
        raw_topic_config: BTreeMap::from([(
            "retention.ms".to_owned(),
            config.kafka.raw_topic_retention_ms.to_string(),
        )]),
        kafka_timeout: Duration::from_secs(30),
        health_interval: Duration::from_secs(5),
        // Several commit-log sync periods (10 s by default): only a crashed, never-replayed
        // segment stays incomplete that long while newer ones fill.
        stale_segment_grace: Duration::from_secs(120),
    })
}

fn secret_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Settings {
        reason: format!("cannot resolve {what}: {e}"),
    }
}

/// CQL settings from the `cassandra:` section (resolving credentials).
pub async fn catalog_settings(
    cassandra: &CassandraConfig,
    secrets: &SecretResolver,
) -> Result<CatalogSettings, Error> {
    let contact_points = cassandra
        .contact_points
        .iter()
        .map(|cp| {
            if cp.contains(':') {
                cp.clone()
            } else {
                format!("{cp}:{}", cassandra.port)
            }
        })
        .collect();
    let mut s = CatalogSettings::new(contact_points);
    s.connect_timeout = Duration::from_millis(cassandra.connect_timeout_ms);
    s.request_timeout = Duration::from_millis(cassandra.request_timeout_ms);
    let keyspaces = cassandra.keyspaces.clone();
    s.keyspace_filter = Arc::new(move |k| keyspaces.includes(k));
    if let (Some(u), Some(p)) = (&cassandra.username, &cassandra.password) {
        let user = u
            .resolve_with(secrets)
            .await
            .map_err(|e| secret_error("cassandra.username", e))?;
        let password = p
            .resolve_with(secrets)
            .await
            .map_err(|e| secret_error("cassandra.password", e))?;
        s.credentials = Some((user.expose_secret().to_owned(), password));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_map_to_production_names() {
        let mut config = PipelineConfig::default();
        config.capture.exclude_tables = vec!["ks.secret*".into()];
        let host = Uuid::from_u128(7);
        let s = capture_settings(&config, host, None, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.transactional_id, format!("capture-{host}"));
        assert_eq!(s.positions_topic, CAPTURE_POSITIONS_TOPIC);
        assert_eq!(s.cluster, "cassandra");
        assert_eq!(s.topic_partitions, 16);
        assert_eq!(s.batch_max_events, 1_000);
        assert!(!s.retain_processed_segments);
        assert!((s.table_filter)("ks", "orders"));
        assert!(!(s.table_filter)("ks", "secrets"));
        assert!(!(s.table_filter)("system", "local"));
        assert_eq!(
            s.raw_topic_config.get("retention.ms").map(String::as_str),
            Some("86400000")
        );
        let p = cdc_kafka::producer_settings_from_config(&config.kafka);
        assert_eq!(p.transaction_timeout_ms, 60_000);
    }
}
