//! The dead letter: an event a stage gave up on, with the full failure context (ARCHITECTURE §8).
//! Serialized as JSON (serde) or as Avro with `schemas/dead_letter.avsc`.

use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::{Error, ErrorClass};

/// `schemas/dead_letter.avsc`, compiled in.
pub const DEAD_LETTER_SCHEMA_JSON: &str = include_str!("../../../schemas/dead_letter.avsc");

/// How a dead letter's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// Confluent-framed Avro (`avro_codec`).
    Avro,
    /// The JSON envelope (`json_codec`).
    Json,
    /// Bytes that could not be decoded at all.
    Raw,
}

impl PayloadFormat {
    fn symbol(self) -> &'static str {
        match self {
            PayloadFormat::Avro => "AVRO",
            PayloadFormat::Json => "JSON",
            PayloadFormat::Raw => "RAW",
        }
    }
}

/// A failed event with its context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The event bytes as read (base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub payload: Vec<u8>,
    pub payload_format: PayloadFormat,
    /// The error and its source chain; names columns and types, never values.
    pub error_message: String,
    pub error_class: ErrorClass,
    /// `capture`, `masker`, `sink-postgres`, …
    pub stage: String,
    /// The sink destination, when a sink failed.
    pub destination: Option<String>,
    pub retry_count: u32,
    pub first_failure_at_ms: i64,
    pub last_failure_at_ms: i64,
    /// Where the event was read from.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Known when the payload could be read far enough.
    pub correlation_id: Option<String>,
}

mod base64_bytes {
    use super::*;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        BASE64.decode(text).map_err(serde::de::Error::custom)
    }
}

fn field_err(field: &str, reason: &str) -> Error {
    Error::Avro {
        path: format!("DeadLetter.{field}"),
        reason: reason.into(),
    }
}

pub(crate) fn record_fields(value: Avro, record: &str) -> Result<Vec<(String, Avro)>, Error> {
    match value {
        Avro::Record(fields) => Ok(fields),
        _ => Err(Error::Avro {
            path: record.into(),
            reason: "expected a record".into(),
        }),
    }
}

pub(crate) fn take_field(fields: &mut Vec<(String, Avro)>, name: &str) -> Option<Avro> {
    let i = fields.iter().position(|(n, _)| n == name)?;
    Some(fields.swap_remove(i).1)
}

fn avro_string(v: Option<Avro>, field: &str) -> Result<String, Error> {
    match v {
        Some(Avro::String(s)) => Ok(s),
        _ => Err(field_err(field, "expected a string")),
    }
}

fn avro_long(v: Option<Avro>, field: &str) -> Result<i64, Error> {
    match v {
        Some(Avro::Long(n) | Avro::TimestampMillis(n)) => Ok(n),
        Some(Avro::Int(n)) => Ok(i64::from(n)),
        _ => Err(field_err(field, "expected a long")),
    }
}

fn avro_opt_string(v: Option<Avro>, field: &str) -> Result<Option<String>, Error> {
    match v {
        Some(Avro::Union(_, inner)) => match *inner {
            Avro::Null => Ok(None),
            Avro::String(s) => Ok(Some(s)),
            _ => Err(field_err(field, "expected null or a string")),
        },
        _ => Err(field_err(field, "expected a union")),
    }
}

fn opt_string(v: &Option<String>) -> Avro {
    match v {
        None => Avro::Union(0, Box::new(Avro::Null)),
        Some(s) => Avro::Union(1, Box::new(Avro::String(s.clone()))),
    }
}

impl DeadLetter {
    /// The parsed `dead_letter.avsc`.
    pub fn avro_schema() -> Result<Schema, Error> {
        Schema::parse_str(DEAD_LETTER_SCHEMA_JSON).map_err(|e| Error::avro("dead_letter.avsc", e))
    }

    /// JSON bytes (serde form).
    pub fn to_json(&self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(self).map_err(|source| Error::SerdeJson {
            context: "serializing a dead letter".into(),
            source,
        })
    }

    pub fn from_json(bytes: &[u8]) -> Result<DeadLetter, Error> {
        serde_json::from_slice(bytes).map_err(|source| Error::SerdeJson {
            context: "parsing a dead letter".into(),
            source,
        })
    }

    /// The Avro value for `dead_letter.avsc`.
    pub fn to_avro_value(&self) -> Avro {
        let class = match self.error_class {
            ErrorClass::Retriable => (0, "RETRIABLE"),
            ErrorClass::Poison => (1, "POISON"),
            ErrorClass::Fatal => (2, "FATAL"),
        };
        let format = match self.payload_format {
            PayloadFormat::Avro => 0,
            PayloadFormat::Json => 1,
            PayloadFormat::Raw => 2,
        };
        Avro::Record(vec![
            ("payload".into(), Avro::Bytes(self.payload.clone())),
            (
                "payload_format".into(),
                Avro::Enum(format, self.payload_format.symbol().into()),
            ),
            (
                "error_message".into(),
                Avro::String(self.error_message.clone()),
            ),
            ("error_class".into(), Avro::Enum(class.0, class.1.into())),
            ("stage".into(), Avro::String(self.stage.clone())),
            ("destination".into(), opt_string(&self.destination)),
            (
                "retry_count".into(),
                Avro::Int(i32::try_from(self.retry_count).unwrap_or(i32::MAX)),
            ),
            (
                "first_failure_at_ms".into(),
                Avro::TimestampMillis(self.first_failure_at_ms),
            ),
            (
                "last_failure_at_ms".into(),
                Avro::TimestampMillis(self.last_failure_at_ms),
            ),
            ("topic".into(), Avro::String(self.topic.clone())),
            ("partition".into(), Avro::Int(self.partition)),
            ("offset".into(), Avro::Long(self.offset)),
            ("correlation_id".into(), opt_string(&self.correlation_id)),
        ])
    }

