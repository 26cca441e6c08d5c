//! The `ChangeEvent`: one row-level (or partition-level) change captured from a Cassandra commit
//! log, with typed keys and the cells the mutation wrote (ARCHITECTURE §4).
//!
//! An event describes what the *mutation* carried, not the resulting row: destinations merge it
//! per cell by writetime (last write wins, tombstones win ties), so the same events applied in any
//! order, any number of times, converge.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::CqlValue;

/// Where an event came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceInfo {
    pub cluster: String,
    /// The Cassandra node (`system.local.host_id`) whose commit log held the mutation.
    pub host_id: Uuid,
    pub keyspace: String,
    pub table: String,
    /// `system_schema.tables.id`; changes on DROP + CREATE.
    pub table_id: Uuid,
    /// Our schema-history version ([`crate::TableSchema::version`]) the mutation was decoded with.
    pub schema_version: u32,
    /// Commit-log segment id.
    pub segment_id: i64,
    /// Byte position in the segment just after the mutation.
    pub segment_position: u32,
    /// Index of this event among those decoded from the one mutation.
    pub index: u32,
}

impl SourceInfo {
    /// `<host id>:<segment id>:<position>:<index>`, the id carried by every log line, span and
    /// dead letter about this event.
    pub fn correlation_id(&self) -> String {
        correlation_id(
            self.host_id,
            self.segment_id,
            self.segment_position,
            self.index,
        )
    }
}

/// Builds a correlation id `<node>:<segment>:<position>:<index>`.
pub fn correlation_id(host_id: Uuid, segment_id: i64, position: u32, index: u32) -> String {
    format!("{host_id}:{segment_id}:{position}:{index}")
}

/// What kind of change the event is.
///
/// Cassandra stores no INSERT/UPDATE distinction; like Debezium and DataStax we classify
/// ([`Operation::classify`]):
/// - `Delete` when the event carries a row, partition or range deletion;
/// - otherwise `Insert` when the row carries primary-key liveness info (the row marker, written
///   only by CQL `INSERT`, and by replays such as read repair or streaming);
/// - otherwise `Update` (cells only, including cell tombstones and collection element changes).
///
/// `Insert` therefore means "written by an INSERT", not "the row did not exist before".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Insert,
    Update,
    Delete,
}

impl Operation {
    /// The classification rule documented on [`Operation`].
    pub fn classify(has_deletion: bool, has_liveness: bool) -> Operation {
        if has_deletion {
            Operation::Delete
        } else if has_liveness {
            Operation::Insert
        } else {
            Operation::Update
        }
    }

    /// Debezium's op code: `c`, `u` or `d`.
    pub fn code(self) -> &'static str {
        match self {
            Operation::Insert => "c",
            Operation::Update => "u",
            Operation::Delete => "d",
        }
    }

    /// The inverse of [`Operation::code`].
    pub fn from_code(code: &str) -> Option<Operation> {
        match code {
            "c" => Some(Operation::Insert),
            "u" => Some(Operation::Update),
            "d" => Some(Operation::Delete),
            _ => None,
        }
    }

    /// Lower-case name for metric labels (`insert`, `update`, `delete`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
}

/// One named key component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyColumn {
    pub name: String,
    pub value: CqlValue,
}

impl KeyColumn {
    pub fn new(name: impl Into<String>, value: CqlValue) -> Self {
        KeyColumn {
            name: name.into(),
            value,
        }
    }
}

/// One end of a range tombstone: a (possibly partial, possibly empty) clustering prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusteringBound {
    /// The leading clustering columns, in clustering order; empty = unbounded on this side.
    pub prefix: Vec<KeyColumn>,
    /// Whether rows equal to the prefix are inside the range.
    pub inclusive: bool,
}

/// What a deletion covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum DeletionScope {
    /// The row named by the event's clustering key.
    Row,
    /// The whole partition (static row included).
    Partition,
    /// Every row whose clustering lies between the bounds (a range tombstone).
    Range {
        start: ClusteringBound,
        end: ClusteringBound,
    },
}

/// A row, partition or range deletion. It shadows data with writetime `<=`
/// `marked_for_delete_at_micros` (ties go to the tombstone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    pub scope: DeletionScope,
    pub marked_for_delete_at_micros: i64,
    /// Server wall-clock seconds of the delete (for tombstone purge after a grace period).
    pub local_deletion_time_secs: i64,
}

