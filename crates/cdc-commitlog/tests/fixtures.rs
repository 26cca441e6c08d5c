//! Real segments written by Cassandra 5.0 (storage_compatibility_mode CASSANDRA_4, so descriptor
//! version 7) for the workload in `fixtures/make_fixtures.py`; expectations from
//! `fixtures/expected.json` and the statements' `USING TIMESTAMP` values.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use cdc_commitlog::*;
use cdc_model::TableSchema;
use uuid::Uuid;

struct Fixture {
    segments: Vec<(String, Vec<u8>, Vec<u8>)>,
    tables: HashMap<Uuid, Arc<TableSchema>>,
    by_name: HashMap<String, Uuid>,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load() -> Fixture {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("expected.json")).unwrap()).unwrap();
    let tables: Vec<TableSchema> = serde_json::from_value(expected["tables"].clone()).unwrap();
    let by_name = tables.iter().map(|t| (t.table.clone(), t.id)).collect();
    let tables = tables.into_iter().map(|t| (t.id, Arc::new(t))).collect();
    let segments = expected["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let file = s["file"].as_str().unwrap().to_owned();
            let bytes = std::fs::read(dir().join(&file)).unwrap();
            let idx = std::fs::read(dir().join(s["idx_file"].as_str().unwrap())).unwrap();
            (file, bytes, idx)
        })
        .collect();
    Fixture {
        segments,
        tables,
        by_name,
    }
}

/// Every partition update of the fixture's keyspace, with its entry end position.
fn updates(f: &Fixture) -> Vec<(u64, PartitionUpdate)> {
    let mut out = Vec::new();
    for (name, bytes, idx) in &f.segments {
        let file = SegmentFileName::parse(name).unwrap();
        let limit = CdcIndex::parse(idx).unwrap().limit().unwrap();
        let mut reader = SegmentReader::new(
            bytes,
            &f.tables,
            ReadOptions {
                limit,
                resume_after: 0,
            },
        )
        .unwrap();
        assert_eq!(reader.descriptor().id, file.id);
        for entry in reader.by_ref() {
            let entry = entry.unwrap();
            match entry.result.unwrap() {
                MutationOutcome::Decoded(m) => {
                    out.extend(m.partition_updates.into_iter().map(|u| (entry.end, u)))
                }
                MutationOutcome::UnknownTable { .. } => {}
                other => panic!("{other:?}"),
            }
        }
        assert!(
            matches!(reader.end(), Some(SegmentEnd::LimitReached { .. })),
            "{:?}",
            reader.end()
        );
    }
    out
}

const T0: i64 = 1_700_000_000_000_000;

fn ts(i: i64) -> i64 {
    T0 + i * 1000
}

/// The largest timestamp anywhere in the update (liveness, cells, deletions, markers).
fn max_ts(u: &PartitionUpdate) -> i64 {
    let mut all = Vec::new();
    all.extend(u.partition_deletion.map(|d| d.marked_for_delete_at_micros));
    for row in u.static_row.iter().chain(u.rows()) {
        all.extend(row.liveness.map(|l| l.timestamp_micros));
        all.extend(row.deletion.map(|d| d.time.marked_for_delete_at_micros));
        for cd in &row.cells {
            match cd {
                ColumnData::Simple { cell, .. } => all.push(cell.timestamp_micros),
                ColumnData::Complex {
                    complex_deletion,
                    cells,
                    ..
                } => {
                    all.extend(complex_deletion.map(|d| d.marked_for_delete_at_micros));
                    all.extend(cells.iter().map(|c| c.timestamp_micros));
                }
            }
        }
    }
    for m in u.markers() {
        match m {
            RangeTombstoneMarker::Bound { deletion, .. } => {
                all.push(deletion.marked_for_delete_at_micros)
            }
            RangeTombstoneMarker::Boundary {
                end_deletion,
                start_deletion,
                ..
            } => {
                all.push(end_deletion.marked_for_delete_at_micros);
                all.push(start_deletion.marked_for_delete_at_micros);
            }
        }
    }
    all.into_iter().max().unwrap_or(i64::MIN)
}

