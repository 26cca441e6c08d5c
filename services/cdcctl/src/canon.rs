//! One comparable form of a column value, whichever side it was read from: Cassandra (a typed
//! [`CqlValue`]) or a destination (text produced by the SQL expressions of
//! [`crate::destinations`], or JSON for collections).
//!
//! The canonical form of a value is `None` (null) or a string:
//!
//! | CQL | canonical string |
//! | --- | --- |
//! | text, ascii | the text |
//! | blob, custom | lower-case hex |
//! | boolean | `true` / `false` |
//! | integers, counter, varint | decimal digits |
//! | decimal | plain notation without trailing fractional zeros (`1.50` → `1.5`) |
//! | float, double | Rust's shortest round-trip form of the value parsed at its own width; `NaN`, `Infinity`, `-Infinity` |
//! | date | days since 1970-01-01 |
//! | time | microseconds since midnight (PostgreSQL keeps µs) |
//! | timestamp | milliseconds since the epoch |
//! | uuid, timeuuid | lower-case hyphenated |
//! | inet | the address; IPv4-mapped IPv6 (`::ffff:a.b.c.d`, how ClickHouse stores IPv4) as IPv4 |
//! | duration | `months,days,microseconds`; the zero duration is null (ClickHouse cannot store a null one) |
//! | list, vector | JSON array of the elements' canonical forms |
//! | set | the same, sorted |
//! | map | JSON array of `[key, value]` pairs sorted by key |
//! | tuple, UDT | JSON array of the components (UDT fields in declaration order), `null` for nulls |
//!
//! Empty collections and tuples/UDTs whose components are all null are null: Cassandra does not
//! tell an empty collection from a null one, PostgreSQL stores both as NULL and ClickHouse cannot
//! store a null composite. Zero-length (`Empty`) scalars are null too.
//!
//! Canonical strings are compared, hashed and (for key columns only) shown; never print the
//! canonical form of a non-key column: it may be PII.

use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use cdc_model::json_codec::{format_decimal, parse_decimal};
use cdc_model::{CqlType, CqlValue};
use num_bigint::BigInt;
use serde_json::Value as Json;

/// A canonical value: `None` is null.
pub type Canon = Option<String>;

/// Which destination family produced a text or JSON value (their JSON leaves differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL and TimescaleDB (`jsonb` built by `cdc_typemap::postgres::jsonb_value`).
    Postgres,
    /// ClickHouse (`toJSONString` of typed columns).
    ClickHouse,
}

/// Whether `ty` is stored as a composite (JSON in PostgreSQL, Array/Map/Tuple in ClickHouse).
pub fn is_composite(ty: &CqlType) -> bool {
    matches!(
        ty,
        CqlType::List { .. }
            | CqlType::Set { .. }
            | CqlType::Map { .. }
            | CqlType::Tuple { .. }
            | CqlType::Udt { .. }
            | CqlType::Vector { .. }
    )
}

fn canon_f64(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x == f64::INFINITY {
        "Infinity".into()
    } else if x == f64::NEG_INFINITY {
        "-Infinity".into()
    } else {
        format!("{x}")
    }
}

fn canon_f32(x: f32) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x == f32::INFINITY {
        "Infinity".into()
    } else if x == f32::NEG_INFINITY {
        "-Infinity".into()
    } else {
        format!("{x}")
    }
}

