//! A Debezium-like, self-describing JSON envelope for [`ChangeEvent`]s.
//!
//! ```json
//! {
//!   "op": "c" | "u" | "d",
//!   "ts_ms": 1700000000000,                      // captured_at_ms
//!   "correlation_id": "<host>:<segment>:<position>:<index>",
//!   "source": {"cluster": "…", "host_id": "<uuid>", "keyspace": "…", "table": "…",
//!              "table_id": "<uuid>", "schema_version": 3, "segment_id": 17,
//!              "segment_position": 4096, "index": 0},
//!   "static": false,
//!   "columns": [{"name": "id", "type": "int", "kind": "partition_key"},
//!               {"name": "ck", "type": "text", "kind": "clustering"},
//!               {"name": "tags", "type": "map<text, int>", "kind": "regular"}],
//!   "udts": {"address": [["street", "text"], ["zip", "int"]]},      // only when used
//!   "dropped_columns": [{"name": "fax", "type": "text", "kind": "regular",
//!                        "dropped_at": 1700000000000000}],          // only when any
//!   "key": {"id": 1},
//!   "clustering": {"ck": "a"},
//!   "liveness": {"writetime": 1700000000000000, "ttl": 60, "expires_at": 1700000060} | null,
//!   "deletion": {"scope": "row" | "partition" | "range", "marked_for_delete_at": …,
//!                "local_deletion_time": …,
//!                "start": {"inclusive": true, "prefix": {"ck": "a"}},   // range only
//!                "end": {"inclusive": false, "prefix": {}}} | null,
//!   "after": {
//!     "name":  {"writetime": …, "ttl": null, "expires_at": null, "value": "x"},
//!     "email": {"writetime": …, "ttl": null, "expires_at": null, "tombstone": true},
//!     "tags":  {"writetime": …, "ttl": null, "expires_at": null,
//!               "deletion": {"marked_for_delete_at": …, "local_deletion_time": …} | null,
//!               "elements": [{"path": "k", "value": 1, "writetime": …, "ttl": null,
//!                             "expires_at": null},
//!                            {"path": "gone", "deleted": true, "writetime": …, …}]},
//!     "hits":  {"writetime": …, "ttl": null, "expires_at": null,
//!               "counter_shards": [{"counter_id": "<uuid>", "clock": 5, "count": 7,
//!                                   "kind": "global"}]}
//!   }
//! }
//! ```
//!
//! `columns` lists every column the event mentions, in table order, with its CQL type as
//! `system_schema` prints it, and `udts` the fields of every UDT those types name (field types as
//! CQL strings), so the envelope decodes without a schema lookup. Key, clustering and bound prefix
//! order comes from `columns`.
//!
//! `dropped_columns` lists the table's columns that are dropped as of `source.schema_version`
//! (not re-added since), each with its latest drop time in microseconds: cells written at or
//! before it are dead in Cassandra. Absent when there are none (and in envelopes written before
//! the field existed, which still decode).
//!
//! Values, per CQL type (lossless given the type):
//! - ascii, text, inet, uuid, timeuuid: strings; blob and custom: standard base64 strings;
//! - boolean: `true`/`false`; tinyint, smallint, int, bigint, counter: JSON integers (exact:
//!   64-bit integers are parsed exactly); date: integer days since 1970-01-01; time: integer
//!   nanoseconds since midnight; timestamp: integer milliseconds since the epoch;
//! - float, double: JSON numbers (shortest form that round-trips), or the strings `"NaN"`,
//!   `"Infinity"`, `"-Infinity"` (NaN payload bits are not kept);
//! - varint: decimal string; decimal: string `"<digits>[.<digits>]"` whose digits after the point
//!   give the scale (`"1.50"` has scale 2), or `"<digits>E<n>"` for scale −n (used for negative
//!   scales and for scales far beyond the digit count: `"5E-40"` has scale 40);
//! - duration: `{"months": m, "days": d, "nanoseconds": n}`;
//! - list, set, vector: arrays; map: array of `[key, value]` pairs (keys need not be strings, and
//!   order is kept); tuple: array with `null` for null components; UDT: object of field → value or
//!   `null`;
//! - an empty (zero-length) value: `{"$empty": true}`.
//!
//! In `elements`, `path` is the list element's timeuuid (string), the set element, the map key, or
//! the UDT field name. A live set element has `"value": {"$empty": true}`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use num_bigint::BigInt;
use serde_json::{Map, Value as Json, json};
use uuid::Uuid;

use crate::cql_type::{UdtDefinition, UdtResolver};
use crate::event::{
    CellChange, CellPath, CellValue, ChangeEvent, ClusteringBound, ComplexDeletion, CounterShard,
    CounterShardKind, Deletion, DeletionScope, ElementChange, KeyColumn, Liveness, Operation,
    SourceInfo, Ttl,
};
use crate::{ColumnKind, CqlType, CqlValue, Error, TableSchema};

const EMPTY_KEY: &str = "$empty";

/// `parent.key` in a JSON path. Paths only appear in error messages, so they are built lazily:
/// formatting one per cell on every decode was the masker's top allocation (docs/benchmarks.md).
struct Field<'a>(&'a dyn fmt::Display, &'a str);

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// `parent[index]` in a JSON path, built lazily like [`Field`].
struct Index<'a>(&'a dyn fmt::Display, usize);

impl fmt::Display for Index<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

fn jerr(path: &dyn fmt::Display, reason: impl Into<String>) -> Error {
    Error::Json {
        path: path.to_string(),
        reason: reason.into(),
    }
}

fn float_to_json(x: f64) -> Json {
    if x.is_nan() {
        Json::from("NaN")
    } else if x == f64::INFINITY {
        Json::from("Infinity")
    } else if x == f64::NEG_INFINITY {
        Json::from("-Infinity")
    } else {
        serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number)
    }
}

fn float_from_json(j: &Json, path: &dyn fmt::Display) -> Result<f64, Error> {
    match j {
        Json::Number(n) => n.as_f64().ok_or_else(|| jerr(path, "not a float")),
        Json::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => Err(jerr(path, "expected a number, NaN, Infinity or -Infinity")),
        },
        _ => Err(jerr(path, "expected a number")),
    }
}

