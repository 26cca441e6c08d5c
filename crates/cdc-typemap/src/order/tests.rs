use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cdc_model::{CqlType, CqlValue};
use num_bigint::BigInt;
use proptest::prelude::*;
use uuid::Uuid;

use super::*;

fn key(ty: &CqlType, v: &CqlValue) -> Vec<u8> {
    value_key(ty, v).unwrap_or_else(|e| panic!("{e}"))
}

fn cmp(ty: &CqlType, a: &CqlValue, b: &CqlValue) -> Ordering {
    compare(ty, a, b).unwrap_or_else(|e| panic!("{e}"))
}

/// A version-1 UUID with the given 60-bit timestamp and low half.
fn v1(ts: u64, lsb: u64) -> Uuid {
    let ts = ts & 0x0FFF_FFFF_FFFF_FFFF;
    let time_low = ts & 0xFFFF_FFFF;
    let time_mid = (ts >> 32) & 0xFFFF;
    let time_hi = (ts >> 48) & 0x0FFF;
    let msb = (time_low << 32) | (time_mid << 16) | 0x1000 | time_hi;
    Uuid::from_u128((u128::from(msb) << 64) | u128::from(lsb))
}

#[test]
fn timeuuids_sort_by_time_not_bytes() {
    let ty = CqlType::Timeuuid;
    // Byte-wise the first is greater (time_low comes first); by time it is smaller.
    let early = CqlValue::Timeuuid(v1(0x0000_0001_FFFF_FFFF, 0));
    let late = CqlValue::Timeuuid(v1(0x0000_0002_0000_0000, 0));
    assert!(early_bytes_greater(&early, &late));
    assert_eq!(cmp(&ty, &early, &late), Ordering::Less);
    assert!(key(&ty, &early) < key(&ty, &late));
}

fn early_bytes_greater(a: &CqlValue, b: &CqlValue) -> bool {
    match (a, b) {
        (CqlValue::Timeuuid(x), CqlValue::Timeuuid(y)) => x.as_bytes() > y.as_bytes(),
        _ => false,
    }
}

#[test]
fn golden_orders() {
    let d = |u: i64, s: i32| CqlValue::Decimal {
        unscaled: BigInt::from(u),
        scale: s,
    };
    assert_eq!(
        key(&CqlType::Decimal, &d(10, 1)),
        key(&CqlType::Decimal, &d(1, 0))
    );
    assert!(key(&CqlType::Decimal, &d(12, 2)) < key(&CqlType::Decimal, &d(123, 3)));
    assert!(key(&CqlType::Decimal, &d(-123, 3)) < key(&CqlType::Decimal, &d(-12, 2)));
    assert!(key(&CqlType::Decimal, &d(-1, 0)) < key(&CqlType::Decimal, &d(0, 5)));
    let f = |x: f64| key(&CqlType::Double, &CqlValue::Double(x));
    assert!(f(-0.0) < f(0.0));
    assert!(f(f64::INFINITY) < f(f64::NAN));
    assert_eq!(f(f64::NAN), f(-f64::NAN));
    assert!(f(f64::NEG_INFINITY) < f(-1.0));
    let t = |s: &str| key(&CqlType::Text, &CqlValue::Text(s.into()));
    assert!(t("") < t("\0"));
    assert!(t("a") < t("a\0"));
    assert!(t("a\0") < t("a\u{1}"));
    assert!(t("Z") < t("a"), "byte order, not a collation");
    assert!(
        key(&CqlType::Int, &CqlValue::Empty) < key(&CqlType::Int, &CqlValue::Int(i32::MIN)),
        "an empty value sorts first"
    );
    assert!(matches!(
        value_key(&CqlType::Duration, &CqlValue::Empty),
        Err(OrderError::Unordered { .. })
    ));
    assert!(matches!(
        value_key(&CqlType::Int, &CqlValue::Text("x".into())),
        Err(OrderError::TypeMismatch { .. })
    ));
}

