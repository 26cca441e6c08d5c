//! Golden test of the event builder on real Cassandra 5.0 segments: the fixtures of
//! `crates/cdc-commitlog/tests/fixtures` (workload in `make_fixtures.py`, statements and
//! `USING TIMESTAMP` values in `expected.json`) decoded and turned into `ChangeEvent`s.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use cdc_capture::{MutationContext, build_events};
use cdc_commitlog::{CdcIndex, MutationOutcome, ReadOptions, SegmentFileName, SegmentReader};
use cdc_model::{
    CellPath, CellValue, ChangeEvent, CounterShardKind, CqlValue, DeletionScope, Operation,
    TableSchema, json_codec,
};
use uuid::Uuid;

const HOST: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0001);

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crates/cdc-commitlog/tests/fixtures")
}

fn ts(i: i64) -> i64 {
    1_700_000_000_000_000 + i * 1_000
}

struct Events {
    events: Vec<ChangeEvent>,
    errors: usize,
}

impl Events {
    fn load() -> Events {
        let expected: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir().join("expected.json")).expect("expected.json"),
        )
        .expect("json");
        let tables: Vec<TableSchema> =
            serde_json::from_value(expected["tables"].clone()).expect("tables");
        let tables: HashMap<Uuid, Arc<TableSchema>> =
            tables.into_iter().map(|t| (t.id, Arc::new(t))).collect();
        let mut events = Vec::new();
        let mut errors = 0;
        for s in expected["segments"].as_array().expect("segments") {
            let name = s["file"].as_str().expect("file");
            let file = SegmentFileName::parse(name).expect("name");
            let bytes = std::fs::read(dir().join(name)).expect("segment");
            let idx = std::fs::read(dir().join(s["idx_file"].as_str().expect("idx"))).expect("idx");
            let limit = CdcIndex::parse(&idx).expect("idx").limit().expect("ready");
            let reader = SegmentReader::new(
                &bytes,
                &tables,
                ReadOptions {
                    limit,
                    resume_after: 0,
                },
            )
            .expect("reader");
            for entry in reader {
                let entry = entry.expect("entry");
                let Ok(MutationOutcome::Decoded(m)) = entry.result else {
                    continue;
                };
                let ctx = MutationContext {
                    cluster: "test",
                    host_id: HOST,
                    segment_id: file.id,
                    position: entry.end as u32,
                    captured_at_ms: 1,
                };
                let built = build_events(&m, &tables, &ctx, &|_| true);
                errors += built.errors.len();
                for b in built.events {
                    // Every event survives the JSON envelope unchanged.
                    let bytes = json_codec::encode_event(&b.event, &b.schema).expect("encode");
                    let mut back = json_codec::decode_event(&bytes).expect("decode");
                    // The envelope orders cells by column name; the commit log by its header order.
                    let mut original = b.event.clone();
                    original.cells.sort_by(|x, y| x.column.cmp(&y.column));
                    back.cells.sort_by(|x, y| x.column.cmp(&y.column));
                    assert!(
                        back == original,
                        "JSON round trip of {}",
                        b.event.correlation_id
                    );
                    events.push(b.event);
                }
            }
        }
        Events { events, errors }
    }

    fn table(&self, t: &str) -> Vec<&ChangeEvent> {
        self.events.iter().filter(|e| e.source.table == t).collect()
    }

    /// The events of `t` whose newest timestamp is `w`.
    fn at(&self, t: &str, w: i64) -> Vec<&ChangeEvent> {
        self.table(t)
            .into_iter()
            .filter(|e| e.max_writetime_micros() == Some(w))
            .collect()
    }

    fn one(&self, t: &str, w: i64) -> &ChangeEvent {
        let v = self.at(t, w);
        assert_eq!(v.len(), 1, "events of {t} at {w}: {v:#?}");
        v[0]
    }
}

fn set_value<'a>(e: &'a ChangeEvent, col: &str) -> &'a CqlValue {
    match e.cell(col).map(|c| &c.change) {
        Some(CellValue::Set { value }) => value,
        other => panic!("{col}: {other:?}"),
    }
}

