//! One poll of one service: `GET /metrics` and `GET /readyz` in parallel, with a timeout, never
//! failing — an endpoint that does not answer is a result (`reachable: false`), not an error.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::exposition::Exposition;

/// One dependency as a service's `/readyz` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    /// `kafka`, `destination`, ...
    pub name: String,
    /// `up`, `down`, `unknown`.
    pub state: String,
    /// Why it is down, when it is.
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ReadyzBody {
    #[serde(default)]
    ready: Option<bool>,
    #[serde(default)]
    dependencies: Vec<Dependency>,
}

/// What one poll of one service found.
#[derive(Debug, Clone, Default)]
pub struct ServiceScrape {
    /// `/metrics` answered 200 with a parsable body.
    pub reachable: bool,
    /// `/readyz`: `Some(true)` ready, `Some(false)` not ready, `None` no answer.
    pub ready: Option<bool>,
    /// Dependencies listed by `/readyz`.
    pub dependencies: Vec<Dependency>,
    /// The parsed metrics, when reachable.
    pub metrics: Option<Exposition>,
    /// Why the service is unreachable or a probe failed.
    pub error: Option<String>,
    /// How long the poll took.
    pub took: Duration,
}

/// Polls admin endpoints over HTTP.
#[derive(Debug, Clone)]
pub struct Scraper {
    client: reqwest::Client,
}

impl Scraper {
    /// A scraper whose requests give up after `timeout`.
    pub fn new(timeout: Duration) -> Result<Scraper, Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Scraper { client })
    }

    /// Polls `endpoint`'s `/metrics` and `/readyz`.
    pub async fn scrape(&self, endpoint: &Endpoint) -> ServiceScrape {
        let started = Instant::now();
        let (metrics_url, readyz_url) = (endpoint.metrics_url(), endpoint.readyz_url());
        let (metrics, readyz) = tokio::join!(self.fetch(&metrics_url), self.fetch(&readyz_url));
        let mut out = ServiceScrape::default();
        match metrics {
            Ok((status, body)) if status.is_success() => match Exposition::parse(&body) {
                Ok(e) => {
                    out.reachable = true;
                    out.metrics = Some(e);
                }
                Err(e) => out.error = Some(format!("/metrics is not Prometheus text: {e}")),
            },
            Ok((status, _)) => out.error = Some(format!("/metrics answered HTTP {status}")),
            Err(e) => out.error = Some(e),
        }
        match readyz {
            Ok((status, body)) => {
                let parsed: Option<ReadyzBody> = serde_json::from_str(&body).ok();
                out.ready = Some(
                    status.is_success() && parsed.as_ref().and_then(|b| b.ready).unwrap_or(true),
                );
                out.dependencies = parsed.map(|b| b.dependencies).unwrap_or_default();
            }
            Err(e) => {
                if out.error.is_none() {
                    out.error = Some(format!("/readyz: {e}"));
                }
            }
        }
        out.took = started.elapsed();
        out
    }

    async fn fetch(&self, url: &str) -> Result<(reqwest::StatusCode, String), String> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| describe(url, &e))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| describe(url, &e))?;
        Ok((status, body))
    }
}

/// A short reason for a failed request (no URL credentials: admin URLs carry none).
fn describe(url: &str, e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection refused or unreachable"
    } else if e.is_body() || e.is_decode() {
        "broken response body"
    } else {
        "request failed"
    };
    format!("{url}: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;

    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn reads_metrics_and_readiness() {
        let url = serve(
            Router::new()
                .route("/metrics", get(|| async { "cdc_sink_lag_seconds{destination=\"postgres\"} 2\n" }))
                .route(
                    "/readyz",
                    get(|| async {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            r#"{"ready":false,"shutting_down":false,"dependencies":[{"name":"destination","state":"down","message":"retriable","last_checked":null}]}"#,
                        )
                    }),
                ),
        )
        .await;
        let s = Scraper::new(Duration::from_secs(2)).expect("client");
        let r = s.scrape(&Endpoint::new("sink-postgres", url)).await;
        assert!(r.reachable, "{:?}", r.error);
        assert_eq!(r.ready, Some(false));
        assert_eq!(r.dependencies[0].name, "destination");
        assert_eq!(r.dependencies[0].message.as_deref(), Some("retriable"));
        let m = r.metrics.expect("metrics");
        assert_eq!(m.sum("cdc_sink_lag_seconds", &[]), Some(2.0));
    }

    #[tokio::test]
    async fn a_silent_or_broken_service_is_a_result_not_an_error() {
        // Nothing listens on a port just released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let s = Scraper::new(Duration::from_secs(2)).expect("client");
        let r = s
            .scrape(&Endpoint::new("masker", format!("http://127.0.0.1:{port}")))
            .await;
        assert!(!r.reachable);
        assert_eq!(r.ready, None);
        assert!(r.error.expect("reason").contains("/metrics"));

        let url = serve(
            Router::new()
                .route("/metrics", get(|| async { "{broken\n" }))
                .route("/readyz", get(|| async { "{\"ready\":true}" })),
        )
        .await;
        let r = s.scrape(&Endpoint::new("capture", url)).await;
        assert!(!r.reachable);
        assert_eq!(r.ready, Some(true));
        assert!(r.error.expect("reason").contains("line 1"));
    }
}
