//! The whole pipeline — `capture`, `masker`, `sink-postgres`, `sink-clickhouse`,
//! `sink-timescaledb` — as child processes of a test, against the local stack.
//!
//! [`RunningPipeline::start`] writes a `pipeline.yaml` and a masking policy into a temporary
//! directory, migrates a token-vault schema of its own (through `cdcctl vault migrate`), spawns the
//! workspace binaries with their logs in that directory and waits until every `/readyz` answers 200.
//! Everything that could collide with another test running at the same time is unique per pipeline:
//! consumer groups, transactional ids, the capture positions topic, dead-letter topics, the vault
//! schema and the admin ports; the topic patterns and the capture filter are restricted to the spec's
//! keyspaces, so parallel pipelines never read each other's events. The capture keeps processed
//! segments (`retain_processed_segments`): the stack's `cdc_raw` is shared by every test.
//!
//! ```no_run
//! # async fn demo() {
//! use cdc_testkit::pipeline::{PipelineSpec, RunningPipeline, Service, policy_header};
//! use cdc_testkit::{StackEnv, unique_name};
//!
//! let env = StackEnv::load();
//! let ks = unique_name("e2e");
//! let policy = format!("{}tables:\n  {ks}.patients:\n    email: {{class: pii, strategy: hash}}\n",
//!     policy_header(1));
//! let spec = PipelineSpec::new("us1", [ks.clone()])
//!     .policy(policy)
//!     .set("sinks.postgres.batch.max_rows", 500);
//! let pipeline = RunningPipeline::start(&env, spec).await;
//! // ... write to Cassandra, then:
//! pipeline.kill9(Service::Masker);
//! pipeline.restart(Service::Masker).await;
//! let status = pipeline.cdcctl().args(["verify", "--wait", "120s"]).status().unwrap();
//! assert!(status.success());
//! # }
//! ```
//!
//! The binaries must be built first (`cargo build --workspace --bins`; `make test-integration` does
//! it): [`bin_path`] panics with that hint when one is missing. Dropping a [`RunningPipeline`] kills
//! its children (SIGKILL); the temporary directory is removed unless `CDC_KEEP_PIPELINE_DIR=1`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_yaml::{Mapping, Value as Yaml};

use crate::{StackEnv, unique_name};

/// Key id of the HMAC key used by `hash` rules (the policy header's `hash_key_id`).
pub const HASH_KEY_ID: &str = "hmac-test";
/// Key id of the HMAC key deriving tokens (the policy header's `token_key_id`).
pub const TOKEN_KEY_ID: &str = "tok-test";
/// Key id of the AES-256 key encrypting token-vault entries.
pub const VAULT_KEY_ID: &str = "vault-test";
/// The (fake, test-only) HMAC key behind [`HASH_KEY_ID`]: tests compute expected `hash_…` values
/// with it (`cdc_mask::strategy::hash`).
pub const FAKE_HASH_KEY: &str = "fake-hmac-key-for-tests-only";
/// The (fake, test-only) HMAC key behind [`TOKEN_KEY_ID`] (`cdc_mask::strategy::token`).
pub const FAKE_TOKEN_KEY: &str = "fake-token-key-for-tests-only";
/// The (fake, test-only) vault key behind [`VAULT_KEY_ID`]: 64 hex digits.
pub const FAKE_VAULT_KEY_HEX: &str =
    "00000000000000000000000000000000000000000000000000000000000000f0";
/// Dev-only password of the vault writer role, created by the vault migration
/// (`crates/cdc-mask/sql/001_token_vault.sql`).
const VAULT_WRITER: &str = "cdc_vault_writer:dev-only-vault-writer";
/// Dev-only password of the vault reader role (for `cdcctl detokenize`).
const VAULT_READER: &str = "cdc_vault_reader:dev-only-vault-reader";

/// The start of a masking policy using the harness's key ids: `version`, `hash_key_id` and
/// `token_key_id`. Append a `tables:` section (and optionally `default_rules:`).
pub fn policy_header(version: u64) -> String {
    format!("version: {version}\nhash_key_id: {HASH_KEY_ID}\ntoken_key_id: {TOKEN_KEY_ID}\n")
}

/// One of the pipeline's five processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Capture,
    Masker,
    SinkPostgres,
    SinkClickhouse,
    SinkTimescaledb,
}

