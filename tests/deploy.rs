//! Deployment artefacts checked against the code they deploy: `docker-compose.yml` (and its
//! `deploy/` files) against the config schema, the Grafana dashboard and the alert rules against the
//! metric names of `cdc-telemetry`, and the Helm chart with `helm lint`, `helm template` and a
//! structural check of every rendered object. No servers needed; the tools (helm, promtool, the
//! structural checker, the Compose loader) are installed and cached by `dev/tools/*.sh` on first use.
//!
//! `make test-deploy` runs this file alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::LazyLock;

use cdc_config::{ExposeSecret, PipelineConfig, SecretRef, SecretResolver};
use cdc_telemetry::metrics::{self, MetricKind};
use regex::Regex;
use serde::Deserialize;
use serde_yaml::Value as Yaml;

const OUR_IMAGE: &str = "cdc-pipeline:dev";
const BINARIES: &[&str] = &[
    "capture",
    "masker",
    "sink-postgres",
    "sink-clickhouse",
    "sink-timescaledb",
    "cdcctl",
];
/// Kubernetes version the chart is rendered for (its `kubeVersion` needs >= 1.25).
const KUBE_VERSION: &str = "1.33.0";
/// Custom resources without Go types in the structural checker; their fields are checked here.
const SKIPPED_KINDS: &[&str] = &["cassandra.datastax.com/v1beta1/CassandraDatacenter"];

fn repo() -> PathBuf {
    // Read at run time: a shared target dir may hold this binary built from another checkout.
    cdc_testkit::stack::repo_root()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml_file(rel: &str) -> Yaml {
    let mut v: Yaml =
        serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: invalid YAML: {e}"));
    v.apply_merge()
        .unwrap_or_else(|e| panic!("{rel}: merge keys: {e}"));
    v
}

fn s(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

fn list(v: &Yaml) -> Vec<String> {
    match v {
        Yaml::Sequence(seq) => seq.iter().map(s).collect(),
        Yaml::Null => Vec::new(),
        other => vec![s(other)],
    }
}

/// Compose's `${VAR:-default}` / `${VAR-default}` interpolation with an empty environment: every
/// variable must carry a default so `docker compose up` works without an .env file.
fn interpolate(text: &str, what: &str) -> String {
    static VAR: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-([^}]*))?\}").unwrap());
    VAR.replace_all(text, |c: &regex::Captures| match c.get(3) {
        Some(default) => default.as_str().to_owned(),
        None => panic!("{what}: ${{{}}} has no default", &c[1]),
    })
    .into_owned()
}

// ---------- docker compose ----------

struct ComposeService {
    name: String,
    raw: Yaml,
    env: BTreeMap<String, String>,
    /// (source, target) of every volume entry.
    volumes: Vec<(String, String)>,
}

impl ComposeService {
    fn image(&self) -> String {
        self.raw.get("image").map(s).unwrap_or_default()
    }

    fn command(&self) -> Vec<String> {
        self.raw.get("command").map(list).unwrap_or_default()
    }

    fn ours(&self) -> bool {
        self.image() == OUR_IMAGE
    }

    /// The binary the container runs.
    fn binary(&self) -> String {
        match self.raw.get("entrypoint").map(list) {
            Some(ep) if !ep.is_empty() => ep[0].clone(),
            _ => self.command().first().cloned().unwrap_or_default(),
        }
    }

    fn mount_source(&self, target: &str) -> Option<&str> {
        self.volumes
            .iter()
            .find(|(_, t)| t == target)
            .map(|(src, _)| src.as_str())
    }

    /// TCP ports the container listens on, from `ports`, `expose`, Kafka's listeners and the
    /// official images' documented defaults.
    fn listening_ports(&self) -> BTreeSet<u16> {
        let mut ports = BTreeSet::new();
        for p in self.raw.get("ports").map(list).unwrap_or_default() {
            let container = p.rsplit(':').next().unwrap_or(&p);
            ports.insert(container.parse().expect("port"));
        }
        for p in self.raw.get("expose").map(list).unwrap_or_default() {
            ports.insert(p.parse().expect("expose port"));
        }
        if let Some(listeners) = self.env.get("KAFKA_LISTENERS") {
            for l in listeners.split(',') {
                ports.insert(l.rsplit(':').next().unwrap().parse().expect("listener"));
            }
        }
        let image = self.image();
        for (prefix, port) in [
            ("postgres:", 5432),
            ("timescale/timescaledb:", 5432),
            ("clickhouse/clickhouse-server:", 8123),
            ("cassandra:", 9042),
            ("prom/prometheus:", 9090),
            ("grafana/grafana:", 3000),
        ] {
            if image.starts_with(prefix) {
                ports.insert(port);
            }
        }
        ports
    }
}

struct Compose {
    services: BTreeMap<String, ComposeService>,
    named_volumes: BTreeSet<String>,
}

fn compose() -> Compose {
    let text = interpolate(&read("docker-compose.yml"), "docker-compose.yml");
    let mut doc: Yaml = serde_yaml::from_str(&text).expect("docker-compose.yml is YAML");
    doc.apply_merge().expect("merge keys");
    let mut services = BTreeMap::new();
    for (name, raw) in doc["services"].as_mapping().expect("services") {
        let name = s(name);
        let mut env = BTreeMap::new();
        match raw.get("environment") {
            Some(Yaml::Mapping(m)) => {
                for (k, v) in m {
                    env.insert(s(k), s(v));
                }
            }
            Some(Yaml::Sequence(seq)) => {
                for item in seq {
                    let item = s(item);
                    let (k, v) = item.split_once('=').expect("KEY=VALUE");
                    env.insert(k.to_owned(), v.to_owned());
                }
            }
            _ => {}
        }
        let volumes = raw
            .get("volumes")
            .map(list)
            .unwrap_or_default()
            .into_iter()
            .map(|v| {
                let mut parts = v.split(':');
                let src = parts.next().unwrap().to_owned();
                let target = parts
                    .next()
                    .unwrap_or_else(|| panic!("{name}: volume {v} has no target"));
                (src, target.to_owned())
            })
            .collect();
        services.insert(
            name.clone(),
            ComposeService {
                name,
                raw: raw.clone(),
                env,
                volumes,
            },
        );
    }
    let named_volumes = doc["volumes"]
        .as_mapping()
        .map(|m| m.keys().map(s).collect())
        .unwrap_or_default();
    Compose {
        services,
        named_volumes,
    }
}

