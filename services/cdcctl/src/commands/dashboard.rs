//! `cdcctl dashboard`: serves the live web dashboard (crate `cdc-dashboard`) until Ctrl-C/SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use cdc_dashboard::{Dashboard, Endpoint, Settings, endpoints_from_config, parse_duration};

/// Arguments of `cdcctl dashboard`.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = "Serve a live web page of the pipeline: per destination lag, throughput, error rate, \
backlog, p50/p95/p99 end-to-end latency and health (green up, amber degraded, red down), per stage \
(capture, masker) health and throughput, with charts of the last 15 minutes.\n\n\
Every service's /metrics and /readyz is polled every --interval; the page refreshes at the same pace. \
By default the services are those of --config: capture, masker and each configured sink, at their \
admin.listen_addr (0.0.0.0 is dialled as 127.0.0.1). --endpoint replaces that list.\n\n\
The page is self-contained (no internet needed). JSON of the same data: GET /api/snapshot.\n\n\
Examples:\n  cdcctl --config pipeline.yaml dashboard\n  \
cdcctl dashboard --listen 0.0.0.0:9400 --endpoint sink-postgres=http://10.0.0.5:9103 \
--endpoint masker=http://10.0.0.6:9102",
    after_help = "Examples:\n  cdcctl --config pipeline.yaml dashboard\n  \
cdcctl dashboard --listen 0.0.0.0:9400 --endpoint sink-postgres=http://10.0.0.5:9103 \
--endpoint masker=http://10.0.0.6:9102"
)]
pub struct DashboardArgs {
    /// Address the page is served on.
    #[arg(long, default_value = "127.0.0.1:9400")]
    pub listen: SocketAddr,
    /// Time between polls and page refreshes (e.g. 5s, 2s, 500ms).
    #[arg(long, default_value = "5s")]
    pub interval: String,
    /// A service to poll, as NAME=URL (repeatable). Replaces the services from --config. NAME
    /// `sink-<destination>` is a sink, `capture*` / `masker*` a stage; any other name shows what
    /// its metrics hold.
    #[arg(long = "endpoint", value_name = "NAME=URL")]
    pub endpoints: Vec<String>,
    /// Lag (seconds) above which a destination or stage turns amber.
    #[arg(long, default_value_t = 30.0)]
    pub lag_warn_seconds: f64,
}

/// Runs `cdcctl dashboard`.
pub async fn run(config_path: &Path, args: &DashboardArgs) -> anyhow::Result<ExitCode> {
    let endpoints = if args.endpoints.is_empty() {
        let config = cdc_config::load(config_path).with_context(|| {
            format!(
                "loading {} (or name the services with --endpoint NAME=URL)",
                config_path.display()
            )
        })?;
        endpoints_from_config(&config)
    } else {
        args.endpoints
            .iter()
            .map(|s| Endpoint::parse_spec(s))
            .collect::<Result<Vec<_>, _>>()?
    };
    let interval = parse_duration("--interval", &args.interval)?;
    let mut settings = Settings::with_interval(interval);
    anyhow::ensure!(
        args.lag_warn_seconds.is_finite() && args.lag_warn_seconds > 0.0,
        "--lag-warn-seconds must be a positive number, got {}",
        args.lag_warn_seconds
    );
    settings.thresholds.lag_warn_seconds = args.lag_warn_seconds;

    let dashboard = Dashboard::new(endpoints, settings)?;
    let (listener, addr) = Dashboard::bind(args.listen).await?;
    eprintln!(
        "cdcctl dashboard: http://{addr}/ (JSON: /api/snapshot), polling every {interval:?}:"
    );
    for e in dashboard.endpoints() {
        eprintln!("  {:<18} {}", e.name, e.base_url);
    }

    let cancel = cdc_dashboard::CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cdcctl dashboard: cannot install the SIGTERM handler: {e}");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        on_signal.cancel();
    });
    dashboard.run(listener, cancel).await?;
    Ok(ExitCode::SUCCESS)
}
