//! Cassandra's serialized value bytes (CASSANDRA_COMMITLOG.md §10.1) ⇄ [`CqlValue`], for a given
//! [`CqlType`]; plus the pieces of non-frozen collections and UDTs that storage keeps as separate
//! cells (§8 cell paths) and the counter context.
//!
//! The input here is the value with its cell/clustering length prefix already removed (the
//! commit-log parser strips `bytes(uvint)` or knows the fixed width). Every malformed input is an
//! [`Error::MalformedValue`] naming the (nested) type and the byte offset from the start of the
//! outermost value; nothing here panics on outside bytes.
//!
//! Empty values: a zero-length value of any type other than ascii, text, blob and custom decodes
//! to [`CqlValue::Empty`]; for those four, zero bytes are the empty string/blob. `Empty` encodes to
//! zero bytes for every type, except as an element of a fixed-width vector, which has no room for it.
//!
//! Non-frozen cells (§8): list elements have a 16-byte timeuuid path; set elements have the element
//! as path and an empty value; map entries have the key as path and the value as cell value;
//! non-frozen UDT fields have the field's position as a 2-byte big-endian short as path
//! (`UserType.cellPathForField` writes `(short) fieldPosition`, `fieldPosition(CellPath)` reads it
//! back as an unsigned short), so renaming a field does not change stored paths.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use num_bigint::BigInt;
use uuid::Uuid;

use crate::event::{CellPath, CounterShard, CounterShardKind};
use crate::{CqlType, CqlValue, Error};

/// Nanoseconds in a day: `time` values are `0..NANOS_PER_DAY`.
pub const NANOS_PER_DAY: i64 = 86_400_000_000_000;

const DATE_EPOCH_OFFSET: i64 = 1 << 31;

/// Decodes one serialized value of type `ty`.
pub fn decode_value(ty: &CqlType, bytes: &[u8]) -> Result<CqlValue, Error> {
    decode_at(ty, bytes, 0)
}

/// Encodes `value` as type `ty` (the inverse of [`decode_value`]).
pub fn encode_value(ty: &CqlType, value: &CqlValue) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    encode_into(ty, value, &mut out)?;
    Ok(out)
}

/// True when zero bytes are a proper value of `ty` rather than [`CqlValue::Empty`].
pub fn zero_length_is_value(ty: &CqlType) -> bool {
    matches!(
        ty,
        CqlType::Ascii | CqlType::Text | CqlType::Blob | CqlType::Custom { .. }
    )
}

fn malformed(ty: &CqlType, offset: usize, reason: impl Into<String>) -> Error {
    Error::MalformedValue {
        cql_type: ty.to_string(),
        offset,
        reason: reason.into(),
    }
}

fn mismatch(ty: &CqlType, value: &CqlValue) -> Error {
    Error::TypeMismatch {
        cql_type: ty.to_string(),
        value_kind: value.kind_name(),
    }
}

/// A bounds-checked reader over one value's bytes; `base` is the offset of `buf` in the outermost
/// value, so errors report absolute positions.
struct Cursor<'a> {
    ty: &'a CqlType,
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Cursor<'a> {
    fn new(ty: &'a CqlType, buf: &'a [u8], base: usize) -> Self {
        Cursor {
            ty,
            buf,
            pos: 0,
            base,
        }
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        malformed(self.ty, self.offset(), reason)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| {
                self.err(format!(
                    "needs {n} more bytes, {} left",
                    self.buf.len() - self.pos
                ))
            })?;
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn i32(&mut self) -> Result<i32, Error> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn uvint(&mut self) -> Result<u64, Error> {
        let first = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.err("truncated vint"))?;
        let extra = first.leading_ones() as usize;
        let at = self.offset();
        let bytes = self.take(1 + extra).map_err(|_| {
            malformed(
                self.ty,
                at,
                format!("truncated vint of {} bytes", 1 + extra),
            )
        })?;
        let mut value = if extra >= 8 {
            0
        } else {
            u64::from(first & (0xFFu8 >> extra))
        };
        for b in &bytes[1..] {
            value = (value << 8) | u64::from(*b);
        }
        Ok(value)
    }

    fn svint(&mut self) -> Result<i64, Error> {
        let v = self.uvint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn finish(&self) -> Result<(), Error> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.err(format!(
                "{} unexpected trailing bytes",
                self.buf.len() - self.pos
            )))
        }
    }

    /// An `i32`-length-prefixed component; `None` for a negative (null) length.
    fn component(&mut self) -> Result<Option<(&'a [u8], usize)>, Error> {
        let at = self.offset();
        let len = self.i32()?;
        if len < 0 {
            if len == -1 {
                return Ok(None);
            }
            return Err(malformed(self.ty, at, format!("negative length {len}")));
        }
        let start = self.offset();
        Ok(Some((self.take(len as usize)?, start)))
    }
}

