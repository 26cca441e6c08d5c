//! Loading, overrides, error messages, the example file and secret resolution, end to end.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cdc_config::{
    Error, ErrorClass, ExposeSecret, PipelineConfig, SecretRef, SecretResolver, SecretsConfig,
    load_with_env,
};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/pipeline.example.yaml")
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const PG_SINK: &str = "sinks:\n  postgres:\n    batch:\n      max_rows: 1000\n    destination:\n      url: env:PG_URL\n";

// ---------- the example file ----------

#[test]
fn example_file_loads_and_validates() {
    let config = load_with_env(&example_path(), no_env())
        .unwrap_or_else(|e| panic!("example invalid:\n{e}"));
    assert!(
        config.sinks.postgres.is_some()
            && config.sinks.clickhouse.is_some()
            && config.sinks.timescaledb.is_some()
    );
}

fn key_paths(value: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            key_paths(v, &path, out);
            out.insert(path);
        }
    }
}

#[test]
fn example_file_documents_every_field() {
    let text = std::fs::read_to_string(example_path()).expect("read example");
    let yaml: serde_json::Value = serde_yaml::from_str(&text).expect("example is YAML");
    let mut documented = BTreeSet::new();
    key_paths(&yaml, "", &mut documented);

    // Every optional section is populated in the example, so serializing it yields every struct
    // field (None leaves serialize as null, keeping their key). The defaults add any field the
    // example left out.
    let config = load_with_env(&example_path(), no_env()).expect("example valid");
    assert!(
        config.masker.vault.is_some(),
        "example must populate masker.vault"
    );
    let mut fields = BTreeSet::new();
    key_paths(
        &serde_json::to_value(&config).expect("serialize"),
        "",
        &mut fields,
    );
    key_paths(
        &serde_json::to_value(PipelineConfig::default()).expect("serialize"),
        "",
        &mut fields,
    );

    let missing: Vec<_> = fields.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "keys missing from config/pipeline.example.yaml: {missing:?}"
    );

    // Every key line carries a comment on the line above it.
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') || t.starts_with("- ") {
            continue;
        }
        let above = lines[..i]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim_start());
        assert!(
            above.is_some_and(|l| l.starts_with('#')),
            "line {} has no comment above it: {line}",
            i + 1
        );
    }
}

// ---------- defaults and overrides ----------

#[test]
fn minimal_and_empty_files_take_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config =
        load_with_env(&write_config(&dir, "cluster_name: prod_eu\n"), no_env()).expect("minimal");
    assert_eq!(config.cluster_name, "prod_eu");
    assert_eq!(config.kafka.topic_partitions, 16);
    assert_eq!(config.kafka.format, cdc_config::EventFormat::Json);
    assert!(config.sinks.postgres.is_none());

    let config = load_with_env(&write_config(&dir, "# nothing here\n"), no_env()).expect("empty");
    assert_eq!(config.cluster_name, "cassandra");

    let config = load_with_env(&write_config(&dir, PG_SINK), no_env()).expect("pg");
    let pg = config.sinks.postgres.expect("postgres");
    assert_eq!(pg.retry.max_retries, 5);
    assert_eq!(pg.topics_pattern, r"^cdc\.masked\..*");
    assert_eq!(pg.group_id, "cdc-sink-postgres");
    assert_eq!(pg.dlq_topic, "cdc.dlq.sink-postgres");
    assert_eq!(pg.admin.listen_addr.port(), 9103);
    assert_eq!(pg.destination.database, "warehouse");
}

#[test]
fn env_override_wins_over_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(&dir, PG_SINK);
    let config = load_with_env(
        &path,
        env(&[
            ("CDC__SINKS__POSTGRES__BATCH__MAX_ROWS", "500"),
            ("CDC__SINK_POSTGRES__BATCH__LINGER_MS", "50"),
            (
                "CDC__KAFKA__BOOTSTRAP_SERVERS",
                "kafka-0:9092, kafka-1:9092",
            ),
            ("CDC__TELEMETRY__OTLP_ENDPOINT", "http://otel:4317"),
            ("UNRELATED", "x"),
        ]),
    )
    .expect("valid");
    let pg = config.sinks.postgres.expect("postgres");
    assert_eq!(pg.batch.max_rows, 500);
    assert_eq!(pg.batch.linger_ms, 50);
    assert_eq!(
        config.kafka.bootstrap_servers,
        vec!["kafka-0:9092", "kafka-1:9092"]
    );
    assert_eq!(
        config.telemetry.otlp_endpoint.as_deref(),
        Some("http://otel:4317")
    );
}

