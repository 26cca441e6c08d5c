//! Order-preserving byte keys of CQL values: `key(a) < key(b)` byte-wise exactly when Cassandra's
//! comparator of the type puts `a` before `b` (and equal keys exactly when it finds them equal).
//!
//! Destinations whose own ordering of a type differs from Cassandra's (PostgreSQL compares
//! `uuid` byte-wise where Cassandra orders `timeuuid` by time, `text` by collation where Cassandra
//! compares UTF-8 bytes, `jsonb` not at all like frozen collections) compare these keys instead:
//! clustering keys for range tombstones, set elements and map keys for collection order.
//!
//! # Encoding
//!
//! A component is a tag byte (`0x01` for a zero-length [`CqlValue::Empty`], which Cassandra sorts
//! first, `0x02` for a value) and a body that is *prefix-free* (no body is a proper prefix of
//! another of the same type) and order-preserving:
//!
//! | CQL | body |
//! | --- | --- |
//! | boolean | one byte |
//! | tinyint, smallint, int, bigint, counter, date, time, timestamp | big-endian with the sign bit flipped |
//! | float, double | IEEE bits, all flipped when negative else the sign flipped (Java's `compare`: `-0 < 0`, NaN last) |
//! | text, ascii, blob, inet, custom | the bytes with `00` escaped as `00 FF`, then `00 00` |
//! | varint | sign class, then the magnitude's length and bytes (inverted when negative) |
//! | decimal | sign class, then the decimal exponent and the significant digits (inverted when negative): `1.0` and `1.00` are equal, as in Cassandra |
//! | uuid | version nibble, then (version 1) the timestamp-first reordered high half or the high half, then the low half, unsigned |
//! | timeuuid | the timestamp-first reordered high half (signed), then the low half byte by byte signed |
//! | list, set, vector (frozen) | `01` + element component per element, then `00` (shorter first) |
//! | map (frozen) | `01` + key component + value component per entry, then `00` |
//! | tuple, UDT (frozen) | per field `01` (null) or `02` + component, trailing nulls dropped, then `00` |
//!
//! A descending clustering column inverts every byte of its component, which reverses the order
//! of prefix-free strings. Every component starts with a byte below `0xFF` (`01`/`02`, or
//! `FE`/`FD` inverted), so appending `0xFF` to an encoded clustering prefix gives a key above
//! every clustering that extends the prefix and below every greater one: that is how inclusive
//! and exclusive prefix bounds become plain byte comparisons ([`range_start`], [`range_end`]).
//!
//! `duration` has no order in Cassandra (it cannot be a clustering column, set element or map
//! key): it is refused.

use std::cmp::Ordering;
use std::net::IpAddr;

use cdc_model::{CqlType, CqlValue};
use num_bigint::{BigInt, Sign};
use uuid::Uuid;

/// A value whose order key cannot be built. Names types, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OrderError {
    /// The value's variant does not fit the CQL type.
    #[error("a {value} value does not match the CQL type {cql}")]
    TypeMismatch { cql: String, value: &'static str },
    /// The type has no order in Cassandra (`duration`).
    #[error("CQL type {cql} has no order")]
    Unordered { cql: String },
}

/// Exclusive upper bound above every clustering key (an unbounded range end).
pub const UNBOUNDED_END: &[u8] = &[0xFF];

const TAG_EMPTY: u8 = 0x01;
const TAG_VALUE: u8 = 0x02;

/// The order key of one value, ascending.
pub fn value_key(ty: &CqlType, value: &CqlValue) -> Result<Vec<u8>, OrderError> {
    let mut out = Vec::new();
    component(ty, value, &mut out)?;
    Ok(out)
}

/// Appends the component of one clustering value; `desc` for a descending column.
pub fn push_component(
    ty: &CqlType,
    value: &CqlValue,
    desc: bool,
    out: &mut Vec<u8>,
) -> Result<(), OrderError> {
    let start = out.len();
    component(ty, value, out)?;
    if desc {
        for b in &mut out[start..] {
            *b = !*b;
        }
    }
    Ok(())
}

