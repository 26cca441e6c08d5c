//! Live golden workload (issue 3, CASSANDRA_COMMITLOG.md §17-B): the cases Cassandra 5.0 allows that
//! `capture_stack.rs` does not already cover live — counters, a logged batch across two tables, a
//! 70-column table with partial updates (both column-subset encodings), DESC and multi-column
//! clustering with range deletes, out-of-order `USING TIMESTAMP`, per-element collection TTL, list
//! index set / append / prepend, set and map element removal, static updates, empty values, a
//! vector, and a tuple plus a frozen UDT in the partition key.
//!
//! Every statement is written with an explicit timestamp (counters cannot be), capture runs
//! in-process over the stack's shared `cdc_raw` (retain mode, filtered to this test's keyspace),
//! and each table's raw topic is read back under read_committed and compared per statement.
//! Simple-column writetimes are cross-checked with `SELECT writetime(col)`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cdc_capture::{CaptureRunner, CaptureSettings, HEADER_CORRELATION_ID};
use cdc_kafka::{
    ConsumerSettings, KafkaSettings, ProducerSettings, ReadCommittedConsumer, StartOffset,
    TopicAdmin, TopicPartition, header_value,
};
use cdc_model::{
    CellPath, CellValue, ChangeEvent, ClusteringBound, CounterShardKind, CqlValue, DeletionScope,
    ElementChange, KeyColumn, Operation, json_codec,
};
use cdc_schema::{CatalogSettings, SchemaCatalog};
use cdc_telemetry::{CaptureMetrics, HealthState, new_registry};
use cdc_testkit::{StackEnv, unique_name};
use scylla::client::session::Session;
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 4;

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

async fn cql(session: &Session, q: &str) {
    session
        .query_unpaged(q, &[])
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"));
}

/// `SELECT writetime(col) FROM ks.table WHERE <where>` as Cassandra reports it.
async fn writetime(session: &Session, ks: &str, table: &str, col: &str, cond: &str) -> i64 {
    let q = format!("SELECT writetime({col}) FROM {ks}.{table} WHERE {cond}");
    let rows = session
        .query_unpaged(q.as_str(), &[])
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"))
        .into_rows_result()
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    let (wt,): (Option<i64>,) = rows.first_row().unwrap_or_else(|e| panic!("{q}: {e}"));
    wt.unwrap_or_else(|| panic!("{q}: null writetime"))
}

struct Capture {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    kafka: KafkaSettings,
}

async fn start_capture(env: &StackEnv, catalog: Arc<SchemaCatalog>, ks: &str) -> Capture {
    let host_id = catalog.local_host_id().await.expect("host id");
    let wanted = ks.to_owned();
    let settings = CaptureSettings {
        cdc_raw_dir: env.cassandra_cdc_raw.clone(),
        cluster: "stack".into(),
        host_id,
        transactional_id: unique_name("capture-workload"),
        positions_topic: unique_name("cdc.capture.positions.workload"),
        poll_interval: Duration::from_millis(100),
        batch_max_events: 500,
        batch_linger: Duration::from_millis(50),
        // The stack's cdc_raw is shared with other tests: never delete anything.
        retain_processed_segments: true,
        cdc_total_space_bytes: 4 << 30,
        table_filter: Arc::new(move |k, _| k == wanted),
        topic_partitions: PARTITIONS,
        replication_factor: 1,
        raw_topic_config: BTreeMap::new(),
        kafka_timeout: Duration::from_secs(20),
        health_interval: Duration::from_secs(2),
        stale_segment_grace: Duration::from_secs(120),
    };
    let kafka = KafkaSettings::new(env.kafka_bootstrap.clone(), unique_name("capture-workload"));
    let registry = new_registry();
    let metrics = CaptureMetrics::new(&registry).expect("metrics");
    let producer = ProducerSettings {
        operation_timeout_ms: 20_000,
        linger_ms: 5,
        ..ProducerSettings::default()
    };
    let runner = CaptureRunner::start(
        settings,
        kafka.clone(),
        &producer,
        catalog,
        metrics,
        HealthState::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("capture start: {e}"));
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = runner.run(token).await {
            panic!("capture run: {e}");
        }
    });
    Capture {
        cancel,
        task,
        kafka,
    }
}

