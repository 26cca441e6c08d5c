//! CQL → ClickHouse: the column type of every CQL type and the RowBinary encoding of its values.
//!
//! | CQL | ClickHouse column | why |
//! | --- | --- | --- |
//! | ascii, text | `Nullable(String)` | |
//! | blob, custom | `Nullable(String)` | ClickHouse strings are arbitrary bytes: lossless |
//! | boolean | `Nullable(Bool)` | |
//! | tinyint, smallint, int, bigint, counter | `Nullable(Int8/16/32/64)` | |
//! | varint | `Nullable(Int256)` | values beyond ±2^255 are poison |
//! | decimal | `Nullable(Decimal(76, 18))` | exact; a value needing more than 18 fractional digits or 76 digits is poison (never rounded) |
//! | float, double | `Nullable(Float32/64)` | NaN and ±Inf kept |
//! | date | `Nullable(Date32)` | days since the epoch, stored as is |
//! | time | `Nullable(Int64)` | nanoseconds since midnight (ClickHouse's `Time64` is still experimental) |
//! | timestamp | `Nullable(DateTime64(6, 'UTC'))` | epoch ms × 1000, exact |
//! | uuid, timeuuid | `Nullable(UUID)` | |
//! | inet | `Nullable(IPv6)` | one CQL column may hold both families: IPv4 is stored v4-mapped (`::ffff:a.b.c.d`) |
//! | duration | `Tuple(months Int32, days Int32, nanoseconds Int64)` | Cassandra's three components, exact |
//! | list, set, vector | `Array(T)` | elements never null in Cassandra |
//! | map<K, V> | `Map(K, V)` when K is a valid Map key (string, integer, UUID, date, timestamp), else `Array(Tuple(key K, value V))` | keeps serialized order and every key type |
//! | tuple | `Tuple(Nullable(T1), …)` | null components kept |
//! | UDT | `Tuple(field Nullable(T), …)` (named) | null fields kept |
//!
//! ClickHouse cannot wrap composite types in `Nullable`, so collections, tuples, UDTs and duration
//! columns are not nullable: a null there reads as the type's default (empty array/map, tuple of
//! nulls). Cassandra itself does not distinguish an empty collection from null. No JSON string
//! fallback is needed: every CQL type has an exact typed mapping above.
//!
//! A zero-length (`Empty`) value of a scalar type is written as NULL; inside a collection, tuple or
//! UDT it is poison (ClickHouse has no representation for it).

use std::fmt;
use std::net::IpAddr;

use cdc_model::{CqlType, CqlValue, ErrorClass};
use num_bigint::{BigInt, Sign};
use uuid::Uuid;

/// Fractional digits of the `Decimal` CQL `decimal` columns map to.
pub const DECIMAL_SCALE: u32 = 18;
/// Total digits of the `Decimal` CQL `decimal` columns map to.
pub const DECIMAL_PRECISION: u32 = 76;
/// Fractional-second digits of the `DateTime64` CQL `timestamp` columns map to (microseconds).
pub const TIMESTAMP_PRECISION: u32 = 6;

/// A ClickHouse data type, as a tree (rendered for DDL by `Display`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChType {
    Bool,
    Int8,
    Int16,
    Int32,
    Int64,
    Int256,
    UInt8,
    Float32,
    Float64,
    String,
    Uuid,
    Date32,
    /// `DateTime64(precision, 'UTC')`.
    DateTime64 {
        precision: u32,
    },
    Decimal {
        precision: u32,
        scale: u32,
    },
    Ipv6,
    Nullable(Box<ChType>),
    Array(Box<ChType>),
    Map(Box<ChType>, Box<ChType>),
    /// Elements with optional names (named tuples for UDTs, duration and map entries).
    Tuple(Vec<(Option<String>, ChType)>),
}

impl ChType {
    /// True for the types ClickHouse allows inside `Nullable(…)`.
    pub fn can_be_nullable(&self) -> bool {
        !matches!(
            self,
            ChType::Nullable(_) | ChType::Array(_) | ChType::Map(..) | ChType::Tuple(_)
        )
    }