/// The key of a (possibly partial) clustering: `(type, descending, value)` per column in
/// clustering order.
pub fn clustering_key<'a>(
    columns: impl IntoIterator<Item = (&'a CqlType, bool, &'a CqlValue)>,
) -> Result<Vec<u8>, OrderError> {
    let mut out = Vec::new();
    for (ty, desc, value) in columns {
        push_component(ty, value, desc, &mut out)?;
    }
    Ok(out)
}

/// The inclusive lower bound, as a key, of a range starting at the encoded clustering `prefix`:
/// `inclusive` keeps clusterings extending the prefix inside. An empty prefix is unbounded.
pub fn range_start(mut prefix: Vec<u8>, inclusive: bool) -> Vec<u8> {
    if !inclusive && !prefix.is_empty() {
        prefix.push(0xFF);
    }
    prefix
}

/// The exclusive upper bound, as a key, of a range ending at the encoded clustering `prefix`:
/// `inclusive` keeps clusterings extending the prefix inside. An empty prefix is unbounded
/// ([`UNBOUNDED_END`]).
pub fn range_end(mut prefix: Vec<u8>, inclusive: bool) -> Vec<u8> {
    if prefix.is_empty() {
        return UNBOUNDED_END.to_vec();
    }
    if inclusive {
        prefix.push(0xFF);
    }
    prefix
}

fn mismatch(ty: &CqlType, value: &CqlValue) -> OrderError {
    OrderError::TypeMismatch {
        cql: ty.to_string(),
        value: value.kind_name(),
    }
}

fn component(ty: &CqlType, value: &CqlValue, out: &mut Vec<u8>) -> Result<(), OrderError> {
    if matches!(value, CqlValue::Empty) {
        if matches!(ty, CqlType::Duration) {
            return Err(OrderError::Unordered {
                cql: ty.to_string(),
            });
        }
        out.push(TAG_EMPTY);
        return Ok(());
    }
    out.push(TAG_VALUE);
    body(ty, value, out)
}

fn flip_i64(n: i64) -> [u8; 8] {
    ((n as u64) ^ (1 << 63)).to_be_bytes()
}

fn escaped(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

fn float_bits32(x: f32) -> [u8; 4] {
    let bits = if x.is_nan() {
        f32::NAN.to_bits() & 0x7FFF_FFFF
    } else {
        x.to_bits()
    };
    let key = if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits ^ 0x8000_0000
    };
    key.to_be_bytes()
}

fn float_bits64(x: f64) -> [u8; 8] {
    let bits = if x.is_nan() {
        f64::NAN.to_bits() & 0x7FFF_FFFF_FFFF_FFFF
    } else {
        x.to_bits()
    };
    let key = if bits & (1 << 63) != 0 {
        !bits
    } else {
        bits ^ (1 << 63)
    };
    key.to_be_bytes()
}

/// Cassandra's `TimeUUIDType.reorderTimestampBytes`: the 60-bit timestamp first.
fn reorder_timestamp(msb: u64) -> u64 {
    (msb << 48) | ((msb << 16) & 0xFFFF_0000_0000) | (msb >> 32)
}

fn halves(u: &Uuid) -> (u64, u64) {
    let n = u.as_u128();
    ((n >> 64) as u64, n as u64)
}

fn uuid_body(u: &Uuid, out: &mut Vec<u8>) {
    let (msb, lsb) = halves(u);
    let version = ((msb >> 12) & 0xF) as u8;
    out.push(version);
    if version == 1 {
        out.extend_from_slice(&reorder_timestamp(msb).to_be_bytes());
    } else {
        out.extend_from_slice(&msb.to_be_bytes());
    }
    out.extend_from_slice(&lsb.to_be_bytes());
}

