//! The ClickHouse adapter against the stack's ClickHouse: US1 scenarios at the adapter level
//! (TableBatches built directly), exactly-once across a simulated crash, deletes, statics,
//! schema evolution, types and poison values. Needs `make stack-up`; never skips.

use cdc_kafka::TopicPartition;
use cdc_model::{
    CellChange, CellValue, ChangeEvent, ClusteringBound, ClusteringOrder, ColumnKind, CqlType,
    CqlValue, Deletion, DeletionScope, KeyColumn, Liveness, Operation, SourceInfo, Ttl,
};
use cdc_sink::clickhouse::{ClickHouseDestination, ClickHouseSettings};
use cdc_sink::evolving::{EvolutionOptions, EvolvingDestination};
use cdc_sink::{
    BatchEvent, ColumnDef, Destination, NextOffset, SourceOffset, TableBatch, TableShape,
    WriteOutcome,
};
use cdc_testkit::{StackEnv, unique_name};
use uuid::Uuid;

const GROUP: &str = "cdc-sink-clickhouse-test";

struct Fixture {
    dest: ClickHouseDestination,
    client: clickhouse::Client,
    keyspace: String,
    table: String,
    topic: String,
}

fn col(name: &str, ty: &str, kind: ColumnKind) -> ColumnDef {
    ColumnDef {
        name: name.into(),
        cql_type: CqlType::parse(ty).unwrap_or(CqlType::Blob),
        kind,
    }
}

/// `users(id int, ck int, name text, email text, score bigint, region text static,
/// PRIMARY KEY (id, ck))`.
fn users_shape(keyspace: &str, table: &str) -> TableShape {
    TableShape {
        keyspace: keyspace.into(),
        table: table.into(),
        dropped: Default::default(),
        columns: vec![
            col("id", "int", ColumnKind::PartitionKey { position: 0 }),
            col(
                "ck",
                "int",
                ColumnKind::Clustering {
                    position: 0,
                    order: ClusteringOrder::Asc,
                },
            ),
            col("name", "text", ColumnKind::Regular),
            col("email", "text", ColumnKind::Regular),
            col("score", "bigint", ColumnKind::Regular),
            col("region", "text", ColumnKind::Static),
        ],
    }
}

impl Fixture {
    fn new(prefix: &str) -> Fixture {
        let env = StackEnv::load();
        let settings = ClickHouseSettings::for_url(env.clickhouse_url.clone());
        let client = settings.client();
        let keyspace = unique_name(prefix);
        let table = "users".to_owned();
        let topic = format!("cdc.masked.{keyspace}.{table}");
        Fixture {
            dest: ClickHouseDestination::new(settings),
            client,
            keyspace,
            table,
            topic,
        }
    }

    fn shape(&self) -> TableShape {
        users_shape(&self.keyspace, &self.table)
    }

    fn source(&self) -> SourceInfo {
        SourceInfo {
            cluster: "test".into(),
            host_id: Uuid::nil(),
            keyspace: self.keyspace.clone(),
            table: self.table.clone(),
            table_id: Uuid::nil(),
            schema_version: 1,
            segment_id: 1,
            segment_position: 0,
            index: 0,
        }
    }

    fn event(&self, id: i32, ck: i32, op: Operation) -> ChangeEvent {
        ChangeEvent {
            source: self.source(),
            op,
            partition_key: vec![KeyColumn::new("id", CqlValue::Int(id))],
            clustering_key: vec![KeyColumn::new("ck", CqlValue::Int(ck))],
            is_static: false,
            liveness: None,
            deletion: None,
            cells: Vec::new(),
            correlation_id: format!("test:{id}:{ck}"),
            captured_at_ms: 0,
        }
    }

    /// INSERT (row marker + every regular column) at writetime `wt`.
    fn insert(&self, id: i32, ck: i32, wt: i64) -> ChangeEvent {
        let mut e = self.event(id, ck, Operation::Insert);
        e.liveness = Some(Liveness {
            writetime_micros: wt,
            ttl: None,
        });
        e.cells = vec![
            set("name", CqlValue::Text(format!("user {id}")), wt),
            set(
                "email",
                CqlValue::Text(format!("fake.user{id}@example.test")),
                wt,
            ),
            set("score", CqlValue::Bigint(i64::from(id)), wt),
        ];
        e
    }

    fn update_score(&self, id: i32, ck: i32, score: i64, wt: i64) -> ChangeEvent {
        let mut e = self.event(id, ck, Operation::Update);
        e.cells = vec![set("score", CqlValue::Bigint(score), wt)];
        e
    }

    fn delete_row(&self, id: i32, ck: i32, wt: i64) -> ChangeEvent {
        let mut e = self.event(id, ck, Operation::Delete);
        e.deletion = Some(deletion(DeletionScope::Row, wt));
        e
    }

    /// A batch of `events` read from partition 0 at offsets `first..`.
    fn batch(&self, first: i64, events: Vec<ChangeEvent>) -> TableBatch {
        self.batch_on(0, first, events)
    }

    fn batch_on(&self, partition: i32, first: i64, events: Vec<ChangeEvent>) -> TableBatch {
        let n = events.len() as i64;
        TableBatch {
            shape: self.shape(),
            events: events
                .into_iter()
                .enumerate()
                .map(|(i, event)| BatchEvent {
                    event,
                    source: SourceOffset {
                        topic: self.topic.clone(),
                        partition,
                        offset: first + i as i64,
                    },
                    payload_bytes: 100,
                })
                .collect(),
            next_offsets: vec![NextOffset {
                topic: self.topic.clone(),
                partition,
                next_offset: first + n,
            }],
        }
    }

    /// Writes `events` in batches of `size` starting at `first`; returns the next offset.
    async fn write_all(&self, first: i64, events: Vec<ChangeEvent>, size: usize) -> i64 {
        let mut offset = first;
        for chunk in events.chunks(size) {
            let batch = self.batch(offset, chunk.to_vec());
            let outcome = self.dest.write_batch(GROUP, &batch).await;
            assert!(
                matches!(outcome, Ok(WriteOutcome::Written { .. })),
                "{outcome:?}"
            );
            offset += chunk.len() as i64;
        }
        offset
    }

    async fn text(&self, sql: &str) -> String {
        let mut cursor = self
            .client
            .query(sql)
            .fetch_bytes("TabSeparated")
            .unwrap_or_else(|e| panic!("query failed: {e}"));
        let bytes = cursor
            .collect()
            .await
            .unwrap_or_else(|e| panic!("query {sql} failed: {e}"));
        String::from_utf8_lossy(&bytes).trim_end().to_owned()
    }

    async fn count(&self, sql: &str) -> u64 {
        self.text(sql).await.parse().unwrap_or(u64::MAX)
    }

    fn view(&self) -> String {
        format!("`{}`.`{}`", self.keyspace, self.table)
    }

    fn state(&self) -> String {
        format!("`{}`.`_cdc_state_{}`", self.keyspace, self.table)
    }

    async fn view_count(&self) -> u64 {
        self.count(&format!("SELECT count() FROM {}", self.view()))
            .await
    }

    async fn duplicate_keys(&self) -> u64 {
        self.count(&format!(
            "SELECT count() FROM (SELECT id, ck, count() AS c FROM {} GROUP BY id, ck HAVING c > 1)",
            self.view()
        ))
        .await
    }

