//! Cross-module tests on hand-built mutation and segment bytes.

use cdc_model::{ColumnKind, CqlType, DroppedColumn};
use proptest::prelude::*;
use uuid::Uuid;

use crate::testutil::*;
use crate::*;

fn decode(bytes: &[u8], schema: &dyn SchemaLookup) -> Result<MutationOutcome, Error> {
    decode_mutation(bytes, FormatVersion::V40, schema)
}

fn only_update(outcome: MutationOutcome) -> PartitionUpdate {
    let mut m = outcome.into_mutation().expect("decoded");
    assert_eq!(m.partition_updates.len(), 1);
    m.partition_updates.remove(0)
}

fn simple(cd: &ColumnData) -> (&str, &Cell) {
    match cd {
        ColumnData::Simple { column, cell } => (&column.name, cell),
        other => panic!("expected a simple column, got {other:?}"),
    }
}

#[test]
fn worked_example_mutation() {
    let schema = schema_of(vec![example_table()]);
    let bytes = example_mutation();
    assert_eq!(bytes.len(), 42);
    let pu = only_update(decode(&bytes, &schema).unwrap());
    assert_eq!(pu.table_id, example_table().id);
    assert_eq!(pu.partition_key, [0, 0, 0, 1]);
    assert_eq!(pu.partition_key_components, vec![vec![0, 0, 0, 1]]);
    assert_eq!(pu.row_estimate, Some(1));
    assert_eq!(pu.partition_deletion, None);
    assert!(pu.static_row.is_none());
    let rows: Vec<_> = pu.rows().collect();
    assert_eq!(rows.len(), 1);
    let row = rows[0];
    assert!(row.clustering.is_empty());
    assert_eq!(
        row.liveness,
        Some(LivenessInfo {
            timestamp_micros: 1_700_000_000_000_000,
            expiring: None
        })
    );
    let (name, cell) = simple(&row.cells[0]);
    assert_eq!(name, "v");
    assert_eq!(cell.value, b"a");
    assert_eq!(cell.timestamp_micros, 1_700_000_000_000_000);
    assert!(!cell.is_tombstone && !cell.is_expiring && cell.path.is_none());
    assert_eq!(cell.local_deletion_time, LocalDeletionTime::Absent);
}

#[test]
fn update_style_row_cell_timestamp_and_ttl() {
    let schema = schema_of(vec![example_table()]);
    let t = example_table();
    let mut e = Enc::default();
    e.u8(1)
        .raw(t.id.as_bytes())
        .vbytes(&7i32.to_be_bytes())
        .u8(0x10)
        .stats(1000, 1_800_000_000, 3600)
        .columns(&["v"])
        .uv(1)
        .u8(0x20) // all columns, no liveness
        .u8(0x02) // expiring cell
        .uv(5) // ts = 1005
        .uv(10) // ldt = min + 10
        .uv(0) // ttl = 3600
        .vbytes(b"hello")
        .u8(0x01);
    let pu = only_update(decode(&e.0, &schema).unwrap());
    let row = pu.rows().next().unwrap();
    assert_eq!(row.liveness, None);
    let (_, cell) = simple(&row.cells[0]);
    assert_eq!(cell.timestamp_micros, 1005);
    assert!(cell.is_expiring);
    assert_eq!(cell.ttl_secs, Some(3600));
    assert_eq!(
        cell.local_deletion_time,
        LocalDeletionTime::Seconds(1_800_000_010)
    );
    assert_eq!(cell.value, b"hello");
}

fn rich_table() -> cdc_model::TableSchema {
    let text = || Box::new(CqlType::Text);
    table(
        Uuid::from_u128(0x1111),
        vec![
            col("id", CqlType::Int, pk(0)),
            col("c1", CqlType::Int, ck(0)),
            col("c2", CqlType::Text, ck(1)),
            col("s", CqlType::Text, ColumnKind::Static),
            col("a", CqlType::Int, ColumnKind::Regular),
            col("b", CqlType::Text, ColumnKind::Regular),
            col(
                "l",
                CqlType::List {
                    element: Box::new(CqlType::Int),
                    frozen: false,
                },
                ColumnKind::Regular,
            ),
            col(
                "m",
                CqlType::Map {
                    key: text(),
                    value: Box::new(CqlType::Int),
                    frozen: false,
                },
                ColumnKind::Regular,
            ),
            col(
                "st",
                CqlType::Set {
                    element: text(),
                    frozen: false,
                },
                ColumnKind::Regular,
            ),
        ],
        vec![DroppedColumn {
            name: "old".into(),
            cql_type: CqlType::Bigint,
            dropped_time_micros: 500,
            kind: ColumnKind::Regular,
        }],
    )
}