/// Reads `want` events of `topic` (waiting for capture to create it), then `settle` more time to
/// catch extras. Events come back in per-partition order; every table here writes one partition
/// key per topic partition, so statements of one key arrive in write order.
async fn read_topic(kafka: &KafkaSettings, topic: &str, want: usize) -> Vec<ChangeEvent> {
    let admin = TopicAdmin::new(kafka, Duration::from_secs(20)).expect("admin");
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let topics = admin.list_topics().await.unwrap_or_default();
        if topics.iter().any(|t| t == topic) {
            break;
        }
        assert!(Instant::now() < until, "capture never created {topic}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut cs = ConsumerSettings::new(unique_name("capture-workload-reader"));
    cs.operation_timeout_ms = 20_000;
    let (consumer, _events) = ReadCommittedConsumer::new(kafka, &cs).expect("consumer");
    let starts: Vec<_> = (0..PARTITIONS)
        .map(|p| (TopicPartition::new(topic, p), StartOffset::Beginning))
        .collect();
    consumer.assign(&starts).expect("assign");
    let mut seen = Vec::new();
    let take = |m: cdc_kafka::InboundMessage, seen: &mut Vec<ChangeEvent>| {
        let event =
            json_codec::decode_event(m.payload.as_deref().expect("payload")).expect("envelope");
        assert_eq!(
            m.key.as_deref(),
            Some(event.key_string().as_bytes()),
            "key = partition key"
        );
        assert_eq!(
            header_value(&m.headers, HEADER_CORRELATION_ID),
            Some(event.correlation_id.as_bytes())
        );
        seen.push(event);
    };
    let until = Instant::now() + Duration::from_secs(90);
    while seen.len() < want && Instant::now() < until {
        match tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            Ok(Ok(m)) => take(m, &mut seen),
            Ok(Err(e)) => eprintln!("consume error (retrying): {e}"),
            Err(_) => {}
        }
    }
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            take(m, &mut seen);
        }
    }
    assert_eq!(seen.len(), want, "{topic}: events {seen:#?}");
    seen
}

fn set(e: &ChangeEvent, col: &str) -> CqlValue {
    match e.cell(col).map(|c| &c.change) {
        Some(CellValue::Set { value }) => value.clone(),
        other => panic!("{col}: {other:?}"),
    }
}

fn elements<'a>(e: &'a ChangeEvent, col: &str) -> &'a [ElementChange] {
    match e.cell(col).map(|c| &c.change) {
        Some(CellValue::Complex { elements, .. }) => elements,
        other => panic!("{col}: {other:?}"),
    }
}

fn complex_deletion(e: &ChangeEvent, col: &str) -> Option<i64> {
    match e.cell(col).map(|c| &c.change) {
        Some(CellValue::Complex { deletion, .. }) => {
            deletion.map(|d| d.marked_for_delete_at_micros)
        }
        other => panic!("{col}: {other:?}"),
    }
}

fn cols(e: &ChangeEvent) -> Vec<&str> {
    let mut v: Vec<&str> = e.cells.iter().map(|c| c.column.as_str()).collect();
    v.sort_unstable();
    v
}

fn text(s: &str) -> CqlValue {
    CqlValue::Text(s.to_owned())
}

fn kc(name: &str, value: CqlValue) -> KeyColumn {
    KeyColumn::new(name, value)
}

fn list_id(el: &ElementChange) -> uuid::Uuid {
    match &el.path {
        CellPath::ListIndex(id) => *id,
        other => panic!("list path {other:?}"),
    }
}