    async fn drop(&self) {
        let _ = self
            .client
            .query(&format!("DROP DATABASE IF EXISTS `{}`", self.keyspace))
            .execute()
            .await;
    }
}

fn set(column: &str, value: CqlValue, wt: i64) -> CellChange {
    CellChange {
        column: column.into(),
        writetime_micros: wt,
        ttl: None,
        change: CellValue::Set { value },
    }
}

fn tombstone(column: &str, wt: i64) -> CellChange {
    CellChange {
        column: column.into(),
        writetime_micros: wt,
        ttl: None,
        change: CellValue::Tombstone,
    }
}

fn deletion(scope: DeletionScope, wt: i64) -> Deletion {
    Deletion {
        scope,
        marked_for_delete_at_micros: wt,
        local_deletion_time_secs: 0,
    }
}

const T0: i64 = 1_700_000_000_000_000;

#[tokio::test]
async fn inserts_1000_rows_then_500_partial_updates_then_200_deletes() {
    let f = Fixture::new("ch_us1");
    let inserts: Vec<ChangeEvent> = (0..1000).map(|i| f.insert(i, 0, T0 + 1)).collect();
    let next = f.write_all(0, inserts, 250).await;
    assert_eq!(f.view_count().await, 1000);
    assert_eq!(
        f.text(&format!(
            "SELECT id, ck, name, email, score, region FROM {} WHERE id = 7",
            f.view()
        ))
        .await,
        "7\t0\tuser 7\tfake.user7@example.test\t7\t\\N"
    );

    // 500 partial updates: only `score` changes; name and email stay.
    let updates: Vec<ChangeEvent> = (0..500)
        .map(|i| f.update_score(i, 0, 1_000 + i64::from(i), T0 + 2))
        .collect();
    let next = f.write_all(next, updates, 100).await;
    assert_eq!(f.view_count().await, 1000);
    assert_eq!(f.duplicate_keys().await, 0);
    assert_eq!(
        f.count(&format!(
            "SELECT count() FROM {} WHERE score = 1000 + id AND name = concat('user ', toString(id))",
            f.view()
        ))
        .await,
        500
    );

    // 200 row deletes.
    let deletes: Vec<ChangeEvent> = (0..200).map(|i| f.delete_row(i, 0, T0 + 3)).collect();
    let next = f.write_all(next, deletes, 200).await;
    assert_eq!(f.view_count().await, 800);
    assert_eq!(
        f.count(&format!("SELECT count() FROM {} WHERE id < 200", f.view()))
            .await,
        0
    );

    // Stored offsets are read back.
    let loaded = f
        .dest
        .load_offsets(
            GROUP,
            &[TopicPartition {
                topic: f.topic.clone(),
                partition: 0,
            }],
        )
        .await;
    let loaded = loaded.unwrap_or_else(|e| panic!("load offsets: {e}"));
    assert_eq!(loaded[0].1, Some(next));
    f.drop().await;
}

#[tokio::test]
async fn deletes_shadow_older_writes_and_lose_to_newer_ones() {
    let f = Fixture::new("ch_del");
    let mut events = vec![f.insert(1, 1, T0 + 10), f.insert(2, 1, T0 + 10)];
    // Row delete at +20; a late write at +15 must not resurrect (1,1)...
    events.push(f.delete_row(1, 1, T0 + 20));
    events.push(f.update_score(1, 1, 99, T0 + 15));
    // ...a write at the delete's own writetime loses too (tombstones win ties)...
    events.push(f.update_score(1, 1, 98, T0 + 20));
    // ...while (2,1) is deleted and written again later: the new write shows, alone.
    events.push(f.delete_row(2, 1, T0 + 20));
    events.push(f.update_score(2, 1, 77, T0 + 30));
    f.write_all(0, events, 3).await;
    assert_eq!(
        f.text(&format!(
            "SELECT id, ck, name, score FROM {} ORDER BY id, ck",
            f.view()
        ))
        .await,
        "2\t1\t\\N\t77"
    );
    f.drop().await;
}

#[tokio::test]
async fn out_of_order_writetimes_and_any_batching_converge() {
    let f = Fixture::new("ch_ooo");
    let mut events = Vec::new();
    for id in 0..20 {
        events.push(f.insert(id, 0, T0 + 100));
        events.push(f.update_score(id, 0, 5, T0 + 300));
        events.push(f.update_score(id, 0, 4, T0 + 200));
        let mut e = f.event(id, 0, Operation::Update);
        e.cells = vec![tombstone("email", T0 + 250)];
        events.push(e);
        let mut e = f.event(id, 0, Operation::Update);
        e.cells = vec![set(
            "email",
            CqlValue::Text("fake.old@example.test".into()),
            T0 + 240,
        )];
        events.push(e);
    }
    // Reverse order, odd batch sizes, and the whole stream applied twice.
    events.reverse();
    let next = f.write_all(0, events.clone(), 7).await;
    f.write_all(next, events, 13).await;
    assert_eq!(f.view_count().await, 20);
    assert_eq!(
        f.count(&format!(
            "SELECT count() FROM {} WHERE score = 5 AND email IS NULL AND name = concat('user ', toString(id))",
            f.view()
        ))
        .await,
        20
    );
    f.drop().await;
}

#[tokio::test]
async fn replaying_the_same_batch_doubles_nothing() {
    let f = Fixture::new("ch_replay");
    let batch = f.batch(0, (0..100).map(|i| f.insert(i, 0, T0)).collect());
    for _ in 0..3 {
        let outcome = f.dest.write_batch(GROUP, &batch).await;
        assert!(
            matches!(outcome, Ok(WriteOutcome::Written { .. })),
            "{outcome:?}"
        );
    }
    assert_eq!(f.view_count().await, 100);
    assert_eq!(
        f.count(&format!("SELECT count() FROM {}", f.state())).await,
        100,
        "the deduplication token drops the replayed inserts"
    );
    f.drop().await;
}