fn timeuuid_body(u: &Uuid, out: &mut Vec<u8>) {
    let (msb, lsb) = halves(u);
    out.extend_from_slice(&flip_i64(reorder_timestamp(msb) as i64));
    // A signed comparison byte by byte.
    out.extend(lsb.to_be_bytes().iter().map(|b| b ^ 0x80));
}

fn varint_body(n: &BigInt, out: &mut Vec<u8>) {
    let (sign, magnitude) = n.to_bytes_be();
    match sign {
        Sign::NoSign => out.push(1),
        Sign::Plus => {
            out.push(2);
            out.extend_from_slice(&(magnitude.len() as u32).to_be_bytes());
            out.extend_from_slice(&magnitude);
        }
        Sign::Minus => {
            out.push(0);
            out.extend((magnitude.len() as u32).to_be_bytes().iter().map(|b| !b));
            out.extend(magnitude.iter().map(|b| !b));
        }
    }
}

fn decimal_body(unscaled: &BigInt, scale: i32, out: &mut Vec<u8>) {
    let sign = unscaled.sign();
    if sign == Sign::NoSign {
        out.push(1);
        return;
    }
    let mut digits = unscaled.magnitude().to_str_radix(10).into_bytes();
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    // value = 0.d1d2… × 10^exponent; trailing zeros removed above do not change it.
    let exponent = unscaled.magnitude().to_str_radix(10).len() as i64 - i64::from(scale);
    let mut body = Vec::with_capacity(digits.len() + 9);
    body.extend_from_slice(&flip_i64(exponent));
    body.extend_from_slice(&digits);
    body.push(0);
    if sign == Sign::Minus {
        out.push(0);
        out.extend(body.iter().map(|b| !b));
    } else {
        out.push(2);
        out.extend_from_slice(&body);
    }
}

fn inet_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn body(ty: &CqlType, value: &CqlValue, out: &mut Vec<u8>) -> Result<(), OrderError> {
    use CqlType as T;
    use CqlValue as V;
    match (ty, value) {
        (T::Boolean, V::Boolean(b)) => out.push(u8::from(*b)),
        (T::Tinyint, V::Tinyint(n)) => out.push((*n as u8) ^ 0x80),
        (T::Smallint, V::Smallint(n)) => {
            out.extend_from_slice(&((*n as u16) ^ 0x8000).to_be_bytes())
        }
        (T::Int, V::Int(n)) | (T::Date, V::Date(n)) => {
            out.extend_from_slice(&((*n as u32) ^ 0x8000_0000).to_be_bytes())
        }
        (T::Bigint, V::Bigint(n))
        | (T::Counter, V::Counter(n) | V::Bigint(n))
        | (T::Time, V::Time(n))
        | (T::Timestamp, V::Timestamp(n)) => out.extend_from_slice(&flip_i64(*n)),
        (T::Float, V::Float(x)) => out.extend_from_slice(&float_bits32(*x)),
        (T::Double, V::Double(x)) => out.extend_from_slice(&float_bits64(*x)),
        (T::Text | T::Ascii, V::Text(s) | V::Ascii(s)) => escaped(s.as_bytes(), out),
        (T::Blob | T::Custom { .. }, V::Blob(b) | V::Custom(b)) => escaped(b, out),
        (T::Inet, V::Inet(ip)) => escaped(&inet_bytes(ip), out),
        (T::Uuid, V::Uuid(u) | V::Timeuuid(u)) => uuid_body(u, out),
        (T::Timeuuid, V::Timeuuid(u) | V::Uuid(u)) => timeuuid_body(u, out),
        (T::Varint, V::Varint(n)) => varint_body(n, out),
        (T::Decimal, V::Decimal { unscaled, scale }) => decimal_body(unscaled, *scale, out),
        (T::List { element, .. }, V::List(items))
        | (T::Set { element, .. }, V::Set(items))
        | (T::Vector { element, .. }, V::Vector(items)) => {
            for item in items {
                out.push(0x01);
                component(element, item, out)?;
            }
            out.push(0x00);
        }
        (T::Map { key, value: vt, .. }, V::Map(entries)) => {
            for (k, v) in entries {
                out.push(0x01);
                component(key, k, out)?;
                component(vt, v, out)?;
            }
            out.push(0x00);
        }
        (T::Tuple { elements }, V::Tuple(items)) => {
            let n = items.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
            for (i, item) in items.iter().take(n).enumerate() {
                let Some(ety) = elements.get(i) else {
                    return Err(mismatch(ty, value));
                };
                fields_item(ety, item.as_ref(), out)?;
            }
            out.push(0x00);
        }
        (T::Udt { fields, .. }, V::Udt(values)) => {
            let n = values
                .iter()
                .rposition(|(_, v)| v.is_some())
                .map_or(0, |i| i + 1);
            for (i, (_, item)) in values.iter().take(n).enumerate() {
                let Some((_, fty)) = fields.get(i) else {
                    return Err(mismatch(ty, value));
                };
                fields_item(fty, item.as_ref(), out)?;
            }
            out.push(0x00);
        }
        (T::Duration, _) => {
            return Err(OrderError::Unordered {
                cql: ty.to_string(),
            });
        }
        _ => return Err(mismatch(ty, value)),
    }
    Ok(())
}

