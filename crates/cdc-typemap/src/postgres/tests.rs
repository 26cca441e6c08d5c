//! Golden tests: the binary encoding of every CQL type's edge values.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cdc_model::{CqlType, CqlValue};
use num_bigint::BigInt;
use uuid::Uuid;

use super::*;

fn enc(ty: &str, v: CqlValue) -> Option<String> {
    let ty = CqlType::parse(ty).ok()?;
    encode_binary(&ty, &v)
        .ok()
        .map(|b| b.map_or_else(|| "NULL".to_owned(), hex::encode))
}

fn err(ty: &str, v: CqlValue) -> Option<PgValueError> {
    let ty = CqlType::parse(ty).ok()?;
    encode_binary(&ty, &v).err()
}

fn dec(unscaled: i64, scale: i32) -> CqlValue {
    CqlValue::Decimal {
        unscaled: BigInt::from(unscaled),
        scale,
    }
}

#[test]
fn type_table_covers_every_cql_type() {
    let cases = [
        ("ascii", "text"),
        ("text", "text"),
        ("blob", "bytea"),
        ("boolean", "boolean"),
        ("tinyint", "smallint"),
        ("smallint", "smallint"),
        ("int", "integer"),
        ("bigint", "bigint"),
        ("counter", "bigint"),
        ("varint", "numeric"),
        ("decimal", "numeric"),
        ("float", "real"),
        ("double", "double precision"),
        ("date", "date"),
        ("time", "time"),
        ("timestamp", "timestamptz"),
        ("uuid", "uuid"),
        ("timeuuid", "uuid"),
        ("inet", "inet"),
        ("duration", "interval"),
        ("list<int>", "jsonb"),
        ("set<text>", "jsonb"),
        ("map<text, int>", "jsonb"),
        ("frozen<list<int>>", "jsonb"),
        ("tuple<int, text>", "jsonb"),
        ("vector<float, 3>", "jsonb"),
        ("'org.apache.cassandra.db.marshal.BytesType'", "bytea"),
    ];
    for (cql, pg) in cases {
        let ty = CqlType::parse(cql).unwrap_or_else(|e| panic!("{cql}: {e}"));
        assert_eq!(pg_type(&ty).sql_name(), pg, "{cql}");
    }
}

#[test]
fn integers_at_their_limits() {
    assert_eq!(
        enc("tinyint", CqlValue::Tinyint(i8::MIN)).as_deref(),
        Some("ff80")
    );
    assert_eq!(
        enc("tinyint", CqlValue::Tinyint(i8::MAX)).as_deref(),
        Some("007f")
    );
    assert_eq!(
        enc("smallint", CqlValue::Smallint(i16::MIN)).as_deref(),
        Some("8000")
    );
    assert_eq!(
        enc("int", CqlValue::Int(i32::MAX)).as_deref(),
        Some("7fffffff")
    );
    assert_eq!(enc("int", CqlValue::Int(-1)).as_deref(), Some("ffffffff"));
    assert_eq!(
        enc("bigint", CqlValue::Bigint(i64::MIN)).as_deref(),
        Some("8000000000000000")
    );
    assert_eq!(
        enc("counter", CqlValue::Counter(i64::MAX)).as_deref(),
        Some("7fffffffffffffff")
    );
    assert_eq!(
        enc("boolean", CqlValue::Boolean(true)).as_deref(),
        Some("01")
    );
}

#[test]
fn floats_keep_nan_and_infinities() {
    assert_eq!(
        enc("double", CqlValue::Double(f64::NAN)).as_deref(),
        Some("7ff8000000000000")
    );
    assert_eq!(
        enc("double", CqlValue::Double(f64::INFINITY)).as_deref(),
        Some("7ff0000000000000")
    );
    assert_eq!(
        enc("double", CqlValue::Double(f64::NEG_INFINITY)).as_deref(),
        Some("fff0000000000000")
    );
    assert_eq!(
        enc("double", CqlValue::Double(-0.0)).as_deref(),
        Some("8000000000000000")
    );
    assert_eq!(
        enc("float", CqlValue::Float(f32::NAN)).as_deref(),
        Some("7fc00000")
    );
    assert_eq!(
        enc("float", CqlValue::Float(1.5)).as_deref(),
        Some("3fc00000")
    );
}

#[test]
fn text_and_blobs_including_empty_and_nul() {
    assert_eq!(
        enc("text", CqlValue::Text(String::new())).as_deref(),
        Some("")
    );
    assert_eq!(
        enc("ascii", CqlValue::Ascii("ab".into())).as_deref(),
        Some("6162")
    );
    assert_eq!(enc("blob", CqlValue::Blob(Vec::new())).as_deref(), Some(""));
    assert_eq!(
        enc("blob", CqlValue::Blob(vec![0, 255])).as_deref(),
        Some("00ff")
    );
    assert!(matches!(
        err("text", CqlValue::Text("a\0b".into())),
        Some(PgValueError::NulCharacter { .. })
    ));
}