struct Decoded {
    fixture: Fixture,
    updates: Vec<(u64, PartitionUpdate)>,
}

impl Decoded {
    fn new() -> Self {
        let fixture = load();
        let updates = updates(&fixture);
        Decoded { fixture, updates }
    }

    fn table(&self, name: &str) -> Vec<&PartitionUpdate> {
        let id = self.fixture.by_name[name];
        self.updates
            .iter()
            .filter(|(_, u)| u.table_id == id)
            .map(|(_, u)| u)
            .collect()
    }

    /// The update of `table` whose largest timestamp is `ts`.
    fn at(&self, table: &str, ts: i64) -> &PartitionUpdate {
        let found: Vec<_> = self
            .table(table)
            .into_iter()
            .filter(|u| max_ts(u) == ts)
            .collect();
        assert_eq!(found.len(), 1, "{table} @ {ts}");
        found[0]
    }
}

fn only_row(u: &PartitionUpdate) -> &Row {
    let rows: Vec<_> = u.rows().collect();
    assert_eq!(rows.len(), 1);
    rows[0]
}

fn cell<'a>(row: &'a Row, name: &str) -> &'a Cell {
    row.cells
        .iter()
        .find_map(|cd| match cd {
            ColumnData::Simple { column, cell } if &*column.name == name => Some(cell),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no simple cell {name}"))
}

fn complex<'a>(row: &'a Row, name: &str) -> (Option<DeletionTime>, &'a [Cell]) {
    row.cells
        .iter()
        .find_map(|cd| match cd {
            ColumnData::Complex {
                column,
                complex_deletion,
                cells,
            } if &*column.name == name => Some((*complex_deletion, cells.as_slice())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no complex column {name}"))
}

fn generated_at() -> i64 {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("expected.json")).unwrap()).unwrap();
    expected["generated_at"].as_i64().unwrap()
}

#[test]
fn segment_and_idx_names() {
    let f = load();
    for (name, bytes, idx) in &f.segments {
        let parsed = SegmentFileName::parse(name).unwrap();
        assert_eq!(parsed.kind, SegmentFileKind::Segment);
        let d = SegmentDescriptor::parse(bytes).unwrap();
        assert_eq!((d.version, d.id), (FormatVersion::V40, parsed.id));
        d.check_file_name(&parsed).unwrap();
        assert_eq!(d.compression, None);
        assert_eq!(d.header_len, 20);
        let CdcIndex::Ready { offset, completed } = CdcIndex::parse(idx).unwrap() else {
            panic!("idx not ready")
        };
        assert!(!completed);
        assert_eq!(
            offset as usize,
            bytes.len(),
            "fixture is trimmed to its idx offset"
        );
    }
}

#[test]
fn every_entry_decodes_and_counts_per_table() {
    let d = Decoded::new();
    let count = |t: &str| d.table(t).len();
    assert_eq!(count("scalars"), 7);
    assert_eq!(count("colls"), 9);
    assert_eq!(count("clus"), 9);
    assert_eq!(count("composite"), 1);
    assert_eq!(count("counters"), 1);
    assert_eq!(count("wide"), 1);
    assert_eq!(count("batch_a"), 1);
    assert_eq!(count("batch_b"), 1);
    assert_eq!(count("evolve"), 2);
    // The cdc=false table of the same keyspace is in the segment too: filtering is the caller's job.
    assert_eq!(count("plain"), 1);
    let plain = d.fixture.by_name["plain"];
    assert!(!d.fixture.tables[&plain].cdc);
}

#[test]
fn scalars_inserts_updates_ttls_and_deletes() {
    let d = Decoded::new();
    let now = generated_at();
    let insert = only_row(d.at("scalars", ts(1)));
    assert_eq!(insert.liveness.unwrap().timestamp_micros, ts(1));
    assert_eq!(insert.cells.len(), 18);
    assert_eq!(cell(insert, "b").value, 9_000_000_000i64.to_be_bytes());
    assert_eq!(cell(insert, "bl").value, [0xca, 0xfe]);
    assert_eq!(cell(insert, "bo").value, [1]);
    assert_eq!(cell(insert, "si").value, 7i16.to_be_bytes());
    assert_eq!(cell(insert, "ti").value, [0xfd]);
    assert_eq!(cell(insert, "i").value, [10, 0, 0, 1]);
    assert_eq!(cell(insert, "f").value, 1.5f32.to_be_bytes());
    assert_eq!(cell(insert, "ts").value, 1_704_164_645_678i64.to_be_bytes());
    assert_eq!(
        cell(insert, "u").value,
        *Uuid::parse_str("11111111-2222-3333-4444-555555555555")
            .unwrap()
            .as_bytes()
    );
    // '' is an empty value, not a tombstone.
    let tx = cell(insert, "tx");
    assert!(tx.value.is_empty() && !tx.is_tombstone);
    assert!(insert.cells.iter().all(|c| match c {
        ColumnData::Simple { cell, .. } => cell.timestamp_micros == ts(1),
        _ => false,
    }));

    let upd = only_row(d.at("scalars", ts(2)));
    assert_eq!(upd.liveness, None);
    let c = cell(upd, "tx");
    assert!(c.is_expiring);
    assert_eq!(c.ttl_secs, Some(3600));
    let expiry = c.local_deletion_time.seconds().unwrap();
    assert!(
        (now + 3600..now + 3700).contains(&expiry),
        "{expiry} vs {now}"
    );

    let null = only_row(d.at("scalars", ts(3)));
    assert!(cell(null, "tx").is_tombstone);
    assert_eq!(cell(null, "b").value, 5i64.to_be_bytes());

    let del_cell = only_row(d.at("scalars", ts(4)));
    assert!(cell(del_cell, "tx").is_tombstone);
    assert_eq!(cell(del_cell, "tx").timestamp_micros, ts(4));

    // A row DELETE on a table without clustering columns is a partition deletion.
    let del = d.at("scalars", ts(5));
    assert_eq!(
        del.partition_deletion.unwrap().marked_for_delete_at_micros,
        ts(5)
    );
    assert!(del.unfiltereds.is_empty());

    let neg = only_row(d.at("scalars", -5));
    assert_eq!(neg.liveness.unwrap().timestamp_micros, -5);

    let row_ttl = only_row(d.at("scalars", ts(6)));
    let exp = row_ttl.liveness.unwrap().expiring.unwrap();
    assert_eq!(exp.ttl_secs, 600);
    let b = cell(row_ttl, "b");
    assert_eq!(
        (b.ttl_secs, b.local_deletion_time),
        (Some(600), exp.local_expiration_time)
    );
}

#[test]
fn collections_udts_tuples_vectors() {
    let d = Decoded::new();
    let ins = only_row(d.at("colls", ts(10)));
    let (del, l) = complex(ins, "l");
    // INSERT of a non-frozen collection overwrites: complex deletion at ts - 1.
    assert_eq!(del.unwrap().marked_for_delete_at_micros, ts(10) - 1);
    assert_eq!(
        l.iter().map(|c| c.value.clone()).collect::<Vec<_>>(),
        [1i32.to_be_bytes(), 2i32.to_be_bytes()]
    );
    assert!(
        l.iter()
            .all(|c| c.path.as_ref().is_some_and(|p| p.len() == 16))
    );
    let (_, s) = complex(ins, "s");
    assert_eq!(
        s.iter()
            .map(|c| c.path.clone().unwrap())
            .collect::<Vec<_>>(),
        [b"a".to_vec(), b"b".to_vec()]
    );
    assert!(s.iter().all(|c| c.value.is_empty()));
    let (_, ad) = complex(ins, "ad");
    assert_eq!(ad.len(), 2);
    assert_eq!(ad[0].path.as_deref(), Some(&[0u8, 0][..]));
    assert_eq!(ad[0].value, b"main");
    assert_eq!(ad[1].value, 12345i32.to_be_bytes());
    // Frozen values are single cells in the collection serialization format.
    assert_eq!(
        cell(ins, "fl").value,
        [0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 4]
    );
    assert_eq!(
        cell(ins, "tup").value,
        [
            0, 0, 0, 4, 0, 0, 0, 7, 0, 0, 0, 5, b's', b'e', b'v', b'e', b'n'
        ]
    );
    // vector<float, 3> is fixed-width: 12 bytes, no length prefix.
    let vec: Vec<u8> = [1.0f32, 2.0, 3.0]
        .iter()
        .flat_map(|f| f.to_be_bytes())
        .collect();
    assert_eq!(cell(ins, "vec").value, vec);

    let (del, append) = complex(only_row(d.at("colls", ts(11))), "l");
    assert_eq!(del, None);
    assert_eq!(append[0].value, 3i32.to_be_bytes());
    let (_, put) = complex(only_row(d.at("colls", ts(12))), "m");
    assert_eq!(
        (put[0].path.as_deref(), &put[0].value[..]),
        (Some(&b"k2"[..]), &2i32.to_be_bytes()[..])
    );
    let (_, rm) = complex(only_row(d.at("colls", ts(13))), "m");
    assert!(rm[0].is_tombstone && rm[0].path.as_deref() == Some(&b"k1"[..]));
    let (_, srm) = complex(only_row(d.at("colls", ts(14))), "s");
    assert!(srm[0].is_tombstone && srm[0].path.as_deref() == Some(&b"a"[..]));
    let (_, field) = complex(only_row(d.at("colls", ts(15))), "ad");
    assert_eq!(
        (field[0].path.as_deref(), &field[0].value[..]),
        (Some(&[0u8, 1][..]), &99999i32.to_be_bytes()[..])
    );
    let (del, over) = complex(only_row(d.at("colls", ts(16))), "l");
    assert_eq!(del.unwrap().marked_for_delete_at_micros, ts(16) - 1);
    assert_eq!(over.len(), 1);
    let (del, none) = complex(only_row(d.at("colls", ts(17))), "l");
    assert_eq!(del.unwrap().marked_for_delete_at_micros, ts(17));
    assert!(none.is_empty());
    let (_, ttl) = complex(only_row(d.at("colls", ts(18))), "m");
    assert!(ttl[0].is_expiring && ttl[0].ttl_secs == Some(100));
}

#[test]
fn clustering_static_and_range_tombstones() {
    let d = Decoded::new();
    let int = |v: i32| Some(v.to_be_bytes().to_vec());
    let ins = d.at("clus", ts(20));
    assert_eq!(ins.partition_key_components, [b"p1".to_vec()]);
    let st = ins.static_row.as_ref().unwrap();
    assert!(st.is_static);
    assert_eq!(cell(st, "s").value, b"st");
    let row = only_row(ins);
    assert_eq!(row.clustering, [int(1), Some(b"a".to_vec())]);
    assert_eq!(cell(row, "v").value, 10i32.to_be_bytes());

    // c2 = '' is an empty clustering value (the empty bit), on a DESC column.
    assert_eq!(
        only_row(d.at("clus", ts(21))).clustering,
        [int(2), Some(vec![])]
    );

    let static_only = d.at("clus", ts(22));
    assert!(static_only.unfiltereds.is_empty());
    assert_eq!(
        cell(static_only.static_row.as_ref().unwrap(), "s").value,
        b"only static"
    );

    let del = only_row(d.at("clus", ts(23)));
    assert_eq!(
        del.deletion.unwrap().time.marked_for_delete_at_micros,
        ts(23)
    );
    assert!(!del.deletion.unwrap().shadowable && del.cells.is_empty());

    let bounds = |u: &PartitionUpdate| -> Vec<(BoundKind, Vec<ClusteringValue>)> {
        u.markers()
            .map(|m| (m.bound().kind, m.bound().values.clone()))
            .collect()
    };
    assert_eq!(
        bounds(d.at("clus", ts(24))),
        [
            (BoundKind::ExclStart, vec![int(5)]),
            (BoundKind::InclEnd, vec![int(10)])
        ]
    );
    assert_eq!(
        bounds(d.at("clus", ts(25))),
        [
            (BoundKind::InclStart, vec![int(3)]),
            (BoundKind::InclEnd, vec![int(3)])
        ]
    );
    assert_eq!(
        bounds(d.at("clus", ts(26))),
        [
            (BoundKind::InclStart, vec![int(20)]),
            (BoundKind::InclEnd, vec![])
        ]
    );
    let adjacent = d.at("clus", ts(28));
    assert_eq!(
        bounds(adjacent),
        [
            (BoundKind::InclStart, vec![int(1)]),
            (BoundKind::ExclEndInclStart, vec![int(5)]),
            (BoundKind::ExclEnd, vec![int(9)])
        ]
    );
    match adjacent.markers().nth(1).unwrap() {
        RangeTombstoneMarker::Boundary {
            end_deletion,
            start_deletion,
            ..
        } => {
            assert_eq!(end_deletion.marked_for_delete_at_micros, ts(27));
            assert_eq!(start_deletion.marked_for_delete_at_micros, ts(28));
        }
        other => panic!("{other:?}"),
    }
    let part = d.at("clus", ts(29));
    assert_eq!(
        part.partition_deletion.unwrap().marked_for_delete_at_micros,
        ts(29)
    );
}

#[test]
fn composite_key_counter_wide_batch_and_dropped_column() {
    let d = Decoded::new();
    let comp = d.at("composite", ts(30));
    assert_eq!(
        comp.partition_key_components,
        [5i32.to_be_bytes().to_vec(), b"five".to_vec()]
    );

    let counter = only_row(d.table("counters")[0]);
    let c = cell(counter, "n");
    assert!(c.is_counter);
    // One global shard: header count 1, index encoded as 0 + i16::MIN, then id, clock, count 5.
    assert_eq!(&c.value[..4], &[0, 1, 0x80, 0]);
    assert_eq!(c.value.len(), 4 + 32);
    assert_eq!(&c.value[28..], &5i64.to_be_bytes());

    let wide = d.at("wide", ts(40));
    assert_eq!(wide.regular_columns.len(), 70);
    let rows: Vec<_> = wide.rows().collect();
    let names = |r: &Row| {
        r.cells
            .iter()
            .map(|c| c.column().name.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].cells.len(), 70);
    assert_eq!(names(rows[1]), ["c00", "c33", "c69"]);
    assert_eq!(cell(rows[1], "c33").value, 133i32.to_be_bytes());
    assert_eq!(rows[2].cells.len(), 66);
    assert!(
        !names(rows[2])
            .iter()
            .any(|n| ["c05", "c06", "c07", "c08"].contains(&n.as_str()))
    );

    // A logged batch over two tables with one partition key is one mutation with two updates.
    let a = d
        .updates
        .iter()
        .find(|(_, u)| u.table_id == d.fixture.by_name["batch_a"])
        .unwrap();
    let b = d
        .updates
        .iter()
        .find(|(_, u)| u.table_id == d.fixture.by_name["batch_b"])
        .unwrap();
    assert_eq!(a.0, b.0);

    let before = only_row(d.at("evolve", ts(60)));
    let gone = before
        .cells
        .iter()
        .find(|c| &*c.column().name == "gone")
        .unwrap();
    assert!(gone.column().dropped_at_micros.is_some());
    let ColumnData::Simple {
        cell: gone_cell, ..
    } = gone
    else {
        panic!()
    };
    assert_eq!(gone_cell.value, 77i64.to_be_bytes());
    assert!(gone.is_shadowed_by_drop(gone_cell));
    assert_eq!(only_row(d.at("evolve", ts(61))).cells.len(), 1);
}

#[test]
fn stale_schema_and_unknown_tables() {
    let f = load();
    let (_, bytes, idx) = &f.segments[0];
    let limit = CdcIndex::parse(idx).unwrap().limit().unwrap();
    let opts = ReadOptions {
        limit,
        resume_after: 0,
    };

    // Without the "keep" column the evolve mutations are a retriable schema-stale error.
    let mut stale = f.tables.clone();
    let evolve = f.by_name["evolve"];
    let mut t = (*stale[&evolve]).clone();
    t.columns.retain(|c| c.name != "keep");
    stale.insert(evolve, Arc::new(t));
    let errors: Vec<Error> = SegmentReader::new(bytes, &stale, opts)
        .unwrap()
        .filter_map(|e| e.unwrap().result.err())
        .collect();
    assert_eq!(errors.len(), 2);
    assert!(errors.iter().all(
        |e| matches!(e, Error::UnknownColumn { column, .. } if column == "keep")
            && e.class() == ErrorClass::Retriable
    ));

    // Without the scalars table its mutations are skipped with a typed outcome.
    let mut partial = f.tables.clone();
    let scalars = f.by_name["scalars"];
    partial.remove(&scalars);
    let unknown = SegmentReader::new(bytes, &partial, opts)
        .unwrap()
        .filter(|e| {
            matches!(&e.as_ref().unwrap().result, Ok(MutationOutcome::UnknownTable { table_id }) if *table_id == scalars)
        })
        .count();
    assert_eq!(unknown, 7);
}

#[test]
fn resume_and_partial_reads_agree_with_a_full_read() {
    let f = load();
    let (_, bytes, idx) = &f.segments[0];
    let limit = CdcIndex::parse(idx).unwrap().limit().unwrap();
    let full: Vec<MutationEntry> = SegmentReader::new(
        bytes,
        &f.tables,
        ReadOptions {
            limit,
            resume_after: 0,
        },
    )
    .unwrap()
    .map(Result::unwrap)
    .collect();
    assert!(full.len() > 30);
    // Entries are contiguous inside sections and strictly increasing.
    assert!(full.windows(2).all(|w| w[0].end <= w[1].start));

    // Resuming after any entry yields exactly the entries after it.
    for k in (0..full.len()).step_by(7) {
        let resumed: Vec<MutationEntry> = SegmentReader::new(
            bytes,
            &f.tables,
            ReadOptions {
                limit,
                resume_after: full[k].end,
            },
        )
        .unwrap()
        .map(Result::unwrap)
        .collect();
        assert_eq!(resumed, full[k + 1..]);
    }

    // Reading the file "as read so far" at every cut: a prefix of the full read, never a panic,
    // and the reader says why it stopped.
    for cut in (0..bytes.len()).step_by(53).chain([bytes.len() - 1]) {
        match SegmentReader::new(
            &bytes[..cut],
            &f.tables,
            ReadOptions {
                limit,
                resume_after: 0,
            },
        ) {
            Err(e) => assert!(matches!(e, Error::HeaderIncomplete { .. })),
            Ok(mut r) => {
                let got: Vec<MutationEntry> = r.by_ref().map(Result::unwrap).collect();
                assert_eq!(got, full[..got.len()]);
                assert!(
                    matches!(r.end(), Some(SegmentEnd::Incomplete { .. })),
                    "{:?}",
                    r.end()
                );
            }
        }
    }
}

#[test]
fn flipped_bytes_in_a_real_segment_never_panic() {
    let f = load();
    let (_, bytes, _) = &f.segments[0];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..400 {
        let mut b = bytes.clone();
        for _ in 0..3 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state % b.len() as u64) as usize;
            b[at] ^= (state >> 32) as u8 | 1;
        }
        for limit in [ReadLimit::Completed, ReadLimit::UpTo(b.len() as u64)] {
            if let Ok(mut r) = SegmentReader::new(
                &b,
                &f.tables,
                ReadOptions {
                    limit,
                    resume_after: 0,
                },
            ) {
                let n = r.by_ref().take(10_000).count();
                assert!(n < 10_000 && r.end().is_some());
            }
        }
    }
}