    /// `Nullable(self)` when ClickHouse allows it, else `self`.
    pub fn nullable_if_possible(self) -> ChType {
        if self.can_be_nullable() {
            ChType::Nullable(Box::new(self))
        } else {
            self
        }
    }

    fn is_map_key(&self) -> bool {
        matches!(
            self,
            ChType::String
                | ChType::Int8
                | ChType::Int16
                | ChType::Int32
                | ChType::Int64
                | ChType::Uuid
                | ChType::Date32
                | ChType::DateTime64 { .. }
        )
    }
}

/// Quotes an identifier with backticks for ClickHouse SQL.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('`');
    for c in name.chars() {
        match c {
            '`' => out.push_str("\\`"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('`');
    out
}

impl fmt::Display for ChType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChType::Bool => f.write_str("Bool"),
            ChType::Int8 => f.write_str("Int8"),
            ChType::Int16 => f.write_str("Int16"),
            ChType::Int32 => f.write_str("Int32"),
            ChType::Int64 => f.write_str("Int64"),
            ChType::Int256 => f.write_str("Int256"),
            ChType::UInt8 => f.write_str("UInt8"),
            ChType::Float32 => f.write_str("Float32"),
            ChType::Float64 => f.write_str("Float64"),
            ChType::String => f.write_str("String"),
            ChType::Uuid => f.write_str("UUID"),
            ChType::Date32 => f.write_str("Date32"),
            ChType::DateTime64 { precision } => write!(f, "DateTime64({precision}, 'UTC')"),
            ChType::Decimal { precision, scale } => write!(f, "Decimal({precision}, {scale})"),
            ChType::Ipv6 => f.write_str("IPv6"),
            ChType::Nullable(t) => write!(f, "Nullable({t})"),
            ChType::Array(t) => write!(f, "Array({t})"),
            ChType::Map(k, v) => write!(f, "Map({k}, {v})"),
            ChType::Tuple(elements) => {
                f.write_str("Tuple(")?;
                for (i, (name, t)) in elements.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match name {
                        Some(n) => write!(f, "{} {t}", quote_ident(n))?,
                        None => write!(f, "{t}")?,
                    }
                }
                f.write_str(")")
            }
        }
    }
}

/// The ClickHouse type of a column holding values of `cql` (nullable where ClickHouse allows it).
pub fn column_type(cql: &CqlType) -> ChType {
    value_type(cql).nullable_if_possible()
}

/// The non-null ClickHouse type of a value of `cql` (for key columns and collection elements).
pub fn value_type(cql: &CqlType) -> ChType {
    match cql {
        CqlType::Ascii | CqlType::Text | CqlType::Blob | CqlType::Custom { .. } => ChType::String,
        CqlType::Boolean => ChType::Bool,
        CqlType::Tinyint => ChType::Int8,
        CqlType::Smallint => ChType::Int16,
        CqlType::Int => ChType::Int32,
        CqlType::Bigint | CqlType::Counter | CqlType::Time => ChType::Int64,
        CqlType::Varint => ChType::Int256,
        CqlType::Decimal => ChType::Decimal {
            precision: DECIMAL_PRECISION,
            scale: DECIMAL_SCALE,
        },
        CqlType::Float => ChType::Float32,
        CqlType::Double => ChType::Float64,
        CqlType::Date => ChType::Date32,
        CqlType::Timestamp => ChType::DateTime64 {
            precision: TIMESTAMP_PRECISION,
        },
        CqlType::Uuid | CqlType::Timeuuid => ChType::Uuid,
        CqlType::Inet => ChType::Ipv6,
        CqlType::Duration => ChType::Tuple(vec![
            (Some("months".into()), ChType::Int32),
            (Some("days".into()), ChType::Int32),
            (Some("nanoseconds".into()), ChType::Int64),
        ]),
        CqlType::List { element, .. }
        | CqlType::Set { element, .. }
        | CqlType::Vector { element, .. } => ChType::Array(Box::new(value_type(element))),
        CqlType::Map { key, value, .. } => {
            let k = value_type(key);
            let v = value_type(value);
            if k.is_map_key() {
                ChType::Map(Box::new(k), Box::new(v))
            } else {
                ChType::Array(Box::new(ChType::Tuple(vec![
                    (Some("key".into()), k),
                    (Some("value".into()), v),
                ])))
            }
        }
        CqlType::Tuple { elements } => ChType::Tuple(
            elements
                .iter()
                .map(|t| (None, value_type(t).nullable_if_possible()))
                .collect(),
        ),
        CqlType::Udt { fields, .. } => ChType::Tuple(
            fields
                .iter()
                .map(|(n, t)| (Some(n.clone()), value_type(t).nullable_if_possible()))
                .collect(),
        ),
    }
}

