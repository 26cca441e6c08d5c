//! Cassandra semantics in PostgreSQL and TimescaleDB, checked against Cassandra itself: each test
//! runs CQL (with explicit timestamps) in the stack's Cassandra, builds the change events the
//! capture service emits for those writes, applies them to the destination in arrival order
//! (older writes after newer deletions), replayed, and reordered into other batches, and compares
//! the live view with Cassandra's `SELECT JSON *` every time.

use cdc_model::{
    CellPath, ChangeEvent, ClusteringOrder, ColumnKind, CounterShard, CounterShardKind, CqlValue,
    DeletionScope, TableSchema, Ttl,
};
use cdc_sink::postgres::naming;
use cdc_sink::postgres::{PgSettings, PostgresDestination};
use cdc_sink::timescaledb::{TimescaleOptions, timescale_destination};
use cdc_sink::{Destination, TableShape, WriteOutcome};
use cdc_testkit::{StackEnv, unique_name};
use secrecy::SecretString;
use serde_json::{Value as Json, json};

use crate::common::*;

#[derive(Debug, Clone, Copy)]
enum Target {
    Postgres,
    Timescale,
}

impl Target {
    fn url(self, stack: &StackEnv) -> String {
        match self {
            Target::Postgres => stack.postgres_url.clone(),
            Target::Timescale => stack.timescale_url.clone(),
        }
    }

    fn destination(self, stack: &StackEnv) -> PostgresDestination {
        let settings = PgSettings::new(SecretString::from(self.url(stack)));
        match self {
            Target::Postgres => PostgresDestination::new(&settings).expect("postgres destination"),
            Target::Timescale => timescale_destination(&settings, &TimescaleOptions::default())
                .expect("timescale destination"),
        }
    }
}

async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(conn);
    client
}

/// The live view as JSON objects (column name → value), sorted.
async fn view_json(client: &tokio_postgres::Client, keyspace: &str, table: &str) -> Vec<Json> {
    let view = naming::live_view(keyspace, table);
    let rows = client
        .query(&format!("SELECT to_jsonb(_cdc_r) FROM {view} _cdc_r"), &[])
        .await
        .unwrap_or_else(|e| panic!("read {view}: {e}"));
    let mut out: Vec<Json> = rows.iter().map(|r| r.get(0)).collect();
    sort_json(&mut out);
    out
}

/// Writes `events` in batches of the given sizes (the rest in one batch), continuing at `offset`.
async fn write(
    dest: &PostgresDestination,
    shape: &TableShape,
    offset: &mut i64,
    events: &[ChangeEvent],
    sizes: &[usize],
) {
    dest.prepare_table(shape).await.expect("prepare table");
    let topic = format!("cdc.masked.{}.{}", shape.keyspace, shape.table);
    let mut rest = events;
    let mut sizes = sizes.iter();
    while !rest.is_empty() {
        let n = sizes
            .next()
            .copied()
            .unwrap_or(rest.len())
            .min(rest.len())
            .max(1);
        let (now, later) = rest.split_at(n);
        let outcome = dest
            .write_batch("cdc-sink-semantics", &batch(shape, &topic, *offset, now))
            .await;
        assert!(
            matches!(outcome, Ok(WriteOutcome::Written { .. })),
            "{}.{}: {outcome:?}",
            shape.keyspace,
            shape.table
        );
        *offset += n as i64;
        rest = later;
    }
}

/// Applies `events` to `target` in arrival order with `sizes`, then replayed twice (whole, and
/// reversed one by one), and to a fresh schema in reverse order; compares each state with
/// `expected` (Cassandra's answer, possibly adjusted by `adjust`).
async fn converges(
    stack: &StackEnv,
    target: Target,
    schema: &TableSchema,
    events: &[ChangeEvent],
    sizes: &[usize],
    expected: &[Json],
) {
    let dest = target.destination(stack);
    let client = pg_client(&target.url(stack)).await;
    let shape = shape_of(schema);
    let mut offset = 0;
    write(&dest, &shape, &mut offset, events, sizes).await;
    let got = view_json(&client, &shape.keyspace, &shape.table).await;
    assert_eq!(got, expected, "{target:?}: events in arrival order");
    write(&dest, &shape, &mut offset, events, &[]).await;
    let reversed: Vec<ChangeEvent> = events.iter().rev().cloned().collect();
    write(
        &dest,
        &shape,
        &mut offset,
        &reversed,
        &vec![1; events.len()],
    )
    .await;
    let got = view_json(&client, &shape.keyspace, &shape.table).await;
    assert_eq!(got, expected, "{target:?}: after two replays");
    let mut fresh = shape.clone();
    fresh.keyspace = format!("{}_rev", shape.keyspace);
    let mut offset = 0;
    write(&dest, &fresh, &mut offset, &reversed, &[]).await;
    let got = view_json(&client, &fresh.keyspace, &fresh.table).await;
    assert_eq!(got, expected, "{target:?}: events in reverse order");
}