#[tokio::test]
async fn crash_between_rows_and_offsets_writes_nothing_twice() {
    let f = Fixture::new("ch_crash");
    let events: Vec<ChangeEvent> = (0..300).map(|i| f.insert(i, 0, T0)).collect();
    let tp = TopicPartition {
        topic: f.topic.clone(),
        partition: 0,
    };

    // First life: offsets 0..99 fully written; offsets 100..199 written without their offsets
    // (the process dies between the two writes).
    f.dest
        .write_batch(GROUP, &f.batch(0, events[..100].to_vec()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let crashed = f.batch(100, events[100..200].to_vec());
    let outcome = f.dest.insert_rows(GROUP, &crashed).await;
    assert!(
        matches!(outcome, Ok(WriteOutcome::Written { rows: 100 })),
        "{outcome:?}"
    );
    assert_eq!(
        f.count(&format!("SELECT count() FROM {}", f.state())).await,
        200
    );

    // Second life, same batch boundaries: the token drops the insert.
    let second = ClickHouseDestination::new(f.dest.settings().clone());
    let loaded = second
        .load_offsets(GROUP, std::slice::from_ref(&tp))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        loaded[0].1,
        Some(100),
        "offsets never run ahead of the rows"
    );
    second
        .write_batch(GROUP, &crashed)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        f.count(&format!("SELECT count() FROM {}", f.state())).await,
        200
    );

    // Third life after another crash, with different batch boundaries (150 then 150 events).
    f.dest
        .insert_rows(GROUP, &f.batch(200, events[200..250].to_vec()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let third = ClickHouseDestination::new(f.dest.settings().clone());
    let loaded = third
        .load_offsets(GROUP, std::slice::from_ref(&tp))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded[0].1, Some(200));
    third
        .write_batch(GROUP, &f.batch(200, events[200..275].to_vec()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    third
        .write_batch(GROUP, &f.batch(275, events[275..].to_vec()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        f.count(&format!("SELECT count() FROM {}", f.state())).await,
        300,
        "no raw duplicate although the replay was batched differently"
    );
    assert_eq!(
        f.count(&format!(
            "SELECT count() FROM (SELECT _cdc_offset, count() AS c FROM {} GROUP BY _cdc_offset HAVING c > 1)",
            f.state()
        ))
        .await,
        0
    );
    assert_eq!(f.view_count().await, 300);
    let loaded = third
        .load_offsets(GROUP, std::slice::from_ref(&tp))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded[0].1, Some(300));
    f.drop().await;
}

#[tokio::test]
async fn partition_and_range_deletes_and_static_columns() {
    let f = Fixture::new("ch_range");
    let mut events = Vec::new();
    for ck in 0..10 {
        events.push(f.insert(1, ck, T0 + 10));
        events.push(f.insert(2, ck, T0 + 10));
    }
    // Static cell of partition 1.
    let mut st = f.event(1, 0, Operation::Update);
    st.is_static = true;
    st.clustering_key.clear();
    st.cells = vec![set("region", CqlValue::Text("eu".into()), T0 + 10)];
    events.push(st);
    // Range delete ck in [3, 6) of partition 1 at +20.
    let mut range = f.event(1, 0, Operation::Delete);
    range.clustering_key.clear();
    range.deletion = Some(deletion(
        DeletionScope::Range {
            start: ClusteringBound {
                prefix: vec![KeyColumn::new("ck", CqlValue::Int(3))],
                inclusive: true,
            },
            end: ClusteringBound {
                prefix: vec![KeyColumn::new("ck", CqlValue::Int(6))],
                inclusive: false,
            },
        },
        T0 + 20,
    ));
    events.push(range);
    // An older write inside the range stays deleted; a newer one comes back.
    events.push(f.update_score(1, 4, 1, T0 + 15));
    events.push(f.update_score(1, 5, 2, T0 + 25));
    // Partition 2 deleted at +20, then one newer row.
    let mut part = f.event(2, 0, Operation::Delete);
    part.clustering_key.clear();
    part.deletion = Some(deletion(DeletionScope::Partition, T0 + 20));
    events.push(part);
    events.push(f.insert(2, 42, T0 + 30));
    f.write_all(0, events, 5).await;

    assert_eq!(
        f.text(&format!(
            "SELECT groupArray(ck) FROM (SELECT ck FROM {} WHERE id = 1 ORDER BY ck)",
            f.view()
        ))
        .await,
        "[0,1,2,5,6,7,8,9]"
    );
    assert_eq!(
        f.text(&format!(
            "SELECT DISTINCT region FROM {} WHERE id = 1",
            f.view()
        ))
        .await,
        "eu"
    );
    assert_eq!(
        f.text(&format!(
            "SELECT ck, name, score FROM {} WHERE id = 1 AND ck = 5",
            f.view()
        ))
        .await,
        "5\t\\N\t2",
        "a cell written after the range delete shows alone"
    );
    assert_eq!(
        f.text(&format!("SELECT ck FROM {} WHERE id = 2", f.view()))
            .await,
        "42"
    );
    f.drop().await;
}

#[tokio::test]
async fn ttl_expired_rows_are_hidden() {
    let f = Fixture::new("ch_ttl");
    let now_secs = T0 / 1_000_000;
    let mut expired = f.insert(1, 0, T0);
    let ttl = Some(Ttl {
        ttl_secs: 1,
        expires_at_secs: now_secs,
    });
    expired.liveness = Some(Liveness {
        writetime_micros: T0,
        ttl,
    });
    for c in &mut expired.cells {
        c.ttl = ttl;
    }
    let mut alive = f.insert(2, 0, T0);
    alive.liveness = Some(Liveness {
        writetime_micros: T0,
        ttl: Some(Ttl {
            ttl_secs: 1,
            expires_at_secs: 4_000_000_000,
        }),
    });
    f.write_all(0, vec![expired, alive], 10).await;
    assert_eq!(
        f.text(&format!("SELECT id, _cdc_expires_at FROM {}", f.view()))
            .await,
        "2\t2096-10-02 07:06:40"
    );
    f.drop().await;
}

#[tokio::test]
async fn new_columns_are_added_before_the_events_that_need_them() {
    let f = Fixture::new("ch_evolve");
    f.write_all(0, vec![f.insert(1, 0, T0)], 10).await;
    let mut shape = f.shape();
    shape
        .columns
        .push(col("nickname", "text", ColumnKind::Regular));
    let mut e = f.event(2, 0, Operation::Insert);
    e.liveness = Some(Liveness {
        writetime_micros: T0,
        ttl: None,
    });
    e.cells = vec![set("nickname", CqlValue::Text("nick".into()), T0)];
    let mut batch = f.batch(1, vec![e]);
    batch.shape = shape.clone();
    f.dest
        .prepare_table(&shape)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let outcome = f.dest.write_batch(GROUP, &batch).await;
    assert!(
        matches!(outcome, Ok(WriteOutcome::Written { .. })),
        "{outcome:?}"
    );
    assert_eq!(
        f.text(&format!(
            "SELECT id, name, nickname FROM {} ORDER BY id",
            f.view()
        ))
        .await,
        "1\tuser 1\t\\N\n2\t\\N\tnick"
    );
    // A later batch with the old, narrower shape keeps the column (dropped columns are kept).
    f.write_all(2, vec![f.insert(3, 0, T0)], 10).await;
    assert_eq!(
        f.count(&format!(
            "SELECT count() FROM {} WHERE nickname = 'nick'",
            f.view()
        ))
        .await,
        1
    );
    // A fresh adapter (restart) rebuilds the view from the table's own columns.
    let restarted = ClickHouseDestination::new(f.dest.settings().clone());
    restarted
        .prepare_table(&f.shape())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        f.count(&format!(
            "SELECT count() FROM {} WHERE nickname = 'nick'",
            f.view()
        ))
        .await,
        1
    );
    f.drop().await;
}

#[tokio::test]
async fn poison_values_are_rejected_by_index_and_nothing_is_written() {
    let f = Fixture::new("ch_poison");
    let mut shape = f.shape();
    shape
        .columns
        .push(col("amount", "decimal", ColumnKind::Regular));
    let good = f.insert(1, 0, T0);
    let mut bad = f.event(2, 0, Operation::Update);
    bad.cells = vec![set(
        "amount",
        CqlValue::Decimal {
            unscaled: 1.into(),
            scale: 30,
        },
        T0,
    )];
    let mut batch = f.batch(0, vec![good, bad]);
    batch.shape = shape;
    let outcome = f.dest.write_batch(GROUP, &batch).await;
    let Ok(WriteOutcome::Rejected(rejections)) = outcome else {
        panic!("expected a rejection, got {outcome:?}");
    };
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0].index, 1);
    assert!(
        rejections[0].reason.contains("amount"),
        "{}",
        rejections[0].reason
    );
    // Nothing was written and no offset stored.
    let loaded = f
        .dest
        .load_offsets(
            GROUP,
            &[TopicPartition {
                topic: f.topic.clone(),
                partition: 0,
            }],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded[0].1, None);
    f.drop().await;
}