impl Service {
    /// Every service, in start order.
    pub const ALL: [Service; 5] = [
        Service::Capture,
        Service::Masker,
        Service::SinkPostgres,
        Service::SinkClickhouse,
        Service::SinkTimescaledb,
    ];

    /// The binary's name (also the name of its log file, `<name>.log`).
    pub fn binary(self) -> &'static str {
        match self {
            Service::Capture => "capture",
            Service::Masker => "masker",
            Service::SinkPostgres => "sink-postgres",
            Service::SinkClickhouse => "sink-clickhouse",
            Service::SinkTimescaledb => "sink-timescaledb",
        }
    }

    /// The sink's destination, for the three sinks.
    pub fn destination(self) -> Option<Destination> {
        match self {
            Service::SinkPostgres => Some(Destination::Postgres),
            Service::SinkClickhouse => Some(Destination::Clickhouse),
            Service::SinkTimescaledb => Some(Destination::Timescaledb),
            Service::Capture | Service::Masker => None,
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.binary())
    }
}

/// One of the three warehouses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    Postgres,
    Clickhouse,
    Timescaledb,
}

impl Destination {
    /// All three.
    pub const ALL: [Destination; 3] = [
        Destination::Postgres,
        Destination::Clickhouse,
        Destination::Timescaledb,
    ];

    /// The key under `sinks:` of pipeline.yaml (`postgres`, `clickhouse`, `timescaledb`).
    pub fn name(self) -> &'static str {
        match self {
            Destination::Postgres => "postgres",
            Destination::Clickhouse => "clickhouse",
            Destination::Timescaledb => "timescaledb",
        }
    }

    /// The sink service writing to it.
    pub fn service(self) -> Service {
        match self {
            Destination::Postgres => Service::SinkPostgres,
            Destination::Clickhouse => Service::SinkClickhouse,
            Destination::Timescaledb => Service::SinkTimescaledb,
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The path of a workspace binary in the target directory of the running test.
///
/// Test executables live in `<target>/<profile>/deps/`; the binaries one level up. When that
/// directory lacks it, `$CARGO_TARGET_DIR/<profile>/<name>` is tried.
///
/// # Panics
/// When the binary is missing, naming the paths tried and the command that builds it.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let mut tried = vec![dir.join(name)];
    if let (Ok(target), Some(profile)) = (std::env::var("CARGO_TARGET_DIR"), dir.file_name()) {
        tried.push(Path::new(&target).join(profile).join(name));
    }
    if let Some(found) = tried.iter().find(|p| p.is_file()) {
        return found.clone();
    }
    let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    panic!(
        "binary `{name}` not found (tried {}); run `cargo build --workspace --bins` first \
         (`make test-integration` does)",
        tried.join(", ")
    )
}

/// What to start. Build with [`PipelineSpec::new`] and the builder methods.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// Prefix of every generated name; made unique with [`unique_name`].
    pub name: String,
    /// Keyspaces replicated (the capture filter and the topic patterns of masker and sinks).
    pub keyspaces: Vec<String>,
    /// The masking policy file's text; see [`policy_header`] for the key ids.
    pub policy_yaml: String,
    /// Partitions of the raw and masked topics the pipeline creates.
    pub topic_partitions: u32,
    /// Sinks started (the others are left out of pipeline.yaml). Default: all three.
    pub destinations: Vec<Destination>,
    /// Values set in the generated pipeline.yaml, by dotted key path
    /// (`sinks.postgres.batch.max_rows`), applied last.
    pub overrides: Vec<(String, Yaml)>,
    /// How long each service may take to answer `/readyz` with 200.
    pub ready_timeout: Duration,
    /// Environment variables set for every service process (e.g. `OTEL_BSP_SCHEDULE_DELAY`).
    pub env: Vec<(String, String)>,
}

impl PipelineSpec {
    /// A pipeline named `name` (a prefix) replicating `keyspaces` to all three destinations, with
    /// an empty policy (no tables listed), 4 partitions per topic.
    pub fn new(name: &str, keyspaces: impl IntoIterator<Item = impl Into<String>>) -> Self {
        PipelineSpec {
            name: name.to_owned(),
            keyspaces: keyspaces.into_iter().map(Into::into).collect(),
            policy_yaml: format!("{}tables: {{}}\n", policy_header(1)),
            topic_partitions: 4,
            destinations: Destination::ALL.to_vec(),
            overrides: Vec::new(),
            ready_timeout: Duration::from_secs(90),
            env: Vec::new(),
        }
    }

