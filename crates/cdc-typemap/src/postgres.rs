//! CQL → PostgreSQL / TimescaleDB: the column type of every CQL type and the binary (`COPY …
//! FORMAT binary`) encoding of its values.
//!
//! | CQL | PostgreSQL | notes |
//! | --- | --- | --- |
//! | ascii, text | `text` | a NUL character is poison (PostgreSQL text cannot hold it) |
//! | blob, custom | `bytea` | |
//! | boolean | `boolean` | |
//! | tinyint, smallint | `smallint` | PostgreSQL has no 1-byte integer |
//! | int | `integer` | |
//! | bigint, counter | `bigint` | |
//! | varint, decimal | `numeric` | exact; a negative scale is multiplied out |
//! | float, double | `real`, `double precision` | NaN and ±Infinity kept |
//! | date | `date` | outside PostgreSQL's range (4713 BC – 5874897 AD) is poison |
//! | time | `time` | nanoseconds truncated to microseconds (PostgreSQL's precision) |
//! | timestamp | `timestamptz` | epoch ms, exact; outside PostgreSQL's range is poison |
//! | uuid, timeuuid | `uuid` | |
//! | inet | `inet` | |
//! | duration | `interval` | months, days, nanoseconds truncated to microseconds |
//! | list, set, map, tuple, UDT, vector | `jsonb` | see [`jsonb_value`]; `\u0000` in a string is poison |
//!
//! A zero-length (`Empty`) value of a scalar type is written as NULL (it reads as null in CQL
//! drivers too). Null collections and empty collections are both written as NULL, as Cassandra does
//! not distinguish them.

use std::net::IpAddr;

use cdc_model::json_codec::value_to_json;
use cdc_model::{CqlType, CqlValue, ErrorClass};
use num_bigint::{BigInt, Sign};
use serde_json::Value as Json;

/// Microseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;
/// Days between 1970-01-01 and 2000-01-01.
const PG_EPOCH_OFFSET_DAYS: i64 = 10_957;
/// Smallest date PostgreSQL accepts, in days since 2000-01-01 (4713-11-24 BC, Julian day 0).
const PG_MIN_DATE: i64 = -2_451_545;
/// One past the largest date PostgreSQL accepts, in days since 2000-01-01.
const PG_END_DATE: i64 = 2_145_031_949;
/// Smallest timestamp PostgreSQL accepts, in µs since 2000-01-01.
const PG_MIN_TIMESTAMP: i64 = -211_813_488_000_000_000;
/// One past the largest timestamp PostgreSQL accepts, in µs since 2000-01-01.
const PG_END_TIMESTAMP: i64 = 9_223_371_331_200_000_000;
/// Largest display scale of a binary numeric.
const PG_NUMERIC_MAX_DSCALE: usize = 0x3FFF;

/// A PostgreSQL column type used by the sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PgType {
    Text,
    Bytea,
    Boolean,
    Smallint,
    Integer,
    Bigint,
    Numeric,
    Real,
    Double,
    Date,
    Time,
    Timestamptz,
    Uuid,
    Inet,
    Interval,
    Jsonb,
}

impl PgType {
    /// The SQL spelling used in DDL.
    pub fn sql_name(self) -> &'static str {
        match self {
            PgType::Text => "text",
            PgType::Bytea => "bytea",
            PgType::Boolean => "boolean",
            PgType::Smallint => "smallint",
            PgType::Integer => "integer",
            PgType::Bigint => "bigint",
            PgType::Numeric => "numeric",
            PgType::Real => "real",
            PgType::Double => "double precision",
            PgType::Date => "date",
            PgType::Time => "time",
            PgType::Timestamptz => "timestamptz",
            PgType::Uuid => "uuid",
            PgType::Inet => "inet",
            PgType::Interval => "interval",
            PgType::Jsonb => "jsonb",
        }
    }

    /// The `information_schema.columns.data_type` text of a column of this type (to compare a
    /// live table with the mapping).
    pub fn information_schema_name(self) -> &'static str {
        match self {
            PgType::Time => "time without time zone",
            PgType::Timestamptz => "timestamp with time zone",
            other => other.sql_name(),
        }
    }
}

