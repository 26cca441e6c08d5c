//! Avro for [`ChangeEvent`]s: one record schema per table and schema version, derived from the
//! [`TableSchema`], and the Confluent wire format (magic byte `0`, 4-byte big-endian schema id,
//! Avro binary body). The registry is reached elsewhere (cdc-kafka); this module is pure.
//!
//! Schema shape for table `ks.t` (record `cdc.ks.t`, nested records under `cdc.ks.t.*`, shared
//! records under `cdc.model.*`):
//!
//! - `op` (enum INSERT/UPDATE/DELETE), `captured_at_ms`, `correlation_id`, `source`
//!   (`cdc.model.SourceInfo`), `is_static`;
//! - `key`: one field per partition-key column; `clustering`: one nullable field per clustering
//!   column (null = not part of the event's prefix);
//! - `liveness`: nullable `{writetime_micros, ttl}`; `deletion`: nullable `{scope, marked…,
//!   local…, range_start, range_end}` where a bound is `{inclusive, prefix: clustering}`;
//! - `cells`: one nullable field per static/regular column (null = not written by this event),
//!   a record `{writetime_micros, ttl, change}` where `change` is a union of `Tombstone`,
//!   `Set{value}`, and, where the column allows them, `CounterShards{shards}` and
//!   `Complex{deletion, elements: [{path, value, writetime_micros, ttl}]}`.
//!
//! CQL → Avro types: ascii/text/inet → string; bigint/counter → long; time → long (ns since
//! midnight); timestamp → long `timestamp-millis`; date → int `date`; int/smallint/tinyint → int;
//! float/double; boolean; blob/custom → bytes; varint → bytes (two's complement, big-endian);
//! uuid/timeuuid → string `uuid`; decimal → `cdc.model.Decimal{unscaled: bytes, scale: int}`
//! (CQL decimals have a per-value scale, which Avro's `decimal` cannot carry); duration →
//! `cdc.model.Duration{months, days, nanoseconds}` (Avro's `duration` has no negatives or ns);
//! list/set/vector → array; map → array of `{key, value}` records (keeps order and non-string keys);
//! tuple → record `{_0, _1, …}`; UDT → record of its fields. Every value position is a union
//! with `cdc.model.Empty` (a zero-length Cassandra value) and, where CQL allows null (tuple/UDT
//! components, clustering), with `null`.
//!
//! Field names are the CQL names with characters outside `[A-Za-z0-9_]` replaced by `_`
//! (deduplicated); the record's `cdc_table_schema` attribute holds the [`TableSchema`] itself, so a
//! consumer that fetched the writer schema from the registry decodes without a Cassandra lookup
//! ([`AvroTableSchema::from_schema_json`]).

use std::collections::HashSet;
use std::net::IpAddr;
use std::str::FromStr;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as Avro;
use apache_avro::writer::datum::GenericDatumWriter;
use num_bigint::BigInt;
use serde_json::{Value as Json, json};
use uuid::Uuid;

use crate::event::{
    CellChange, CellPath, CellValue, ChangeEvent, ClusteringBound, ComplexDeletion, CounterShard,
    CounterShardKind, Deletion, DeletionScope, ElementChange, KeyColumn, Liveness, Operation,
    SourceInfo, Ttl,
};
use crate::{ColumnKind, ColumnSchema, CqlType, CqlValue, Error, TableSchema};

/// First byte of a Confluent-framed message.
pub const MAGIC_BYTE: u8 = 0;

/// The record attribute that carries the serialized [`TableSchema`].
pub const TABLE_SCHEMA_ATTRIBUTE: &str = "cdc_table_schema";

const EMPTY: &str = "cdc.model.Empty";

/// The registry subject for a topic's values (Confluent `TopicNameStrategy`).
pub fn subject_name(topic: &str) -> String {
    format!("{topic}-value")
}

/// Wraps an Avro body in the Confluent wire format.
pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Splits a Confluent-framed message into (schema id, Avro body).
pub fn unframe(message: &[u8]) -> Result<(u32, &[u8]), Error> {
    match message {
        [MAGIC_BYTE, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [other, ..] if *other != MAGIC_BYTE => Err(Error::WireFormat {
            reason: format!("magic byte is {other}, not 0"),
        }),
        _ => Err(Error::WireFormat {
            reason: format!("{} bytes is shorter than the 5-byte header", message.len()),
        }),
    }
}

/// Finds the writer schema for a registry id (backed by a cache of registry look-ups elsewhere).
pub trait SchemaIdResolver {
    fn schema_for_id(&self, schema_id: u32) -> Option<&AvroTableSchema>;
}

impl SchemaIdResolver for std::collections::HashMap<u32, AvroTableSchema> {
    fn schema_for_id(&self, schema_id: u32) -> Option<&AvroTableSchema> {
        self.get(&schema_id)
    }
}

/// Encodes `event` and frames it with `schema_id` (the id the registry gave `schema`).
pub fn encode_framed(
    schema: &AvroTableSchema,
    schema_id: u32,
    event: &ChangeEvent,
) -> Result<Vec<u8>, Error> {
    Ok(frame(schema_id, &schema.encode(event)?))
}

/// Decodes a framed message, looking its writer schema up by id.
pub fn decode_framed(
    message: &[u8],
    resolver: &dyn SchemaIdResolver,
) -> Result<ChangeEvent, Error> {
    let (id, body) = unframe(message)?;
    let schema = resolver
        .schema_for_id(id)
        .ok_or_else(|| Error::WireFormat {
            reason: format!("unknown schema id {id}"),
        })?;
    schema.decode(body)
}

/// The Avro schema derived for one table schema version, with what encoding needs.
#[derive(Debug, Clone)]
pub struct AvroTableSchema {
    table: TableSchema,
    json: String,
    schema: Schema,
    layout: Layout,
}

#[derive(Debug, Clone)]
struct Layout {
    /// (index into table.columns, Avro field name)
    partition_key: Vec<(usize, String)>,
    clustering: Vec<(usize, String)>,
    cells: Vec<(usize, String)>,
}

/// Avro-safe names for `names`, in order, unique within the list.
fn field_names<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut used = HashSet::new();
    names
        .map(|n| {
            let mut base: String = n
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if base.is_empty() || base.starts_with(|c: char| c.is_ascii_digit()) {
                base.insert(0, '_');
            }
            let mut name = base.clone();
            let mut i = 2;
            while !used.insert(name.clone()) {
                name = format!("{base}_{i}");
                i += 1;
            }
            name
        })
        .collect()
}

