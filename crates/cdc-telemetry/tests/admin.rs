//! The admin server over real HTTP on 127.0.0.1.

use std::time::Duration;

use axum::routing::get;
use cdc_telemetry::{AdminServer, CancellationToken, HealthState, SinkMetrics, new_registry};

#[tokio::test]
async fn metrics_livez_readyz_and_extra_routes() {
    let registry = new_registry();
    let sink = SinkMetrics::new(&registry, "postgres").expect("metrics");
    sink.rows_written("shop.orders", "insert").inc_by(7);
    let health = HealthState::new();
    health.register("kafka");
    health.register("postgres");

    let extra = axum::Router::new().route("/status", get(|| async { "status page" }));
    let server = AdminServer::new(registry.clone(), health.clone())
        .with_routes(extra)
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let base = format!("http://{}", server.local_addr());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(server.run(cancel.clone()));
    let http = reqwest::Client::new();

    let resp = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status(), 200);
    let ctype = resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let body = resp.text().await.expect("body");
    assert!(body.contains(r#"cdc_sink_rows_written_total{destination="postgres",op="insert",table="shop.orders"} 7"#), "{body}");
    assert!(
        body.contains("# TYPE cdc_sink_end_to_end_latency_seconds histogram"),
        "{body}"
    );

    let resp = http
        .get(format!("{base}/livez"))
        .send()
        .await
        .expect("livez");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<serde_json::Value>().await.expect("json")["status"],
        "ok"
    );

    // Unknown until checked, then one down: 503 with each dependency's state.
    let resp = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["ready"], false);
    assert_eq!(body["dependencies"][0]["state"], "unknown");

    health.set_up("kafka");
    health.set_down("postgres", "connection refused");
    let body: serde_json::Value = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(body["dependencies"][0]["name"], "kafka");
    assert_eq!(body["dependencies"][0]["state"], "up");
    assert_eq!(body["dependencies"][1]["state"], "down");
    assert_eq!(body["dependencies"][1]["message"], "connection refused");
    assert!(body["dependencies"][1]["last_checked"].is_string());

    health.set_up("postgres");
    let resp = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<serde_json::Value>().await.expect("json")["ready"],
        true
    );

    health.set_shutting_down();
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .expect("readyz")
            .status(),
        503
    );

    let resp = http
        .get(format!("{base}/status"))
        .send()
        .await
        .expect("status");
    assert_eq!(resp.text().await.expect("body"), "status page");

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops on cancel")
        .expect("join")
        .expect("clean exit");
    assert!(
        http.get(format!("{base}/livez")).send().await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn bind_conflict_is_a_fatal_error() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = taken.local_addr().expect("addr");
    let err = AdminServer::serve(
        addr,
        new_registry(),
        HealthState::new(),
        CancellationToken::new(),
    )
    .await
    .expect_err("address in use");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    assert_eq!(err.class(), cdc_telemetry::ErrorClass::Fatal);
}