fn uuid_ticks(id: uuid::Uuid) -> u64 {
    id.get_timestamp()
        .map(|t| {
            let (secs, nanos) = t.to_unix();
            secs * 10_000_000 + u64::from(nanos) / 100
        })
        .unwrap_or_else(|| panic!("{id} is not a timeuuid"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_workload_of_commitlog_cases_is_captured_per_statement() {
    let env = StackEnv::load();
    let ks = unique_name("capgold");
    let mut catalog_settings = CatalogSettings::new(vec![env.cassandra_cql.clone()]);
    catalog_settings.connect_timeout = Duration::from_secs(10);
    let wanted = ks.clone();
    catalog_settings.keyspace_filter = Arc::new(move |k| k == wanted);
    let catalog = Arc::new(
        SchemaCatalog::connect(&catalog_settings)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", env.cassandra_cql)),
    );
    let s = catalog.session();
    cql(s, &format!("CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")).await;
    cql(s, &format!("CREATE TYPE {ks}.addr (street text, zip int)")).await;
    let wide_cols: Vec<String> = (0..69).map(|i| format!("c{i} int")).collect();
    for ddl in [
        "CREATE TABLE {ks}.ctr (pk int PRIMARY KEY, c counter) WITH cdc = true".to_owned(),
        "CREATE TABLE {ks}.ba (pk int, ck int, v text, PRIMARY KEY (pk, ck)) WITH cdc = true"
            .into(),
        "CREATE TABLE {ks}.bb (pk int PRIMARY KEY, w int) WITH cdc = true".into(),
        format!(
            "CREATE TABLE {{ks}}.wide (pk int PRIMARY KEY, {}) WITH cdc = true",
            wide_cols.join(", ")
        ),
        "CREATE TABLE {ks}.rng (pk int, a int, b text, v int, PRIMARY KEY (pk, a, b))
           WITH CLUSTERING ORDER BY (a DESC, b ASC) AND cdc = true"
            .into(),
        "CREATE TABLE {ks}.ooo (pk int PRIMARY KEY, v text) WITH cdc = true".into(),
        "CREATE TABLE {ks}.coll (pk int, ck int, s text STATIC, m map<text, text>, l list<int>,
           st set<text>, PRIMARY KEY (pk, ck)) WITH cdc = true"
            .into(),
        "CREATE TABLE {ks}.empt (pk int, ck text, t text, a ascii, b blob, i int, bi bigint,
           PRIMARY KEY (pk, ck)) WITH cdc = true"
            .into(),
        "CREATE TABLE {ks}.tk (k frozen<tuple<int, text>>, u frozen<addr>, vec vector<float, 3>,
           PRIMARY KEY ((k, u))) WITH cdc = true"
            .into(),
    ] {
        cql(s, &ddl.replace("{ks}", &ks)).await;
    }

    let t0 = now_micros();
    let ts = |n: i64| t0 + n * 1_000;
    // Counters (no USING TIMESTAMP, no writetime()).
    for delta in ["+ 5", "+ 3", "- 2"] {
        cql(
            s,
            &format!("UPDATE {ks}.ctr SET c = c {delta} WHERE pk = 1"),
        )
        .await;
    }
    // A logged batch across two tables with the same partition key: one mutation.
    cql(
        s,
        &format!(
            "BEGIN BATCH USING TIMESTAMP {t}
               INSERT INTO {ks}.ba (pk, ck, v) VALUES (7, 1, 'fake-batch');
               UPDATE {ks}.bb SET w = 42 WHERE pk = 7;
             APPLY BATCH",
            t = ts(1)
        ),
    )
    .await;
    // 70 columns: all present, 3 present (present list), 50 present (missing list).
    let all: Vec<String> = (0..69).map(|i| format!("c{i}")).collect();
    let vals: Vec<String> = (0..69).map(|i| (i * 10).to_string()).collect();
    cql(
        s,
        &format!(
            "INSERT INTO {ks}.wide (pk, {}) VALUES (1, {}) USING TIMESTAMP {}",
            all.join(", "),
            vals.join(", "),
            ts(2)
        ),
    )
    .await;
    cql(
        s,
        &format!(
            "UPDATE {ks}.wide USING TIMESTAMP {} SET c3 = -3, c40 = -40, c68 = -68 WHERE pk = 1",
            ts(3)
        ),
    )
    .await;
    let fifty: Vec<String> = (10..60).map(|i| format!("c{i} = {}", i + 1000)).collect();
    cql(
        s,
        &format!(
            "UPDATE {ks}.wide USING TIMESTAMP {} SET {} WHERE pk = 1",
            ts(4),
            fifty.join(", ")
        ),
    )
    .await;
    // DESC and multi-column clustering; row and range deletes.
    for (a, b, v, n) in [(5, "x", 50, 5), (3, "y", 30, 6)] {
        cql(
            s,
            &format!(
                "INSERT INTO {ks}.rng (pk, a, b, v) VALUES (1, {a}, '{b}', {v}) USING TIMESTAMP {}",
                ts(n)
            ),
        )
        .await;
    }
    cql(
        s,
        &format!(
            "DELETE FROM {ks}.rng USING TIMESTAMP {} WHERE pk = 1 AND a > 2 AND a <= 4",
            ts(7)
        ),
    )
    .await;
    cql(
        s,
        &format!(
            "DELETE FROM {ks}.rng USING TIMESTAMP {} WHERE pk = 1 AND a = 5 AND b > 'm'",
            ts(8)
        ),
    )
    .await;
    cql(
        s,
        &format!(
            "DELETE FROM {ks}.rng USING TIMESTAMP {} WHERE pk = 1 AND a = 5 AND b = 'x'",
            ts(9)
        ),
    )
    .await;
    // Out-of-order timestamps: the older write arrives second and loses.
    cql(
        s,
        &format!(
            "INSERT INTO {ks}.ooo (pk, v) VALUES (1, 'fake-newer') USING TIMESTAMP {}",
            ts(20)
        ),
    )
    .await;
    cql(
        s,
        &format!(
            "UPDATE {ks}.ooo USING TIMESTAMP {} SET v = 'fake-older' WHERE pk = 1",
            ts(10)
        ),
    )
    .await;
    // Collections: element TTL, list index / append / prepend, set and map removal, static.
    let coll_stmts = [
        "INSERT INTO {ks}.coll (pk, ck, m, l, st) VALUES (1, 1, {'a': 'fake-a'}, [1, 2, 3], {'p', 'q'}) USING TIMESTAMP {t}",
        "UPDATE {ks}.coll USING TTL 100 AND TIMESTAMP {t} SET m['k'] = 'fake-k' WHERE pk = 1 AND ck = 1",
        "UPDATE {ks}.coll USING TIMESTAMP {t} SET l[1] = 20 WHERE pk = 1 AND ck = 1",
        "UPDATE {ks}.coll USING TIMESTAMP {t} SET l = l + [4] WHERE pk = 1 AND ck = 1",
        "UPDATE {ks}.coll USING TIMESTAMP {t} SET l = [0] + l WHERE pk = 1 AND ck = 1",
        "UPDATE {ks}.coll USING TIMESTAMP {t} SET st = st - {'p'} WHERE pk = 1 AND ck = 1",
        "DELETE m['a'] FROM {ks}.coll USING TIMESTAMP {t} WHERE pk = 1 AND ck = 1",
        "UPDATE {ks}.coll USING TIMESTAMP {t} SET s = 'fake-static' WHERE pk = 1",
    ];
    for (i, stmt) in coll_stmts.iter().enumerate() {
        let q = stmt
            .replace("{ks}", &ks)
            .replace("{t}", &ts(30 + i as i64).to_string());
        cql(s, &q).await;
    }
    // Empty values: '' is a real text/ascii/blob value; zero bytes of int/bigint are "empty".
    cql(
        s,
        &format!(
            "INSERT INTO {ks}.empt (pk, ck, t, a, b, i, bi)
             VALUES (1, '', '', '', 0x, blobAsInt(0x), blobAsBigint(0x)) USING TIMESTAMP {}",
            ts(40)
        ),
    )
    .await;
    // Tuple and frozen UDT as the partition key; a vector written twice.
    let tk_key = "k = (1, 'fake') AND u = {street: 'fake street', zip: 12345}";
    cql(
        s,
        &format!(
            "INSERT INTO {ks}.tk (k, u, vec) VALUES ((1, 'fake'), {{street: 'fake street', zip: 12345}}, [1.0, 2.0, 3.0]) USING TIMESTAMP {}",
            ts(50)
        ),
    )
    .await;
    cql(
        s,
        &format!(
            "UPDATE {ks}.tk USING TIMESTAMP {} SET vec = [4.5, -5.0, 6.25] WHERE {tk_key}",
            ts(51)
        ),
    )
    .await;

    let cap = start_capture(&env, Arc::clone(&catalog), &ks).await;
    let topic = |t: &str| format!("cdc.raw.{ks}.{t}");
    let pk1 = vec![kc("pk", CqlValue::Int(1))];

    // --- counters: three updates; the global shard holds the running total.
    let ctr = read_topic(&cap.kafka, &topic("ctr"), 3).await;
    let mut last_clock = i64::MIN;
    for (e, total) in ctr.iter().zip([5i64, 8, 6]) {
        assert_eq!(e.op, Operation::Update);
        assert_eq!(e.partition_key, pk1);
        assert!(e.deletion.is_none() && e.liveness.is_none());
        assert_eq!(cols(e), ["c"]);
        match &e.cell("c").expect("c").change {
            CellValue::Counter { shards } => {
                assert_eq!(shards.len(), 1, "{shards:?}");
                assert_eq!(shards[0].kind, CounterShardKind::Global);
                assert_eq!(shards[0].count, total, "running total");
                assert!(shards[0].clock > last_clock, "clocks increase");
                last_clock = shards[0].clock;
            }
            other => panic!("counter cell {other:?}"),
        }
    }

    // --- logged batch: one mutation, two tables.
    let ba = read_topic(&cap.kafka, &topic("ba"), 1).await;
    let bb = read_topic(&cap.kafka, &topic("bb"), 1).await;
    let (ba, bb) = (&ba[0], &bb[0]);
    assert_eq!(ba.op, Operation::Insert);
    assert_eq!(ba.partition_key, vec![kc("pk", CqlValue::Int(7))]);
    assert_eq!(ba.clustering_key, vec![kc("ck", CqlValue::Int(1))]);
    assert_eq!(set(ba, "v"), text("fake-batch"));
    assert_eq!(ba.liveness.map(|l| l.writetime_micros), Some(ts(1)));
    assert_eq!(bb.op, Operation::Update);
    assert_eq!(bb.partition_key, vec![kc("pk", CqlValue::Int(7))]);
    assert_eq!(set(bb, "w"), CqlValue::Int(42));
    assert_eq!(bb.cell("w").map(|c| c.writetime_micros), Some(ts(1)));
    assert_eq!(
        (ba.source.segment_id, ba.source.segment_position),
        (bb.source.segment_id, bb.source.segment_position),
        "a logged batch on one partition key is one mutation"
    );
    assert_ne!(ba.source.index, bb.source.index);
    assert_eq!(
        writetime(s, &ks, "ba", "v", "pk = 7 AND ck = 1").await,
        ts(1)
    );
    assert_eq!(writetime(s, &ks, "bb", "w", "pk = 7").await, ts(1));

    // --- 70 columns.
    let wide = read_topic(&cap.kafka, &topic("wide"), 3).await;
    assert_eq!(wide[0].op, Operation::Insert);
    assert_eq!(wide[0].cells.len(), 69);
    for i in 0..69 {
        let c = wide[0].cell(&format!("c{i}")).expect("cell");
        assert_eq!(
            c.change,
            CellValue::Set {
                value: CqlValue::Int(i * 10)
            }
        );
        assert_eq!(c.writetime_micros, ts(2));
    }
    assert_eq!(wide[1].op, Operation::Update);
    assert_eq!(cols(&wide[1]), ["c3", "c40", "c68"]);
    for (c, v) in [("c3", -3), ("c40", -40), ("c68", -68)] {
        assert_eq!(set(&wide[1], c), CqlValue::Int(v));
        assert_eq!(wide[1].cell(c).map(|c| c.writetime_micros), Some(ts(3)));
    }
    assert_eq!(wide[2].op, Operation::Update);
    assert_eq!(wide[2].cells.len(), 50);
    for i in 10..60 {
        let c = wide[2].cell(&format!("c{i}")).expect("cell");
        assert_eq!(
            c.change,
            CellValue::Set {
                value: CqlValue::Int(i + 1000)
            }
        );
        assert_eq!(c.writetime_micros, ts(4));
    }
    assert!(wide[2].cell("c9").is_none() && wide[2].cell("c60").is_none());
    assert_eq!(writetime(s, &ks, "wide", "c3", "pk = 1").await, ts(3));
    assert_eq!(writetime(s, &ks, "wide", "c40", "pk = 1").await, ts(4));
    assert_eq!(writetime(s, &ks, "wide", "c68", "pk = 1").await, ts(3));
    assert_eq!(writetime(s, &ks, "wide", "c0", "pk = 1").await, ts(2));

    // --- DESC / multi-column clustering and range deletes.
    let rng = read_topic(&cap.kafka, &topic("rng"), 5).await;
    let ab = |a: i32, b: &str| vec![kc("a", CqlValue::Int(a)), kc("b", text(b))];
    assert_eq!(rng[0].op, Operation::Insert);
    assert_eq!(rng[0].clustering_key, ab(5, "x"));
    assert_eq!(set(&rng[0], "v"), CqlValue::Int(50));
    assert_eq!(rng[1].op, Operation::Insert);
    assert_eq!(rng[1].clustering_key, ab(3, "y"));
    assert_eq!(rng[1].liveness.map(|l| l.writetime_micros), Some(ts(6)));
    let range = |e: &ChangeEvent| match &e.deletion {
        Some(d) => match &d.scope {
            DeletionScope::Range { start, end } => {
                (start.clone(), end.clone(), d.marked_for_delete_at_micros)
            }
            other => panic!("scope {other:?}"),
        },
        None => panic!("no deletion in {e:?}"),
    };
    let bound = |prefix: Vec<KeyColumn>, inclusive: bool| ClusteringBound { prefix, inclusive };
    // a DESC: clustering order runs 4 → 2, so the range starts at a = 4 (incl.), ends at 2 (excl.).
    assert_eq!(rng[2].op, Operation::Delete);
    assert_eq!(rng[2].partition_key, pk1);
    assert!(rng[2].clustering_key.is_empty() && rng[2].cells.is_empty());
    assert_eq!(
        range(&rng[2]),
        (
            bound(vec![kc("a", CqlValue::Int(4))], true),
            bound(vec![kc("a", CqlValue::Int(2))], false),
            ts(7)
        )
    );
    assert_eq!(
        range(&rng[3]),
        (
            bound(ab(5, "m"), false),
            bound(vec![kc("a", CqlValue::Int(5))], true),
            ts(8)
        )
    );
    assert_eq!(rng[4].op, Operation::Delete);
    assert_eq!(rng[4].clustering_key, ab(5, "x"));
    let d = rng[4].deletion.as_ref().expect("row deletion");
    assert_eq!(d.scope, DeletionScope::Row);
    assert_eq!(d.marked_for_delete_at_micros, ts(9));
    let now_secs = now_micros() / 1_000_000;
    assert!(
        (now_secs - d.local_deletion_time_secs).abs() < 600,
        "local deletion time"
    );

    // --- out-of-order timestamps: both writes are events, in commit order; Cassandra keeps the newer.
    let ooo = read_topic(&cap.kafka, &topic("ooo"), 2).await;
    assert_eq!(ooo[0].op, Operation::Insert);
    assert_eq!(set(&ooo[0], "v"), text("fake-newer"));
    assert_eq!(ooo[0].cell("v").map(|c| c.writetime_micros), Some(ts(20)));
    assert_eq!(ooo[1].op, Operation::Update);
    assert_eq!(set(&ooo[1], "v"), text("fake-older"));
    assert_eq!(ooo[1].cell("v").map(|c| c.writetime_micros), Some(ts(10)));
    assert_eq!(ooo[1].max_writetime_micros(), Some(ts(10)));
    assert_eq!(writetime(s, &ks, "ooo", "v", "pk = 1").await, ts(20));

    // --- collections.
    let coll = read_topic(&cap.kafka, &topic("coll"), 8).await;
    let ins = &coll[0];
    assert_eq!(ins.op, Operation::Insert);
    assert_eq!(ins.clustering_key, vec![kc("ck", CqlValue::Int(1))]);
    for c in ["m", "l", "st"] {
        // An INSERT of a collection first deletes the old one at ts − 1.
        assert_eq!(complex_deletion(ins, c), Some(ts(30) - 1), "{c}");
        assert!(
            elements(ins, c)
                .iter()
                .all(|e| e.writetime_micros == ts(30) && e.ttl.is_none())
        );
    }
    let l0 = elements(ins, "l");
    assert_eq!(
        l0.iter().map(|e| e.value.clone()).collect::<Vec<_>>(),
        [1, 2, 3].map(|v| Some(CqlValue::Int(v)))
    );
    let st0: Vec<_> = elements(ins, "st").iter().map(|e| e.path.clone()).collect();
    assert_eq!(
        st0,
        [
            CellPath::SetElement(text("p")),
            CellPath::SetElement(text("q"))
        ]
    );
    // Per-element TTL.
    assert_eq!(coll[1].op, Operation::Update);
    assert_eq!(cols(&coll[1]), ["m"]);
    assert_eq!(complex_deletion(&coll[1], "m"), None);
    let mk = elements(&coll[1], "m");
    assert_eq!(mk.len(), 1);
    assert_eq!(mk[0].path, CellPath::MapKey(text("k")));
    assert_eq!(mk[0].value, Some(text("fake-k")));
    assert_eq!(mk[0].writetime_micros, ts(31));
    let ttl = mk[0].ttl.expect("element ttl");
    assert_eq!(ttl.ttl_secs, 100);
    assert!(
        (90..=110).contains(&(ttl.expires_at_secs - ts(31) / 1_000_000)),
        "{ttl:?}"
    );
    // l[1] = 20 overwrites the element with the second list id.
    let set_idx = elements(&coll[2], "l");
    assert_eq!(set_idx.len(), 1);
    assert_eq!(list_id(&set_idx[0]), list_id(&l0[1]));
    assert_eq!(set_idx[0].value, Some(CqlValue::Int(20)));
    assert_eq!(set_idx[0].writetime_micros, ts(32));
    assert_eq!(complex_deletion(&coll[2], "l"), None);
    // Append: a new id after every existing one; prepend: an id before all of them.
    let app = elements(&coll[3], "l");
    assert_eq!(
        (app.len(), app[0].value.clone()),
        (1, Some(CqlValue::Int(4)))
    );
    assert_eq!(complex_deletion(&coll[3], "l"), None);
    let pre = elements(&coll[4], "l");
    assert_eq!(
        (pre.len(), pre[0].value.clone()),
        (1, Some(CqlValue::Int(0)))
    );
    assert_eq!(complex_deletion(&coll[4], "l"), None);
    let first = uuid_ticks(list_id(&l0[0]));
    let last = uuid_ticks(list_id(&l0[2]));
    assert!(uuid_ticks(list_id(&app[0])) > last, "append sorts last");
    assert!(uuid_ticks(list_id(&pre[0])) < first, "prepend sorts first");
    // Set and map element removal are element tombstones.
    let rm = elements(&coll[5], "st");
    assert_eq!(rm.len(), 1);
    assert_eq!(
        (rm[0].path.clone(), rm[0].value.clone()),
        (CellPath::SetElement(text("p")), None)
    );
    assert_eq!(rm[0].writetime_micros, ts(35));
    let rm = elements(&coll[6], "m");
    assert_eq!(rm.len(), 1);
    assert_eq!(
        (rm[0].path.clone(), rm[0].value.clone()),
        (CellPath::MapKey(text("a")), None)
    );
    assert_eq!(rm[0].writetime_micros, ts(36));
    for e in &coll[1..7] {
        assert_eq!(e.op, Operation::Update, "{e:?}");
        assert!(!e.is_static && e.cells.len() == 1);
    }
    // Static column update: the static row, no clustering key.
    let st = &coll[7];
    assert!(st.is_static);
    assert_eq!(st.op, Operation::Update);
    assert!(st.clustering_key.is_empty());
    assert_eq!(cols(st), ["s"]);
    assert_eq!(set(st, "s"), text("fake-static"));
    assert_eq!(st.cell("s").map(|c| c.writetime_micros), Some(ts(37)));
    assert_eq!(writetime(s, &ks, "coll", "s", "pk = 1").await, ts(37));
    // Cassandra 5.0 reports writetime()/ttl() of a multi-cell column per element, in element order.
    let q =
        format!("SELECT writetime(l), writetime(m), ttl(m) FROM {ks}.coll WHERE pk = 1 AND ck = 1");
    type ElementTimes = (
        Option<Vec<Option<i64>>>,
        Option<Vec<Option<i64>>>,
        Option<Vec<Option<i32>>>,
    );
    let (wl, wm, tm): ElementTimes = s
        .query_unpaged(q.as_str(), &[])
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"))
        .into_rows_result()
        .unwrap_or_else(|e| panic!("{q}: {e}"))
        .first_row()
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    // l = [0 (prepend), 1, 20 (index set), 3, 4 (append)]; m = {'k'} after 'a' was removed.
    let captured_l = [
        pre[0].writetime_micros,
        l0[0].writetime_micros,
        set_idx[0].writetime_micros,
        l0[2].writetime_micros,
        app[0].writetime_micros,
    ];
    assert_eq!(wl, Some(captured_l.map(Some).to_vec()));
    assert_eq!(captured_l, [ts(34), ts(30), ts(32), ts(30), ts(33)]);
    assert_eq!(wm, Some(vec![Some(mk[0].writetime_micros)]));
    let remaining = tm
        .and_then(|v| v.first().copied().flatten())
        .expect("ttl(m)");
    assert!(
        remaining > 0 && i64::from(remaining) <= i64::from(ttl.ttl_secs),
        "ttl(m) {remaining}"
    );

    // --- empty values.
    let empt = read_topic(&cap.kafka, &topic("empt"), 1).await;
    let e = &empt[0];
    assert_eq!(e.op, Operation::Insert);
    assert_eq!(e.clustering_key, vec![kc("ck", text(""))]);
    assert_eq!(set(e, "t"), text(""));
    assert_eq!(set(e, "a"), CqlValue::Ascii(String::new()));
    assert_eq!(set(e, "b"), CqlValue::Blob(Vec::new()));
    assert_eq!(set(e, "i"), CqlValue::Empty);
    assert_eq!(set(e, "bi"), CqlValue::Empty);
    for c in ["t", "a", "b", "i", "bi"] {
        assert_eq!(e.cell(c).map(|c| c.writetime_micros), Some(ts(40)));
        assert_eq!(
            writetime(s, &ks, "empt", c, "pk = 1 AND ck = ''").await,
            ts(40)
        );
    }

    // --- tuple + frozen UDT partition key, vector.
    let tk = read_topic(&cap.kafka, &topic("tk"), 2).await;
    let key = vec![
        kc(
            "k",
            CqlValue::Tuple(vec![Some(CqlValue::Int(1)), Some(text("fake"))]),
        ),
        kc(
            "u",
            CqlValue::Udt(vec![
                ("street".into(), Some(text("fake street"))),
                ("zip".into(), Some(CqlValue::Int(12345))),
            ]),
        ),
    ];
    let vector = |v: [f32; 3]| CqlValue::Vector(v.map(CqlValue::Float).to_vec());
    assert_eq!(tk[0].op, Operation::Insert);
    assert_eq!(tk[0].partition_key, key);
    assert_eq!(set(&tk[0], "vec"), vector([1.0, 2.0, 3.0]));
    assert_eq!(tk[1].op, Operation::Update);
    assert_eq!(tk[1].partition_key, key);
    assert_eq!(set(&tk[1], "vec"), vector([4.5, -5.0, 6.25]));
    assert_eq!(tk[1].cell("vec").map(|c| c.writetime_micros), Some(ts(51)));
    assert_eq!(writetime(s, &ks, "tk", "vec", tk_key).await, ts(51));

    cap.cancel.cancel();
    cap.task.await.expect("capture task");
    cql(s, &format!("DROP KEYSPACE {ks}")).await;
}