pub(crate) fn write_uvint(out: &mut Vec<u8>, value: u64) {
    let bits = 64 - value.leading_zeros() as usize;
    // Bytes needed: 1 for < 2^7, … 8 for < 2^56, 9 otherwise.
    let extra = if bits <= 7 {
        0
    } else if bits > 56 {
        8
    } else {
        (bits - 1) / 7
    };
    if extra == 8 {
        out.push(0xFF);
        out.extend_from_slice(&value.to_be_bytes());
        return;
    }
    let total = extra + 1;
    let bytes = value.to_be_bytes();
    let mut encoded = bytes[8 - total..].to_vec();
    encoded[0] |= !(0xFFu8 >> extra);
    out.extend_from_slice(&encoded);
}

fn write_svint(out: &mut Vec<u8>, value: i64) {
    write_uvint(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn decode_at(ty: &CqlType, bytes: &[u8], base: usize) -> Result<CqlValue, Error> {
    if bytes.is_empty() && !zero_length_is_value(ty) {
        return Ok(CqlValue::Empty);
    }
    let mut c = Cursor::new(ty, bytes, base);
    let value = match ty {
        CqlType::Ascii => {
            if let Some(i) = bytes.iter().position(|b| !b.is_ascii()) {
                return Err(malformed(ty, base + i, "non-ASCII byte"));
            }
            c.pos = bytes.len();
            CqlValue::Ascii(String::from_utf8_lossy(bytes).into_owned())
        }
        CqlType::Text => match std::str::from_utf8(bytes) {
            Ok(s) => {
                c.pos = bytes.len();
                CqlValue::Text(s.to_owned())
            }
            Err(e) => return Err(malformed(ty, base + e.valid_up_to(), "invalid UTF-8")),
        },
        CqlType::Blob => {
            c.pos = bytes.len();
            CqlValue::Blob(bytes.to_vec())
        }
        CqlType::Custom { .. } => {
            c.pos = bytes.len();
            CqlValue::Custom(bytes.to_vec())
        }
        CqlType::Boolean => CqlValue::Boolean(c.array::<1>()?[0] != 0),
        CqlType::Int => CqlValue::Int(i32::from_be_bytes(c.array()?)),
        CqlType::Bigint => CqlValue::Bigint(i64::from_be_bytes(c.array()?)),
        CqlType::Counter => CqlValue::Counter(i64::from_be_bytes(c.array()?)),
        CqlType::Timestamp => CqlValue::Timestamp(i64::from_be_bytes(c.array()?)),
        CqlType::Smallint => CqlValue::Smallint(i16::from_be_bytes(c.array()?)),
        CqlType::Tinyint => CqlValue::Tinyint(i8::from_be_bytes(c.array()?)),
        CqlType::Float => CqlValue::Float(f32::from_be_bytes(c.array()?)),
        CqlType::Double => CqlValue::Double(f64::from_be_bytes(c.array()?)),
        CqlType::Date => {
            let raw = u32::from_be_bytes(c.array()?);
            // Always in i32 range: u32 minus 2^31.
            CqlValue::Date((i64::from(raw) - DATE_EPOCH_OFFSET) as i32)
        }
        CqlType::Time => {
            let nanos = i64::from_be_bytes(c.array()?);
            if !(0..NANOS_PER_DAY).contains(&nanos) {
                return Err(malformed(ty, base, "time of day out of range"));
            }
            CqlValue::Time(nanos)
        }
        CqlType::Uuid => CqlValue::Uuid(Uuid::from_bytes(c.array()?)),
        CqlType::Timeuuid => CqlValue::Timeuuid(Uuid::from_bytes(c.array()?)),
        CqlType::Inet => match bytes.len() {
            4 => CqlValue::Inet(IpAddr::V4(Ipv4Addr::from(c.array::<4>()?))),
            16 => CqlValue::Inet(IpAddr::V6(Ipv6Addr::from(c.array::<16>()?))),
            n => {
                return Err(malformed(
                    ty,
                    base,
                    format!("inet of {n} bytes (not 4 or 16)"),
                ));
            }
        },
        CqlType::Varint => {
            c.pos = bytes.len();
            CqlValue::Varint(BigInt::from_signed_bytes_be(bytes))
        }
        CqlType::Decimal => {
            let scale = c.i32()?;
            let rest = c.take(bytes.len() - 4)?;
            if rest.is_empty() {
                return Err(c.err("decimal without unscaled value"));
            }
            CqlValue::Decimal {
                unscaled: BigInt::from_signed_bytes_be(rest),
                scale,
            }
        }
        CqlType::Duration => {
            let at = c.offset();
            let months = i32::try_from(c.svint()?)
                .map_err(|_| malformed(ty, at, "duration months out of i32 range"))?;
            let at = c.offset();
            let days = i32::try_from(c.svint()?)
                .map_err(|_| malformed(ty, at, "duration days out of i32 range"))?;
            let nanoseconds = c.svint()?;
            CqlValue::Duration {
                months,
                days,
                nanoseconds,
            }
        }
        CqlType::List { element, .. } | CqlType::Set { element, .. } => {
            let count = collection_count(&mut c)?;
            let mut items = Vec::with_capacity(count.min(bytes.len()));
            for _ in 0..count {
                let at = c.offset();
                let (slice, start) = c
                    .component()?
                    .ok_or_else(|| malformed(ty, at, "null element in a collection"))?;
                items.push(decode_at(element, slice, start)?);
            }
            if matches!(ty, CqlType::List { .. }) {
                CqlValue::List(items)
            } else {
                CqlValue::Set(items)
            }
        }
        CqlType::Map { key, value, .. } => {
            let count = collection_count(&mut c)?;
            let mut entries = Vec::with_capacity(count.min(bytes.len()));
            for _ in 0..count {
                let at = c.offset();
                let (kb, ks) = c
                    .component()?
                    .ok_or_else(|| malformed(ty, at, "null map key"))?;
                let k = decode_at(key, kb, ks)?;
                let at = c.offset();
                let (vb, vs) = c
                    .component()?
                    .ok_or_else(|| malformed(ty, at, "null map value"))?;
                entries.push((k, decode_at(value, vb, vs)?));
            }
            CqlValue::Map(entries)
        }
        CqlType::Tuple { elements } => CqlValue::Tuple(decode_components(&mut c, elements.iter())?),
        CqlType::Udt { fields, .. } => {
            let values = decode_components(&mut c, fields.iter().map(|(_, t)| t))?;
            CqlValue::Udt(fields.iter().map(|(n, _)| n.clone()).zip(values).collect())
        }
        CqlType::Vector { element, dimension } => {
            let mut items = Vec::with_capacity((*dimension as usize).min(bytes.len()));
            match element.fixed_value_length() {
                Some(width) => {
                    for _ in 0..*dimension {
                        let start = c.offset();
                        let slice = c.take(width)?;
                        items.push(decode_at(element, slice, start)?);
                    }
                }
                None => {
                    for _ in 0..*dimension {
                        let at = c.offset();
                        let len = usize::try_from(c.uvint()?)
                            .map_err(|_| malformed(ty, at, "element length overflows"))?;
                        let start = c.offset();
                        let slice = c.take(len)?;
                        items.push(decode_at(element, slice, start)?);
                    }
                }
            }
            CqlValue::Vector(items)
        }
    };
    c.finish()?;
    Ok(value)
}

fn collection_count(c: &mut Cursor<'_>) -> Result<usize, Error> {
    let at = c.offset();
    let count = c.i32()?;
    usize::try_from(count).map_err(|_| malformed(c.ty, at, format!("negative count {count}")))
}

/// Tuple/UDT components: each `i32` length (−1 = null) + bytes; trailing components may be
/// missing (a value written before fields were added) and decode as null.
fn decode_components<'t>(
    c: &mut Cursor<'_>,
    types: impl Iterator<Item = &'t CqlType>,
) -> Result<Vec<Option<CqlValue>>, Error> {
    let mut out = Vec::new();
    for ty in types {
        if c.pos == c.buf.len() {
            out.push(None);
            continue;
        }
        match c.component()? {
            None => out.push(None),
            Some((slice, start)) => out.push(Some(decode_at(ty, slice, start)?)),
        }
    }
    Ok(out)
}

fn encode_into(ty: &CqlType, value: &CqlValue, out: &mut Vec<u8>) -> Result<(), Error> {
    use CqlValue as V;
    match (ty, value) {
        (_, V::Empty) => {}
        (CqlType::Ascii, V::Ascii(s)) => {
            if !s.is_ascii() {
                return Err(mismatch(ty, value));
            }
            out.extend_from_slice(s.as_bytes());
        }
        (CqlType::Text, V::Text(s)) => out.extend_from_slice(s.as_bytes()),
        (CqlType::Blob, V::Blob(b)) | (CqlType::Custom { .. }, V::Custom(b)) => {
            out.extend_from_slice(b)
        }
        (CqlType::Boolean, V::Boolean(b)) => out.push(u8::from(*b)),
        (CqlType::Int, V::Int(v)) => out.extend_from_slice(&v.to_be_bytes()),
        (CqlType::Bigint, V::Bigint(v))
        | (CqlType::Counter, V::Counter(v))
        | (CqlType::Timestamp, V::Timestamp(v)) => out.extend_from_slice(&v.to_be_bytes()),
        (CqlType::Smallint, V::Smallint(v)) => out.extend_from_slice(&v.to_be_bytes()),
        (CqlType::Tinyint, V::Tinyint(v)) => out.extend_from_slice(&v.to_be_bytes()),
        (CqlType::Float, V::Float(v)) => out.extend_from_slice(&v.to_be_bytes()),
        (CqlType::Double, V::Double(v)) => out.extend_from_slice(&v.to_be_bytes()),
        (CqlType::Date, V::Date(days)) => {
            out.extend_from_slice(&((i64::from(*days) + DATE_EPOCH_OFFSET) as u32).to_be_bytes())
        }
        (CqlType::Time, V::Time(nanos)) => {
            if !(0..NANOS_PER_DAY).contains(nanos) {
                return Err(mismatch(ty, value));
            }
            out.extend_from_slice(&nanos.to_be_bytes());
        }
        (CqlType::Uuid, V::Uuid(u)) | (CqlType::Timeuuid, V::Timeuuid(u)) => {
            out.extend_from_slice(u.as_bytes())
        }
        (CqlType::Inet, V::Inet(IpAddr::V4(a))) => out.extend_from_slice(&a.octets()),
        (CqlType::Inet, V::Inet(IpAddr::V6(a))) => out.extend_from_slice(&a.octets()),
        (CqlType::Varint, V::Varint(v)) => out.extend_from_slice(&v.to_signed_bytes_be()),
        (CqlType::Decimal, V::Decimal { unscaled, scale }) => {
            out.extend_from_slice(&scale.to_be_bytes());
            out.extend_from_slice(&unscaled.to_signed_bytes_be());
        }
        (
            CqlType::Duration,
            V::Duration {
                months,
                days,
                nanoseconds,
            },
        ) => {
            write_svint(out, i64::from(*months));
            write_svint(out, i64::from(*days));
            write_svint(out, *nanoseconds);
        }
        (CqlType::List { element, .. }, V::List(items))
        | (CqlType::Set { element, .. }, V::Set(items)) => {
            write_count(ty, value, items.len(), out)?;
            for item in items {
                write_component(element, Some(item), out)?;
            }
        }
        (CqlType::Map { key, value: vt, .. }, V::Map(entries)) => {
            write_count(ty, value, entries.len(), out)?;
            for (k, v) in entries {
                write_component(key, Some(k), out)?;
                write_component(vt, Some(v), out)?;
            }
        }
        (CqlType::Tuple { elements }, V::Tuple(items)) => {
            if items.len() > elements.len() {
                return Err(mismatch(ty, value));
            }
            for (t, item) in elements.iter().zip(items) {
                write_component(t, item.as_ref(), out)?;
            }
        }
        (CqlType::Udt { fields, .. }, V::Udt(items)) => {
            if items.len() > fields.len() {
                return Err(mismatch(ty, value));
            }
            for ((name, t), (item_name, item)) in fields.iter().zip(items) {
                if name != item_name {
                    return Err(mismatch(ty, value));
                }
                write_component(t, item.as_ref(), out)?;
            }
        }
        (CqlType::Vector { element, dimension }, V::Vector(items)) => {
            if items.len() != *dimension as usize {
                return Err(mismatch(ty, value));
            }
            let fixed = element.fixed_value_length();
            for item in items {
                let mut buf = Vec::new();
                encode_into(element, item, &mut buf)?;
                match fixed {
                    Some(width) if buf.len() != width => return Err(mismatch(element, item)),
                    Some(_) => {}
                    None => write_uvint(out, buf.len() as u64),
                }
                out.extend_from_slice(&buf);
            }
        }
        _ => return Err(mismatch(ty, value)),
    }
    Ok(())
}

fn write_count(ty: &CqlType, value: &CqlValue, n: usize, out: &mut Vec<u8>) -> Result<(), Error> {
    let n = i32::try_from(n).map_err(|_| mismatch(ty, value))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

fn write_component(ty: &CqlType, value: Option<&CqlValue>, out: &mut Vec<u8>) -> Result<(), Error> {
    match value {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(v) => {
            let mut buf = Vec::new();
            encode_into(ty, v, &mut buf)?;
            let len = i32::try_from(buf.len()).map_err(|_| mismatch(ty, v))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&buf);
        }
    }
    Ok(())
}

/// Decodes the cell path of one element cell of a non-frozen (multi-cell) column of type `ty`.
pub fn decode_cell_path(ty: &CqlType, path: &[u8]) -> Result<CellPath, Error> {
    let bad = |reason: String| Error::MalformedCellPath {
        cql_type: ty.to_string(),
        reason,
    };
    match ty {
        CqlType::List { frozen: false, .. } => {
            let bytes: [u8; 16] = path
                .try_into()
                .map_err(|_| bad(format!("list path of {} bytes (not 16)", path.len())))?;
            Ok(CellPath::ListIndex(Uuid::from_bytes(bytes)))
        }
        CqlType::Set {
            element,
            frozen: false,
        } => Ok(CellPath::SetElement(decode_value(element, path)?)),
        CqlType::Map {
            key, frozen: false, ..
        } => Ok(CellPath::MapKey(decode_value(key, path)?)),
        CqlType::Udt {
            fields,
            frozen: false,
            ..
        } => {
            let bytes: [u8; 2] = path
                .try_into()
                .map_err(|_| bad(format!("UDT field path of {} bytes (not 2)", path.len())))?;
            let index = u16::from_be_bytes(bytes) as usize;
            let (name, _) = fields.get(index).ok_or_else(|| {
                bad(format!(
                    "field index {index} beyond the {} known fields",
                    fields.len()
                ))
            })?;
            Ok(CellPath::UdtField(name.clone()))
        }
        _ => Err(bad("not a multi-cell type".into())),
    }
}

/// Encodes a cell path for an element of the non-frozen column type `ty` (inverse of
/// [`decode_cell_path`]).
pub fn encode_cell_path(ty: &CqlType, path: &CellPath) -> Result<Vec<u8>, Error> {
    let bad = |reason: &str| Error::MalformedCellPath {
        cql_type: ty.to_string(),
        reason: reason.into(),
    };
    match (ty, path) {
        (CqlType::List { frozen: false, .. }, CellPath::ListIndex(u)) => Ok(u.as_bytes().to_vec()),
        (
            CqlType::Set {
                element,
                frozen: false,
            },
            CellPath::SetElement(v),
        ) => encode_value(element, v),
        (
            CqlType::Map {
                key, frozen: false, ..
            },
            CellPath::MapKey(k),
        ) => encode_value(key, k),
        (
            CqlType::Udt {
                fields,
                frozen: false,
                ..
            },
            CellPath::UdtField(name),
        ) => {
            let index = fields
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| bad("unknown UDT field"))?;
            let index = u16::try_from(index).map_err(|_| bad("UDT field index overflows"))?;
            Ok(index.to_be_bytes().to_vec())
        }
        _ => Err(bad("path kind does not match the column type")),
    }
}