fn parse_float(s: &str) -> Option<f64> {
    match s.trim().to_ascii_lowercase().as_str() {
        "nan" | "-nan" | "+nan" => Some(f64::NAN),
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

fn parse_float32(s: &str) -> Option<f32> {
    match s.trim().to_ascii_lowercase().as_str() {
        "nan" | "-nan" | "+nan" => Some(f32::NAN),
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f32::INFINITY),
        "-inf" | "-infinity" => Some(f32::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// `unscaled × 10^-scale` without trailing fractional zeros.
pub fn canon_decimal(unscaled: &BigInt, scale: i32) -> String {
    let ten = BigInt::from(10u8);
    let zero = BigInt::from(0u8);
    let mut u = unscaled.clone();
    let mut s = i64::from(scale);
    if u == zero {
        return "0".into();
    }
    if s < 0 {
        // Bounded: a CQL decimal with a huge negative scale is not something to expand.
        let exp = u32::try_from(-s).unwrap_or(u32::MAX).min(4096);
        u *= ten.pow(exp);
        s = 0;
    }
    while s > 0 && (&u % &ten) == zero {
        u /= &ten;
        s -= 1;
    }
    format_decimal(&u, i32::try_from(s).unwrap_or(i32::MAX))
}

fn canon_decimal_text(s: &str) -> Option<String> {
    let (u, scale) = parse_decimal(s.trim())?;
    Some(canon_decimal(&u, scale))
}

fn canon_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

fn canon_duration(months: i64, days: i64, micros: i64) -> Canon {
    if months == 0 && days == 0 && micros == 0 {
        None
    } else {
        Some(format!("{months},{days},{micros}"))
    }
}

fn canon_int_text(s: &str) -> Option<String> {
    BigInt::from_str(s.trim().trim_start_matches('+'))
        .ok()
        .map(|n| n.to_string())
}

/// Days since the epoch of `YYYY-MM-DD`.
fn days_of_date(s: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s.trim(), &format).ok()?;
    Some(
        i64::from(d.to_julian_day())
            - i64::from(time::macros::date!(1970 - 01 - 01).to_julian_day()),
    )
}

/// Epoch milliseconds of `YYYY-MM-DD HH:MM:SS[.fff…]` (UTC; ClickHouse's DateTime64 text) or
/// an RFC 3339 timestamp.
fn millis_of_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok();
    }
    let (date, rest) = s.split_once([' ', 'T'])?;
    let days = days_of_date(date)?;
    let (hms, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let mut parts = hms.split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let sec: i64 = parts.next()?.parse().ok()?;
    let frac_digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
    let ms: i64 = format!("{frac_digits:0<3}")[..3].parse().ok()?;
    Some(((days * 86_400 + h * 3_600 + m * 60 + sec) * 1_000) + ms)
}

// ---------------------------------------------------------------------------------------------
// From Cassandra (typed values)

/// The canonical form of a Cassandra value of type `ty` (`None` = null).
pub fn from_cql(ty: &CqlType, value: Option<&CqlValue>) -> Canon {
    let value = value?;
    if matches!(value, CqlValue::Empty) {
        return None;
    }
    if is_composite(ty) {
        let tree = tree_from_cql(ty, value)?;
        return top_level_tree(tree);
    }
    scalar_from_cql(ty, value)
}

fn top_level_tree(tree: Json) -> Canon {
    match &tree {
        Json::Array(items) if items.is_empty() || items.iter().all(Json::is_null) => None,
        _ => Some(tree.to_string()),
    }
}

fn scalar_from_cql(ty: &CqlType, value: &CqlValue) -> Canon {
    use CqlValue as V;
    Some(match value {
        V::Empty => return None,
        V::Ascii(s) | V::Text(s) => s.clone(),
        V::Blob(b) | V::Custom(b) => hex::encode(b),
        V::Boolean(b) => b.to_string(),
        V::Bigint(n) | V::Counter(n) => n.to_string(),
        V::Int(n) => n.to_string(),
        V::Smallint(n) => n.to_string(),
        V::Tinyint(n) => n.to_string(),
        V::Varint(n) => n.to_string(),
        V::Decimal { unscaled, scale } => canon_decimal(unscaled, *scale),
        V::Double(x) => canon_f64(*x),
        V::Float(x) => canon_f32(*x),
        V::Date(d) => d.to_string(),
        V::Time(ns) => (ns / 1_000).to_string(),
        V::Timestamp(ms) => ms.to_string(),
        V::Uuid(u) | V::Timeuuid(u) => u.to_string(),
        V::Inet(ip) => canon_ip(*ip),
        V::Duration {
            months,
            days,
            nanoseconds,
        } => {
            return canon_duration(i64::from(*months), i64::from(*days), nanoseconds / 1_000);
        }
        composite => return tree_from_cql(ty, composite).map(|t| t.to_string()),
    })
}

fn leaf_from_cql(ty: &CqlType, value: Option<&CqlValue>) -> Json {
    match value {
        None | Some(CqlValue::Empty) => Json::Null,
        Some(v) if is_composite(ty) => tree_from_cql(ty, v).unwrap_or(Json::Null),
        Some(CqlValue::Duration {
            months,
            days,
            nanoseconds,
        }) => Json::String(format!("{months},{days},{}", nanoseconds / 1_000)),
        Some(v) => scalar_from_cql(ty, v).map_or(Json::Null, Json::String),
    }
}

fn sort_json(items: &mut [Json]) {
    items.sort_by_key(|j| j.to_string());
}

fn sort_pairs(pairs: &mut [Json]) {
    pairs.sort_by_key(|p| match p {
        Json::Array(kv) => kv.first().map(Json::to_string).unwrap_or_default(),
        other => other.to_string(),
    });
}

fn tree_from_cql(ty: &CqlType, value: &CqlValue) -> Option<Json> {
    use CqlValue as V;
    Some(match (ty, value) {
        (CqlType::List { element, .. } | CqlType::Vector { element, .. }, V::List(items))
        | (CqlType::List { element, .. } | CqlType::Vector { element, .. }, V::Vector(items)) => {
            Json::Array(
                items
                    .iter()
                    .map(|v| leaf_from_cql(element, Some(v)))
                    .collect(),
            )
        }
        (CqlType::Set { element, .. }, V::Set(items) | V::List(items)) => {
            let mut out: Vec<Json> = items
                .iter()
                .map(|v| leaf_from_cql(element, Some(v)))
                .collect();
            sort_json(&mut out);
            Json::Array(out)
        }
        (
            CqlType::Map {
                key, value: vty, ..
            },
            V::Map(entries),
        ) => {
            let mut out: Vec<Json> = entries
                .iter()
                .map(|(k, v)| {
                    Json::Array(vec![
                        leaf_from_cql(key, Some(k)),
                        leaf_from_cql(vty, Some(v)),
                    ])
                })
                .collect();
            sort_pairs(&mut out);
            Json::Array(out)
        }
        (CqlType::Tuple { elements }, V::Tuple(items)) => Json::Array(
            elements
                .iter()
                .enumerate()
                .map(|(i, t)| leaf_from_cql(t, items.get(i).and_then(Option::as_ref)))
                .collect(),
        ),
        (CqlType::Udt { fields, .. }, V::Udt(values)) => Json::Array(
            fields
                .iter()
                .map(|(name, t)| {
                    let v = values
                        .iter()
                        .find(|(n, _)| n == name)
                        .and_then(|(_, v)| v.as_ref());
                    leaf_from_cql(t, v)
                })
                .collect(),
        ),
        // A value whose shape does not fit the type: compare something stable rather than panic.
        (_, other) => Json::String(format!("<{}>", other.kind_name())),
    })
}

// ---------------------------------------------------------------------------------------------
// From a destination

/// The canonical form of a destination value of (masked) type `ty`: `text` is what the SQL
/// expression of [`crate::destinations`] returned for the column (JSON text for composites).
pub fn from_text(ty: &CqlType, text: Option<&str>, dialect: Dialect) -> Canon {
    let text = text?;
    if is_composite(ty) {
        let json: Json = match serde_json::from_str(text) {
            Ok(j) => j,
            // Not JSON: keep it as it is, so it compares unequal rather than disappearing.
            Err(_) => return Some(format!("<unparsed {}>", text.len())),
        };
        if json.is_null() {
            return None;
        }
        return top_level_tree(tree_from_json(ty, &json, dialect));
    }
    scalar_from_text(ty, text)
}

fn scalar_from_text(ty: &CqlType, text: &str) -> Canon {
    let unparsed = || Some(format!("<unparsed {}>", text.len()));
    match ty {
        CqlType::Ascii | CqlType::Text => Some(text.to_owned()),
        CqlType::Blob | CqlType::Custom { .. } => {
            Some(text.trim_start_matches("\\x").to_ascii_lowercase())
        }
        CqlType::Boolean => match text.trim() {
            "true" | "t" | "1" => Some("true".into()),
            "false" | "f" | "0" => Some("false".into()),
            _ => unparsed(),
        },
        CqlType::Tinyint
        | CqlType::Smallint
        | CqlType::Int
        | CqlType::Bigint
        | CqlType::Counter
        | CqlType::Varint
        | CqlType::Date
        | CqlType::Time
        | CqlType::Timestamp => canon_int_text(text).or_else(unparsed),
        CqlType::Decimal => canon_decimal_text(text).or_else(unparsed),
        CqlType::Float => parse_float32(text).map(canon_f32).or_else(unparsed),
        CqlType::Double => parse_float(text).map(canon_f64).or_else(unparsed),
        CqlType::Uuid | CqlType::Timeuuid => uuid::Uuid::parse_str(text.trim())
            .map(|u| u.to_string())
            .ok()
            .or_else(unparsed),
        CqlType::Inet => IpAddr::from_str(text.trim())
            .map(canon_ip)
            .ok()
            .or_else(unparsed),
        CqlType::Duration => {
            let parts: Vec<Option<i64>> = text.split(',').map(|p| p.trim().parse().ok()).collect();
            match parts.as_slice() {
                [Some(m), Some(d), Some(us)] => canon_duration(*m, *d, *us),
                _ => unparsed(),
            }
        }
        _ => unparsed(),
    }
}

fn json_text(j: &Json) -> Option<String> {
    match j {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn leaf_from_json(ty: &CqlType, j: &Json, dialect: Dialect) -> Json {
    if j.is_null() {
        return Json::Null;
    }
    if is_composite(ty) {
        return tree_from_json(ty, j, dialect);
    }
    let odd = || Json::String(format!("<unparsed {}>", j.to_string().len()));
    let s = match ty {
        CqlType::Duration => match j {
            Json::Object(o) => {
                let get = |k: &str| {
                    o.get(k)
                        .and_then(json_text)
                        .and_then(|t| t.parse::<i64>().ok())
                };
                match (get("months"), get("days"), get("nanoseconds")) {
                    (Some(m), Some(d), Some(ns)) => Some(format!("{m},{d},{}", ns / 1_000)),
                    _ => None,
                }
            }
            Json::Array(a) if a.len() == 3 => {
                let v: Vec<Option<i64>> = a
                    .iter()
                    .map(|x| json_text(x).and_then(|t| t.parse().ok()))
                    .collect();
                match v.as_slice() {
                    [Some(m), Some(d), Some(ns)] => Some(format!("{m},{d},{}", ns / 1_000)),
                    _ => None,
                }
            }
            _ => None,
        },
        CqlType::Blob | CqlType::Custom { .. } => match (dialect, j) {
            (Dialect::Postgres, Json::String(b64)) => BASE64.decode(b64).ok().map(hex::encode),
            (Dialect::ClickHouse, Json::String(raw)) => Some(hex::encode(raw.as_bytes())),
            _ => None,
        },
        CqlType::Date => json_text(j).and_then(|t| {
            t.parse::<i64>()
                .ok()
                .or_else(|| days_of_date(&t))
                .map(|d| d.to_string())
        }),
        CqlType::Time => json_text(j)
            .and_then(|t| t.parse::<i64>().ok())
            .map(|ns| (ns / 1_000).to_string()),
        CqlType::Timestamp => json_text(j).and_then(|t| {
            t.parse::<i64>()
                .ok()
                .or_else(|| millis_of_datetime(&t))
                .map(|ms| ms.to_string())
        }),
        other => json_text(j).and_then(|t| scalar_from_text(other, &t)),
    };
    s.map_or_else(odd, Json::String)
}

fn tree_from_json(ty: &CqlType, j: &Json, dialect: Dialect) -> Json {
    match ty {
        CqlType::List { element, .. } | CqlType::Vector { element, .. } => match j {
            Json::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|v| leaf_from_json(element, v, dialect))
                    .collect(),
            ),
            _ => Json::String("<not an array>".into()),
        },
        CqlType::Set { element, .. } => match j {
            Json::Array(items) => {
                let mut out: Vec<Json> = items
                    .iter()
                    .map(|v| leaf_from_json(element, v, dialect))
                    .collect();
                sort_json(&mut out);
                Json::Array(out)
            }
            _ => Json::String("<not an array>".into()),
        },
        CqlType::Map { key, value, .. } => {
            let mut out: Vec<Json> = match j {
                Json::Object(o) => o
                    .iter()
                    .map(|(k, v)| {
                        Json::Array(vec![
                            leaf_from_json(key, &Json::String(k.clone()), dialect),
                            leaf_from_json(value, v, dialect),
                        ])
                    })
                    .collect(),
                Json::Array(pairs) => pairs
                    .iter()
                    .map(|p| {
                        let (k, v) = match p {
                            Json::Array(kv) if kv.len() == 2 => (&kv[0], &kv[1]),
                            Json::Object(o) => (
                                o.get("key").unwrap_or(&Json::Null),
                                o.get("value").unwrap_or(&Json::Null),
                            ),
                            _ => (&Json::Null, &Json::Null),
                        };
                        Json::Array(vec![
                            leaf_from_json(key, k, dialect),
                            leaf_from_json(value, v, dialect),
                        ])
                    })
                    .collect(),
                _ => return Json::String("<not a map>".into()),
            };
            sort_pairs(&mut out);
            Json::Array(out)
        }
        CqlType::Tuple { elements } => {
            let items: Vec<&Json> = match j {
                Json::Array(a) => a.iter().collect(),
                Json::Object(o) => o.values().collect(),
                _ => return Json::String("<not a tuple>".into()),
            };
            Json::Array(
                elements
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        items
                            .get(i)
                            .map_or(Json::Null, |v| leaf_from_json(t, v, dialect))
                    })
                    .collect(),
            )
        }
        CqlType::Udt { fields, .. } => Json::Array(
            fields
                .iter()
                .enumerate()
                .map(|(i, (name, t))| {
                    let v = match j {
                        Json::Object(o) => o.get(name),
                        Json::Array(a) => a.get(i),
                        _ => None,
                    };
                    v.map_or(Json::Null, |v| leaf_from_json(t, v, dialect))
                })
                .collect(),
        ),
        other => leaf_from_json(other, j, dialect),
    }
}