#[test]
fn prefix_bounds_cover_what_cassandra_covers() {
    let ty = CqlType::Int;
    let row = |a: i32, b: i32| {
        clustering_key([
            (&ty, false, &CqlValue::Int(a)),
            (&ty, true, &CqlValue::Int(b)),
        ])
        .unwrap_or_default()
    };
    let prefix = |a: i32| clustering_key([(&ty, false, &CqlValue::Int(a))]).unwrap_or_default();
    // a >= 2 AND a < 4 (exclusive end): rows (2, *) and (3, *).
    let (s, e) = (range_start(prefix(2), true), range_end(prefix(4), false));
    let inside = |k: &[u8]| s.as_slice() <= k && k < e.as_slice();
    assert!(!inside(&row(1, 9)));
    assert!(inside(&row(2, 100)) && inside(&row(2, -100)) && inside(&row(3, 0)));
    assert!(!inside(&row(4, -5)));
    // a > 2 AND a <= 4: rows (3, *) and (4, *).
    let (s, e) = (range_start(prefix(2), false), range_end(prefix(4), true));
    let inside = |k: &[u8]| s.as_slice() <= k && k < e.as_slice();
    assert!(!inside(&row(2, i32::MAX)) && !inside(&row(2, i32::MIN)));
    assert!(inside(&row(3, 1)) && inside(&row(4, i32::MIN)) && inside(&row(4, i32::MAX)));
    assert!(!inside(&row(5, 0)));
    // Unbounded both ways.
    let (s, e) = (range_start(Vec::new(), true), range_end(Vec::new(), true));
    assert!(s.as_slice() <= row(i32::MIN, i32::MIN).as_slice());
    assert!(row(i32::MAX, i32::MIN).as_slice() < e.as_slice());
}

fn scalar_type() -> impl Strategy<Value = CqlType> {
    prop_oneof![
        Just(CqlType::Ascii),
        Just(CqlType::Bigint),
        Just(CqlType::Blob),
        Just(CqlType::Boolean),
        Just(CqlType::Date),
        Just(CqlType::Decimal),
        Just(CqlType::Double),
        Just(CqlType::Float),
        Just(CqlType::Inet),
        Just(CqlType::Int),
        Just(CqlType::Smallint),
        Just(CqlType::Text),
        Just(CqlType::Time),
        Just(CqlType::Timestamp),
        Just(CqlType::Timeuuid),
        Just(CqlType::Tinyint),
        Just(CqlType::Uuid),
        Just(CqlType::Varint),
    ]
}

fn any_type() -> impl Strategy<Value = CqlType> {
    scalar_type().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| CqlType::List {
                element: Box::new(e),
                frozen: true
            }),
            inner.clone().prop_map(|e| CqlType::Set {
                element: Box::new(e),
                frozen: true
            }),
            (inner.clone(), inner.clone()).prop_map(|(k, v)| CqlType::Map {
                key: Box::new(k),
                value: Box::new(v),
                frozen: true
            }),
            proptest::collection::vec(inner.clone(), 1..4)
                .prop_map(|elements| CqlType::Tuple { elements }),
            proptest::collection::vec(inner, 1..4).prop_map(|f| CqlType::Udt {
                keyspace: "ks".into(),
                name: "u".into(),
                fields: f
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| (format!("f{i}"), t))
                    .collect(),
                frozen: true,
            }),
        ]
    })
}