/// Formats a decimal as documented in the module doc.
pub fn format_decimal(unscaled: &BigInt, scale: i32) -> String {
    let digits = unscaled.magnitude().to_string();
    let sign = if unscaled.sign() == num_bigint::Sign::Minus {
        "-"
    } else {
        ""
    };
    if scale < 0 {
        return format!("{sign}{digits}E{}", -i64::from(scale));
    }
    let scale = scale as usize;
    // Plain notation only while the leading zeros stay few: scales reach 2^31.
    if scale > digits.len() + 6 {
        return format!("{sign}{digits}E-{scale}");
    }
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = if digits.len() <= scale {
        format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
    } else {
        digits
    };
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// Parses [`format_decimal`]'s output back into (unscaled, scale).
pub fn parse_decimal(s: &str) -> Option<(BigInt, i32)> {
    let (mantissa, exponent) = match s.split_once(['E', 'e']) {
        Some((m, e)) => (m, e.trim_start_matches('+').parse::<i64>().ok()?),
        None => (s, 0),
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut unscaled = BigInt::from_str(&format!("{int}{frac}")).ok()?;
    if negative {
        unscaled = -unscaled;
    }
    let scale = i32::try_from(i64::try_from(frac.len()).ok()?.checked_sub(exponent)?).ok()?;
    Some((unscaled, scale))
}

/// The JSON form of a value (module doc); the type is implied by the column.
pub fn value_to_json(value: &CqlValue) -> Json {
    use CqlValue as V;
    match value {
        V::Ascii(s) | V::Text(s) => Json::from(s.as_str()),
        V::Bigint(v) | V::Counter(v) | V::Time(v) | V::Timestamp(v) => Json::from(*v),
        V::Blob(b) | V::Custom(b) => Json::from(BASE64.encode(b)),
        V::Boolean(b) => Json::from(*b),
        V::Date(v) | V::Int(v) => Json::from(*v),
        V::Smallint(v) => Json::from(*v),
        V::Tinyint(v) => Json::from(*v),
        V::Decimal { unscaled, scale } => Json::from(format_decimal(unscaled, *scale)),
        V::Double(x) => float_to_json(*x),
        V::Float(x) => float_to_json(f64::from(*x)),
        V::Duration {
            months,
            days,
            nanoseconds,
        } => json!({"months": months, "days": days, "nanoseconds": nanoseconds}),
        V::Inet(ip) => Json::from(ip.to_string()),
        V::Uuid(u) | V::Timeuuid(u) => Json::from(u.to_string()),
        V::Varint(v) => Json::from(v.to_string()),
        V::List(items) | V::Set(items) | V::Vector(items) => {
            Json::Array(items.iter().map(value_to_json).collect())
        }
        V::Map(entries) => Json::Array(
            entries
                .iter()
                .map(|(k, v)| Json::Array(vec![value_to_json(k), value_to_json(v)]))
                .collect(),
        ),
        V::Tuple(items) => Json::Array(
            items
                .iter()
                .map(|i| i.as_ref().map_or(Json::Null, value_to_json))
                .collect(),
        ),
        V::Udt(fields) => Json::Object(
            fields
                .iter()
                .map(|(n, v)| (n.clone(), v.as_ref().map_or(Json::Null, value_to_json)))
                .collect(),
        ),
        V::Empty => json!({ EMPTY_KEY: true }),
    }
}

fn is_empty_marker(ty: &CqlType, j: &Json) -> bool {
    let Json::Object(map) = j else {
        return false;
    };
    let udt_has_field =
        matches!(ty, CqlType::Udt { fields, .. } if fields.iter().any(|(n, _)| n == EMPTY_KEY));
    map.len() == 1 && map.get(EMPTY_KEY) == Some(&Json::Bool(true)) && !udt_has_field
}

fn int_from_json<T: TryFrom<i64>>(
    j: &Json,
    path: &dyn fmt::Display,
    what: &str,
) -> Result<T, Error> {
    j.as_i64()
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| jerr(path, format!("expected {what}")))
}

fn str_from_json<'j>(j: &'j Json, path: &dyn fmt::Display) -> Result<&'j str, Error> {
    j.as_str().ok_or_else(|| jerr(path, "expected a string"))
}

fn array_from_json<'j>(j: &'j Json, path: &dyn fmt::Display) -> Result<&'j Vec<Json>, Error> {
    j.as_array().ok_or_else(|| jerr(path, "expected an array"))
}

fn object_from_json<'j>(
    j: &'j Json,
    path: &dyn fmt::Display,
) -> Result<&'j Map<String, Json>, Error> {
    j.as_object()
        .ok_or_else(|| jerr(path, "expected an object"))
}

fn uuid_from_json(j: &Json, path: &dyn fmt::Display) -> Result<Uuid, Error> {
    Uuid::parse_str(str_from_json(j, path)?).map_err(|_| jerr(path, "expected a UUID string"))
}

