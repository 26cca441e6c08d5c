//! The dashboard: polls every endpoint on a fixed interval into the [`History`], and answers the
//! page and the API from it. One poll never waits for another; a slow service costs at most the
//! scrape timeout.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::history::{History, Snapshot};
use crate::scrape::Scraper;
use crate::status::Thresholds;

/// The page: one self-contained HTML document (inline CSS and JS, no external resources).
pub const PAGE: &str = include_str!("page.html");

/// Nothing but this origin and inline code: the page must work without internet access.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'";

/// How the dashboard polls and judges.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Time between polls (and page refreshes).
    pub interval: Duration,
    /// Give up on a service's answer after this long.
    pub scrape_timeout: Duration,
    /// History kept for the charts.
    pub retention: Duration,
    /// Health thresholds and the rate window.
    pub thresholds: Thresholds,
}

impl Settings {
    /// Defaults for polls every `interval`: 15 minutes of history, a 30 s window (at least three
    /// polls), a scrape timeout of the interval capped at 3 s.
    pub fn with_interval(interval: Duration) -> Settings {
        let thresholds = Thresholds {
            window: Duration::from_secs(30).max(interval * 3),
            ..Thresholds::default()
        };
        Settings {
            interval,
            scrape_timeout: interval.min(Duration::from_secs(3)),
            retention: Duration::from_secs(15 * 60),
            thresholds,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::with_interval(Duration::from_secs(5))
    }
}

struct Inner {
    endpoints: Vec<Endpoint>,
    settings: Settings,
    scraper: Scraper,
    history: Mutex<History>,
}

/// A dashboard over a fixed set of endpoints. Cheap to clone.
#[derive(Clone)]
pub struct Dashboard {
    inner: Arc<Inner>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Dashboard {
    /// A dashboard polling `endpoints`.
    pub fn new(endpoints: Vec<Endpoint>, settings: Settings) -> Result<Dashboard, Error> {
        let scraper = Scraper::new(settings.scrape_timeout)?;
        let history = History::new(
            settings.interval,
            settings.retention,
            settings.thresholds.clone(),
        );
        Ok(Dashboard {
            inner: Arc::new(Inner {
                endpoints,
                settings,
                scraper,
                history: Mutex::new(history),
            }),
        })
    }

    /// The polled endpoints.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.inner.endpoints
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    // Only plain updates happen under the lock; a panic cannot leave the history half-written
    // in a way later reads would trip over, so a poisoned lock stays usable.
    fn history(&self) -> MutexGuard<'_, History> {
        self.inner.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Polls every endpoint once (in parallel) and records the results.
    pub async fn poll_once(&self) {
        let at = now_ms();
        let scrapes = futures::future::join_all(
            self.inner
                .endpoints
                .iter()
                .map(|e| async { (e.clone(), self.inner.scraper.scrape(e).await) }),
        )
        .await;
        for (e, s) in &scrapes {
            if !s.reachable {
                tracing::debug!(service = %e.name, url = %e.base_url, reason = s.error.as_deref().unwrap_or(""), "Service did not answer");
            }
        }
        self.history().record(at, &scrapes);
    }

    /// Polls every `interval` until `cancel` fires.
    pub async fn run_poller(&self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.inner.settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.poll_once() => {}
            }
        }
    }

    /// The current API answer.
    pub fn snapshot(&self) -> Snapshot {
        self.history().snapshot(now_ms())
    }

    /// `GET /` (the page), `GET /api/snapshot` (JSON), `GET /livez`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(page))
            .route("/api/snapshot", get(snapshot))
            .route("/livez", get(|| async { "ok" }))
            .with_state(self.clone())
    }

    /// Binds `listen` (port 0 picks one), returning the listener and its address.
    pub async fn bind(listen: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), Error> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| Error::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: listen,
            source,
        })?;
        Ok((listener, addr))
    }

    /// Polls and serves on `listener` until `cancel` fires.
    pub async fn run(
        &self,
        listener: tokio::net::TcpListener,
        cancel: CancellationToken,
    ) -> Result<(), Error> {
        let poller = {
            let this = self.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move { this.run_poller(cancel).await })
        };
        let served = axum::serve(listener, self.router())
            .with_graceful_shutdown(cancel.clone().cancelled_owned())
            .await
            .map_err(Error::Serve);
        cancel.cancel();
        let _ = poller.await;
        served
    }
}

