//! Browser test of `cdcctl dashboard` (issue 8): the three real sink binaries write a unique
//! `cdc.masked.<ks>.t` topic into PostgreSQL, ClickHouse and TimescaleDB under continuous load;
//! `cdcctl dashboard` polls them (services taken from the test's pipeline.yaml); headless Chromium
//! (Debian's `chromium`, driven over the DevTools protocol) loads the page. The test waits for two
//! refreshes, checks every destination's rows and throughput move, stops sink-clickhouse and checks
//! ClickHouse turns red while PostgreSQL and TimescaleDB stay green, and saves a screenshot to
//! `target/dashboard.png`.
//!
//! Needs the local stack (`make stack-up`), `chromium` (in `dev/apt-packages.txt`) and the sink
//! binaries (`make test-dashboard` builds them). Never skips: anything missing fails the test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use cdc_sink::compliance::{ComplianceEnv, EventFactory, Fixture};
use cdc_testkit::StackEnv;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

const INTERVAL: &str = "2s";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// `<target>/<profile>` of this test build (test executables live in its `deps/`).
fn profile_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_cdcctl"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("cdcctl binary has no parent directory"))
}

/// The target directory (screenshots go there).
fn target_dir() -> PathBuf {
    profile_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("the profile directory has no parent"))
}

fn sink_binary(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the sinks first (`cargo build -p sink-postgres -p sink-clickhouse \
         -p sink-timescaledb`; `make test-dashboard` does)",
        path.display()
    );
    path
}

fn spawn_logged(program: &Path, args: &[&str], log: &Path) -> Child {
    let out =
        std::fs::File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
    let err = out
        .try_clone()
        .unwrap_or_else(|e| panic!("clone log handle: {e}"));
    Command::new(program)
        .args(args)
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.display()))
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A headless Chromium driven over the Chrome DevTools protocol (one page, flattened session).
struct Browser {
    child: Child,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn launch() -> Browser {
        let exe = std::env::var("CDC_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            Path::new(&exe).is_file(),
            "{exe} not found: install Debian's chromium (it is in dev/apt-packages.txt; `make stack-up` installs it)"
        );
        let profile = tempfile::tempdir().unwrap_or_else(|e| panic!("browser profile dir: {e}"));
        let mut child = Command::new(&exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--window-size=1500,1100",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {exe}: {e}"));
        let stderr = child
            .stderr
            .take()
            .unwrap_or_else(|| panic!("chromium stderr"));
        let mut lines = BufReader::new(stderr).lines();
        let ws_url = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(i) = line.find("ws://") {
                    return Some(line[i..].trim().to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("chromium did not print its DevTools address within 60 s"));
        // Keep draining stderr so Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .unwrap_or_else(|e| panic!("DevTools websocket {ws_url}: {e}"));
        Browser {
            child,
            ws,
            next_id: 0,
            session: None,
            _profile: profile,
        }
    }

