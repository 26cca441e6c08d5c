//! TimescaleDB `time_columns`: the current-state table of a table with a configured time column
//! is a hypertable partitioned by it (chunks by `chunk_interval_secs`), inserts, updates, row and
//! partition deletes and out-of-order writes converge through it, and a replay of every event
//! writes nothing twice (state and `_changes` unchanged).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cdc_model::{
    CellChange, CellValue, ChangeEvent, ClusteringOrder, ColumnKind, ColumnSchema, CqlType,
    CqlValue, Deletion, DeletionScope, KeyColumn, Liveness, Operation, SourceInfo, TableSchema,
};
use cdc_sink::compliance::{self, ComplianceEnv, Inspector, PgInspector};
use cdc_sink::postgres::PgSettings;
use cdc_sink::timescaledb::{TimescaleOptions, timescale_destination};
use cdc_testkit::StackEnv;
use secrecy::SecretString;

/// Epoch milliseconds of the first row's `ts`; rows are 20 minutes apart.
const TS0_MS: i64 = 1_700_000_000_000;
const STEP_MS: i64 = 20 * 60 * 1_000;
/// Writetimes (µs) of the scenario's phases.
const WT: i64 = 1_700_000_000_000_000;

type Row = (i32, i64, Option<String>, Option<i64>);

struct Events {
    schema: TableSchema,
    seq: u32,
}

impl Events {
    fn event(&mut self, id: i32, k: Option<i64>, op: Operation) -> ChangeEvent {
        self.seq += 1;
        let source = SourceInfo {
            cluster: "test".into(),
            host_id: uuid::Uuid::from_u128(1),
            keyspace: self.schema.keyspace.clone(),
            table: self.schema.table.clone(),
            table_id: self.schema.id,
            schema_version: 1,
            segment_id: 1,
            segment_position: self.seq,
            index: 0,
        };
        ChangeEvent {
            correlation_id: source.correlation_id(),
            source,
            op,
            partition_key: vec![KeyColumn::new("id", CqlValue::Int(id))],
            clustering_key: k
                .map(|k| {
                    vec![KeyColumn::new(
                        "ts",
                        CqlValue::Timestamp(TS0_MS + k * STEP_MS),
                    )]
                })
                .unwrap_or_default(),
            is_static: false,
            liveness: None,
            deletion: None,
            cells: Vec::new(),
            captured_at_ms: 0,
        }
    }

    fn cell(column: &str, wt: i64, value: CqlValue) -> CellChange {
        CellChange {
            column: column.into(),
            writetime_micros: wt,
            ttl: None,
            change: CellValue::Set { value },
        }
    }

    fn insert(&mut self, id: i32, k: i64, v: &str, wt: i64) -> ChangeEvent {
        let mut e = self.event(id, Some(k), Operation::Insert);
        e.liveness = Some(Liveness {
            writetime_micros: wt,
            ttl: None,
        });
        e.cells = vec![
            Self::cell("v", wt, CqlValue::Text(v.into())),
            Self::cell("n", wt, CqlValue::Bigint(k)),
        ];
        e
    }

    fn update(&mut self, id: i32, k: i64, v: &str, wt: i64) -> ChangeEvent {
        let mut e = self.event(id, Some(k), Operation::Update);
        e.cells = vec![Self::cell("v", wt, CqlValue::Text(v.into()))];
        e
    }

    fn delete(&mut self, id: i32, k: Option<i64>, wt: i64) -> ChangeEvent {
        let mut e = self.event(id, k, Operation::Delete);
        e.deletion = Some(Deletion {
            scope: if k.is_some() {
                DeletionScope::Row
            } else {
                DeletionScope::Partition
            },
            marked_for_delete_at_micros: wt,
            local_deletion_time_secs: 0,
        });
        e
    }
}

/// The view's rows: `(id, ts ms, v, n)`.
async fn live_rows(client: &tokio_postgres::Client, keyspace: &str) -> Vec<Row> {
    client
        .query(
            &format!(
                "SELECT id, (extract(epoch FROM ts) * 1000)::bigint, v, n FROM \"{keyspace}\".\"t\" ORDER BY id, ts"
            ),
            &[],
        )
        .await
        .map(|rows| {
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect()
        })
        .unwrap_or_default()
}