#[tokio::test]
async fn every_cql_type_round_trips_through_the_view() {
    let f = Fixture::new("ch_types");
    let cols: Vec<(&str, &str, CqlValue, &str)> = vec![
        ("a_ascii", "ascii", CqlValue::Ascii("abc".into()), "abc"),
        (
            "a_bigint",
            "bigint",
            CqlValue::Bigint(i64::MIN),
            "-9223372036854775808",
        ),
        ("a_blob", "blob", CqlValue::Blob(vec![0, 255]), "00FF"),
        ("a_boolean", "boolean", CqlValue::Boolean(true), "true"),
        ("a_date", "date", CqlValue::Date(19_000), "2022-01-08"),
        (
            "a_decimal",
            "decimal",
            CqlValue::Decimal {
                unscaled: (-12_345).into(),
                scale: 2,
            },
            "-123.45",
        ),
        (
            "a_double",
            "double",
            CqlValue::Double(f64::NEG_INFINITY),
            "-inf",
        ),
        ("a_float", "float", CqlValue::Float(f32::NAN), "nan"),
        (
            "a_inet",
            "inet",
            CqlValue::Inet(
                "10.0.0.1"
                    .parse()
                    .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
            ),
            "::ffff:10.0.0.1",
        ),
        ("a_int", "int", CqlValue::Int(i32::MAX), "2147483647"),
        ("a_smallint", "smallint", CqlValue::Smallint(-1), "-1"),
        ("a_text", "text", CqlValue::Text(String::new()), ""),
        ("a_time", "time", CqlValue::Time(1_000), "1000"),
        (
            "a_timestamp",
            "timestamp",
            CqlValue::Timestamp(1_700_000_000_123),
            "2023-11-14 22:13:20.123000",
        ),
        (
            "a_timeuuid",
            "timeuuid",
            CqlValue::Timeuuid(Uuid::from_u128(0x0102_0304_0506_1708_090a_0b0c_0d0e_0f10)),
            "01020304-0506-1708-090a-0b0c0d0e0f10",
        ),
        ("a_tinyint", "tinyint", CqlValue::Tinyint(i8::MIN), "-128"),
        (
            "a_uuid",
            "uuid",
            CqlValue::Uuid(Uuid::from_u128(1)),
            "00000000-0000-0000-0000-000000000001",
        ),
        (
            "a_varint",
            "varint",
            CqlValue::Varint(num_bigint::BigInt::from(i128::MAX)),
            "170141183460469231731687303715884105727",
        ),
        (
            "a_duration",
            "duration",
            CqlValue::Duration {
                months: 1,
                days: -2,
                nanoseconds: 3,
            },
            "(1,-2,3)",
        ),
        (
            "a_list",
            "frozen<list<int>>",
            CqlValue::List(vec![CqlValue::Int(2), CqlValue::Int(1)]),
            "[2,1]",
        ),
        (
            "a_map",
            "frozen<map<text, int>>",
            CqlValue::Map(vec![(CqlValue::Text("k".into()), CqlValue::Int(1))]),
            // TabSeparated escapes the quotes.
            r"{\'k\':1}",
        ),
        (
            "a_tuple",
            "tuple<int, text>",
            CqlValue::Tuple(vec![Some(CqlValue::Int(1)), None]),
            "(1,NULL)",
        ),
        (
            "a_vector",
            "vector<float, 2>",
            CqlValue::Vector(vec![CqlValue::Float(0.5), CqlValue::Float(-1.0)]),
            "[0.5,-1]",
        ),
    ];
    let mut shape = f.shape();
    for (name, ty, _, _) in &cols {
        shape.columns.push(col(name, ty, ColumnKind::Regular));
    }
    let mut e = f.event(1, 0, Operation::Insert);
    e.liveness = Some(Liveness {
        writetime_micros: T0,
        ttl: None,
    });
    e.cells = cols
        .iter()
        .map(|(name, _, v, _)| set(name, v.clone(), T0))
        .collect();
    let mut batch = f.batch(0, vec![e]);
    batch.shape = shape.clone();
    f.dest
        .prepare_table(&shape)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let outcome = f.dest.write_batch(GROUP, &batch).await;
    assert!(
        matches!(outcome, Ok(WriteOutcome::Written { .. })),
        "{outcome:?}"
    );
    for (name, _, _, expected) in &cols {
        let expr = if *name == "a_blob" {
            format!("hex({name})")
        } else {
            format!("toString({name})")
        };
        let got = f
            .text(&format!("SELECT {expr} FROM {} WHERE id = 1", f.view()))
            .await;
        assert_eq!(&got, expected, "{name}");
    }
    f.drop().await;
}

/// Reads the ClickHouse view and offsets table back for the shared compliance suite.
struct ClickHouseInspector {
    client: clickhouse::Client,
}

#[async_trait::async_trait]
impl cdc_sink::compliance::Inspector for ClickHouseInspector {
    async fn live_rows(
        &self,
        keyspace: &str,
        table: &str,
    ) -> Result<std::collections::BTreeMap<i32, cdc_sink::compliance::Row>, String> {
        let rows: Vec<(i32, Option<String>, Option<i64>)> = self
            .client
            .query(&format!(
                "SELECT id, name, score FROM `{keyspace}`.`{table}`"
            ))
            .fetch_all()
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows
            .into_iter()
            .map(|(id, name, score)| (id, (name, score)))
            .collect())
    }

    async fn stored_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, String> {
        let Ok(cdc_model::Topic::Table { keyspace, .. }) = cdc_model::Topic::parse(topic) else {
            return Err(format!("not a table topic: {topic}"));
        };
        let rows: Vec<i64> = self
            .client
            .query(&format!(
                "SELECT max(next_offset) FROM `{keyspace}`.`_cdc_offsets` \
                 WHERE consumer_group = ? AND topic = ? AND partition = ? HAVING count() > 0"
            ))
            .bind(group)
            .bind(topic)
            .bind(partition)
            .fetch_all()
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows.first().copied())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_compliance_suite() {
    let env = StackEnv::load();
    let settings = ClickHouseSettings::for_url(env.clickhouse_url.clone());
    let inspector = ClickHouseInspector {
        client: settings.client(),
    };
    let compliance = cdc_sink::compliance::ComplianceEnv {
        kafka_bootstrap: env.kafka_bootstrap.clone(),
        // ClickHouse strings hold any bytes: no `text` value is poison for this destination.
        poison_name: None,
    };
    cdc_sink::compliance::run_all(
        &compliance,
        || ClickHouseDestination::new(settings.clone()),
        &inspector,
    )
    .await;
}

/// The expected live state of the compliance table `(id, name, score)` under Cassandra rules.
#[derive(Default, Clone)]
struct ModelRow {
    marker: Option<i64>,
    name: Option<(i64, bool, Option<String>)>,
    score: Option<(i64, bool, Option<i64>)>,
    deleted: Option<i64>,
}

fn lww<T: Clone>(cur: &mut Option<(i64, bool, Option<T>)>, wt: i64, value: Option<T>) {
    let tomb = value.is_none();
    let newer = match cur {
        None => true,
        Some((w, t, _)) => (wt, tomb) > (*w, *t),
    };
    if newer {
        *cur = Some((wt, tomb, value));
    }
}