    /// Sends one command and returns its result (events in between are ignored).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .unwrap_or_else(|e| panic!("send {method}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = tokio::time::timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer within 60 s"));
            let Some(Ok(Message::Text(text))) = frame else {
                if let Some(Ok(_)) = frame {
                    continue;
                }
                panic!("{method}: DevTools connection closed ({frame:?})");
            };
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method}: bad DevTools JSON: {e}"));
            if v["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(err) = v.get("error") {
                panic!("{method} failed: {err}");
            }
            return v["result"].clone();
        }
    }

    async fn open(&mut self, url: &str) {
        let target = self
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let target_id = target["targetId"].clone();
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await;
        self.session = attached["sessionId"].as_str().map(str::to_owned);
        assert!(
            self.session.is_some(),
            "attachToTarget gave no session: {attached}"
        );
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1500, "height": 1100, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await;
        self.call("Page.enable", json!({})).await;
        self.call("Page.navigate", json!({ "url": url })).await;
    }

    /// Evaluates `expression` in the page and returns its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("page script failed: {ex}");
        }
        r["result"]["value"].clone()
    }

    async fn screenshot(&mut self, path: &Path) {
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("screenshot base64: {e}"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// What the page shows: refresh count and, per destination and stage, health and figures.
const READ_PAGE: &str = r#"(() => {
  if (!document.getElementById("last-refresh")) return { refreshes: 0, loading: document.URL };
  const fig = (card, f) => {
    const e = card.querySelector(`[data-field="${f}"]`);
    return e && e.dataset.value !== "" ? Number(e.dataset.value) : null;
  };
  const out = { refreshes: Number(document.body.dataset.refreshes || 0),
                lastRefresh: document.getElementById("last-refresh").textContent,
                destinations: {}, stages: {} };
  for (const c of document.querySelectorAll("[data-destination]")) {
    out.destinations[c.dataset.destination] = {
      health: c.dataset.health, rows: fig(c, "rows_total"), throughput: fig(c, "throughput_rows_per_sec"),
      lag: fig(c, "lag_seconds"), p99: fig(c, "latency_p99_seconds"),
      colour: getComputedStyle(c.querySelector(".badge")).backgroundColor,
      reasons: Array.from(c.querySelectorAll(".reasons li")).map((l) => l.textContent) };
  }
  for (const c of document.querySelectorAll("[data-stage]")) {
    out.stages[c.dataset.stage] = { health: c.dataset.health };
  }
  return out;
})()"#;

const DESTINATIONS: [&str; 3] = ["postgres", "clickhouse", "timescaledb"];