// ---------- error messages ----------

#[test]
fn unknown_key_is_rejected_with_file_and_key_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(&dir, &PG_SINK.replace("max_rows", "max_rowz"));
    let err = load_with_env(&path, no_env()).expect_err("unknown key");
    let msg = err.to_string();
    let expected = format!(
        "{}: sinks.postgres.batch.max_rowz: unknown key `max_rowz`; expected one of",
        path.display()
    );
    assert!(msg.contains(&expected), "{msg}");
    assert!(msg.contains("`max_rows`"), "{msg}");
    assert_eq!(err.class(), ErrorClass::Fatal);

    let err = load_with_env(&write_config(&dir, "kafak:\n  format: json\n"), no_env())
        .expect_err("top-level");
    assert!(
        err.to_string().contains(": kafak: unknown key `kafak`"),
        "{err}"
    );
}

#[test]
fn unknown_env_override_names_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(&dir, PG_SINK);
    let err = load_with_env(&path, env(&[("CDC__SINKS__POSTGRES__BATCH__MAXROWS", "5")]))
        .expect_err("unknown");
    let msg = err.to_string();
    assert!(
        msg.contains("environment variable CDC__SINKS__POSTGRES__BATCH__MAXROWS: sinks.postgres.batch.maxrows: unknown key `maxrows`"),
        "{msg}"
    );
}

#[test]
fn invalid_value_names_file_key_and_expectation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(&dir, &PG_SINK.replace("max_rows: 1000", "max_rows: 0"));
    let err = load_with_env(&path, no_env()).expect_err("invalid");
    assert!(matches!(err, Error::Invalid { .. }));
    let expected = format!(
        "{}: sinks.postgres.batch.max_rows: expected an integer between 1 and 1000000, got 0",
        path.display()
    );
    assert!(err.to_string().lines().any(|l| l == expected), "{err}");
    assert_eq!(err.class(), ErrorClass::Fatal);
}

#[test]
fn invalid_env_value_names_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(&dir, PG_SINK);
    let err = load_with_env(&path, env(&[("CDC__SINK_POSTGRES__BATCH__MAX_ROWS", "0")]))
        .expect_err("invalid");
    let msg = err.to_string();
    assert!(
        msg.contains("environment variable CDC__SINK_POSTGRES__BATCH__MAX_ROWS: sinks.postgres.batch.max_rows: expected an integer between 1 and 1000000, got 0"),
        "{msg}"
    );
}

#[test]
fn wrong_type_and_missing_key_are_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(&dir, &PG_SINK.replace("max_rows: 1000", "max_rows: lots"));
    let msg = load_with_env(&path, no_env())
        .expect_err("type")
        .to_string();
    assert!(
        msg.contains(&format!(
            "{}: sinks.postgres.batch.max_rows: expected u32, got string \"lots\"",
            path.display()
        )),
        "{msg}"
    );

    let path = write_config(
        &dir,
        "sinks:\n  postgres:\n    destination:\n      database: w\n",
    );
    let msg = load_with_env(&path, no_env())
        .expect_err("missing")
        .to_string();
    assert!(
        msg.contains("sinks.postgres.destination.url: missing required key"),
        "{msg}"
    );

    let path = write_config(&dir, "kafka:\n  format: protobuf\n");
    let msg = load_with_env(&path, no_env())
        .expect_err("variant")
        .to_string();
    assert!(
        msg.contains("kafka.format: expected one of `json`, `avro`, got `protobuf`"),
        "{msg}"
    );
}

#[test]
fn cross_field_rules_report_every_violation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "{PG_SINK}    retry:\n      initial_backoff_ms: 5000\n      max_backoff_ms: 100\n    topics_pattern: \"^cdc(\"\n\
         kafka:\n  format: avro\n  security:\n    protocol: sasl_ssl\n\
         cassandra:\n  username: env:CASS_USER\n  port: 0\n\
         masker:\n  vault:\n    url: env:VAULT_PG\n    encryption_key_id: nope\n"
    );
    let err = load_with_env(&write_config(&dir, &text), no_env()).expect_err("invalid");
    let keys: BTreeSet<&str> = err.issues().iter().map(|i| i.key.as_str()).collect();
    for key in [
        "sinks.postgres.retry.max_backoff_ms",
        "sinks.postgres.topics_pattern",
        "kafka.schema_registry_url",
        "kafka.security.sasl_username",
        "kafka.security.sasl_password",
        "cassandra.password",
        "cassandra.port",
        "masker.vault.encryption_key_id",
    ] {
        assert!(keys.contains(key), "no issue for {key}: {err}");
    }
    assert!(
        err.to_string()
            .contains("expected at least initial_backoff_ms (5000), got 100"),
        "{err}"
    );
}