/// `host:port` of a URL or `host:port` string.
fn host_port(addr: &str, default_port: u16) -> (String, u16) {
    let rest = addr.split_once("://").map_or(addr, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse().expect("port")),
        None => (authority.to_owned(), default_port),
    }
}

fn resolve_env(reference: &SecretRef, svc: &ComposeService) -> String {
    let resolver = SecretResolver::from_env().with_env_map(svc.env.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(reference.resolve_with(&resolver))
        .unwrap_or_else(|e| panic!("{}: {e}", svc.name))
        .expose_secret()
        .to_owned()
}

/// The config one of our containers runs with: the mounted pipeline.yaml plus its `CDC__*` variables
/// (an unknown key in either fails here).
fn container_config(svc: &ComposeService) -> PipelineConfig {
    let src = svc
        .mount_source("/etc/cdc/pipeline.yaml")
        .unwrap_or_else(|| panic!("{}: /etc/cdc/pipeline.yaml is not mounted", svc.name));
    let path = repo().join(src.trim_start_matches("./"));
    cdc_config::load_with_env(&path, svc.env.clone())
        .unwrap_or_else(|e| panic!("{}: config with its environment is invalid:\n{e}", svc.name))
}

#[test]
fn compose_matches_the_config_schema() {
    let c = compose();
    let svcs = &c.services;
    let assert_reaches = |from: &str, what: &str, addr: &str, default_port: u16| {
        let (host, port) = host_port(addr, default_port);
        let target = svcs
            .get(&host)
            .unwrap_or_else(|| panic!("{from}: {what} names host `{host}`, not a compose service"));
        assert!(
            target.listening_ports().contains(&port),
            "{from}: {what} uses {host}:{port}, but {host} listens on {:?}",
            target.listening_ports()
        );
    };

    // Every bind mount exists; every named volume is declared; every dependency exists.
    for svc in svcs.values() {
        for (src, target) in &svc.volumes {
            if src.starts_with('.') || src.starts_with('/') {
                assert!(
                    repo().join(src.trim_start_matches("./")).exists(),
                    "{}: bind mount {src} -> {target}: no such file",
                    svc.name
                );
            } else {
                assert!(
                    c.named_volumes.contains(src),
                    "{}: volume {src} is not declared under volumes:",
                    svc.name
                );
            }
        }
        let deps: Vec<String> = match svc.raw.get("depends_on") {
            Some(Yaml::Mapping(m)) => m.keys().map(s).collect(),
            Some(other) => list(other),
            None => Vec::new(),
        };
        for d in deps {
            assert!(
                svcs.contains_key(&d),
                "{}: depends_on {d}: no such service",
                svc.name
            );
        }
    }

    let ours: Vec<&ComposeService> = svcs.values().filter(|s| s.ours()).collect();
    let binaries: BTreeSet<String> = ours.iter().map(|s| s.binary()).collect();
    assert_eq!(
        binaries,
        BINARIES.iter().map(|b| (*b).to_owned()).collect(),
        "one compose service per binary"
    );

    for svc in &ours {
        let bin = svc.binary();
        let config = container_config(svc);
        // Every env: reference this binary resolves is set in its container.
        let mut refs: Vec<(String, SecretRef)> = Vec::new();
        let k = &config.kafka.security;
        for (key, r) in [
            ("kafka.security.sasl_username", &k.sasl_username),
            ("kafka.security.sasl_password", &k.sasl_password),
            ("kafka.security.client_key_password", &k.client_key_password),
        ] {
            if let Some(r) = r {
                refs.push((key.into(), r.clone()));
            }
        }
        let (admin, kind) = match bin.as_str() {
            "capture" => {
                for (key, r) in [
                    ("cassandra.username", &config.cassandra.username),
                    ("cassandra.password", &config.cassandra.password),
                ] {
                    if let Some(r) = r {
                        refs.push((key.into(), r.clone()));
                    }
                }
                (Some(config.capture.admin.listen_addr), "capture")
            }
            "masker" => {
                for (id, r) in &config.masker.keys {
                    refs.push((format!("masker.keys.{id}"), r.clone()));
                }
                let vault = config
                    .masker
                    .vault
                    .as_ref()
                    .expect("compose masker has a vault");
                refs.push(("masker.vault.url".into(), vault.url.clone()));
                (Some(config.masker.admin.listen_addr), "masker")
            }
            "sink-postgres" => {
                let sink = config.sinks.postgres.as_ref().expect("sinks.postgres");
                refs.push((
                    "sinks.postgres.destination.url".into(),
                    sink.destination.url.clone(),
                ));
                (Some(sink.admin.listen_addr), "sink")
            }
            "sink-timescaledb" => {
                let sink = config
                    .sinks
                    .timescaledb
                    .as_ref()
                    .expect("sinks.timescaledb");
                refs.push((
                    "sinks.timescaledb.destination.url".into(),
                    sink.destination.url.clone(),
                ));
                (Some(sink.admin.listen_addr), "sink")
            }
            "sink-clickhouse" => {
                let sink = config.sinks.clickhouse.as_ref().expect("sinks.clickhouse");
                if let Some(p) = &sink.destination.password {
                    refs.push(("sinks.clickhouse.destination.password".into(), p.clone()));
                }
                assert_reaches(
                    &svc.name,
                    "sinks.clickhouse.destination.url",
                    &sink.destination.url,
                    8123,
                );
                (Some(sink.admin.listen_addr), "sink")
            }
            _ => (None, "tool"),
        };
        let mut resolved = BTreeMap::new();
        for (key, r) in &refs {
            assert!(
                !r.is_plain(),
                "{}: {key} is a plain: secret; compose passes secrets as env: references",
                svc.name
            );
            resolved.insert(key.clone(), resolve_env(r, svc));
        }

        // Hosts and ports this binary connects to are compose services listening there.
        if kind != "tool" {
            for b in &config.kafka.bootstrap_servers {
                assert_reaches(&svc.name, "kafka.bootstrap_servers", b, 9092);
            }
            if let Some(otlp) = &config.telemetry.otlp_endpoint {
                assert_reaches(&svc.name, "telemetry.otlp_endpoint", otlp, 4317);
            }
        }
        for (key, value) in &resolved {
            if key.ends_with(".url") {
                assert_reaches(&svc.name, key, value, 5432);
            }
        }
        if bin == "capture" {
            for cp in &config.cassandra.contact_points {
                assert_reaches(
                    &svc.name,
                    "cassandra.contact_points",
                    cp,
                    config.cassandra.port,
                );
            }
        }

        // The admin port is the port the service exposes (and that Prometheus scrapes).
        if let Some(addr) = admin {
            let exposed: Vec<u16> = svc
                .raw
                .get("expose")
                .map(list)
                .unwrap_or_default()
                .iter()
                .map(|p| p.parse().unwrap())
                .collect();
            assert_eq!(
                exposed,
                vec![addr.port()],
                "{}: expose must be the admin listen port",
                svc.name
            );
            let grace = svc
                .raw
                .get("stop_grace_period")
                .map(s)
                .expect("stop_grace_period");
            let grace: u64 = grace.trim_end_matches('s').parse().expect("seconds");
            let drain = match bin.as_str() {
                "capture" => config.capture.drain_timeout_secs,
                "masker" => config.masker.drain_timeout_secs,
                "sink-postgres" => config.sinks.postgres.as_ref().unwrap().drain_timeout_secs,
                "sink-clickhouse" => config.sinks.clickhouse.as_ref().unwrap().drain_timeout_secs,
                _ => {
                    config
                        .sinks
                        .timescaledb
                        .as_ref()
                        .unwrap()
                        .drain_timeout_secs
                }
            };
            assert!(
                grace > drain,
                "{}: stop_grace_period {grace}s <= drain {drain}s",
                svc.name
            );
        }

        if bin == "masker" {
            // The policy file is mounted and valid against the configured keys and vault.
            let policy_target = config.masker.policy_file.display().to_string();
            let src = svc
                .mount_source(&policy_target)
                .unwrap_or_else(|| panic!("masker: policy_file {policy_target} is not mounted"));
            let mut keys = cdc_mask::KeyRing::new();
            for id in config.masker.keys.keys() {
                let value = &resolved[&format!("masker.keys.{id}")];
                keys.insert(id.clone(), value.as_bytes().to_vec());
            }
            let text = read(src.trim_start_matches("./"));
            cdc_mask::Policy::parse(
                src,
                &text,
                cdc_mask::PolicyContext {
                    keys: &keys,
                    vault_configured: config.masker.vault.is_some(),
                },
            )
            .unwrap_or_else(|e| panic!("masker: {src}: {e}"));
        }

        if bin == "capture" {
            // cdc_raw: the same named volume at the same path as in Cassandra, with the commit log on it
            // too (Cassandra hard-links segments into cdc_raw).
            let raw = config.capture.cdc_raw_dir.display().to_string();
            let (vol, target) = svc
                .volumes
                .iter()
                .find(|(src, t)| !src.starts_with('.') && raw.starts_with(t.as_str()))
                .unwrap_or_else(|| panic!("capture: no volume holds capture.cdc_raw_dir {raw}"));
            let cass = &svcs["cassandra"];
            assert!(
                cass.volumes.iter().any(|(s, t)| s == vol && t == target),
                "cassandra must mount volume {vol} at {target} like capture"
            );
            assert_eq!(
                cass.env.get("CDC_RAW_DIR"),
                Some(&raw),
                "cassandra CDC_RAW_DIR"
            );
            let commitlog = cass
                .env
                .get("COMMITLOG_DIR")
                .expect("cassandra COMMITLOG_DIR");
            assert!(
                commitlog.starts_with(target.as_str()),
                "commit log off the cdc volume"
            );
            assert_eq!(
                svc.raw.get("user").map(s).as_deref(),
                Some("999:999"),
                "capture user"
            );
            assert!(
                config.capture.host_id.is_none(),
                "compose capture reads its host id"
            );
            let total = cass.env.get("CDC_TOTAL_SPACE").expect("CDC_TOTAL_SPACE");
            let mib: u64 = total.trim_end_matches("MiB").parse().expect("MiB");
            assert_eq!(
                config.capture.cdc_total_space_bytes,
                mib << 20,
                "cdc_total_space"
            );
        }
    }

    // Observability wiring uses the chart's files (one source).
    let prom = &svcs["prometheus"];
    assert_eq!(
        prom.volumes
            .iter()
            .find(|(_, t)| t.starts_with("/etc/prometheus/rules/"))
            .map(|(src, _)| src.as_str()),
        Some("./helm/cdc-pipeline/files/alerts.yaml")
    );
    let grafana = &svcs["grafana"];
    assert!(
        grafana
            .volumes
            .iter()
            .any(|(src, t)| src == "./helm/cdc-pipeline/files/dashboard.json"
                && t.starts_with("/var/lib/grafana/dashboards/"))
    );
    assert!(svcs["cassandra"].image().starts_with("cassandra:5.0"));
    assert!(svcs["kafka"].image().starts_with("apache/kafka:"));
    assert_eq!(
        svcs["kafka"].env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"],
        "1"
    );
}

#[test]
fn prometheus_scrapes_every_service_on_its_admin_port() {
    let c = compose();
    let prom = yaml_file("deploy/prometheus/prometheus.yml");
    let mut targets = BTreeSet::new();
    for job in prom["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
    {
        for sc in job["static_configs"].as_sequence().expect("static_configs") {
            targets.extend(list(&sc["targets"]));
        }
    }
    let mut expected = BTreeSet::new();
    for svc in c
        .services
        .values()
        .filter(|s| s.ours() && s.binary() != "cdcctl")
    {
        let config = container_config(svc);
        let port = match svc.binary().as_str() {
            "capture" => config.capture.admin.listen_addr.port(),
            "masker" => config.masker.admin.listen_addr.port(),
            "sink-postgres" => config.sinks.postgres.unwrap().admin.listen_addr.port(),
            "sink-clickhouse" => config.sinks.clickhouse.unwrap().admin.listen_addr.port(),
            "sink-timescaledb" => config.sinks.timescaledb.unwrap().admin.listen_addr.port(),
            other => panic!("unexpected {other}"),
        };
        expected.insert(format!("{}:{port}", svc.name));
    }
    assert_eq!(targets, expected);
    // The rule glob picks up the mounted alert file.
    let rules = list(&prom["rule_files"]);
    assert_eq!(rules, vec!["/etc/prometheus/rules/*.yaml".to_owned()]);
    let dockerfile = read("Dockerfile");
    for b in BINARIES {
        assert!(
            dockerfile.contains(&format!("-p {b}")),
            "Dockerfile does not build {b}"
        );
    }
    assert!(
        dockerfile.contains("USER 10001:10001"),
        "runtime user must be non-root"
    );
}

/// `docker-compose.yml` loaded by the official Compose loader (compose-go, what `docker compose config`
/// runs; no engine needed): schema, interpolation and consistency checks pass, and the loader sees the
/// same services as `compose()`. The check can fail: an unknown field and a wrong type are reported.
#[test]
fn docker_compose_file_passes_the_compose_spec_loader() {
    let mut ok = tool("compose-validate.sh");
    ok.arg("docker-compose.yml");
    let out = run(ok, "compose-validate.sh docker-compose.yml");
    let loaded: BTreeSet<&str> = out.lines().map(str::trim).collect();
    let parsed = compose().services;
    let missing: Vec<&String> = parsed
        .keys()
        .filter(|name| !loaded.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "services parsed by compose() but not by the Compose loader: {missing:?}\nloader printed:\n{out}"
    );

    let text = read("docker-compose.yml");
    let first = parsed.keys().next().expect("a service");
    let header = format!("\n  {first}:\n");
    assert!(text.contains(&header), "no `{}` line", header.trim());
    let with_ports = parsed
        .values()
        .find(|svc| svc.raw.get("ports").is_some())
        .expect("a service with ports");
    // `ports: 5` in place of that service's `ports:` list.
    let wrong_type = {
        let svc_at = text
            .find(&format!("\n  {}:\n", with_ports.name))
            .expect("service header");
        let ports_at = svc_at + text[svc_at..].find("\n    ports:\n").expect("ports:") + 1;
        let items = &text[ports_at + "    ports:\n".len()..];
        let items_len: usize = items
            .split_inclusive('\n')
            .take_while(|l| l.starts_with("      - "))
            .map(str::len)
            .sum();
        let rest = &items[items_len..];
        format!("{}    ports: 5\n{rest}", &text[..ports_at])
    };
    let broken = [
        (
            "unknown field",
            text.replacen(
                &header,
                &format!("{header}    restart_policy_bogus: x\n"),
                1,
            ),
            format!("services.{first}.restart_policy_bogus"),
        ),
        (
            "wrong type",
            wrong_type,
            format!("services.{}.ports", with_ports.name),
        ),
    ];
    let dir = tempfile_dir();
    for (what, broken_text, expected) in broken {
        assert_ne!(broken_text, text, "{what}: the edit did not apply");
        let file = dir.join("docker-compose.yml");
        std::fs::write(&file, broken_text).unwrap();
        let out = tool("compose-validate.sh").arg(&file).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{what}: the Compose loader accepted a broken file:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            stderr.contains("compose-validate: ") && stderr.contains(&expected),
            "{what}: expected an error naming {expected}, got:\n{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

// ---------- metrics in the dashboard and the alert rules ----------

/// Labels Prometheus adds to every scraped series, and the histogram bucket label.
const BUILTIN_LABELS: &[&str] = &["instance", "job", "le", "stage"];

/// Every `cdc_*` metric and label an expression names exists in cdc-telemetry (the `_bucket`,
/// `_sum`, `_count` series only for histograms). `up` is Prometheus' own.
fn check_expr(where_: &str, expr: &str) -> Vec<String> {
    static METRIC: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b(cdc_[a-z0-9_]+)").unwrap());
    static BY: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)").unwrap());
    static MATCHER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#"([a-z_]+)\s*(?:=~|!~|!=|=)\s*""#).unwrap());
    let defs: BTreeMap<&str, &metrics::MetricDef> =
        metrics::ALL.iter().map(|d| (d.name, d)).collect();
    let mut problems = Vec::new();
    let mut labels: BTreeSet<&str> = BUILTIN_LABELS.iter().copied().collect();
    let mut named = 0;
    for m in METRIC.captures_iter(expr) {
        let name = &m[1];
        let def = defs.get(name).copied().or_else(|| {
            ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
                name.strip_suffix(suffix)
                    .and_then(|base| defs.get(base).copied())
                    .filter(|d| d.kind == MetricKind::Histogram)
            })
        });
        match def {
            Some(d) => {
                named += 1;
                if d.kind == MetricKind::Histogram && d.name == name {
                    problems.push(format!(
                        "{where_}: histogram {name} used without _bucket/_sum/_count"
                    ));
                }
                let counted = Regex::new(&format!(r"\b(rate|irate|increase)\(\s*{name}\b"))
                    .expect("regex")
                    .is_match(expr);
                if d.kind == MetricKind::Counter && !counted {
                    problems.push(format!(
                        "{where_}: counter {name} used without rate()/increase()"
                    ));
                }
                labels.extend(d.labels.iter().copied());
            }
            None => problems.push(format!(
                "{where_}: metric {name} is not defined in cdc-telemetry"
            )),
        }
    }
    if named == 0 && !Regex::new(r"\bup\b").expect("regex").is_match(expr) {
        problems.push(format!(
            "{where_}: expression names no pipeline metric: {expr}"
        ));
    }
    let mut used: Vec<String> = Vec::new();
    for c in BY.captures_iter(expr) {
        used.extend(
            c[1].split(',')
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty()),
        );
    }
    for c in MATCHER.captures_iter(expr) {
        used.push(c[1].to_owned());
    }
    for l in used {
        if !labels.contains(l.as_str()) {
            problems.push(format!(
                "{where_}: label `{l}` is not a label of the metrics used"
            ));
        }
    }
    problems
}

