//! The typed CQL value model: one variant per CQL type, plus `Empty` (a zero-length value) which is
//! distinct from null. Null itself is `Option::None` wherever a value may be absent.

use std::net::IpAddr;

use num_bigint::BigInt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A CQL value.
///
/// Equality compares floats bitwise (`NaN == NaN` when the bits agree, `0.0 != -0.0`), so values
/// survive round-trip comparisons exactly. Collections keep Cassandra's serialized order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum CqlValue {
    Ascii(String),
    Bigint(i64),
    Blob(Vec<u8>),
    Boolean(bool),
    /// A counter's value as a read returns it. The commit log holds counter *shards* instead; see
    /// [`crate::event::CounterShard`].
    Counter(i64),
    /// Days since 1970-01-01 (negative before). The wire form is a `u32` with 2^31 at the epoch.
    Date(i32),
    /// `unscaled × 10^-scale`.
    Decimal {
        unscaled: BigInt,
        scale: i32,
    },
    Double(f64),
    Duration {
        months: i32,
        days: i32,
        nanoseconds: i64,
    },
    Float(f32),
    Inet(IpAddr),
    Int(i32),
    Smallint(i16),
    Text(String),
    /// Nanoseconds since midnight, `0..86_400_000_000_000`.
    Time(i64),
    /// Milliseconds since the epoch.
    Timestamp(i64),
    Timeuuid(Uuid),
    Tinyint(i8),
    Uuid(Uuid),
    Varint(BigInt),
    List(Vec<CqlValue>),
    Set(Vec<CqlValue>),
    /// Entries in serialized (key) order; keys need not be strings.
    Map(Vec<(CqlValue, CqlValue)>),
    /// Components in order; `None` is a null component.
    Tuple(Vec<Option<CqlValue>>),
    /// Fields in declaration order; `None` is a null field.
    Udt(Vec<(String, Option<CqlValue>)>),
    Vector(Vec<CqlValue>),
    /// A zero-length value of a type for which zero bytes are not a valid value (every type but
    /// ascii, text, blob and custom, where zero bytes decode to `""` / empty bytes).
    Empty,
    /// The raw bytes of a custom-marshal type.
    Custom(Vec<u8>),
}

impl CqlValue {
    /// A short name of the variant, for error messages (never the value itself: values can be PII).
    pub fn kind_name(&self) -> &'static str {
        match self {
            CqlValue::Ascii(_) => "ascii",
            CqlValue::Bigint(_) => "bigint",
            CqlValue::Blob(_) => "blob",
            CqlValue::Boolean(_) => "boolean",
            CqlValue::Counter(_) => "counter",
            CqlValue::Date(_) => "date",
            CqlValue::Decimal { .. } => "decimal",
            CqlValue::Double(_) => "double",
            CqlValue::Duration { .. } => "duration",
            CqlValue::Float(_) => "float",
            CqlValue::Inet(_) => "inet",
            CqlValue::Int(_) => "int",
            CqlValue::Smallint(_) => "smallint",
            CqlValue::Text(_) => "text",
            CqlValue::Time(_) => "time",
            CqlValue::Timestamp(_) => "timestamp",
            CqlValue::Timeuuid(_) => "timeuuid",
            CqlValue::Tinyint(_) => "tinyint",
            CqlValue::Uuid(_) => "uuid",
            CqlValue::Varint(_) => "varint",
            CqlValue::List(_) => "list",
            CqlValue::Set(_) => "set",
            CqlValue::Map(_) => "map",
            CqlValue::Tuple(_) => "tuple",
            CqlValue::Udt(_) => "udt",
            CqlValue::Vector(_) => "vector",
            CqlValue::Empty => "empty",
            CqlValue::Custom(_) => "custom",
        }
    }
}

impl PartialEq for CqlValue {
    fn eq(&self, other: &Self) -> bool {
        use CqlValue as V;
        match (self, other) {
            (V::Ascii(a), V::Ascii(b)) | (V::Text(a), V::Text(b)) => a == b,
            (V::Bigint(a), V::Bigint(b))
            | (V::Counter(a), V::Counter(b))
            | (V::Time(a), V::Time(b))
            | (V::Timestamp(a), V::Timestamp(b)) => a == b,
            (V::Blob(a), V::Blob(b)) | (V::Custom(a), V::Custom(b)) => a == b,
            (V::Boolean(a), V::Boolean(b)) => a == b,
            (V::Date(a), V::Date(b)) | (V::Int(a), V::Int(b)) => a == b,
            (
                V::Decimal {
                    unscaled: a,
                    scale: sa,
                },
                V::Decimal {
                    unscaled: b,
                    scale: sb,
                },
            ) => a == b && sa == sb,
            (V::Double(a), V::Double(b)) => a.to_bits() == b.to_bits(),
            (V::Float(a), V::Float(b)) => a.to_bits() == b.to_bits(),
            (
                V::Duration {
                    months: ma,
                    days: da,
                    nanoseconds: na,
                },
                V::Duration {
                    months: mb,
                    days: db,
                    nanoseconds: nb,
                },
            ) => ma == mb && da == db && na == nb,
            (V::Inet(a), V::Inet(b)) => a == b,
            (V::Smallint(a), V::Smallint(b)) => a == b,
            (V::Tinyint(a), V::Tinyint(b)) => a == b,
            (V::Timeuuid(a), V::Timeuuid(b)) | (V::Uuid(a), V::Uuid(b)) => a == b,
            (V::Varint(a), V::Varint(b)) => a == b,
            (V::List(a), V::List(b)) | (V::Set(a), V::Set(b)) | (V::Vector(a), V::Vector(b)) => {
                a == b
            }
            (V::Map(a), V::Map(b)) => a == b,
            (V::Tuple(a), V::Tuple(b)) => a == b,
            (V::Udt(a), V::Udt(b)) => a == b,
            (V::Empty, V::Empty) => true,
            _ => false,
        }
    }
}

impl Eq for CqlValue {}