/// Decodes a value of type `ty` from its JSON form; `path` locates it in error messages.
pub fn value_from_json(ty: &CqlType, j: &Json, path: &dyn fmt::Display) -> Result<CqlValue, Error> {
    if is_empty_marker(ty, j) {
        return Ok(CqlValue::Empty);
    }
    let items_of = |element: &CqlType| -> Result<Vec<CqlValue>, Error> {
        array_from_json(j, path)?
            .iter()
            .enumerate()
            .map(|(i, item)| value_from_json(element, item, &Index(&path, i)))
            .collect()
    };
    Ok(match ty {
        CqlType::Ascii => {
            let s = str_from_json(j, path)?;
            if !s.is_ascii() {
                return Err(jerr(path, "non-ASCII ascii value"));
            }
            CqlValue::Ascii(s.to_owned())
        }
        CqlType::Text => CqlValue::Text(str_from_json(j, path)?.to_owned()),
        CqlType::Blob | CqlType::Custom { .. } => {
            let bytes = BASE64
                .decode(str_from_json(j, path)?)
                .map_err(|_| jerr(path, "expected base64"))?;
            if matches!(ty, CqlType::Blob) {
                CqlValue::Blob(bytes)
            } else {
                CqlValue::Custom(bytes)
            }
        }
        CqlType::Boolean => CqlValue::Boolean(
            j.as_bool()
                .ok_or_else(|| jerr(path, "expected true or false"))?,
        ),
        CqlType::Bigint => CqlValue::Bigint(int_from_json(j, path, "a 64-bit integer")?),
        CqlType::Counter => CqlValue::Counter(int_from_json(j, path, "a 64-bit integer")?),
        CqlType::Timestamp => CqlValue::Timestamp(int_from_json(j, path, "epoch milliseconds")?),
        CqlType::Time => {
            let nanos: i64 = int_from_json(j, path, "nanoseconds since midnight")?;
            if !(0..crate::native_codec::NANOS_PER_DAY).contains(&nanos) {
                return Err(jerr(path, "time of day out of range"));
            }
            CqlValue::Time(nanos)
        }
        CqlType::Date => CqlValue::Date(int_from_json(j, path, "days since the epoch")?),
        CqlType::Int => CqlValue::Int(int_from_json(j, path, "a 32-bit integer")?),
        CqlType::Smallint => CqlValue::Smallint(int_from_json(j, path, "a 16-bit integer")?),
        CqlType::Tinyint => CqlValue::Tinyint(int_from_json(j, path, "an 8-bit integer")?),
        CqlType::Double => CqlValue::Double(float_from_json(j, path)?),
        CqlType::Float => CqlValue::Float(float_from_json(j, path)? as f32),
        CqlType::Decimal => {
            let (unscaled, scale) = parse_decimal(str_from_json(j, path)?)
                .ok_or_else(|| jerr(path, "expected a decimal string"))?;
            CqlValue::Decimal { unscaled, scale }
        }
        CqlType::Varint => CqlValue::Varint(
            BigInt::from_str(str_from_json(j, path)?)
                .map_err(|_| jerr(path, "expected an integer string"))?,
        ),
        CqlType::Duration => {
            let o = object_from_json(j, path)?;
            let field = |name: &str| o.get(name).unwrap_or(&Json::Null);
            CqlValue::Duration {
                months: int_from_json(field("months"), &Field(&path, "months"), "an i32")?,
                days: int_from_json(field("days"), &Field(&path, "days"), "an i32")?,
                nanoseconds: int_from_json(
                    field("nanoseconds"),
                    &Field(&path, "nanoseconds"),
                    "an i64",
                )?,
            }
        }
        CqlType::Inet => CqlValue::Inet(
            IpAddr::from_str(str_from_json(j, path)?)
                .map_err(|_| jerr(path, "expected an IP address"))?,
        ),
        CqlType::Uuid => CqlValue::Uuid(uuid_from_json(j, path)?),
        CqlType::Timeuuid => CqlValue::Timeuuid(uuid_from_json(j, path)?),
        CqlType::List { element, .. } => CqlValue::List(items_of(element)?),
        CqlType::Set { element, .. } => CqlValue::Set(items_of(element)?),
        CqlType::Vector { element, dimension } => {
            let items = items_of(element)?;
            if items.len() != *dimension as usize {
                return Err(jerr(path, format!("vector needs {dimension} elements")));
            }
            CqlValue::Vector(items)
        }
        CqlType::Map { key, value, .. } => {
            let mut entries = Vec::new();
            for (i, pair) in array_from_json(j, path)?.iter().enumerate() {
                let p = Index(&path, i);
                match pair.as_array().map(Vec::as_slice) {
                    Some([k, v]) => entries.push((
                        value_from_json(key, k, &Index(&p, 0))?,
                        value_from_json(value, v, &Index(&p, 1))?,
                    )),
                    _ => return Err(jerr(&p, "expected a [key, value] pair")),
                }
            }
            CqlValue::Map(entries)
        }
        CqlType::Tuple { elements } => {
            let items = array_from_json(j, path)?;
            if items.len() > elements.len() {
                return Err(jerr(path, "more tuple components than the type has"));
            }
            CqlValue::Tuple(
                elements
                    .iter()
                    .zip(items)
                    .enumerate()
                    .map(|(i, (t, item))| match item {
                        Json::Null => Ok(None),
                        _ => value_from_json(t, item, &Index(&path, i)).map(Some),
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
        CqlType::Udt { fields, .. } => {
            let o = object_from_json(j, path)?;
            if let Some(unknown) = o.keys().find(|k| !fields.iter().any(|(n, _)| n == *k)) {
                return Err(jerr(path, format!("unknown UDT field {unknown:?}")));
            }
            CqlValue::Udt(
                fields
                    .iter()
                    .map(|(name, t)| {
                        let v = match o.get(name) {
                            None | Some(Json::Null) => None,
                            Some(item) => Some(value_from_json(t, item, &Field(&path, name))?),
                        };
                        Ok((name.clone(), v))
                    })
                    .collect::<Result<_, Error>>()?,
            )
        }
    })
}

fn kind_name(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::PartitionKey { .. } => "partition_key",
        ColumnKind::Clustering { .. } => "clustering",
        ColumnKind::Static => "static",
        ColumnKind::Regular => "regular",
    }
}

fn collect_udts(ty: &CqlType, out: &mut BTreeMap<String, Json>) {
    match ty {
        CqlType::List { element, .. }
        | CqlType::Set { element, .. }
        | CqlType::Vector { element, .. } => collect_udts(element, out),
        CqlType::Map { key, value, .. } => {
            collect_udts(key, out);
            collect_udts(value, out);
        }
        CqlType::Tuple { elements } => elements.iter().for_each(|e| collect_udts(e, out)),
        CqlType::Udt { name, fields, .. } if !out.contains_key(name) => {
            out.insert(
                name.clone(),
                Json::Array(
                    fields
                        .iter()
                        .map(|(n, t)| json!([n, t.to_string()]))
                        .collect(),
                ),
            );
            fields.iter().for_each(|(_, t)| collect_udts(t, out));
        }
        _ => {}
    }
}

fn ttl_fields(obj: &mut Map<String, Json>, ttl: Option<Ttl>) {
    obj.insert(
        "ttl".into(),
        ttl.map_or(Json::Null, |t| Json::from(t.ttl_secs)),
    );
    obj.insert(
        "expires_at".into(),
        ttl.map_or(Json::Null, |t| Json::from(t.expires_at_secs)),
    );
}

fn path_to_json(path: &CellPath) -> Json {
    match path {
        CellPath::ListIndex(u) => Json::from(u.to_string()),
        CellPath::SetElement(v) | CellPath::MapKey(v) => value_to_json(v),
        CellPath::UdtField(name) => Json::from(name.as_str()),
    }
}

/// Builds the JSON envelope of `event`, taking column types from `schema` (the version the event
/// was decoded with).
pub fn event_to_json(event: &ChangeEvent, schema: &TableSchema) -> Result<Json, Error> {
    let column = |name: &str| {
        schema.column(name).ok_or_else(|| Error::UnknownColumn {
            keyspace: schema.keyspace.clone(),
            table: schema.table.clone(),
            column: name.to_owned(),
        })
    };
    let mut mentioned: Vec<&str> = Vec::new();
    let bound_cols = match &event.deletion {
        Some(Deletion {
            scope: DeletionScope::Range { start, end },
            ..
        }) => start.prefix.iter().chain(end.prefix.iter()).collect(),
        _ => Vec::new(),
    };
    for name in event
        .partition_key
        .iter()
        .chain(&event.clustering_key)
        .chain(bound_cols)
        .map(|k| k.name.as_str())
        .chain(event.cells.iter().map(|c| c.column.as_str()))
    {
        column(name)?;
        if !mentioned.contains(&name) {
            mentioned.push(name);
        }
    }
    let mut udts = BTreeMap::new();
    // Key columns in key order first: decoding takes key order from this list.
    let ordered = schema
        .partition_key()
        .into_iter()
        .chain(schema.clustering_key())
        .chain(
            schema
                .columns
                .iter()
                .filter(|c| matches!(c.kind, ColumnKind::Static | ColumnKind::Regular)),
        );
    let columns: Vec<Json> = ordered
        .filter(|c| mentioned.contains(&c.name.as_str()))
        .map(|c| {
            collect_udts(&c.cql_type, &mut udts);
            json!({"name": c.name, "type": c.cql_type.to_string(), "kind": kind_name(c.kind)})
        })
        .collect();
    let keys = |cols: &[KeyColumn]| -> Json {
        Json::Object(
            cols.iter()
                .map(|k| (k.name.clone(), value_to_json(&k.value)))
                .collect(),
        )
    };
    let bound = |b: &ClusteringBound| json!({"inclusive": b.inclusive, "prefix": keys(&b.prefix)});
    let deletion = event.deletion.as_ref().map_or(Json::Null, |d| {
        let mut o = Map::new();
        o.insert(
            "marked_for_delete_at".into(),
            Json::from(d.marked_for_delete_at_micros),
        );
        o.insert(
            "local_deletion_time".into(),
            Json::from(d.local_deletion_time_secs),
        );
        let scope = match &d.scope {
            DeletionScope::Row => "row",
            DeletionScope::Partition => "partition",
            DeletionScope::Range { start, end } => {
                o.insert("start".into(), bound(start));
                o.insert("end".into(), bound(end));
                "range"
            }
        };
        o.insert("scope".into(), Json::from(scope));
        Json::Object(o)
    });
    let liveness = event.liveness.map_or(Json::Null, |l| {
        let mut o = Map::new();
        o.insert("writetime".into(), Json::from(l.writetime_micros));
        ttl_fields(&mut o, l.ttl);
        Json::Object(o)
    });
    let mut after = Map::new();
    for cell in &event.cells {
        let mut o = Map::new();
        o.insert("writetime".into(), Json::from(cell.writetime_micros));
        ttl_fields(&mut o, cell.ttl);
        match &cell.change {
            CellValue::Set { value } => {
                o.insert("value".into(), value_to_json(value));
            }
            CellValue::Tombstone => {
                o.insert("tombstone".into(), Json::Bool(true));
            }
            CellValue::Complex { deletion, elements } => {
                o.insert(
                    "deletion".into(),
                    deletion.map_or(Json::Null, |d| {
                        json!({"marked_for_delete_at": d.marked_for_delete_at_micros,
                               "local_deletion_time": d.local_deletion_time_secs})
                    }),
                );
                let elements = elements
                    .iter()
                    .map(|e| {
                        let mut eo = Map::new();
                        eo.insert("path".into(), path_to_json(&e.path));
                        match &e.value {
                            Some(v) => eo.insert("value".into(), value_to_json(v)),
                            None => eo.insert("deleted".into(), Json::Bool(true)),
                        };
                        eo.insert("writetime".into(), Json::from(e.writetime_micros));
                        ttl_fields(&mut eo, e.ttl);
                        Json::Object(eo)
                    })
                    .collect();
                o.insert("elements".into(), Json::Array(elements));
            }
            CellValue::Counter { shards } => {
                let shards = shards
                    .iter()
                    .map(|s| {
                        json!({"counter_id": s.counter_id.to_string(), "clock": s.clock,
                               "count": s.count, "kind": shard_kind_name(s.kind)})
                    })
                    .collect();
                o.insert("counter_shards".into(), Json::Array(shards));
            }
        }
        after.insert(cell.column.clone(), Json::Object(o));
    }
    let s = &event.source;
    let mut root = Map::new();
    root.insert("op".into(), Json::from(event.op.code()));
    root.insert("ts_ms".into(), Json::from(event.captured_at_ms));
    root.insert(
        "correlation_id".into(),
        Json::from(event.correlation_id.as_str()),
    );
    root.insert(
        "source".into(),
        json!({"cluster": s.cluster, "host_id": s.host_id.to_string(), "keyspace": s.keyspace,
               "table": s.table, "table_id": s.table_id.to_string(),
               "schema_version": s.schema_version, "segment_id": s.segment_id,
               "segment_position": s.segment_position, "index": s.index}),
    );
    root.insert("static".into(), Json::Bool(event.is_static));
    root.insert("columns".into(), Json::Array(columns));
    if !udts.is_empty() {
        root.insert("udts".into(), Json::Object(udts.into_iter().collect()));
    }
    let dropped = dropped_columns_to_json(schema);
    if !dropped.is_empty() {
        root.insert("dropped_columns".into(), Json::Array(dropped));
    }
    root.insert("key".into(), keys(&event.partition_key));
    root.insert("clustering".into(), keys(&event.clustering_key));
    root.insert("liveness".into(), liveness);
    root.insert("deletion".into(), deletion);
    root.insert("after".into(), Json::Object(after));
    Ok(Json::Object(root))
}

/// The latest drop of each column not live in `schema`, by name.
fn dropped_columns_to_json(schema: &TableSchema) -> Vec<Json> {
    let mut latest: BTreeMap<&str, &crate::DroppedColumn> = BTreeMap::new();
    for d in &schema.dropped_columns {
        if schema.column(&d.name).is_some() {
            continue;
        }
        let e = latest.entry(d.name.as_str()).or_insert(d);
        if d.dropped_time_micros > e.dropped_time_micros {
            *e = d;
        }
    }
    latest
        .values()
        .map(|d| {
            json!({"name": d.name, "type": d.cql_type.to_string(), "kind": kind_name(d.kind),
                   "dropped_at": d.dropped_time_micros})
        })
        .collect()
}

fn shard_kind_name(kind: CounterShardKind) -> &'static str {
    match kind {
        CounterShardKind::Global => "global",
        CounterShardKind::Local => "local",
        CounterShardKind::Remote => "remote",
    }
}

/// Serializes `event` as the JSON envelope (UTF-8 bytes).
pub fn encode_event(event: &ChangeEvent, schema: &TableSchema) -> Result<Vec<u8>, Error> {
    let json = event_to_json(event, schema)?;
    serde_json::to_vec(&json).map_err(|source| Error::SerdeJson {
        context: "serializing a change event".into(),
        source,
    })
}

/// Parses a JSON envelope produced by [`encode_event`].
pub fn decode_event(bytes: &[u8]) -> Result<ChangeEvent, Error> {
    let json: Json = serde_json::from_slice(bytes).map_err(|e| jerr(&"$", e.to_string()))?;
    event_from_json(&json)
}

/// Parses an envelope into the event and the [`TableSchema`] the envelope describes, so a stage
/// that rewrites events (the masker) can re-encode them with [`encode_event`].
pub fn decode_event_with_schema(bytes: &[u8]) -> Result<(ChangeEvent, TableSchema), Error> {
    let json: Json = serde_json::from_slice(bytes).map_err(|e| jerr(&"$", e.to_string()))?;
    operation(object_from_json(&json, &"$")?)?;
    let schema = envelope_schema(&json)?;
    let event = event_from_json_with(&json, &schema)?;
    Ok((event, schema))
}

/// The partial table schema an envelope embeds: only the columns it lists, with their CQL types,
/// key positions in list order, `cdc = true`, and `version` = `source.schema_version`. Clustering
/// order is not carried by the envelope and reads back as ascending.
pub fn envelope_schema(json: &Json) -> Result<TableSchema, Error> {
    let root = object_from_json(json, &"$")?;
    let src = object_from_json(get(root, "source", &"$")?, &"$.source")?;
    let keyspace = str_from_json(get(src, "keyspace", &"$.source")?, &"$.source.keyspace")?;
    let resolver = EnvelopeUdts {
        keyspace: keyspace.to_owned(),
        udts: root.get("udts").and_then(Json::as_object),
        resolving: RefCell::new(Vec::new()),
    };
    let mut columns = Vec::new();
    let (mut pk, mut ck) = (0u16, 0u16);
    for (i, c) in array_from_json(get(root, "columns", &"$")?, &"$.columns")?
        .iter()
        .enumerate()
    {
        let p = Index(&"$.columns", i);
        let o = object_from_json(c, &p)?;
        let name = str_from_json(get(o, "name", &p)?, &p)?.to_owned();
        let cql_type = CqlType::parse_with(str_from_json(get(o, "type", &p)?, &p)?, &resolver)?;
        let kind = match str_from_json(get(o, "kind", &p)?, &p)? {
            "partition_key" => {
                pk = pk.saturating_add(1);
                ColumnKind::PartitionKey { position: pk - 1 }
            }
            "clustering" => {
                ck = ck.saturating_add(1);
                ColumnKind::Clustering {
                    position: ck - 1,
                    order: crate::ClusteringOrder::Asc,
                }
            }
            "static" => ColumnKind::Static,
            "regular" => ColumnKind::Regular,
            _ => {
                return Err(jerr(
                    &p,
                    "kind must be partition_key, clustering, static or regular",
                ));
            }
        };
        columns.push(crate::ColumnSchema {
            name,
            cql_type,
            kind,
        });
    }
    Ok(TableSchema {
        keyspace: keyspace.to_owned(),
        table: str_from_json(get(src, "table", &"$.source")?, &"$.source.table")?.to_owned(),
        id: uuid_from_json(get(src, "table_id", &"$.source")?, &"$.source.table_id")?,
        cdc: true,
        version: int_from_json(
            get(src, "schema_version", &"$.source")?,
            &"$.source.schema_version",
            "a u32",
        )?,
        columns,
        dropped_columns: dropped_columns_from_json(root, &resolver)?,
    })
}

/// The envelope's `dropped_columns` (absent in older envelopes: none).
fn dropped_columns_from_json(
    root: &Map<String, Json>,
    resolver: &EnvelopeUdts<'_>,
) -> Result<Vec<crate::DroppedColumn>, Error> {
    let Some(list) = root.get("dropped_columns") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, d) in array_from_json(list, &"$.dropped_columns")?
        .iter()
        .enumerate()
    {
        let p = Index(&"$.dropped_columns", i);
        let o = object_from_json(d, &p)?;
        let name = str_from_json(get(o, "name", &p)?, &p)?.to_owned();
        // A type the decoder cannot resolve (a UDT not in `udts`) does not matter to readers of
        // drops; keep the column with an opaque type rather than refuse the event.
        let type_text = str_from_json(get(o, "type", &p)?, &p)?;
        let cql_type = CqlType::parse_with(type_text, resolver).unwrap_or(CqlType::Custom {
            class: type_text.to_owned(),
        });
        let kind = match str_from_json(get(o, "kind", &p)?, &p)? {
            "static" => ColumnKind::Static,
            "regular" => ColumnKind::Regular,
            _ => return Err(jerr(&p, "kind must be static or regular")),
        };
        let dropped_time_micros = int_from_json(
            get(o, "dropped_at", &p)?,
            &format!("{p}.dropped_at"),
            "an i64",
        )?;
        out.push(crate::DroppedColumn {
            name,
            cql_type,
            dropped_time_micros,
            kind,
        });
    }
    Ok(out)
}

/// Resolves UDT names from the envelope's `udts` section, refusing cycles (outside input).
struct EnvelopeUdts<'j> {
    keyspace: String,
    udts: Option<&'j Map<String, Json>>,
    resolving: RefCell<Vec<String>>,
}