#[test]
fn counts_ops_and_correlation_ids() {
    let ev = Events::load();
    assert_eq!(ev.errors, 0);
    assert!(ev.table("plain").is_empty(), "cdc = false table is skipped");
    for e in &ev.events {
        assert_eq!(
            e.correlation_id,
            format!(
                "{HOST}:{}:{}:{}",
                e.source.segment_id, e.source.segment_position, e.source.index
            )
        );
        assert_eq!(e.source.keyspace, "fixtures_commitlog");
    }
    // The logged batch across two tables is one mutation: one position, indexes 0 and 1.
    let a = ev.one("batch_a", ts(50));
    let b = ev.one("batch_b", ts(50));
    assert_eq!(a.source.segment_position, b.source.segment_position);
    let mut idx = [a.source.index, b.source.index];
    idx.sort_unstable();
    assert_eq!(idx, [0, 1]);
    assert_eq!(a.op, Operation::Insert);
}

#[test]
fn scalars() {
    let ev = Events::load();
    let ins = ev.one("scalars", ts(1));
    assert_eq!(ins.op, Operation::Insert);
    assert_eq!(ins.partition_key[0].value, CqlValue::Int(1));
    assert_eq!(ins.liveness.map(|l| l.writetime_micros), Some(ts(1)));
    assert_eq!(ins.cells.len(), 18);
    assert!(ins.cells.iter().all(|c| c.writetime_micros == ts(1)));
    assert_eq!(set_value(ins, "b"), &CqlValue::Bigint(9_000_000_000));
    assert_eq!(set_value(ins, "bl"), &CqlValue::Blob(vec![0xca, 0xfe]));
    assert_eq!(set_value(ins, "tx"), &CqlValue::Text(String::new()));
    assert_eq!(set_value(ins, "a"), &CqlValue::Ascii("asc".into()));
    assert_eq!(set_value(ins, "si"), &CqlValue::Smallint(7));
    assert_eq!(set_value(ins, "ti"), &CqlValue::Tinyint(-3));
    assert_eq!(
        set_value(ins, "du"),
        &CqlValue::Duration {
            months: 1,
            days: 2,
            nanoseconds: 3
        }
    );
    assert_eq!(
        set_value(ins, "ts"),
        &CqlValue::Timestamp(1_704_164_645_678)
    );

    let upd = ev.one("scalars", ts(2));
    assert_eq!(upd.op, Operation::Update);
    let tx = upd.cell("tx").expect("tx");
    assert_eq!(tx.ttl.map(|t| t.ttl_secs), Some(3600));
    assert!(tx.ttl.is_some_and(|t| t.expires_at_secs > 1_700_000_000));

    let null = ev.one("scalars", ts(3));
    assert_eq!(null.op, Operation::Insert);
    assert!(matches!(
        null.cell("tx").map(|c| &c.change),
        Some(CellValue::Tombstone)
    ));
    assert_eq!(set_value(null, "b"), &CqlValue::Bigint(5));

    let del_cell = ev.one("scalars", ts(4));
    assert_eq!(del_cell.op, Operation::Update);
    assert!(matches!(
        del_cell.cell("tx").map(|c| &c.change),
        Some(CellValue::Tombstone)
    ));

    // A full-key delete on a table without clustering columns is a partition deletion.
    let del = ev.one("scalars", ts(5));
    assert_eq!(del.op, Operation::Delete);
    assert!(matches!(
        del.deletion.as_ref().map(|d| &d.scope),
        Some(DeletionScope::Partition)
    ));
    assert_eq!(del.partition_key[0].value, CqlValue::Int(2));

    let neg = ev.one("scalars", -5);
    assert_eq!(neg.op, Operation::Insert);

    let ttl = ev.one("scalars", ts(6));
    assert_eq!(
        ttl.liveness.and_then(|l| l.ttl).map(|t| t.ttl_secs),
        Some(600)
    );
}

/// One element change: path, value (`None` = tombstone), writetime.
type Element = (CellPath, Option<CqlValue>, i64);