fn dashboard_exprs(v: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) => {
            let here = map
                .get("title")
                .and_then(|t| t.as_str())
                .map_or_else(|| path.to_owned(), |t| format!("{path}/{t}"));
            for (k, child) in map {
                if k == "expr" {
                    if let Some(e) = child.as_str() {
                        out.push((here.clone(), e.to_owned()));
                    }
                } else {
                    dashboard_exprs(child, &here, out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                dashboard_exprs(item, path, out);
            }
        }
        _ => {}
    }
}

#[test]
fn dashboard_parses_and_names_only_existing_metrics() {
    let text = read("helm/cdc-pipeline/files/dashboard.json");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard.json parses");
    assert_eq!(dash["uid"], "cdc-pipeline");
    assert_eq!(dash["refresh"], "5s", "the dashboard refreshes every 5 s");
    let mut exprs = Vec::new();
    dashboard_exprs(&dash["panels"], "", &mut exprs);
    assert!(exprs.len() >= 20, "only {} expressions", exprs.len());
    let problems: Vec<String> = exprs.iter().flat_map(|(w, e)| check_expr(w, e)).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Panel ids are unique; every panel queries through the `datasource` variable.
    let mut ids = BTreeSet::new();
    for p in dash["panels"].as_array().expect("panels") {
        assert!(
            ids.insert(p["id"].as_u64().expect("id")),
            "duplicate panel id {}",
            p["id"]
        );
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }
    // The views the issue asks for, per destination.
    let all: String = exprs
        .iter()
        .map(|(_, e)| e.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for needle in [
        "cdc_sink_lag_seconds",
        "rate(cdc_sink_rows_written_total",
        "rate(cdc_sink_errors_total",
        "cdc_sink_backlog_events",
        "histogram_quantile(0.50, sum by (destination, le) (rate(cdc_sink_end_to_end_latency_seconds_bucket",
        "histogram_quantile(0.95, sum by (destination, le) (rate(cdc_sink_end_to_end_latency_seconds_bucket",
        "histogram_quantile(0.99, sum by (destination, le) (rate(cdc_sink_end_to_end_latency_seconds_bucket",
        "cdc_sink_dlq_events_total",
        "cdc_sink_destination_up",
        "cdc_capture_cdc_raw_fill_ratio",
        "cdc_masker_backlog_events",
    ] {
        assert!(all.contains(needle), "dashboard has no panel with {needle}");
    }
    // The variables' queries name real metrics too.
    for var in dash["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = var["definition"].as_str() {
            let problems = check_expr(&format!("variable {}", var["name"]), q);
            assert!(problems.is_empty(), "{}", problems.join("\n"));
        }
    }
}