/// The type of an element cell's *value* for a multi-cell column: the list element, the map value,
/// the UDT field's type; `None` for a set, whose element cells carry an empty value.
pub fn element_value_type<'t>(ty: &'t CqlType, path: &CellPath) -> Option<&'t CqlType> {
    match (ty, path) {
        (CqlType::List { element, .. }, _) => Some(element),
        (CqlType::Map { value, .. }, _) => Some(value),
        (CqlType::Udt { fields, .. }, CellPath::UdtField(name)) => {
            fields.iter().find(|(n, _)| n == name).map(|(_, t)| t)
        }
        _ => None,
    }
}

/// Decodes one element cell of a multi-cell column: its path and, unless it is an element
/// tombstone (`value == None`), its value. A live set element's value is [`CqlValue::Empty`].
pub fn decode_element(
    ty: &CqlType,
    path: &[u8],
    value: Option<&[u8]>,
) -> Result<(CellPath, Option<CqlValue>), Error> {
    let path = decode_cell_path(ty, path)?;
    let value = match value {
        None => None,
        Some(bytes) => Some(match element_value_type(ty, &path) {
            Some(vt) => decode_value(vt, bytes)?,
            None if bytes.is_empty() => CqlValue::Empty,
            None => {
                return Err(malformed(ty, 0, "set element cell with a non-empty value"));
            }
        }),
    };
    Ok((path, value))
}