#[test]
fn bare_secret_is_rejected_without_echoing_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = PG_SINK.replace("env:PG_URL", "postgres://u:fake-pw-123@db/warehouse");
    let msg = load_with_env(&write_config(&dir, &text), no_env())
        .expect_err("bare")
        .to_string();
    assert!(msg.contains("sinks.postgres.destination.url"), "{msg}");
    assert!(!msg.contains("fake-pw-123"), "secret echoed: {msg}");
}

#[test]
fn missing_file_names_it() {
    let err =
        load_with_env(Path::new("/nonexistent/pipeline.yaml"), no_env()).expect_err("missing");
    assert!(
        err.to_string()
            .starts_with("/nonexistent/pipeline.yaml: cannot read"),
        "{err}"
    );
}

#[test]
fn debug_output_never_shows_secret_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = PG_SINK.replace("env:PG_URL", "plain:fake-plain-secret-42");
    let config = load_with_env(&write_config(&dir, &text), no_env()).expect("valid");
    let debug = format!("{config:?}");
    assert!(!debug.contains("fake-plain-secret-42"), "{debug}");
    assert!(debug.contains("plain:[REDACTED]"), "{debug}");
    let yaml = serde_json::to_string(&config).expect("serialize");
    assert!(!yaml.contains("fake-plain-secret-42"));
}

// ---------- secret resolution ----------

fn resolver(vars: &[(&str, &str)]) -> SecretResolver {
    let map: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    SecretResolver::new(&SecretsConfig::default()).with_env_map(map)
}

#[tokio::test]
async fn resolves_env_file_and_plain() {
    let r = resolver(&[("CDC_TEST_PG_PASSWORD", "fake-env-secret")]);
    let secret = "env:CDC_TEST_PG_PASSWORD"
        .parse::<SecretRef>()
        .expect("ref")
        .resolve_with(&r)
        .await
        .expect("env");
    assert_eq!(secret.expose_secret(), "fake-env-secret");
    assert!(!format!("{secret:?}").contains("fake-env-secret"));

    let err = "env:CDC_TEST_NOT_SET"
        .parse::<SecretRef>()
        .expect("ref")
        .resolve_with(&r)
        .await
        .expect_err("unset");
    assert!(err.to_string().contains("env:CDC_TEST_NOT_SET"), "{err}");
    assert_eq!(err.class(), ErrorClass::Fatal);

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pg-password");
    std::fs::write(&file, "fake-file-secret\n").expect("write");
    let reference: SecretRef = format!("file:{}", file.display()).parse().expect("ref");
    assert_eq!(
        reference
            .resolve_with(&r)
            .await
            .expect("file")
            .expose_secret(),
        "fake-file-secret"
    );

    let missing: SecretRef = format!("file:{}", dir.path().join("absent").display())
        .parse()
        .expect("ref");
    let err = missing.resolve_with(&r).await.expect_err("absent");
    assert!(err.to_string().contains("absent"), "{err}");

    let plain: SecretRef = "plain:fake-plain".parse().expect("ref");
    assert_eq!(
        plain.resolve_with(&r).await.expect("plain").expose_secret(),
        "fake-plain"
    );
}

#[derive(Default)]
struct VaultLog {
    requests: Vec<(String, Option<String>)>,
}

/// A real HTTP server answering like Vault's KV v2 read endpoint.
async fn start_vault() -> (String, Arc<Mutex<VaultLog>>) {
    use axum::extract::{Path as AxPath, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;

    let log = Arc::new(Mutex::new(VaultLog::default()));
    async fn read(
        State(log): State<Arc<Mutex<VaultLog>>>,
        AxPath(path): AxPath<String>,
        headers: HeaderMap,
    ) -> axum::response::Response {
        let token = headers
            .get("x-vault-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        log.lock()
            .expect("lock")
            .requests
            .push((path.clone(), token.clone()));
        if token.as_deref() != Some("fake-vault-token") {
            return (
                StatusCode::FORBIDDEN,
                "{\"errors\":[\"permission denied\"]}",
            )
                .into_response();
        }
        match path.as_str() {
            "cdc/postgres" => axum::Json(serde_json::json!({
                "data": {"data": {"password": "fake-vault-pg-password", "user": "cdc"}, "metadata": {"version": 3}}
            }))
            .into_response(),
            "notjson" => (StatusCode::OK, "<html>proxy login</html>").into_response(),
            "broken" => (StatusCode::SERVICE_UNAVAILABLE, "sealed").into_response(),
            _ => (StatusCode::NOT_FOUND, "{\"errors\":[]}").into_response(),
        }
    }
    let app = axum::Router::new()
        .route("/v1/kv/data/{*path}", axum::routing::get(read))
        .with_state(Arc::clone(&log));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), log)
}