impl ModelRow {
    fn live(&self) -> Option<cdc_sink::compliance::Row> {
        let d = self.deleted.unwrap_or(i64::MIN);
        let name = self
            .name
            .as_ref()
            .filter(|(w, _, v)| *w > d && v.is_some())
            .and_then(|(_, _, v)| v.clone());
        let score = self
            .score
            .as_ref()
            .filter(|(w, _, v)| *w > d && v.is_some())
            .and_then(|(_, _, v)| *v);
        let marker = self.marker.is_some_and(|w| w > d);
        (marker || name.is_some() || score.is_some()).then_some((name, score))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abrupt_restarts_during_10000_mixed_events_converge() {
    use cdc_sink::compliance::{ComplianceEnv, Fixture as Compliance};
    let env = StackEnv::load();
    let settings = ClickHouseSettings::for_url(env.clickhouse_url.clone());
    let inspector = ClickHouseInspector {
        client: settings.client(),
    };
    let compliance = ComplianceEnv {
        kafka_bootstrap: env.kafka_bootstrap.clone(),
        poison_name: None,
    };
    let mut fx = Compliance::new(&compliance, "ch_kill").await;

    // 10,000 mixed events over 400 keys with writetimes in a scrambled (distinct) order.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut model: std::collections::BTreeMap<i32, ModelRow> = std::collections::BTreeMap::new();
    let mut events = Vec::with_capacity(10_000);
    for i in 0..10_000i64 {
        let id = (next() % 400) as i32;
        let wt = T0 + ((i * 7919) % 10_007) * 10;
        let row = model.entry(id).or_default();
        let e = match next() % 10 {
            0..=3 => {
                let name = format!("name {i}");
                row.marker = Some(row.marker.map_or(wt, |m| m.max(wt)));
                lww(&mut row.name, wt, Some(name.clone()));
                lww(&mut row.score, wt, Some(i));
                fx.events.insert(id, &name, i, wt)
            }
            4..=6 => {
                lww(&mut row.score, wt, Some(-i));
                fx.events.update_score(id, -i, wt)
            }
            7 => {
                lww(&mut row.name, wt, Some(format!("renamed {i}")));
                fx.events.update_name(id, &format!("renamed {i}"), wt)
            }
            8 => {
                lww::<String>(&mut row.name, wt, None);
                fx.events.delete_name(id, wt)
            }
            _ => {
                row.deleted = Some(row.deleted.map_or(wt, |d| d.max(wt)));
                fx.events.delete(id, wt)
            }
        };
        events.push(e);
    }
    let expected: std::collections::BTreeMap<i32, cdc_sink::compliance::Row> = model
        .iter()
        .filter_map(|(id, r)| r.live().map(|l| (*id, l)))
        .collect();
    fx.produce(&events).await;

    // Small batches so the three crashes land while the backlog is being written.
    let start = |fx: &Compliance| {
        let registry = prometheus::Registry::new();
        let health = cdc_telemetry::HealthState::new();
        let mut config = fx.runner_config("clickhouse");
        config.batch.max_rows = 40;
        let runner = cdc_sink::SinkRunner::new(
            std::sync::Arc::new(ClickHouseDestination::new(settings.clone())),
            cdc_kafka::KafkaSettings::new(env.kafka_bootstrap.clone(), unique_name("sink")),
            config,
            cdc_telemetry::SinkMetrics::new(&registry, "clickhouse")
                .unwrap_or_else(|e| panic!("{e}")),
            health.clone(),
        );
        let cancel = cdc_telemetry::CancellationToken::new();
        let token = cancel.clone();
        cdc_sink::compliance::RunningSink {
            handle: tokio::spawn(async move { runner.run(token).await }),
            cancel,
            registry,
            health,
        }
    };
    let stored_rows = |client: clickhouse::Client, ks: String, t: String| async move {
        client
            .query(&format!("SELECT count() FROM `{ks}`.`_cdc_state_{t}`"))
            .fetch_one::<u64>()
            .await
            .unwrap_or(0)
    };
    let mut sink = start(&fx);
    // Crash when a random point of each third of the stream has been stored.
    for round in 0..3u64 {
        let threshold = round * 3_000 + 500 + next() % 2_500;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while stored_rows(settings.client(), fx.keyspace.clone(), fx.table.clone()).await
            < threshold
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no progress towards {threshold}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // The in-process equivalent of kill -9: the task is dropped at whatever await point it
        // is in (mid-insert, between rows and offsets, mid-poll), with no drain.
        sink.handle.abort();
        let _ = sink.handle.await;
        let rows = stored_rows(settings.client(), fx.keyspace.clone(), fx.table.clone()).await;
        eprintln!("crash {round}: {rows} of 10000 events stored so far");
        sink = start(&fx);
    }
    let rows = fx
        .wait_rows(
            &inspector,
            std::time::Duration::from_secs(240),
            "state after three abrupt restarts",
            |r| r == &expected,
        )
        .await;
    assert_eq!(rows, expected);
    sink.stop().await;

    let client = settings.client();
    let raw_duplicates: u64 = client
        .query(&format!(
            "SELECT count() FROM (SELECT _cdc_partition, _cdc_offset, _cdc_kind, count() AS c \
             FROM `{}`.`_cdc_state_{}` GROUP BY _cdc_partition, _cdc_offset, _cdc_kind HAVING c > 1)",
            fx.keyspace, fx.table
        ))
        .fetch_one()
        .await
        .unwrap_or(u64::MAX);
    assert_eq!(raw_duplicates, 0, "no event was stored twice");
    let stored: u64 = client
        .query(&format!(
            "SELECT count() FROM `{}`.`_cdc_state_{}`",
            fx.keyspace, fx.table
        ))
        .fetch_one()
        .await
        .unwrap_or(0);
    assert_eq!(stored, 10_000);
}

/// Rows/s through the adapter (`write_batch`, rows + offsets) for insert-only and mixed
/// workloads at batch sizes 100 / 1,000 / 10,000. Run with
/// `cargo test -p cdc-sink --test clickhouse bench -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "benchmark: run explicitly"]
async fn bench_rows_per_second() {
    for (workload, mixed) in [("insert-only", false), ("mixed", true)] {
        for size in [100usize, 1_000, 10_000] {
            let f = Fixture::new("ch_bench");
            let total = 20_000i32;
            let events: Vec<ChangeEvent> = (0..total)
                .map(|i| {
                    let id = if mixed { i % 5_000 } else { i };
                    let wt = T0 + i64::from(i);
                    match (mixed, i % 4) {
                        (true, 1) => f.update_score(id, 0, i64::from(i), wt),
                        (true, 3) => f.delete_row(id, 0, wt),
                        _ => f.insert(id, 0, wt),
                    }
                })
                .collect();
            let started = std::time::Instant::now();
            f.write_all(0, events, size).await;
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "clickhouse {workload} batch {size}: {total} events in {secs:.2} s = {:.0} rows/s",
                f64::from(total) / secs
            );
            f.drop().await;
        }
    }
}

fn complex(
    column: &str,
    deletion_wt: Option<i64>,
    elements: Vec<(cdc_model::CellPath, Option<CqlValue>, i64)>,
) -> CellChange {
    let wt = elements
        .iter()
        .map(|e| e.2)
        .chain(deletion_wt)
        .max()
        .unwrap_or(0);
    CellChange {
        column: column.into(),
        writetime_micros: wt,
        ttl: None,
        change: CellValue::Complex {
            deletion: deletion_wt.map(|w| cdc_model::ComplexDeletion {
                marked_for_delete_at_micros: w,
                local_deletion_time_secs: 0,
            }),
            elements: elements
                .into_iter()
                .map(|(path, value, wt)| cdc_model::ElementChange {
                    path,
                    value,
                    writetime_micros: wt,
                    ttl: None,
                })
                .collect(),
        },
    }
}

#[tokio::test]
async fn non_frozen_collections_converge_element_by_element() {
    use cdc_model::CellPath;
    let f = Fixture::new("ch_coll");
    let mut shape = f.shape();
    shape
        .columns
        .push(col("tags", "set<text>", ColumnKind::Regular));
    shape
        .columns
        .push(col("attrs", "map<text, int>", ColumnKind::Regular));
    shape
        .columns
        .push(col("log", "list<int>", ColumnKind::Regular));
    let text = |s: &str| CqlValue::Text(s.into());
    // Version-1 timeuuids with increasing timestamps order the list.
    let tu = |ticks: u64| {
        let ts = uuid::Timestamp::from_gregorian_time(ticks, 0);
        Uuid::new_v1(ts, &[1, 2, 3, 4, 5, 6])
    };
    let mut events = Vec::new();
    // INSERT … tags = {a, b}, attrs = {x: 1}, log = [10]: overwrites (deletion at wt - 1).
    let mut e = f.event(1, 0, Operation::Insert);
    e.liveness = Some(Liveness {
        writetime_micros: T0 + 10,
        ttl: None,
    });
    e.cells = vec![
        complex(
            "tags",
            Some(T0 + 9),
            vec![
                (
                    CellPath::SetElement(text("a")),
                    Some(CqlValue::Empty),
                    T0 + 10,
                ),
                (
                    CellPath::SetElement(text("b")),
                    Some(CqlValue::Empty),
                    T0 + 10,
                ),
            ],
        ),
        complex(
            "attrs",
            Some(T0 + 9),
            vec![(CellPath::MapKey(text("x")), Some(CqlValue::Int(1)), T0 + 10)],
        ),
        complex(
            "log",
            Some(T0 + 9),
            vec![(
                CellPath::ListIndex(tu(100)),
                Some(CqlValue::Int(10)),
                T0 + 10,
            )],
        ),
    ];
    events.push(e);
    // tags = tags + {c}; tags = tags - {a}; attrs['y'] = 2; attrs['x'] = 5 (newer);
    // log = log + [20] (later timeuuid) and log = [5] + log (earlier timeuuid).
    let mut e = f.event(1, 0, Operation::Update);
    e.cells = vec![
        complex(
            "tags",
            None,
            vec![
                (
                    CellPath::SetElement(text("c")),
                    Some(CqlValue::Empty),
                    T0 + 20,
                ),
                (CellPath::SetElement(text("a")), None, T0 + 20),
            ],
        ),
        complex(
            "attrs",
            None,
            vec![
                (CellPath::MapKey(text("y")), Some(CqlValue::Int(2)), T0 + 20),
                (CellPath::MapKey(text("x")), Some(CqlValue::Int(5)), T0 + 20),
            ],
        ),
        complex(
            "log",
            None,
            vec![
                (
                    CellPath::ListIndex(tu(200)),
                    Some(CqlValue::Int(20)),
                    T0 + 20,
                ),
                (CellPath::ListIndex(tu(50)), Some(CqlValue::Int(5)), T0 + 20),
            ],
        ),
    ];
    events.push(e);
    // An older write of attrs['x'] arriving late changes nothing; an old append to tags made
    // before the INSERT's overwrite stays overwritten.
    let mut e = f.event(1, 0, Operation::Update);
    e.cells = vec![
        complex(
            "attrs",
            None,
            vec![(CellPath::MapKey(text("x")), Some(CqlValue::Int(3)), T0 + 15)],
        ),
        complex(
            "tags",
            None,
            vec![(
                CellPath::SetElement(text("old")),
                Some(CqlValue::Empty),
                T0 + 5,
            )],
        ),
    ];
    events.push(e);
    // Row 2: a collection-only row, then the whole collection deleted (DELETE log FROM …).
    let mut e = f.event(2, 0, Operation::Update);
    e.cells = vec![complex(
        "log",
        None,
        vec![(
            CellPath::ListIndex(tu(100)),
            Some(CqlValue::Int(1)),
            T0 + 10,
        )],
    )];
    events.push(e);
    let mut e = f.event(2, 0, Operation::Update);
    e.cells = vec![complex("log", Some(T0 + 30), vec![])];
    events.push(e);

    f.dest
        .prepare_table(&shape)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Apply in reverse order and twice: the same answer.
    for (first, evs) in [
        (0, events.clone()),
        (100, events.into_iter().rev().collect()),
    ] {
        let mut batch = f.batch(first, evs);
        batch.shape = shape.clone();
        let outcome = f.dest.write_batch(GROUP, &batch).await;
        assert!(
            matches!(outcome, Ok(WriteOutcome::Written { .. })),
            "{outcome:?}"
        );
        assert_eq!(
            f.text(&format!(
                "SELECT id, tags, attrs, log FROM {} ORDER BY id",
                f.view()
            ))
            .await,
            r"1	['b','c']	{'x':5,'y':2}	[5,10,20]"
        );
    }
    f.drop().await;
}

#[tokio::test]
async fn an_offsets_only_batch_on_a_new_keyspace_is_stored() {
    let f = Fixture::new("ch_offonly");
    // Every event of the range was dead-lettered: only the offsets remain to store.
    let batch = TableBatch {
        shape: f.shape(),
        events: Vec::new(),
        next_offsets: vec![NextOffset {
            topic: f.topic.clone(),
            partition: 2,
            next_offset: 17,
        }],
    };
    let outcome = f.dest.write_batch(GROUP, &batch).await;
    assert!(
        matches!(outcome, Ok(WriteOutcome::Written { rows: 0 })),
        "{outcome:?}"
    );
    let loaded = f
        .dest
        .load_offsets(
            GROUP,
            &[TopicPartition {
                topic: f.topic.clone(),
                partition: 2,
            }],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded[0].1, Some(17));
    f.drop().await;
}

#[tokio::test]
async fn a_column_re_added_with_another_type_is_archived_and_recreated() {
    let f = Fixture::new("ch_retype");
    f.write_all(0, vec![f.insert(1, 0, T0)], 10).await;
    // `score` dropped and re-added as text in Cassandra (docs/schema-evolution.md).
    let mut shape = f.shape();
    for c in &mut shape.columns {
        if c.name == "score" {
            c.cql_type = CqlType::Text;
        }
    }
    let mut e = f.event(2, 0, Operation::Update);
    e.cells = vec![set("score", CqlValue::Text("high".into()), T0 + 10)];
    let mut batch = f.batch(1, vec![e]);
    batch.shape = shape;
    f.dest
        .prepare_table(&batch.shape)
        .await
        .unwrap_or_else(|e| panic!("prepare: {e}"));
    let outcome = f
        .dest
        .write_batch(GROUP, &batch)
        .await
        .unwrap_or_else(|e| panic!("a retyped column is re-created, not refused: {e}"));
    assert!(
        matches!(outcome, WriteOutcome::Written { .. }),
        "{outcome:?}"
    );
    // The old Int64 values are archived (hidden), the column is now a string.
    let ty = f
        .text(&format!(
            "SELECT type FROM system.columns WHERE database = '{}' AND table = '{}' AND name = 'score'",
            f.keyspace, f.table
        ))
        .await;
    assert_eq!(ty, "Nullable(String)");
    let archived = f
        .text(&format!(
            "SELECT type FROM system.columns WHERE database = '{}' AND table = '_cdc_state_{}' AND name = '_cdc_old1__score'",
            f.keyspace, f.table
        ))
        .await;
    assert_eq!(archived, "Nullable(Int64)");
    assert_eq!(
        f.text(&format!("SELECT score FROM {} WHERE id = 2", f.view()))
            .await,
        "high"
    );
    // A late event written before the change (old shape, Int64 value): its score cell is dead
    // in Cassandra and left out; the rest of the row is written.
    let late = f.insert(3, 0, T0 - 5);
    f.write_all(2, vec![late], 10).await;
    assert_eq!(f.view_count().await, 3);
    assert_eq!(
        f.text(&format!(
            "SELECT name, score FROM {} WHERE id = 3",
            f.view()
        ))
        .await,
        "user 3\t\\N"
    );
    f.drop().await;
}

#[tokio::test]
async fn counters_sum_the_newest_shard_of_each_counter_id() {
    use cdc_model::{CounterShard, CounterShardKind};
    let f = Fixture::new("ch_counter");
    let mut shape = f.shape();
    shape
        .columns
        .push(col("hits", "counter", ColumnKind::Regular));
    let (node_a, node_b) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb));
    let bump = |id: i32, counter_id: Uuid, clock: i64, count: i64| {
        let mut e = f.event(id, 0, Operation::Update);
        e.cells = vec![CellChange {
            column: "hits".into(),
            writetime_micros: T0 + clock,
            ttl: None,
            change: CellValue::Counter {
                shards: vec![CounterShard {
                    counter_id,
                    clock,
                    count,
                    kind: CounterShardKind::Global,
                }],
            },
        }];
        e
    };
    // Node A's shard reaches 5 at clock 3, node B's 2 at clock 2: hits = 7, in any order.
    let events = vec![
        bump(1, node_a, 2, 4),
        bump(1, node_b, 1, 1),
        bump(1, node_a, 3, 5),
        bump(1, node_a, 1, 1),
        bump(1, node_b, 2, 2),
    ];
    f.dest
        .prepare_table(&shape)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (first, evs) in [
        (0, events.clone()),
        (10, events.into_iter().rev().collect::<Vec<_>>()),
    ] {
        let mut batch = f.batch(first, evs);
        batch.shape = shape.clone();
        let outcome = f.dest.write_batch(GROUP, &batch).await;
        assert!(
            matches!(outcome, Ok(WriteOutcome::Written { .. })),
            "{outcome:?}"
        );
        assert_eq!(
            f.text(&format!("SELECT id, hits FROM {}", f.view())).await,
            "1\t7"
        );
    }
    f.drop().await;
}