/// Encodes an element cell's value (inverse of the value half of [`decode_element`]).
pub fn encode_element_value(
    ty: &CqlType,
    path: &CellPath,
    value: &CqlValue,
) -> Result<Vec<u8>, Error> {
    match element_value_type(ty, path) {
        Some(vt) => encode_value(vt, value),
        None if *value == CqlValue::Empty => Ok(Vec::new()),
        None => Err(mismatch(ty, value)),
    }
}

/// Decodes a counter cell's *counter context* (§8): a `u16` header count, that many `i16` shard
/// indexes (global shards as `index + i16::MIN`, local as `index`), then 32-byte shards of
/// (16-byte counter id, `i64` clock, `i64` count). Shards not named in the header are remote.
pub fn decode_counter_context(bytes: &[u8]) -> Result<Vec<CounterShard>, Error> {
    let ty = CqlType::Counter;
    let mut c = Cursor::new(&ty, bytes, 0);
    let header = u16::from_be_bytes(c.array()?) as usize;
    let mut kinds = Vec::with_capacity(header.min(bytes.len()));
    for _ in 0..header {
        let at = c.offset();
        let raw = i16::from_be_bytes(c.array()?);
        let (index, kind) = if raw < 0 {
            (
                (i32::from(raw) - i32::from(i16::MIN)) as usize,
                CounterShardKind::Global,
            )
        } else {
            (raw as usize, CounterShardKind::Local)
        };
        kinds.push((index, kind, at));
    }
    let body = bytes.len() - c.pos;
    if !body.is_multiple_of(32) {
        return Err(c.err(format!(
            "shard section of {body} bytes is not a multiple of 32"
        )));
    }
    let count = body / 32;
    let mut shards = Vec::with_capacity(count);
    for _ in 0..count {
        shards.push(CounterShard {
            counter_id: Uuid::from_bytes(c.array()?),
            clock: i64::from_be_bytes(c.array()?),
            count: i64::from_be_bytes(c.array()?),
            kind: CounterShardKind::Remote,
        });
    }
    for (index, kind, at) in kinds {
        let shard = shards
            .get_mut(index)
            .ok_or_else(|| malformed(&ty, at, format!("header names missing shard {index}")))?;
        shard.kind = kind;
    }
    Ok(shards)
}