fn alert_rules() -> Vec<(String, String)> {
    let doc = yaml_file("helm/cdc-pipeline/files/alerts.yaml");
    let mut out = Vec::new();
    for g in doc["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            out.push((s(&r["alert"]), s(&r["expr"])));
        }
    }
    out
}

#[test]
fn alert_rules_name_existing_metrics_and_cover_the_required_alerts() {
    let rules = alert_rules();
    let problems: Vec<String> = rules
        .iter()
        .flat_map(|(name, expr)| check_expr(name, expr))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let find = |metric: &str| {
        rules
            .iter()
            .filter(|(_, e)| e.contains(metric))
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
    };
    // High lag, growing backlog, DLQ growth, cdc_raw nearly full, destination down.
    for (what, metric, name) in [
        ("high lag", "cdc_sink_lag_seconds", "CdcSinkHighLag"),
        (
            "growing backlog",
            "cdc_sink_backlog_events",
            "CdcSinkBacklogGrowing",
        ),
        (
            "DLQ growth",
            "cdc_sink_dlq_events_total",
            "CdcSinkDlqGrowing",
        ),
        (
            "cdc_raw nearly full",
            "cdc_capture_cdc_raw_fill_ratio",
            "CdcRawNearlyFull",
        ),
        (
            "destination down",
            "cdc_sink_destination_up",
            "CdcDestinationDown",
        ),
    ] {
        assert!(
            find(metric).contains(&name),
            "no {what} alert {name} on {metric}"
        );
    }
    let doc = yaml_file("helm/cdc-pipeline/files/alerts.yaml");
    for g in doc["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            let name = s(&r["alert"]);
            let sev = r["labels"]["severity"].as_str().unwrap_or_default();
            assert!(
                ["warning", "critical"].contains(&sev),
                "{name}: severity {sev}"
            );
            for a in ["summary", "description", "runbook_url"] {
                assert!(
                    r["annotations"].get(a).is_some(),
                    "{name}: no {a} annotation"
                );
            }
        }
    }
}