    /// Sets an environment variable of every service process (not `CDC__…`: use
    /// [`PipelineSpec::set`] for configuration).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets the masking policy text.
    pub fn policy(mut self, yaml: impl Into<String>) -> Self {
        self.policy_yaml = yaml.into();
        self
    }

    /// Sets the partition count of created topics.
    pub fn partitions(mut self, n: u32) -> Self {
        self.topic_partitions = n;
        self
    }

    /// Starts only these sinks.
    pub fn sinks(mut self, destinations: &[Destination]) -> Self {
        self.destinations = destinations.to_vec();
        self
    }

    /// Sets one key of pipeline.yaml by dotted path, e.g. `.set("masker.batch_max_events", 100)`.
    pub fn set(mut self, path: &str, value: impl Into<Yaml>) -> Self {
        self.overrides.push((path.to_owned(), value.into()));
        self
    }
}

/// The unique names one pipeline uses (for tests that inspect Kafka or the vault).
#[derive(Debug, Clone)]
pub struct PipelineNames {
    /// The unique pipeline name (prefix of the others).
    pub name: String,
    /// `--transactional-id` of the capture.
    pub capture_transactional_id: String,
    /// `--positions-topic` of the capture.
    pub positions_topic: String,
    /// `CDC_INSTANCE_ID` of the masker (its transactional id is `masker-<instance>`).
    pub masker_instance: String,
    /// The masker's consumer group.
    pub masker_group: String,
    /// The masker's dead-letter topic.
    pub masker_dlq_topic: String,
    /// Consumer group per sink.
    pub sink_groups: BTreeMap<Destination, String>,
    /// Dead-letter topic per sink.
    pub sink_dlq_topics: BTreeMap<Destination, String>,
    /// Token-vault schema (database `vault`).
    pub vault_schema: String,
    /// PostgreSQL URL of the vault reader role (for `cdcctl detokenize --reader-url`).
    pub vault_reader_url: String,
}

struct Proc {
    child: Option<Child>,
    port: u16,
}

/// A pipeline started by [`RunningPipeline::start`]; its processes die with it.
pub struct RunningPipeline {
    names: PipelineNames,
    /// Removes the directory on drop (`None` when kept).
    _tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    config_path: PathBuf,
    policy_path: PathBuf,
    drain_timeout: Duration,
    ready_timeout: Duration,
    procs: Mutex<BTreeMap<Service, Proc>>,
    http: reqwest::Client,
    env: Vec<(String, String)>,
}

impl std::fmt::Debug for RunningPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningPipeline")
            .field("name", &self.names.name)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Seconds each service gets to drain after SIGTERM (`drain_timeout_secs` in the config).
const DRAIN_SECS: u64 = 10;

impl RunningPipeline {
    /// Writes the configuration, migrates the vault schema, starts every service of `spec` and
    /// waits until each answers `/readyz` with 200.
    ///
    /// # Panics
    /// When a binary is missing, the vault migration fails, or a service exits or is not ready
    /// within `spec.ready_timeout` (the message carries the tail of its log).
    pub async fn start(env: &StackEnv, spec: PipelineSpec) -> RunningPipeline {
        let pipeline = Self::prepare(env, &spec).await;
        let services: Vec<Service> = pipeline.procs().keys().copied().collect();
        for s in &services {
            pipeline.spawn(*s);
        }
        for s in services {
            pipeline.wait_ready(s).await;
        }
        pipeline
    }

