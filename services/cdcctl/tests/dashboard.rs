//! Browser test of `cdcctl dashboard` (issue 8 acceptance: "under `cdcctl load --rate 1000`, the
//! dashboard shows per-destination lag, throughput and error rates refreshing every 5 s").
//!
//! The whole pipeline — capture, masker, sink-postgres, sink-clickhouse, sink-timescaledb — runs as
//! real processes (`cdc_testkit::RunningPipeline`) on a keyspace of its own, fed in the background by
//! the real `cdcctl load --create-schema --rate 1000` with the pipeline's pipeline.yaml.
//! `cdcctl dashboard` is pointed at that pipeline.yaml with its default 5 s interval; headless
//! Chromium (Debian's `chromium`, driven over the DevTools protocol) loads the page. The test checks
//! that the page says and does refresh every 5 s, that across refreshes every destination's rows
//! written rise with a positive throughput while its lag and error rate are shown, and that capture
//! and masker are up and moving. It then stops sink-clickhouse (SIGTERM, clean drain) and checks
//! ClickHouse turns red while PostgreSQL and TimescaleDB stay green and keep writing, saves a
//! screenshot to `target/dashboard.png` (`target/dashboard-failure.png` when a wait fails) and
//! checks `cdcctl load` reported no write errors.
//!
//! Needs the local stack (`make stack-up`), `chromium` (in `dev/apt-packages.txt`) and the workspace
//! binaries (`cargo build --workspace --bins`; `make test-dashboard` does it). Never skips: anything
//! missing fails the test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use cdc_testkit::pipeline::{PipelineSpec, RunningPipeline, Service, policy_header};
use cdc_testkit::{StackEnv, unique_name};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

/// `cdcctl load --rate` (events per second, the acceptance's figure).
const LOAD_RATE: u32 = 1000;
/// `cdcctl load --duration`: long enough to cover every check under load.
const LOAD_SECS: u64 = 90;
/// The dashboard's default `--interval` (not passed: the default is what is tested).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// The table `cdcctl load` writes (its demo table).
const TABLE: &str = "patients";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// The target directory (screenshots go there): `<target>/<profile>/cdcctl` is two levels down.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_cdcctl"))
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("the cdcctl binary has no target directory"))
}

/// The real `cdcctl` with `--config` set to the pipeline's pipeline.yaml; `CDC__…` overrides of
/// the test process are removed (the generated file is the whole configuration, as for the
/// pipeline's services and `RunningPipeline::cdcctl`).
fn cdcctl(pipeline: &RunningPipeline) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cdcctl"));
    cmd.arg("--config").arg(pipeline.config_path());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CDC__") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Starts `cmd` with stdout to `out` and stderr to `err`, killed when dropped.