/// Range tombstones (prefix bounds, exclusive/inclusive ends, a descending clustering column, an
/// open end) stay stored: older writes inside a range arriving after it stay invisible, newer
/// ones (and writes outside) are visible, ties go to the tombstone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_tombstones_shadow_older_writes_arriving_later() {
    let stack = StackEnv::load();
    let cass = Cassandra::connect(&stack, "sem_range").await;
    cass.run(
        "CREATE TABLE {ks}.rt (pk int, c1 int, c2 text, v text, PRIMARY KEY (pk, c1, c2)) \
         WITH CLUSTERING ORDER BY (c1 ASC, c2 DESC)",
    )
    .await;
    let ks = cass.keyspace.clone();
    let sch = schema(
        &ks,
        "rt",
        vec![
            pk("pk"),
            ck("c1", "int", 0, ClusteringOrder::Asc),
            ck("c2", "text", 1, ClusteringOrder::Desc),
            column("v", "text", ColumnKind::Regular),
        ],
    );
    let mut ev = Events::new(&ks, "rt");
    let mut events = Vec::new();
    let insert = |ev: &mut Events, p: i32, c1: i32, c2: &str, v: &str, wt: i64| {
        let mut e = ev.event(vec![int("pk", p)], vec![int("c1", c1), text("c2", c2)]);
        marker(&mut e, wt);
        e.cells = vec![set("v", CqlValue::Text(v.into()), wt)];
        (
            e,
            format!(
                "INSERT INTO {{ks}}.rt (pk, c1, c2, v) VALUES ({p}, {c1}, '{c2}', '{v}') USING TIMESTAMP {wt}"
            ),
        )
    };
    let mut cql = Vec::new();
    for c1 in 1..=8 {
        for c2 in ["a", "m", "z"] {
            let (e, q) = insert(&mut ev, 1, c1, c2, &format!("old-{c1}{c2}"), 50);
            events.push(e);
            cql.push(q);
        }
    }
    let (e, q) = insert(&mut ev, 2, 2, "a", "other partition", 50);
    events.push(e);
    cql.push(q);
    let range = |ev: &mut Events, start, end, wt: i64, q: &str| {
        let mut e = ev.event(vec![int("pk", 1)], Vec::new());
        deletion(&mut e, DeletionScope::Range { start, end }, wt);
        (e, q.to_owned())
    };
    let ranges = [
        // c1 = 2: both bounds the prefix (2), inclusive.
        range(
            &mut ev,
            bound(vec![int("c1", 2)], true),
            bound(vec![int("c1", 2)], true),
            100,
            "DELETE FROM {ks}.rt USING TIMESTAMP 100 WHERE pk = 1 AND c1 = 2",
        ),
        // 3 < c1 <= 5.
        range(
            &mut ev,
            bound(vec![int("c1", 3)], false),
            bound(vec![int("c1", 5)], true),
            100,
            "DELETE FROM {ks}.rt USING TIMESTAMP 100 WHERE pk = 1 AND c1 > 3 AND c1 <= 5",
        ),
        // c1 = 7 AND c2 > 'm': c2 is descending, so the slice runs from the start of c1 = 7 to
        // (7, 'm') exclusive.
        range(
            &mut ev,
            bound(vec![int("c1", 7)], true),
            bound(vec![int("c1", 7), text("c2", "m")], false),
            100,
            "DELETE FROM {ks}.rt USING TIMESTAMP 100 WHERE pk = 1 AND c1 = 7 AND c2 > 'm'",
        ),
        // c1 >= 8, open end, older than the rows: deletes nothing.
        range(
            &mut ev,
            bound(vec![int("c1", 8)], true),
            bound(Vec::new(), true),
            40,
            "DELETE FROM {ks}.rt USING TIMESTAMP 40 WHERE pk = 1 AND c1 >= 8",
        ),
    ];
    for (e, q) in ranges {
        events.push(e);
        cql.push(q);
    }
    let first_batch = events.len();
    // Older writes arriving after the ranges: inside (invisible) and outside (visible).
    for (c1, c2, v, wt) in [
        (2, "q", "late-inside", 60),
        (4, "b", "late-inside", 90),
        (7, "zz", "late-inside", 99),
        (5, "tie", "same-time-as-the-range", 100),
        (7, "b", "late-outside", 99),
        (3, "x", "late-outside", 99),
        (9, "a", "late-after-open-range", 30),
        (5, "new", "newer-than-the-range", 150),
    ] {
        let (e, q) = insert(&mut ev, 1, c1, c2, v, wt);
        events.push(e);
        cql.push(q);
    }
    // A cell-only update newer than the range: the row is live through its cell.
    let mut e = ev.event(vec![int("pk", 1)], vec![int("c1", 2), text("c2", "a")]);
    e.cells = vec![set("v", CqlValue::Text("updated".into()), 150)];
    events.push(e);
    cql.push(
        "UPDATE {ks}.rt USING TIMESTAMP 150 SET v = 'updated' WHERE pk = 1 AND c1 = 2 AND c2 = 'a'"
            .into(),
    );
    for q in &cql {
        cass.run(q).await;
    }
    let expected = cass.select_json("rt").await;
    assert!(
        expected
            .iter()
            .any(|r| r["v"] == json!("newer-than-the-range"))
            && !expected.iter().any(|r| r["v"] == json!("late-inside")),
        "Cassandra's own answer: {expected:?}"
    );
    for target in [Target::Postgres, Target::Timescale] {
        // The ranges in one batch, then each late write in its own batch.
        let mut sizes = vec![first_batch];
        sizes.extend(std::iter::repeat_n(1, events.len() - first_batch));
        converges(&stack, target, &sch, &events, &sizes, &expected).await;
    }
    cass.drop().await;
}