/// The CQL value of a canonical key component (for computing tokens of destination rows). Only
/// the types that can be rebuilt exactly from their canonical form; `None` otherwise.
pub fn key_value_from_canon(ty: &CqlType, canon: &str) -> Option<CqlValue> {
    Some(match ty {
        CqlType::Text => CqlValue::Text(canon.to_owned()),
        CqlType::Ascii => CqlValue::Ascii(canon.to_owned()),
        CqlType::Blob => CqlValue::Blob(hex::decode(canon).ok()?),
        CqlType::Boolean => CqlValue::Boolean(canon == "true"),
        CqlType::Tinyint => CqlValue::Tinyint(canon.parse().ok()?),
        CqlType::Smallint => CqlValue::Smallint(canon.parse().ok()?),
        CqlType::Int => CqlValue::Int(canon.parse().ok()?),
        CqlType::Bigint => CqlValue::Bigint(canon.parse().ok()?),
        CqlType::Varint => CqlValue::Varint(BigInt::from_str(canon).ok()?),
        CqlType::Date => CqlValue::Date(canon.parse().ok()?),
        CqlType::Timestamp => CqlValue::Timestamp(canon.parse().ok()?),
        CqlType::Uuid => CqlValue::Uuid(uuid::Uuid::parse_str(canon).ok()?),
        CqlType::Timeuuid => CqlValue::Timeuuid(uuid::Uuid::parse_str(canon).ok()?),
        CqlType::Double => CqlValue::Double(parse_float(canon)?),
        CqlType::Float => CqlValue::Float(parse_float32(canon)?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(element: CqlType) -> CqlType {
        CqlType::List {
            element: Box::new(element),
            frozen: false,
        }
    }

    #[test]
    fn scalars_agree_across_sides() {
        let cases: Vec<(CqlType, CqlValue, &str, &str)> = vec![
            (CqlType::Text, CqlValue::Text("a b".into()), "a b", "a b"),
            (CqlType::Int, CqlValue::Int(-7), "-7", "-7"),
            (CqlType::Boolean, CqlValue::Boolean(true), "true", "true"),
            (
                CqlType::Decimal,
                CqlValue::Decimal {
                    unscaled: BigInt::from(150),
                    scale: 2,
                },
                "1.50",
                "1.500000000000000000",
            ),
            (CqlType::Double, CqlValue::Double(0.1), "0.1", "0.1"),
            (CqlType::Double, CqlValue::Double(f64::NAN), "NaN", "nan"),
            (
                CqlType::Float,
                CqlValue::Float(f32::INFINITY),
                "Infinity",
                "inf",
            ),
            (CqlType::Float, CqlValue::Float(1.1), "1.1", "1.1"),
            (
                CqlType::Timestamp,
                CqlValue::Timestamp(1_700_000_000_123),
                "1700000000123",
                "1700000000123",
            ),
            (
                CqlType::Time,
                CqlValue::Time(3_723_000_001_999),
                "3723000001",
                "3723000001",
            ),
            (CqlType::Date, CqlValue::Date(-3), "-3", "-3"),
            (
                CqlType::Inet,
                CqlValue::Inet("10.1.2.3".parse().unwrap()),
                "10.1.2.3",
                "::ffff:10.1.2.3",
            ),
            (CqlType::Blob, CqlValue::Blob(vec![0xAB, 1]), "ab01", "AB01"),
            (
                CqlType::Uuid,
                CqlValue::Uuid(uuid::Uuid::from_u128(0xABCDEF)),
                "00000000-0000-0000-0000-000000abcdef",
                "00000000-0000-0000-0000-000000ABCDEF",
            ),
            (
                CqlType::Duration,
                CqlValue::Duration {
                    months: 1,
                    days: 2,
                    nanoseconds: 3_000_999,
                },
                "1,2,3000",
                "1,2,3000",
            ),
        ];
        for (ty, v, pg, ch) in cases {
            let want = from_cql(&ty, Some(&v));
            assert!(want.is_some(), "{ty:?}");
            assert_eq!(
                from_text(&ty, Some(pg), Dialect::Postgres),
                want,
                "pg {ty:?}"
            );
            assert_eq!(
                from_text(&ty, Some(ch), Dialect::ClickHouse),
                want,
                "ch {ty:?}"
            );
        }
    }

    #[test]
    fn nulls_and_empties() {
        assert_eq!(from_cql(&CqlType::Int, None), None);
        assert_eq!(from_cql(&CqlType::Int, Some(&CqlValue::Empty)), None);
        assert_eq!(
            from_cql(&list(CqlType::Int), Some(&CqlValue::List(vec![]))),
            None
        );
        assert_eq!(
            from_text(&list(CqlType::Int), Some("[]"), Dialect::ClickHouse),
            None
        );
        let zero = CqlValue::Duration {
            months: 0,
            days: 0,
            nanoseconds: 0,
        };
        assert_eq!(from_cql(&CqlType::Duration, Some(&zero)), None);
        assert_eq!(
            from_text(&CqlType::Duration, Some("0,0,0"), Dialect::ClickHouse),
            None
        );
    }

    #[test]
    fn collections_agree_across_sides() {
        let map_ty = CqlType::Map {
            key: Box::new(CqlType::Text),
            value: Box::new(CqlType::Timestamp),
            frozen: false,
        };
        let v = CqlValue::Map(vec![
            (CqlValue::Text("b".into()), CqlValue::Timestamp(1_000)),
            (CqlValue::Text("a".into()), CqlValue::Timestamp(2_500)),
        ]);
        let want = from_cql(&map_ty, Some(&v));
        let pg = cdc_typemap::postgres::jsonb_value(&v).to_string();
        assert_eq!(from_text(&map_ty, Some(&pg), Dialect::Postgres), want);
        let ch = r#"{"a":"1970-01-01 00:00:02.500000","b":"1970-01-01 00:00:01.000000"}"#;
        assert_eq!(from_text(&map_ty, Some(ch), Dialect::ClickHouse), want);

        let set_ty = CqlType::Set {
            element: Box::new(CqlType::Bigint),
            frozen: true,
        };
        let v = CqlValue::Set(vec![CqlValue::Bigint(3), CqlValue::Bigint(1)]);
        let want = from_cql(&set_ty, Some(&v));
        assert_eq!(from_text(&set_ty, Some("[1, 3]"), Dialect::Postgres), want);
        assert_eq!(
            from_text(&set_ty, Some(r#"["1","3"]"#), Dialect::ClickHouse),
            want
        );

        let udt = CqlType::Udt {
            keyspace: "ks".into(),
            name: "addr".into(),
            fields: vec![
                ("street".into(), CqlType::Text),
                ("zip".into(), CqlType::Int),
            ],
            frozen: true,
        };
        let v = CqlValue::Udt(vec![
            ("street".into(), Some(CqlValue::Text("Main".into()))),
            ("zip".into(), None),
        ]);
        let want = from_cql(&udt, Some(&v));
        assert_eq!(
            from_text(
                &udt,
                Some(r#"{"zip": null, "street": "Main"}"#),
                Dialect::Postgres
            ),
            want
        );
        assert_eq!(
            from_text(
                &udt,
                Some(r#"{"street":"Main","zip":null}"#),
                Dialect::ClickHouse
            ),
            want
        );
        let empty = CqlValue::Udt(vec![("street".into(), None), ("zip".into(), None)]);
        assert_eq!(from_cql(&udt, Some(&empty)), None);
    }

    #[test]
    fn key_values_round_trip() {
        for (ty, v) in [
            (CqlType::Int, CqlValue::Int(42)),
            (CqlType::Text, CqlValue::Text("k".into())),
            (CqlType::Uuid, CqlValue::Uuid(uuid::Uuid::from_u128(9))),
            (CqlType::Timestamp, CqlValue::Timestamp(-5)),
        ] {
            let c = from_cql(&ty, Some(&v)).unwrap();
            assert_eq!(key_value_from_canon(&ty, &c), Some(v));
        }
    }
}