/// Reads the page until `done` holds, failing after `timeout` with the last view.
async fn wait_page(
    browser: &mut Browser,
    logs: &[PathBuf],
    timeout: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = browser.eval(READ_PAGE).await;
        if done(&v) {
            return v;
        }
        if Instant::now() >= deadline {
            let png = target_dir().join("dashboard-failure.png");
            browser.screenshot(&png).await;
            let logs: Vec<String> = logs
                .iter()
                .map(|l| format!("--- {}:\n{}", l.display(), tail(l)))
                .collect();
            panic!(
                "{what}: not seen within {timeout:?}; the page shows {v:#}\n(screenshot: {})\n{}",
                png.display(),
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn rows(view: &Value, d: &str) -> f64 {
    view["destinations"][d]["rows"].as_f64().unwrap_or(-1.0)
}

fn health<'a>(view: &'a Value, d: &str) -> &'a str {
    view["destinations"][d]["health"].as_str().unwrap_or("")
}

async fn get_ok(client: &reqwest::Client, url: &str) -> bool {
    matches!(client.get(url).send().await, Ok(r) if r.status().is_success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_live_destinations_and_a_stopped_sink_turns_red() {
    let env = StackEnv::load();
    let compliance = ComplianceEnv {
        kafka_bootstrap: env.kafka_bootstrap.clone(),
        poison_name: None,
    };
    let fx = Arc::new(Fixture::new(&compliance, "dash").await);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));

    // pipeline.yaml: the three sinks on free admin ports; capture and masker configured but not
    // running (the dashboard must show them down).
    let (pg_port, ch_port, ts_port) = (free_port(), free_port(), free_port());
    let pattern = format!("^{}$", fx.topic.replace('.', "\\."));
    let sink = |name: &str, port: u16, destination: &str| {
        format!(
            "  {name}:\n    group_id: {group}_{name}\n    topics_pattern: '{pattern}'\n    dlq_topic: {dlq}\n    \
             batch: {{max_rows: 500, linger_ms: 100}}\n    retry: {{initial_backoff_ms: 50, max_backoff_ms: 1000}}\n    \
             admin: {{listen_addr: \"127.0.0.1:{port}\"}}\n    destination:\n{destination}",
            group = fx.group,
            dlq = fx.dlq_topic,
        )
    };
    let config = [
        "kafka:".to_owned(),
        format!("  bootstrap_servers: [\"{}\"]", env.kafka_bootstrap),
        "  replication_factor: 1".to_owned(),
        "  topic_partitions: 3".to_owned(),
        format!(
            "capture: {{admin: {{listen_addr: \"127.0.0.1:{}\"}}}}",
            free_port()
        ),
        format!(
            "masker: {{admin: {{listen_addr: \"127.0.0.1:{}\"}}}}",
            free_port()
        ),
        "sinks:".to_owned(),
        sink(
            "postgres",
            pg_port,
            &format!(
                "      url: plain:{}\n      database: warehouse\n      tls: disable\n",
                env.postgres_url
            ),
        ),
        sink(
            "clickhouse",
            ch_port,
            &format!("      url: {}\n      password: null\n", env.clickhouse_url),
        ),
        sink(
            "timescaledb",
            ts_port,
            &format!(
                "      url: plain:{}\n      database: timeseries\n      tls: disable\n",
                env.timescale_url
            ),
        ),
    ]
    .join("\n");
    let config_path = dir.path().join("pipeline.yaml");
    std::fs::write(&config_path, config).unwrap_or_else(|e| panic!("write config: {e}"));
    let cfg = config_path.to_string_lossy().into_owned();

    let mut sinks = Vec::new();
    for (name, port) in [
        ("sink-postgres", pg_port),
        ("sink-clickhouse", ch_port),
        ("sink-timescaledb", ts_port),
    ] {
        let log = dir.path().join(format!("{name}.log"));
        let child = spawn_logged(&sink_binary(name), &["--config", &cfg], &log);
        sinks.push((name, port, child, log));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| panic!("http client: {e}"));
    let deadline = Instant::now() + Duration::from_secs(90);
    for (name, port, _, log) in &sinks {
        while !get_ok(&client, &format!("http://127.0.0.1:{port}/readyz")).await {
            assert!(
                Instant::now() < deadline,
                "{name} not ready within 90 s; its log:\n{}",
                tail(log)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    let dash_port = free_port();
    let dash_log = dir.path().join("dashboard.log");
    let listen = format!("127.0.0.1:{dash_port}");
    let _dashboard = spawn_logged(
        Path::new(env!("CARGO_BIN_EXE_cdcctl")),
        &[
            "--config",
            &cfg,
            "dashboard",
            "--listen",
            &listen,
            "--interval",
            INTERVAL,
            // Generous: other tests may share the machine; the health rules are unit-tested.
            "--lag-warn-seconds",
            "120",
        ],
        &dash_log,
    );
    let url = format!("http://{listen}/");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !get_ok(&client, &format!("{url}api/snapshot")).await {
        assert!(
            Instant::now() < deadline,
            "cdcctl dashboard did not serve within 30 s; its log:\n{}",
            tail(&dash_log)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Continuous load: 50 inserts every 250 ms with writetime = now (lag and latency are real).
    let loading = Arc::new(AtomicBool::new(true));
    let load = {
        let (fx, loading) = (Arc::clone(&fx), Arc::clone(&loading));
        tokio::spawn(async move {
            let mut events = EventFactory::new(&fx.keyspace, &fx.table);
            let mut id = 0i32;
            while loading.load(Ordering::SeqCst) {
                let batch: Vec<_> = (0..50)
                    .map(|_| {
                        id += 1;
                        events.insert(id, &format!("fake-user-{id}"), i64::from(id), now_micros())
                    })
                    .collect();
                fx.produce(&batch).await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            id
        })
    };

    let logs: Vec<PathBuf> = sinks
        .iter()
        .map(|(_, _, _, l)| l.clone())
        .chain([dash_log.clone()])
        .collect();
    let mut browser = Browser::launch().await;
    browser.open(&url).await;
    let first = wait_page(
        &mut browser,
        &logs,
        Duration::from_secs(60),
        "two refreshes with rows written to every destination",
        |v| {
            v["refreshes"].as_u64().unwrap_or(0) >= 2
                && DESTINATIONS.iter().all(|d| rows(v, d) > 0.0)
        },
    )
    .await;
    let seen = first["refreshes"].as_u64().unwrap_or(0);
    assert_ne!(first["lastRefresh"], "never");

    // Under load the numbers move from one refresh to the next, and every destination is green.
    let moving = wait_page(
        &mut browser,
        &logs,
        Duration::from_secs(90),
        "rows and throughput rising on every destination, all green",
        |v| {
            v["refreshes"].as_u64().unwrap_or(0) >= seen + 2
                && DESTINATIONS.iter().all(|d| {
                    rows(v, d) > rows(&first, d)
                        && v["destinations"][d]["throughput"].as_f64().unwrap_or(0.0) > 0.0
                        && health(v, d) == "up"
                })
        },
    )
    .await;
    for d in DESTINATIONS {
        let view = &moving["destinations"][d];
        assert!(
            view["lag"]
                .as_f64()
                .is_some_and(|l| (0.0..120.0).contains(&l)),
            "{d}: lag shown and small: {view}"
        );
        assert_eq!(
            view["colour"], "rgb(26, 127, 55)",
            "{d}: the badge is green"
        );
    }
    assert_eq!(moving["stages"]["capture"]["health"], "down", "{moving:#}");
    assert_eq!(moving["stages"]["masker"]["health"], "down", "{moving:#}");

    // Stop sink-clickhouse (SIGTERM, clean drain): only ClickHouse turns red.
    let (_, _, ch_child, ch_log) = &mut sinks[1];
    let pid = ch_child
        .id()
        .unwrap_or_else(|| panic!("sink-clickhouse has exited early"));
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill -TERM: {e}"));
    assert!(killed.success(), "kill -TERM {pid}");
    let exited = tokio::time::timeout(Duration::from_secs(60), ch_child.wait())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "sink-clickhouse did not stop within 60 s:\n{}",
                tail(ch_log)
            )
        });
    assert!(exited.is_ok(), "sink-clickhouse stopped");

    let before_stop = moving.clone();
    let red = wait_page(
        &mut browser,
        &logs,
        Duration::from_secs(30),
        "clickhouse red, postgres and timescaledb green and still writing",
        |v| {
            health(v, "clickhouse") == "down"
                && health(v, "postgres") == "up"
                && health(v, "timescaledb") == "up"
                && rows(v, "postgres") > rows(&before_stop, "postgres")
                && rows(v, "timescaledb") > rows(&before_stop, "timescaledb")
        },
    )
    .await;
    let ch = &red["destinations"]["clickhouse"];
    assert_eq!(
        ch["colour"], "rgb(207, 34, 46)",
        "the ClickHouse badge is red: {ch}"
    );
    assert!(
        ch["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("sink-clickhouse does not answer")),
        "the reason is shown: {ch}"
    );

    let png = target_dir().join("dashboard.png");
    browser.screenshot(&png).await;
    eprintln!("screenshot: {}", png.display());

    // The API agrees with the page.
    let snap: Value = client
        .get(format!("{url}api/snapshot"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("snapshot: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("snapshot JSON: {e}"));
    let api_health = |d: &str| {
        snap["destinations"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == d))
            .map(|x| x["health"].clone())
    };
    assert_eq!(api_health("clickhouse"), Some(json!("down")));
    assert_eq!(api_health("postgres"), Some(json!("up")));
    assert!(
        snap["destinations"][0]["history"]
            .as_array()
            .is_some_and(|h| h.len() >= 4),
        "history kept: {}",
        snap["destinations"][0]["history"]
    );

    loading.store(false, Ordering::SeqCst);
    let produced = load.await.unwrap_or_else(|e| panic!("load task: {e}"));
    assert!(produced > 0);
    drop(browser);
    for (_, _, child, _) in &mut sinks {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    cleanup(&env, &fx.keyspace).await;
}

/// Drops what the sinks created for the test keyspace (best effort).
async fn cleanup(env: &StackEnv, keyspace: &str) {
    for url in [&env.postgres_url, &env.timescale_url] {
        if let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{keyspace}\" CASCADE"))
                .await;
        }
    }
    let _ = reqwest::Client::new()
        .post(&env.clickhouse_url)
        .body(format!("DROP DATABASE IF EXISTS `{keyspace}`"))
        .send()
        .await;
}
