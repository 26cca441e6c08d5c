//! What every sink binary does between parsing its arguments and exiting: load `pipeline.yaml`,
//! start logging, the admin server (`/metrics`, `/livez`, `/readyz`) and signal handling, then run
//! the [`SinkRunner`] until SIGTERM and drain.

use std::sync::Arc;

use cdc_config::{AdminConfig, PipelineConfig};
use cdc_telemetry::{AdminServer, HealthState, Shutdown, SinkMetrics};

use crate::destination::Destination;
use crate::error::Error;
use crate::runner::{RunnerConfig, SinkRunner};

/// Runs `destination` with the shared driver until SIGTERM/SIGINT.
pub async fn serve<D: Destination>(
    config: &PipelineConfig,
    admin: &AdminConfig,
    runner_config: RunnerConfig,
    kafka: cdc_kafka::KafkaSettings,
    destination: D,
) -> Result<(), Error> {
    let shutdown = Shutdown::install()?;
    let cancel = shutdown.token();
    let registry = cdc_telemetry::new_registry();
    let health = HealthState::new();
    let metrics = SinkMetrics::new(&registry, destination.name())?;
    let server = AdminServer::new(registry.clone(), health.clone())
        .bind(admin.listen_addr)
        .await?;
    let admin_cancel = cancel.child_token();
    let admin_task = tokio::spawn(server.run(admin_cancel.clone()));
    tracing::info!(
        destination = destination.name(),
        group_id = %runner_config.group_id,
        topics_pattern = %runner_config.topics_pattern,
        cluster = %config.cluster_name,
        "Sink starting"
    );
    let runner = SinkRunner::new(Arc::new(destination), kafka, runner_config, metrics, health);
    let result = runner.run(cancel.clone()).await;
    if let Err(e) = &result {
        tracing::error!(error = %cdc_kafka::error_chain(e), error_class = %e.class(), "Sink stopped on an error");
    } else {
        tracing::info!("Sink stopped");
    }
    admin_cancel.cancel();
    let _ = admin_task.await;
    result
}