/// The PostgreSQL column type of a CQL type (the mapping table in the module doc).
pub fn pg_type(cql: &CqlType) -> PgType {
    match cql {
        CqlType::Ascii | CqlType::Text => PgType::Text,
        CqlType::Blob | CqlType::Custom { .. } => PgType::Bytea,
        CqlType::Boolean => PgType::Boolean,
        CqlType::Tinyint | CqlType::Smallint => PgType::Smallint,
        CqlType::Int => PgType::Integer,
        CqlType::Bigint | CqlType::Counter => PgType::Bigint,
        CqlType::Varint | CqlType::Decimal => PgType::Numeric,
        CqlType::Float => PgType::Real,
        CqlType::Double => PgType::Double,
        CqlType::Date => PgType::Date,
        CqlType::Time => PgType::Time,
        CqlType::Timestamp => PgType::Timestamptz,
        CqlType::Uuid | CqlType::Timeuuid => PgType::Uuid,
        CqlType::Inet => PgType::Inet,
        CqlType::Duration => PgType::Interval,
        CqlType::List { .. }
        | CqlType::Set { .. }
        | CqlType::Map { .. }
        | CqlType::Tuple { .. }
        | CqlType::Udt { .. }
        | CqlType::Vector { .. } => PgType::Jsonb,
    }
}