/// Clustering (c1 int, c2 text) of a row.
fn clustering(e: &mut Enc, c1: i32, c2: &[u8]) {
    let header = if c2.is_empty() { 0b0100 } else { 0 };
    e.uv(header).raw(&c1.to_be_bytes());
    if !c2.is_empty() {
        e.vbytes(c2);
    }
}

#[test]
fn rich_partition_update() {
    let t = rich_table();
    let schema = schema_of(vec![t.clone()]);
    let mut e = Enc::default();
    e.u8(1).raw(t.id.as_bytes()).vbytes(&1i32.to_be_bytes());
    e.u8(0x04 | 0x08 | 0x10); // partition deletion, static row, row estimate
    e.stats(100, 1_700_000_000, 0);
    e.columns(&["s"]);
    e.columns(&["a", "b", "old", "l", "m", "st"]);
    // partition deletion at ts 150, ldt min+1
    e.uv(50).uv(1);
    // static row: extension + IS_STATIC, all columns, cell s with its own timestamp
    e.u8(0x80 | 0x20).u8(0x01).u8(0x00).uv(3).vbytes(b"static!");
    e.uv(3); // row estimate
    // Row 1: c1=1, c2='' (empty bit); INSERT with TTL; complex deletion on every complex column.
    e.u8(0x04 | 0x08 | 0x40); // no HAS_ALL_COLUMNS → subset follows
    {
        let mut row = Enc::default();
        clustering(&mut row, 1, b"");
        e.raw(&row.0);
    }
    e.uv(10).uv(60).uv(2); // liveness ts 110, ttl 60, expiry min+2
    // Subset: columns 0..6 = a b old l m st; present: a, old, l, m, st (b missing) → bitmap 0b000010
    e.uv(0b000010);
    // a: empty int value using row timestamp and row TTL
    e.u8(0x08 | 0x10 | 0x04 | 0x02);
    // old (dropped bigint): fixed 8 bytes at ts 400
    e.u8(0x00).uv(300).raw(&42i64.to_be_bytes());
    // l: complex deletion LIVE (ts i64::MIN), one element (length-prefixed int even though int is fixed)
    e.uv(i64::MIN.wrapping_sub(100) as u64)
        .uv32(i32::MAX.wrapping_sub(1_700_000_000));
    e.uv(1)
        .u8(0x08)
        .vbytes(&[0xAB; 16])
        .vbytes(&9i32.to_be_bytes());
    // m: overwrite deletion at ts 109, two cells: live k1→1, tombstone k2
    e.uv(9).uv(0);
    e.uv(2);
    e.u8(0x00).uv(10).vbytes(b"k1").vbytes(&1i32.to_be_bytes());
    e.u8(0x01 | 0x04).uv(10).uv(0).vbytes(b"k2");
    // st: LIVE deletion, one element with empty value
    e.uv(i64::MIN.wrapping_sub(100) as u64).uv(0);
    e.uv(1).u8(0x04).uv(10).vbytes(b"e1");
    // Range tombstone: EXCL_START(c1=5) .. boundary INCL_END_EXCL_START(c1=8) .. INCL_END TOP
    e.u8(0x02)
        .u8(7)
        .u16(1)
        .uv(0)
        .raw(&5i32.to_be_bytes())
        .uv(20)
        .uv(0);
    e.u8(0x02)
        .u8(5)
        .u16(1)
        .uv(0)
        .raw(&8i32.to_be_bytes())
        .uv(20)
        .uv(0)
        .uv(30)
        .uv(0);
    e.u8(0x02).u8(6).u16(0).uv(30).uv(0);
    // Row 2: c1=9, c2='x': shadowable row deletion at ts 140, no columns (subset: all missing).
    e.u8(0x10 | 0x80).u8(0x02);
    {
        let mut row = Enc::default();
        clustering(&mut row, 9, b"x");
        e.raw(&row.0);
    }
    e.uv(40).uv(0).uv(0b111111);
    e.u8(0x01);

    let pu = only_update(decode(&e.0, &schema).unwrap());
    assert_eq!(
        pu.partition_deletion,
        Some(DeletionTime {
            marked_for_delete_at_micros: 150,
            local_deletion_time: LocalDeletionTime::Seconds(1_700_000_001)
        })
    );
    let names: Vec<&str> = pu.regular_columns.iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["a", "b", "old", "l", "m", "st"]);
    assert_eq!(pu.regular_columns[2].dropped_at_micros, Some(500));

    let st = pu.static_row.as_ref().unwrap();
    assert!(st.is_static && st.clustering.is_empty());
    let (name, cell) = simple(&st.cells[0]);
    assert_eq!(
        (name, cell.timestamp_micros, &cell.value[..]),
        ("s", 103, &b"static!"[..])
    );

    assert_eq!(pu.unfiltereds.len(), 5);
    let Unfiltered::Row(r1) = &pu.unfiltereds[0] else {
        panic!("row first")
    };
    assert_eq!(
        r1.clustering,
        vec![Some(1i32.to_be_bytes().to_vec()), Some(vec![])]
    );
    let expiry = Expiry {
        ttl_secs: 60,
        local_expiration_time: LocalDeletionTime::Seconds(1_700_000_002),
    };
    assert_eq!(
        r1.liveness,
        Some(LivenessInfo {
            timestamp_micros: 110,
            expiring: Some(expiry)
        })
    );
    assert_eq!(r1.cells.len(), 5);
    let (name, a) = simple(&r1.cells[0]);
    assert_eq!(name, "a");
    assert!(a.value.is_empty() && a.is_expiring);
    assert_eq!((a.timestamp_micros, a.ttl_secs), (110, Some(60)));
    assert_eq!(a.local_deletion_time, expiry.local_expiration_time);
    let (name, old) = simple(&r1.cells[1]);
    assert_eq!((name, old.timestamp_micros), ("old", 400));
    assert_eq!(old.value, 42i64.to_be_bytes());
    assert!(r1.cells[1].is_shadowed_by_drop(old));
    match &r1.cells[2] {
        ColumnData::Complex {
            column,
            complex_deletion,
            cells,
        } => {
            assert_eq!(&*column.name, "l");
            assert_eq!(*complex_deletion, None);
            assert_eq!(cells[0].path.as_deref(), Some(&[0xAB; 16][..]));
            assert_eq!(cells[0].value, 9i32.to_be_bytes());
            assert_eq!(cells[0].timestamp_micros, 110);
        }
        other => panic!("{other:?}"),
    }
    match &r1.cells[3] {
        ColumnData::Complex {
            complex_deletion,
            cells,
            ..
        } => {
            assert_eq!(complex_deletion.unwrap().marked_for_delete_at_micros, 109);
            assert_eq!(cells.len(), 2);
            assert_eq!(cells[0].path.as_deref(), Some(&b"k1"[..]));
            assert!(cells[1].is_tombstone);
            assert_eq!(
                cells[1].local_deletion_time,
                LocalDeletionTime::Seconds(1_700_000_000)
            );
        }
        other => panic!("{other:?}"),
    }
    match &r1.cells[4] {
        ColumnData::Complex { cells, .. } => {
            assert_eq!(cells[0].path.as_deref(), Some(&b"e1"[..]));
            assert!(cells[0].value.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let markers: Vec<_> = pu.markers().collect();
    assert_eq!(markers.len(), 3);
    match markers[0] {
        RangeTombstoneMarker::Bound { bound, deletion } => {
            assert_eq!(bound.kind, BoundKind::ExclStart);
            assert_eq!(bound.values, vec![Some(5i32.to_be_bytes().to_vec())]);
            assert_eq!(deletion.marked_for_delete_at_micros, 120);
        }
        other => panic!("{other:?}"),
    }
    match markers[1] {
        RangeTombstoneMarker::Boundary {
            bound,
            end_deletion,
            start_deletion,
        } => {
            assert_eq!(bound.kind, BoundKind::InclEndExclStart);
            assert_eq!(end_deletion.marked_for_delete_at_micros, 120);
            assert_eq!(start_deletion.marked_for_delete_at_micros, 130);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        markers[2].bound(),
        &ClusteringBound {
            kind: BoundKind::InclEnd,
            values: vec![]
        }
    );
    let Unfiltered::Row(r2) = &pu.unfiltereds[4] else {
        panic!("row last")
    };
    assert_eq!(
        r2.deletion,
        Some(RowDeletion {
            time: DeletionTime {
                marked_for_delete_at_micros: 140,
                local_deletion_time: LocalDeletionTime::Seconds(1_700_000_000)
            },
            shadowable: true
        })
    );
    assert!(r2.cells.is_empty());

    // Every strict prefix of a valid mutation is an error, never a panic.
    for n in 0..e.0.len() {
        assert!(decode(&e.0[..n], &schema).is_err(), "prefix {n}");
    }
    // Trailing bytes are an error too.
    let mut longer = e.0.clone();
    longer.push(0);
    assert!(matches!(
        decode(&longer, &schema),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn wide_table_large_subset() {
    let mut columns = vec![col("id", CqlType::Int, pk(0))];
    let names: Vec<String> = (0..70).map(|i| format!("c{i:02}")).collect();
    for n in &names {
        columns.push(col(n, CqlType::Int, ColumnKind::Regular));
    }
    let t = table(Uuid::from_u128(70), columns, vec![]);
    let schema = schema_of(vec![t.clone()]);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for present in [vec![3usize, 69], (0..60).collect::<Vec<_>>()] {
        let mut e = Enc::default();
        e.u8(1).raw(t.id.as_bytes()).vbytes(&1i32.to_be_bytes());
        e.u8(0x10).stats(0, LDT_EPOCH, 0).columns(&refs).uv(1);
        e.u8(0x00);
        let mut subset = Vec::new();
        crate::columns::tests::encode_subset(&present, 70, &mut subset);
        e.raw(&subset);
        for i in &present {
            e.u8(0x00).uv(0).raw(&(*i as i32).to_be_bytes());
        }
        e.u8(0x01);
        let pu = only_update(decode(&e.0, &schema).unwrap());
        let row = pu.rows().next().unwrap();
        let got: Vec<String> = row
            .cells
            .iter()
            .map(|c| c.column().name.to_string())
            .collect();
        let want: Vec<String> = present.iter().map(|i| names[*i].clone()).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn unknown_table_and_unknown_column() {
    let schema = schema_of(vec![example_table()]);
    let mut m = example_mutation();
    // A different table id → the whole mutation is skipped with a typed outcome.
    m[1] ^= 0xFF;
    let outcome = decode(&m, &schema).unwrap();
    assert!(matches!(outcome, MutationOutcome::UnknownTable { .. }));

    // A column the schema does not know → schema stale (retriable).
    let mut t = example_table();
    t.columns.retain(|c| c.name != "v");
    let stale = schema_of(vec![t]);
    let err = decode(&example_mutation(), &stale).unwrap_err();
    assert!(matches!(&err, Error::UnknownColumn { column, .. } if column == "v"));
    assert_eq!(err.class(), ErrorClass::Retriable);

    // Two partition updates, the second of an unknown table: still skipped as a whole.
    let mut two = example_mutation();
    two[0] = 2;
    two.extend_from_slice(Uuid::from_u128(99).as_bytes());
    let outcome = decode(&two, &schema).unwrap();
    assert_eq!(
        outcome,
        MutationOutcome::UnknownTable {
            table_id: Uuid::from_u128(99)
        }
    );
}

#[test]
fn composite_partition_key_and_partition_delete() {
    let t = table(
        Uuid::from_u128(5),
        vec![
            col("k1", CqlType::Int, pk(0)),
            col("k2", CqlType::Text, pk(1)),
            col("v", CqlType::Int, ColumnKind::Regular),
        ],
        vec![],
    );
    let schema = schema_of(vec![t.clone()]);
    let mut key = Enc::default();
    key.u16(4)
        .raw(&3i32.to_be_bytes())
        .u8(0)
        .u16(2)
        .raw(b"ab")
        .u8(0);
    let mut e = Enc::default();
    e.u8(1).raw(t.id.as_bytes()).vbytes(&key.0);
    // DELETE on a table without clustering columns = partition deletion, no columns.
    e.u8(0x04 | 0x10)
        .stats(77, 1_700_000_000, 0)
        .columns(&[])
        .uv(0)
        .uv(0)
        .uv(0)
        .u8(0x01);
    let pu = only_update(decode(&e.0, &schema).unwrap());
    assert_eq!(
        pu.partition_key_components,
        vec![3i32.to_be_bytes().to_vec(), b"ab".to_vec()]
    );
    assert_eq!(
        pu.partition_deletion.unwrap().marked_for_delete_at_micros,
        77
    );
    assert!(pu.unfiltereds.is_empty());

    // A key that does not split into 2 components is malformed.
    let mut bad = Enc::default();
    bad.u8(1)
        .raw(t.id.as_bytes())
        .vbytes(&[0, 1, 7, 0])
        .u8(0x01);
    assert!(matches!(
        decode(&bad.0, &schema),
        Err(Error::Malformed { .. })
    ));

    // IS_EMPTY: nothing follows the flags.
    let mut empty = Enc::default();
    empty.u8(1).raw(t.id.as_bytes()).vbytes(&key.0).u8(0x01);
    let pu = only_update(decode(&empty.0, &schema).unwrap());
    assert!(pu.encoding_stats.is_none() && pu.unfiltereds.is_empty());
}

#[test]
fn counters_and_unsigned_ldt() {
    let t = table(
        Uuid::from_u128(6),
        vec![
            col("id", CqlType::Int, pk(0)),
            col("n", CqlType::Counter, ColumnKind::Regular),
            col("v", CqlType::Int, ColumnKind::Regular),
        ],
        vec![],
    );
    let schema = schema_of(vec![t.clone()]);
    let context: Vec<u8> = {
        let mut c = Enc::default();
        c.u16(1)
            .raw(&i16::MIN.to_be_bytes())
            .raw(&[7; 16])
            .raw(&5i64.to_be_bytes())
            .raw(&3i64.to_be_bytes());
        c.0
    };
    let mut e = Enc::default();
    e.u8(1).raw(t.id.as_bytes()).vbytes(&1i32.to_be_bytes());
    e.u8(0x10).stats(10, 0xF000_0000, 0).columns(&["n"]).uv(1);
    e.u8(0x20).u8(0x00).uv(0).vbytes(&context).u8(0x01);
    let pu = only_update(decode(&e.0, &schema).unwrap());
    let (_, cell) = simple(&pu.rows().next().unwrap().cells[0]);
    assert!(cell.is_counter);
    assert_eq!(cell.value, context);

    // The same LDT minimum is a post-2038 time in format 8 and invalid in format 7.
    let mut e = Enc::default();
    e.u8(1).raw(t.id.as_bytes()).vbytes(&1i32.to_be_bytes());
    e.u8(0x10).stats(10, 0xF000_0000, 100).columns(&["v"]).uv(1);
    e.u8(0x20)
        .u8(0x02)
        .uv(0)
        .uv(5)
        .uv(0)
        .raw(&1i32.to_be_bytes())
        .u8(0x01);
    let v8 = only_update(decode_mutation(&e.0, FormatVersion::V50, &schema).unwrap());
    let (_, cell) = simple(&v8.rows().next().unwrap().cells[0]);
    assert_eq!(
        cell.local_deletion_time,
        LocalDeletionTime::Seconds(0xF000_0005)
    );
    assert_eq!(cell.ttl_secs, Some(100));
    let v7 = only_update(decode(&e.0, &schema).unwrap());
    let (_, cell) = simple(&v7.rows().next().unwrap().cells[0]);
    assert_eq!(
        cell.local_deletion_time,
        LocalDeletionTime::Invalid { raw: 0xF000_0005 }
    );
}

#[test]
fn strict_flags() {
    let schema = schema_of(vec![example_table()]);
    let base = example_mutation();
    // header flags at offset 22, row flags at 36, cell flags at 38, end at 41 (see §15)
    for (at, value) in [
        (22usize, 0x30u8),
        (22, 0x12),
        (36, 0x03),
        (38, 0x28),
        (41, 0x02),
    ] {
        let mut m = base.clone();
        m[at] = value;
        assert!(decode(&m, &schema).is_err(), "byte {at} = {value:#x}");
    }
    // A clustered-row slot with the static flag is corrupt.
    let mut m = base.clone();
    m[36] = 0xA4;
    m.insert(37, 0x01);
    assert!(decode(&m, &schema).is_err());
}

fn seg_id() -> i64 {
    1_700_000_000_123
}

#[test]
fn worked_example_segment() {
    let seg = segment(seg_id(), 7, &[vec![example_mutation()]], 0);
    let expected_prefix = [
        0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x7b, 0x00, 0x02, 0x7b,
        0x7d, 0x8f, 0xef, 0x28, 0xed, 0x00, 0x00, 0x00, 0x52, 0xa8, 0xf1, 0x11, 0x3c, 0x00, 0x00,
        0x00, 0x2a, 0xfa, 0xff, 0x16, 0xca,
    ];
    assert_eq!(&seg[..36], &expected_prefix);
    assert_eq!(&seg[78..82], &[0xd2, 0xc1, 0x80, 0xa3]);
    assert_eq!(&seg[82..], &[0u8; 8]);

    let schema = schema_of(vec![example_table()]);
    for limit in [ReadLimit::UpTo(82), ReadLimit::Completed] {
        let mut r = SegmentReader::new(
            &seg,
            &schema,
            ReadOptions {
                limit,
                resume_after: 0,
            },
        )
        .unwrap();
        let e = r.next().unwrap().unwrap();
        assert_eq!((e.start, e.end, e.checksum), (28, 82, 0xd2c180a3));
        assert!(e.result.unwrap().mutation().is_some());
        assert!(r.next().is_none());
        let want = match limit {
            ReadLimit::Completed => SegmentEnd::EndOfSegment { position: 82 },
            ReadLimit::UpTo(_) => SegmentEnd::LimitReached { position: 82 },
        };
        assert_eq!(r.end(), Some(want));
    }
}

fn three_sections() -> Vec<u8> {
    let m = example_mutation();
    segment(
        seg_id(),
        7,
        &[
            vec![m.clone(), m.clone()],
            vec![m.clone()],
            vec![m.clone(), m],
        ],
        4096,
    )
}

fn read_all(
    bytes: &[u8],
    limit: ReadLimit,
    resume_after: u64,
) -> (Vec<Result<MutationEntry, Error>>, Option<SegmentEnd>) {
    let schema = schema_of(vec![example_table()]);
    let mut r = SegmentReader::new(
        bytes,
        &schema,
        ReadOptions {
            limit,
            resume_after,
        },
    )
    .unwrap();
    let items: Vec<_> = r.by_ref().take(10_000).collect();
    (items, r.end())
}

#[test]
fn section_chain_limits_and_resume() {
    let seg = three_sections();
    // Entry = 54 bytes; section ends: 20+8+108 = 136, 136+8+54 = 198, 198+8+108 = 314.
    let (items, end) = read_all(&seg, ReadLimit::Completed, 0);
    let ends: Vec<u64> = items.iter().map(|i| i.as_ref().unwrap().end).collect();
    assert_eq!(ends, [82, 136, 198, 260, 314]);
    assert_eq!(end, Some(SegmentEnd::EndOfSegment { position: 314 }));

    let (items, end) = read_all(&seg, ReadLimit::UpTo(198), 0);
    assert_eq!(items.len(), 3);
    assert_eq!(end, Some(SegmentEnd::LimitReached { position: 198 }));
    // A torn idx (a limit inside a section) stops before that section.
    let (items, end) = read_all(&seg, ReadLimit::UpTo(150), 0);
    assert_eq!(items.len(), 2);
    assert_eq!(end, Some(SegmentEnd::LimitReached { position: 136 }));
    // Resume after the second entry, and mid-section after the fourth.
    let (items, _) = read_all(&seg, ReadLimit::Completed, 136);
    assert_eq!(
        items
            .iter()
            .map(|i| i.as_ref().unwrap().end)
            .collect::<Vec<_>>(),
        [198, 260, 314]
    );
    let (items, _) = read_all(&seg, ReadLimit::Completed, 260);
    assert_eq!(
        items
            .iter()
            .map(|i| i.as_ref().unwrap().end)
            .collect::<Vec<_>>(),
        [314]
    );
    // Bytes that end before the limit: incomplete, retry with more bytes.
    let (items, end) = read_all(&seg[..250], ReadLimit::UpTo(314), 0);
    assert_eq!(items.len(), 3);
    assert_eq!(end, Some(SegmentEnd::Incomplete { position: 198 }));
    // A completed file that ends (EOF) right after the last section.
    let (items, end) = read_all(&seg[..314], ReadLimit::Completed, 0);
    assert_eq!(items.len(), 5);
    assert_eq!(end, Some(SegmentEnd::EndOfSegment { position: 314 }));
}

#[test]
fn corrupt_markers_and_entries() {
    let seg = three_sections();
    // Corrupt the second marker's CRC: two entries, then an error, then nothing.
    let mut bad = seg.clone();
    bad[136 + 5] ^= 1;
    let (items, end) = read_all(&bad, ReadLimit::Completed, 0);
    assert_eq!(items.len(), 3);
    assert!(matches!(
        items[2],
        Err(Error::SyncMarkerCorrupt {
            file_offset: 136,
            ..
        })
    ));
    assert_eq!(end, Some(SegmentEnd::Failed { position: 136 }));

    // A marker with a valid CRC pointing at itself must not loop.
    let mut selfloop = seg.clone();
    selfloop[136..140].copy_from_slice(&136i32.to_be_bytes());
    let (items, end) = read_all(&selfloop, ReadLimit::Completed, 0);
    assert!(matches!(
        items.last(),
        Some(Err(Error::SyncMarkerBadPosition { .. }))
    ));
    assert_eq!(end, Some(SegmentEnd::Failed { position: 136 }));

    // Size CRC broken in the first entry: the rest of section 1 is abandoned, section 2 follows.
    let mut size_crc = seg.clone();
    size_crc[32] ^= 1;
    let (items, _) = read_all(&size_crc, ReadLimit::Completed, 0);
    assert!(matches!(
        items[0],
        Err(Error::EntrySizeCrcMismatch { position: 28, .. })
    ));
    assert_eq!(items.len(), 4);

    // A flipped mutation byte: that entry reports a CRC error, the next entry still decodes.
    let mut body = seg.clone();
    body[50] ^= 1;
    let (items, _) = read_all(&body, ReadLimit::Completed, 0);
    assert!(matches!(
        items[0].as_ref().unwrap().result,
        Err(Error::EntryCrcMismatch { position: 28, .. })
    ));
    assert!(items[1].as_ref().unwrap().result.is_ok());
    assert_eq!(items.len(), 5);

    // A size of 0 ends the segment.
    let mut zero = seg.clone();
    zero[144..148].copy_from_slice(&[0; 4]);
    let (items, end) = read_all(&zero, ReadLimit::Completed, 0);
    assert_eq!(items.len(), 2);
    assert_eq!(end, Some(SegmentEnd::EndOfSegment { position: 144 }));
}

#[test]
fn malformed_mutation_error_has_segment_and_position() {
    let mut m = example_mutation();
    m[36] = 0x03; // not a valid row flags byte (END_OF_PARTITION with extra bits)
    let seg = segment(seg_id(), 7, &[vec![m]], 0);
    let (items, _) = read_all(&seg, ReadLimit::Completed, 0);
    let err = items[0].as_ref().unwrap().result.clone().unwrap_err();
    assert_eq!(
        err,
        Error::Malformed {
            segment_id: Some(seg_id()),
            position: 28 + 8 + 36,
            expected: "end of partition 0x01, got 0x03".into()
        }
    );
    assert_eq!(err.class(), ErrorClass::Poison);
}

#[test]
fn lz4_segment_logical_positions() {
    let m = example_mutation();
    let (seg, ends) = lz4_segment(seg_id(), 7, &[vec![m.clone(), m.clone()], vec![m]]);
    let header_len =
        18 + r#"{"compressionClass":"LZ4Compressor","compressionParameters":{}}"#.len() as u64;
    assert_eq!(ends, [header_len + 8 + 108, header_len + 8 + 108 + 8 + 54]);
    let (items, end) = read_all(&seg, ReadLimit::Completed, 0);
    let got: Vec<(u64, u64)> = items
        .iter()
        .map(|i| {
            let e = i.as_ref().unwrap();
            assert!(e.result.is_ok());
            (e.start, e.end)
        })
        .collect();
    let s = header_len + 8;
    assert_eq!(
        got,
        [(s, s + 54), (s + 54, s + 108), (ends[0] + 8, ends[1])]
    );
    assert_eq!(end, Some(SegmentEnd::EndOfSegment { position: ends[1] }));
    // The idx offset is logical.
    let (items, end) = read_all(&seg, ReadLimit::UpTo(ends[0]), 0);
    assert_eq!(items.len(), 2);
    assert_eq!(end, Some(SegmentEnd::LimitReached { position: ends[0] }));
    let (items, _) = read_all(&seg, ReadLimit::Completed, ends[0]);
    assert_eq!(items.len(), 1);
    // A damaged block is reported and the chain continues.
    let mut bad = seg.clone();
    let at = header_len as usize + 12 + 4;
    bad[at..at + 6].copy_from_slice(&[0xff; 6]);
    let (items, _) = read_all(&bad, ReadLimit::Completed, 0);
    assert!(matches!(items[0], Err(Error::Decompression { .. }) | Ok(_)));
}

#[test]
fn unsupported_segments() {
    use crate::descriptor::tests::header;
    let schema = schema_of(vec![]);
    let opts = ReadOptions {
        limit: ReadLimit::Completed,
        resume_after: 0,
    };
    let snappy = header(
        7,
        1,
        r#"{"compressionClass":"SnappyCompressor","compressionParameters":{}}"#,
    );
    assert!(matches!(
        SegmentReader::new(&snappy, &schema, opts).err(),
        Some(Error::UnsupportedCompression { compressor, .. }) if compressor == "SnappyCompressor"
    ));
    let enc = header(
        7,
        1,
        r#"{"encCipher":"AES/CBC/PKCS5Padding","encIV":"00","encKeyAlias":"k"}"#,
    );
    assert!(matches!(
        SegmentReader::new(&enc, &schema, opts).err(),
        Some(Error::Encrypted { .. })
    ));
    // Unknown tables everywhere are not errors.
    let seg = three_sections();
    let mut r = SegmentReader::new(&seg, &schema, opts).unwrap();
    assert!(
        r.by_ref()
            .all(|e| matches!(e.unwrap().result, Ok(MutationOutcome::UnknownTable { .. })))
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        // `PROPTEST_CASES` raises this for longer smoke runs (fuzz/smoke.sh without cargo-fuzz).
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn segment_reader_survives_truncation_and_flips(
        cut in 0usize..400,
        flips in proptest::collection::vec((0usize..400, any::<u8>()), 0..4),
        completed in any::<bool>(),
        limit in 0u64..400,
        compressed in any::<bool>(),
    ) {
        let m = example_mutation();
        let mut seg = if compressed {
            lz4_segment(seg_id(), 7, &[vec![m.clone(), m.clone()], vec![m]]).0
        } else {
            three_sections()
        };
        for (at, x) in flips {
            if let Some(b) = seg.get_mut(at) { *b ^= x; }
        }
        seg.truncate(cut.min(seg.len()));
        let limit = if completed { ReadLimit::Completed } else { ReadLimit::UpTo(limit) };
        let schema = schema_of(vec![example_table(), rich_table()]);
        if let Ok(mut r) = SegmentReader::new(&seg, &schema, ReadOptions { limit, resume_after: 0 }) {
            let n = r.by_ref().take(1000).count();
            prop_assert!(n < 1000);
            prop_assert!(r.end().is_some());
        }
    }

    #[test]
    fn mutation_decoder_survives_random_bytes(
        flips in proptest::collection::vec((0usize..42, any::<u8>()), 1..6),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
        v8 in any::<bool>(),
    ) {
        let mut m = example_mutation();
        for (at, x) in flips {
            if let Some(b) = m.get_mut(at) { *b ^= x; }
        }
        m.extend_from_slice(&tail);
        let schema = schema_of(vec![example_table(), rich_table()]);
        let version = if v8 { FormatVersion::V50 } else { FormatVersion::V40 };
        let _ = decode_mutation(&m, version, &schema);
    }

    #[test]
    fn mutation_decoder_survives_arbitrary_input(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let schema = schema_of(vec![example_table(), rich_table()]);
        // Aim at a known table often so the decoder gets past the table id.
        let mut with_table = vec![1u8];
        with_table.extend_from_slice(rich_table().id.as_bytes());
        with_table.extend_from_slice(&bytes);
        let _ = decode_mutation(&with_table, FormatVersion::V40, &schema);
        let _ = decode_mutation(&bytes, FormatVersion::V50, &schema);
    }
}