/// A TTL and the expiry it produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ttl {
    pub ttl_secs: u32,
    /// Epoch seconds at which the data expires (Cassandra's local expiration time).
    pub expires_at_secs: i64,
}

/// Primary-key liveness info (the row marker), present on INSERTs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Liveness {
    pub writetime_micros: i64,
    pub ttl: Option<Ttl>,
}

/// A complex (multi-cell) column's deletion: removes every element with writetime `<=`
/// `marked_for_delete_at_micros`. A collection overwrite (`SET c = {…}`) writes one at `ts − 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ComplexDeletion {
    pub marked_for_delete_at_micros: i64,
    pub local_deletion_time_secs: i64,
}

/// Identifies one element of a non-frozen collection or UDT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum CellPath {
    /// A list element's timeuuid id; list order is id order.
    ListIndex(Uuid),
    /// A set element (the element itself).
    SetElement(CqlValue),
    /// A map key.
    MapKey(CqlValue),
    /// A UDT field, by name (storage uses the field position; see `native_codec`).
    UdtField(String),
}

/// One element cell of a multi-cell column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElementChange {
    pub path: CellPath,
    /// `None`: an element tombstone. For sets the live value is [`CqlValue::Empty`].
    pub value: Option<CqlValue>,
    pub writetime_micros: i64,
    pub ttl: Option<Ttl>,
}

/// Which counter-context shard a [`CounterShard`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterShardKind {
    /// The normal kind since Cassandra 2.1: the shard is the counter id's running total.
    Global,
    /// Pre-2.1 local shard (a delta).
    Local,
    /// Pre-2.1 remote shard.
    Remote,
}

/// One shard of a counter context. For a global shard, the counter's value is the sum over
/// counter ids of the `count` of the shard with the highest `clock` — which makes a convergent
/// merge possible without knowing deltas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CounterShard {
    pub counter_id: Uuid,
    pub clock: i64,
    pub count: i64,
    pub kind: CounterShardKind,
}

/// What happened to one column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CellValue {
    /// A simple (or frozen) column written with this value (possibly [`CqlValue::Empty`]).
    Set { value: CqlValue },
    /// A cell tombstone: `DELETE col`, or `col = null`, on a simple or frozen column.
    Tombstone,
    /// A non-frozen collection/UDT: an optional whole-column deletion, then element changes.
    Complex {
        deletion: Option<ComplexDeletion>,
        elements: Vec<ElementChange>,
    },
    /// A counter column update, as the commit log holds it: counter-context shards.
    Counter { shards: Vec<CounterShard> },
}

/// One column written by the mutation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellChange {
    pub column: String,
    /// The cell timestamp (`WRITETIME(col)`). For `Complex` changes this is the highest timestamp
    /// among the deletion and the elements, which carry their own.
    pub writetime_micros: i64,
    pub ttl: Option<Ttl>,
    pub change: CellValue,
}

/// One change captured from the commit log. See the module doc and ARCHITECTURE §4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub source: SourceInfo,
    pub op: Operation,
    /// Partition-key columns in key order.
    pub partition_key: Vec<KeyColumn>,
    /// Clustering columns in key order; empty for partition-level events and static rows.
    pub clustering_key: Vec<KeyColumn>,
    /// The event is about the partition's static row.
    pub is_static: bool,
    /// Primary-key liveness (present for INSERT).
    pub liveness: Option<Liveness>,
    /// A row/partition/range deletion carried by the mutation. The same event may also carry
    /// cells (a deletion and newer writes in one batch); apply both by writetime.
    pub deletion: Option<Deletion>,
    pub cells: Vec<CellChange>,
    pub correlation_id: String,
    /// When the capture service decoded the event (epoch ms).
    pub captured_at_ms: i64,
}

