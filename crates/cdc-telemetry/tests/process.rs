//! Process-global set-up: the subscriber with OTLP export, and signal handling. Its own test binary
//! (one process) because both are global; one test so they cannot race each other.

use std::time::{Duration, Instant};

use cdc_config::TelemetryConfig;
use cdc_telemetry::{Error, Shutdown, init, propagation};

fn kill(signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_once_with_otlp_and_signals() {
    // A port nobody listens on: export fails quietly, shutdown stays bounded.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let config = TelemetryConfig {
        otlp_endpoint: Some(format!("http://127.0.0.1:{port}")),
        service_name: Some("capture-test".into()),
        ..TelemetryConfig::default()
    };
    let guard = init("capture", &config).expect("init");
    assert!(matches!(
        init("capture", &config),
        Err(Error::SubscriberAlreadySet(_))
    ));

    {
        let span = tracing::info_span!("produce_batch", correlation_id = "n1:1:0:0");
        let _g = span.enter();
        tracing::info!(events = 3_u64, "Produced batch");
        let mut headers = Vec::new();
        propagation::inject_span(&tracing::Span::current(), &mut headers);
        assert_eq!(
            headers.len(),
            1,
            "only traceparent (tracestate is empty): {headers:?}"
        );
        assert_eq!(headers[0].0, propagation::TRACEPARENT);
        let cx = propagation::extract_context(&headers);
        use opentelemetry::trace::TraceContextExt;
        assert!(cx.span().span_context().is_sampled());
    }

    let shutdown = Shutdown::install().expect("signals");
    let token = shutdown.token();
    let mut reloads = shutdown.reloads();

    kill("-HUP");
    tokio::time::timeout(Duration::from_secs(5), reloads.changed())
        .await
        .expect("SIGHUP seen")
        .expect("sender alive");
    assert_eq!(*reloads.borrow(), 1);
    assert!(!token.is_cancelled(), "SIGHUP does not stop the service");

    kill("-TERM");
    tokio::time::timeout(Duration::from_secs(5), token.cancelled())
        .await
        .expect("SIGTERM cancels the root token");

    let started = Instant::now();
    drop(guard);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "guard drop is bounded"
    );
}
