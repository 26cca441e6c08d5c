//! Shared by the integration test binaries (`#[path]`-included): a Cassandra keyspace to ask
//! "what does Cassandra return for these writes?", and hand-built change events and batches that
//! mirror the CQL a test runs (what the capture service would emit for it).

#![allow(dead_code)]

use std::time::Duration;

use cdc_model::{
    CellChange, CellPath, CellValue, ChangeEvent, ClusteringBound, ClusteringOrder, ColumnKind,
    ColumnSchema, ComplexDeletion, CqlType, CqlValue, Deletion, DeletionScope, ElementChange,
    KeyColumn, Liveness, Operation, SourceInfo, TableSchema,
};
use cdc_sink::{BatchEvent, ColumnDef, NextOffset, SourceOffset, TableBatch, TableShape};
use cdc_testkit::{StackEnv, unique_name};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use serde_json::{Value as Json, json};
use uuid::Uuid;

/// A fresh keyspace in the stack's Cassandra.
pub struct Cassandra {
    session: Session,
    pub keyspace: String,
}

impl Cassandra {
    /// Connects and creates a keyspace named after `prefix` (fails, never skips, when down).
    pub async fn connect(stack: &StackEnv, prefix: &str) -> Cassandra {
        let session = SessionBuilder::new()
            .known_node(&stack.cassandra_cql)
            .connection_timeout(Duration::from_secs(10))
            .build()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot connect to Cassandra at {}: {e}",
                    stack.cassandra_cql
                )
            });
        let keyspace = unique_name(prefix);
        let c = Cassandra { session, keyspace };
        c.run(&format!(
            "CREATE KEYSPACE {} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}",
            c.keyspace
        ))
        .await;
        c
    }

    /// Runs one CQL statement (`{ks}` is replaced by the keyspace).
    pub async fn run(&self, cql: &str) {
        let cql = cql.replace("{ks}", &self.keyspace);
        self.session
            .query_unpaged(cql.clone(), &[])
            .await
            .unwrap_or_else(|e| panic!("CQL failed: {cql}: {e}"));
    }

    /// `SELECT JSON * FROM ks.table`: Cassandra's answer, one JSON object per row, sorted.
    pub async fn select_json(&self, table: &str) -> Vec<Json> {
        let rows = self
            .session
            .query_unpaged(format!("SELECT JSON * FROM {}.{table}", self.keyspace), &[])
            .await
            .unwrap_or_else(|e| panic!("SELECT JSON from {table}: {e}"))
            .into_rows_result()
            .unwrap_or_else(|e| panic!("rows of {table}: {e}"));
        let mut out: Vec<Json> = rows
            .rows::<(String,)>()
            .unwrap_or_else(|e| panic!("rows of {table}: {e}"))
            .map(|r| {
                let (text,) = r.unwrap_or_else(|e| panic!("row of {table}: {e}"));
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("JSON of {table}: {e}"))
            })
            .collect();
        sort_json(&mut out);
        out
    }

    pub async fn drop(&self) {
        let _ = self
            .session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", self.keyspace), &[])
            .await;
    }
}

/// Sorts rows by their JSON text (a stable order to compare two answers).
pub fn sort_json(rows: &mut [Json]) {
    rows.sort_by_key(|r| r.to_string());
}

/// The table shape of a schema (what the envelopes describe).
pub fn shape_of(schema: &TableSchema) -> TableShape {
    TableShape {
        keyspace: schema.keyspace.clone(),
        table: schema.table.clone(),
        dropped: Default::default(),
        columns: schema
            .columns
            .iter()
            .map(|c| ColumnDef {
                name: c.name.clone(),
                cql_type: c.cql_type.clone(),
                kind: c.kind,
            })
            .collect(),
    }
}

/// Builds events of one table.
pub struct Events {
    pub keyspace: String,
    pub table: String,
    seq: u32,
}

impl Events {
    pub fn new(keyspace: &str, table: &str) -> Events {
        Events {
            keyspace: keyspace.into(),
            table: table.into(),
            seq: 0,
        }
    }

