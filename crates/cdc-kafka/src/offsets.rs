//! Partition and offset types used across the crate's API, and their conversion to librdkafka's
//! `TopicPartitionList`.

use std::collections::BTreeMap;

use rdkafka::Offset;
use rdkafka::topic_partition_list::TopicPartitionList;

use crate::error::{Error, KafkaError, Result};

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic[partition]`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// The next offset to read in a partition: one past the last processed message. This is what
/// Kafka commits and what `send_offsets_to_transaction` takes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionOffset {
    /// The partition.
    pub partition: TopicPartition,
    /// Next offset to read.
    pub next_offset: i64,
}

impl PartitionOffset {
    /// `topic[partition]` resumes at `next_offset`.
    pub fn new(topic: impl Into<String>, partition: i32, next_offset: i64) -> Self {
        PartitionOffset {
            partition: TopicPartition::new(topic, partition),
            next_offset,
        }
    }
}

/// Where to start reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    /// The first retained message.
    Beginning,
    /// After the last message.
    End,
    /// The group's committed offset (or `auto.offset.reset` when there is none).
    Committed,
    /// This absolute offset (the next message to read).
    At(i64),
}

impl StartOffset {
    pub(crate) fn to_rdkafka(self) -> Offset {
        match self {
            StartOffset::Beginning => Offset::Beginning,
            StartOffset::End => Offset::End,
            StartOffset::Committed => Offset::Stored,
            StartOffset::At(n) => Offset::Offset(n),
        }
    }

    pub(crate) fn absolute(self) -> Option<i64> {
        match self {
            StartOffset::At(n) => Some(n),
            _ => None,
        }
    }
}

/// Tracks the next offset to commit per partition while a batch is processed: record every
/// consumed message, then hand [`ConsumedOffsets::to_vec`] to `send_offsets`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumedOffsets {
    next: BTreeMap<TopicPartition, i64>,
}

impl ConsumedOffsets {
    /// Nothing consumed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the message at `offset` was processed.
    pub fn record(&mut self, topic: &str, partition: i32, offset: i64) {
        let key = TopicPartition::new(topic, partition);
        let next = offset.saturating_add(1);
        self.next
            .entry(key)
            .and_modify(|n| *n = (*n).max(next))
            .or_insert(next);
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }

    /// The offsets to commit, one per partition, sorted.
    pub fn to_vec(&self) -> Vec<PartitionOffset> {
        self.next
            .iter()
            .map(|(tp, &next_offset)| PartitionOffset {
                partition: tp.clone(),
                next_offset,
            })
            .collect()
    }

    /// Forgets everything (after a commit or an abort-and-rewind).
    pub fn clear(&mut self) {
        self.next.clear();
    }
}

pub(crate) fn offsets_to_tpl(offsets: &[PartitionOffset]) -> Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for o in offsets {
        tpl.add_partition_offset(
            &o.partition.topic,
            o.partition.partition,
            Offset::Offset(o.next_offset),
        )
        .map_err(|source| seek_error(&o.partition, Some(o.next_offset), source))?;
    }
    Ok(tpl)
}

pub(crate) fn partitions_to_tpl(partitions: &[TopicPartition]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for p in partitions {
        tpl.add_partition(&p.topic, p.partition);
    }
    tpl
}

pub(crate) fn tpl_partitions(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

pub(crate) fn seek_error(tp: &TopicPartition, offset: Option<i64>, source: KafkaError) -> Error {
    Error::Seek {
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset,
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumed_offsets_keep_the_highest_next_offset() {
        let mut c = ConsumedOffsets::new();
        assert!(c.is_empty());
        c.record("a", 0, 5);
        c.record("a", 0, 3);
        c.record("a", 1, 0);
        c.record("b", 0, 9);
        assert_eq!(
            c.to_vec(),
            vec![
                PartitionOffset::new("a", 0, 6),
                PartitionOffset::new("a", 1, 1),
                PartitionOffset::new("b", 0, 10),
            ]
        );
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn offsets_convert_to_tpl() {
        let tpl = offsets_to_tpl(&[PartitionOffset::new("a", 2, 42)]).unwrap();
        let e = tpl.find_partition("a", 2).unwrap();
        assert_eq!(e.offset(), Offset::Offset(42));
        assert_eq!(tpl_partitions(&tpl), vec![TopicPartition::new("a", 2)]);
    }

    #[test]
    fn start_offsets_map_to_rdkafka() {
        assert_eq!(StartOffset::At(3).to_rdkafka(), Offset::Offset(3));
        assert_eq!(StartOffset::Committed.to_rdkafka(), Offset::Stored);
        assert_eq!(StartOffset::Beginning.absolute(), None);
        assert_eq!(TopicPartition::new("t", 1).to_string(), "t[1]");
    }
}
