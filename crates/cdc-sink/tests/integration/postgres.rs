//! The compliance suite and PostgreSQL/TimescaleDB specifics.

use cdc_sink::compliance::{self, ComplianceEnv, Inspector, PgInspector};
use cdc_sink::postgres::{PgSettings, PostgresDestination};
use cdc_sink::timescaledb::{TimescaleOptions, timescale_destination};
use cdc_testkit::StackEnv;
use secrecy::SecretString;

fn env() -> (StackEnv, ComplianceEnv) {
    let stack = StackEnv::load();
    let env = ComplianceEnv {
        kafka_bootstrap: stack.kafka_bootstrap.clone(),
        // PostgreSQL text cannot hold NUL.
        poison_name: Some("fake\0value".to_owned()),
    };
    (stack, env)
}

fn postgres(url: &str) -> PostgresDestination {
    PostgresDestination::new(&PgSettings::new(SecretString::from(url.to_owned())))
        .expect("postgres destination")
}

fn timescale(url: &str) -> PostgresDestination {
    timescale_destination(
        &PgSettings::new(SecretString::from(url.to_owned())),
        &TimescaleOptions::default(),
    )
    .expect("timescale destination")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_inserts_updates_deletes_and_replay() {
    let (stack, env) = env();
    let url = stack.postgres_url.clone();
    let inspector = PgInspector { url: url.clone() };
    compliance::inserts_updates_deletes_replay(&env, || postgres(&url), &inspector).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_converges_like_cassandra() {
    let (stack, env) = env();
    let url = stack.postgres_url.clone();
    let inspector = PgInspector { url: url.clone() };
    compliance::convergence(&env, || postgres(&url), &inspector).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_poison_event_goes_to_dlq_while_later_events_flow() {
    let (stack, env) = env();
    let url = stack.postgres_url.clone();
    let inspector = PgInspector { url: url.clone() };
    compliance::poison_goes_to_dlq(&env, || postgres(&url), &inspector).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescale_inserts_updates_deletes_and_replay() {
    let (stack, env) = env();
    let url = stack.timescale_url.clone();
    let inspector = PgInspector { url: url.clone() };
    compliance::inserts_updates_deletes_replay(&env, || timescale(&url), &inspector).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescale_converges_like_cassandra() {
    let (stack, env) = env();
    let url = stack.timescale_url.clone();
    let inspector = PgInspector { url: url.clone() };
    compliance::convergence(&env, || timescale(&url), &inspector).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescale_poison_event_goes_to_dlq_while_later_events_flow() {
    let (stack, env) = env();
    let url = stack.timescale_url.clone();
    let inspector = PgInspector { url: url.clone() };
    compliance::poison_goes_to_dlq(&env, || timescale(&url), &inspector).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_pauses_the_sink_and_it_catches_up_without_loss() {
    use std::time::Duration;
    let (stack, env) = env();
    let inspector = PgInspector {
        url: stack.postgres_url.clone(),
    };
    let target = {
        let cfg: tokio_postgres::Config = stack.postgres_url.parse().expect("url");
        let host = match cfg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = cfg.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
    };
    let proxy = cdc_testkit::FaultProxy::start(target.clone()).await;
    let proxied = stack
        .postgres_url
        .replacen(&target, &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(
        proxied, stack.postgres_url,
        "the URL goes through the proxy"
    );
    let mut fx = compliance::Fixture::new(&env, "outage").await;
    let mut settings = PgSettings::new(SecretString::from(proxied));
    settings.connect_timeout_ms = 1_000;
    let sink = fx.start(PostgresDestination::new(&settings).expect("destination"));
    let first: Vec<_> = (0..100)
        .map(|i| fx.events.insert(i, "before", 1, 10))
        .collect();
    fx.produce(&first).await;
    fx.wait_rows(
        &inspector,
        Duration::from_secs(60),
        "rows before the outage",
        |r| r.len() == 100,
    )
    .await;

    proxy.set_up(false);
    let during: Vec<_> = (100..300)
        .map(|i| fx.events.insert(i, "during", 2, 20))
        .collect();
    fx.produce(&during).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let rows = inspector
        .live_rows(&fx.keyspace, &fx.table)
        .await
        .expect("rows");
    assert_eq!(
        rows.len(),
        100,
        "nothing written while PostgreSQL is unreachable"
    );
    assert!(
        !sink.health.is_ready(),
        "/readyz reports the destination down"
    );

    proxy.set_up(true);
    fx.wait_rows(
        &inspector,
        Duration::from_secs(90),
        "catch-up after the outage",
        |r| r.len() == 300,
    )
    .await;
    assert!(
        fx.dead_letters(1, Duration::from_secs(3)).await.is_empty(),
        "an outage dead-letters nothing"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sink.health.is_ready() {
        assert!(std::time::Instant::now() < deadline, "/readyz ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sink.stop().await;
}

/// A table with a clustering key and a static column: row, range and partition deletes, a late
/// older write into a deleted partition, static cells shadowed by the partition delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_clustering_rows_and_range_deletes() {
    use std::time::{Duration, Instant};

    use cdc_model::{
        CellChange, CellValue, ChangeEvent, ClusteringBound, ClusteringOrder, ColumnKind,
        ColumnSchema, CqlType, CqlValue, Deletion, DeletionScope, KeyColumn, Liveness, Operation,
        SourceInfo, TableSchema,
    };
    let (stack, env) = env();
    let fx = compliance::Fixture::new(&env, "clust").await;
    let schema = TableSchema {
        keyspace: fx.keyspace.clone(),
        table: fx.table.clone(),
        id: uuid::Uuid::from_u128(7),
        cdc: true,
        version: 1,
        columns: vec![
            ColumnSchema {
                name: "pk".into(),
                cql_type: CqlType::Int,
                kind: ColumnKind::PartitionKey { position: 0 },
            },
            ColumnSchema {
                name: "ck".into(),
                cql_type: CqlType::Int,
                kind: ColumnKind::Clustering {
                    position: 0,
                    order: ClusteringOrder::Asc,
                },
            },
            ColumnSchema {
                name: "v".into(),
                cql_type: CqlType::Text,
                kind: ColumnKind::Regular,
            },
            ColumnSchema {
                name: "s".into(),
                cql_type: CqlType::Text,
                kind: ColumnKind::Static,
            },
        ],
        dropped_columns: Vec::new(),
    };
    let mut seq = 0u32;
    let mut event = |pk: i32, ck: Option<i32>, op: Operation| {
        seq += 1;
        let source = SourceInfo {
            cluster: "test".into(),
            host_id: uuid::Uuid::from_u128(1),
            keyspace: schema.keyspace.clone(),
            table: schema.table.clone(),
            table_id: schema.id,
            schema_version: 1,
            segment_id: 1,
            segment_position: seq,
            index: 0,
        };
        ChangeEvent {
            correlation_id: source.correlation_id(),
            source,
            op,
            partition_key: vec![KeyColumn::new("pk", CqlValue::Int(pk))],
            clustering_key: ck
                .map(|c| vec![KeyColumn::new("ck", CqlValue::Int(c))])
                .unwrap_or_default(),
            is_static: false,
            liveness: None,
            deletion: None,
            cells: Vec::new(),
            captured_at_ms: 0,
        }
    };
    let insert = |e: &mut ChangeEvent, v: &str, wt: i64| {
        e.liveness = Some(Liveness {
            writetime_micros: wt,
            ttl: None,
        });
        e.cells = vec![CellChange {
            column: "v".into(),
            writetime_micros: wt,
            ttl: None,
            change: CellValue::Set {
                value: CqlValue::Text(v.into()),
            },
        }];
    };
    let deletion = |scope: DeletionScope, wt: i64| Deletion {
        scope,
        marked_for_delete_at_micros: wt,
        local_deletion_time_secs: 0,
    };
    let bound = |ck: i32, inclusive: bool| ClusteringBound {
        prefix: vec![KeyColumn::new("ck", CqlValue::Int(ck))],
        inclusive,
    };
    let mut events = Vec::new();
    for pk in 1..=2 {
        for ck in 0..10 {
            let mut e = event(pk, Some(ck), Operation::Insert);
            insert(&mut e, &format!("v{pk}-{ck}"), 100);
            events.push(e);
        }
    }
    // Row delete pk=1 ck=3; range delete pk=1 ck in [5, 7); partition delete pk=2 at 200.
    let mut e = event(1, Some(3), Operation::Delete);
    e.deletion = Some(deletion(DeletionScope::Row, 150));
    events.push(e);
    let mut e = event(1, None, Operation::Delete);
    e.deletion = Some(deletion(
        DeletionScope::Range {
            start: bound(5, true),
            end: bound(7, false),
        },
        150,
    ));
    events.push(e);
    let mut e = event(2, None, Operation::Delete);
    e.deletion = Some(deletion(DeletionScope::Partition, 200));
    events.push(e);
    // Late writes: pk=2 ck=20 at 190 (older than the partition delete: stays deleted); pk=2 ck=21
    // at 300 (newer: live); pk=1 ck=3 at 160 (newer than its row delete: live again).
    let mut e = event(2, Some(20), Operation::Insert);
    insert(&mut e, "zombie", 190);
    events.push(e);
    let mut e = event(2, Some(21), Operation::Insert);
    insert(&mut e, "new", 300);
    events.push(e);
    let mut e = event(1, Some(3), Operation::Insert);
    insert(&mut e, "back", 160);
    events.push(e);

    // Static column: pk=1 "st1" at 100 then "st1b" at 90 (older: ignored); pk=2 "old" at 150
    // (shadowed by the partition delete at 200), then "st2" at 250.
    for (pk, v, wt) in [
        (1, "st1", 100),
        (1, "st1b", 90),
        (2, "old", 150),
        (2, "st2", 250),
    ] {
        let mut e = event(pk, None, Operation::Update);
        e.is_static = true;
        e.cells = vec![CellChange {
            column: "s".into(),
            writetime_micros: wt,
            ttl: None,
            change: CellValue::Set {
                value: CqlValue::Text(v.into()),
            },
        }];
        events.push(e);
    }
    let sink = fx.start(postgres(&stack.postgres_url));
    fx.produce_with_schema(&events, &schema).await;
    let mut expected: Vec<(i32, i32, String, Option<String>)> = (0..10)
        .filter(|ck| !(5..7).contains(ck))
        .map(|ck| {
            let v = if ck == 3 {
                "back".into()
            } else {
                format!("v1-{ck}")
            };
            (1, ck, v, Some("st1".to_owned()))
        })
        .collect();
    expected.push((2, 21, "new".into(), Some("st2".to_owned())));
    let (client, conn) = tokio_postgres::connect(&stack.postgres_url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows: Vec<(i32, i32, String, Option<String>)> = client
            .query(
                &format!(
                    "SELECT pk, ck, v, s FROM \"{}\".\"{}\" ORDER BY pk, ck",
                    fx.keyspace, fx.table
                ),
                &[],
            )
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                    .collect()
            })
            .unwrap_or_default();
        if rows == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "clustering scenario: got {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sink.stop().await;
}

/// PostgreSQL quotes the failing row's values in `DETAIL:`; the sink's error text (logged, sent to
/// dead letters) must carry the SQLSTATE and message but never those values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_error_text_withholds_row_values() {
    let stack = StackEnv::load();
    let (client, conn) = tokio_postgres::connect(&stack.postgres_url, tokio_postgres::NoTls)
        .await
        .expect("connect to the stack's PostgreSQL");
    tokio::spawn(conn);
    client
        .batch_execute("CREATE TEMP TABLE detail_probe (id int PRIMARY KEY, note text CHECK (note <> 'fake-secret-000-00-0001'))")
        .await
        .expect("create temp table");
    let raw = client
        .execute(
            "INSERT INTO detail_probe VALUES (1, 'fake-secret-000-00-0001')",
            &[],
        )
        .await
        .expect_err("the CHECK constraint rejects the row");
    // The precondition: the driver's own error text does hold the value (else the test proves nothing).
    let full = format!("{raw:?}");
    assert!(
        full.contains("fake-secret-000-00-0001"),
        "driver error lost its detail: {full}"
    );
    let e = cdc_sink::Error::Postgres {
        op: "insert",
        relation: "detail_probe".into(),
        source: raw,
    };
    let text = e.to_string();
    assert!(text.contains("23514"), "SQLSTATE missing: {text}");
    assert!(text.contains("detail_probe"), "relation missing: {text}");
    assert!(
        !text.contains("fake-secret"),
        "row value leaked into the error text: {text}"
    );
    assert_eq!(e.class(), cdc_model::ErrorClass::Poison);
}

// ---------- TLS (`sinks.<pg>.destination.tls`) against the stack's servers ----------

/// The DEV ONLY CA of a stack component's certificate (dev/components/postgres.sh writes
/// `CDC_POSTGRES_CA_FILE` / `CDC_TIMESCALE_CA_FILE` into `.stack/env`).
fn stack_ca(stack: &StackEnv, component: &str, var: &str) -> std::path::PathBuf {
    let ca = stack
        .all
        .get(var)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            stack
                .all
                .get("CDC_STACK_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| cdc_testkit::stack::repo_root().join(".stack"))
                .join(component)
                .join("tls")
                .join("ca.crt")
        });
    assert!(
        ca.is_file(),
        "{} missing: run `make stack-up` (the stack's PostgreSQL servers have TLS on)",
        ca.display()
    );
    ca
}

/// Loads a `sinks:` block the way the services do and builds the destination from it.
async fn destination_from_yaml(sinks_yaml: &str) -> Result<PostgresDestination, cdc_sink::Error> {
    let config = cdc_config::load_str("tls-test.yaml", sinks_yaml, Vec::new())
        .unwrap_or_else(|e| panic!("config: {e}"));
    let resolver = cdc_config::SecretResolver::new(&config.secrets);
    if let Some(pg) = &config.sinks.postgres {
        let s = cdc_sink::settings::postgres_settings(&pg.destination, &resolver).await?;
        return PostgresDestination::new(&s);
    }
    let ts = config.sinks.timescaledb.as_ref().expect("a pg block");
    let (s, o) = cdc_sink::settings::timescale_settings(&ts.destination, &resolver).await?;
    timescale_destination(&s, &o)
}

/// Whether the destination's pooled connection runs over TLS (`pg_stat_ssl`).
async fn uses_tls(d: &PostgresDestination) -> bool {
    let client = d.pool().get().await.expect("pooled connection");
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

/// Every TLS mode against the stack's servers (TLS on, DEV ONLY CA): `disable` stays plain,
/// `require`/`verify-ca`/`verify-full` encrypt, a certificate from another CA is refused with an
/// error naming the destination, an unreadable CA file is named by its key; and the configured
/// statement timeout is the session's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_against_the_stack_servers() {
    use cdc_sink::Destination;
    let stack = StackEnv::load();
    let pg_ca = stack_ca(&stack, "postgres", "CDC_POSTGRES_CA_FILE");
    let ts_ca = stack_ca(&stack, "timescaledb", "CDC_TIMESCALE_CA_FILE");
    let block = |kind: &str, url: &str, tls: &str| {
        format!(
            "sinks:\n  {kind}:\n    destination:\n      url: plain:{url}\n      tls: {tls}\n      statement_timeout_ms: 4321\n"
        )
    };

    // disable: plain TCP; require: TLS without a CA; verify-full with the stack's CA: TLS and
    // the certificate (127.0.0.1 is in its names) checked.
    for (kind, url, ca, expect_tls) in [
        ("postgres", &stack.postgres_url, &pg_ca, false),
        ("postgres", &stack.postgres_url, &pg_ca, true),
        ("timescaledb", &stack.timescale_url, &ts_ca, true),
    ] {
        let modes = if expect_tls {
            vec![
                "require".to_owned(),
                format!("{{mode: verify-full, ca_file: {}}}", ca.display()),
                format!("{{mode: verify-ca, ca_file: {}}}", ca.display()),
            ]
        } else {
            vec!["disable".to_owned()]
        };
        for tls in modes {
            let d = destination_from_yaml(&block(kind, url, &tls))
                .await
                .unwrap_or_else(|e| panic!("{kind} tls {tls}: {e}"));
            d.check_health()
                .await
                .unwrap_or_else(|e| panic!("{kind} tls {tls}: {e}"));
            assert_eq!(uses_tls(&d).await, expect_tls, "{kind} tls {tls}");
            // `statement_timeout_ms` reaches the server as the session's statement_timeout.
            let timeout: String = d
                .pool()
                .get()
                .await
                .expect("pooled connection")
                .query_one("SHOW statement_timeout", &[])
                .await
                .expect("SHOW statement_timeout")
                .get(0);
            assert_eq!(timeout, "4321ms", "{kind} tls {tls}");
        }
    }

    // verify-full against a CA that did not sign the server's certificate: refused, and the
    // error names the destination.
    let d = destination_from_yaml(&block(
        "postgres",
        &stack.postgres_url,
        &format!("{{mode: verify-full, ca_file: {}}}", ts_ca.display()),
    ))
    .await
    .expect("settings build");
    let err = d
        .check_health()
        .await
        .expect_err("a certificate from another CA is refused");
    let text = format!("{err}");
    let chain = {
        let mut s = text.clone();
        let mut source = std::error::Error::source(&err);
        while let Some(e) = source {
            s.push_str(&format!(": {e}"));
            source = e.source();
        }
        s
    };
    assert!(text.contains("destination postgres"), "{text}");
    assert!(
        chain.contains("TLS") || chain.contains("certificate"),
        "{chain}"
    );

    // An unreadable CA file fails when the pool is built, naming the key.
    let err = destination_from_yaml(&block(
        "timescaledb",
        &stack.timescale_url,
        "{mode: verify-full, ca_file: /nonexistent/cdc-test-ca.pem}",
    ))
    .await
    .expect_err("missing CA file");
    let text = err.to_string();
    assert!(
        text.contains("sinks.timescaledb.destination.tls.ca_file")
            && text.contains("/nonexistent/cdc-test-ca.pem"),
        "{text}"
    );
    assert_eq!(err.class(), cdc_model::ErrorClass::Fatal);
}

// ---------- secret rotation (`secrets.refresh_interval_secs`) against the real Vault dev server ----------

const VAULT_ADDR: &str = "http://127.0.0.1:18200";
/// DEV ONLY root token of dev/components/vault.sh.
const VAULT_TOKEN: &str = "dev-only-root-token";

/// Starts the Vault dev server (idempotent; about a second when its binary is cached).
fn vault_server() {
    let script = cdc_testkit::stack::repo_root().join("dev/components/vault.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg("start")
        .output()
        .expect("run dev/components/vault.sh");
    assert!(
        out.status.success(),
        "dev/components/vault.sh start failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn vault_write(path: &str, url: &str) {
    let response = reqwest::Client::new()
        .post(format!("{VAULT_ADDR}/v1/secret/data/{path}"))
        .header("X-Vault-Token", VAULT_TOKEN)
        .json(&serde_json::json!({ "data": { "url": url } }))
        .send()
        .await
        .expect("vault write");
    assert!(
        response.status().is_success(),
        "writing secret/{path}: HTTP {}",
        response.status()
    );
}

/// The sink's destination URL comes from Vault with `secrets.refresh_interval_secs: 1`; the
/// role's password is rotated in PostgreSQL and in Vault, the role's sessions are killed, and the
/// same sink (no restart) reconnects with the new password and keeps writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_vault_password_is_used_by_new_connections_without_restart() {
    use std::time::{Duration, Instant};
    let (stack, env) = env();
    vault_server();
    let admin_cfg: tokio_postgres::Config = stack.postgres_url.parse().expect("url");
    let (admin, conn) = admin_cfg
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect as the dev admin");
    tokio::spawn(conn);
    let role = format!(
        "cdc_rot_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    // DEV ONLY fake passwords of a throwaway role.
    let (pw1, pw2) = ("fake-rotation-pw-1", "fake-rotation-pw-2");
    // Superuser like the stack's own dev role: the sink creates schemas and shared functions.
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{pw1}'"
        ))
        .await
        .expect("create role");
    let url_with = |pw: &str| {
        format!(
            "postgres://{role}:{pw}@{}:{}/warehouse",
            match admin_cfg.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                _ => "127.0.0.1".to_owned(),
            },
            admin_cfg.get_ports().first().copied().unwrap_or(5432)
        )
    };
    let path = format!("cdc-test/{}", uuid::Uuid::new_v4().simple());
    vault_write(&path, &url_with(pw1)).await;

    let yaml = format!(
        "secrets:\n  vault_addr: {VAULT_ADDR}\n  vault_token: env:CDC_TEST_VAULT_TOKEN\n  refresh_interval_secs: 1\n\
         sinks:\n  postgres:\n    destination:\n      url: vault:secret/{path}#url\n      tls: disable\n      pool_size: 4\n      connect_timeout_ms: 2000\n"
    );
    let config = cdc_config::load_str("rotation-test.yaml", &yaml, Vec::new())
        .unwrap_or_else(|e| panic!("config: {e}"));
    let resolver = cdc_config::SecretResolver::new(&config.secrets)
        .with_env_map([("CDC_TEST_VAULT_TOKEN".to_owned(), VAULT_TOKEN.to_owned())].into());
    let pg = config.sinks.postgres.as_ref().expect("postgres block");
    let settings = cdc_sink::settings::postgres_settings_refreshing(
        &pg.destination,
        &resolver,
        config.secrets.refresh_interval(),
    )
    .await
    .expect("settings from Vault");
    let source = settings.url_source.clone().expect("the URL follows Vault");
    assert!(source.is_refreshing());

    let inspector = PgInspector {
        url: stack.postgres_url.clone(),
    };
    let mut fx = compliance::Fixture::new(&env, "rotate").await;
    let sink = fx.start(PostgresDestination::new(&settings).expect("destination"));
    let before: Vec<_> = (0..50)
        .map(|i| fx.events.insert(i, "before", 1, 10))
        .collect();
    fx.produce(&before).await;
    fx.wait_rows(
        &inspector,
        Duration::from_secs(60),
        "rows before rotation",
        |r| r.len() == 50,
    )
    .await;

    // Rotate: PostgreSQL first, then Vault; wait until the sink's handle has the new value.
    admin
        .batch_execute(&format!("ALTER ROLE {role} PASSWORD '{pw2}'"))
        .await
        .expect("rotate in PostgreSQL");
    let mut changes = source.subscribe();
    vault_write(&path, &url_with(pw2)).await;
    let rotated_at = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), changes.changed())
        .await
        .expect("rotation picked up within 10 s")
        .expect("refresh task alive");
    eprintln!("rotation picked up after {:?}", rotated_at.elapsed());
    // The old password no longer logs in: whatever connects from now on used the new one.
    let old = url_with(pw1)
        .parse::<tokio_postgres::Config>()
        .expect("url")
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("the old password is refused");
    assert_eq!(
        old.code().map(|c| c.code()),
        Some("28P01"),
        "old password: {old}"
    );
    // Kill the sink's sessions: the pool must open new ones.
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1",
            &[&role],
        )
        .await
        .expect("terminate")
        .get(0);
    assert!(killed >= 1, "the sink had sessions as {role}");

    let after: Vec<_> = (50..100)
        .map(|i| fx.events.insert(i, "after", 2, 20))
        .collect();
    fx.produce(&after).await;
    fx.wait_rows(
        &inspector,
        Duration::from_secs(60),
        "rows after rotation, same sink",
        |r| r.len() == 100,
    )
    .await;
    let sessions: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
            &[&role],
        )
        .await
        .expect("sessions")
        .get(0);
    assert!(sessions >= 1, "new sessions as {role} (new password)");
    sink.stop().await;

    // Best-effort cleanup of the throwaway role (the test's schema stays, like other tests').
    let _ = admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'; \
             REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}; DROP ROLE {role}"
        ))
        .await;
}