    /// An event on `pk` (and the clustering `ck`, empty for partition-level events).
    pub fn event(&mut self, pk: Vec<KeyColumn>, ck: Vec<KeyColumn>) -> ChangeEvent {
        self.seq += 1;
        let source = SourceInfo {
            cluster: "test".into(),
            host_id: Uuid::from_u128(1),
            keyspace: self.keyspace.clone(),
            table: self.table.clone(),
            table_id: Uuid::from_u128(2),
            schema_version: 1,
            segment_id: 1,
            segment_position: self.seq,
            index: 0,
        };
        ChangeEvent {
            correlation_id: source.correlation_id(),
            source,
            op: Operation::Update,
            partition_key: pk,
            clustering_key: ck,
            is_static: false,
            liveness: None,
            deletion: None,
            cells: Vec::new(),
            captured_at_ms: 0,
        }
    }
}

pub fn int(name: &str, v: i32) -> KeyColumn {
    KeyColumn::new(name, CqlValue::Int(v))
}

pub fn text(name: &str, v: &str) -> KeyColumn {
    KeyColumn::new(name, CqlValue::Text(v.into()))
}

/// The row marker of an INSERT at `wt`.
pub fn marker(e: &mut ChangeEvent, wt: i64) {
    e.op = Operation::Insert;
    e.liveness = Some(Liveness {
        writetime_micros: wt,
        ttl: None,
    });
}

pub fn set(column: &str, value: CqlValue, wt: i64) -> CellChange {
    CellChange {
        column: column.into(),
        writetime_micros: wt,
        ttl: None,
        change: CellValue::Set { value },
    }
}

pub fn tombstone(column: &str, wt: i64) -> CellChange {
    CellChange {
        column: column.into(),
        writetime_micros: wt,
        ttl: None,
        change: CellValue::Tombstone,
    }
}

/// A non-frozen column change: an optional whole-column deletion and element cells.
pub fn complex(column: &str, deletion: Option<i64>, elements: Vec<ElementChange>) -> CellChange {
    let wt = deletion
        .into_iter()
        .chain(elements.iter().map(|e| e.writetime_micros))
        .max()
        .unwrap_or(0);
    CellChange {
        column: column.into(),
        writetime_micros: wt,
        ttl: None,
        change: CellValue::Complex {
            deletion: deletion.map(|d| ComplexDeletion {
                marked_for_delete_at_micros: d,
                local_deletion_time_secs: 0,
            }),
            elements,
        },
    }
}

/// One element cell (`None`: an element tombstone).
pub fn element(path: CellPath, value: Option<CqlValue>, wt: i64) -> ElementChange {
    ElementChange {
        path,
        value,
        writetime_micros: wt,
        ttl: None,
    }
}

/// A live set element.
pub fn set_element(v: CqlValue, wt: i64) -> ElementChange {
    element(CellPath::SetElement(v), Some(CqlValue::Empty), wt)
}

/// A version-1 timeuuid at `ticks` (100 ns units): list cell paths.
pub fn timeuuid(ticks: u64) -> Uuid {
    let msb = ((ticks & 0xFFFF_FFFF) << 32)
        | (((ticks >> 32) & 0xFFFF) << 16)
        | 0x1000
        | ((ticks >> 48) & 0x0FFF);
    Uuid::from_u128((u128::from(msb) << 64) | 0x8000_0000_0000_0001)
}

pub fn deletion(e: &mut ChangeEvent, scope: DeletionScope, wt: i64) {
    e.op = Operation::Delete;
    e.deletion = Some(Deletion {
        scope,
        marked_for_delete_at_micros: wt,
        local_deletion_time_secs: 0,
    });
}

pub fn bound(prefix: Vec<KeyColumn>, inclusive: bool) -> ClusteringBound {
    ClusteringBound { prefix, inclusive }
}