#[tokio::test]
async fn resolves_vault_kv2_over_http() {
    let (addr, log) = start_vault().await;
    let r = resolver(&[("VAULT_ADDR", &addr), ("VAULT_TOKEN", "fake-vault-token")]);

    let reference: SecretRef = "vault:kv/cdc/postgres#password".parse().expect("ref");
    let secret = reference.resolve_with(&r).await.expect("vault");
    assert_eq!(secret.expose_secret(), "fake-vault-pg-password");
    {
        let log = log.lock().expect("lock");
        assert_eq!(
            log.requests[0],
            (
                "cdc/postgres".to_owned(),
                Some("fake-vault-token".to_owned())
            )
        );
    }

    let err = "vault:kv/cdc/postgres#nokey"
        .parse::<SecretRef>()
        .expect("ref")
        .resolve_with(&r)
        .await
        .expect_err("field");
    let msg = err.to_string();
    assert!(
        msg.contains("vault:kv/cdc/postgres#nokey") && msg.contains("field `nokey` not found"),
        "{msg}"
    );
    assert!(!msg.contains("fake-vault-pg-password"), "{msg}");
    assert_eq!(err.class(), ErrorClass::Fatal);

    let err = "vault:kv/absent#x"
        .parse::<SecretRef>()
        .expect("ref")
        .resolve_with(&r)
        .await
        .expect_err("404");
    assert!(
        matches!(err, Error::VaultStatus { status: 404, .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Fatal);

    let err = "vault:kv/broken#x"
        .parse::<SecretRef>()
        .expect("ref")
        .resolve_with(&r)
        .await
        .expect_err("503");
    assert_eq!(err.class(), ErrorClass::Retriable);

    let err = "vault:kv/notjson#x"
        .parse::<SecretRef>()
        .expect("ref")
        .resolve_with(&r)
        .await
        .expect_err("html");
    assert!(matches!(err, Error::VaultResponse { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Fatal);

    // A token from the `secrets:` section wins over VAULT_TOKEN.
    let configured = SecretsConfig {
        vault_addr: Some(addr.clone()),
        vault_token: Some("env:MY_VAULT_TOKEN".parse().expect("ref")),
        ..SecretsConfig::default()
    };
    let r2 = SecretResolver::new(&configured).with_env_map(BTreeMap::from([
        ("MY_VAULT_TOKEN".to_owned(), "fake-vault-token".to_owned()),
        ("VAULT_TOKEN".to_owned(), "wrong-token".to_owned()),
    ]));
    assert_eq!(
        reference
            .resolve_with(&r2)
            .await
            .expect("configured")
            .expose_secret(),
        "fake-vault-pg-password"
    );

    let wrong = resolver(&[("VAULT_ADDR", &addr), ("VAULT_TOKEN", "wrong-token")]);
    let err = reference.resolve_with(&wrong).await.expect_err("403");
    assert!(
        matches!(err, Error::VaultStatus { status: 403, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn vault_unreachable_is_retriable_and_unconfigured_is_fatal() {
    // Bind then drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let r = resolver(&[
        ("VAULT_ADDR", &format!("http://127.0.0.1:{port}")),
        ("VAULT_TOKEN", "fake-vault-token"),
    ]);
    let reference: SecretRef = "vault:kv/cdc/postgres#password".parse().expect("ref");
    let err = reference.resolve_with(&r).await.expect_err("refused");
    assert!(matches!(err, Error::VaultRequest { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Retriable);

    let err = reference
        .resolve_with(&resolver(&[]))
        .await
        .expect_err("unconfigured");
    assert!(err.to_string().contains("VAULT_TOKEN"), "{err}");
    assert_eq!(err.class(), ErrorClass::Fatal);
}

// ---------- PostgreSQL/TimescaleDB TLS ----------

#[test]
fn pg_tls_is_a_mode_or_a_block_and_errors_name_the_key() {
    use cdc_config::TlsMode;
    let dir = tempfile::tempdir().expect("tempdir");
    let load = |extra: &str, vars: &[(&str, &str)]| {
        let path = write_config(&dir, &format!("{PG_SINK}{extra}"));
        load_with_env(&path, env(vars)).map(|c| c.sinks.postgres.expect("postgres").destination.tls)
    };
    let tls = load("", &[]).expect("default");
    assert_eq!((tls.mode, tls.ca_file), (TlsMode::Prefer, None));
    let tls = load("      tls: require\n", &[]).expect("mode alone");
    assert_eq!((tls.mode, tls.ca_file), (TlsMode::Require, None));
    let tls = load(
        "      tls:\n        mode: verify-full\n        ca_file: /etc/cdc/pg-ca.pem\n",
        &[],
    )
    .expect("block");
    assert_eq!(tls.mode, TlsMode::VerifyFull);
    assert_eq!(tls.ca_file, Some(PathBuf::from("/etc/cdc/pg-ca.pem")));
    let tls = load(
        "      tls: {ca_file: /etc/cdc/pg-ca.pem, mode: verify-ca}\n",
        &[("CDC__SINKS__POSTGRES__DESTINATION__TLS__MODE", "require")],
    )
    .expect("env override of the mode in a block");
    assert_eq!(tls.mode, TlsMode::Require);
    let tls = load("", &[("CDC__SINKS__POSTGRES__DESTINATION__TLS", "disable")])
        .expect("env override of the mode alone");
    assert_eq!(tls.mode, TlsMode::Disable);

    for (extra, needle) in [
        (
            "      tls: verify_everything\n",
            "sinks.postgres.destination.tls",
        ),
        ("      tls: {mode: require, ca_flie: /x.pem}\n", "ca_flie"),
        (
            "      tls: {mode: verify-full, ca_file: certs/ca.pem}\n",
            "sinks.postgres.destination.tls.ca_file: expected an absolute path to a PEM file",
        ),
        (
            "      tls: {mode: prefer, ca_file: /etc/cdc/pg-ca.pem}\n",
            "sinks.postgres.destination.tls.ca_file: expected unset unless tls.mode is require, verify-ca or verify-full",
        ),
    ] {
        let err = load(extra, &[]).expect_err(extra);
        assert!(err.to_string().contains(needle), "{extra}: {err}");
        assert_eq!(err.class(), ErrorClass::Fatal);
    }
    let err = load("      tls: verify_everything\n", &[]).expect_err("bad mode");
    assert!(err.to_string().contains("verify-full"), "{err}");
}

// ---------- schema evolution options ----------

#[test]
fn drop_columns_and_column_renames_default_off_and_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = load_with_env(&write_config(&dir, PG_SINK), no_env()).expect("pg");
    let pg = config.sinks.postgres.expect("postgres");
    assert!(!pg.drop_columns);
    assert!(pg.column_renames.is_empty());

    let text = PG_SINK.replace(
        "    batch:\n",
        "    drop_columns: true\n    column_renames:\n      - {table: fake_ks.readings, from: sensor, to: probe}\n    batch:\n",
    );
    let config = load_with_env(&write_config(&dir, &text), no_env()).expect("valid");
    let pg = config.sinks.postgres.expect("postgres");
    assert!(pg.drop_columns);
    assert_eq!(
        pg.column_renames,
        vec![cdc_config::ColumnRename {
            table: "fake_ks.readings".into(),
            from: "sensor".into(),
            to: "probe".into(),
        }]
    );
}

#[test]
fn invalid_column_renames_name_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = PG_SINK.replace(
        "    batch:\n",
        "    column_renames:\n      - {table: no_dot, from: a, to: b}\n      - {table: ks.t, from: a, to: a}\n      - {table: ks.t, from: c, to: \"\"}\n      - {table: ks.t, from: c, to: d}\n    batch:\n",
    );
    let err = load_with_env(&write_config(&dir, &text), no_env()).expect_err("invalid");
    let msg = err.to_string();
    for expected in [
        "sinks.postgres.column_renames[0].table: expected keyspace.table",
        "sinks.postgres.column_renames[1].to: expected a name other than `from`",
        "sinks.postgres.column_renames[2].to: expected a column name",
        "sinks.postgres.column_renames[3].from: expected one rename per column of a table",
    ] {
        assert!(msg.contains(expected), "missing {expected:?} in:\n{msg}");
    }
    // An unknown key inside an item is refused too.
    let text = PG_SINK.replace(
        "    batch:\n",
        "    column_renames:\n      - {table: ks.t, from: a, into: b}\n    batch:\n",
    );
    let err = load_with_env(&write_config(&dir, &text), no_env()).expect_err("unknown");
    assert!(err.to_string().contains("column_renames"), "{err}");
}
