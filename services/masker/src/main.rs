//! masker: consumes raw topics read_committed, masks PII/PHI and produces masked topics in
//! transactions that carry its consumer offsets. Thin main: wiring only.
//!
//! Usage: `masker [--config /etc/cdc/pipeline.yaml]` (or `CDC_CONFIG`). The instance id of the
//! transactional id comes from `CDC_INSTANCE_ID` (else `HOSTNAME`, else `0`); it must be stable
//! across restarts of one instance and distinct between instances.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cdc_admin::dead_letters::DeadLetterTopic;
use cdc_config::{ExposeSecret, SecretResolver};
use cdc_kafka::{ConsumerSettings, ReadCommittedConsumer, TopicAdmin, TransactionalProducer};
use cdc_mask::{KeyRing, PgTokenVault, TokenVault};
use cdc_telemetry::{HealthState, MaskerMetrics, Shutdown};
use masker::pipeline::VAULT;
use masker::{MaskerAdmin, MaskerOptions, Pipeline, PolicySource, StdoutAudit, watch_policy};

/// mimalloc instead of glibc malloc: decoding and re-encoding events allocates per cell, and
/// the profiling pass measured it faster on that pattern (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn config_path() -> PathBuf {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--config" {
            if let Some(p) = args.next() {
                return PathBuf::from(p);
            }
        } else if let Some(p) = a.strip_prefix("--config=") {
            return PathBuf::from(p);
        }
    }
    std::env::var_os("CDC_CONFIG")
        .map_or_else(|| PathBuf::from("/etc/cdc/pipeline.yaml"), PathBuf::from)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = config_path();
    let config = cdc_config::load(&path).with_context(|| format!("loading {}", path.display()))?;
    let _telemetry = cdc_telemetry::init("masker", &config.telemetry)?;
    let shutdown = Shutdown::install()?;
    let cancel = shutdown.token();
    let m = &config.masker;

    let resolver = SecretResolver::new(&config.secrets);
    let mut keys = KeyRing::new();
    for (id, reference) in &m.keys {
        let secret = reference
            .resolve_with(&resolver)
            .await
            .with_context(|| format!("{}: key masker.keys.{id}", path.display()))?;
        keys.insert(id.clone(), secret.expose_secret().as_bytes().to_vec());
    }
    let source = PolicySource {
        path: m.policy_file.clone(),
        keys,
        vault_key_id: m.vault.as_ref().map(|v| v.encryption_key_id.clone()),
    };
    let masker = Arc::new(source.build()?);
    tracing::info!(policy_version = masker.policy().version, file = %m.policy_file.display(), "Masking policy loaded");
    let (policy_tx, policy_rx) = tokio::sync::watch::channel(masker);

    let vault: Option<Arc<dyn TokenVault>> = match &m.vault {
        Some(v) => {
            let url = v
                .url
                .resolve_with(&resolver)
                .await
                .with_context(|| format!("{}: key masker.vault.url", path.display()))?;
            Some(Arc::new(PgTokenVault::new(
                url.expose_secret().to_owned(),
                v.schema.clone(),
                Duration::from_millis(v.statement_timeout_ms),
            )?))
        }
        None => None,
    };

    let instance = std::env::var("CDC_INSTANCE_ID")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "0".to_owned());
    let kafka =
        cdc_kafka::settings_from_config(&config.kafka, &format!("masker-{instance}"), &resolver)
            .await?;
    let producer_settings = cdc_kafka::producer_settings_from_config(&config.kafka);
    let producer = TransactionalProducer::new(
        &kafka,
        &producer_settings,
        &cdc_kafka::transactional_id("masker", &instance),
    )?;
    let mut consumer_settings = ConsumerSettings::new(m.group_id.clone());
    consumer_settings.session_timeout_ms = u32::try_from(m.session_timeout_ms).unwrap_or(u32::MAX);
    let (consumer, rebalances) = ReadCommittedConsumer::new(&kafka, &consumer_settings)?;
    let admin = TopicAdmin::new(&kafka, Duration::from_secs(30))?;

    let registry = cdc_telemetry::new_registry();
    let metrics = MaskerMetrics::new(&registry)?;
    let health = HealthState::new();
    let (pause_tx, pause_rx) = tokio::sync::watch::channel(false);
    let admin_api = Arc::new(MaskerAdmin::new(
        registry.clone(),
        health.clone(),
        pause_tx,
        policy_tx.clone(),
        source.clone(),
        DeadLetterTopic::new(
            kafka.clone(),
            m.dlq_topic.clone(),
            i32::from(config.kafka.replication_factor),
        ),
        kafka.clone(),
    ));
    let server = cdc_admin::serve(
        m.admin.listen_addr,
        registry,
        health.clone(),
        Arc::clone(&admin_api),
    )
    .await
    .with_context(|| format!("masker.admin.listen_addr {}", m.admin.listen_addr))?;
    tokio::spawn(server.run(cancel.clone()));
    tokio::spawn(Arc::clone(&admin_api).sample(cancel.clone()));
    if let Some(v) = vault.clone() {
        let (health, cancel) = (health.clone(), cancel.clone());
        tokio::spawn(async move {
            // Probes read this cached state; they never open connections themselves.
            loop {
                match v.ping().await {
                    Ok(()) => health.set_up(VAULT),
                    Err(e) => health.set_down(VAULT, e.to_string()),
                }
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        });
    }
    tokio::spawn(watch_policy(
        source,
        policy_tx,
        shutdown.reloads(),
        Duration::from_millis(m.policy_reload_interval_ms),
        cancel.clone(),
    ));

    let pipeline = Pipeline {
        options: MaskerOptions {
            topics_pattern: m.topics_pattern.clone(),
            dlq_topic: m.dlq_topic.clone(),
            batch_max_events: usize::try_from(m.batch_max_events).unwrap_or(1_000),
            batch_linger: Duration::from_millis(m.batch_linger_ms),
            masked_topic_replication: i32::from(config.kafka.replication_factor),
            masked_topic_config: BTreeMap::from([(
                "retention.ms".to_owned(),
                config.kafka.masked_topic_retention_ms.to_string(),
            )]),
            vault_max_retries: 5,
            retry_delay: Duration::from_millis(500),
        },
        consumer,
        rebalances,
        producer,
        admin,
        masker: policy_rx,
        vault,
        metrics,
        health,
        audit: Arc::new(StdoutAudit),
    };
    let drain = Duration::from_secs(m.drain_timeout_secs);
    tokio::select! {
        r = pipeline.run_with_pause(cancel.clone(), pause_rx) => r?,
        () = async { cancel.cancelled().await; tokio::time::sleep(drain).await } => {
            // The open transaction is aborted by the broker or fenced by the next instance.
            tracing::warn!(drain_timeout_secs = m.drain_timeout_secs, "Drain deadline passed; exiting with the batch uncommitted");
        }
    }
    tracing::info!("Masker stopped");
    Ok(())
}