fn avro_err(path: &str, reason: impl Into<String>) -> Error {
    Error::Avro {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn mismatch(ty: &CqlType, value: &CqlValue) -> Error {
    Error::TypeMismatch {
        cql_type: ty.to_string(),
        value_kind: value.kind_name(),
    }
}

/// Which `change` union members a column has, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangeKind {
    Tombstone,
    Set,
    Counter,
    Complex,
}

fn change_kinds(ty: &CqlType) -> Vec<ChangeKind> {
    let mut kinds = vec![ChangeKind::Tombstone, ChangeKind::Set];
    if matches!(ty, CqlType::Counter) {
        kinds.push(ChangeKind::Counter);
    }
    if ty.is_multi_cell() {
        kinds.push(ChangeKind::Complex);
    }
    kinds
}

/// Emits schema JSON in document order, defining each shared named type at first use.
struct SchemaBuilder {
    namespace: String,
    counter: usize,
    defined: HashSet<&'static str>,
}

impl SchemaBuilder {
    fn local(&mut self, base: &str) -> String {
        self.counter += 1;
        format!("{}.{base}_{}", self.namespace, self.counter)
    }

    fn shared(&mut self, name: &'static str, def: impl FnOnce(&mut Self) -> Json) -> Json {
        if self.defined.insert(name) {
            def(self)
        } else {
            Json::from(name)
        }
    }

    fn empty(&mut self) -> Json {
        self.shared(EMPTY, |_| {
            json!({"type": "record", "name": EMPTY, "doc": "A zero-length Cassandra value (distinct from null).", "fields": []})
        })
    }

    fn ttl(&mut self) -> Json {
        let ttl = self.shared("cdc.model.Ttl", |_| {
            json!({"type": "record", "name": "cdc.model.Ttl", "fields": [
                {"name": "ttl_secs", "type": "long"},
                {"name": "expires_at_secs", "type": "long"}]})
        });
        json!(["null", ttl])
    }

    fn slot(&mut self, ty: &CqlType, nullable: bool) -> Json {
        let t = self.type_json(ty);
        let empty = self.empty();
        if nullable {
            json!(["null", t, empty])
        } else {
            json!([t, empty])
        }
    }

    fn type_json(&mut self, ty: &CqlType) -> Json {
        match ty {
            CqlType::Ascii | CqlType::Text | CqlType::Inet => json!("string"),
            CqlType::Bigint | CqlType::Counter | CqlType::Time => json!("long"),
            CqlType::Timestamp => json!({"type": "long", "logicalType": "timestamp-millis"}),
            CqlType::Blob | CqlType::Custom { .. } | CqlType::Varint => json!("bytes"),
            CqlType::Boolean => json!("boolean"),
            CqlType::Date => json!({"type": "int", "logicalType": "date"}),
            CqlType::Int | CqlType::Smallint | CqlType::Tinyint => json!("int"),
            CqlType::Float => json!("float"),
            CqlType::Double => json!("double"),
            CqlType::Uuid | CqlType::Timeuuid => json!({"type": "string", "logicalType": "uuid"}),
            CqlType::Decimal => self.shared("cdc.model.Decimal", |_| {
                json!({"type": "record", "name": "cdc.model.Decimal", "doc": "unscaled * 10^-scale; unscaled is two's complement big-endian.", "fields": [
                    {"name": "unscaled", "type": "bytes"}, {"name": "scale", "type": "int"}]})
            }),
            CqlType::Duration => self.shared("cdc.model.Duration", |_| {
                json!({"type": "record", "name": "cdc.model.Duration", "fields": [
                    {"name": "months", "type": "int"}, {"name": "days", "type": "int"},
                    {"name": "nanoseconds", "type": "long"}]})
            }),
            CqlType::List { element, .. }
            | CqlType::Set { element, .. }
            | CqlType::Vector { element, .. } => {
                json!({"type": "array", "items": self.slot(element, false)})
            }
            CqlType::Map { key, value, .. } => {
                let name = self.local("Entry");
                let k = self.slot(key, false);
                let v = self.slot(value, false);
                json!({"type": "array", "items": {"type": "record", "name": name, "fields": [
                    {"name": "key", "type": k}, {"name": "value", "type": v}]}})
            }
            CqlType::Tuple { elements } => {
                let name = self.local("Tuple");
                let fields: Vec<Json> = elements
                    .iter()
                    .enumerate()
                    .map(|(i, e)| json!({"name": format!("_{i}"), "type": self.slot(e, true)}))
                    .collect();
                json!({"type": "record", "name": name, "fields": fields})
            }
            CqlType::Udt { name, fields, .. } => {
                let record = self.local(&format!("Udt_{}", field_names(std::iter::once(name.as_str()))[0]));
                let names = field_names(fields.iter().map(|(n, _)| n.as_str()));
                let fields: Vec<Json> = fields
                    .iter()
                    .zip(names)
                    .map(|((cql, t), n)| json!({"name": n, "type": self.slot(t, true), "cql_name": cql}))
                    .collect();
                json!({"type": "record", "name": record, "doc": format!("UDT {name}"), "fields": fields})
            }
        }
    }

    fn cell(&mut self, column: &ColumnSchema, field: &str) -> Json {
        let ty = &column.cql_type;
        let record = self.local(&format!("{field}_Cell"));
        let ttl = self.ttl();
        let mut members = Vec::new();
        for kind in change_kinds(ty) {
            members.push(match kind {
                ChangeKind::Tombstone => self.shared("cdc.model.Tombstone", |_| {
                    json!({"type": "record", "name": "cdc.model.Tombstone", "fields": []})
                }),
                ChangeKind::Set => {
                    let name = self.local("Set");
                    json!({"type": "record", "name": name, "fields": [
                        {"name": "value", "type": self.slot(ty, false)}]})
                }
                ChangeKind::Counter => self.shared("cdc.model.CounterShards", |_| {
                    json!({"type": "record", "name": "cdc.model.CounterShards", "fields": [
                        {"name": "shards", "type": {"type": "array", "items": {
                            "type": "record", "name": "cdc.model.CounterShard", "fields": [
                                {"name": "counter_id", "type": {"type": "string", "logicalType": "uuid"}},
                                {"name": "clock", "type": "long"},
                                {"name": "count", "type": "long"},
                                {"name": "kind", "type": {"type": "enum", "name": "cdc.model.CounterShardKind",
                                    "symbols": ["GLOBAL", "LOCAL", "REMOTE"]}}]}}}]})
                }),
                ChangeKind::Complex => self.complex(ty),
            });
        }
        json!({"type": "record", "name": record, "fields": [
            {"name": "writetime_micros", "type": "long"},
            {"name": "ttl", "type": ttl},
            {"name": "change", "type": members}]})
    }

    fn complex(&mut self, ty: &CqlType) -> Json {
        let name = self.local("Complex");
        let deletion = self.shared("cdc.model.ComplexDeletion", |_| {
            json!({"type": "record", "name": "cdc.model.ComplexDeletion", "fields": [
                {"name": "marked_for_delete_at_micros", "type": "long"},
                {"name": "local_deletion_time_secs", "type": "long"}]})
        });
        let element = self.local("Element");
        let (path, value) = match ty {
            CqlType::List { element, .. } => (
                json!({"type": "string", "logicalType": "uuid"}),
                self.slot(element, true),
            ),
            CqlType::Set { element, .. } => {
                let p = self.slot(element, false);
                (p, json!(["null", self.empty()]))
            }
            CqlType::Map { key, value, .. } => {
                let p = self.slot(key, false);
                (p, self.slot(value, true))
            }
            CqlType::Udt { fields, .. } => {
                let record = self.local("FieldValue");
                let names = field_names(fields.iter().map(|(n, _)| n.as_str()));
                let fields: Vec<Json> = fields
                    .iter()
                    .zip(names)
                    .map(|((_, t), n)| json!({"name": n, "type": self.slot(t, true)}))
                    .collect();
                (
                    json!("string"),
                    json!(["null", {"type": "record", "name": record, "fields": fields}]),
                )
            }
            _ => (json!("bytes"), json!(["null", "bytes"])),
        };
        let ttl = self.ttl();
        json!({"type": "record", "name": name, "fields": [
            {"name": "deletion", "type": ["null", deletion]},
            {"name": "elements", "type": {"type": "array", "items": {"type": "record", "name": element, "fields": [
                {"name": "path", "type": path},
                {"name": "value", "type": value},
                {"name": "writetime_micros", "type": "long"},
                {"name": "ttl", "type": ttl}]}}}]})
    }
}

impl AvroTableSchema {
    /// Derives the Avro schema of `table` (every live column; dropped columns are not written).
    pub fn derive(table: &TableSchema) -> Result<AvroTableSchema, Error> {
        let layout = layout(table);
        let ns_parts = field_names([table.keyspace.as_str(), table.table.as_str()].into_iter());
        let namespace = format!("cdc.{}.{}", ns_parts[0], ns_parts[1]);
        let mut b = SchemaBuilder {
            namespace: namespace.clone(),
            counter: 0,
            defined: HashSet::new(),
        };
        let key_fields: Vec<Json> = layout
            .partition_key
            .iter()
            .map(|(i, n)| {
                let c = &table.columns[*i];
                json!({"name": n, "type": b.slot(&c.cql_type, false), "cql_name": c.name,
                       "doc": c.cql_type.to_string()})
            })
            .collect();
        let clustering_fields: Vec<Json> = layout
            .clustering
            .iter()
            .map(|(i, n)| {
                let c = &table.columns[*i];
                json!({"name": n, "type": b.slot(&c.cql_type, true), "cql_name": c.name,
                       "doc": c.cql_type.to_string()})
            })
            .collect();
        let clustering_name = format!("{namespace}.Clustering");
        let liveness_ttl = b.ttl();
        let cell_fields: Vec<Json> = layout
            .cells
            .iter()
            .map(|(i, n)| {
                let c = &table.columns[*i];
                json!({"name": n, "type": ["null", b.cell(c, n)], "default": null,
                       "cql_name": c.name, "doc": c.cql_type.to_string()})
            })
            .collect();
        let table_json = serde_json::to_value(table).map_err(|source| Error::SerdeJson {
            context: "embedding the table schema".into(),
            source,
        })?;
        let root = json!({
            "type": "record",
            "name": format!("cdc.{}.{}", ns_parts[0], ns_parts[1]),
            "doc": format!("Change events of {}.{} (schema version {})", table.keyspace, table.table, table.version),
            TABLE_SCHEMA_ATTRIBUTE: table_json,
            "fields": [
                {"name": "op", "type": {"type": "enum", "name": "cdc.model.Operation", "symbols": ["INSERT", "UPDATE", "DELETE"]}},
                {"name": "captured_at_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {"name": "correlation_id", "type": "string"},
                {"name": "source", "type": {"type": "record", "name": "cdc.model.SourceInfo", "fields": [
                    {"name": "cluster", "type": "string"},
                    {"name": "host_id", "type": {"type": "string", "logicalType": "uuid"}},
                    {"name": "keyspace", "type": "string"},
                    {"name": "table", "type": "string"},
                    {"name": "table_id", "type": {"type": "string", "logicalType": "uuid"}},
                    {"name": "schema_version", "type": "long"},
                    {"name": "segment_id", "type": "long"},
                    {"name": "segment_position", "type": "long"},
                    {"name": "index", "type": "long"}]}},
                {"name": "is_static", "type": "boolean"},
                {"name": "key", "type": {"type": "record", "name": format!("{namespace}.Key"), "fields": key_fields}},
                {"name": "clustering", "type": {"type": "record", "name": clustering_name, "fields": clustering_fields}},
                {"name": "liveness", "type": ["null", {"type": "record", "name": "cdc.model.Liveness", "fields": [
                    {"name": "writetime_micros", "type": "long"},
                    {"name": "ttl", "type": liveness_ttl}]}], "default": null},
                {"name": "deletion", "type": ["null", {"type": "record", "name": format!("{namespace}.Deletion"), "fields": [
                    {"name": "scope", "type": {"type": "enum", "name": "cdc.model.DeletionScope", "symbols": ["ROW", "PARTITION", "RANGE"]}},
                    {"name": "marked_for_delete_at_micros", "type": "long"},
                    {"name": "local_deletion_time_secs", "type": "long"},
                    {"name": "range_start", "type": ["null", {"type": "record", "name": format!("{namespace}.Bound"), "fields": [
                        {"name": "inclusive", "type": "boolean"},
                        {"name": "prefix", "type": clustering_name}]}]},
                    {"name": "range_end", "type": ["null", format!("{namespace}.Bound")]}]}], "default": null},
                {"name": "cells", "type": {"type": "record", "name": format!("{namespace}.Cells"), "fields": cell_fields}}
            ]
        });
        let json = root.to_string();
        let schema = Schema::parse_str(&json)
            .map_err(|e| Error::avro(format!("schema of {}.{}", table.keyspace, table.table), e))?;
        Ok(AvroTableSchema {
            table: table.clone(),
            json,
            schema,
            layout,
        })
    }

    /// Rebuilds from a schema fetched from the registry (reads the embedded table schema).
    pub fn from_schema_json(json: &str) -> Result<AvroTableSchema, Error> {
        let schema = Schema::parse_str(json).map_err(|e| Error::avro("registry schema", e))?;
        let table_json = schema
            .custom_attributes()
            .and_then(|a| a.get(TABLE_SCHEMA_ATTRIBUTE))
            .ok_or_else(|| {
                avro_err(
                    "$",
                    format!("schema has no {TABLE_SCHEMA_ATTRIBUTE} attribute"),
                )
            })?;
        let table: TableSchema =
            serde_json::from_value(table_json.clone()).map_err(|source| Error::SerdeJson {
                context: "reading the embedded table schema".into(),
                source,
            })?;
        AvroTableSchema::derive(&table)
    }

    /// The parsed Avro schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The schema text to register.
    pub fn schema_json(&self) -> &str {
        &self.json
    }

    /// The table schema it was derived from.
    pub fn table(&self) -> &TableSchema {
        &self.table
    }

    /// The Avro binary body of `event` (no framing).
    pub fn encode(&self, event: &ChangeEvent) -> Result<Vec<u8>, Error> {
        let value = self.event_to_avro(event)?;
        let writer = GenericDatumWriter::builder(&self.schema)
            .build()
            .map_err(|e| Error::avro("writer", e))?;
        writer
            .write_value_to_vec(value)
            .map_err(|e| Error::avro(format!("encoding {}", event.correlation_id), e))
    }

    /// Decodes an Avro binary body written with this schema.
    pub fn decode(&self, body: &[u8]) -> Result<ChangeEvent, Error> {
        let reader = GenericDatumReader::builder(&self.schema)
            .build()
            .map_err(|e| Error::avro("reader", e))?;
        let mut cursor = body;
        let value = reader
            .read_value(&mut cursor)
            .map_err(|e| Error::avro("decoding a change event", e))?;
        if !cursor.is_empty() {
            return Err(avro_err("$", format!("{} trailing bytes", cursor.len())));
        }
        self.event_from_avro(value)
    }

    fn column_index(&self, name: &str) -> Result<usize, Error> {
        self.table
            .columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| Error::UnknownColumn {
                keyspace: self.table.keyspace.clone(),
                table: self.table.table.clone(),
                column: name.to_owned(),
            })
    }

    fn keys_record(
        &self,
        fields: &[(usize, String)],
        values: &[KeyColumn],
        nullable: bool,
    ) -> Result<Avro, Error> {
        for k in values {
            if !fields
                .iter()
                .any(|(i, _)| self.table.columns[*i].name == k.name)
            {
                self.column_index(&k.name)?;
                return Err(avro_err(&k.name, "not a key column of this kind"));
            }
        }
        let mut out = Vec::new();
        for (i, n) in fields {
            let c = &self.table.columns[*i];
            let v = values.iter().find(|k| k.name == c.name).map(|k| &k.value);
            if v.is_none() && !nullable {
                return Err(avro_err(&c.name, "missing partition-key column"));
            }
            out.push((n.clone(), slot_to_avro(&c.cql_type, v, nullable)?));
        }
        Ok(Avro::Record(out))
    }

    fn event_to_avro(&self, e: &ChangeEvent) -> Result<Avro, Error> {
        let s = &e.source;
        let (op_i, op_s) = match e.op {
            Operation::Insert => (0, "INSERT"),
            Operation::Update => (1, "UPDATE"),
            Operation::Delete => (2, "DELETE"),
        };
        let source = Avro::Record(vec![
            ("cluster".into(), Avro::String(s.cluster.clone())),
            ("host_id".into(), Avro::Uuid(s.host_id)),
            ("keyspace".into(), Avro::String(s.keyspace.clone())),
            ("table".into(), Avro::String(s.table.clone())),
            ("table_id".into(), Avro::Uuid(s.table_id)),
            (
                "schema_version".into(),
                Avro::Long(i64::from(s.schema_version)),
            ),
            ("segment_id".into(), Avro::Long(s.segment_id)),
            (
                "segment_position".into(),
                Avro::Long(i64::from(s.segment_position)),
            ),
            ("index".into(), Avro::Long(i64::from(s.index))),
        ]);
        let liveness = match &e.liveness {
            None => Avro::Union(0, Box::new(Avro::Null)),
            Some(l) => Avro::Union(
                1,
                Box::new(Avro::Record(vec![
                    ("writetime_micros".into(), Avro::Long(l.writetime_micros)),
                    ("ttl".into(), ttl_to_avro(l.ttl)),
                ])),
            ),
        };
        let deletion = match &e.deletion {
            None => Avro::Union(0, Box::new(Avro::Null)),
            Some(d) => {
                let none = || Avro::Union(0, Box::new(Avro::Null));
                let bound = |b: &ClusteringBound| -> Result<Avro, Error> {
                    Ok(Avro::Union(
                        1,
                        Box::new(Avro::Record(vec![
                            ("inclusive".into(), Avro::Boolean(b.inclusive)),
                            (
                                "prefix".into(),
                                self.keys_record(&self.layout.clustering, &b.prefix, true)?,
                            ),
                        ])),
                    ))
                };
                let (scope, start, end) = match &d.scope {
                    DeletionScope::Row => (Avro::Enum(0, "ROW".into()), none(), none()),
                    DeletionScope::Partition => (Avro::Enum(1, "PARTITION".into()), none(), none()),
                    DeletionScope::Range { start, end } => {
                        (Avro::Enum(2, "RANGE".into()), bound(start)?, bound(end)?)
                    }
                };
                Avro::Union(
                    1,
                    Box::new(Avro::Record(vec![
                        ("scope".into(), scope),
                        (
                            "marked_for_delete_at_micros".into(),
                            Avro::Long(d.marked_for_delete_at_micros),
                        ),
                        (
                            "local_deletion_time_secs".into(),
                            Avro::Long(d.local_deletion_time_secs),
                        ),
                        ("range_start".into(), start),
                        ("range_end".into(), end),
                    ])),
                )
            }
        };
        for c in &e.cells {
            let i = self.column_index(&c.column)?;
            if !self.layout.cells.iter().any(|(ci, _)| *ci == i) {
                return Err(avro_err(&c.column, "a key column cannot be a cell"));
            }
        }
        let mut cells = Vec::new();
        for (i, n) in &self.layout.cells {
            let col = &self.table.columns[*i];
            let v = match e.cells.iter().find(|c| c.column == col.name) {
                None => Avro::Union(0, Box::new(Avro::Null)),
                Some(cell) => Avro::Union(1, Box::new(cell_to_avro(&col.cql_type, cell)?)),
            };
            cells.push((n.clone(), v));
        }
        Ok(Avro::Record(vec![
            ("op".into(), Avro::Enum(op_i, op_s.into())),
            (
                "captured_at_ms".into(),
                Avro::TimestampMillis(e.captured_at_ms),
            ),
            (
                "correlation_id".into(),
                Avro::String(e.correlation_id.clone()),
            ),
            ("source".into(), source),
            ("is_static".into(), Avro::Boolean(e.is_static)),
            (
                "key".into(),
                self.keys_record(&self.layout.partition_key, &e.partition_key, false)?,
            ),
            (
                "clustering".into(),
                self.keys_record(&self.layout.clustering, &e.clustering_key, true)?,
            ),
            ("liveness".into(), liveness),
            ("deletion".into(), deletion),
            ("cells".into(), Avro::Record(cells)),
        ]))
    }

    fn keys_from(
        &self,
        fields: &[(usize, String)],
        value: Avro,
        nullable: bool,
        path: &str,
    ) -> Result<Vec<KeyColumn>, Error> {
        let mut rec = record(value, path)?;
        let mut out = Vec::new();
        let mut ended = false;
        for (i, n) in fields {
            let c = &self.table.columns[*i];
            let p = format!("{path}.{n}");
            let v = slot_from_avro(&c.cql_type, field(&mut rec, n, &p)?, nullable, &p)?;
            match v {
                Some(_) if ended => return Err(avro_err(&p, "gap in a clustering prefix")),
                Some(value) => out.push(KeyColumn {
                    name: c.name.clone(),
                    value,
                }),
                None => ended = true,
            }
        }
        Ok(out)
    }

    fn event_from_avro(&self, value: Avro) -> Result<ChangeEvent, Error> {
        let mut root = record(value, "$")?;
        let op = match field(&mut root, "op", "$.op")? {
            Avro::Enum(0, _) => Operation::Insert,
            Avro::Enum(1, _) => Operation::Update,
            Avro::Enum(2, _) => Operation::Delete,
            _ => return Err(avro_err("$.op", "expected INSERT, UPDATE or DELETE")),
        };
        let mut src = record(field(&mut root, "source", "$")?, "$.source")?;
        let source = SourceInfo {
            cluster: string(field(&mut src, "cluster", "$.source")?, "$.source.cluster")?,
            host_id: uuid(field(&mut src, "host_id", "$.source")?, "$.source.host_id")?,
            keyspace: string(
                field(&mut src, "keyspace", "$.source")?,
                "$.source.keyspace",
            )?,
            table: string(field(&mut src, "table", "$.source")?, "$.source.table")?,
            table_id: uuid(
                field(&mut src, "table_id", "$.source")?,
                "$.source.table_id",
            )?,
            schema_version: narrow(
                long(field(&mut src, "schema_version", "$.source")?, "$.source")?,
                "$.source.schema_version",
            )?,
            segment_id: long(
                field(&mut src, "segment_id", "$.source")?,
                "$.source.segment_id",
            )?,
            segment_position: narrow(
                long(field(&mut src, "segment_position", "$.source")?, "$.source")?,
                "$.source.segment_position",
            )?,
            index: narrow(
                long(field(&mut src, "index", "$.source")?, "$.source")?,
                "$.source.index",
            )?,
        };
        let partition_key = self.keys_from(
            &self.layout.partition_key,
            field(&mut root, "key", "$")?,
            false,
            "$.key",
        )?;
        let clustering_key = self.keys_from(
            &self.layout.clustering,
            field(&mut root, "clustering", "$")?,
            true,
            "$.clustering",
        )?;
        let is_static = match field(&mut root, "is_static", "$")? {
            Avro::Boolean(b) => b,
            _ => return Err(avro_err("$.is_static", "expected a boolean")),
        };
        let liveness = match union(field(&mut root, "liveness", "$")?, "$.liveness")? {
            (0, _) => None,
            (_, v) => {
                let mut l = record(v, "$.liveness")?;
                Some(Liveness {
                    writetime_micros: long(
                        field(&mut l, "writetime_micros", "$.liveness")?,
                        "$.liveness",
                    )?,
                    ttl: ttl_from_avro(field(&mut l, "ttl", "$.liveness")?, "$.liveness.ttl")?,
                })
            }
        };
        let deletion = match union(field(&mut root, "deletion", "$")?, "$.deletion")? {
            (0, _) => None,
            (_, v) => {
                let p = "$.deletion";
                let mut d = record(v, p)?;
                let start_v = field(&mut d, "range_start", p)?;
                let end_v = field(&mut d, "range_end", p)?;
                let bound = |name: &str, v: Avro| -> Result<ClusteringBound, Error> {
                    let bp = format!("{p}.{name}");
                    match union(v, &bp)? {
                        (0, _) => Err(avro_err(&bp, "a range deletion needs both bounds")),
                        (_, b) => {
                            let mut b = record(b, &bp)?;
                            let inclusive = match field(&mut b, "inclusive", &bp)? {
                                Avro::Boolean(x) => x,
                                _ => return Err(avro_err(&bp, "inclusive must be a boolean")),
                            };
                            let prefix = self.keys_from(
                                &self.layout.clustering,
                                field(&mut b, "prefix", &bp)?,
                                true,
                                &format!("{bp}.prefix"),
                            )?;
                            Ok(ClusteringBound { prefix, inclusive })
                        }
                    }
                };
                let scope = match field(&mut d, "scope", p)? {
                    Avro::Enum(0, _) => DeletionScope::Row,
                    Avro::Enum(1, _) => DeletionScope::Partition,
                    Avro::Enum(2, _) => DeletionScope::Range {
                        start: bound("range_start", start_v)?,
                        end: bound("range_end", end_v)?,
                    },
                    _ => return Err(avro_err(p, "unknown scope")),
                };
                Some(Deletion {
                    scope,
                    marked_for_delete_at_micros: long(
                        field(&mut d, "marked_for_delete_at_micros", p)?,
                        p,
                    )?,
                    local_deletion_time_secs: long(
                        field(&mut d, "local_deletion_time_secs", p)?,
                        p,
                    )?,
                })
            }
        };
        let mut cells_rec = record(field(&mut root, "cells", "$")?, "$.cells")?;
        let mut cells = Vec::new();
        for (i, n) in &self.layout.cells {
            let col = &self.table.columns[*i];
            let p = format!("$.cells.{n}");
            match union(field(&mut cells_rec, n, &p)?, &p)? {
                (0, _) => {}
                (_, v) => cells.push(cell_from_avro(col, v, &p)?),
            }
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
            correlation_id: string(field(&mut root, "correlation_id", "$")?, "$.correlation_id")?,
            captured_at_ms: long(field(&mut root, "captured_at_ms", "$")?, "$.captured_at_ms")?,
        })
    }
}

