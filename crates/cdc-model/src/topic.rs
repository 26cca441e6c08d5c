//! Kafka topic naming rules (ARCHITECTURE §2, §7): `cdc.raw.<ks>.<table>`,
//! `cdc.masked.<ks>.<table>`, `cdc.dlq.<stage>` and `cdc.capture.positions`.
//!
//! Keyspace and table names are Cassandra names, `[A-Za-z0-9_]+` (case-sensitive when they were
//! created quoted), so they never contain the `.` separator and always make legal Kafka topics.

use crate::Error;

/// The compacted topic holding each capture node's committed commit-log position.
pub const CAPTURE_POSITIONS_TOPIC: &str = "cdc.capture.positions";

/// Kafka's limit on topic name length.
pub const MAX_TOPIC_LEN: usize = 249;

/// Which stream a table topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableTopicKind {
    /// Unmasked events straight from capture (PII inside; masker-only ACL).
    Raw,
    /// Masked events, read by the sinks.
    Masked,
}

/// A parsed topic name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    Table {
        kind: TableTopicKind,
        keyspace: String,
        table: String,
    },
    DeadLetter {
        stage: String,
    },
    CapturePositions,
}

fn check_cassandra_name(name: &str) -> Result<(), Error> {
    let bad = |reason: &str| Error::InvalidName {
        name: name.to_owned(),
        reason: reason.into(),
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(bad("Cassandra keyspace/table names are [A-Za-z0-9_]"));
    }
    Ok(())
}

fn check_stage(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason: "stage names are [a-z0-9_-]+".into(),
        })
    }
}

fn checked_topic(topic: String) -> Result<String, Error> {
    validate_kafka_topic(&topic)?;
    Ok(topic)
}

/// `cdc.raw.<ks>.<table>`.
pub fn raw_topic(keyspace: &str, table: &str) -> Result<String, Error> {
    check_cassandra_name(keyspace)?;
    check_cassandra_name(table)?;
    checked_topic(format!("cdc.raw.{keyspace}.{table}"))
}

/// `cdc.masked.<ks>.<table>`.
pub fn masked_topic(keyspace: &str, table: &str) -> Result<String, Error> {
    check_cassandra_name(keyspace)?;
    check_cassandra_name(table)?;
    checked_topic(format!("cdc.masked.{keyspace}.{table}"))
}

/// `cdc.dlq.<stage>` (stage such as `masker`, `sink-postgres`).
pub fn dlq_topic(stage: &str) -> Result<String, Error> {
    check_stage(stage)?;
    checked_topic(format!("cdc.dlq.{stage}"))
}

/// Checks Kafka's own rules: 1–249 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn validate_kafka_topic(topic: &str) -> Result<(), Error> {
    let bad = |reason: &str| Error::Topic {
        topic: topic.to_owned(),
        reason: reason.into(),
    };
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
        return Err(bad("a Kafka topic has 1 to 249 characters"));
    }
    if topic == "." || topic == ".." {
        return Err(bad("'.' and '..' are not topic names"));
    }
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(bad("a Kafka topic is made of [A-Za-z0-9._-]"));
    }
    Ok(())
}

impl Topic {
    /// Parses one of our topic names, validating each part.
    pub fn parse(topic: &str) -> Result<Topic, Error> {
        validate_kafka_topic(topic)?;
        let bad = |reason: &str| Error::Topic {
            topic: topic.to_owned(),
            reason: reason.into(),
        };
        if topic == CAPTURE_POSITIONS_TOPIC {
            return Ok(Topic::CapturePositions);
        }
        let parts: Vec<&str> = topic.split('.').collect();
        match parts.as_slice() {
            ["cdc", kind @ ("raw" | "masked"), keyspace, table] => {
                check_cassandra_name(keyspace).map_err(|_| bad("invalid keyspace part"))?;
                check_cassandra_name(table).map_err(|_| bad("invalid table part"))?;
                Ok(Topic::Table {
                    kind: if *kind == "raw" {
                        TableTopicKind::Raw
                    } else {
                        TableTopicKind::Masked
                    },
                    keyspace: (*keyspace).to_owned(),
                    table: (*table).to_owned(),
                })
            }
            ["cdc", "dlq", stage] => {
                check_stage(stage).map_err(|_| bad("invalid stage part"))?;
                Ok(Topic::DeadLetter {
                    stage: (*stage).to_owned(),
                })
            }
            _ => Err(bad(
                "expected cdc.raw.<ks>.<table>, cdc.masked.<ks>.<table>, cdc.dlq.<stage> or cdc.capture.positions",
            )),
        }
    }

    /// The topic's name (inverse of [`Topic::parse`]).
    pub fn name(&self) -> String {
        match self {
            Topic::Table {
                kind: TableTopicKind::Raw,
                keyspace,
                table,
            } => format!("cdc.raw.{keyspace}.{table}"),
            Topic::Table {
                kind: TableTopicKind::Masked,
                keyspace,
                table,
            } => format!("cdc.masked.{keyspace}.{table}"),
            Topic::DeadLetter { stage } => format!("cdc.dlq.{stage}"),
            Topic::CapturePositions => CAPTURE_POSITIONS_TOPIC.to_owned(),
        }
    }
}

impl std::str::FromStr for Topic {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn builds_the_documented_names() {
        assert_eq!(
            raw_topic("shop", "Orders").ok().as_deref(),
            Some("cdc.raw.shop.Orders")
        );
        assert_eq!(
            masked_topic("shop", "orders").ok().as_deref(),
            Some("cdc.masked.shop.orders")
        );
        assert_eq!(
            dlq_topic("sink-postgres").ok().as_deref(),
            Some("cdc.dlq.sink-postgres")
        );
        assert_eq!(
            Topic::parse(CAPTURE_POSITIONS_TOPIC).ok(),
            Some(Topic::CapturePositions)
        );
    }

    #[test]
    fn rejects_bad_names() {
        assert!(raw_topic("sh.op", "t").is_err());
        assert!(raw_topic("", "t").is_err());
        assert!(masked_topic("ks", "t-1").is_err());
        assert!(dlq_topic("Sink").is_err());
        assert!(Topic::parse("cdc.raw.ks").is_err());
        assert!(Topic::parse("cdc.raw.ks.t.x").is_err());
        assert!(Topic::parse("cdc.other.ks.t").is_err());
        assert!(Topic::parse("cdc.raw.ks.t$").is_err());
        assert!(Topic::parse(&"a".repeat(250)).is_err());
        assert!(matches!(Topic::parse("orders"), Err(Error::Topic { .. })));
    }

    proptest! {
        #[test]
        fn table_topics_round_trip(ks in "[A-Za-z0-9_]{1,48}", table in "[A-Za-z0-9_]{1,48}", raw: bool) {
            let name = if raw { raw_topic(&ks, &table) } else { masked_topic(&ks, &table) };
            let name = name.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let parsed = Topic::parse(&name).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(parsed.name(), name);
            let expected_kind = if raw { TableTopicKind::Raw } else { TableTopicKind::Masked };
            prop_assert_eq!(parsed, Topic::Table { kind: expected_kind, keyspace: ks, table });
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = Topic::parse(&s);
        }
    }
}