/// Encodes a counter context (inverse of [`decode_counter_context`]; used by tests and fixtures).
pub fn encode_counter_context(shards: &[CounterShard]) -> Result<Vec<u8>, Error> {
    let too_many = || Error::InvalidField {
        field: "counter shards".into(),
        reason: "too many shards for a counter context".into(),
    };
    let mut header = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        let i = i16::try_from(i).map_err(|_| too_many())?;
        match shard.kind {
            CounterShardKind::Global => header.push(i.wrapping_add(i16::MIN)),
            CounterShardKind::Local => header.push(i),
            CounterShardKind::Remote => {}
        }
    }
    let mut out = Vec::with_capacity(2 + header.len() * 2 + shards.len() * 32);
    out.extend_from_slice(
        &u16::try_from(header.len())
            .map_err(|_| too_many())?
            .to_be_bytes(),
    );
    for h in header {
        out.extend_from_slice(&h.to_be_bytes());
    }
    for shard in shards {
        out.extend_from_slice(shard.counter_id.as_bytes());
        out.extend_from_slice(&shard.clock.to_be_bytes());
        out.extend_from_slice(&shard.count.to_be_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::test_strategies::{column_type, name_udts, typed_value, value};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn ty(s: &str) -> CqlType {
        CqlType::parse(s).unwrap_or(CqlType::Blob)
    }

    #[test]
    fn golden_encodings() -> Result<(), Error> {
        let cases: Vec<(CqlType, CqlValue, &str)> = vec![
            (CqlType::Date, CqlValue::Date(0), "80000000"),
            (CqlType::Date, CqlValue::Date(-1), "7fffffff"),
            (CqlType::Varint, CqlValue::Varint(BigInt::from(128)), "0080"),
            (CqlType::Varint, CqlValue::Varint(BigInt::from(-1)), "ff"),
            (CqlType::Varint, CqlValue::Varint(BigInt::from(0)), "00"),
            (
                CqlType::Decimal,
                CqlValue::Decimal {
                    unscaled: BigInt::from(-12345),
                    scale: 2,
                },
                "00000002cfc7",
            ),
            (
                CqlType::Duration,
                CqlValue::Duration {
                    months: 1,
                    days: -1,
                    nanoseconds: 1_000_000_000,
                },
                // zigzag: 2, 1, 2e9 = 0x77359400 as uvint (5 bytes)
                "0201f077359400",
            ),
            (CqlType::Boolean, CqlValue::Boolean(true), "01"),
            (
                CqlType::Inet,
                CqlValue::Inet("192.0.2.1".parse().map_err(|_| Error::InvalidField {
                    field: "ip".into(),
                    reason: "test".into(),
                })?),
                "c0000201",
            ),
            (
                ty("frozen<list<int>>"),
                CqlValue::List(vec![CqlValue::Int(1), CqlValue::Empty]),
                "000000020000000400000001".to_owned().leak(),
            ),
            (
                ty("frozen<map<text, int>>"),
                CqlValue::Map(vec![(CqlValue::Text("a".into()), CqlValue::Int(7))]),
                "00000001000000016100000004".to_owned().leak(),
            ),
            (
                ty("tuple<int, text>"),
                CqlValue::Tuple(vec![None, Some(CqlValue::Text("x".into()))]),
                "ffffffff0000000178",
            ),
            (
                ty("vector<int, 2>"),
                CqlValue::Vector(vec![CqlValue::Int(1), CqlValue::Int(2)]),
                "0000000100000002",
            ),
            (
                ty("vector<text, 2>"),
                CqlValue::Vector(vec![
                    CqlValue::Text("ab".into()),
                    CqlValue::Text(String::new()),
                ]),
                "02616200",
            ),
            (CqlType::Int, CqlValue::Empty, ""),
        ];
        for (t, v, expected) in cases {
            let mut expected = expected.to_owned();
            if t == ty("frozen<list<int>>") {
                expected.push_str("00000000");
            }
            if t == ty("frozen<map<text, int>>") {
                expected.push_str("00000007");
            }
            let bytes = encode_value(&t, &v)?;
            assert_eq!(hex(&bytes), expected, "{t} {v:?}");
            assert_eq!(decode_value(&t, &bytes)?, v, "{t}");
        }
        Ok(())
    }

    #[test]
    fn uvint_matches_the_spec_vectors() -> Result<(), Error> {
        for (n, expected) in [
            (0u64, "00"),
            (127, "7f"),
            (128, "8080"),
            (16383, "bfff"),
            (16384, "c04000"),
            ((1 << 56) - 1, "feffffffffffffff"),
            (1 << 56, "ff0100000000000000"),
            (u64::MAX, "ffffffffffffffffff"),
            (1_442_880_000, "f056009a00"),
        ] {
            let mut out = Vec::new();
            write_uvint(&mut out, n);
            assert_eq!(hex(&out), expected);
            let t = CqlType::Blob;
            assert_eq!(Cursor::new(&t, &out, 0).uvint()?, n);
        }
        Ok(())
    }

    #[test]
    fn zero_length_values() -> Result<(), Error> {
        assert_eq!(
            decode_value(&CqlType::Text, &[])?,
            CqlValue::Text(String::new())
        );
        assert_eq!(
            decode_value(&CqlType::Blob, &[])?,
            CqlValue::Blob(Vec::new())
        );
        assert_eq!(decode_value(&CqlType::Int, &[])?, CqlValue::Empty);
        assert_eq!(
            decode_value(&ty("frozen<list<int>>"), &[])?,
            CqlValue::Empty
        );
        Ok(())
    }

    #[test]
    fn tuple_and_udt_with_missing_trailing_components() -> Result<(), Error> {
        let t = ty("tuple<int, text, bigint>");
        let bytes = hex_decode("0000000400000009");
        assert_eq!(
            decode_value(&t, &bytes)?,
            CqlValue::Tuple(vec![Some(CqlValue::Int(9)), None, None])
        );
        Ok(())
    }

    fn hex_decode(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
            .collect()
    }

    #[test]
    fn malformed_values_name_type_and_offset() {
        let cases: Vec<(CqlType, Vec<u8>, &str, usize)> = vec![
            (CqlType::Int, vec![0, 1, 2], "int", 0),
            (CqlType::Int, vec![0, 1, 2, 3, 4], "int", 4),
            (CqlType::Inet, vec![1, 2, 3], "inet", 0),
            (CqlType::Text, vec![b'a', 0xff], "text", 1),
            (CqlType::Time, (-1i64).to_be_bytes().to_vec(), "time", 0),
            // second element's length claims 9 bytes, only 1 left: reported inside the int element
            (
                ty("frozen<list<int>>"),
                hex_decode("00000002000000040000000100000009ff"),
                "frozen<list<int>>",
                16,
            ),
            (
                ty("frozen<list<int>>"),
                hex_decode("000000010000000300000001"),
                "int",
                8,
            ),
            (
                ty("frozen<set<int>>"),
                hex_decode("00000001ffffffff"),
                "frozen<set<int>>",
                4,
            ),
            (
                ty("frozen<list<int>>"),
                hex_decode("ffffffff"),
                "frozen<list<int>>",
                0,
            ),
            (CqlType::Duration, vec![0x80], "duration", 0),
        ];
        for (t, bytes, name, offset) in cases {
            match decode_value(&t, &bytes) {
                Err(Error::MalformedValue {
                    cql_type,
                    offset: at,
                    ..
                }) => {
                    assert_eq!(
                        (cql_type.as_str(), at),
                        (name, offset),
                        "{t} {}",
                        hex(&bytes)
                    )
                }
                other => panic!(
                    "{t} {}: expected MalformedValue, got {other:?}",
                    hex(&bytes)
                ),
            }
        }
    }

    #[test]
    fn non_frozen_cell_paths() -> Result<(), Error> {
        let udt = CqlType::Udt {
            keyspace: "ks".into(),
            name: "address".into(),
            fields: vec![
                ("street".into(), CqlType::Text),
                ("zip".into(), CqlType::Int),
            ],
            frozen: false,
        };
        // Field 1 (`zip`) is path 0x0001.
        let (path, value) = decode_element(&udt, &[0, 1], Some(&[0, 0, 0, 5]))?;
        assert_eq!(path, CellPath::UdtField("zip".into()));
        assert_eq!(value, Some(CqlValue::Int(5)));
        assert_eq!(encode_cell_path(&udt, &path)?, vec![0, 1]);
        assert!(decode_cell_path(&udt, &[0, 2]).is_err());
        assert!(decode_cell_path(&udt, &[0]).is_err());

        let set = ty("set<text>");
        let (path, value) = decode_element(&set, b"red", Some(&[]))?;
        assert_eq!(path, CellPath::SetElement(CqlValue::Text("red".into())));
        assert_eq!(value, Some(CqlValue::Empty));
        assert_eq!(decode_element(&set, b"red", None)?.1, None);

        let list = ty("list<int>");
        let id = Uuid::from_u128(0x1234);
        let (path, value) = decode_element(&list, id.as_bytes(), Some(&[0, 0, 0, 3]))?;
        assert_eq!(path, CellPath::ListIndex(id));
        assert_eq!(value, Some(CqlValue::Int(3)));
        assert!(decode_cell_path(&list, &[1, 2, 3]).is_err());

        let map = ty("map<int, text>");
        let (path, value) = decode_element(&map, &[0, 0, 0, 1], Some(b"one"))?;
        assert_eq!(path, CellPath::MapKey(CqlValue::Int(1)));
        assert_eq!(value, Some(CqlValue::Text("one".into())));
        assert!(decode_cell_path(&ty("frozen<map<int, text>>"), &[0, 0, 0, 1]).is_err());
        Ok(())
    }

    #[test]
    fn counter_context_round_trip() -> Result<(), Error> {
        let shards = vec![
            CounterShard {
                counter_id: Uuid::from_u128(1),
                clock: 3,
                count: 40,
                kind: CounterShardKind::Global,
            },
            CounterShard {
                counter_id: Uuid::from_u128(2),
                clock: 1,
                count: -2,
                kind: CounterShardKind::Remote,
            },
        ];
        let bytes = encode_counter_context(&shards)?;
        assert_eq!(hex(&bytes[..4]), "00018000");
        assert_eq!(decode_counter_context(&bytes)?, shards);
        assert!(decode_counter_context(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_counter_context(&[0, 1, 0, 5]).is_err());
        Ok(())
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip((t, v) in typed_value()) {
            let bytes = encode_value(&t, &v).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = decode_value(&t, &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, v);
        }

        #[test]
        fn decode_never_panics(t in column_type(), bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_value(&t, &bytes);
            let _ = decode_cell_path(&t, &bytes);
            let _ = decode_counter_context(&bytes);
        }

        #[test]
        fn decode_of_mutated_encoding_never_panics((t, v) in typed_value(), flip in any::<(usize, u8)>()) {
            let mut bytes = encode_value(&t, &v).map_err(|e| TestCaseError::fail(e.to_string()))?;
            if !bytes.is_empty() {
                let i = flip.0 % bytes.len();
                bytes[i] ^= flip.1;
                let _ = decode_value(&t, &bytes);
                let _ = decode_value(&t, &bytes[..i]);
            }
        }

        #[test]
        fn element_cells_round_trip(t in crate::test_strategies::nested_type(), seed in any::<u128>()) {
            let mut t = t;
            name_udts(&mut t, &mut 0);
            // Only the multi-cell forms have element cells.
            let t = match t {
                CqlType::List { element, .. } => CqlType::List { element, frozen: false },
                CqlType::Set { element, .. } => CqlType::Set { element, frozen: false },
                CqlType::Map { key, value, .. } => CqlType::Map { key, value, frozen: false },
                CqlType::Udt { keyspace, name, fields, .. } => CqlType::Udt { keyspace, name, fields, frozen: false },
                _ => return Ok(()),
            };
            let path = match &t {
                CqlType::List { .. } => CellPath::ListIndex(Uuid::from_u128(seed)),
                CqlType::Set { element, .. } => CellPath::SetElement(sample(element, seed)?),
                CqlType::Map { key, .. } => CellPath::MapKey(sample(key, seed)?),
                CqlType::Udt { fields, .. } => CellPath::UdtField(fields[(seed as usize) % fields.len()].0.clone()),
                _ => return Ok(()),
            };
            let value = match element_value_type(&t, &path) {
                Some(vt) => sample(vt, seed)?,
                None => CqlValue::Empty,
            };
            let path_bytes = encode_cell_path(&t, &path).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let value_bytes = encode_element_value(&t, &path, &value).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = decode_element(&t, &path_bytes, Some(&value_bytes)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, (path, Some(value)));
        }
    }

    /// A deterministic value of `ty` from `seed` (for nested strategies inside one case).
    fn sample(ty: &CqlType, seed: u128) -> Result<CqlValue, TestCaseError> {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(&seed.to_le_bytes());
        let mut runner = TestRunner::new_with_rng(
            Config::default(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
        );
        value(ty, true)
            .new_tree(&mut runner)
            .map(|t| t.current())
            .map_err(|e| TestCaseError::fail(e.to_string()))
    }
}