fn layout(table: &TableSchema) -> Layout {
    let index = |c: &ColumnSchema| {
        table
            .columns
            .iter()
            .position(|x| std::ptr::eq(x, c))
            .unwrap_or_default()
    };
    let pk: Vec<usize> = table.partition_key().into_iter().map(index).collect();
    let ck: Vec<usize> = table.clustering_key().into_iter().map(index).collect();
    let cells: Vec<usize> = table
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c.kind, ColumnKind::Static | ColumnKind::Regular))
        .map(|(i, _)| i)
        .collect();
    let named = |idx: Vec<usize>| {
        let names = field_names(idx.iter().map(|i| table.columns[*i].name.as_str()));
        idx.into_iter().zip(names).collect()
    };
    Layout {
        partition_key: named(pk),
        clustering: named(ck),
        cells: named(cells),
    }
}

fn record(value: Avro, path: &str) -> Result<Vec<(String, Avro)>, Error> {
    match value {
        Avro::Record(fields) => Ok(fields),
        _ => Err(avro_err(path, "expected a record")),
    }
}

fn field(rec: &mut Vec<(String, Avro)>, name: &str, path: &str) -> Result<Avro, Error> {
    crate::dead_letter::take_field(rec, name)
        .ok_or_else(|| avro_err(path, format!("missing field {name}")))
}