/// Static columns: a partition holding only static data appears with null clustering and regular
/// columns, as in Cassandra; once a live row exists the static values are joined to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_only_partitions_appear_like_in_cassandra() {
    let stack = StackEnv::load();
    let cass = Cassandra::connect(&stack, "sem_static").await;
    let (sch, events, expected) = static_scenario(&cass).await;
    for target in [Target::Postgres, Target::Timescale] {
        converges(&stack, target, &sch, &events, &[3, 2], &expected).await;
    }
    cass.drop().await;
}

/// Element-level updates of non-frozen lists, sets, maps and UDTs: appends, prepends, set by
/// index, removals, whole-column deletes and overwrites, UDT field updates, older writes arriving
/// late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_and_udt_element_updates_converge_like_cassandra() {
    let stack = StackEnv::load();
    let cass = Cassandra::connect(&stack, "sem_coll").await;
    let (sch, events, cassandra) = collection_scenario(&cass).await;
    // Cassandra's JSON writes map<int, text> as an object with string keys; the jsonb form of
    // maps with non-text keys is an array of [key, value] pairs (see cdc_typemap::postgres).
    let mut expected: Vec<Json> = cassandra
        .into_iter()
        .map(|mut r| {
            if let Some(Json::Object(m)) = r.get("ml").cloned() {
                let pairs: Vec<Json> = m
                    .iter()
                    .map(|(k, v)| json!([k.parse::<i64>().unwrap_or(0), v]))
                    .collect();
                r["ml"] = Json::Array(pairs);
            }
            r
        })
        .collect();
    sort_json(&mut expected);
    for target in [Target::Postgres, Target::Timescale] {
        converges(&stack, target, &sch, &events, &[1, 4, 2], &expected).await;
    }
    cass.drop().await;
}