fn tool(script: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg(repo().join("dev/tools").join(script))
        .current_dir(repo());
    c
}

fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn promtool_accepts_the_rules_and_rejects_a_broken_one() {
    let mut ok = tool("promtool.sh");
    ok.args(["check", "rules", "helm/cdc-pipeline/files/alerts.yaml"]);
    let out = run(ok, "promtool check rules");
    assert!(out.contains("SUCCESS"), "{out}");
    assert!(
        out.contains(&format!("{} rules found", alert_rules().len())),
        "{out}"
    );

    // The check can fail: a syntax error in an expression is reported.
    let dir = tempfile_dir();
    let broken = dir.join("broken.yaml");
    let text = read("helm/cdc-pipeline/files/alerts.yaml").replacen(
        "max by (destination) (cdc_sink_destination_up) == 0",
        "max by (destination (cdc_sink_destination_up) == 0",
        1,
    );
    std::fs::write(&broken, text).unwrap();
    let status = tool("promtool.sh")
        .args(["check", "rules"])
        .arg(&broken)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "promtool accepted a broken rule");
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(cdc_testkit::unique_name("deploy"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------- the Helm chart ----------

const CHART: &str = "helm/cdc-pipeline";

fn helm(args: &[&str]) -> String {
    let mut c = tool("helm.sh");
    c.args(args);
    run(c, &format!("helm {}", args.join(" ")))
}

fn render(values: Option<&str>) -> (String, Vec<Yaml>) {
    let mut args = vec![
        "template",
        "cdc",
        CHART,
        "--namespace",
        "cdc",
        "--kube-version",
        KUBE_VERSION,
    ];
    if let Some(v) = values {
        args.extend(["-f", v]);
    }
    let text = helm(&args);
    let docs = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Yaml::deserialize(d).expect("rendered YAML"))
        .filter(|d| !d.is_null())
        .collect();
    (text, docs)
}

fn of_kind<'a>(docs: &'a [Yaml], kind: &str) -> Vec<&'a Yaml> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn name_of(d: &Yaml) -> String {
    s(&d["metadata"]["name"])
}