/// Why a value cannot be written to PostgreSQL. Names types, never the value (it may be PII).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PgValueError {
    /// The value's variant does not fit the column's CQL type.
    #[error("a {value} value does not match the column's CQL type {cql}")]
    TypeMismatch { cql: String, value: &'static str },
    /// The value is outside the PostgreSQL type's range.
    #[error("a {cql} value is out of the range of PostgreSQL {pg}")]
    OutOfRange { cql: String, pg: &'static str },
    /// PostgreSQL text and jsonb cannot hold the NUL character.
    #[error("a {cql} value contains a NUL character, which PostgreSQL {pg} cannot store")]
    NulCharacter { cql: String, pg: &'static str },
}

impl PgValueError {
    /// Always `Poison`: the data, not the destination, is at fault.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Poison
    }
}

/// Encodes `value` (of CQL type `cql`) in PostgreSQL's binary format for `pg_type(cql)`.
/// `None` (SQL NULL) for [`CqlValue::Empty`] scalars and empty collections.
pub fn encode_binary(cql: &CqlType, value: &CqlValue) -> Result<Option<Vec<u8>>, PgValueError> {
    let mismatch = || PgValueError::TypeMismatch {
        cql: cql.to_string(),
        value: value.kind_name(),
    };
    let range = |pg: PgType| PgValueError::OutOfRange {
        cql: cql.to_string(),
        pg: pg.sql_name(),
    };
    if matches!(value, CqlValue::Empty) {
        return Ok(None);
    }
    let bytes = match (cql, value) {
        (CqlType::Ascii, CqlValue::Ascii(s) | CqlValue::Text(s))
        | (CqlType::Text, CqlValue::Text(s) | CqlValue::Ascii(s)) => {
            if s.contains('\0') {
                return Err(PgValueError::NulCharacter {
                    cql: cql.to_string(),
                    pg: "text",
                });
            }
            s.as_bytes().to_vec()
        }
        (CqlType::Blob, CqlValue::Blob(b)) | (CqlType::Custom { .. }, CqlValue::Custom(b)) => {
            b.clone()
        }
        (CqlType::Custom { .. }, CqlValue::Blob(b)) => b.clone(),
        (CqlType::Boolean, CqlValue::Boolean(b)) => vec![u8::from(*b)],
        (CqlType::Tinyint, CqlValue::Tinyint(n)) => i16::from(*n).to_be_bytes().to_vec(),
        (CqlType::Smallint, CqlValue::Smallint(n)) => n.to_be_bytes().to_vec(),
        (CqlType::Int, CqlValue::Int(n)) => n.to_be_bytes().to_vec(),
        (CqlType::Bigint, CqlValue::Bigint(n)) | (CqlType::Counter, CqlValue::Counter(n)) => {
            n.to_be_bytes().to_vec()
        }
        (CqlType::Varint, CqlValue::Varint(n)) => {
            numeric_binary(n, 0).ok_or_else(|| range(PgType::Numeric))?
        }
        (CqlType::Decimal, CqlValue::Decimal { unscaled, scale }) => {
            numeric_binary(unscaled, *scale).ok_or_else(|| range(PgType::Numeric))?
        }
        (CqlType::Float, CqlValue::Float(x)) => x.to_bits().to_be_bytes().to_vec(),
        (CqlType::Double, CqlValue::Double(x)) => x.to_bits().to_be_bytes().to_vec(),
        (CqlType::Date, CqlValue::Date(days)) => {
            let d = i64::from(*days) - PG_EPOCH_OFFSET_DAYS;
            if !(PG_MIN_DATE..PG_END_DATE).contains(&d) {
                return Err(range(PgType::Date));
            }
            i32::try_from(d)
                .map_err(|_| range(PgType::Date))?
                .to_be_bytes()
                .to_vec()
        }
        (CqlType::Time, CqlValue::Time(nanos)) => {
            if !(0..86_400_000_000_000).contains(nanos) {
                return Err(range(PgType::Time));
            }
            (nanos / 1_000).to_be_bytes().to_vec()
        }
        (CqlType::Timestamp, CqlValue::Timestamp(ms)) => {
            let us = ms
                .checked_mul(1_000)
                .and_then(|us| us.checked_sub(PG_EPOCH_OFFSET_MICROS))
                .filter(|us| (PG_MIN_TIMESTAMP..PG_END_TIMESTAMP).contains(us))
                .ok_or_else(|| range(PgType::Timestamptz))?;
            us.to_be_bytes().to_vec()
        }
        (CqlType::Uuid | CqlType::Timeuuid, CqlValue::Uuid(u) | CqlValue::Timeuuid(u)) => {
            u.as_bytes().to_vec()
        }
        (CqlType::Inet, CqlValue::Inet(ip)) => match ip {
            IpAddr::V4(v4) => {
                let mut out = vec![2, 32, 0, 4];
                out.extend_from_slice(&v4.octets());
                out
            }
            IpAddr::V6(v6) => {
                let mut out = vec![3, 128, 0, 16];
                out.extend_from_slice(&v6.octets());
                out
            }
        },
        (
            CqlType::Duration,
            CqlValue::Duration {
                months,
                days,
                nanoseconds,
            },
        ) => {
            let mut out = Vec::with_capacity(16);
            out.extend_from_slice(&(nanoseconds / 1_000).to_be_bytes());
            out.extend_from_slice(&days.to_be_bytes());
            out.extend_from_slice(&months.to_be_bytes());
            out
        }
        (
            CqlType::List { .. }
            | CqlType::Set { .. }
            | CqlType::Map { .. }
            | CqlType::Tuple { .. }
            | CqlType::Udt { .. }
            | CqlType::Vector { .. },
            CqlValue::List(_)
            | CqlValue::Set(_)
            | CqlValue::Map(_)
            | CqlValue::Tuple(_)
            | CqlValue::Udt(_)
            | CqlValue::Vector(_),
        ) => {
            if is_empty_collection(value) {
                return Ok(None);
            }
            let text = jsonb_value(value).to_string();
            if text.contains("\\u0000") {
                return Err(PgValueError::NulCharacter {
                    cql: cql.to_string(),
                    pg: "jsonb",
                });
            }
            let mut out = Vec::with_capacity(text.len() + 1);
            out.push(1); // jsonb binary format version
            out.extend_from_slice(text.as_bytes());
            out
        }
        _ => return Err(mismatch()),
    };
    Ok(Some(bytes))
}

fn is_empty_collection(value: &CqlValue) -> bool {
    match value {
        CqlValue::List(v) | CqlValue::Set(v) => v.is_empty(),
        CqlValue::Map(m) => m.is_empty(),
        _ => false,
    }
}

/// The jsonb form of a collection, tuple or UDT: lists, sets, vectors and tuples as arrays; UDTs as
/// objects; maps as objects when every key is text, else as arrays of `[key, value]` pairs (order
/// kept). Scalars inside follow `cdc_model::json_codec` (varint/decimal as strings, blobs base64,
/// NaN/Infinity as strings, timestamps as epoch ms).
pub fn jsonb_value(value: &CqlValue) -> Json {
    match value {
        CqlValue::List(items) | CqlValue::Set(items) | CqlValue::Vector(items) => {
            Json::Array(items.iter().map(jsonb_value).collect())
        }
        CqlValue::Map(entries)
            if entries
                .iter()
                .all(|(k, _)| matches!(k, CqlValue::Text(_) | CqlValue::Ascii(_))) =>
        {
            Json::Object(
                entries
                    .iter()
                    .filter_map(|(k, v)| match k {
                        CqlValue::Text(s) | CqlValue::Ascii(s) => Some((s.clone(), jsonb_value(v))),
                        _ => None,
                    })
                    .collect(),
            )
        }
        CqlValue::Map(entries) => Json::Array(
            entries
                .iter()
                .map(|(k, v)| Json::Array(vec![jsonb_value(k), jsonb_value(v)]))
                .collect(),
        ),
        CqlValue::Tuple(items) => Json::Array(
            items
                .iter()
                .map(|v| v.as_ref().map_or(Json::Null, jsonb_value))
                .collect(),
        ),
        CqlValue::Udt(fields) => Json::Object(
            fields
                .iter()
                .map(|(n, v)| (n.clone(), v.as_ref().map_or(Json::Null, jsonb_value)))
                .collect(),
        ),
        other => value_to_json(other),
    }
}

/// PostgreSQL's binary `numeric` for `unscaled × 10^-scale`; `None` when it does not fit.
fn numeric_binary(unscaled: &BigInt, scale: i32) -> Option<Vec<u8>> {
    let mut digits = unscaled.magnitude().to_str_radix(10);
    let mut scale = i64::from(scale);
    if scale < 0 {
        let zeros = usize::try_from(-scale).ok()?;
        if zeros > 1_000_000 {
            return None;
        }
        digits.push_str(&"0".repeat(zeros));
        scale = 0;
    }
    let dscale = usize::try_from(scale).ok()?;
    if dscale > PG_NUMERIC_MAX_DSCALE {
        return None;
    }
    // Split into integer and fraction parts, then pad both to whole base-10000 groups.
    let (int_part, frac_part) = if digits.len() > dscale {
        let (i, f) = digits.split_at(digits.len() - dscale);
        (i.to_owned(), f.to_owned())
    } else {
        (
            String::new(),
            format!("{}{}", "0".repeat(dscale - digits.len()), digits),
        )
    };
    let int_pad = (4 - int_part.len() % 4) % 4;
    let int_digits = format!("{}{}", "0".repeat(int_pad), int_part);
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let frac_digits = format!("{}{}", frac_part, "0".repeat(frac_pad));
    let group = |s: &str| -> Option<Vec<i16>> {
        s.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).ok()?.parse::<i16>().ok())
            .collect()
    };
    let int_groups = group(&int_digits)?;
    let frac_groups = group(&frac_digits)?;
    let mut weight = i64::try_from(int_groups.len()).ok()? - 1;
    let mut all: Vec<i16> = int_groups.into_iter().chain(frac_groups).collect();
    // Strip leading zero groups (each lowers the weight) and trailing zero groups.
    let leading = all.iter().take_while(|g| **g == 0).count();
    all.drain(..leading);
    weight -= i64::try_from(leading).ok()?;
    while all.last() == Some(&0) {
        all.pop();
    }
    let negative = unscaled.sign() == Sign::Minus;
    if all.is_empty() {
        weight = 0;
    }
    let ndigits = i16::try_from(all.len()).ok()?;
    let weight = i16::try_from(weight).ok()?;
    let sign_word: u16 = if negative && !all.is_empty() {
        0x4000
    } else {
        0
    };
    let mut out = Vec::with_capacity(8 + all.len() * 2);
    out.extend_from_slice(&ndigits.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign_word.to_be_bytes());
    out.extend_from_slice(&u16::try_from(dscale).ok()?.to_be_bytes());
    for g in all {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests;