async fn page() -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        Html(PAGE),
    )
        .into_response()
}

async fn snapshot(State(d): State<Dashboard>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(d.snapshot()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained() {
        assert!(PAGE.starts_with("<!doctype html>"));
        for external in [
            "src=\"http",
            "href=\"http",
            "src='http",
            "@import",
            "cdn",
            "//fonts.",
        ] {
            assert!(
                !PAGE.to_ascii_lowercase().contains(external),
                "the page references {external}"
            );
        }
        assert!(PAGE.contains("/api/snapshot"));
    }

    #[test]
    fn settings_follow_the_interval() {
        let s = Settings::default();
        assert_eq!(s.interval, Duration::from_secs(5));
        assert_eq!(s.thresholds.window, Duration::from_secs(30));
        assert_eq!(s.retention, Duration::from_secs(900));
        let slow = Settings::with_interval(Duration::from_secs(20));
        assert_eq!(slow.thresholds.window, Duration::from_secs(60));
        assert_eq!(slow.scrape_timeout, Duration::from_secs(3));
    }

    #[tokio::test]
    async fn serves_the_page_and_the_snapshot_of_live_services() {
        // A fake sink admin endpoint whose counter moves between polls.
        let rows = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let r = rows.clone();
        let sink = Router::new()
            .route(
                "/metrics",
                get(move || {
                    let n = r.fetch_add(100, std::sync::atomic::Ordering::SeqCst);
                    async move {
                        format!("cdc_sink_rows_written_total{{destination=\"postgres\",op=\"insert\",table=\"a.t\"}} {n}\ncdc_sink_destination_up{{destination=\"postgres\"}} 1\n")
                    }
                }),
            )
            .route("/readyz", get(|| async { "{\"ready\":true,\"dependencies\":[]}" }));
        let (l, sink_addr) = Dashboard::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind sink");
        tokio::spawn(async move { axum::serve(l, sink).await });

        let d = Dashboard::new(
            vec![Endpoint::new(
                "sink-postgres",
                format!("http://{sink_addr}"),
            )],
            Settings::with_interval(Duration::from_millis(100)),
        )
        .expect("dashboard");
        let (listener, addr) = Dashboard::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let cancel = CancellationToken::new();
        let running = {
            let d = d.clone();
            let c = cancel.clone();
            tokio::spawn(async move { d.run(listener, c).await })
        };
        let client = reqwest::Client::new();
        let page = client
            .get(format!("http://{addr}/"))
            .send()
            .await
            .expect("page");
        assert!(
            page.headers()[header::CONTENT_SECURITY_POLICY.as_str()]
                .to_str()
                .expect("csp")
                .contains("default-src 'none'")
        );
        assert!(page.text().await.expect("body").contains("<title>"));

        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let json = loop {
            let v: serde_json::Value = client
                .get(format!("http://{addr}/api/snapshot"))
                .send()
                .await
                .expect("snapshot")
                .json()
                .await
                .expect("json");
            if v["polls"].as_u64().unwrap_or(0) >= 3 {
                break v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "three polls in 10 s: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let pg = &json["destinations"][0];
        assert_eq!(pg["name"], "postgres");
        assert_eq!(pg["health"], "up", "{pg}");
        assert!(
            pg["throughput_rows_per_sec"].as_f64().expect("rate") > 0.0,
            "{pg}"
        );
        assert_eq!(json["interval_ms"], 100);
        cancel.cancel();
        running.await.expect("join").expect("clean stop");
    }
}