#[test]
fn numerics_exact() {
    // 0: no digits, weight 0, positive, dscale 0.
    assert_eq!(
        enc("varint", CqlValue::Varint(BigInt::from(0))).as_deref(),
        Some("0000000000000000")
    );
    // 12345 = [1, 2345], weight 1.
    assert_eq!(
        enc("varint", CqlValue::Varint(BigInt::from(12_345))).as_deref(),
        Some(
            "0002000100000000"
                .to_owned()
                .add_groups(&[1, 2345])
                .as_str()
        )
    );
    // -1.50: [1, 5000], weight 0, negative, dscale 2.
    assert_eq!(
        enc("decimal", dec(-150, 2)).as_deref(),
        Some(
            "0002000040000002"
                .to_owned()
                .add_groups(&[1, 5000])
                .as_str()
        )
    );
    // 0.0001: [1], weight -1, dscale 4.
    assert_eq!(
        enc("decimal", dec(1, 4)).as_deref(),
        Some("0001ffff00000004".to_owned().add_groups(&[1]).as_str())
    );
    // 1E+5 (negative scale): 100000 = [10, 0] -> trailing zero stripped: [10], weight 1.
    assert_eq!(
        enc("decimal", dec(1, -5)).as_deref(),
        Some("0001000100000000".to_owned().add_groups(&[10]).as_str())
    );
    let huge = BigInt::parse_bytes(b"-170141183460469231731687303715884105728", 10);
    assert!(huge.is_some_and(|h| enc("varint", CqlValue::Varint(h)).is_some()));
}

trait AddGroups {
    fn add_groups(self, groups: &[i16]) -> String;
}

impl AddGroups for String {
    fn add_groups(mut self, groups: &[i16]) -> String {
        for g in groups {
            self.push_str(&hex::encode(g.to_be_bytes()));
        }
        self
    }
}

#[test]
fn dates_times_and_timestamps() {
    // 1970-01-01 is -10957 days from 2000-01-01.
    assert_eq!(enc("date", CqlValue::Date(0)).as_deref(), Some("ffffd533"));
    assert!(matches!(
        err("date", CqlValue::Date(i32::MIN)),
        Some(PgValueError::OutOfRange { .. })
    ));
    assert!(err("date", CqlValue::Date(i32::MAX)).is_some());
    assert_eq!(
        enc("time", CqlValue::Time(1_999)).as_deref(),
        Some("0000000000000001")
    );
    assert!(err("time", CqlValue::Time(86_400_000_000_000)).is_some());
    assert_eq!(
        enc("timestamp", CqlValue::Timestamp(946_684_800_000)).as_deref(),
        Some("0000000000000000")
    );
    assert!(err("timestamp", CqlValue::Timestamp(i64::MAX)).is_some());
    assert!(err("timestamp", CqlValue::Timestamp(i64::MIN)).is_some());
    assert_eq!(
        enc(
            "duration",
            CqlValue::Duration {
                months: 1,
                days: -2,
                nanoseconds: 3_000
            }
        )
        .as_deref(),
        Some("0000000000000003fffffffe00000001")
    );
}

#[test]
fn uuids_and_inets() {
    let u = Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
    assert_eq!(
        enc("timeuuid", CqlValue::Timeuuid(u)).as_deref(),
        Some("0102030405060708090a0b0c0d0e0f10")
    );
    assert_eq!(
        enc(
            "inet",
            CqlValue::Inet(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
        )
        .as_deref(),
        Some("022000040a000001")
    );
    assert_eq!(
        enc("inet", CqlValue::Inet(IpAddr::V6(Ipv6Addr::LOCALHOST))).as_deref(),
        Some("03800010000000000000000000000000000000001")
            .map(|_| "0380001000000000000000000000000000000001")
    );
}

#[test]
fn collections_as_jsonb_null_vs_empty() {
    assert_eq!(
        enc("list<int>", CqlValue::List(Vec::new())).as_deref(),
        Some("NULL")
    );
    assert_eq!(enc("int", CqlValue::Empty).as_deref(), Some("NULL"));
    let map = CqlValue::Map(vec![(CqlValue::Text("k".into()), CqlValue::Int(1))]);
    assert_eq!(
        enc("map<text, int>", map).as_deref(),
        Some(format!("01{}", hex::encode(r#"{"k":1}"#)).as_str())
    );
    let map = CqlValue::Map(vec![(CqlValue::Int(2), CqlValue::Double(f64::NAN))]);
    assert_eq!(jsonb_value(&map).to_string(), r#"[[2,"NaN"]]"#);
    let tuple = CqlValue::Tuple(vec![Some(CqlValue::Int(1)), None]);
    assert_eq!(jsonb_value(&tuple).to_string(), "[1,null]");
    assert!(matches!(
        err(
            "list<text>",
            CqlValue::List(vec![CqlValue::Text("\0".into())])
        ),
        Some(PgValueError::NulCharacter { .. })
    ));
    assert!(matches!(
        err("int", CqlValue::Text("x".into())),
        Some(PgValueError::TypeMismatch { .. })
    ));
}

#[test]
fn every_value_error_is_poison() {
    let e = PgValueError::NulCharacter {
        cql: "text".into(),
        pg: "text",
    };
    assert_eq!(e.class(), cdc_model::ErrorClass::Poison);
}