fn union(value: Avro, path: &str) -> Result<(u32, Avro), Error> {
    match value {
        Avro::Union(i, v) => Ok((i, *v)),
        _ => Err(avro_err(path, "expected a union")),
    }
}

fn string(value: Avro, path: &str) -> Result<String, Error> {
    match value {
        Avro::String(s) => Ok(s),
        _ => Err(avro_err(path, "expected a string")),
    }
}

fn long(value: Avro, path: &str) -> Result<i64, Error> {
    match value {
        Avro::Long(n) | Avro::TimestampMillis(n) => Ok(n),
        _ => Err(avro_err(path, "expected a long")),
    }
}

fn int(value: Avro, path: &str) -> Result<i32, Error> {
    match value {
        Avro::Int(n) | Avro::Date(n) => Ok(n),
        _ => Err(avro_err(path, "expected an int")),
    }
}

fn narrow<T: TryFrom<i64>>(n: i64, path: &str) -> Result<T, Error> {
    T::try_from(n).map_err(|_| avro_err(path, "out of range"))
}

fn uuid(value: Avro, path: &str) -> Result<Uuid, Error> {
    match value {
        Avro::Uuid(u) => Ok(u),
        Avro::String(s) => Uuid::parse_str(&s).map_err(|_| avro_err(path, "not a UUID")),
        _ => Err(avro_err(path, "expected a uuid")),
    }
}