async fn write_with<D: Destination>(dest: &D, batch: &TableBatch) {
    dest.prepare_table(&batch.shape)
        .await
        .unwrap_or_else(|e| panic!("prepare: {e}"));
    let outcome = dest.write_batch(GROUP, batch).await;
    assert!(
        matches!(outcome, Ok(WriteOutcome::Written { .. })),
        "{outcome:?}"
    );
}

fn evolving(
    f: &Fixture,
    drop_columns: bool,
    column_renames: Vec<cdc_config::ColumnRename>,
) -> EvolvingDestination<ClickHouseDestination> {
    EvolvingDestination::new(
        ClickHouseDestination::new(f.dest.settings().clone()),
        &EvolutionOptions {
            drop_columns,
            column_renames,
        },
    )
}

/// `DROP COLUMN email` in Cassandra (docs/schema-evolution.md): with `drop_columns: true` the
/// column and its bookkeeping columns leave the state table and the view before the first event
/// of the newer schema, and a late event of the old schema does not bring it back; with
/// `false` it is kept with its values.
#[tokio::test]
async fn drop_columns_on_drops_the_column_and_off_keeps_it() {
    for on in [true, false] {
        let f = Fixture::new(if on { "ch_drop_on" } else { "ch_drop_off" });
        let dest = evolving(&f, on, Vec::new());
        write_with(&dest, &f.batch(0, vec![f.insert(1, 0, T0)])).await;
        let mut v2 = f.shape();
        v2.columns.retain(|c| c.name != "email");
        v2.dropped.insert("email".into(), T0 + 5);
        let mut b = f.batch(1, vec![f.update_score(2, 0, 20, T0 + 10)]);
        b.shape = v2;
        write_with(&dest, &b).await;
        let email_columns = |table: String| {
            format!(
                "SELECT count() FROM system.columns WHERE database = '{}' AND table = '{table}' \
                 AND position(name, 'email') > 0",
                f.keyspace
            )
        };
        if on {
            assert_eq!(
                f.count(&email_columns(format!("_cdc_state_{}", f.table)))
                    .await,
                0
            );
            assert_eq!(f.count(&email_columns(f.table.clone())).await, 0);
            // A late event of the old schema: its email cell is dead in Cassandra.
            write_with(&dest, &f.batch(2, vec![f.insert(3, 0, T0 + 1)])).await;
            assert_eq!(
                f.count(&email_columns(format!("_cdc_state_{}", f.table)))
                    .await,
                0
            );
            assert_eq!(
                f.text(&format!(
                    "SELECT id, name, score FROM {} ORDER BY id",
                    f.view()
                ))
                .await,
                "1\tuser 1\t1\n2\t\\N\t20\n3\tuser 3\t3"
            );
        } else {
            assert_eq!(
                f.text(&format!("SELECT id, email FROM {} ORDER BY id", f.view()))
                    .await,
                "1\tfake.user1@example.test\n2\t\\N",
                "drop_columns: false keeps the column with its values"
            );
        }
        f.drop().await;
    }
}