fn elements(e: &ChangeEvent, col: &str) -> (Option<i64>, Vec<Element>) {
    match e.cell(col).map(|c| &c.change) {
        Some(CellValue::Complex { deletion, elements }) => (
            deletion.map(|d| d.marked_for_delete_at_micros),
            elements
                .iter()
                .map(|x| (x.path.clone(), x.value.clone(), x.writetime_micros))
                .collect(),
        ),
        other => panic!("{col}: {other:?}"),
    }
}

#[test]
fn collections_udts_tuples_vectors() {
    let ev = Events::load();
    let ins = ev.one("colls", ts(10));
    assert_eq!(ins.op, Operation::Insert);
    let (del, l) = elements(ins, "l");
    assert_eq!(
        del,
        Some(ts(10) - 1),
        "collection overwrite deletes at ts - 1"
    );
    let values: Vec<_> = l.iter().map(|x| x.1.clone()).collect();
    assert_eq!(values, [Some(CqlValue::Int(1)), Some(CqlValue::Int(2))]);
    let (_, s) = elements(ins, "s");
    let paths: Vec<_> = s.iter().map(|x| x.0.clone()).collect();
    assert_eq!(
        paths,
        [
            CellPath::SetElement(CqlValue::Text("a".into())),
            CellPath::SetElement(CqlValue::Text("b".into()))
        ]
    );
    assert_eq!(
        set_value(ins, "fl"),
        &CqlValue::List(vec![CqlValue::Int(3), CqlValue::Int(4)])
    );
    assert_eq!(
        set_value(ins, "tup"),
        &CqlValue::Tuple(vec![
            Some(CqlValue::Int(7)),
            Some(CqlValue::Text("seven".into()))
        ])
    );
    assert_eq!(
        set_value(ins, "vec"),
        &CqlValue::Vector(vec![
            CqlValue::Float(1.0),
            CqlValue::Float(2.0),
            CqlValue::Float(3.0)
        ])
    );
    let (_, ad) = elements(ins, "ad");
    assert!(ad.contains(&(
        CellPath::UdtField("street".into()),
        Some(CqlValue::Text("main".into())),
        ts(10)
    )));

    let (del, append) = elements(ev.one("colls", ts(11)), "l");
    assert_eq!(del, None);
    assert_eq!(append.len(), 1);
    assert_eq!(append[0].1, Some(CqlValue::Int(3)));

    let (_, put) = elements(ev.one("colls", ts(12)), "m");
    assert_eq!(
        put,
        [(
            CellPath::MapKey(CqlValue::Text("k2".into())),
            Some(CqlValue::Int(2)),
            ts(12)
        )]
    );
    let (_, delkey) = elements(ev.one("colls", ts(13)), "m");
    assert_eq!(
        delkey,
        [(CellPath::MapKey(CqlValue::Text("k1".into())), None, ts(13))]
    );
    let (_, setrm) = elements(ev.one("colls", ts(14)), "s");
    assert_eq!(
        setrm,
        [(
            CellPath::SetElement(CqlValue::Text("a".into())),
            None,
            ts(14)
        )]
    );
    let (_, field) = elements(ev.one("colls", ts(15)), "ad");
    assert_eq!(
        field,
        [(
            CellPath::UdtField("zip".into()),
            Some(CqlValue::Int(99_999)),
            ts(15)
        )]
    );
    let (del, over) = elements(ev.one("colls", ts(16)), "l");
    assert_eq!(del, Some(ts(16) - 1));
    assert_eq!(over.len(), 1);
    let (del, none) = elements(ev.one("colls", ts(17)), "l");
    assert_eq!(del, Some(ts(17)));
    assert!(none.is_empty());
    let ttl_event = ev.one("colls", ts(18));
    match ttl_event.cell("m").map(|c| &c.change) {
        Some(CellValue::Complex { elements, .. }) => {
            assert_eq!(elements[0].ttl.map(|t| t.ttl_secs), Some(100));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn clustering_statics_and_range_deletes() {
    let ev = Events::load();
    let both = ev.at("clus", ts(20));
    assert_eq!(both.len(), 2);
    let stat = both.iter().find(|e| e.is_static).expect("static event");
    assert!(stat.clustering_key.is_empty());
    assert_eq!(set_value(stat, "s"), &CqlValue::Text("st".into()));
    let row = both.iter().find(|e| !e.is_static).expect("row event");
    assert_eq!(row.op, Operation::Insert);
    let ck: Vec<_> = row.clustering_key.iter().map(|k| k.value.clone()).collect();
    assert_eq!(ck, [CqlValue::Int(1), CqlValue::Text("a".into())]);

    let empty = ev.one("clus", ts(21));
    assert_eq!(empty.clustering_key[1].value, CqlValue::Text(String::new()));

    let only_static = ev.one("clus", ts(22));
    assert!(only_static.is_static);

    let del_row = ev.one("clus", ts(23));
    assert_eq!(del_row.op, Operation::Delete);
    assert!(matches!(
        del_row.deletion.as_ref().map(|d| &d.scope),
        Some(DeletionScope::Row)
    ));
    assert_eq!(del_row.clustering_key.len(), 2);

    let range = |e: &ChangeEvent| match e.deletion.as_ref().map(|d| &d.scope) {
        Some(DeletionScope::Range { start, end }) => (
            start
                .prefix
                .iter()
                .map(|k| k.value.clone())
                .collect::<Vec<_>>(),
            start.inclusive,
            end.prefix
                .iter()
                .map(|k| k.value.clone())
                .collect::<Vec<_>>(),
            end.inclusive,
        ),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        range(ev.one("clus", ts(24))),
        (vec![CqlValue::Int(5)], false, vec![CqlValue::Int(10)], true)
    );
    assert_eq!(
        range(ev.one("clus", ts(25))),
        (vec![CqlValue::Int(3)], true, vec![CqlValue::Int(3)], true)
    );
    let open = range(ev.one("clus", ts(26)));
    assert_eq!(
        (open.0, open.1, open.2.len()),
        (vec![CqlValue::Int(20)], true, 0)
    );
    let first = range(ev.one("clus", ts(27)));
    assert_eq!(first.0, vec![CqlValue::Int(1)]);
    assert_eq!(first.2, vec![CqlValue::Int(5)]);
    assert!(!first.3, "end of [1, 5) is exclusive");
    let second = range(ev.one("clus", ts(28)));
    assert_eq!((second.0, second.1), (vec![CqlValue::Int(5)], true));
    let part = ev.one("clus", ts(29));
    assert!(matches!(
        part.deletion.as_ref().map(|d| &d.scope),
        Some(DeletionScope::Partition)
    ));
    assert_eq!(part.partition_key[0].value, CqlValue::Text("p1".into()));
}

#[test]
fn composite_counter_wide_and_dropped_column() {
    let ev = Events::load();
    let comp = ev.one("composite", ts(30));
    let pk: Vec<_> = comp.partition_key.iter().map(|k| k.value.clone()).collect();
    assert_eq!(pk, [CqlValue::Int(5), CqlValue::Text("five".into())]);
    assert_eq!(comp.key_string(), r#"[5,"five"]"#);

    let counters = ev.table("counters");
    assert_eq!(counters.len(), 1);
    match counters[0].cell("n").map(|c| &c.change) {
        Some(CellValue::Counter { shards }) => {
            assert_eq!(shards.len(), 1);
            assert_eq!(shards[0].count, 5);
            assert_eq!(shards[0].kind, CounterShardKind::Global);
        }
        other => panic!("{other:?}"),
    }

    let wide = ev.at("wide", ts(40));
    assert_eq!(wide.len(), 3);
    let cells: Vec<_> = wide.iter().map(|e| e.cells.len()).collect();
    assert_eq!(cells, [70, 3, 66]);

    // `gone` was dropped after this insert: its cell is dead and left out.
    let before = ev.one("evolve", ts(60));
    let names: Vec<_> = before.cells.iter().map(|c| c.column.as_str()).collect();
    assert_eq!(names, ["keep"]);
    assert_eq!(ev.one("evolve", ts(61)).op, Operation::Insert);
}