fn bytes(value: Avro, path: &str) -> Result<Vec<u8>, Error> {
    match value {
        Avro::Bytes(b) => Ok(b),
        _ => Err(avro_err(path, "expected bytes")),
    }
}

fn ttl_to_avro(ttl: Option<Ttl>) -> Avro {
    match ttl {
        None => Avro::Union(0, Box::new(Avro::Null)),
        Some(t) => Avro::Union(
            1,
            Box::new(Avro::Record(vec![
                ("ttl_secs".into(), Avro::Long(i64::from(t.ttl_secs))),
                ("expires_at_secs".into(), Avro::Long(t.expires_at_secs)),
            ])),
        ),
    }
}

fn ttl_from_avro(value: Avro, path: &str) -> Result<Option<Ttl>, Error> {
    match union(value, path)? {
        (0, _) => Ok(None),
        (_, v) => {
            let mut r = record(v, path)?;
            Ok(Some(Ttl {
                ttl_secs: narrow(long(field(&mut r, "ttl_secs", path)?, path)?, path)?,
                expires_at_secs: long(field(&mut r, "expires_at_secs", path)?, path)?,
            }))
        }
    }
}

fn slot_to_avro(ty: &CqlType, value: Option<&CqlValue>, nullable: bool) -> Result<Avro, Error> {
    let base = u32::from(nullable);
    match value {
        None if nullable => Ok(Avro::Union(0, Box::new(Avro::Null))),
        None => Err(avro_err(&ty.to_string(), "null where the type forbids it")),
        Some(CqlValue::Empty) => Ok(Avro::Union(base + 1, Box::new(Avro::Record(Vec::new())))),
        Some(v) => Ok(Avro::Union(base, Box::new(value_to_avro(ty, v)?))),
    }
}

fn slot_from_avro(
    ty: &CqlType,
    value: Avro,
    nullable: bool,
    path: &str,
) -> Result<Option<CqlValue>, Error> {
    let (i, v) = union(value, path)?;
    match (nullable, i) {
        (true, 0) => Ok(None),
        (true, 1) | (false, 0) => value_from_avro(ty, v, path).map(Some),
        (true, 2) | (false, 1) => Ok(Some(CqlValue::Empty)),
        _ => Err(avro_err(path, "unexpected union branch")),
    }
}