/// A value ClickHouse cannot hold in the mapped column: poison for this destination. Messages name
/// types, never values (values can be PII).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClickHouseValueError {
    #[error("a {found} value does not fit the ClickHouse type {expected}")]
    TypeMismatch {
        expected: String,
        found: &'static str,
    },
    #[error("a {cql} value is out of the range of the ClickHouse type {expected}")]
    OutOfRange { expected: String, cql: &'static str },
    #[error("a null or empty value cannot be stored in the ClickHouse type {expected}")]
    NullNotAllowed { expected: String },
}

impl ClickHouseValueError {
    /// Always poison: the same value fails the same way on every retry.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Poison
    }
}

fn mismatch(expected: &ChType, value: &CqlValue) -> ClickHouseValueError {
    ClickHouseValueError::TypeMismatch {
        expected: expected.to_string(),
        found: value.kind_name(),
    }
}

/// Appends a LEB128 unsigned varint (RowBinary lengths).
pub fn write_varuint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Appends a RowBinary string (length-prefixed bytes).
pub fn write_string(bytes: &[u8], out: &mut Vec<u8>) {
    write_varuint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Appends a UUID the way RowBinary stores it: the high then the low 64 bits, each little-endian.
pub fn write_uuid(u: &Uuid, out: &mut Vec<u8>) {
    let (hi, lo) = u.as_u64_pair();
    out.extend_from_slice(&hi.to_le_bytes());
    out.extend_from_slice(&lo.to_le_bytes());
}

/// Appends a big integer as little-endian two's complement of `bytes` bytes.
fn write_bigint_le(
    n: &BigInt,
    bytes: usize,
    ty: &ChType,
    cql: &'static str,
    out: &mut Vec<u8>,
) -> Result<(), ClickHouseValueError> {
    let le = n.to_signed_bytes_le();
    if le.len() > bytes {
        return Err(ClickHouseValueError::OutOfRange {
            expected: ty.to_string(),
            cql,
        });
    }
    let fill = if n.sign() == Sign::Minus { 0xff } else { 0x00 };
    out.extend_from_slice(&le);
    out.extend(std::iter::repeat_n(fill, bytes - le.len()));
    Ok(())
}

/// Rescales a CQL decimal to `scale` fractional digits, exactly or not at all.
fn rescale_decimal(unscaled: &BigInt, from_scale: i32, to_scale: u32) -> Option<BigInt> {
    let diff = i64::from(to_scale) - i64::from(from_scale);
    if diff >= 0 {
        let exp = u32::try_from(diff).ok().filter(|e| *e <= 200)?;
        Some(unscaled * BigInt::from(10u8).pow(exp))
    } else {
        let exp = u32::try_from(-diff).ok().filter(|e| *e <= 200)?;
        let divisor = BigInt::from(10u8).pow(exp);
        let remainder = unscaled % &divisor;
        (remainder == BigInt::from(0u8)).then(|| unscaled / divisor)
    }
}

fn decimal_limit(precision: u32) -> BigInt {
    BigInt::from(10u8).pow(precision)
}

/// Appends the default value of `ty` in RowBinary (NULL for nullable types, zeros, empty strings
/// and collections otherwise): what a key column holds on rows that do not name it.
pub fn write_default(ty: &ChType, out: &mut Vec<u8>) {
    let zeros = |n: usize, out: &mut Vec<u8>| out.extend(std::iter::repeat_n(0u8, n));
    match ty {
        ChType::Nullable(_) => out.push(1),
        ChType::Bool | ChType::Int8 | ChType::UInt8 => zeros(1, out),
        ChType::Int16 => zeros(2, out),
        ChType::Int32 | ChType::Float32 | ChType::Date32 => zeros(4, out),
        ChType::Int64 | ChType::Float64 | ChType::DateTime64 { .. } => zeros(8, out),
        ChType::Uuid | ChType::Ipv6 => zeros(16, out),
        ChType::Int256 => zeros(32, out),
        ChType::Decimal { precision, .. } => zeros(
            match precision {
                0..=9 => 4,
                10..=18 => 8,
                19..=38 => 16,
                _ => 32,
            },
            out,
        ),
        ChType::String | ChType::Array(_) | ChType::Map(..) => out.push(0),
        ChType::Tuple(elements) => {
            for (_, t) in elements {
                write_default(t, out);
            }
        }
    }
}

/// Appends `value` (None = null) in RowBinary for a column of type `ty` (from [`column_type`] or
/// [`value_type`] of the value's CQL type).
pub fn write_row_binary(
    ty: &ChType,
    value: Option<&CqlValue>,
    out: &mut Vec<u8>,
) -> Result<(), ClickHouseValueError> {
    if let ChType::Nullable(inner) = ty {
        return match value {
            None | Some(CqlValue::Empty) => {
                out.push(1);
                Ok(())
            }
            Some(v) => {
                out.push(0);
                write_row_binary(inner, Some(v), out)
            }
        };
    }
    let Some(value) = value.filter(|v| !matches!(v, CqlValue::Empty)) else {
        return match ty {
            // A null composite column reads as its default, like an empty collection in Cassandra.
            ChType::Array(_) | ChType::Map(..) => {
                out.push(0);
                Ok(())
            }
            ChType::Tuple(elements) => {
                for (_, t) in elements {
                    write_row_binary(t, None, out)?;
                }
                Ok(())
            }
            _ => Err(ClickHouseValueError::NullNotAllowed {
                expected: ty.to_string(),
            }),
        };
    };
    match (ty, value) {
        (ChType::Bool, CqlValue::Boolean(b)) => out.push(u8::from(*b)),
        (ChType::Int8, CqlValue::Tinyint(n)) => out.extend_from_slice(&n.to_le_bytes()),
        (ChType::Int16, CqlValue::Smallint(n)) => out.extend_from_slice(&n.to_le_bytes()),
        (ChType::Int32, CqlValue::Int(n)) => out.extend_from_slice(&n.to_le_bytes()),
        (ChType::Int64, CqlValue::Bigint(n) | CqlValue::Counter(n) | CqlValue::Time(n)) => {
            out.extend_from_slice(&n.to_le_bytes())
        }
        (ChType::Int256, CqlValue::Varint(n)) => write_bigint_le(n, 32, ty, "varint", out)?,
        (ChType::Decimal { precision, scale }, CqlValue::Decimal { unscaled, scale: s }) => {
            let out_of_range = || ClickHouseValueError::OutOfRange {
                expected: ty.to_string(),
                cql: "decimal",
            };
            let scaled = rescale_decimal(unscaled, *s, *scale).ok_or_else(out_of_range)?;
            let limit = decimal_limit(*precision);
            if scaled >= limit || scaled <= -limit {
                return Err(out_of_range());
            }
            let width = match precision {
                0..=9 => 4,
                10..=18 => 8,
                19..=38 => 16,
                _ => 32,
            };
            write_bigint_le(&scaled, width, ty, "decimal", out)?;
        }
        (ChType::Float32, CqlValue::Float(x)) => out.extend_from_slice(&x.to_bits().to_le_bytes()),
        (ChType::Float64, CqlValue::Double(x)) => out.extend_from_slice(&x.to_bits().to_le_bytes()),
        (ChType::String, CqlValue::Ascii(s) | CqlValue::Text(s)) => write_string(s.as_bytes(), out),
        (ChType::String, CqlValue::Blob(b) | CqlValue::Custom(b)) => write_string(b, out),
        (ChType::Uuid, CqlValue::Uuid(u) | CqlValue::Timeuuid(u)) => write_uuid(u, out),
        (ChType::Date32, CqlValue::Date(d)) => out.extend_from_slice(&d.to_le_bytes()),
        (ChType::DateTime64 { precision }, CqlValue::Timestamp(ms)) => {
            let ticks = match precision.checked_sub(3) {
                Some(up) => 10i64
                    .checked_pow(up)
                    .and_then(|f| ms.checked_mul(f))
                    .ok_or_else(|| ClickHouseValueError::OutOfRange {
                        expected: ty.to_string(),
                        cql: "timestamp",
                    })?,
                None => ms / 10i64.pow(3 - precision),
            };
            out.extend_from_slice(&ticks.to_le_bytes());
        }
        (ChType::Ipv6, CqlValue::Inet(ip)) => {
            let v6 = match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => *v6,
            };
            out.extend_from_slice(&v6.octets());
        }
        (
            ChType::Tuple(elements),
            CqlValue::Duration {
                months,
                days,
                nanoseconds,
            },
        ) if elements.len() == 3 => {
            out.extend_from_slice(&months.to_le_bytes());
            out.extend_from_slice(&days.to_le_bytes());
            out.extend_from_slice(&nanoseconds.to_le_bytes());
        }
        (
            ChType::Array(inner),
            CqlValue::List(items) | CqlValue::Set(items) | CqlValue::Vector(items),
        ) => {
            write_varuint(items.len() as u64, out);
            for item in items {
                write_row_binary(inner, Some(item), out)?;
            }
        }
        (ChType::Map(k, v), CqlValue::Map(entries)) => {
            write_varuint(entries.len() as u64, out);
            for (key, val) in entries {
                write_row_binary(k, Some(key), out)?;
                write_row_binary(v, Some(val), out)?;
            }
        }
        (ChType::Array(inner), CqlValue::Map(entries)) => {
            let ChType::Tuple(kv) = inner.as_ref() else {
                return Err(mismatch(ty, value));
            };
            let [(_, kt), (_, vt)] = kv.as_slice() else {
                return Err(mismatch(ty, value));
            };
            write_varuint(entries.len() as u64, out);
            for (key, val) in entries {
                write_row_binary(kt, Some(key), out)?;
                write_row_binary(vt, Some(val), out)?;
            }
        }
        (ChType::Tuple(elements), CqlValue::Tuple(items)) => {
            if items.len() > elements.len() {
                return Err(mismatch(ty, value));
            }
            // Missing trailing components are null (a tuple type may have grown).
            for (i, (_, t)) in elements.iter().enumerate() {
                let item = items.get(i).and_then(Option::as_ref);
                write_row_binary(t, item, out)?;
            }
        }
        (ChType::Tuple(elements), CqlValue::Udt(fields)) => {
            if fields.len() > elements.len() {
                return Err(mismatch(ty, value));
            }
            for (i, (_, t)) in elements.iter().enumerate() {
                let item = fields.get(i).and_then(|(_, v)| v.as_ref());
                write_row_binary(t, item, out)?;
            }
        }
        _ => return Err(mismatch(ty, value)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn encode(cql: &str, value: Option<CqlValue>) -> Result<String, ClickHouseValueError> {
        let ty = CqlType::parse(cql).map(|t| column_type(&t));
        let ty = ty.map_err(|_| ClickHouseValueError::NullNotAllowed {
            expected: cql.into(),
        })?;
        let mut out = Vec::new();
        write_row_binary(&ty, value.as_ref(), &mut out)?;
        Ok(hex::encode(out))
    }

    #[test]
    fn golden_column_types_for_every_cql_type() {
        let golden = [
            ("ascii", "Nullable(String)"),
            ("text", "Nullable(String)"),
            ("blob", "Nullable(String)"),
            ("boolean", "Nullable(Bool)"),
            ("tinyint", "Nullable(Int8)"),
            ("smallint", "Nullable(Int16)"),
            ("int", "Nullable(Int32)"),
            ("bigint", "Nullable(Int64)"),
            ("counter", "Nullable(Int64)"),
            ("varint", "Nullable(Int256)"),
            ("decimal", "Nullable(Decimal(76, 18))"),
            ("float", "Nullable(Float32)"),
            ("double", "Nullable(Float64)"),
            ("date", "Nullable(Date32)"),
            ("time", "Nullable(Int64)"),
            ("timestamp", "Nullable(DateTime64(6, 'UTC'))"),
            ("uuid", "Nullable(UUID)"),
            ("timeuuid", "Nullable(UUID)"),
            ("inet", "Nullable(IPv6)"),
            (
                "duration",
                "Tuple(`months` Int32, `days` Int32, `nanoseconds` Int64)",
            ),
            ("list<int>", "Array(Int32)"),
            ("set<text>", "Array(String)"),
            ("frozen<list<set<int>>>", "Array(Array(Int32))"),
            ("map<text, int>", "Map(String, Int32)"),
            ("map<timestamp, uuid>", "Map(DateTime64(6, 'UTC'), UUID)"),
            (
                "map<double, text>",
                "Array(Tuple(`key` Float64, `value` String))",
            ),
            (
                "map<frozen<tuple<int, text>>, int>",
                "Array(Tuple(`key` Tuple(Nullable(Int32), Nullable(String)), `value` Int32))",
            ),
            (
                "tuple<int, list<text>>",
                "Tuple(Nullable(Int32), Array(String))",
            ),
            ("vector<float, 3>", "Array(Float32)"),
            (
                "'org.apache.cassandra.db.marshal.BytesType'",
                "Nullable(String)",
            ),
        ];
        for (cql, expected) in golden {
            let ty = CqlType::parse(cql).map(|t| column_type(&t).to_string());
            assert_eq!(ty.as_deref(), Ok(expected), "{cql}");
        }
        let udt = CqlType::Udt {
            keyspace: "ks".into(),
            name: "address".into(),
            fields: vec![
                ("street".into(), CqlType::Text),
                ("zip".into(), CqlType::Int),
            ],
            frozen: true,
        };
        assert_eq!(
            column_type(&udt).to_string(),
            "Tuple(`street` Nullable(String), `zip` Nullable(Int32))"
        );
    }

    #[test]
    fn golden_row_binary_of_edge_values() {
        let cases: Vec<(&str, Option<CqlValue>, &str)> = vec![
            ("int", None, "01"),
            ("int", Some(CqlValue::Empty), "01"),
            ("int", Some(CqlValue::Int(i32::MIN)), "0000000080"),
            ("int", Some(CqlValue::Int(i32::MAX)), "00ffffff7f"),
            ("bigint", Some(CqlValue::Bigint(-1)), "00ffffffffffffffff"),
            ("tinyint", Some(CqlValue::Tinyint(i8::MIN)), "0080"),
            ("smallint", Some(CqlValue::Smallint(i16::MAX)), "00ff7f"),
            ("boolean", Some(CqlValue::Boolean(true)), "0001"),
            ("text", Some(CqlValue::Text(String::new())), "0000"),
            ("text", Some(CqlValue::Text("ab".into())), "00026162"),
            ("blob", Some(CqlValue::Blob(vec![])), "0000"),
            ("blob", Some(CqlValue::Blob(vec![0xff, 0x00])), "0002ff00"),
            (
                "double",
                Some(CqlValue::Double(f64::NAN)),
                "00000000000000f87f",
            ),
            (
                "double",
                Some(CqlValue::Double(f64::INFINITY)),
                "00000000000000f07f",
            ),
            (
                "float",
                Some(CqlValue::Float(f32::NEG_INFINITY)),
                "00000080ff",
            ),
            ("date", Some(CqlValue::Date(-1)), "00ffffffff"),
            ("time", Some(CqlValue::Time(1)), "000100000000000000"),
            // 1 ms = 1000 µs.
            (
                "timestamp",
                Some(CqlValue::Timestamp(1)),
                "00e803000000000000",
            ),
            (
                "uuid",
                Some(CqlValue::Uuid(Uuid::from_u64_pair(1, 2))),
                "0001000000000000000200000000000000",
            ),
            (
                "inet",
                Some(CqlValue::Inet(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))),
                "0000000000000000000000ffff0a000001",
            ),
            (
                "inet",
                Some(CqlValue::Inet(IpAddr::V6(Ipv6Addr::LOCALHOST))),
                "0000000000000000000000000000000001",
            ),
            ("list<int>", None, "00"),
            ("list<int>", Some(CqlValue::List(vec![])), "00"),
            (
                "list<int>",
                Some(CqlValue::List(vec![CqlValue::Int(1), CqlValue::Int(2)])),
                "020100000002000000",
            ),
            (
                "map<text, int>",
                Some(CqlValue::Map(vec![(
                    CqlValue::Text("k".into()),
                    CqlValue::Int(7),
                )])),
                "01016b07000000",
            ),
            (
                "tuple<int, text>",
                Some(CqlValue::Tuple(vec![Some(CqlValue::Int(1)), None])),
                "000100000001",
            ),
            (
                "duration",
                Some(CqlValue::Duration {
                    months: 1,
                    days: 2,
                    nanoseconds: 3,
                }),
                "01000000020000000300000000000000",
            ),
        ];
        for (cql, value, expected) in cases {
            assert_eq!(
                encode(cql, value.clone()).as_deref(),
                Ok(expected),
                "{cql} {value:?}"
            );
        }
    }

    #[test]
    fn decimals_and_varints_are_exact_or_poison() {
        let dec = |unscaled: i64, scale: i32| {
            Some(CqlValue::Decimal {
                unscaled: BigInt::from(unscaled),
                scale,
            })
        };
        // 1.5 → 1.5 × 10^18 as Int256.
        let one_and_a_half = encode("decimal", dec(15, 1)).unwrap_or_default();
        let mut expected = vec![0u8];
        expected.extend_from_slice(&1_500_000_000_000_000_000i128.to_le_bytes());
        expected.extend_from_slice(&[0u8; 16]);
        assert_eq!(one_and_a_half, hex::encode(&expected));
        // Trailing zeros beyond the scale are dropped exactly; real digits are not rounded.
        assert!(encode("decimal", dec(10, 19)).is_ok());
        let err = encode("decimal", dec(11, 19));
        assert!(matches!(err, Err(ClickHouseValueError::OutOfRange { .. })));
        assert_eq!(err.err().map(|e| e.class()), Some(ErrorClass::Poison));
        let neg = encode("varint", Some(CqlValue::Varint(BigInt::from(-2)))).unwrap_or_default();
        assert_eq!(neg, format!("00fe{}", "ff".repeat(31)));
        let huge = CqlValue::Varint(BigInt::from(1u8) << 300);
        assert!(matches!(
            encode("varint", Some(huge)),
            Err(ClickHouseValueError::OutOfRange { .. })
        ));
    }

    #[test]
    fn mismatched_values_are_poison_and_name_no_value() {
        let err = encode("int", Some(CqlValue::Text("fake.user@example.test".into())));
        let Err(e) = err else {
            panic!("a text value must not encode as int");
        };
        assert_eq!(e.class(), ErrorClass::Poison);
        assert!(!e.to_string().contains("example.test"));
        let empty_in_list = encode("list<int>", Some(CqlValue::List(vec![CqlValue::Empty])));
        assert!(empty_in_list.is_err());
    }

    #[test]
    fn defaults_have_the_width_of_their_type() {
        let cases = [
            ("int", "01"),
            ("duration", "00000000000000000000000000000000"),
            ("list<int>", "00"),
            ("tuple<int, text>", "0101"),
        ];
        for (cql, expected) in cases {
            let mut out = Vec::new();
            if let Ok(t) = CqlType::parse(cql) {
                write_default(&column_type(&t), &mut out);
            }
            assert_eq!(hex::encode(out), expected, "{cql}");
        }
        let mut out = Vec::new();
        write_default(&value_type(&CqlType::Decimal), &mut out);
        assert_eq!(out.len(), 32);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a`b\\c"), "`a\\`b\\\\c`");
    }
}