fn structural_check(text: &str) {
    let mut cmd = tool("k8s-validate.sh");
    for k in SKIPPED_KINDS {
        cmd.args(["--skip-kind", k]);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("k8s-validate");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "structural check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
}

/// The pod spec of a workload (Deployment/StatefulSet) or of a CassandraDatacenter's podTemplateSpec.
fn pod_spec(d: &Yaml) -> &Yaml {
    if d["kind"] == "CassandraDatacenter" {
        &d["spec"]["podTemplateSpec"]["spec"]
    } else {
        &d["spec"]["template"]["spec"]
    }
}

fn check_chart(values: Option<&str>) {
    let what = values.unwrap_or("default values");
    let mut lint = vec!["lint", CHART, "--strict", "--kube-version", KUBE_VERSION];
    if let Some(v) = values {
        lint.extend(["-f", v]);
    }
    helm(&lint);
    let (text, docs) = render(values);
    structural_check(&text);

    // pipeline.yaml of the ConfigMap is a valid config (every key known) with the sinks enabled.
    let cm = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|d| name_of(d).ends_with("-config"))
        .expect("config ConfigMap");
    let pipeline_yaml = s(&cm["data"]["pipeline.yaml"]);
    let config = cdc_config::load_str(
        &format!("{what}: pipeline.yaml"),
        &pipeline_yaml,
        Vec::new(),
    )
    .unwrap_or_else(|e| panic!("{what}: rendered pipeline.yaml is invalid:\n{e}"));
    let partitions = config.kafka.topic_partitions;

    let deployments = of_kind(&docs, "Deployment");
    let mut workloads: Vec<&Yaml> = deployments.clone();
    workloads.extend(of_kind(&docs, "StatefulSet"));
    workloads.extend(of_kind(&docs, "CassandraDatacenter"));
    let mut components = BTreeSet::new();
    for w in &workloads {
        let spec = pod_spec(w);
        for c in spec["containers"].as_sequence().expect("containers") {
            let name = s(&c["name"]);
            if !BINARIES.contains(&name.as_str()) {
                continue;
            }
            components.insert(name.clone());
            let (drain, port) = match name.as_str() {
                "capture" => (
                    config.capture.drain_timeout_secs,
                    config.capture.admin.listen_addr.port(),
                ),
                "masker" => (
                    config.masker.drain_timeout_secs,
                    config.masker.admin.listen_addr.port(),
                ),
                "sink-postgres" => {
                    let c = config.sinks.postgres.as_ref().unwrap();
                    (c.drain_timeout_secs, c.admin.listen_addr.port())
                }
                "sink-clickhouse" => {
                    let c = config.sinks.clickhouse.as_ref().unwrap();
                    (c.drain_timeout_secs, c.admin.listen_addr.port())
                }
                _ => {
                    let c = config.sinks.timescaledb.as_ref().unwrap();
                    (c.drain_timeout_secs, c.admin.listen_addr.port())
                }
            };
            assert_eq!(
                c["ports"][0]["containerPort"].as_u64(),
                Some(u64::from(port)),
                "{what}: {name}: container port vs admin.listen_addr"
            );
            assert_eq!(
                c["readinessProbe"]["httpGet"]["path"], "/readyz",
                "{what}: {name}"
            );
            assert_eq!(
                c["livenessProbe"]["httpGet"]["path"], "/livez",
                "{what}: {name}"
            );
            assert!(
                c["resources"]["requests"]["cpu"].is_string(),
                "{what}: {name}: cpu request"
            );
            assert!(
                c["resources"]["requests"]["memory"].is_string(),
                "{what}: {name}: memory"
            );
            // Every CDC__ variable maps to a config key.
            let mut env = Vec::new();
            for e in c["env"].as_sequence().into_iter().flatten() {
                if let Some(v) = e.get("value") {
                    env.push((s(&e["name"]), s(v)));
                }
            }
            cdc_config::load_str(&format!("{what}: {name} env"), &pipeline_yaml, env)
                .unwrap_or_else(|e| panic!("{what}: {name}: {e}"));
            if w["kind"] != "CassandraDatacenter" {
                let grace = spec["terminationGracePeriodSeconds"]
                    .as_u64()
                    .expect("grace");
                assert!(
                    grace > drain,
                    "{what}: {name}: grace {grace} <= drain_timeout_secs {drain}"
                );
            }
        }
    }
    assert_eq!(
        components,
        [
            "capture",
            "masker",
            "sink-clickhouse",
            "sink-postgres",
            "sink-timescaledb"
        ]
        .iter()
        .map(|c| (*c).to_owned())
        .collect(),
        "{what}: every service is deployed"
    );

    // Only the masker's pods reference the masker's Secret (raw-topic reader credentials).
    let masker = deployments
        .iter()
        .find(|d| name_of(d).ends_with("-masker"))
        .expect("masker Deployment");
    let masker_secret = s(&pod_spec(masker)["containers"][0]["envFrom"][0]["secretRef"]["name"]);
    for w in &workloads {
        let other = name_of(w);
        if other == name_of(masker) {
            continue;
        }
        let spec_text = serde_yaml::to_string(pod_spec(w)).unwrap();
        assert!(
            !spec_text.contains(&masker_secret),
            "{what}: {other} references the masker's secret {masker_secret}"
        );
    }

    // Scaling and disruption: a PDB per Deployment, HPAs never above the partition count.
    let pdbs: BTreeSet<String> = of_kind(&docs, "PodDisruptionBudget")
        .iter()
        .map(|d| name_of(d))
        .collect();
    for d in &deployments {
        assert!(
            pdbs.contains(&name_of(d)),
            "{what}: no PDB for {}",
            name_of(d)
        );
    }
    for hpa in of_kind(&docs, "HorizontalPodAutoscaler") {
        let max = hpa["spec"]["maxReplicas"].as_u64().unwrap();
        assert!(
            max <= u64::from(partitions),
            "{what}: {} max {max} > partitions",
            name_of(hpa)
        );
        let metrics_text = serde_yaml::to_string(&hpa["spec"]["metrics"]).unwrap();
        assert!(
            metrics_text.contains("cpu"),
            "{what}: {} does not scale on CPU",
            name_of(hpa)
        );
    }

    // Every Deployment has a NetworkPolicy selecting exactly its pods.
    let policies = of_kind(&docs, "NetworkPolicy");
    for d in &deployments {
        let labels = &d["spec"]["selector"]["matchLabels"];
        assert!(
            policies
                .iter()
                .any(|p| &p["spec"]["podSelector"]["matchLabels"] == labels),
            "{what}: no NetworkPolicy for {}",
            name_of(d)
        );
    }

    // Rules and dashboard are the one source files.
    let rule = of_kind(&docs, "PrometheusRule")[0];
    let source = yaml_file("helm/cdc-pipeline/files/alerts.yaml");
    assert_eq!(
        rule["spec"]["groups"], source["groups"],
        "{what}: PrometheusRule != files/alerts.yaml"
    );
    let dash = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|d| name_of(d).ends_with("-dashboard"))
        .expect("dashboard ConfigMap");
    let rendered: serde_json::Value =
        serde_json::from_str(&s(&dash["data"]["cdc-pipeline.json"])).unwrap();
    let file: serde_json::Value =
        serde_json::from_str(&read("helm/cdc-pipeline/files/dashboard.json")).unwrap();
    assert_eq!(
        rendered, file,
        "{what}: dashboard ConfigMap != files/dashboard.json"
    );
    let sm = of_kind(&docs, "ServiceMonitor")[0];
    let metric_services = of_kind(&docs, "Service")
        .into_iter()
        .filter(|svc| svc["metadata"]["labels"]["cdc-pipeline.io/metrics"] == "true")
        .count();
    assert_eq!(
        metric_services, 5,
        "{what}: a metrics Service per component"
    );
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "admin");

    // cass-operator mode: CDC switched on in cassandra-yaml, the sidecar on the server-data volume.
    for dc in of_kind(&docs, "CassandraDatacenter") {
        let y = &dc["spec"]["config"]["cassandra-yaml"];
        assert_eq!(y["cdc_enabled"], Yaml::Bool(true));
        assert_eq!(
            s(&y["cdc_raw_directory"]),
            config.capture.cdc_raw_dir.display().to_string()
        );
        let sidecar = &pod_spec(dc)["containers"][0];
        assert_eq!(sidecar["name"], "capture");
        let mounts = serde_yaml::to_string(&sidecar["volumeMounts"]).unwrap();
        assert!(
            mounts.contains("server-data"),
            "{what}: sidecar does not mount server-data"
        );
    }
}