/// A batch of `events` from partition 0 starting at offset `first`.
pub fn batch(shape: &TableShape, topic: &str, first: i64, events: &[ChangeEvent]) -> TableBatch {
    TableBatch {
        shape: shape.clone(),
        events: events
            .iter()
            .enumerate()
            .map(|(i, e)| BatchEvent {
                event: e.clone(),
                source: SourceOffset {
                    topic: topic.into(),
                    partition: 0,
                    offset: first + i as i64,
                },
                payload_bytes: 100,
            })
            .collect(),
        next_offsets: vec![NextOffset {
            topic: topic.into(),
            partition: 0,
            next_offset: first + events.len() as i64,
        }],
    }
}

pub fn column(name: &str, ty: &str, kind: ColumnKind) -> ColumnSchema {
    ColumnSchema {
        name: name.into(),
        cql_type: CqlType::parse(ty).unwrap_or_else(|e| panic!("{e}")),
        kind,
    }
}

pub fn pk(name: &str) -> ColumnSchema {
    column(name, "int", ColumnKind::PartitionKey { position: 0 })
}

pub fn ck(name: &str, ty: &str, position: u16, order: ClusteringOrder) -> ColumnSchema {
    column(name, ty, ColumnKind::Clustering { position, order })
}

pub fn schema(keyspace: &str, table: &str, columns: Vec<ColumnSchema>) -> TableSchema {
    TableSchema {
        keyspace: keyspace.into(),
        table: table.into(),
        id: uuid::Uuid::from_u128(2),
        cdc: true,
        version: 1,
        columns,
        dropped_columns: Vec::new(),
    }
}

/// The static-column scenario shared with the ClickHouse test: schema, events, Cassandra's answer.
pub async fn static_scenario(cass: &Cassandra) -> (TableSchema, Vec<ChangeEvent>, Vec<Json>) {
    cass.run("CREATE TABLE {ks}.st (pk int, ck int, v text, s text static, PRIMARY KEY (pk, ck))")
        .await;
    let ks = cass.keyspace.clone();
    let sch = schema(
        &ks,
        "st",
        vec![
            pk("pk"),
            ck("ck", "int", 0, ClusteringOrder::Asc),
            column("v", "text", ColumnKind::Regular),
            column("s", "text", ColumnKind::Static),
        ],
    );
    let mut ev = Events::new(&ks, "st");
    let mut events = Vec::new();
    let mut cql: Vec<String> = Vec::new();
    let static_set = |ev: &mut Events, p: i32, value: Option<&str>, wt: i64| {
        let mut e = ev.event(vec![int("pk", p)], Vec::new());
        e.is_static = true;
        e.cells = vec![match value {
            Some(v) => set("s", CqlValue::Text(v.into()), wt),
            None => tombstone("s", wt),
        }];
        e
    };
    let row = |ev: &mut Events, p: i32, c: i32, wt: i64| {
        let mut e = ev.event(vec![int("pk", p)], vec![int("ck", c)]);
        marker(&mut e, wt);
        e.cells = vec![set("v", CqlValue::Text(format!("v{p}")), wt)];
        e
    };
    // 1: static only.
    events.push(static_set(&mut ev, 1, Some("s1"), 10));
    cql.push("UPDATE {ks}.st USING TIMESTAMP 10 SET s = 's1' WHERE pk = 1".into());
    // 2: a row and a static value in one INSERT (two events: static row, then the row).
    events.push(static_set(&mut ev, 2, Some("s2"), 10));
    events.push(row(&mut ev, 2, 1, 10));
    cql.push(
        "INSERT INTO {ks}.st (pk, ck, v, s) VALUES (2, 1, 'v2', 's2') USING TIMESTAMP 10".into(),
    );
    // 3: the row is deleted later: static only again.
    events.push(static_set(&mut ev, 3, Some("s3"), 10));
    events.push(row(&mut ev, 3, 1, 10));
    cql.push(
        "INSERT INTO {ks}.st (pk, ck, v, s) VALUES (3, 1, 'v3', 's3') USING TIMESTAMP 10".into(),
    );
    let mut e = ev.event(vec![int("pk", 3)], vec![int("ck", 1)]);
    deletion(&mut e, DeletionScope::Row, 20);
    events.push(e);
    cql.push("DELETE FROM {ks}.st USING TIMESTAMP 20 WHERE pk = 3 AND ck = 1".into());
    // 4: a row, no static value.
    events.push(row(&mut ev, 4, 1, 10));
    cql.push("INSERT INTO {ks}.st (pk, ck, v) VALUES (4, 1, 'v4') USING TIMESTAMP 10".into());
    // 5: the static cell deleted: nothing.
    events.push(static_set(&mut ev, 5, Some("s5"), 10));
    events.push(static_set(&mut ev, 5, None, 20));
    cql.push("UPDATE {ks}.st USING TIMESTAMP 10 SET s = 's5' WHERE pk = 5".into());
    cql.push("DELETE s FROM {ks}.st USING TIMESTAMP 20 WHERE pk = 5".into());
    // 6: partition deleted, then a newer static value and an older one.
    events.push(static_set(&mut ev, 6, Some("s6"), 10));
    let mut e = ev.event(vec![int("pk", 6)], Vec::new());
    deletion(&mut e, DeletionScope::Partition, 20);
    events.push(e);
    events.push(static_set(&mut ev, 6, Some("back"), 30));
    events.push(row(&mut ev, 6, 1, 15));
    cql.push("UPDATE {ks}.st USING TIMESTAMP 10 SET s = 's6' WHERE pk = 6".into());
    cql.push("DELETE FROM {ks}.st USING TIMESTAMP 20 WHERE pk = 6".into());
    cql.push("UPDATE {ks}.st USING TIMESTAMP 30 SET s = 'back' WHERE pk = 6".into());
    cql.push("INSERT INTO {ks}.st (pk, ck, v) VALUES (6, 1, 'v6') USING TIMESTAMP 15".into());
    // 7: static only, then a row arrives.
    events.push(static_set(&mut ev, 7, Some("s7"), 10));
    events.push(row(&mut ev, 7, 2, 30));
    cql.push("UPDATE {ks}.st USING TIMESTAMP 10 SET s = 's7' WHERE pk = 7".into());
    cql.push("INSERT INTO {ks}.st (pk, ck, v) VALUES (7, 2, 'v7') USING TIMESTAMP 30".into());
    for q in &cql {
        cass.run(q).await;
    }
    let expected = cass.select_json("st").await;
    assert!(
        expected.contains(&json!({"pk": 1, "ck": null, "v": null, "s": "s1"})),
        "Cassandra shows a static-only partition: {expected:?}"
    );
    (sch, events, expected)
}