async fn count(client: &tokio_postgres::Client, sql: &str, keyspace: &str) -> i64 {
    client
        .query_one(sql, &[&keyspace])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

async fn stored_total(inspector: &PgInspector, fx: &compliance::Fixture) -> i64 {
    let mut total = 0;
    for p in 0..3 {
        total += inspector
            .stored_offset(&fx.group, &fx.topic, p)
            .await
            .expect("stored offset")
            .unwrap_or(0);
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescale_state_table_is_a_hypertable_on_its_time_column() {
    let stack = StackEnv::load();
    let env = ComplianceEnv {
        kafka_bootstrap: stack.kafka_bootstrap.clone(),
        poison_name: None,
    };
    let fx = compliance::Fixture::new(&env, "tshyper").await;
    let col = |name: &str, cql_type: CqlType, kind: ColumnKind| ColumnSchema {
        name: name.into(),
        cql_type,
        kind,
    };
    let schema = TableSchema {
        keyspace: fx.keyspace.clone(),
        table: fx.table.clone(),
        id: uuid::Uuid::from_u128(0x7153),
        cdc: true,
        version: 1,
        columns: vec![
            col("id", CqlType::Int, ColumnKind::PartitionKey { position: 0 }),
            col(
                "ts",
                CqlType::Timestamp,
                ColumnKind::Clustering {
                    position: 0,
                    order: ClusteringOrder::Asc,
                },
            ),
            col("v", CqlType::Text, ColumnKind::Regular),
            col("n", CqlType::Bigint, ColumnKind::Regular),
        ],
        dropped_columns: Vec::new(),
    };
    let mut ev = Events {
        schema: schema.clone(),
        seq: 0,
    };
    // The expected state, kept beside the events (per-cell last write wins).
    let mut expected: BTreeMap<(i32, i64), (Option<String>, Option<i64>)> = BTreeMap::new();
    let mut events = Vec::new();
    // 10 partitions x 30 rows, 20 minutes apart: 10 hours, so ~10 one-hour chunks.
    for id in 0..10 {
        for k in 0..30 {
            events.push(ev.insert(id, k, &format!("v{id}-{k}"), WT + 100));
            expected.insert((id, k), (Some(format!("v{id}-{k}")), Some(k)));
        }
    }
    // Updates of the first 10 rows of every partition; an older update arriving later loses.
    for id in 0..10 {
        for k in 0..10 {
            events.push(ev.update(id, k, &format!("u{id}-{k}"), WT + 200));
            if let Some(row) = expected.get_mut(&(id, k)) {
                row.0 = Some(format!("u{id}-{k}"));
            }
        }
    }
    events.push(ev.update(0, 0, "stale", WT + 150));
    // Row deletes of partition 1's last 10 rows; partition 9 deleted, then an older write
    // (stays deleted) and a newer one (live).
    for k in 20..30 {
        events.push(ev.delete(1, Some(k), WT + 300));
        expected.remove(&(1, k));
    }
    events.push(ev.delete(9, None, WT + 400));
    expected.retain(|(id, _), _| *id != 9);
    events.push(ev.insert(9, 0, "zombie", WT + 350));
    events.push(ev.insert(9, 1, "reborn", WT + 500));
    expected.insert((9, 1), (Some("reborn".into()), Some(1)));
    let expected: Vec<Row> = expected
        .into_iter()
        .map(|((id, k), (v, n))| (id, TS0_MS + k * STEP_MS, v, n))
        .collect();

    let mut options = TimescaleOptions {
        chunk_interval_secs: 3_600,
        ..TimescaleOptions::default()
    };
    options
        .time_columns
        .insert(format!("{}.{}", fx.keyspace, fx.table), "ts".into());
    let make = || {
        timescale_destination(
            &PgSettings::new(SecretString::from(stack.timescale_url.clone())),
            &options,
        )
        .expect("timescale destination")
    };
    let (client, conn) = tokio_postgres::connect(&stack.timescale_url, tokio_postgres::NoTls)
        .await
        .expect("connect to the stack's TimescaleDB");
    tokio::spawn(conn);
    let inspector = PgInspector {
        url: stack.timescale_url.clone(),
    };

    let sink = fx.start(make());
    fx.produce_with_schema(&events, &schema).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let total = events.len() as i64;
    loop {
        let rows = live_rows(&client, &fx.keyspace).await;
        if rows == expected && stored_total(&inspector, &fx).await == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "state not reached: {} rows, expected {}; first differences: {:?}",
            rows.len(),
            expected.len(),
            rows.iter()
                .zip(&expected)
                .filter(|(a, b)| a != b)
                .take(5)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sink.stop().await;

    // The state table is a hypertable on `ts` with several chunks; `_changes` is one too; the
    // other tables stay plain.
    let dims: Vec<(String, String)> = client
        .query(
            "SELECT hypertable_name::text, column_name::text FROM timescaledb_information.dimensions \
             WHERE hypertable_schema = $1 ORDER BY 1",
            &[&fx.keyspace],
        )
        .await
        .expect("dimensions")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        dims,
        vec![
            ("t_changes".to_owned(), "_cdc_time".to_owned()),
            ("t_state".to_owned(), "ts".to_owned()),
        ],
        "hypertables of the schema"
    );
    let hypertables = count(
        &client,
        "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_schema = $1 AND hypertable_name = 't_state'",
        &fx.keyspace,
    )
    .await;
    assert_eq!(hypertables, 1, "t_state is listed as a hypertable");
    let chunks = count(
        &client,
        "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_schema = $1 AND hypertable_name = 't_state'",
        &fx.keyspace,
    )
    .await;
    assert!(chunks >= 5, "rows spread over one-hour chunks: {chunks}");
    // Its unique key includes the time column.
    let pk: String = client
        .query_one(
            "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c \
             WHERE c.conrelid = format('%I.t_state', $1::text)::regclass AND c.contype = 'p'",
            &[&fx.keyspace],
        )
        .await
        .expect("primary key")
        .get(0);
    assert_eq!(pk, "PRIMARY KEY (id, ts)");
    let state_total: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".t_state", fx.keyspace),
            &[],
        )
        .await
        .expect("state count")
        .get(0);
    let changes_before = inspector
        .change_count(&fx.keyspace, &fx.table)
        .await
        .expect("change count")
        .expect("changes table");
    assert!(changes_before > 0);

    // Replay every event (as after a crash before the offsets were stored): nothing changes.
    let sink = fx.start(make());
    fx.produce_with_schema(&events, &schema).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    while stored_total(&inspector, &fx).await < 2 * total {
        assert!(Instant::now() < deadline, "replayed events consumed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sink.stop().await;
    assert_eq!(
        live_rows(&client, &fx.keyspace).await,
        expected,
        "a replay changes nothing"
    );
    let state_after: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".t_state", fx.keyspace),
            &[],
        )
        .await
        .expect("state count")
        .get(0);
    assert_eq!(state_after, state_total, "no state row written twice");
    assert_eq!(
        inspector
            .change_count(&fx.keyspace, &fx.table)
            .await
            .expect("change count"),
        Some(changes_before),
        "a replay inserts no history rows"
    );
    assert!(
        fx.dead_letters(1, Duration::from_secs(2)).await.is_empty(),
        "no dead letters"
    );
}