/// `ALTER TABLE … RENAME ck TO slot` (a clustering column) in Cassandra. ClickHouse cannot
/// rename key columns: with `column_renames` the events carrying `slot` are written to `ck`
/// (rows before and after the rename in one table); without a mapping the old state table is
/// retired like on DROP + CREATE TABLE, replication continues in a fresh one, and late events
/// with the old name are left out.
#[tokio::test]
async fn clustering_rename_is_mapped_when_configured_else_a_new_table() {
    for mapped in [true, false] {
        let f = Fixture::new(if mapped { "ch_ren_map" } else { "ch_ren_nomap" });
        let renames = if mapped {
            vec![cdc_config::ColumnRename {
                table: format!("{}.{}", f.keyspace, f.table),
                from: "ck".into(),
                to: "slot".into(),
            }]
        } else {
            Vec::new()
        };
        let dest = evolving(&f, false, renames);
        write_with(
            &dest,
            &f.batch(0, vec![f.insert(1, 1, T0), f.insert(1, 2, T0)]),
        )
        .await;
        let renamed = |mut e: ChangeEvent| {
            for k in &mut e.clustering_key {
                k.name = "slot".into();
            }
            e
        };
        let mut after = f.shape();
        for c in &mut after.columns {
            if c.name == "ck" {
                c.name = "slot".into();
            }
        }
        let mut b = f.batch(
            2,
            vec![
                renamed(f.insert(1, 3, T0 + 10)),
                renamed(f.update_score(1, 1, 100, T0 + 10)),
            ],
        );
        b.shape = after.clone();
        write_with(&dest, &b).await;
        let retired = format!(
            "SELECT count() FROM system.tables WHERE database = '{}' \
             AND startsWith(name, '_cdc_state_{}__dropped_')",
            f.keyspace, f.table
        );
        if mapped {
            assert_eq!(
                f.text(&format!("SELECT ck, score FROM {} ORDER BY ck", f.view()))
                    .await,
                "1\t100\n2\t1\n3\t1"
            );
            assert_eq!(
                f.count(&format!(
                    "SELECT count() FROM system.columns WHERE database = '{}' AND name = 'slot'",
                    f.keyspace
                ))
                .await,
                0
            );
            assert_eq!(f.count(&retired).await, 0);
        } else {
            assert_eq!(
                f.text(&format!(
                    "SELECT slot, score FROM {} ORDER BY slot",
                    f.view()
                ))
                .await,
                "1\t100\n3\t1"
            );
            assert_eq!(
                f.count(&retired).await,
                1,
                "the old state table is kept aside"
            );
            // A late event with the old name: left out, nothing retired again.
            write_with(&dest, &f.batch(4, vec![f.insert(1, 5, T0 + 2)])).await;
            // A batch mixing both names: split by key, the old-name event left out.
            let mut b = f.batch(
                5,
                vec![f.insert(1, 7, T0 + 3), renamed(f.insert(1, 6, T0 + 20))],
            );
            let mut mixed = f.shape();
            mixed.merge(&after);
            b.shape = mixed;
            write_with(&dest, &b).await;
            assert_eq!(
                f.text(&format!("SELECT slot FROM {} ORDER BY slot", f.view()))
                    .await,
                "1\n3\n6"
            );
            assert_eq!(f.count(&retired).await, 1);
        }
        f.drop().await;
    }
}