/// Small value domains so that equal and near values are frequent.
fn value_of(ty: &CqlType) -> BoxedStrategy<CqlValue> {
    use CqlValue as V;
    let v: BoxedStrategy<CqlValue> = match ty {
        CqlType::Ascii => "[a-c\\x00]{0,3}".prop_map(V::Ascii).boxed(),
        CqlType::Text => "[a-cé\\x00Z]{0,3}".prop_map(V::Text).boxed(),
        CqlType::Blob => {
            proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(255)], 0..3)
                .prop_map(V::Blob)
                .boxed()
        }
        CqlType::Bigint => prop_oneof![-3i64..3, Just(i64::MIN), Just(i64::MAX)]
            .prop_map(V::Bigint)
            .boxed(),
        CqlType::Boolean => any::<bool>().prop_map(V::Boolean).boxed(),
        CqlType::Date => prop_oneof![-3i32..3, Just(i32::MIN), Just(i32::MAX)]
            .prop_map(V::Date)
            .boxed(),
        CqlType::Decimal => (-300i64..300, -3i32..4)
            .prop_map(|(u, s)| V::Decimal {
                unscaled: BigInt::from(u),
                scale: s,
            })
            .boxed(),
        CqlType::Double => prop_oneof![
            (-4i32..4).prop_map(|x| f64::from(x) / 2.0),
            Just(-0.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MIN_POSITIVE),
        ]
        .prop_map(V::Double)
        .boxed(),
        CqlType::Float => prop_oneof![
            (-4i16..4).prop_map(|x| f32::from(x) / 2.0),
            Just(-0.0f32),
            Just(f32::NAN),
            Just(f32::INFINITY),
        ]
        .prop_map(V::Float)
        .boxed(),
        CqlType::Inet => prop_oneof![
            (0u8..3).prop_map(|b| IpAddr::V4(Ipv4Addr::new(10, 0, 0, b))),
            (0u16..3).prop_map(|b| IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, b))),
        ]
        .prop_map(V::Inet)
        .boxed(),
        CqlType::Int => prop_oneof![-3i32..3, Just(i32::MIN), Just(i32::MAX)]
            .prop_map(V::Int)
            .boxed(),
        CqlType::Smallint => any::<i16>().prop_map(V::Smallint).boxed(),
        CqlType::Tinyint => any::<i8>().prop_map(V::Tinyint).boxed(),
        CqlType::Time => (0i64..5).prop_map(V::Time).boxed(),
        CqlType::Timestamp => prop_oneof![-3i64..3, Just(i64::MIN)]
            .prop_map(V::Timestamp)
            .boxed(),
        CqlType::Timeuuid => (0u64..4, prop_oneof![Just(0u64), Just(0x80), Just(u64::MAX)])
            .prop_map(|(t, l)| V::Timeuuid(v1(t << 31 | t, l)))
            .boxed(),
        CqlType::Uuid => prop_oneof![
            (0u64..4, 0u64..3).prop_map(|(t, l)| v1(t << 30 | t, l)),
            (0u128..4).prop_map(|n| Uuid::from_u128(n << 120 | 0x4000 << 64 | n)),
            (0u128..4).prop_map(|n| Uuid::from_u128(n << 100 | 0x3000 << 64)),
        ]
        .prop_map(V::Uuid)
        .boxed(),
        CqlType::Varint => prop_oneof![
            (-300i64..300).prop_map(BigInt::from),
            Just(BigInt::from(i64::MAX) * 1000),
            Just(BigInt::from(i64::MIN) * 1000),
        ]
        .prop_map(V::Varint)
        .boxed(),
        CqlType::List { element, .. } => proptest::collection::vec(value_of(element), 0..3)
            .prop_map(V::List)
            .boxed(),
        CqlType::Set { element, .. } => proptest::collection::vec(value_of(element), 0..3)
            .prop_map(V::Set)
            .boxed(),
        CqlType::Map { key, value, .. } => {
            proptest::collection::vec((value_of(key), value_of(value)), 0..3)
                .prop_map(V::Map)
                .boxed()
        }
        CqlType::Tuple { elements } => elements
            .iter()
            .map(|t| proptest::option::of(value_of(t)))
            .collect::<Vec<_>>()
            .prop_map(V::Tuple)
            .boxed(),
        CqlType::Udt { fields, .. } => fields
            .iter()
            .map(|(n, t)| (Just(n.clone()), proptest::option::of(value_of(t))))
            .collect::<Vec<_>>()
            .prop_map(V::Udt)
            .boxed(),
        _ => Just(V::Empty).boxed(),
    };
    prop_oneof![9 => v, 1 => Just(CqlValue::Empty)].boxed()
}