/// The collection/UDT scenario shared by the PostgreSQL/TimescaleDB and ClickHouse tests:
/// schema, events (what capture emits for the CQL) and Cassandra's raw answer.
pub async fn collection_scenario(cass: &Cassandra) -> (TableSchema, Vec<ChangeEvent>, Vec<Json>) {
    cass.run("CREATE TYPE {ks}.addr (street text, zip int)")
        .await;
    cass.run(
        "CREATE TABLE {ks}.co (pk int PRIMARY KEY, l list<text>, st set<int>, m map<text, int>, \
         u addr, ml map<int, text>)",
    )
    .await;
    let ks = cass.keyspace.clone();
    let addr = CqlType::Udt {
        keyspace: ks.clone(),
        name: "addr".into(),
        fields: vec![
            ("street".into(), CqlType::Text),
            ("zip".into(), CqlType::Int),
        ],
        frozen: false,
    };
    let mut sch = schema(
        &ks,
        "co",
        vec![
            pk("pk"),
            column("l", "list<text>", ColumnKind::Regular),
            column("st", "set<int>", ColumnKind::Regular),
            column("m", "map<text, int>", ColumnKind::Regular),
            column("ml", "map<int, text>", ColumnKind::Regular),
        ],
    );
    sch.columns.insert(
        4,
        ColumnSchema {
            name: "u".into(),
            cql_type: addr,
            kind: ColumnKind::Regular,
        },
    );
    let mut ev = Events::new(&ks, "co");
    let mut events = Vec::new();
    let mut cql: Vec<&str> = Vec::new();
    let t = |s: &str| Some(CqlValue::Text(s.into()));
    let li = |ticks: u64| CellPath::ListIndex(timeuuid(ticks));
    let mk = |s: &str| CellPath::MapKey(CqlValue::Text(s.into()));
    let field = |s: &str| CellPath::UdtField(s.into());
    let on = |ev: &mut Events, p: i32, cells| {
        let mut e = ev.event(vec![int("pk", p)], Vec::new());
        e.cells = cells;
        e
    };
    // pk 1, ts 10: INSERT with every column (overwrites: a deletion at ts − 1, then elements).
    let mut e = on(
        &mut ev,
        1,
        vec![
            complex(
                "l",
                Some(9),
                vec![element(li(1000), t("a"), 10), element(li(2000), t("b"), 10)],
            ),
            complex(
                "st",
                Some(9),
                vec![
                    set_element(CqlValue::Int(1), 10),
                    set_element(CqlValue::Int(2), 10),
                ],
            ),
            complex(
                "m",
                Some(9),
                vec![element(mk("k1"), Some(CqlValue::Int(1)), 10)],
            ),
            complex(
                "u",
                Some(9),
                vec![
                    element(field("street"), t("fake street 1"), 10),
                    element(field("zip"), Some(CqlValue::Int(1)), 10),
                ],
            ),
            complex(
                "ml",
                Some(9),
                vec![
                    element(CellPath::MapKey(CqlValue::Int(-5)), t("neg"), 10),
                    element(CellPath::MapKey(CqlValue::Int(3)), t("pos"), 10),
                ],
            ),
        ],
    );
    marker(&mut e, 10);
    events.push(e);
    cql.push(
        "INSERT INTO {ks}.co (pk, l, st, m, u, ml) VALUES (1, ['a', 'b'], {1, 2}, {'k1': 1}, \
         {street: 'fake street 1', zip: 1}, {-5: 'neg', 3: 'pos'}) USING TIMESTAMP 10",
    );
    // Append, prepend (an earlier timeuuid), set by index, remove by value.
    events.push(on(
        &mut ev,
        1,
        vec![complex("l", None, vec![element(li(3000), t("c"), 20)])],
    ));
    cql.push("UPDATE {ks}.co USING TIMESTAMP 20 SET l = l + ['c'] WHERE pk = 1");
    events.push(on(
        &mut ev,
        1,
        vec![complex("l", None, vec![element(li(500), t("z"), 21)])],
    ));
    cql.push("UPDATE {ks}.co USING TIMESTAMP 21 SET l = ['z'] + l WHERE pk = 1");
    events.push(on(
        &mut ev,
        1,
        vec![complex("l", None, vec![element(li(1000), t("B"), 22)])],
    ));
    cql.push("UPDATE {ks}.co USING TIMESTAMP 22 SET l[1] = 'B' WHERE pk = 1");
    events.push(on(
        &mut ev,
        1,
        vec![complex("l", None, vec![element(li(3000), None, 23)])],
    ));
    cql.push("UPDATE {ks}.co USING TIMESTAMP 23 SET l = l - ['c'] WHERE pk = 1");
    // Set add and remove, and an older add arriving after the removal.
    events.push(on(
        &mut ev,
        1,
        vec![complex("st", None, vec![set_element(CqlValue::Int(3), 20)])],
    ));
    cql.push("UPDATE {ks}.co USING TIMESTAMP 20 SET st = st + {3} WHERE pk = 1");
    events.push(on(
        &mut ev,
        1,
        vec![complex(
            "st",
            None,
            vec![element(CellPath::SetElement(CqlValue::Int(1)), None, 21)],
        )],
    ));
    cql.push("UPDATE {ks}.co USING TIMESTAMP 21 SET st = st - {1} WHERE pk = 1");
    events.push(on(
        &mut ev,
        1,
        vec![complex("st", None, vec![set_element(CqlValue::Int(1), 15)])],
    ));
    cql.push("UPDATE {ks}.co USING TIMESTAMP 15 SET st = st + {1} WHERE pk = 1");
    // Map put and remove; UDT field updates (one set, one nulled).
    events.push(on(
        &mut ev,
        1,
        vec![complex(
            "m",
            None,
            vec![element(mk("k2"), Some(CqlValue::Int(2)), 20)],
        )],
    ));
    cql.push("UPDATE {ks}.co USING TIMESTAMP 20 SET m['k2'] = 2 WHERE pk = 1");
    events.push(on(
        &mut ev,
        1,
        vec![complex("m", None, vec![element(mk("k1"), None, 21)])],
    ));
    cql.push("DELETE m['k1'] FROM {ks}.co USING TIMESTAMP 21 WHERE pk = 1");
    events.push(on(
        &mut ev,
        1,
        vec![complex(
            "u",
            None,
            vec![element(field("zip"), Some(CqlValue::Int(2)), 20)],
        )],
    ));
    cql.push("UPDATE {ks}.co USING TIMESTAMP 20 SET u.zip = 2 WHERE pk = 1");
    events.push(on(
        &mut ev,
        1,
        vec![complex("u", None, vec![element(field("street"), None, 25)])],
    ));
    cql.push("UPDATE {ks}.co USING TIMESTAMP 25 SET u.street = null WHERE pk = 1");
    // pk 2: a list, deleted whole; an older append; then the row deleted and a newer map put.
    events.push(on(
        &mut ev,
        2,
        vec![complex("l", Some(9), vec![element(li(100), t("x"), 10)])],
    ));
    cql.push("UPDATE {ks}.co USING TIMESTAMP 10 SET l = ['x'] WHERE pk = 2");
    events.push(on(&mut ev, 2, vec![complex("l", Some(30), Vec::new())]));
    cql.push("DELETE l FROM {ks}.co USING TIMESTAMP 30 WHERE pk = 2");
    events.push(on(
        &mut ev,
        2,
        vec![complex("l", None, vec![element(li(200), t("y"), 5)])],
    ));
    cql.push("UPDATE {ks}.co USING TIMESTAMP 5 SET l = l + ['y'] WHERE pk = 2");
    events.push(on(
        &mut ev,
        2,
        vec![complex("st", None, vec![set_element(CqlValue::Int(9), 31)])],
    ));
    cql.push("UPDATE {ks}.co USING TIMESTAMP 31 SET st = st + {9} WHERE pk = 2");
    let mut e = ev.event(vec![int("pk", 2)], Vec::new());
    deletion(&mut e, DeletionScope::Partition, 40);
    events.push(e);
    cql.push("DELETE FROM {ks}.co USING TIMESTAMP 40 WHERE pk = 2");
    events.push(on(
        &mut ev,
        2,
        vec![complex(
            "m",
            None,
            vec![element(mk("late"), Some(CqlValue::Int(1)), 35)],
        )],
    ));
    cql.push("UPDATE {ks}.co USING TIMESTAMP 35 SET m['late'] = 1 WHERE pk = 2");
    events.push(on(
        &mut ev,
        2,
        vec![complex(
            "m",
            None,
            vec![element(mk("new"), Some(CqlValue::Int(5)), 50)],
        )],
    ));
    cql.push("UPDATE {ks}.co USING TIMESTAMP 50 SET m['new'] = 5 WHERE pk = 2");
    // pk 3: only element writes, all removed: no row.
    events.push(on(
        &mut ev,
        3,
        vec![complex("st", None, vec![set_element(CqlValue::Int(4), 10)])],
    ));
    cql.push("UPDATE {ks}.co USING TIMESTAMP 10 SET st = st + {4} WHERE pk = 3");
    events.push(on(
        &mut ev,
        3,
        vec![complex(
            "st",
            None,
            vec![element(CellPath::SetElement(CqlValue::Int(4)), None, 11)],
        )],
    ));
    cql.push("UPDATE {ks}.co USING TIMESTAMP 11 SET st = st - {4} WHERE pk = 3");
    for q in &cql {
        cass.run(q).await;
    }
    let cassandra = cass.select_json("co").await;
    assert_eq!(
        cassandra
            .iter()
            .find(|r| r["pk"] == json!(1))
            .map(|r| r["l"].clone()),
        Some(json!(["z", "B", "b"])),
        "Cassandra's own answer: {cassandra:?}"
    );
    (sch, events, cassandra)
}