#[test]
fn helm_chart_lints_renders_and_validates_with_default_values() {
    check_chart(None);
}

#[test]
fn helm_chart_lints_renders_and_validates_with_the_example_values() {
    check_chart(Some("helm/cdc-pipeline/values-example.yaml"));
    let (_, docs) = render(Some("helm/cdc-pipeline/values-example.yaml"));
    // The example scales on backlog through prometheus-adapter and injects secrets with the agent.
    let hpas = of_kind(&docs, "HorizontalPodAutoscaler");
    assert_eq!(hpas.len(), 4);
    for h in hpas {
        let text = serde_yaml::to_string(&h["spec"]["metrics"]).unwrap();
        assert!(
            text.contains("_backlog_events"),
            "{}: no backlog metric",
            name_of(h)
        );
    }
    let masker = of_kind(&docs, "Deployment")
        .into_iter()
        .find(|d| name_of(d).ends_with("-masker"))
        .unwrap();
    let ann = &masker["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["vault.hashicorp.com/agent-inject"], "true");
    assert!(
        ann.get("vault.hashicorp.com/agent-inject-secret-hmac-2025-01")
            .is_some()
    );
}

#[test]
fn helm_chart_refuses_more_replicas_than_partitions() {
    let out = tool("helm.sh")
        .args(["template", "cdc", CHART, "--kube-version", KUBE_VERSION])
        .args([
            "--set",
            "masker.autoscaling.enabled=true",
            "--set",
            "masker.autoscaling.maxReplicas=64",
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "64 replicas over 16 partitions rendered"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("topic_partitions"));
}

// ---------- docs/quickstart.md ----------

/// Every command of the quickstart's `sh` blocks is checked: `make` targets exist, the `dev/tools/helm.sh`
/// commands run here, and the commands that need a Docker engine or a cluster (not available to CI)
/// name only compose services, chart paths, values files and Deployments that exist.
#[test]
fn quickstart_commands_are_checked() {
    let doc = read("docs/quickstart.md");
    let makefile = read("Makefile");
    let c = compose();
    let (_, docs) = render(Some("helm/cdc-pipeline/values-example.yaml"));
    let deployments: BTreeSet<String> = of_kind(&docs, "Deployment")
        .iter()
        .map(|d| name_of(d))
        .collect();
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in doc.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh && !l.is_empty() && !l.starts_with('#') => commands.push(l.to_owned()),
            _ => {}
        }
    }
    assert!(
        commands.len() >= 10,
        "only {} commands found",
        commands.len()
    );
    let endpoint = Regex::new(r"^[a-z-]+=([a-z-]+):[0-9]+$").expect("regex");
    for cmd in &commands {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        match words.as_slice() {
            ["make", target] => assert!(
                makefile
                    .lines()
                    .any(|l| l.starts_with(&format!("{target}:"))),
                "quickstart: `{cmd}`: no Makefile target {target}"
            ),
            ["bash", "dev/tools/helm.sh", args @ ..] => {
                helm(args);
            }
            ["docker", "compose", "up" | "down", ..] => {}
            ["docker", "compose", "exec" | "run", rest @ ..] => {
                let service = rest
                    .iter()
                    .find(|w| !w.starts_with('-'))
                    .unwrap_or_else(|| panic!("quickstart: `{cmd}` names no service"));
                assert!(
                    c.services.contains_key(*service),
                    "quickstart: `{cmd}`: no service {service}"
                );
                for w in rest {
                    if let Some(m) = endpoint.captures(w) {
                        assert!(
                            c.services.contains_key(&m[1]),
                            "quickstart: `{cmd}`: no service {}",
                            &m[1]
                        );
                    }
                }
            }
            ["helm", "upgrade", "--install", _release, chart, rest @ ..] => {
                assert!(
                    repo().join(chart).join("Chart.yaml").exists(),
                    "quickstart: `{cmd}`: no chart"
                );
                for pair in rest.windows(2) {
                    if pair[0] == "-f" {
                        assert!(
                            repo().join(pair[1]).exists(),
                            "quickstart: `{cmd}`: no {}",
                            pair[1]
                        );
                    }
                }
            }
            ["kubectl", ..] => {
                for w in &words {
                    if let Some(name) = w.strip_prefix("deploy/") {
                        assert!(
                            deployments.contains(name),
                            "quickstart: `{cmd}`: no Deployment {name}"
                        );
                    }
                }
            }
            _ => panic!("quickstart: `{cmd}` is not a command this test knows how to check"),
        }
    }
}