fn fields_item(ty: &CqlType, item: Option<&CqlValue>, out: &mut Vec<u8>) -> Result<(), OrderError> {
    match item {
        None => out.push(0x01),
        Some(v) => {
            out.push(0x02);
            component(ty, v, out)?;
        }
    }
    Ok(())
}

/// Cassandra's comparator of `ty` applied to two values (the reference the keys are tested
/// against; `Err` for values that do not fit the type or an unordered type).
pub fn compare(ty: &CqlType, a: &CqlValue, b: &CqlValue) -> Result<Ordering, OrderError> {
    use CqlType as T;
    use CqlValue as V;
    match (a, b) {
        (V::Empty, V::Empty) => return Ok(Ordering::Equal),
        (V::Empty, _) => return Ok(Ordering::Less),
        (_, V::Empty) => return Ok(Ordering::Greater),
        _ => {}
    }
    let bad = || mismatch(ty, a);
    Ok(match (ty, a, b) {
        (T::Boolean, V::Boolean(x), V::Boolean(y)) => x.cmp(y),
        (T::Tinyint, V::Tinyint(x), V::Tinyint(y)) => x.cmp(y),
        (T::Smallint, V::Smallint(x), V::Smallint(y)) => x.cmp(y),
        (T::Int, V::Int(x), V::Int(y)) | (T::Date, V::Date(x), V::Date(y)) => x.cmp(y),
        (T::Bigint, V::Bigint(x), V::Bigint(y))
        | (T::Counter, V::Counter(x), V::Counter(y))
        | (T::Time, V::Time(x), V::Time(y))
        | (T::Timestamp, V::Timestamp(x), V::Timestamp(y)) => x.cmp(y),
        // Java's Float.compare / Double.compare.
        (T::Float, V::Float(x), V::Float(y)) => java_cmp(f64::from(*x), f64::from(*y)),
        (T::Double, V::Double(x), V::Double(y)) => java_cmp(*x, *y),
        (T::Text | T::Ascii, V::Text(x) | V::Ascii(x), V::Text(y) | V::Ascii(y)) => {
            x.as_bytes().cmp(y.as_bytes())
        }
        (T::Blob | T::Custom { .. }, V::Blob(x) | V::Custom(x), V::Blob(y) | V::Custom(y)) => {
            x.cmp(y)
        }
        (T::Inet, V::Inet(x), V::Inet(y)) => inet_bytes(x).cmp(&inet_bytes(y)),
        (T::Uuid, V::Uuid(x) | V::Timeuuid(x), V::Uuid(y) | V::Timeuuid(y)) => {
            let ((mx, lx), (my, ly)) = (halves(x), halves(y));
            let (vx, vy) = ((mx >> 12) & 0xF, (my >> 12) & 0xF);
            vx.cmp(&vy)
                .then_with(|| {
                    if vx == 1 {
                        (reorder_timestamp(mx) as i64).cmp(&(reorder_timestamp(my) as i64))
                    } else {
                        mx.cmp(&my)
                    }
                })
                .then(lx.cmp(&ly))
        }
        (T::Timeuuid, V::Timeuuid(x) | V::Uuid(x), V::Timeuuid(y) | V::Uuid(y)) => {
            let ((mx, lx), (my, ly)) = (halves(x), halves(y));
            let signed = |l: u64| l.to_be_bytes().map(|b| b as i8);
            (reorder_timestamp(mx) as i64)
                .cmp(&(reorder_timestamp(my) as i64))
                .then(signed(lx).cmp(&signed(ly)))
        }
        (T::Varint, V::Varint(x), V::Varint(y)) => x.cmp(y),
        (
            T::Decimal,
            V::Decimal {
                unscaled: ux,
                scale: sx,
            },
            V::Decimal {
                unscaled: uy,
                scale: sy,
            },
        ) => {
            // Bring both to the larger scale and compare the unscaled integers.
            let s = (*sx).max(*sy);
            let up = |u: &BigInt, from: i32| u * BigInt::from(10u8).pow((s - from) as u32);
            up(ux, *sx).cmp(&up(uy, *sy))
        }
        (T::List { element, .. }, V::List(x), V::List(y))
        | (T::Set { element, .. }, V::Set(x), V::Set(y))
        | (T::Vector { element, .. }, V::Vector(x), V::Vector(y)) => {
            for (p, q) in x.iter().zip(y) {
                let c = compare(element, p, q)?;
                if c != Ordering::Equal {
                    return Ok(c);
                }
            }
            x.len().cmp(&y.len())
        }
        (T::Map { key, value, .. }, V::Map(x), V::Map(y)) => {
            for ((kx, vx), (ky, vy)) in x.iter().zip(y) {
                let c = compare(key, kx, ky)?.then(compare(value, vx, vy)?);
                if c != Ordering::Equal {
                    return Ok(c);
                }
            }
            x.len().cmp(&y.len())
        }
        (T::Tuple { elements }, V::Tuple(x), V::Tuple(y)) => {
            let x: Vec<Option<&CqlValue>> = x.iter().map(Option::as_ref).collect();
            let y: Vec<Option<&CqlValue>> = y.iter().map(Option::as_ref).collect();
            compare_fields(elements.iter().collect(), &x, &y)?
        }
        (T::Udt { fields, .. }, V::Udt(x), V::Udt(y)) => {
            let x: Vec<Option<&CqlValue>> = x.iter().map(|(_, v)| v.as_ref()).collect();
            let y: Vec<Option<&CqlValue>> = y.iter().map(|(_, v)| v.as_ref()).collect();
            compare_fields(fields.iter().map(|(_, t)| t).collect(), &x, &y)?
        }
        (T::Duration, _, _) => {
            return Err(OrderError::Unordered {
                cql: ty.to_string(),
            });
        }
        _ => return Err(bad()),
    })
}

fn java_cmp(x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => x.total_cmp(&y),
    }
}

/// Tuple/UDT order: field by field, null before any value, then trailing nulls ignored.
fn compare_fields(
    types: Vec<&CqlType>,
    x: &[Option<&CqlValue>],
    y: &[Option<&CqlValue>],
) -> Result<Ordering, OrderError> {
    let trim = |v: &[Option<&CqlValue>]| v.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
    let (nx, ny) = (trim(x), trim(y));
    for i in 0..nx.min(ny) {
        let Some(ty) = types.get(i) else {
            return Err(OrderError::TypeMismatch {
                cql: "tuple".into(),
                value: "tuple",
            });
        };
        let c = match (x[i], y[i]) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(p), Some(q)) => compare(ty, p, q)?,
        };
        if c != Ordering::Equal {
            return Ok(c);
        }
    }
    Ok(nx.cmp(&ny))
}

#[cfg(test)]
mod tests;