    /// Reads a value decoded with `dead_letter.avsc`.
    pub fn from_avro_value(value: Avro) -> Result<DeadLetter, Error> {
        let mut f = record_fields(value, "DeadLetter")?;
        let payload = match take_field(&mut f, "payload") {
            Some(Avro::Bytes(b)) => b,
            _ => return Err(field_err("payload", "expected bytes")),
        };
        let payload_format = match take_field(&mut f, "payload_format") {
            Some(Avro::Enum(_, s)) if s == "AVRO" => PayloadFormat::Avro,
            Some(Avro::Enum(_, s)) if s == "JSON" => PayloadFormat::Json,
            Some(Avro::Enum(_, s)) if s == "RAW" => PayloadFormat::Raw,
            _ => return Err(field_err("payload_format", "expected AVRO, JSON or RAW")),
        };
        let error_class = match take_field(&mut f, "error_class") {
            Some(Avro::Enum(_, s)) if s == "RETRIABLE" => ErrorClass::Retriable,
            Some(Avro::Enum(_, s)) if s == "POISON" => ErrorClass::Poison,
            Some(Avro::Enum(_, s)) if s == "FATAL" => ErrorClass::Fatal,
            _ => {
                return Err(field_err(
                    "error_class",
                    "expected RETRIABLE, POISON or FATAL",
                ));
            }
        };
        let retry_count = match take_field(&mut f, "retry_count") {
            Some(Avro::Int(n)) => {
                u32::try_from(n).map_err(|_| field_err("retry_count", "negative"))?
            }
            _ => return Err(field_err("retry_count", "expected an int")),
        };
        let partition = match take_field(&mut f, "partition") {
            Some(Avro::Int(n)) => n,
            _ => return Err(field_err("partition", "expected an int")),
        };
        Ok(DeadLetter {
            payload,
            payload_format,
            error_message: avro_string(take_field(&mut f, "error_message"), "error_message")?,
            error_class,
            stage: avro_string(take_field(&mut f, "stage"), "stage")?,
            destination: avro_opt_string(take_field(&mut f, "destination"), "destination")?,
            retry_count,
            first_failure_at_ms: avro_long(
                take_field(&mut f, "first_failure_at_ms"),
                "first_failure_at_ms",
            )?,
            last_failure_at_ms: avro_long(
                take_field(&mut f, "last_failure_at_ms"),
                "last_failure_at_ms",
            )?,
            topic: avro_string(take_field(&mut f, "topic"), "topic")?,
            partition,
            offset: avro_long(take_field(&mut f, "offset"), "offset")?,
            correlation_id: avro_opt_string(
                take_field(&mut f, "correlation_id"),
                "correlation_id",
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::writer::datum::GenericDatumWriter;
    use uuid::Uuid;

    use super::*;
    use crate::CapturePosition;

    fn schema_file(name: &str) -> Result<Schema, Error> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../schemas")
            .join(name);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::InvalidField {
            field: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Schema::parse_str(&text).map_err(|e| Error::avro(name, e))
    }

    fn round_trip(schema: &Schema, value: Avro) -> Result<Avro, Error> {
        let bytes = GenericDatumWriter::builder(schema)
            .build()
            .and_then(|w| w.write_value_to_vec(value))
            .map_err(|e| Error::avro("write", e))?;
        GenericDatumReader::builder(schema)
            .build()
            .and_then(|r| r.read_value(&mut bytes.as_slice()))
            .map_err(|e| Error::avro("read", e))
    }

    fn sample() -> DeadLetter {
        DeadLetter {
            payload: vec![0, 0, 0, 0, 7, 2, 4],
            payload_format: PayloadFormat::Avro,
            error_message: "column \"email\": value does not fit varchar(10)".into(),
            error_class: ErrorClass::Poison,
            stage: "sink-postgres".into(),
            destination: Some("postgres".into()),
            retry_count: 5,
            first_failure_at_ms: 1_700_000_000_000,
            last_failure_at_ms: 1_700_000_001_000,
            topic: "cdc.masked.shop.orders".into(),
            partition: 3,
            offset: 42,
            correlation_id: Some("00000000-0000-0000-0000-000000000001:17:4096:0".into()),
        }
    }

    #[test]
    fn dead_letter_avsc_round_trips_a_value() -> Result<(), Error> {
        let schema = schema_file("dead_letter.avsc")?;
        let letter = sample();
        let back = DeadLetter::from_avro_value(round_trip(&schema, letter.to_avro_value())?)?;
        assert_eq!(back, letter);
        let bare = DeadLetter {
            destination: None,
            correlation_id: None,
            payload_format: PayloadFormat::Raw,
            error_class: ErrorClass::Retriable,
            ..letter
        };
        let back = DeadLetter::from_avro_value(round_trip(
            &DeadLetter::avro_schema()?,
            bare.to_avro_value(),
        )?)?;
        assert_eq!(back, bare);
        Ok(())
    }

    #[test]
    fn dead_letter_json_round_trip() -> Result<(), Error> {
        let letter = sample();
        let json = letter.to_json()?;
        let text = String::from_utf8_lossy(&json);
        assert!(text.contains("\"error_class\":\"poison\""), "{text}");
        assert!(text.contains("\"payload\":\"AAAAAAcCBA==\""), "{text}");
        assert_eq!(DeadLetter::from_json(&json)?, letter);
        assert!(DeadLetter::from_json(b"{}").is_err());
        Ok(())
    }

    #[test]
    fn capture_position_avsc_round_trips_a_value() -> Result<(), Error> {
        let schema = schema_file("capture_position.avsc")?;
        let pos = CapturePosition {
            host_id: Uuid::from_u128(0xfeed),
            segment_id: 1_700_000_000_123,
            position: u32::MAX,
            updated_at_ms: 1_700_000_000_000,
        };
        let back = CapturePosition::from_avro_value(round_trip(&schema, pos.to_avro_value())?)?;
        assert_eq!(back, pos);
        assert_eq!(CapturePosition::avro_schema()?, schema);
        assert_eq!(CapturePosition::from_json(&pos.to_json()?)?, pos);
        assert_eq!(pos.key(), "00000000-0000-0000-0000-00000000feed");
        let later = CapturePosition {
            position: 0,
            segment_id: pos.segment_id + 1,
            ..pos
        };
        assert!(later.is_after(&pos) && !pos.is_after(&later));
        Ok(())
    }

    #[test]
    fn change_event_envelope_avsc_round_trips_a_value() -> Result<(), Error> {
        let schema = schema_file("change_event_envelope.avsc")?;
        let null = || Avro::Union(0, Box::new(Avro::Null));
        let typed = |column: &str, cql_type: &str, value: &[u8]| {
            Avro::Record(vec![
                ("column".into(), Avro::String(column.into())),
                ("cql_type".into(), Avro::String(cql_type.into())),
                (
                    "value".into(),
                    Avro::Union(1, Box::new(Avro::Bytes(value.to_vec()))),
                ),
            ])
        };
        let value = Avro::Record(vec![
            ("op".into(), Avro::Enum(1, "UPDATE".into())),
            (
                "captured_at_ms".into(),
                Avro::TimestampMillis(1_700_000_000_000),
            ),
            ("correlation_id".into(), Avro::String("h:1:2:0".into())),
            (
                "source".into(),
                Avro::Record(vec![
                    ("cluster".into(), Avro::String("test".into())),
                    ("host_id".into(), Avro::Uuid(Uuid::from_u128(1))),
                    ("keyspace".into(), Avro::String("shop".into())),
                    ("table".into(), Avro::String("orders".into())),
                    ("table_id".into(), Avro::Uuid(Uuid::from_u128(2))),
                    ("schema_version".into(), Avro::Long(1)),
                    ("segment_id".into(), Avro::Long(17)),
                    ("segment_position".into(), Avro::Long(4096)),
                    ("index".into(), Avro::Long(0)),
                ]),
            ),
            ("is_static".into(), Avro::Boolean(false)),
            (
                "partition_key".into(),
                Avro::Array(vec![typed("id", "int", &[0, 0, 0, 1])]),
            ),
            ("clustering_key".into(), Avro::Array(vec![])),
            ("liveness".into(), null()),
            ("deletion".into(), null()),
            (
                "cells".into(),
                Avro::Array(vec![Avro::Record(vec![
                    ("column".into(), Avro::String("tags".into())),
                    ("cql_type".into(), Avro::String("set<text>".into())),
                    ("writetime_micros".into(), Avro::Long(1_700_000_000_000_000)),
                    ("ttl".into(), null()),
                    ("kind".into(), Avro::Enum(2, "COMPLEX".into())),
                    ("value".into(), null()),
                    ("complex_deletion".into(), null()),
                    (
                        "elements".into(),
                        Avro::Array(vec![Avro::Record(vec![
                            ("path".into(), Avro::Bytes(b"red".to_vec())),
                            (
                                "value".into(),
                                Avro::Union(1, Box::new(Avro::Bytes(vec![]))),
                            ),
                            ("writetime_micros".into(), Avro::Long(1_700_000_000_000_000)),
                            ("ttl".into(), null()),
                        ])]),
                    ),
                    ("counter_shards".into(), Avro::Array(vec![])),
                ])]),
            ),
        ]);
        assert_eq!(round_trip(&schema, value.clone())?, value);
        Ok(())
    }
}