fn value_to_avro(ty: &CqlType, value: &CqlValue) -> Result<Avro, Error> {
    use CqlValue as V;
    Ok(match (ty, value) {
        (CqlType::Ascii, V::Ascii(s)) | (CqlType::Text, V::Text(s)) => Avro::String(s.clone()),
        (CqlType::Inet, V::Inet(ip)) => Avro::String(ip.to_string()),
        (CqlType::Bigint, V::Bigint(n))
        | (CqlType::Counter, V::Counter(n))
        | (CqlType::Time, V::Time(n)) => Avro::Long(*n),
        (CqlType::Timestamp, V::Timestamp(n)) => Avro::TimestampMillis(*n),
        (CqlType::Blob, V::Blob(b)) | (CqlType::Custom { .. }, V::Custom(b)) => {
            Avro::Bytes(b.clone())
        }
        (CqlType::Varint, V::Varint(n)) => Avro::Bytes(n.to_signed_bytes_be()),
        (CqlType::Boolean, V::Boolean(b)) => Avro::Boolean(*b),
        (CqlType::Date, V::Date(d)) => Avro::Date(*d),
        (CqlType::Int, V::Int(n)) => Avro::Int(*n),
        (CqlType::Smallint, V::Smallint(n)) => Avro::Int(i32::from(*n)),
        (CqlType::Tinyint, V::Tinyint(n)) => Avro::Int(i32::from(*n)),
        (CqlType::Float, V::Float(x)) => Avro::Float(*x),
        (CqlType::Double, V::Double(x)) => Avro::Double(*x),
        (CqlType::Uuid, V::Uuid(u)) | (CqlType::Timeuuid, V::Timeuuid(u)) => Avro::Uuid(*u),
        (CqlType::Decimal, V::Decimal { unscaled, scale }) => Avro::Record(vec![
            (
                "unscaled".into(),
                Avro::Bytes(unscaled.to_signed_bytes_be()),
            ),
            ("scale".into(), Avro::Int(*scale)),
        ]),
        (
            CqlType::Duration,
            V::Duration {
                months,
                days,
                nanoseconds,
            },
        ) => Avro::Record(vec![
            ("months".into(), Avro::Int(*months)),
            ("days".into(), Avro::Int(*days)),
            ("nanoseconds".into(), Avro::Long(*nanoseconds)),
        ]),
        (CqlType::List { element, .. }, V::List(items))
        | (CqlType::Set { element, .. }, V::Set(items)) => Avro::Array(
            items
                .iter()
                .map(|i| slot_to_avro(element, Some(i), false))
                .collect::<Result<_, _>>()?,
        ),
        (CqlType::Vector { element, dimension }, V::Vector(items)) => {
            if items.len() != *dimension as usize {
                return Err(mismatch(ty, value));
            }
            Avro::Array(
                items
                    .iter()
                    .map(|i| slot_to_avro(element, Some(i), false))
                    .collect::<Result<_, _>>()?,
            )
        }
        (CqlType::Map { key, value: vt, .. }, V::Map(entries)) => Avro::Array(
            entries
                .iter()
                .map(|(k, v)| {
                    Ok(Avro::Record(vec![
                        ("key".into(), slot_to_avro(key, Some(k), false)?),
                        ("value".into(), slot_to_avro(vt, Some(v), false)?),
                    ]))
                })
                .collect::<Result<_, Error>>()?,
        ),
        (CqlType::Tuple { elements }, V::Tuple(items)) => {
            if items.len() > elements.len() {
                return Err(mismatch(ty, value));
            }
            Avro::Record(
                elements
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let v = items.get(i).and_then(Option::as_ref);
                        Ok((format!("_{i}"), slot_to_avro(t, v, true)?))
                    })
                    .collect::<Result<_, Error>>()?,
            )
        }
        (CqlType::Udt { fields, .. }, V::Udt(items)) => {
            if items.len() > fields.len() || items.iter().zip(fields).any(|((a, _), (b, _))| a != b)
            {
                return Err(mismatch(ty, value));
            }
            let names = field_names(fields.iter().map(|(n, _)| n.as_str()));
            Avro::Record(
                fields
                    .iter()
                    .zip(names)
                    .enumerate()
                    .map(|(i, ((_, t), n))| {
                        let v = items.get(i).and_then(|(_, v)| v.as_ref());
                        Ok((n, slot_to_avro(t, v, true)?))
                    })
                    .collect::<Result<_, Error>>()?,
            )
        }
        _ => return Err(mismatch(ty, value)),
    })
}