// ---------- the Cassandra CDC switch (compose and capture.mode=statefulset) ----------

/// `files/cassandra-enable-cdc.sh` on a cassandra.yaml shaped like the official image's (keys present,
/// commented out or missing): the CDC keys end up set once, as valid YAML, and the image's entrypoint
/// is called with the original arguments.
#[test]
fn cassandra_cdc_switch_edits_cassandra_yaml() {
    let dir = tempfile_dir();
    let conf = dir.join("conf");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(
        conf.join("cassandra.yaml"),
        "cluster_name: 'Test Cluster'\n\
         commitlog_sync: batch\n\
         commitlog_sync_period: 10000ms\n\
         # commitlog_directory: /var/lib/cassandra/commitlog\n\
         cdc_enabled: false\n\
         # cdc_raw_directory: /var/lib/cassandra/cdc_raw\n\
         # cdc_total_space: 4096MiB\n",
    )
    .unwrap();
    let entrypoint = bin.join("docker-entrypoint.sh");
    std::fs::write(&entrypoint, "#!/bin/sh\necho \"entrypoint $*\"\n").unwrap();
    let mut perms = std::fs::metadata(&entrypoint).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&entrypoint, perms).unwrap();
    let data = dir.join("data");
    let out = Command::new("bash")
        .arg(repo().join("helm/cdc-pipeline/files/cassandra-enable-cdc.sh"))
        .args(["cassandra", "-f"])
        .env("CASSANDRA_CONF", &conf)
        .env("COMMITLOG_DIR", data.join("commitlog"))
        .env("CDC_RAW_DIR", data.join("cdc_raw"))
        .env("CDC_TOTAL_SPACE", "2048MiB")
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "entrypoint cassandra -f"
    );
    let text = std::fs::read_to_string(conf.join("cassandra.yaml")).unwrap();
    let yaml: Yaml = serde_yaml::from_str(&text).expect("still YAML");
    assert_eq!(yaml["cdc_enabled"], Yaml::Bool(true));
    assert_eq!(
        s(&yaml["cdc_raw_directory"]),
        data.join("cdc_raw").display().to_string()
    );
    assert_eq!(
        s(&yaml["commitlog_directory"]),
        data.join("commitlog").display().to_string()
    );
    assert_eq!(s(&yaml["cdc_total_space"]), "2048MiB");
    assert_eq!(s(&yaml["commitlog_sync"]), "periodic");
    assert_eq!(s(&yaml["commitlog_sync_period"]), "500ms");
    assert_eq!(s(&yaml["cluster_name"]), "Test Cluster");
    for key in ["cdc_enabled:", "commitlog_sync:", "cdc_total_space:"] {
        assert_eq!(
            text.matches(key).count(),
            1,
            "{key} set more than once:\n{text}"
        );
    }
    assert!(data.join("cdc_raw").is_dir() && data.join("commitlog").is_dir());
    let _ = std::fs::remove_dir_all(dir);
}