impl UdtResolver for EnvelopeUdts<'_> {
    fn resolve(&self, name: &str) -> Option<UdtDefinition> {
        let def = self.udts?.get(name)?.as_array()?;
        if self.resolving.borrow().iter().any(|n| n == name) {
            return None;
        }
        self.resolving.borrow_mut().push(name.to_owned());
        let fields: Option<Vec<(String, CqlType)>> = def
            .iter()
            .map(|f| match f.as_array().map(Vec::as_slice) {
                Some([Json::String(n), Json::String(t)]) => {
                    CqlType::parse_with(t, self).ok().map(|t| (n.clone(), t))
                }
                _ => None,
            })
            .collect();
        self.resolving.borrow_mut().pop();
        Some(UdtDefinition {
            keyspace: self.keyspace.clone(),
            name: name.to_owned(),
            fields: fields?,
        })
    }
}

fn get<'j>(
    o: &'j Map<String, Json>,
    key: &str,
    path: &dyn fmt::Display,
) -> Result<&'j Json, Error> {
    o.get(key)
        .ok_or_else(|| jerr(&Field(&path, key), "missing"))
}

fn ttl_from_json(o: &Map<String, Json>, path: &dyn fmt::Display) -> Result<Option<Ttl>, Error> {
    match (o.get("ttl"), o.get("expires_at")) {
        (None | Some(Json::Null), None | Some(Json::Null)) => Ok(None),
        (Some(t), Some(e)) => Ok(Some(Ttl {
            ttl_secs: int_from_json(t, &Field(&path, "ttl"), "TTL seconds")?,
            expires_at_secs: int_from_json(e, &Field(&path, "expires_at"), "epoch seconds")?,
        })),
        _ => Err(jerr(
            path,
            "ttl and expires_at must be both set or both null",
        )),
    }
}

