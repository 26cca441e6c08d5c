//! The audit record of one masker batch (one JSON line): when, which policy version, per table the
//! correlation ids masked, the columns and strategies applied, and events refused to the DLQ with
//! the column and error. Never values.

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::MaskedField;

/// One column's treatment in the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnAudit {
    pub strategy: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Events of the batch in which the column was present and masked.
    pub events: u64,
}

/// An event refused (dead-lettered) in the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedAudit {
    pub correlation_id: String,
    /// The error, which names the column and never the value.
    pub error: String,
}

/// Per-table part of a batch record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableAudit {
    pub correlation_ids: Vec<String>,
    pub columns: BTreeMap<String, ColumnAudit>,
    pub refused: Vec<RefusedAudit>,
}

/// The audit record of one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchAudit {
    /// Always `masker_batch`.
    pub audit: &'static str,
    /// RFC 3339 UTC time the batch was committed.
    pub ts: String,
    pub policy_version: u64,
    /// Kafka transactional id of the masker instance.
    pub transactional_id: String,
    pub events_masked: u64,
    pub events_refused: u64,
    pub tables: BTreeMap<String, TableAudit>,
}

impl BatchAudit {
    /// An empty record.
    pub fn new(policy_version: u64, transactional_id: &str) -> Self {
        BatchAudit {
            audit: "masker_batch",
            ts: String::new(),
            policy_version,
            transactional_id: transactional_id.to_owned(),
            events_masked: 0,
            events_refused: 0,
            tables: BTreeMap::new(),
        }
    }

    /// Records a masked event.
    pub fn masked(&mut self, table: &str, correlation_id: &str, fields: &[MaskedField]) {
        self.events_masked += 1;
        let t = self.tables.entry(table.to_owned()).or_default();
        t.correlation_ids.push(correlation_id.to_owned());
        for f in fields {
            t.columns
                .entry(f.column.clone())
                .and_modify(|c| c.events += 1)
                .or_insert_with(|| ColumnAudit {
                    strategy: f.strategy,
                    key_id: f.key_id.clone(),
                    events: 1,
                });
        }
    }

    /// Records a refused event.
    pub fn refused(&mut self, table: &str, correlation_id: &str, error: &str) {
        self.events_refused += 1;
        self.tables
            .entry(table.to_owned())
            .or_default()
            .refused
            .push(RefusedAudit {
                correlation_id: correlation_id.to_owned(),
                error: error.to_owned(),
            });
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.events_masked == 0 && self.events_refused == 0
    }

    /// The JSON line (no trailing newline), stamped with the current time.
    pub fn to_json_line(&mut self) -> String {
        self.ts = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"audit\":\"masker_batch\"}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_lists_columns_and_strategies() {
        let mut a = BatchAudit::new(3, "masker-0");
        let fields = vec![MaskedField {
            column: "email".into(),
            strategy: "hash",
            key_id: Some("h1".into()),
        }];
        a.masked("ks.t", "h:1:2:0", &fields);
        a.masked("ks.t", "h:1:3:0", &fields);
        a.refused(
            "ks.t",
            "h:1:4:0",
            "column `ssn` of ks.t: counter columns cannot be masked",
        );
        let line = a.to_json_line();
        let j: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(j["policy_version"], 3);
        assert_eq!(j["tables"]["ks.t"]["columns"]["email"]["strategy"], "hash");
        assert_eq!(j["tables"]["ks.t"]["columns"]["email"]["events"], 2);
        assert_eq!(j["tables"]["ks.t"]["correlation_ids"][1], "h:1:3:0");
        assert_eq!(j["events_refused"], 1);
        assert!(j["ts"].as_str().unwrap().ends_with('Z'));
    }
}
