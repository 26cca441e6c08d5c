//! Every CQL type's edge values, encoded by `cdc_typemap::postgres`, go through a real binary COPY
//! into PostgreSQL and read back as the expected text.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cdc_model::{CqlType, CqlValue};
use cdc_sink::postgres::merge::{Encoded, wire_type};
use cdc_testkit::{StackEnv, unique_name};
use cdc_typemap::postgres::{encode_binary, pg_type};
use num_bigint::BigInt;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

fn dec(unscaled: &str, scale: i32) -> CqlValue {
    CqlValue::Decimal {
        unscaled: BigInt::parse_bytes(unscaled.as_bytes(), 10).unwrap_or_default(),
        scale,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_values_round_trip_through_binary_copy() {
    let stack = StackEnv::load();
    let cases: Vec<(&str, CqlValue, &str)> = vec![
        ("text", CqlValue::Text(String::new()), ""),
        ("text", CqlValue::Text("fake ü ✓".into()), "fake ü ✓"),
        ("ascii", CqlValue::Ascii("abc".into()), "abc"),
        ("blob", CqlValue::Blob(Vec::new()), "\\x"),
        ("blob", CqlValue::Blob(vec![0, 255]), "\\x00ff"),
        ("boolean", CqlValue::Boolean(false), "false"),
        ("tinyint", CqlValue::Tinyint(i8::MIN), "-128"),
        ("smallint", CqlValue::Smallint(i16::MAX), "32767"),
        ("int", CqlValue::Int(i32::MIN), "-2147483648"),
        ("bigint", CqlValue::Bigint(i64::MAX), "9223372036854775807"),
        ("counter", CqlValue::Counter(-1), "-1"),
        ("varint", CqlValue::Varint(BigInt::from(0)), "0"),
        (
            "varint",
            CqlValue::Varint(
                BigInt::parse_bytes(b"-170141183460469231731687303715884105728", 10)
                    .unwrap_or_default(),
            ),
            "-170141183460469231731687303715884105728",
        ),
        ("decimal", dec("-150", 2), "-1.50"),
        ("decimal", dec("1", 4), "0.0001"),
        ("decimal", dec("1", -5), "100000"),
        (
            "decimal",
            dec("123456789012345678901234567890", 10),
            "12345678901234567890.1234567890",
        ),
        ("decimal", dec("0", 3), "0.000"),
        ("float", CqlValue::Float(1.5), "1.5"),
        ("float", CqlValue::Float(f32::NAN), "NaN"),
        ("double", CqlValue::Double(f64::INFINITY), "Infinity"),
        ("double", CqlValue::Double(f64::NEG_INFINITY), "-Infinity"),
        ("double", CqlValue::Double(-0.0), "-0"),
        ("date", CqlValue::Date(0), "1970-01-01"),
        ("date", CqlValue::Date(-719_162), "0001-01-01"),
        (
            "time",
            CqlValue::Time(86_399_999_999_999),
            "23:59:59.999999",
        ),
        (
            "timestamp",
            CqlValue::Timestamp(0),
            "1970-01-01 00:00:00+00",
        ),
        (
            "timestamp",
            CqlValue::Timestamp(-1),
            "1969-12-31 23:59:59.999+00",
        ),
        (
            "uuid",
            CqlValue::Uuid(Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10)),
            "01020304-0506-0708-090a-0b0c0d0e0f10",
        ),
        (
            "timeuuid",
            CqlValue::Timeuuid(Uuid::from_u128(1)),
            "00000000-0000-0000-0000-000000000001",
        ),
        (
            "inet",
            CqlValue::Inet(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
            "10.0.0.1/32",
        ),
        (
            "inet",
            CqlValue::Inet(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            "::1/128",
        ),
        (
            "duration",
            CqlValue::Duration {
                months: 14,
                days: -3,
                nanoseconds: 1_500_000_000,
            },
            "1 year 2 mons -3 days +00:00:01.5",
        ),
        (
            "list<int>",
            CqlValue::List(vec![CqlValue::Int(1), CqlValue::Int(2)]),
            "[1, 2]",
        ),
        (
            "map<text, double>",
            CqlValue::Map(vec![(
                CqlValue::Text("k".into()),
                CqlValue::Double(f64::NAN),
            )]),
            "{\"k\": \"NaN\"}",
        ),
        (
            "frozen<tuple<int, text>>",
            CqlValue::Tuple(vec![Some(CqlValue::Int(1)), None]),
            "[1, null]",
        ),
        ("list<int>", CqlValue::List(Vec::new()), "NULL"),
        ("int", CqlValue::Empty, "NULL"),
    ];
    let (client, conn) = tokio_postgres::connect(&stack.postgres_url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let table = unique_name("typemap");
    let mut cols = vec!["i integer".to_owned()];
    let mut types = vec![tokio_postgres::types::Type::INT4];
    for (n, (cql, _, _)) in cases.iter().enumerate() {
        let ty = CqlType::parse(cql).expect("CQL type");
        let pg = pg_type(&ty);
        cols.push(format!("c{n} {}", pg.sql_name()));
        types.push(wire_type(pg));
    }
    client
        .batch_execute(&format!("CREATE TEMP TABLE {table} ({})", cols.join(", ")))
        .await
        .expect("create");
    let encoded: Vec<Option<Vec<u8>>> = cases
        .iter()
        .map(|(cql, v, _)| {
            let ty = CqlType::parse(cql).expect("CQL type");
            encode_binary(&ty, v).unwrap_or_else(|e| panic!("{cql}: {e}"))
        })
        .collect();
    let sink = client
        .copy_in(&format!("COPY {table} FROM STDIN BINARY"))
        .await
        .expect("copy");
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures::pin_mut!(writer);
    let one = 1i32.to_be_bytes().to_vec();
    let mut row: Vec<Encoded<'_>> = vec![Encoded(Some(&one))];
    row.extend(encoded.iter().map(|v| Encoded(v.as_deref())));
    let refs: Vec<&(dyn ToSql + Sync)> = row.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    writer.as_mut().write(&refs).await.expect("write row");
    writer.finish().await.expect("finish copy");
    client
        .batch_execute("SET TIME ZONE 'UTC'; SET extra_float_digits = 0")
        .await
        .expect("session");
    for (n, (cql, _, expected)) in cases.iter().enumerate() {
        let got: Option<String> = client
            .query_one(&format!("SELECT c{n}::text FROM {table}"), &[])
            .await
            .expect("select")
            .get(0);
        assert_eq!(
            got.as_deref().unwrap_or("NULL"),
            *expected,
            "column c{n} ({cql})"
        );
    }
}