fn value_from_avro(ty: &CqlType, value: Avro, path: &str) -> Result<CqlValue, Error> {
    let items = |element: &CqlType, value: Avro| -> Result<Vec<CqlValue>, Error> {
        match value {
            Avro::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let p = format!("{path}[{i}]");
                    slot_from_avro(element, v, false, &p)?
                        .ok_or_else(|| avro_err(&p, "null element"))
                })
                .collect(),
            _ => Err(avro_err(path, "expected an array")),
        }
    };
    Ok(match ty {
        CqlType::Ascii => {
            let s = string(value, path)?;
            if !s.is_ascii() {
                return Err(avro_err(path, "non-ASCII ascii value"));
            }
            CqlValue::Ascii(s)
        }
        CqlType::Text => CqlValue::Text(string(value, path)?),
        CqlType::Inet => CqlValue::Inet(
            IpAddr::from_str(&string(value, path)?)
                .map_err(|_| avro_err(path, "not an IP address"))?,
        ),
        CqlType::Bigint => CqlValue::Bigint(long(value, path)?),
        CqlType::Counter => CqlValue::Counter(long(value, path)?),
        CqlType::Time => CqlValue::Time(long(value, path)?),
        CqlType::Timestamp => CqlValue::Timestamp(long(value, path)?),
        CqlType::Blob => CqlValue::Blob(bytes(value, path)?),
        CqlType::Custom { .. } => CqlValue::Custom(bytes(value, path)?),
        CqlType::Varint => {
            let b = bytes(value, path)?;
            if b.is_empty() {
                return Err(avro_err(path, "empty varint bytes"));
            }
            CqlValue::Varint(BigInt::from_signed_bytes_be(&b))
        }
        CqlType::Boolean => match value {
            Avro::Boolean(b) => CqlValue::Boolean(b),
            _ => return Err(avro_err(path, "expected a boolean")),
        },
        CqlType::Date => CqlValue::Date(int(value, path)?),
        CqlType::Int => CqlValue::Int(int(value, path)?),
        CqlType::Smallint => CqlValue::Smallint(narrow(i64::from(int(value, path)?), path)?),
        CqlType::Tinyint => CqlValue::Tinyint(narrow(i64::from(int(value, path)?), path)?),
        CqlType::Float => match value {
            Avro::Float(x) => CqlValue::Float(x),
            _ => return Err(avro_err(path, "expected a float")),
        },
        CqlType::Double => match value {
            Avro::Double(x) => CqlValue::Double(x),
            _ => return Err(avro_err(path, "expected a double")),
        },
        CqlType::Uuid => CqlValue::Uuid(uuid(value, path)?),
        CqlType::Timeuuid => CqlValue::Timeuuid(uuid(value, path)?),
        CqlType::Decimal => {
            let mut r = record(value, path)?;
            let unscaled = bytes(field(&mut r, "unscaled", path)?, path)?;
            if unscaled.is_empty() {
                return Err(avro_err(path, "empty decimal unscaled bytes"));
            }
            CqlValue::Decimal {
                unscaled: BigInt::from_signed_bytes_be(&unscaled),
                scale: int(field(&mut r, "scale", path)?, path)?,
            }
        }
        CqlType::Duration => {
            let mut r = record(value, path)?;
            CqlValue::Duration {
                months: int(field(&mut r, "months", path)?, path)?,
                days: int(field(&mut r, "days", path)?, path)?,
                nanoseconds: long(field(&mut r, "nanoseconds", path)?, path)?,
            }
        }
        CqlType::List { element, .. } => CqlValue::List(items(element, value)?),
        CqlType::Set { element, .. } => CqlValue::Set(items(element, value)?),
        CqlType::Vector { element, .. } => CqlValue::Vector(items(element, value)?),
        CqlType::Map { key, value: vt, .. } => match value {
            Avro::Array(entries) => CqlValue::Map(
                entries
                    .into_iter()
                    .enumerate()
                    .map(|(i, e)| {
                        let p = format!("{path}[{i}]");
                        let mut r = record(e, &p)?;
                        let k = slot_from_avro(key, field(&mut r, "key", &p)?, false, &p)?;
                        let v = slot_from_avro(vt, field(&mut r, "value", &p)?, false, &p)?;
                        match (k, v) {
                            (Some(k), Some(v)) => Ok((k, v)),
                            _ => Err(avro_err(&p, "null map entry")),
                        }
                    })
                    .collect::<Result<_, Error>>()?,
            ),
            _ => return Err(avro_err(path, "expected an array")),
        },
        CqlType::Tuple { elements } => {
            let mut r = record(value, path)?;
            CqlValue::Tuple(
                elements
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let p = format!("{path}._{i}");
                        slot_from_avro(t, field(&mut r, &format!("_{i}"), &p)?, true, &p)
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
        CqlType::Udt { fields, .. } => {
            let mut r = record(value, path)?;
            let names = field_names(fields.iter().map(|(n, _)| n.as_str()));
            CqlValue::Udt(
                fields
                    .iter()
                    .zip(names)
                    .map(|((cql, t), n)| {
                        let p = format!("{path}.{n}");
                        Ok((
                            cql.clone(),
                            slot_from_avro(t, field(&mut r, &n, &p)?, true, &p)?,
                        ))
                    })
                    .collect::<Result<_, Error>>()?,
            )
        }
    })
}

fn cell_to_avro(ty: &CqlType, cell: &CellChange) -> Result<Avro, Error> {
    let kinds = change_kinds(ty);
    let kind = match &cell.change {
        CellValue::Set { .. } => ChangeKind::Set,
        CellValue::Tombstone => ChangeKind::Tombstone,
        CellValue::Complex { .. } => ChangeKind::Complex,
        CellValue::Counter { .. } => ChangeKind::Counter,
    };
    let index = kinds.iter().position(|k| *k == kind).ok_or_else(|| {
        avro_err(
            &cell.column,
            format!("a {kind:?} change does not fit column type {ty}"),
        )
    })?;
    let change = match &cell.change {
        CellValue::Tombstone => Avro::Record(Vec::new()),
        CellValue::Set { value } => Avro::Record(vec![(
            "value".into(),
            slot_to_avro(ty, Some(value), false)?,
        )]),
        CellValue::Counter { shards } => Avro::Record(vec![(
            "shards".into(),
            Avro::Array(
                shards
                    .iter()
                    .map(|s| {
                        let (i, sym) = match s.kind {
                            CounterShardKind::Global => (0, "GLOBAL"),
                            CounterShardKind::Local => (1, "LOCAL"),
                            CounterShardKind::Remote => (2, "REMOTE"),
                        };
                        Avro::Record(vec![
                            ("counter_id".into(), Avro::Uuid(s.counter_id)),
                            ("clock".into(), Avro::Long(s.clock)),
                            ("count".into(), Avro::Long(s.count)),
                            ("kind".into(), Avro::Enum(i, sym.into())),
                        ])
                    })
                    .collect(),
            ),
        )]),
        CellValue::Complex { deletion, elements } => {
            let deletion = match deletion {
                None => Avro::Union(0, Box::new(Avro::Null)),
                Some(d) => Avro::Union(
                    1,
                    Box::new(Avro::Record(vec![
                        (
                            "marked_for_delete_at_micros".into(),
                            Avro::Long(d.marked_for_delete_at_micros),
                        ),
                        (
                            "local_deletion_time_secs".into(),
                            Avro::Long(d.local_deletion_time_secs),
                        ),
                    ])),
                ),
            };
            let elements = elements
                .iter()
                .map(|e| element_to_avro(ty, e))
                .collect::<Result<_, _>>()?;
            Avro::Record(vec![
                ("deletion".into(), deletion),
                ("elements".into(), Avro::Array(elements)),
            ])
        }
    };
    Ok(Avro::Record(vec![
        ("writetime_micros".into(), Avro::Long(cell.writetime_micros)),
        ("ttl".into(), ttl_to_avro(cell.ttl)),
        ("change".into(), Avro::Union(index as u32, Box::new(change))),
    ]))
}

fn element_to_avro(ty: &CqlType, e: &ElementChange) -> Result<Avro, Error> {
    let bad = || avro_err(&ty.to_string(), "element path does not fit the column type");
    let (path, value) = match (ty, &e.path) {
        (CqlType::List { element, .. }, CellPath::ListIndex(u)) => (
            Avro::Uuid(*u),
            slot_to_avro(element, e.value.as_ref(), true)?,
        ),
        (CqlType::Set { element, .. }, CellPath::SetElement(v)) => {
            let value = match &e.value {
                None => Avro::Union(0, Box::new(Avro::Null)),
                Some(CqlValue::Empty) => Avro::Union(1, Box::new(Avro::Record(Vec::new()))),
                Some(other) => return Err(mismatch(ty, other)),
            };
            (slot_to_avro(element, Some(v), false)?, value)
        }
        (CqlType::Map { key, value: vt, .. }, CellPath::MapKey(k)) => (
            slot_to_avro(key, Some(k), false)?,
            slot_to_avro(vt, e.value.as_ref(), true)?,
        ),
        (CqlType::Udt { fields, .. }, CellPath::UdtField(name)) => {
            if !fields.iter().any(|(n, _)| n == name) {
                return Err(bad());
            }
            let value = match &e.value {
                None => Avro::Union(0, Box::new(Avro::Null)),
                Some(v) => {
                    let names = field_names(fields.iter().map(|(n, _)| n.as_str()));
                    let rec = fields
                        .iter()
                        .zip(names)
                        .map(|((cql, t), n)| {
                            let slot = if cql == name {
                                slot_to_avro(t, Some(v), true)?
                            } else {
                                Avro::Union(0, Box::new(Avro::Null))
                            };
                            Ok((n, slot))
                        })
                        .collect::<Result<_, Error>>()?;
                    Avro::Union(1, Box::new(Avro::Record(rec)))
                }
            };
            (Avro::String(name.clone()), value)
        }
        _ => return Err(bad()),
    };
    Ok(Avro::Record(vec![
        ("path".into(), path),
        ("value".into(), value),
        ("writetime_micros".into(), Avro::Long(e.writetime_micros)),
        ("ttl".into(), ttl_to_avro(e.ttl)),
    ]))
}

fn cell_from_avro(col: &ColumnSchema, value: Avro, p: &str) -> Result<CellChange, Error> {
    let ty = &col.cql_type;
    let mut r = record(value, p)?;
    let writetime_micros = long(field(&mut r, "writetime_micros", p)?, p)?;
    let ttl = ttl_from_avro(field(&mut r, "ttl", p)?, &format!("{p}.ttl"))?;
    let (index, change) = union(field(&mut r, "change", p)?, p)?;
    let kind = change_kinds(ty)
        .get(index as usize)
        .copied()
        .ok_or_else(|| avro_err(p, "unknown change branch"))?;
    let change = match kind {
        ChangeKind::Tombstone => CellValue::Tombstone,
        ChangeKind::Set => {
            let mut s = record(change, p)?;
            let vp = format!("{p}.value");
            CellValue::Set {
                value: slot_from_avro(ty, field(&mut s, "value", &vp)?, false, &vp)?
                    .ok_or_else(|| avro_err(&vp, "null value"))?,
            }
        }
        ChangeKind::Counter => {
            let mut s = record(change, p)?;
            let shards = match field(&mut s, "shards", p)? {
                Avro::Array(items) => items
                    .into_iter()
                    .map(|item| {
                        let mut sr = record(item, p)?;
                        Ok(CounterShard {
                            counter_id: uuid(field(&mut sr, "counter_id", p)?, p)?,
                            clock: long(field(&mut sr, "clock", p)?, p)?,
                            count: long(field(&mut sr, "count", p)?, p)?,
                            kind: match field(&mut sr, "kind", p)? {
                                Avro::Enum(0, _) => CounterShardKind::Global,
                                Avro::Enum(1, _) => CounterShardKind::Local,
                                Avro::Enum(2, _) => CounterShardKind::Remote,
                                _ => return Err(avro_err(p, "unknown shard kind")),
                            },
                        })
                    })
                    .collect::<Result<_, Error>>()?,
                _ => return Err(avro_err(p, "expected an array of shards")),
            };
            CellValue::Counter { shards }
        }
        ChangeKind::Complex => {
            let mut c = record(change, p)?;
            let deletion = match union(field(&mut c, "deletion", p)?, p)? {
                (0, _) => None,
                (_, d) => {
                    let mut d = record(d, p)?;
                    Some(ComplexDeletion {
                        marked_for_delete_at_micros: long(
                            field(&mut d, "marked_for_delete_at_micros", p)?,
                            p,
                        )?,
                        local_deletion_time_secs: long(
                            field(&mut d, "local_deletion_time_secs", p)?,
                            p,
                        )?,
                    })
                }
            };
            let elements = match field(&mut c, "elements", p)? {
                Avro::Array(items) => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, e)| element_from_avro(ty, e, &format!("{p}.elements[{i}]")))
                    .collect::<Result<_, _>>()?,
                _ => return Err(avro_err(p, "expected an array of elements")),
            };
            CellValue::Complex { deletion, elements }
        }
    };
    Ok(CellChange {
        column: col.name.clone(),
        writetime_micros,
        ttl,
        change,
    })
}

