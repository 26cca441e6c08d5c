//! capture: tails a Cassandra node's `cdc_raw` directory and publishes change events to the raw topics
//! in Kafka transactions that also record the source position. Thin main: wiring only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cdc_capture::settings::{capture_settings, catalog_settings};
use cdc_capture::{CaptureAdmin, CaptureRunner};
use cdc_config::SecretResolver;
use cdc_kafka::{producer_settings_from_config, settings_from_config};
use cdc_schema::SchemaCatalog;
use cdc_telemetry::{CaptureMetrics, HealthState, Shutdown, new_registry};
use clap::Parser;

/// mimalloc instead of glibc malloc: decoding and re-encoding events allocates per cell, and
/// the profiling pass measured it faster on that pattern (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "capture",
    about = "Cassandra cdc_raw → Kafka raw topics, exactly once"
)]
struct Args {
    /// pipeline.yaml (overridable by CDC__SECTION__KEY environment variables).
    #[arg(long, env = "CDC_CONFIG", default_value = "/etc/cdc/pipeline.yaml")]
    config: PathBuf,
    /// Override of the transactional id (default `capture-<host id>`); for tests and migrations.
    #[arg(long, hide = true)]
    transactional_id: Option<String>,
    /// Override of the positions topic (default `cdc.capture.positions`); for tests.
    #[arg(long, hide = true)]
    positions_topic: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = cdc_config::load(&args.config)
        .with_context(|| format!("loading {}", args.config.display()))?;
    let _telemetry = cdc_telemetry::init("capture", &config.telemetry)?;
    let shutdown = Shutdown::install()?;
    let cancel = shutdown.token();
    let secrets = SecretResolver::new(&config.secrets);

    let catalog = SchemaCatalog::connect(&catalog_settings(&config.cassandra, &secrets).await?)
        .await
        .context("connecting to Cassandra")?;
    let host_id = match config.capture.host_id {
        Some(id) => id,
        None => catalog
            .local_host_id()
            .await
            .context("reading the host id")?,
    };
    let settings = capture_settings(
        &config,
        host_id,
        args.transactional_id,
        args.positions_topic,
    )?;
    let kafka =
        settings_from_config(&config.kafka, &format!("capture-{host_id}"), &secrets).await?;

    let registry = new_registry();
    let metrics = CaptureMetrics::new(&registry)?;
    let health = HealthState::new();
    let (pause_tx, pause_rx) = tokio::sync::watch::channel(false);
    let admin_api = Arc::new(CaptureAdmin::new(
        registry.clone(),
        health.clone(),
        pause_tx,
    ));
    let admin = cdc_admin::serve(
        config.capture.admin.listen_addr,
        registry,
        health.clone(),
        Arc::clone(&admin_api),
    )
    .await?;
    let admin_task = tokio::spawn(admin.run(cancel.child_token()));
    tokio::spawn(admin_api.sample(cancel.child_token()));

    let runner = CaptureRunner::start(
        settings,
        kafka,
        &producer_settings_from_config(&config.kafka),
        Arc::new(catalog),
        metrics,
        health,
    )
    .await
    .context("starting capture")?
    .with_pause_signal(pause_rx);
    let drain = Duration::from_secs(config.capture.drain_timeout_secs);
    let run = runner.run(cancel.clone());
    tokio::select! {
        result = run => result.context("capture stopped")?,
        () = async { cancel.cancelled().await; tokio::time::sleep(drain).await } => {
            anyhow::bail!("drain did not finish within {drain:?}; the open transaction is aborted by the broker");
        }
    }
    cancel.cancel();
    let _ = admin_task.await;
    Ok(())
}