    async fn prepare(env: &StackEnv, spec: &PipelineSpec) -> RunningPipeline {
        assert!(
            !spec.keyspaces.is_empty(),
            "PipelineSpec.keyspaces is empty: list the keyspaces the pipeline replicates"
        );
        let name = unique_name(&spec.name);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("cdc-pipeline-{name}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create the pipeline directory: {e}"));
        let (tmp, base) = if std::env::var("CDC_KEEP_PIPELINE_DIR").is_ok_and(|v| v == "1") {
            let kept = tmp.keep();
            eprintln!("pipeline {name}: files kept in {}", kept.display());
            (None, kept)
        } else {
            let path = tmp.path().to_path_buf();
            (Some(tmp), path)
        };
        let vault_admin = vault_admin_url(env);
        let names = PipelineNames {
            capture_transactional_id: format!("capture-{name}"),
            positions_topic: format!("cdc.capture.positions.{name}"),
            masker_instance: name.clone(),
            masker_group: format!("{name}-masker"),
            masker_dlq_topic: format!("cdc.dlq.{name}.masker"),
            sink_groups: spec
                .destinations
                .iter()
                .map(|d| (*d, format!("{name}-sink-{d}")))
                .collect(),
            sink_dlq_topics: spec
                .destinations
                .iter()
                .map(|d| (*d, format!("cdc.dlq.{name}.sink-{d}")))
                .collect(),
            vault_schema: format!("tv_{name}"),
            vault_reader_url: with_credentials(&vault_admin, VAULT_READER),
            name,
        };
        // Five distinct free ports: hold every listener until all are chosen.
        let services: Vec<Service> = [Service::Capture, Service::Masker]
            .into_iter()
            .chain(spec.destinations.iter().map(|d| d.service()))
            .collect();
        let listeners: Vec<std::net::TcpListener> = services
            .iter()
            .map(|_| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"))
            })
            .collect();
        let mut procs = BTreeMap::new();
        for (s, l) in services.iter().zip(&listeners) {
            let port = l.local_addr().map(|a| a.port()).unwrap_or_default();
            procs.insert(*s, Proc { child: None, port });
        }
        drop(listeners);

        let policy_path = base.join("masking-policy.yaml");
        write_atomically(&policy_path, &spec.policy_yaml);
        let ports: BTreeMap<Service, u16> = procs.iter().map(|(s, p)| (*s, p.port)).collect();
        let config = config_yaml(env, spec, &names, &policy_path, &ports, &vault_admin);
        let config_path = base.join("pipeline.yaml");
        write_atomically(&config_path, &config);

        let pipeline = RunningPipeline {
            names,
            _tmp: tmp,
            dir: base,
            config_path,
            policy_path,
            drain_timeout: Duration::from_secs(DRAIN_SECS),
            ready_timeout: spec.ready_timeout,
            procs: Mutex::new(procs),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_else(|e| panic!("http client: {e}")),
            env: spec.env.clone(),
        };
        pipeline.migrate_vault(&vault_admin).await;
        pipeline
    }

    async fn migrate_vault(&self, admin_url: &str) {
        let mut cmd = tokio::process::Command::from(self.cdcctl());
        cmd.args([
            "vault",
            "migrate",
            "--admin-url",
            "env:CDC_TOKEN_VAULT_ADMIN_URL",
        ])
        .env("CDC_TOKEN_VAULT_ADMIN_URL", admin_url);
        let out = cmd
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run cdcctl vault migrate: {e}"));
        assert!(
            out.status.success(),
            "cdcctl vault migrate failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn procs(&self) -> std::sync::MutexGuard<'_, BTreeMap<Service, Proc>> {
        // A panic while holding the lock leaves the map usable (single field updates).
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The generated names (groups, transactional ids, topics, vault schema).
    pub fn names(&self) -> &PipelineNames {
        &self.names
    }

    /// The pipeline's directory: pipeline.yaml, masking-policy.yaml, `<service>.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The generated pipeline.yaml.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The masking policy file the masker watches.
    pub fn policy_path(&self) -> &Path {
        &self.policy_path
    }

    /// Replaces the masking policy (write + rename, so the masker never reads half a file). The
    /// masker reloads it within `masker.policy_reload_interval_ms` (500 ms here).
    pub fn write_policy(&self, yaml: &str) {
        write_atomically(&self.policy_path, yaml);
    }

    /// A `cdcctl` command with `--config` set to this pipeline's configuration and
    /// `CDC_TOKEN_VAULT_READER_URL` set for `detokenize`.
    pub fn cdcctl(&self) -> Command {
        let mut cmd = Command::new(bin_path("cdcctl"));
        cmd.arg("--config")
            .arg(&self.config_path)
            .env("CDC_TOKEN_VAULT_READER_URL", &self.names.vault_reader_url);
        clear_overrides(&mut cmd);
        cmd
    }

    /// Base URL of the service's admin server (`/metrics`, `/livez`, `/readyz`).
    ///
    /// # Panics
    /// When the service is not part of this pipeline.
    pub fn admin_url(&self, service: Service) -> String {
        format!("http://127.0.0.1:{}", self.port(service))
    }

    fn port(&self, service: Service) -> u16 {
        self.procs()
            .get(&service)
            .map(|p| p.port)
            .unwrap_or_else(|| panic!("{service} is not part of this pipeline"))
    }

    /// GET `path` from the service's admin server: status and body, `None` when it does not
    /// answer.
    pub async fn admin_get(&self, service: Service, path: &str) -> Option<(u16, String)> {
        let url = format!("{}{path}", self.admin_url(service));
        let resp = self.http.get(&url).send().await.ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.ok()?))
    }

    /// The service's pid while it runs.
    pub fn pid(&self, service: Service) -> Option<u32> {
        let mut procs = self.procs();
        let p = procs.get_mut(&service)?;
        let child = p.child.as_mut()?;
        match child.try_wait() {
            Ok(None) => Some(child.id()),
            _ => None,
        }
    }

    /// True while the service's process runs.
    pub fn is_running(&self, service: Service) -> bool {
        self.pid(service).is_some()
    }

    /// The last `n` lines of the service's log (all runs of it, appended).
    pub fn log_tail(&self, service: Service, n: usize) -> String {
        let path = self.log_path(service);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The service's log file.
    pub fn log_path(&self, service: Service) -> PathBuf {
        self.dir.join(format!("{}.log", service.binary()))
    }

    /// `kill -9`: SIGKILL and reap. Returns the exit status (`None` when it was not running).
    pub fn kill9(&self, service: Service) -> Option<ExitStatus> {
        let child = self.procs().get_mut(&service)?.child.take();
        let mut child = child?;
        let _ = child.kill();
        child.wait().ok()
    }

    /// SIGTERM, then waits for the drain (`drain_timeout_secs` + 10 s) and SIGKILLs a process
    /// still running. Returns the exit status (`None` when it was not running).
    pub async fn stop(&self, service: Service) -> Option<ExitStatus> {
        let mut child = self.procs().get_mut(&service)?.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + self.drain_timeout + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => {
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }

    /// Stops the service if it runs (SIGTERM, see [`RunningPipeline::stop`]), starts it again
    /// and waits until it is ready. After [`RunningPipeline::kill9`] this is the restart of a
    /// crashed process.
    ///
    /// # Panics
    /// As [`RunningPipeline::start`].
    pub async fn restart(&self, service: Service) {
        self.stop(service).await;
        self.spawn(service);
        self.wait_ready(service).await;
    }

    /// SIGTERM to every service at once, then waits for all (SIGKILL after the drain deadline);
    /// returns each exit status (`None` for services that were not running).
    pub async fn stop_all(&self) -> BTreeMap<Service, Option<ExitStatus>> {
        let mut children: BTreeMap<Service, Option<Child>> = self
            .procs()
            .iter_mut()
            .map(|(s, p)| (*s, p.child.take()))
            .collect();
        for child in children.values_mut().flatten() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + self.drain_timeout + Duration::from_secs(10);
        let mut statuses = BTreeMap::new();
        loop {
            for (s, slot) in children.iter_mut() {
                let Some(child) = slot.as_mut() else {
                    statuses.entry(*s).or_insert(None);
                    continue;
                };
                if let Ok(Some(status)) = child.try_wait() {
                    statuses.insert(*s, Some(status));
                    *slot = None;
                } else if Instant::now() >= deadline {
                    let _ = child.kill();
                    statuses.insert(*s, child.wait().ok());
                    *slot = None;
                }
            }
            if children.values().all(Option::is_none) {
                return statuses;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn spawn(&self, service: Service) {
        let log_path = self.log_path(service);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
        let mut cmd = Command::new(bin_path(service.binary()));
        cmd.arg("--config").arg(&self.config_path);
        if service == Service::Capture {
            cmd.args([
                "--transactional-id",
                &self.names.capture_transactional_id,
                "--positions-topic",
                &self.names.positions_topic,
            ]);
        }
        clear_overrides(&mut cmd);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.env("CDC_INSTANCE_ID", &self.names.masker_instance)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {service}: {e}"));
        let mut procs = self.procs();
        let p = procs
            .get_mut(&service)
            .unwrap_or_else(|| panic!("{service} is not part of this pipeline"));
        if let Some(mut old) = p.child.replace(child) {
            let _ = old.kill();
            let _ = old.wait();
        }
    }

    /// Waits until the service answers `/readyz` with 200.
    ///
    /// # Panics
    /// When the process exits or the ready timeout passes, with the tail of its log.
    pub async fn wait_ready(&self, service: Service) {
        let started = Instant::now();
        let mut last = String::from("no answer");
        loop {
            if !self.is_running(service) {
                panic!(
                    "{service} of pipeline {} exited before it was ready; last log lines ({}):\n{}",
                    self.names.name,
                    self.log_path(service).display(),
                    self.log_tail(service, 40)
                );
            }
            match self.admin_get(service, "/readyz").await {
                Some((200, _)) => return,
                Some((status, body)) => last = format!("HTTP {status}: {body}"),
                None => {}
            }
            if started.elapsed() > self.ready_timeout {
                panic!(
                    "{service} of pipeline {} not ready after {:?} (last /readyz: {last}); \
                     last log lines ({}):\n{}",
                    self.names.name,
                    self.ready_timeout,
                    self.log_path(service).display(),
                    self.log_tail(service, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every service is ready (see [`RunningPipeline::wait_ready`]).
    pub async fn wait_all_ready(&self) {
        let services: Vec<Service> = self.procs().keys().copied().collect();
        for s in services {
            self.wait_ready(s).await;
        }
    }

    /// The value of a Prometheus sample on the service's `/metrics`, summed over the series whose
    /// labels contain every `label="value"` pair given; `None` when no series matches.
    pub async fn metric(
        &self,
        service: Service,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Option<f64> {
        let (_, body) = self.admin_get(service, "/metrics").await?;
        sum_samples(&body, name, labels)
    }
}

impl Drop for RunningPipeline {
    fn drop(&mut self) {
        let mut procs = self.procs();
        for p in procs.values_mut() {
            if let Some(mut child) = p.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Sums the samples of metric `name` whose label set contains every pair of `labels`.
pub fn sum_samples(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in exposition.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once('}') {
                Some((l, v)) => (l, v),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        if !labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
        {
            continue;
        }
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

/// Environment overrides (`CDC__…`) of the test process must not leak into the services: the
/// generated file is the whole configuration.
fn clear_overrides(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CDC__") {
            cmd.env_remove(k);
        }
    }
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path)
        .unwrap_or_else(|e| panic!("cannot rename {} into place: {e}", path.display()));
}

/// The vault database's owner URL: `CDC_VAULT_URL` of the stack, else the warehouse URL with the
/// database `vault`.
fn vault_admin_url(env: &StackEnv) -> String {
    env.all.get("CDC_VAULT_URL").cloned().unwrap_or_else(|| {
        let pg = &env.postgres_url;
        let base = pg.rsplit_once('/').map_or(pg.as_str(), |(b, _)| b);
        format!("{base}/vault")
    })
}

/// `url` with its `user:password@` replaced.
fn with_credentials(url: &str, credentials: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{credentials}@{host}")
}

/// A regular expression matching `cdc.<kind>.<keyspace>.<table>` for the given keyspaces.
fn topic_pattern(kind: &str, keyspaces: &[String]) -> String {
    format!("^cdc\\.{kind}\\.({})\\..+$", keyspaces.join("|"))
}

fn config_yaml(
    env: &StackEnv,
    spec: &PipelineSpec,
    names: &PipelineNames,
    policy_path: &Path,
    ports: &BTreeMap<Service, u16>,
    vault_admin: &str,
) -> String {
    let admin = |s: Service| {
        let mut m = Mapping::new();
        m.insert(
            "listen_addr".into(),
            format!("127.0.0.1:{}", ports.get(&s).copied().unwrap_or_default()).into(),
        );
        Yaml::Mapping(m)
    };
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let keyspaces = spec
        .keyspaces
        .iter()
        .map(|k| q(k))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        r#"# Generated by cdc_testkit::pipeline for pipeline {name}. Fake, test-only keys.
cluster_name: stack
kafka:
  bootstrap_servers: [{bootstrap}]
  topic_partitions: {partitions}
  replication_factor: 1
cassandra:
  contact_points: [{cassandra}]
  keyspaces:
    include: [{keyspaces}]
capture:
  cdc_raw_dir: {cdc_raw}
  poll_interval_ms: 100
  batch_linger_ms: 50
  retain_processed_segments: true
  drain_timeout_secs: {drain}
masker:
  policy_file: {policy}
  policy_reload_interval_ms: 500
  group_id: {masker_group}
  topics_pattern: {raw_pattern}
  batch_linger_ms: 50
  session_timeout_ms: 6000
  dlq_topic: {masker_dlq}
  keys:
    {HASH_KEY_ID}: plain:{FAKE_HASH_KEY}
    {TOKEN_KEY_ID}: plain:{FAKE_TOKEN_KEY}
    {VAULT_KEY_ID}: plain:{FAKE_VAULT_KEY_HEX}
  vault:
    url: {vault_url}
    schema: {vault_schema}
    encryption_key_id: {VAULT_KEY_ID}
  drain_timeout_secs: {drain}
telemetry:
  log_level: info
  log_format: json
"#,
        name = names.name,
        bootstrap = q(&env.kafka_bootstrap),
        partitions = spec.topic_partitions,
        cassandra = q(&env.cassandra_cql),
        cdc_raw = q(&env.cassandra_cdc_raw.display().to_string()),
        drain = DRAIN_SECS,
        policy = q(&policy_path.display().to_string()),
        masker_group = q(&names.masker_group),
        raw_pattern = q(&topic_pattern("raw", &spec.keyspaces)),
        masker_dlq = q(&names.masker_dlq_topic),
        vault_url = q(&format!(
            "plain:{}",
            with_credentials(vault_admin, VAULT_WRITER)
        )),
        vault_schema = q(&names.vault_schema),
    );
    let mut doc: Yaml = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("generated pipeline.yaml does not parse: {e}\n{text}"));
    set_path(&mut doc, "capture.admin", admin(Service::Capture));
    set_path(&mut doc, "masker.admin", admin(Service::Masker));
    let masked_pattern = topic_pattern("masked", &spec.keyspaces);
    for d in &spec.destinations {
        let destination = match d {
            Destination::Postgres => sink_destination_pg(&env.postgres_url, "warehouse"),
            Destination::Timescaledb => sink_destination_pg(&env.timescale_url, "timeseries"),
            Destination::Clickhouse => {
                let mut m = Mapping::new();
                m.insert("url".into(), env.clickhouse_url.clone().into());
                Yaml::Mapping(m)
            }
        };
        let sink = serde_yaml::from_str::<Yaml>(&format!(
            "group_id: {group}\ntopics_pattern: {pattern}\ndlq_topic: {dlq}\n\
             batch: {{linger_ms: 200}}\n\
             retry: {{initial_backoff_ms: 100, max_backoff_ms: 2000}}\n\
             drain_timeout_secs: {DRAIN_SECS}\nsession_timeout_ms: 6000\n",
            group = q(&names.sink_groups[d]),
            pattern = q(&masked_pattern),
            dlq = q(&names.sink_dlq_topics[d]),
        ))
        .unwrap_or_else(|e| panic!("generated sink section does not parse: {e}"));
        let key = format!("sinks.{}", d.name());
        set_path(&mut doc, &key, sink);
        set_path(&mut doc, &format!("{key}.admin"), admin(d.service()));
        set_path(&mut doc, &format!("{key}.destination"), destination);
    }
    for (path, value) in &spec.overrides {
        set_path(&mut doc, path, value.clone());
    }
    serde_yaml::to_string(&doc).unwrap_or_else(|e| panic!("serialize pipeline.yaml: {e}"))
}

fn sink_destination_pg(url: &str, database: &str) -> Yaml {
    let mut m = Mapping::new();
    m.insert("url".into(), format!("plain:{url}").into());
    m.insert("database".into(), database.into());
    m.insert("tls".into(), "disable".into());
    Yaml::Mapping(m)
}

/// Sets `value` at the dotted `path`, creating mappings on the way (replacing non-mappings).
fn set_path(doc: &mut Yaml, path: &str, value: Yaml) {
    let mut node = doc;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if !node.is_mapping() {
            *node = Yaml::Mapping(Mapping::new());
        }
        let Yaml::Mapping(map) = node else {
            unreachable!("just made a mapping")
        };
        if parts.peek().is_none() {
            map.insert(part.into(), value);
            return;
        }
        node = map
            .entry(part.into())
            .or_insert_with(|| Yaml::Mapping(Mapping::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_path_creates_and_replaces() {
        let mut doc: Yaml = serde_yaml::from_str("a: {b: 1}\nc: 2").unwrap();
        set_path(&mut doc, "a.b", 5.into());
        set_path(&mut doc, "a.x.y", "z".into());
        set_path(&mut doc, "c.d", true.into());
        let back = serde_yaml::to_string(&doc).unwrap();
        assert_eq!(
            serde_yaml::from_str::<Yaml>(&back).unwrap(),
            serde_yaml::from_str::<Yaml>("a: {b: 5, x: {y: z}}\nc: {d: true}").unwrap()
        );
    }

    #[test]
    fn topic_patterns_are_anchored_to_the_keyspaces() {
        let p = topic_pattern("raw", &["ks_a".into(), "ks_b".into()]);
        assert_eq!(p, r"^cdc\.raw\.(ks_a|ks_b)\..+$");
    }

    #[test]
    fn credentials_are_replaced() {
        assert_eq!(
            with_credentials("postgres://cdc:cdc@127.0.0.1:15432/vault", "w:p"),
            "postgres://w:p@127.0.0.1:15432/vault"
        );
    }

    #[test]
    fn samples_are_summed_over_matching_labels() {
        let text = "# HELP x\ncdc_x_total{destination=\"postgres\",op=\"insert\"} 3\n\
                    cdc_x_total{destination=\"postgres\",op=\"delete\"} 2\n\
                    cdc_x_total{destination=\"clickhouse\",op=\"insert\"} 7\ncdc_y 1.5\n";
        assert_eq!(
            sum_samples(text, "cdc_x_total", &[("destination", "postgres")]),
            Some(5.0)
        );
        assert_eq!(sum_samples(text, "cdc_y", &[]), Some(1.5));
        assert_eq!(sum_samples(text, "cdc_x", &[]), None);
    }

    #[test]
    fn generated_config_names_every_unique_resource() {
        let env = StackEnv {
            kafka_bootstrap: "127.0.0.1:19092".into(),
            cassandra_cql: "127.0.0.1:19042".into(),
            cassandra_cdc_raw: "/tmp/cdc_raw".into(),
            postgres_url: "postgres://cdc:cdc@127.0.0.1:15432/warehouse".into(),
            timescale_url: "postgres://cdc:cdc@127.0.0.1:15433/timeseries".into(),
            clickhouse_url: "http://127.0.0.1:18123".into(),
            schema_registry_url: None,
            all: Default::default(),
        };
        let spec = PipelineSpec::new("t", ["ks1"])
            .sinks(&[Destination::Postgres])
            .set("sinks.postgres.batch.max_rows", 7);
        let names = PipelineNames {
            name: "t_1".into(),
            capture_transactional_id: "capture-t_1".into(),
            positions_topic: "cdc.capture.positions.t_1".into(),
            masker_instance: "t_1".into(),
            masker_group: "t_1-masker".into(),
            masker_dlq_topic: "cdc.dlq.t_1.masker".into(),
            sink_groups: [(Destination::Postgres, "t_1-sink-postgres".into())].into(),
            sink_dlq_topics: [(Destination::Postgres, "cdc.dlq.t_1.sink-postgres".into())].into(),
            vault_schema: "tv_t_1".into(),
            vault_reader_url: String::new(),
        };
        let ports = Service::ALL.iter().map(|s| (*s, 1000)).collect();
        let text = config_yaml(
            &env,
            &spec,
            &names,
            Path::new("/p.yaml"),
            &ports,
            &vault_admin_url(&env),
        );
        let doc: Yaml = serde_yaml::from_str(&text).unwrap();
        let get = |path: &str| {
            path.split('.')
                .try_fold(&doc, |n, k| n.get(k))
                .cloned()
                .unwrap_or(Yaml::Null)
        };
        assert_eq!(get("masker.group_id"), Yaml::from("t_1-masker"));
        assert_eq!(
            get("masker.topics_pattern"),
            Yaml::from(r"^cdc\.raw\.(ks1)\..+$")
        );
        assert_eq!(get("sinks.postgres.batch.max_rows"), Yaml::from(7));
        assert_eq!(get("sinks.postgres.batch.linger_ms"), Yaml::from(200));
        assert_eq!(get("sinks.clickhouse"), Yaml::Null);
        assert_eq!(
            get("masker.vault.url"),
            Yaml::from(
                "plain:postgres://cdc_vault_writer:dev-only-vault-writer@127.0.0.1:15432/vault"
            )
        );
        assert_eq!(get("capture.retain_processed_segments"), Yaml::from(true));
    }
}