fn spawn_logged(mut cmd: Command, what: &str, out: &Path, err: &Path) -> Child {
    let file = |p: &Path| {
        std::fs::File::create(p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()))
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(file(out)))
        .stderr(Stdio::from(file(err)))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"))
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Masking policy of `ks.patients` (the demo table's PII/PHI columns).
fn policy(ks: &str) -> String {
    format!(
        "{}tables:\n  {ks}.{TABLE}:\n    \
         email: {{class: pii, strategy: hash}}\n    \
         ssn: {{class: pii, strategy: hash}}\n    \
         phone: {{class: pii, strategy: partial, keep_last: 4}}\n    \
         medical_record_number: {{class: phi, strategy: tokenize}}\n",
        policy_header(1)
    )
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

/// What the page shows: refresh count and interval and, per destination and stage, health and
/// figures (`null` when the figure shows "—"); `fields` lists the figures each card displays.
const READ_PAGE: &str = r#"(() => {
  if (!document.getElementById("last-refresh")) return { refreshes: 0, loading: document.URL };
  const fig = (card, f) => {
    const e = card.querySelector(`[data-field="${f}"]`);
    return e && e.dataset.value !== "" ? Number(e.dataset.value) : null;
  };
  const fields = (card) => Array.from(card.querySelectorAll("[data-field]")).map((e) => e.dataset.field);
  const out = { refreshes: Number(document.body.dataset.refreshes || 0),
                lastRefresh: document.getElementById("last-refresh").textContent,
                interval: document.getElementById("interval").textContent,
                destinations: {}, stages: {} };
  for (const c of document.querySelectorAll("[data-destination]")) {
    out.destinations[c.dataset.destination] = {
      health: c.dataset.health, rows: fig(c, "rows_total"), throughput: fig(c, "throughput_rows_per_sec"),
      lag: fig(c, "lag_seconds"), errors: fig(c, "error_rate_per_sec"), p99: fig(c, "latency_p99_seconds"),
      fields: fields(c),
      colour: getComputedStyle(c.querySelector(".badge")).backgroundColor,
      reasons: Array.from(c.querySelectorAll(".reasons li")).map((l) => l.textContent) };
  }
  for (const c of document.querySelectorAll("[data-stage]")) {
    out.stages[c.dataset.stage] = { health: c.dataset.health,
      throughput: fig(c, "throughput_events_per_sec"), events: fig(c, "events_total") };
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

fn throughput(view: &Value, d: &str) -> f64 {
    view["destinations"][d]["throughput"]
        .as_f64()
        .unwrap_or(0.0)
}

fn health<'a>(view: &'a Value, d: &str) -> &'a str {
    view["destinations"][d]["health"].as_str().unwrap_or("")
}

fn refreshes(view: &Value) -> u64 {
    view["refreshes"].as_u64().unwrap_or(0)
}

/// One line per destination: what the page shows (printed for the record).
fn summary(label: &str, view: &Value) -> String {
    let mut s = format!("{label} (refresh {}):", refreshes(view));
    for d in DESTINATIONS {
        let v = &view["destinations"][d];
        s.push_str(&format!(
            "\n  {d:<12} {:<8} rows {:>8} throughput {:>8} rows/s lag {} s errors {} /s",
            v["health"].as_str().unwrap_or("?"),
            v["rows"],
            v["throughput"],
            v["lag"],
            v["errors"]
        ));
    }
    for st in ["capture", "masker"] {
        let v = &view["stages"][st];
        s.push_str(&format!(
            "\n  {st:<12} {:<8} events {} throughput {} events/s",
            v["health"].as_str().unwrap_or("?"),
            v["events"],
            v["throughput"]
        ));
    }
    s
}

async fn get_ok(client: &reqwest::Client, url: &str) -> bool {
    matches!(client.get(url).send().await, Ok(r) if r.status().is_success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_live_destinations_and_a_stopped_sink_turns_red() {
    let started = Instant::now();
    let env = StackEnv::load();
    let ks = unique_name("dash");
    let spec = PipelineSpec::new("dash", [ks.clone()]).policy(policy(&ks));
    let pipeline = RunningPipeline::start(&env, spec).await;
    let dir = pipeline.dir().to_path_buf();
    eprintln!(
        "pipeline {} ready after {:?} (files in {})",
        pipeline.names().name,
        started.elapsed(),
        dir.display()
    );

    // The dashboard on the pipeline's pipeline.yaml, default interval (5 s).
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| panic!("http client: {e}"));
    let dash_log = dir.join("dashboard.log");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut dash_cmd = cdcctl(&pipeline);
    dash_cmd.args([
        "dashboard",
        "--listen",
        &listen,
        // Generous: debug binaries and Chromium share two cores; the health rules are unit-tested.
        "--lag-warn-seconds",
        "120",
    ]);
    let _dashboard = spawn_logged(dash_cmd, "cdcctl dashboard", &dash_log, &dash_log);
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

    // The load: the real `cdcctl load` at 1,000 events/s in the background (creates the table).
    let load_out = dir.join("load.json");
    let load_log = dir.join("load.log");
    let mut load_cmd = cdcctl(&pipeline);
    load_cmd.args([
        "load",
        "--keyspace",
        &ks,
        "--table",
        TABLE,
        "--create-schema",
        "--rate",
        &LOAD_RATE.to_string(),
        "--duration",
        &format!("{LOAD_SECS}s"),
        "--keys",
        "100000",
        "--concurrency",
        "16",
        "--json",
    ]);
    let load_started = Instant::now();
    let mut load = spawn_logged(load_cmd, "cdcctl load", &load_out, &load_log);

    let logs: Vec<PathBuf> = Service::ALL
        .iter()
        .map(|s| pipeline.log_path(*s))
        .chain([dash_log.clone(), load_log.clone()])
        .collect();
    let mut browser = Browser::launch().await;
    browser.open(&url).await;
    let first = wait_page(
        &mut browser,
        &logs,
        Duration::from_secs(90),
        "two refreshes with rows written to every destination",
        |v| refreshes(v) >= 2 && DESTINATIONS.iter().all(|d| rows(v, d) > 0.0),
    )
    .await;
    assert_ne!(first["lastRefresh"], "never");
    assert_eq!(
        first["interval"], "5",
        "the page says it refreshes every 5 s"
    );
    eprintln!("{}", summary("first rows", &first));

    // From the next refresh on: the page refreshes every 5 s, and under load the numbers move from
    // one refresh to the next with every destination green and its lag and error rate shown.
    let edge = wait_page(
        &mut browser,
        &logs,
        DEFAULT_INTERVAL * 3,
        "the next refresh",
        |v| refreshes(v) > refreshes(&first),
    )
    .await;
    let edge_at = Instant::now();
    eprintln!("{}", summary("edge", &edge));
    let moving = wait_page(
        &mut browser,
        &logs,
        Duration::from_secs(60),
        "rows rising and throughput shown on every destination over two refreshes, all green",
        |v| {
            refreshes(v) >= refreshes(&edge) + 2
                && DESTINATIONS.iter().all(|d| {
                    rows(v, d) > rows(&edge, d) && throughput(v, d) > 0.0 && health(v, d) == "up"
                })
        },
    )
    .await;
    let period = edge_at.elapsed().as_secs_f64() / (refreshes(&moving) - refreshes(&edge)) as f64;
    eprintln!(
        "{}\n  page refresh period {period:.2} s",
        summary("moving", &moving)
    );
    assert!(
        (4.0..=7.0).contains(&period),
        "the page refreshes every 5 s (measured {period:.2} s per refresh)"
    );
    for d in DESTINATIONS {
        let view = &moving["destinations"][d];
        for field in [
            "lag_seconds",
            "throughput_rows_per_sec",
            "error_rate_per_sec",
        ] {
            assert!(
                view["fields"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == field)),
                "{d}: the card shows {field}: {view}"
            );
        }
        assert!(
            view["lag"]
                .as_f64()
                .is_some_and(|l| (0.0..120.0).contains(&l)),
            "{d}: lag shown and small: {view}"
        );
        assert!(
            view["errors"].as_f64() == Some(0.0),
            "{d}: error rate shown, and zero under a healthy load: {view}"
        );
        assert!(
            rows(&moving, d) > rows(&edge, d) && rows(&edge, d) > 0.0,
            "{d}: rows written rise between refreshes: {} -> {}",
            rows(&edge, d),
            rows(&moving, d)
        );
        // The 1,000 events/s show: a loose floor (rates are over a 30 s window that includes the
        // start of the load).
        assert!(
            throughput(&moving, d) >= 0.25 * f64::from(LOAD_RATE),
            "{d}: throughput under --rate {LOAD_RATE}: {view}"
        );
        assert_eq!(
            view["colour"], "rgb(26, 127, 55)",
            "{d}: the badge is green"
        );
    }
    for stage in ["capture", "masker"] {
        let view = &moving["stages"][stage];
        assert_eq!(view["health"], "up", "{stage}: {moving:#}");
        assert!(
            view["throughput"].as_f64().is_some_and(|t| t > 0.0),
            "{stage} moves under load: {view}"
        );
    }

    // Stop sink-clickhouse (SIGTERM, clean drain): only ClickHouse turns red.
    let stopped = pipeline.stop(Service::SinkClickhouse).await;
    assert!(
        stopped.is_some(),
        "sink-clickhouse was not running before the stop:\n{}",
        pipeline.log_tail(Service::SinkClickhouse, 15)
    );
    eprintln!("sink-clickhouse stopped: {stopped:?}");

    let red = wait_page(
        &mut browser,
        &logs,
        Duration::from_secs(30),
        "clickhouse red, postgres and timescaledb green and still writing",
        |v| {
            health(v, "clickhouse") == "down"
                && health(v, "postgres") == "up"
                && health(v, "timescaledb") == "up"
                && rows(v, "postgres") > rows(&moving, "postgres")
                && rows(v, "timescaledb") > rows(&moving, "timescaledb")
        },
    )
    .await;
    eprintln!("{}", summary("clickhouse stopped", &red));
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
    for d in ["postgres", "timescaledb"] {
        assert_eq!(
            red["destinations"][d]["colour"], "rgb(26, 127, 55)",
            "{d}: the badge stays green"
        );
    }
    assert!(
        matches!(load.try_wait(), Ok(None)),
        "cdcctl load ({LOAD_SECS} s) ended before the checks did ({:?} after it started); \
         its log:\n{}",
        load_started.elapsed(),
        tail(&load_log)
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
    assert_eq!(api_health("timescaledb"), Some(json!("up")));
    assert_eq!(snap["interval_ms"], 5000, "the default interval is 5 s");
    assert!(
        snap["destinations"][0]["history"]
            .as_array()
            .is_some_and(|h| h.len() >= 4),
        "history kept: {}",
        snap["destinations"][0]["history"]
    );
    drop(browser);

    // The load ran at its rate without write errors.
    let status = tokio::time::timeout(
        Duration::from_secs(LOAD_SECS + 60).saturating_sub(load_started.elapsed()),
        load.wait(),
    )
    .await
    .unwrap_or_else(|_| panic!("cdcctl load did not end; its log:\n{}", tail(&load_log)))
    .unwrap_or_else(|e| panic!("cdcctl load: {e}"));
    let report: Value = serde_json::from_slice(&std::fs::read(&load_out).unwrap_or_default())
        .unwrap_or_else(|e| {
            panic!(
                "cdcctl load ({status}) printed no JSON report ({e}); its log:\n{}",
                tail(&load_log)
            )
        });
    eprintln!(
        "cdcctl load: {} events, {} errors, achieved {} events/s",
        report["events"]["total"], report["errors"]["total"], report["achieved_rate"]
    );
    assert!(status.success(), "cdcctl load failed ({status}): {report}");
    assert_eq!(report["errors"]["total"], 0, "{report}");
    assert!(
        report["achieved_rate"]
            .as_f64()
            .is_some_and(|r| r >= 0.8 * f64::from(LOAD_RATE)),
        "cdcctl load kept up with --rate {LOAD_RATE}: {report}"
    );

    drop(pipeline);
    cleanup(&env, &ks).await;
    eprintln!("done in {:?}", started.elapsed());
}

/// Drops what the load and the sinks created for the test keyspace (best effort).
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
    if let Ok(session) = scylla::client::session_builder::SessionBuilder::new()
        .known_node(&env.cassandra_cql)
        .connection_timeout(Duration::from_secs(10))
        .build()
        .await
    {
        let _ = session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), &[])
            .await;
    }
}