fn typed_pair() -> impl Strategy<Value = (CqlType, CqlValue, CqlValue)> {
    any_type().prop_flat_map(|ty| {
        let v = value_of(&ty);
        (Just(ty), v.clone(), v)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn keys_order_like_cassandra((ty, a, b) in typed_pair(), desc in any::<bool>()) {
        let expected = cmp(&ty, &a, &b);
        let (mut ka, mut kb) = (Vec::new(), Vec::new());
        push_component(&ty, &a, desc, &mut ka).unwrap_or_else(|e| panic!("{e}"));
        push_component(&ty, &b, desc, &mut kb).unwrap_or_else(|e| panic!("{e}"));
        let got = ka.cmp(&kb);
        prop_assert_eq!(got, if desc { expected.reverse() } else { expected }, "{} {:?} {:?}", ty, a, b);
        prop_assert!(ka.first().is_some_and(|b| *b != 0xFF));
    }
}

/// Clustering columns for the bound property: (type, descending).
fn clustering() -> impl Strategy<Value = Vec<(CqlType, bool)>> {
    proptest::collection::vec((scalar_type(), any::<bool>()), 1..4)
}

/// Clustering columns, rows, and (start length, start inclusive, end length, end inclusive).
type RowsAndBounds = (
    Vec<(CqlType, bool)>,
    Vec<Vec<CqlValue>>,
    (usize, bool, usize, bool),
);

fn rows_and_bounds() -> impl Strategy<Value = RowsAndBounds> {
    clustering().prop_flat_map(|cols| {
        let row = cols.iter().map(|(t, _)| value_of(t)).collect::<Vec<_>>();
        let n = cols.len();
        (
            Just(cols),
            proptest::collection::vec(row, 3..8),
            (0..=n, any::<bool>(), 0..=n, any::<bool>()),
        )
    })
}

/// Cassandra's comparison of a clustering with a prefix: over the prefix's columns only.
fn cmp_prefix(cols: &[(CqlType, bool)], row: &[CqlValue], prefix: &[CqlValue]) -> Ordering {
    for (i, p) in prefix.iter().enumerate() {
        let (ty, desc) = &cols[i];
        let c = cmp(ty, &row[i], p);
        let c = if *desc { c.reverse() } else { c };
        if c != Ordering::Equal {
            return c;
        }
    }
    Ordering::Equal
}

fn encode(cols: &[(CqlType, bool)], values: &[CqlValue]) -> Vec<u8> {
    clustering_key(cols.iter().zip(values).map(|((t, d), v)| (t, *d, v)))
        .unwrap_or_else(|e| panic!("{e}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn range_bounds_cover_exactly_the_slice((cols, rows, (sl, si, el, ei)) in rows_and_bounds()) {
        // Bounds taken from two of the generated rows, cut to prefixes.
        let start = &rows[0][..sl];
        let end = &rows[1][..el];
        let lo = range_start(encode(&cols, start), si);
        let hi = range_end(encode(&cols, end), ei);
        for row in &rows[2..] {
            let after_start = start.is_empty() || match cmp_prefix(&cols, row, start) {
                Ordering::Greater => true,
                Ordering::Equal => si,
                Ordering::Less => false,
            };
            let before_end = end.is_empty() || match cmp_prefix(&cols, row, end) {
                Ordering::Less => true,
                Ordering::Equal => ei,
                Ordering::Greater => false,
            };
            let k = encode(&cols, row);
            let inside = lo.as_slice() <= k.as_slice() && k.as_slice() < hi.as_slice();
            prop_assert_eq!(inside, after_start && before_end);
        }
    }
}