/// Decodes the envelope from a parsed JSON value.
pub fn event_from_json(json: &Json) -> Result<ChangeEvent, Error> {
    // The operation is checked first: the most telling error for a message that is no envelope.
    operation(object_from_json(json, &"$")?)?;
    event_from_json_with(json, &envelope_schema(json)?)
}

fn operation(root: &Map<String, Json>) -> Result<Operation, Error> {
    let code = str_from_json(get(root, "op", &"$")?, &"$.op")?;
    Operation::from_code(code).ok_or_else(|| jerr(&"$.op", "expected c, u or d"))
}

/// Decodes the envelope whose column list was already parsed into `schema` by
/// [`envelope_schema`] (parsing the CQL types once per envelope, not twice).
fn event_from_json_with(json: &Json, schema: &TableSchema) -> Result<ChangeEvent, Error> {
    let root = object_from_json(json, &"$")?;
    let op = operation(root)?;
    let src = object_from_json(get(root, "source", &"$")?, &"$.source")?;
    let sp = |k: &'static str| Field(&"$.source", k);
    let source = SourceInfo {
        cluster: str_from_json(get(src, "cluster", &"$.source")?, &sp("cluster"))?.to_owned(),
        host_id: uuid_from_json(get(src, "host_id", &"$.source")?, &sp("host_id"))?,
        keyspace: str_from_json(get(src, "keyspace", &"$.source")?, &sp("keyspace"))?.to_owned(),
        table: str_from_json(get(src, "table", &"$.source")?, &sp("table"))?.to_owned(),
        table_id: uuid_from_json(get(src, "table_id", &"$.source")?, &sp("table_id"))?,
        schema_version: int_from_json(
            get(src, "schema_version", &"$.source")?,
            &sp("schema_version"),
            "a u32",
        )?,
        segment_id: int_from_json(
            get(src, "segment_id", &"$.source")?,
            &sp("segment_id"),
            "an i64",
        )?,
        segment_position: int_from_json(
            get(src, "segment_position", &"$.source")?,
            &sp("segment_position"),
            "a u32",
        )?,
        index: int_from_json(get(src, "index", &"$.source")?, &sp("index"), "a u32")?,
    };
    // Column name → (type, kind), in list order, from the one parse of `columns`.
    let columns: Vec<(&str, &CqlType, &'static str)> = schema
        .columns
        .iter()
        .map(|c| (c.name.as_str(), &c.cql_type, kind_name(c.kind)))
        .collect();
    let keys_of = |j: &Json,
                   kind: &str,
                   path: &dyn fmt::Display,
                   prefix: bool|
     -> Result<Vec<KeyColumn>, Error> {
        let o = object_from_json(j, path)?;
        let mut out = Vec::new();
        let mut ended = false;
        for &(name, ty, _) in columns.iter().filter(|(_, _, k)| *k == kind) {
            match o.get(name) {
                Some(v) if !ended => out.push(KeyColumn {
                    name: name.to_owned(),
                    value: value_from_json(ty, v, &Field(&path, name))?,
                }),
                Some(_) => return Err(jerr(path, "gap in a clustering prefix")),
                None if prefix => ended = true,
                None => return Err(jerr(path, format!("missing key column {name:?}"))),
            }
        }
        if out.len() != o.len() {
            return Err(jerr(
                path,
                "holds columns not listed in columns with this kind",
            ));
        }
        Ok(out)
    };
    let partition_key = keys_of(get(root, "key", &"$")?, "partition_key", &"$.key", false)?;
    let clustering_key = keys_of(
        get(root, "clustering", &"$")?,
        "clustering",
        &"$.clustering",
        true,
    )?;
    let is_static = get(root, "static", &"$")?
        .as_bool()
        .ok_or_else(|| jerr(&"$.static", "expected a boolean"))?;
    let liveness = match get(root, "liveness", &"$")? {
        Json::Null => None,
        j => {
            let o = object_from_json(j, &"$.liveness")?;
            Some(Liveness {
                writetime_micros: int_from_json(
                    get(o, "writetime", &"$.liveness")?,
                    &"$.liveness.writetime",
                    "microseconds",
                )?,
                ttl: ttl_from_json(o, &"$.liveness")?,
            })
        }
    };
    let deletion = match get(root, "deletion", &"$")? {
        Json::Null => None,
        j => {
            let p: &dyn fmt::Display = &"$.deletion";
            let o = object_from_json(j, p)?;
            let bound = |key: &str| -> Result<ClusteringBound, Error> {
                let bp = Field(&p, key);
                let b = object_from_json(get(o, key, p)?, &bp)?;
                Ok(ClusteringBound {
                    inclusive: get(b, "inclusive", &bp)?
                        .as_bool()
                        .ok_or_else(|| jerr(&bp, "inclusive must be a boolean"))?,
                    prefix: keys_of(
                        get(b, "prefix", &bp)?,
                        "clustering",
                        &Field(&bp, "prefix"),
                        true,
                    )?,
                })
            };
            let scope = match str_from_json(get(o, "scope", p)?, p)? {
                "row" => DeletionScope::Row,
                "partition" => DeletionScope::Partition,
                "range" => DeletionScope::Range {
                    start: bound("start")?,
                    end: bound("end")?,
                },
                _ => return Err(jerr(p, "scope must be row, partition or range")),
            };
            Some(Deletion {
                scope,
                marked_for_delete_at_micros: int_from_json(
                    get(o, "marked_for_delete_at", p)?,
                    p,
                    "microseconds",
                )?,
                local_deletion_time_secs: int_from_json(
                    get(o, "local_deletion_time", p)?,
                    p,
                    "seconds",
                )?,
            })
        }
    };
    let mut cells = Vec::new();
    let after = object_from_json(get(root, "after", &"$")?, &"$.after")?;
    // Cells come back in `columns` order (keys, then table order), the order capture emits.
    for &(name, ty, _) in &columns {
        let Some(j) = after.get(name) else { continue };
        let p = Field(&"$.after", name);
        cells.push(cell_from_json(name, ty, j, &p)?);
    }
    if cells.len() != after.len() {
        return Err(jerr(&"$.after", "holds a column not listed in columns"));
    }
    Ok(ChangeEvent {
        source,
        op,
        partition_key,
        clustering_key,
        is_static,
        liveness,
        deletion,
        cells,
        correlation_id: str_from_json(get(root, "correlation_id", &"$")?, &"$.correlation_id")?
            .to_owned(),
        captured_at_ms: int_from_json(get(root, "ts_ms", &"$")?, &"$.ts_ms", "epoch milliseconds")?,
    })
}

fn cell_from_json(
    name: &str,
    ty: &CqlType,
    j: &Json,
    p: &dyn fmt::Display,
) -> Result<CellChange, Error> {
    let o = object_from_json(j, p)?;
    let writetime_micros = int_from_json(get(o, "writetime", p)?, p, "microseconds")?;
    let ttl = ttl_from_json(o, p)?;
    let change = if let Some(v) = o.get("value") {
        CellValue::Set {
            value: value_from_json(ty, v, &Field(&p, "value"))?,
        }
    } else if o.get("tombstone") == Some(&Json::Bool(true)) {
        CellValue::Tombstone
    } else if let Some(shards) = o.get("counter_shards") {
        let mut out = Vec::new();
        for (i, s) in array_from_json(shards, p)?.iter().enumerate() {
            let sp = Index(&Field(&p, "counter_shards"), i);
            let so = object_from_json(s, &sp)?;
            out.push(CounterShard {
                counter_id: uuid_from_json(get(so, "counter_id", &sp)?, &sp)?,
                clock: int_from_json(get(so, "clock", &sp)?, &sp, "an i64")?,
                count: int_from_json(get(so, "count", &sp)?, &sp, "an i64")?,
                kind: match str_from_json(get(so, "kind", &sp)?, &sp)? {
                    "global" => CounterShardKind::Global,
                    "local" => CounterShardKind::Local,
                    "remote" => CounterShardKind::Remote,
                    _ => return Err(jerr(&sp, "kind must be global, local or remote")),
                },
            });
        }
        CellValue::Counter { shards: out }
    } else if let Some(elements) = o.get("elements") {
        let deletion = match o.get("deletion") {
            None | Some(Json::Null) => None,
            Some(d) => {
                let dp = Field(&p, "deletion");
                let d = object_from_json(d, &dp)?;
                Some(ComplexDeletion {
                    marked_for_delete_at_micros: int_from_json(
                        get(d, "marked_for_delete_at", &dp)?,
                        &dp,
                        "microseconds",
                    )?,
                    local_deletion_time_secs: int_from_json(
                        get(d, "local_deletion_time", &dp)?,
                        &dp,
                        "seconds",
                    )?,
                })
            }
        };
        let mut out = Vec::new();
        for (i, e) in array_from_json(elements, p)?.iter().enumerate() {
            let ep = Index(&Field(&p, "elements"), i);
            let eo = object_from_json(e, &ep)?;
            let pj = get(eo, "path", &ep)?;
            let pp = Field(&ep, "path");
            let path = match ty {
                CqlType::List { .. } => CellPath::ListIndex(uuid_from_json(pj, &pp)?),
                CqlType::Set { element, .. } => {
                    CellPath::SetElement(value_from_json(element, pj, &pp)?)
                }
                CqlType::Map { key, .. } => CellPath::MapKey(value_from_json(key, pj, &pp)?),
                CqlType::Udt { .. } => CellPath::UdtField(str_from_json(pj, &pp)?.to_owned()),
                _ => {
                    return Err(jerr(
                        p,
                        format!("column {name:?} is not a collection or UDT"),
                    ));
                }
            };
            let value = match eo.get("value") {
                Some(v) => {
                    let vp = Field(&ep, "value");
                    Some(match crate::native_codec::element_value_type(ty, &path) {
                        Some(vt) => value_from_json(vt, v, &vp)?,
                        None if is_empty_marker(ty, v) => CqlValue::Empty,
                        None => return Err(jerr(&vp, "unknown field or non-empty set value")),
                    })
                }
                None if eo.get("deleted") == Some(&Json::Bool(true)) => None,
                None => return Err(jerr(&ep, "needs value or \"deleted\": true")),
            };
            out.push(ElementChange {
                path,
                value,
                writetime_micros: int_from_json(get(eo, "writetime", &ep)?, &ep, "microseconds")?,
                ttl: ttl_from_json(eo, &ep)?,
            });
        }
        CellValue::Complex {
            deletion,
            elements: out,
        }
    } else {
        return Err(jerr(
            p,
            "needs one of value, tombstone, elements, counter_shards",
        ));
    };
    Ok(CellChange {
        column: name.to_owned(),
        writetime_micros,
        ttl,
        change,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::test_strategies::table_and_event;

    #[test]
    fn dropped_columns_round_trip_and_are_optional() -> Result<(), Error> {
        let schema = TableSchema {
            keyspace: "fake_ks".into(),
            table: "readings".into(),
            id: Uuid::from_u128(7),
            cdc: true,
            version: 3,
            columns: vec![
                crate::ColumnSchema {
                    name: "id".into(),
                    cql_type: CqlType::Int,
                    kind: ColumnKind::PartitionKey { position: 0 },
                },
                crate::ColumnSchema {
                    name: "note".into(),
                    cql_type: CqlType::Text,
                    kind: ColumnKind::Regular,
                },
            ],
            dropped_columns: vec![
                crate::DroppedColumn {
                    name: "fax".into(),
                    cql_type: CqlType::Text,
                    dropped_time_micros: 10,
                    kind: ColumnKind::Regular,
                },
                crate::DroppedColumn {
                    name: "fax".into(),
                    cql_type: CqlType::Text,
                    dropped_time_micros: 20,
                    kind: ColumnKind::Regular,
                },
                // Dropped and re-added: live, so not listed.
                crate::DroppedColumn {
                    name: "note".into(),
                    cql_type: CqlType::Int,
                    dropped_time_micros: 5,
                    kind: ColumnKind::Regular,
                },
            ],
        };
        let source = SourceInfo {
            cluster: "c".into(),
            host_id: Uuid::from_u128(1),
            keyspace: "fake_ks".into(),
            table: "readings".into(),
            table_id: Uuid::from_u128(7),
            schema_version: 3,
            segment_id: 1,
            segment_position: 1,
            index: 0,
        };
        let event = ChangeEvent {
            correlation_id: source.correlation_id(),
            source,
            op: Operation::Update,
            partition_key: vec![KeyColumn::new("id", CqlValue::Int(1))],
            clustering_key: Vec::new(),
            is_static: false,
            liveness: None,
            deletion: None,
            cells: Vec::new(),
            captured_at_ms: 0,
        };
        let bytes = encode_event(&event, &schema)?;
        let json: Json = serde_json::from_slice(&bytes).map_err(|e| jerr(&"$", e.to_string()))?;
        assert_eq!(
            json["dropped_columns"],
            json!([{"name": "fax", "type": "text", "kind": "regular", "dropped_at": 20}])
        );
        let (decoded, envelope) = decode_event_with_schema(&bytes)?;
        assert_eq!(decoded, event);
        assert_eq!(envelope.dropped_columns.len(), 1);
        assert_eq!(
            envelope
                .dropped_column("fax")
                .map(|d| d.dropped_time_micros),
            Some(20)
        );
        // Re-encoding (the masker) keeps them.
        let again = encode_event(&decoded, &envelope)?;
        let json2: Json = serde_json::from_slice(&again).map_err(|e| jerr(&"$", e.to_string()))?;
        assert_eq!(json2["dropped_columns"], json["dropped_columns"]);
        // An envelope without the field (older capture) decodes with none.
        let mut old = json.clone();
        if let Some(o) = old.as_object_mut() {
            o.remove("dropped_columns");
        }
        let (_, envelope) =
            decode_event_with_schema(&serde_json::to_vec(&old).unwrap_or_default())?;
        assert!(envelope.dropped_columns.is_empty());
        Ok(())
    }

    #[test]
    fn decimal_strings() {
        for (unscaled, scale, text) in [
            (12345, 2, "123.45"),
            (5, 3, "0.005"),
            (-5, 3, "-0.005"),
            (150, 2, "1.50"),
            (7, 0, "7"),
            (12, -3, "12E3"),
            (0, 1, "0.0"),
            (5, 40, "5E-40"),
            (-5, i32::MAX, "-5E-2147483647"),
            (5, i32::MIN, "5E2147483648"),
        ] {
            let unscaled = BigInt::from(unscaled);
            assert_eq!(format_decimal(&unscaled, scale), text);
            assert_eq!(parse_decimal(text), Some((unscaled, scale)));
        }
        for bad in ["", "1.2.3", "a", "-", ".5", "1E", "1e99999999999"] {
            assert_eq!(parse_decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn special_floats_and_empty_values() -> Result<(), Error> {
        let nan = value_to_json(&CqlValue::Double(f64::NAN));
        assert_eq!(nan, json!("NaN"));
        assert_eq!(
            value_from_json(&CqlType::Double, &nan, &"$")?,
            CqlValue::Double(f64::NAN)
        );
        assert_eq!(
            value_to_json(&CqlValue::Float(f32::NEG_INFINITY)),
            json!("-Infinity")
        );
        let empty = value_to_json(&CqlValue::Empty);
        assert_eq!(
            value_from_json(&CqlType::Int, &empty, &"$")?,
            CqlValue::Empty
        );
        assert!(value_from_json(&CqlType::Int, &json!("1"), &"$").is_err());
        assert!(value_from_json(&CqlType::Tinyint, &json!(300), &"$").is_err());
        Ok(())
    }

    #[test]
    fn rejects_malformed_envelopes_with_a_path() {
        assert!(matches!(decode_event(b"{"), Err(Error::Json { .. })));
        assert!(matches!(decode_event(b"[]"), Err(Error::Json { .. })));
        let err = decode_event(br#"{"op":"x"}"#).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("invalid JSON change event at $.op: expected c, u or d")
        );
    }

    #[test]
    fn udt_cycles_in_the_envelope_are_rejected() {
        let resolver = EnvelopeUdts {
            keyspace: "ks".into(),
            udts: json!({"a": [["x", "frozen<b>"]], "b": [["y", "frozen<a>"]]})
                .as_object()
                .cloned()
                .as_ref()
                .map(|m| Box::leak(Box::new(m.clone())) as &Map<String, Json>),
            resolving: RefCell::new(Vec::new()),
        };
        assert!(CqlType::parse_with("a", &resolver).is_err());
    }

    proptest! {
        #[test]
        fn event_json_round_trip((table, event) in table_and_event()) {
            let bytes = encode_event(&event, &table).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = decode_event(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, event);
        }

        #[test]
        fn envelope_schema_re_encodes_identically((table, event) in table_and_event()) {
            let bytes = encode_event(&event, &table).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (back, schema) = decode_event_with_schema(&bytes)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&back, &event);
            let again = encode_event(&back, &schema).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again, bytes);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_event(&bytes);
        }
    }
}
