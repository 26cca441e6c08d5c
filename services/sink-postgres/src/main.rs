//! sink-postgres: the PostgreSQL destination, a `cdc-sink` adapter. Thin main: wiring only.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// mimalloc instead of glibc malloc: decoding and re-encoding events allocates per cell, and
/// the profiling pass measured it faster on that pattern (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Streams `cdc.masked.*` into PostgreSQL (`sinks.postgres` of pipeline.yaml).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Path of pipeline.yaml.
    #[arg(long, env = "CDC_CONFIG", default_value = "pipeline.yaml")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = cdc_config::load(&args.config)
        .with_context(|| format!("loading {}", args.config.display()))?;
    let _telemetry = cdc_telemetry::init("sink-postgres", &config.telemetry)?;
    let sink = config
        .sinks
        .postgres
        .clone()
        .context("sinks.postgres is not configured")?;
    let secrets = cdc_config::SecretResolver::new(&config.secrets);
    // A `file:`/`vault:` URL is re-read every `secrets.refresh_interval_secs` when set.
    let pg = cdc_sink::settings::postgres_settings_refreshing(
        &sink.destination,
        &secrets,
        config.secrets.refresh_interval(),
    )
    .await?;
    let kafka = cdc_kafka::settings_from_config(&config.kafka, "sink-postgres", &secrets).await?;
    let destination =
        cdc_sink::postgres::PostgresDestination::new(&pg)?.with_auto_migrate(sink.auto_migrate);
    let destination = cdc_sink::evolving::EvolvingDestination::new(
        destination,
        &cdc_sink::settings::evolution_options(&sink),
    );
    let runner = cdc_sink::settings::runner_config(&sink, &config.kafka);
    cdc_sink::service::serve_with_config_file(
        &args.config,
        &config,
        &sink.admin,
        runner,
        kafka,
        destination,
    )
    .await?;
    Ok(())
}