/// Counters: the commit log carries the leader's new global shard (counter id, clock, running
/// count); the value is the sum of the newest shard per counter id, so replays and reordering
/// converge. A deleted counter is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_converge_like_cassandra() {
    let stack = StackEnv::load();
    let cass = Cassandra::connect(&stack, "sem_ctr").await;
    cass.run("CREATE TABLE {ks}.ct (pk int PRIMARY KEY, c counter)")
        .await;
    for q in [
        "UPDATE {ks}.ct SET c = c + 5 WHERE pk = 1",
        "UPDATE {ks}.ct SET c = c + 3 WHERE pk = 1",
        "UPDATE {ks}.ct SET c = c - 10 WHERE pk = 3",
        "UPDATE {ks}.ct SET c = c + 7 WHERE pk = 2",
        "DELETE FROM {ks}.ct WHERE pk = 2",
    ] {
        cass.run(q).await;
    }
    let expected = cass.select_json("ct").await;
    let mut want = vec![json!({"pk": 1, "c": 8}), json!({"pk": 3, "c": -10})];
    sort_json(&mut want);
    assert_eq!(expected, want);
    let ks = cass.keyspace.clone();
    let sch = schema(
        &ks,
        "ct",
        vec![pk("pk"), column("c", "counter", ColumnKind::Regular)],
    );
    let node = uuid::Uuid::from_u128(0xA);
    let mut ev = Events::new(&ks, "ct");
    let shard = |ev: &mut Events, p: i32, clock: i64, count: i64, wt: i64| {
        let mut e = ev.event(vec![int("pk", p)], Vec::new());
        e.cells = vec![cdc_model::CellChange {
            column: "c".into(),
            writetime_micros: wt,
            ttl: None,
            change: cdc_model::CellValue::Counter {
                shards: vec![CounterShard {
                    counter_id: node,
                    clock,
                    count,
                    kind: CounterShardKind::Global,
                }],
            },
        }];
        e
    };
    let mut events = vec![
        shard(&mut ev, 1, 1, 5, 100),
        shard(&mut ev, 1, 2, 8, 101),
        shard(&mut ev, 3, 1, -10, 100),
        shard(&mut ev, 2, 1, 7, 100),
    ];
    let mut e = ev.event(vec![int("pk", 2)], Vec::new());
    deletion(&mut e, DeletionScope::Partition, 200);
    events.push(e);
    for target in [Target::Postgres, Target::Timescale] {
        converges(&stack, target, &sch, &events, &[1, 1], &expected).await;
        // A second replica's shard (another counter id) adds its own running count.
        let dest = target.destination(&stack);
        let client = pg_client(&target.url(&stack)).await;
        let shape = shape_of(&sch);
        let mut other = shard(&mut ev, 1, 4, 10, 150);
        if let cdc_model::CellValue::Counter { shards } = &mut other.cells[0].change {
            shards[0].counter_id = uuid::Uuid::from_u128(0xB);
        }
        let mut offset = 1_000;
        write(&dest, &shape, &mut offset, &[other.clone(), other], &[]).await;
        let got = view_json(&client, &shape.keyspace, &shape.table).await;
        let mut want = vec![json!({"pk": 1, "c": 18}), json!({"pk": 3, "c": -10})];
        sort_json(&mut want);
        assert_eq!(got, want, "{target:?}");
    }
    cass.drop().await;
}

/// Element TTLs: an expired element is hidden (the row too when nothing else is live).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_collection_elements_are_hidden() {
    let stack = StackEnv::load();
    let ks = unique_name("sem_ttl");
    let sch = schema(
        &ks,
        "tt",
        vec![pk("pk"), column("m", "map<text, int>", ColumnKind::Regular)],
    );
    let mut ev = Events::new(&ks, "tt");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let with_ttl = |key: &str, expires: i64| {
        let mut el = element(
            CellPath::MapKey(CqlValue::Text(key.into())),
            Some(CqlValue::Int(1)),
            10,
        );
        el.ttl = Some(Ttl {
            ttl_secs: 60,
            expires_at_secs: expires,
        });
        el
    };
    let mut one = ev.event(vec![int("pk", 1)], Vec::new());
    one.cells = vec![complex(
        "m",
        None,
        vec![with_ttl("gone", now - 10), with_ttl("kept", now + 3600)],
    )];
    let mut two = ev.event(vec![int("pk", 2)], Vec::new());
    two.cells = vec![complex("m", None, vec![with_ttl("gone", now - 10)])];
    for target in [Target::Postgres, Target::Timescale] {
        let dest = target.destination(&stack);
        let client = pg_client(&target.url(&stack)).await;
        let shape = shape_of(&sch);
        let mut offset = 0;
        write(&dest, &shape, &mut offset, &[one.clone(), two.clone()], &[]).await;
        let got = view_json(&client, &ks, "tt").await;
        assert_eq!(got, vec![json!({"pk": 1, "m": {"kept": 1}})], "{target:?}");
    }
}

/// A keyspace named `pg_…` (PostgreSQL reserves such schema names) lands in schema `cdc_pg_…`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_prefixed_keyspaces_land_in_an_escaped_schema() {
    let stack = StackEnv::load();
    let ks = format!("pg_{}", unique_name("ks"));
    let sch = schema(
        &ks,
        "t",
        vec![pk("pk"), column("v", "text", ColumnKind::Regular)],
    );
    let mut ev = Events::new(&ks, "t");
    let mut e = ev.event(vec![int("pk", 1)], Vec::new());
    marker(&mut e, 10);
    e.cells = vec![set("v", CqlValue::Text("fake value".into()), 10)];
    for target in [Target::Postgres, Target::Timescale] {
        let dest = target.destination(&stack);
        let client = pg_client(&target.url(&stack)).await;
        let mut offset = 0;
        write(
            &dest,
            &shape_of(&sch),
            &mut offset,
            std::slice::from_ref(&e),
            &[],
        )
        .await;
        let rows = client
            .query(&format!("SELECT pk, v FROM \"cdc_{ks}\".\"t\""), &[])
            .await
            .unwrap_or_else(|err| panic!("{target:?}: read cdc_{ks}.t: {err}"));
        assert_eq!(rows.len(), 1, "{target:?}");
        assert_eq!(rows[0].get::<_, String>(1), "fake value");
    }
}
