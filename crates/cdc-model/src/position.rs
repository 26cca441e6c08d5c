//! A capture node's committed commit-log position, the value of the compacted topic
//! `cdc.capture.positions` (keyed by host id). JSON (serde) or Avro (`schemas/capture_position.avsc`).

use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;
use crate::dead_letter::{record_fields, take_field};

/// `schemas/capture_position.avsc`, compiled in.
pub const CAPTURE_POSITION_SCHEMA_JSON: &str =
    include_str!("../../../schemas/capture_position.avsc");

/// Every mutation of `host_id`'s commit log before (`segment_id`, `position`) is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CapturePosition {
    pub host_id: Uuid,
    pub segment_id: i64,
    /// Byte offset in the segment.
    pub position: u32,
    pub updated_at_ms: i64,
}

fn field_err(field: &str, reason: &str) -> Error {
    Error::Avro {
        path: format!("CapturePosition.{field}"),
        reason: reason.into(),
    }
}

impl CapturePosition {
    /// The Kafka message key: the host id, so compaction keeps one position per node.
    pub fn key(&self) -> String {
        self.host_id.to_string()
    }

    /// Orders positions of one node: segment first, then offset.
    pub fn is_after(&self, other: &CapturePosition) -> bool {
        (self.segment_id, self.position) > (other.segment_id, other.position)
    }

    pub fn to_json(&self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(self).map_err(|source| Error::SerdeJson {
            context: "serializing a capture position".into(),
            source,
        })
    }

    pub fn from_json(bytes: &[u8]) -> Result<CapturePosition, Error> {
        serde_json::from_slice(bytes).map_err(|source| Error::SerdeJson {
            context: "parsing a capture position".into(),
            source,
        })
    }

    /// The parsed `capture_position.avsc`.
    pub fn avro_schema() -> Result<Schema, Error> {
        Schema::parse_str(CAPTURE_POSITION_SCHEMA_JSON)
            .map_err(|e| Error::avro("capture_position.avsc", e))
    }

    pub fn to_avro_value(&self) -> Avro {
        Avro::Record(vec![
            ("host_id".into(), Avro::Uuid(self.host_id)),
            ("segment_id".into(), Avro::Long(self.segment_id)),
            ("position".into(), Avro::Long(i64::from(self.position))),
            (
                "updated_at_ms".into(),
                Avro::TimestampMillis(self.updated_at_ms),
            ),
        ])
    }

    pub fn from_avro_value(value: Avro) -> Result<CapturePosition, Error> {
        let mut f = record_fields(value, "CapturePosition")?;
        let host_id = match take_field(&mut f, "host_id") {
            Some(Avro::Uuid(u)) => u,
            Some(Avro::String(s)) => {
                Uuid::parse_str(&s).map_err(|_| field_err("host_id", "not a UUID"))?
            }
            _ => return Err(field_err("host_id", "expected a uuid")),
        };
        let segment_id = match take_field(&mut f, "segment_id") {
            Some(Avro::Long(n)) => n,
            _ => return Err(field_err("segment_id", "expected a long")),
        };
        let position = match take_field(&mut f, "position") {
            Some(Avro::Long(n)) => {
                u32::try_from(n).map_err(|_| field_err("position", "out of u32 range"))?
            }
            _ => return Err(field_err("position", "expected a long")),
        };
        let updated_at_ms = match take_field(&mut f, "updated_at_ms") {
            Some(Avro::TimestampMillis(n) | Avro::Long(n)) => n,
            _ => return Err(field_err("updated_at_ms", "expected a timestamp")),
        };
        Ok(CapturePosition {
            host_id,
            segment_id,
            position,
            updated_at_ms,
        })
    }
}