fn element_from_avro(ty: &CqlType, value: Avro, p: &str) -> Result<ElementChange, Error> {
    let mut r = record(value, p)?;
    let path_v = field(&mut r, "path", p)?;
    let value_v = field(&mut r, "value", p)?;
    let (path, value) = match ty {
        CqlType::List { element, .. } => (
            CellPath::ListIndex(uuid(path_v, p)?),
            slot_from_avro(element, value_v, true, p)?,
        ),
        CqlType::Set { element, .. } => {
            let v = slot_from_avro(element, path_v, false, p)?
                .ok_or_else(|| avro_err(p, "null set element"))?;
            let value = match union(value_v, p)? {
                (0, _) => None,
                (1, _) => Some(CqlValue::Empty),
                _ => return Err(avro_err(p, "unexpected union branch")),
            };
            (CellPath::SetElement(v), value)
        }
        CqlType::Map { key, value: vt, .. } => {
            let k = slot_from_avro(key, path_v, false, p)?
                .ok_or_else(|| avro_err(p, "null map key"))?;
            (CellPath::MapKey(k), slot_from_avro(vt, value_v, true, p)?)
        }
        CqlType::Udt { fields, .. } => {
            let name = string(path_v, p)?;
            let position = fields
                .iter()
                .position(|(n, _)| *n == name)
                .ok_or_else(|| avro_err(p, "unknown UDT field"))?;
            let value = match union(value_v, p)? {
                (0, _) => None,
                (_, rec) => {
                    let mut rec = record(rec, p)?;
                    let names = field_names(fields.iter().map(|(n, _)| n.as_str()));
                    let avro_name = &names[position];
                    Some(
                        slot_from_avro(
                            &fields[position].1,
                            field(&mut rec, avro_name, p)?,
                            true,
                            p,
                        )?
                        .ok_or_else(|| avro_err(p, "live UDT field element without a value"))?,
                    )
                }
            };
            (CellPath::UdtField(name), value)
        }
        _ => {
            return Err(avro_err(
                p,
                "elements on a column that is not a collection or UDT",
            ));
        }
    };
    Ok(ElementChange {
        path,
        value,
        writetime_micros: long(field(&mut r, "writetime_micros", p)?, p)?,
        ttl: ttl_from_avro(field(&mut r, "ttl", p)?, p)?,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::test_strategies::table_and_event;

    #[test]
    fn confluent_framing() -> Result<(), Error> {
        let framed = frame(0x0102_0304, b"body");
        assert_eq!(framed[..5], [0, 1, 2, 3, 4]);
        assert_eq!(unframe(&framed)?, (0x0102_0304, &b"body"[..]));
        assert!(matches!(
            unframe(&[1, 0, 0, 0, 1]),
            Err(Error::WireFormat { .. })
        ));
        assert!(matches!(unframe(&[0, 0, 0]), Err(Error::WireFormat { .. })));
        assert!(matches!(unframe(&[]), Err(Error::WireFormat { .. })));
        assert_eq!(subject_name("cdc.raw.ks.t"), "cdc.raw.ks.t-value");
        Ok(())
    }

    #[test]
    fn field_names_are_avro_safe_and_unique() {
        assert_eq!(
            field_names(["a b", "a_b", "1x", "", "ok"].into_iter()),
            vec!["a_b", "a_b_2", "_1x", "_", "ok"]
        );
    }

    proptest! {
        #[test]
        fn event_avro_round_trip_with_framing((table, event) in table_and_event(), id in any::<u32>()) {
            let schema = AvroTableSchema::derive(&table).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let message = encode_framed(&schema, id, &event).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (got_id, body) = unframe(&message).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got_id, id);
            let registry = std::collections::HashMap::from([(id, schema.clone())]);
            let back = decode_framed(&message, &registry).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&back, &event);
            let unknown = std::collections::HashMap::from([(id.wrapping_add(1), schema.clone())]);
            let unknown_id = matches!(decode_framed(&message, &unknown), Err(Error::WireFormat { .. }));
            prop_assert!(unknown_id, "an unknown schema id must be a wire-format error");
            // A consumer holding only the registry's schema text decodes the same.
            let fetched = AvroTableSchema::from_schema_json(schema.schema_json()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(fetched.table(), &table);
            let again = fetched.decode(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again, event);
        }

        #[test]
        fn decode_of_mutated_body_never_panics((table, event) in table_and_event(), flip in any::<(usize, u8)>()) {
            let schema = AvroTableSchema::derive(&table).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut body = schema.encode(&event).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let i = flip.0 % body.len();
            body[i] ^= flip.1;
            let _ = schema.decode(&body);
            let _ = schema.decode(&body[..i]);
        }
    }
}