impl ChangeEvent {
    /// The highest timestamp the event carries (liveness, deletion, cells, elements), in µs since
    /// the epoch; `None` for an event with none (never produced by capture).
    pub fn max_writetime_micros(&self) -> Option<i64> {
        let liveness = self.liveness.map(|l| l.writetime_micros);
        let deletion = self
            .deletion
            .as_ref()
            .map(|d| d.marked_for_delete_at_micros);
        let cells = self.cells.iter().flat_map(|c| {
            let nested: Box<dyn Iterator<Item = i64>> = match &c.change {
                CellValue::Complex { deletion, elements } => Box::new(
                    deletion
                        .map(|d| d.marked_for_delete_at_micros)
                        .into_iter()
                        .chain(elements.iter().map(|e| e.writetime_micros)),
                ),
                _ => Box::new(std::iter::empty()),
            };
            std::iter::once(c.writetime_micros).chain(nested)
        });
        liveness.into_iter().chain(deletion).chain(cells).max()
    }

    /// A stable string of the partition key for Kafka message keys: the compact JSON array of the
    /// key values in key order (see `json_codec` for the value forms). Only the partition key is
    /// used, so all events of one partition land on one Kafka partition and keep their order.
    pub fn key_string(&self) -> String {
        let values: Vec<serde_json::Value> = self
            .partition_key
            .iter()
            .map(|k| crate::json_codec::value_to_json(&k.value))
            .collect();
        serde_json::Value::Array(values).to_string()
    }

    /// A cell change by column name.
    pub fn cell(&self, column: &str) -> Option<&CellChange> {
        self.cells.iter().find(|c| c.column == column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> ChangeEvent {
        let source = SourceInfo {
            cluster: "test".into(),
            host_id: Uuid::from_u128(0xabc),
            keyspace: "shop".into(),
            table: "orders".into(),
            table_id: Uuid::from_u128(1),
            schema_version: 1,
            segment_id: 17,
            segment_position: 4096,
            index: 2,
        };
        ChangeEvent {
            correlation_id: source.correlation_id(),
            source,
            op: Operation::Update,
            partition_key: vec![
                KeyColumn::new("id", CqlValue::Int(7)),
                KeyColumn::new("region", CqlValue::Text("eu".into())),
            ],
            clustering_key: vec![KeyColumn::new("line", CqlValue::Int(1))],
            is_static: false,
            liveness: Some(Liveness {
                writetime_micros: 10,
                ttl: None,
            }),
            deletion: None,
            cells: vec![
                CellChange {
                    column: "qty".into(),
                    writetime_micros: 20,
                    ttl: None,
                    change: CellValue::Set {
                        value: CqlValue::Int(3),
                    },
                },
                CellChange {
                    column: "tags".into(),
                    writetime_micros: 5,
                    ttl: None,
                    change: CellValue::Complex {
                        deletion: Some(ComplexDeletion {
                            marked_for_delete_at_micros: 29,
                            local_deletion_time_secs: 1,
                        }),
                        elements: vec![ElementChange {
                            path: CellPath::SetElement(CqlValue::Text("red".into())),
                            value: Some(CqlValue::Empty),
                            writetime_micros: 30,
                            ttl: None,
                        }],
                    },
                },
            ],
            captured_at_ms: 0,
        }
    }

    #[test]
    fn correlation_id_format() {
        assert_eq!(
            event().correlation_id,
            "00000000-0000-0000-0000-000000000abc:17:4096:2"
        );
    }

    #[test]
    fn max_writetime_covers_elements_and_deletions() {
        let mut e = event();
        assert_eq!(e.max_writetime_micros(), Some(30));
        e.deletion = Some(Deletion {
            scope: DeletionScope::Row,
            marked_for_delete_at_micros: 99,
            local_deletion_time_secs: 0,
        });
        assert_eq!(e.max_writetime_micros(), Some(99));
        e.deletion = None;
        e.cells.clear();
        e.liveness = None;
        assert_eq!(e.max_writetime_micros(), None);
    }

    #[test]
    fn key_string_is_the_partition_key_only() {
        let mut e = event();
        assert_eq!(e.key_string(), r#"[7,"eu"]"#);
        e.clustering_key.clear();
        e.cells.clear();
        assert_eq!(e.key_string(), r#"[7,"eu"]"#);
    }

    #[test]
    fn operation_classification_and_codes() {
        assert_eq!(Operation::classify(true, true), Operation::Delete);
        assert_eq!(Operation::classify(false, true), Operation::Insert);
        assert_eq!(Operation::classify(false, false), Operation::Update);
        for op in [Operation::Insert, Operation::Update, Operation::Delete] {
            assert_eq!(Operation::from_code(op.code()), Some(op));
        }
        assert_eq!(Operation::from_code("r"), None);
    }
}