#[path = "common/mod.rs"]
mod common;

/// The view's rows as JSON objects of `columns`, sorted; empty collections and all-null UDT
/// tuples read as null (ClickHouse cannot make composite types Nullable; Cassandra does not tell
/// an empty collection from null).
async fn ch_view_json(
    client: &clickhouse::Client,
    database: &str,
    table: &str,
    columns: &[&str],
) -> Vec<serde_json::Value> {
    let cols: Vec<String> = columns.iter().map(|c| format!("`{c}`")).collect();
    let sql = format!(
        "SELECT {} FROM `{database}`.`{table}` SETTINGS output_format_json_named_tuples_as_objects = 1",
        cols.join(", ")
    );
    let mut cursor = client
        .query(&sql)
        .fetch_bytes("JSONEachRow")
        .unwrap_or_else(|e| panic!("query failed: {e}"));
    let bytes = cursor
        .collect()
        .await
        .unwrap_or_else(|e| panic!("query {sql} failed: {e}"));
    let mut rows: Vec<serde_json::Value> = String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("JSON {l}: {e}")))
        .map(|mut row: serde_json::Value| {
            if let serde_json::Value::Object(m) = &mut row {
                for v in m.values_mut() {
                    let empty = match v {
                        serde_json::Value::Array(a) => a.is_empty(),
                        serde_json::Value::Object(o) => o.values().all(|x| x.is_null()),
                        _ => false,
                    };
                    if empty {
                        *v = serde_json::Value::Null;
                    }
                }
            }
            row
        })
        .collect();
    common::sort_json(&mut rows);
    rows
}

/// Applies `events` in arrival order (batch `sizes`), replays them (whole, then reversed one by
/// one), and writes them reversed into a fresh database; compares with `expected` each time.
async fn ch_converges(
    schema: &cdc_model::TableSchema,
    events: &[ChangeEvent],
    sizes: &[usize],
    columns: &[&str],
    expected: &[serde_json::Value],
) {
    let env = StackEnv::load();
    let settings = ClickHouseSettings::for_url(env.clickhouse_url.clone());
    let client = settings.client();
    let dest = ClickHouseDestination::new(settings);
    let write = |shape: TableShape, events: Vec<ChangeEvent>, sizes: Vec<usize>, first: i64| {
        let dest = &dest;
        async move {
            let topic = format!("cdc.masked.{}.{}", shape.keyspace, shape.table);
            dest.prepare_table(&shape).await.expect("prepare");
            let mut offset = first;
            let mut rest: &[ChangeEvent] = &events;
            let mut sizes = sizes.into_iter();
            while !rest.is_empty() {
                let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
                let (now, later) = rest.split_at(n);
                let outcome = dest
                    .write_batch(GROUP, &common::batch(&shape, &topic, offset, now))
                    .await;
                assert!(
                    matches!(outcome, Ok(WriteOutcome::Written { .. })),
                    "{outcome:?}"
                );
                offset += n as i64;
                rest = later;
            }
            offset
        }
    };
    let shape = common::shape_of(schema);
    let database = dest.settings().database(&shape.keyspace);
    let next = write(shape.clone(), events.to_vec(), sizes.to_vec(), 0).await;
    let got = ch_view_json(&client, &database, &shape.table, columns).await;
    assert_eq!(got, expected, "events in arrival order");
    let next = write(shape.clone(), events.to_vec(), Vec::new(), next).await;
    let reversed: Vec<ChangeEvent> = events.iter().rev().cloned().collect();
    write(shape.clone(), reversed.clone(), vec![1; events.len()], next).await;
    let got = ch_view_json(&client, &database, &shape.table, columns).await;
    assert_eq!(got, expected, "after two replays");
    let mut fresh = shape.clone();
    fresh.keyspace = format!("{}_rev", shape.keyspace);
    write(fresh.clone(), reversed, Vec::new(), 0).await;
    let fresh_db = dest.settings().database(&fresh.keyspace);
    let got = ch_view_json(&client, &fresh_db, &fresh.table, columns).await;
    assert_eq!(got, expected, "events in reverse order");
    for db in [database, fresh_db] {
        let _ = client
            .query(&format!("DROP DATABASE IF EXISTS `{db}`"))
            .execute()
            .await;
    }
}

/// A partition holding only static data appears in the view with null clustering and regular
/// columns, exactly as Cassandra's `SELECT` shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_only_partitions_appear_like_in_cassandra() {
    let env = StackEnv::load();
    let cass = common::Cassandra::connect(&env, "ch_static").await;
    let (schema, events, expected) = common::static_scenario(&cass).await;
    ch_converges(
        &schema,
        &events,
        &[3, 2],
        &["pk", "ck", "v", "s"],
        &expected,
    )
    .await;
    cass.drop().await;
}

/// Non-frozen UDT field updates (and list/set/map element updates) converge to Cassandra's
/// answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udt_field_and_collection_element_updates_converge_like_cassandra() {
    let env = StackEnv::load();
    let cass = common::Cassandra::connect(&env, "ch_coll").await;
    let (schema, events, expected) = common::collection_scenario(&cass).await;
    ch_converges(
        &schema,
        &events,
        &[1, 4, 2],
        &["pk", "l", "st", "m", "u", "ml"],
        &expected,
    )
    .await;
    cass.drop().await;
}
