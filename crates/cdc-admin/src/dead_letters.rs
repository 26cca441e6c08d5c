//! Dead letters as the admin API sees them: a DLQ topic read from the beginning with a
//! short-lived consumer (no group: nothing is committed), filtered, summarised, and the record of
//! which letters were replayed.
//!
//! # Replayed letters
//!
//! A replay must not apply a letter twice by accident (a second `cdcctl dlq replay` with the same
//! filter). Each replayed letter gets a record in the compacted topic `<dlq topic>.replayed`,
//! keyed by the letter's own position `<partition>:<offset>` in the DLQ topic (unique, unlike a
//! correlation id which every replica of a mutation shares). Listing marks such letters
//! `replayed`; replaying skips them unless forced. The record is written after the letter was
//! applied: a crash in between replays it once more, which the convergent destinations (and the
//! masker's deterministic masking) make harmless.
//!
//! Nothing here returns payload bytes. [`detail`] decodes a payload only when asked to (sink DLQs,
//! whose payloads are masked envelopes) and even then returns column names, types and writetimes,
//! plus the primary key as it is stored in the destinations.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cdc_kafka::{
    IdempotentProducer, InboundMessage, KafkaSettings, ProducerSettings, ReadCommittedConsumer,
    StartOffset, TopicAdmin, TopicPartition,
};
use cdc_model::{CellValue, DeadLetter, PayloadFormat, Topic};

use crate::error::Error;
use crate::pb;

/// Default number of letters `ListDeadLetters` returns.
pub const DEFAULT_LIST_LIMIT: u32 = 100;

/// One message of a DLQ topic.
#[derive(Debug, Clone)]
pub struct StoredLetter {
    /// Position of the letter itself in the DLQ topic.
    pub partition: i32,
    pub offset: i64,
    /// Kafka timestamp of the letter.
    pub timestamp_ms: Option<i64>,
    /// Key and headers of the letter's message (stages copy the failed event's own).
    pub key: Option<Vec<u8>>,
    pub headers: Vec<cdc_kafka::HeaderPair>,
    /// The letter, or why it cannot be read.
    pub letter: Result<DeadLetter, String>,
    /// True when `<dlq>.replayed` records it.
    pub replayed: bool,
}

impl StoredLetter {
    /// `<partition>:<offset>` in the DLQ topic: the letter's unique id.
    pub fn id(&self) -> String {
        format!("{}:{}", self.partition, self.offset)
    }

    /// True when `id` is this letter's correlation id or its `<partition>:<offset>`.
    pub fn matches_id(&self, id: &str) -> bool {
        let id = id.trim();
        id == self.id()
            || id.strip_prefix("dlq:") == Some(self.id().as_str())
            || self
                .letter
                .as_ref()
                .ok()
                .and_then(|l| l.correlation_id.as_deref())
                == Some(id)
    }

    /// `keyspace.table` of the event, from the topic it was read from.
    pub fn table(&self) -> Option<String> {
        let l = self.letter.as_ref().ok()?;
        match Topic::parse(&l.topic).ok()? {
            Topic::Table {
                keyspace, table, ..
            } => Some(format!("{keyspace}.{table}")),
            _ => None,
        }
    }

    /// Time used by the `since`/`until` filters: the last failure, else the Kafka timestamp.
    fn failed_at_ms(&self) -> i64 {
        match &self.letter {
            Ok(l) => l.last_failure_at_ms,
            Err(_) => self.timestamp_ms.unwrap_or(0),
        }
    }
}

/// What replaces a database's `DETAIL:` line in error texts.
pub const WITHHELD_DETAIL: &str = "DETAIL: (withheld: it can quote row values)";

/// An error text without the parts that can quote data: PostgreSQL's `DETAIL:` lines
/// (`Failing row contains (…)`, `Key (id)=(…) already exists`). Everything else is kept.
pub fn redact_error(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("DETAIL:") {
        out.push_str(&rest[..i]);
        out.push_str(WITHHELD_DETAIL);
        rest = &rest[i..];
        rest = rest.find('\n').map_or("", |end| &rest[end..]);
    }
    out.push_str(rest);
    out
}

/// True when the letter passes every set field of `filter`.
pub fn matches(filter: &pb::DeadLetterFilter, l: &StoredLetter) -> bool {
    let t = l.failed_at_ms();
    if filter.since_ms > 0 && t < filter.since_ms {
        return false;
    }
    if filter.until_ms > 0 && t > filter.until_ms {
        return false;
    }
    let Ok(letter) = &l.letter else {
        // Unreadable letters carry nothing to filter on: shown only by unfiltered listings.
        return filter.destination.is_empty()
            && filter.table.is_empty()
            && filter.error_class.is_empty()
            && filter.correlation_id.is_empty();
    };
    if !filter.destination.is_empty() {
        let d = filter.destination.as_str();
        let own = letter
            .destination
            .as_deref()
            .unwrap_or(letter.stage.as_str());
        if own != d && letter.stage != d && letter.stage != format!("sink-{d}") {
            return false;
        }
    }
    if !filter.table.is_empty() {
        let table = l.table().unwrap_or_default();
        let wanted = filter.table.as_str();
        let short = table.split_once('.').map_or("", |(_, t)| t);
        if table != wanted && short != wanted {
            return false;
        }
    }
    if !filter.error_class.is_empty()
        && !letter
            .error_class
            .as_str()
            .eq_ignore_ascii_case(filter.error_class.trim())
    {
        return false;
    }
    if !filter.correlation_id.is_empty()
        && letter.correlation_id.as_deref() != Some(filter.correlation_id.as_str())
    {
        return false;
    }
    true
}

fn format_name(f: PayloadFormat) -> &'static str {
    match f {
        PayloadFormat::Json => "json",
        PayloadFormat::Avro => "avro",
        PayloadFormat::Raw => "raw",
    }
}

/// The summary of a letter (never its payload).
pub fn summary(dlq_topic: &str, l: &StoredLetter) -> pb::DeadLetterSummary {
    let dlq = Some(pb::PartitionOffset {
        topic: dlq_topic.to_owned(),
        partition: l.partition,
        offset: l.offset,
    });
    match &l.letter {
        Ok(letter) => pb::DeadLetterSummary {
            correlation_id: letter.correlation_id.clone().unwrap_or_default(),
            destination: letter.destination.clone().unwrap_or_default(),
            table: l.table().unwrap_or_default(),
            error_class: letter.error_class.as_str().to_owned(),
            // Older letters may quote values in a database's DETAIL line.
            error: redact_error(&letter.error_message),
            retry_count: letter.retry_count,
            first_failure_ms: letter.first_failure_at_ms,
            last_failure_ms: letter.last_failure_at_ms,
            source: Some(pb::PartitionOffset {
                topic: letter.topic.clone(),
                partition: letter.partition,
                offset: letter.offset,
            }),
            dlq,
            replayed: l.replayed,
            stage: letter.stage.clone(),
            payload_format: format_name(letter.payload_format).to_owned(),
        },
        Err(reason) => pb::DeadLetterSummary {
            error: format!("unreadable dead letter: {reason}"),
            last_failure_ms: l.timestamp_ms.unwrap_or(0),
            first_failure_ms: l.timestamp_ms.unwrap_or(0),
            dlq,
            replayed: l.replayed,
            payload_format: "raw".to_owned(),
            ..Default::default()
        },
    }
}

/// The full context of a letter. With `decode_event` (masked payloads only) the event's
/// operation, key and written columns are added; values of non-key columns never are.
pub fn detail(dlq_topic: &str, l: &StoredLetter, decode_event: bool) -> pb::DeadLetterDetail {
    let summary = summary(dlq_topic, l);
    let Ok(letter) = &l.letter else {
        return pb::DeadLetterDetail {
            summary: Some(summary),
            event: None,
            note: "the dead letter itself cannot be decoded".to_owned(),
            payload_bytes: 0,
        };
    };
    let payload_bytes = letter.payload.len() as u64;
    if !decode_event {
        return pb::DeadLetterDetail {
            summary: Some(summary),
            event: None,
            note: "the payload is the stage's unmasked input and is never shown".to_owned(),
            payload_bytes,
        };
    }
    let (event, note) = match letter.payload_format {
        PayloadFormat::Json => {
            match cdc_model::json_codec::decode_event_with_schema(&letter.payload) {
                Ok((event, schema)) => (Some(event_detail(&event, &schema)), String::new()),
                Err(e) => (None, format!("the payload does not decode: {e}")),
            }
        }
        PayloadFormat::Avro => (
            None,
            "the payload is Avro; decode it with the schema registry".to_owned(),
        ),
        PayloadFormat::Raw => (
            None,
            "the stage could not decode the payload (see the error)".to_owned(),
        ),
    };
    pb::DeadLetterDetail {
        summary: Some(summary),
        event,
        note,
        payload_bytes,
    }
}

fn event_detail(e: &cdc_model::ChangeEvent, schema: &cdc_model::TableSchema) -> pb::EventDetail {
    let type_of = |name: &str| {
        schema
            .columns
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.cql_type.to_string())
            .unwrap_or_default()
    };
    let key = |cols: &[cdc_model::KeyColumn]| -> Vec<pb::KeyValue> {
        cols.iter()
            .map(|k| pb::KeyValue {
                name: k.name.clone(),
                cql_type: type_of(&k.name),
                value: cdc_model::json_codec::value_to_json(&k.value).to_string(),
            })
            .collect()
    };
    pb::EventDetail {
        op: e.op.as_str().to_owned(),
        keyspace: e.source.keyspace.clone(),
        table: e.source.table.clone(),
        partition_key: key(&e.partition_key),
        clustering_key: key(&e.clustering_key),
        cells: e
            .cells
            .iter()
            .map(|c| pb::CellSummary {
                column: c.column.clone(),
                cql_type: type_of(&c.column),
                change: match &c.change {
                    CellValue::Set { .. } => "set",
                    CellValue::Tombstone => "tombstone",
                    CellValue::Complex { .. } => "collection",
                    CellValue::Counter { .. } => "counter",
                }
                .to_owned(),
                writetime_micros: c.writetime_micros,
                expiring: c.ttl.is_some(),
            })
            .collect(),
        max_writetime_micros: e.max_writetime_micros().unwrap_or(0),
        source_host: e.source.host_id.to_string(),
        source_segment_id: e.source.segment_id,
        source_position: e.source.segment_position,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A stage's DLQ topic and its `.replayed` record.
#[derive(Debug, Clone)]
pub struct DeadLetterTopic {
    kafka: KafkaSettings,
    topic: String,
    markers: String,
    replication: i32,
    timeout: Duration,
}

impl DeadLetterTopic {
    /// The DLQ `topic`; `replication` is used when the `.replayed` topic has to be created.
    pub fn new(kafka: KafkaSettings, topic: impl Into<String>, replication: i32) -> Self {
        let topic = topic.into();
        DeadLetterTopic {
            kafka,
            markers: format!("{topic}.replayed"),
            topic,
            replication: replication.max(1),
            timeout: Duration::from_secs(20),
        }
    }

    /// Another budget for one full read (default 20 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The DLQ topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The compacted topic recording replayed letters.
    pub fn replayed_topic(&self) -> &str {
        &self.markers
    }

    fn kafka_err(&self, op: &'static str, topic: &str) -> impl FnOnce(cdc_kafka::Error) -> Error {
        let topic = topic.to_owned();
        move |source| Error::Kafka { op, topic, source }
    }

    /// Every letter in the topic (in partition then offset order), marked `replayed` where the
    /// record says so.
    pub async fn read(&self) -> Result<Vec<StoredLetter>, Error> {
        let admin = TopicAdmin::new(&self.kafka, self.timeout)
            .map_err(self.kafka_err("open an admin client", &self.topic))?;
        let messages = read_topic(&self.kafka, &admin, &self.topic, self.timeout).await;
        let markers = match &messages {
            Ok(_) => read_topic(&self.kafka, &admin, &self.markers, self.timeout).await,
            Err(_) => Ok(Vec::new()),
        };
        let _ = admin.close().await;
        let replayed: HashSet<Vec<u8>> = markers?
            .into_iter()
            // A compacted topic keeps the last record per key; an empty payload would retract it.
            .filter(|m| m.payload.as_ref().is_some_and(|p| !p.is_empty()))
            .filter_map(|m| m.key)
            .collect();
        Ok(messages?
            .into_iter()
            .map(|m| {
                let key = format!("{}:{}", m.partition, m.offset).into_bytes();
                StoredLetter {
                    partition: m.partition,
                    offset: m.offset,
                    timestamp_ms: m.timestamp_ms,
                    key: m.key.clone(),
                    headers: m.headers.clone(),
                    letter: match &m.payload {
                        Some(p) => DeadLetter::from_json(p).map_err(|e| e.to_string()),
                        None => Err("empty message".to_owned()),
                    },
                    replayed: replayed.contains(&key),
                }
            })
            .collect())
    }

    /// Records `letters` as replayed (durably: waits for every delivery).
    pub async fn mark_replayed(&self, letters: &[&StoredLetter]) -> Result<(), Error> {
        if letters.is_empty() {
            return Ok(());
        }
        let admin = TopicAdmin::new(&self.kafka, self.timeout)
            .map_err(self.kafka_err("open an admin client", &self.markers))?;
        let ensured = admin
            .ensure_topic(
                &self.markers,
                1,
                self.replication,
                &BTreeMap::from([("cleanup.policy".to_owned(), "compact".to_owned())]),
            )
            .await;
        let _ = admin.close().await;
        ensured.map_err(self.kafka_err("create the replayed-letters topic", &self.markers))?;
        let producer = IdempotentProducer::new(&self.kafka, &ProducerSettings::default())
            .map_err(self.kafka_err("open a producer", &self.markers))?;
        let at = now_ms();
        let mut result = Ok(());
        for l in letters {
            let value = serde_json::json!({
                "dlq_topic": self.topic,
                "dlq_partition": l.partition,
                "dlq_offset": l.offset,
                "correlation_id": l.letter.as_ref().ok().and_then(|x| x.correlation_id.clone()),
                "replayed_at_ms": at,
            })
            .to_string();
            let key = l.id();
            let sent = async {
                producer
                    .send(
                        &self.markers,
                        None,
                        Some(key.as_bytes()),
                        Some(value.as_bytes()),
                        &[],
                    )
                    .await?
                    .await
            }
            .await;
            if let Err(e) = sent {
                result = Err(Error::Kafka {
                    op: "record a replayed letter",
                    topic: self.markers.clone(),
                    source: e,
                });
                break;
            }
        }
        let _ = producer.flush().await;
        let _ = producer.close().await;
        result
    }

    /// `ListDeadLetters`: the newest `limit` matching letters, oldest first.
    pub async fn list(
        &self,
        request: &pb::ListDeadLettersRequest,
    ) -> Result<pb::ListDeadLettersResponse, Error> {
        let letters = self.read().await?;
        let scanned = letters.len() as u64;
        let filter = request.filter.clone().unwrap_or_default();
        let mut matching: Vec<&StoredLetter> =
            letters.iter().filter(|l| matches(&filter, l)).collect();
        matching.sort_by_key(|l| (l.failed_at_ms(), l.partition, l.offset));
        let total = matching.len() as u64;
        let limit = if request.limit == 0 {
            DEFAULT_LIST_LIMIT
        } else {
            request.limit
        } as usize;
        let skip = matching.len().saturating_sub(limit);
        Ok(pb::ListDeadLettersResponse {
            dead_letters: matching[skip..]
                .iter()
                .map(|l| summary(&self.topic, l))
                .collect(),
            total_matching: total,
            scanned,
        })
    }

    /// `ShowDeadLetter`: every letter whose correlation id or `<partition>:<offset>` is `id`.
    pub async fn show(
        &self,
        id: &str,
        decode_events: bool,
    ) -> Result<pb::ShowDeadLetterResponse, Error> {
        if id.trim().is_empty() {
            return Err(Error::InvalidArgument {
                reason: "id: give a correlation id or <partition>:<offset> of the DLQ topic".into(),
            });
        }
        let letters = self.read().await?;
        Ok(pb::ShowDeadLetterResponse {
            dead_letters: letters
                .iter()
                .filter(|l| l.matches_id(id))
                .map(|l| detail(&self.topic, l, decode_events))
                .collect(),
        })
    }

    /// The letters a `ReplayDeadLetters` request selects, and what it skips.
    pub async fn select_for_replay(
        &self,
        request: &pb::ReplayDeadLettersRequest,
    ) -> Result<ReplaySelection, Error> {
        let filter = request.filter.clone().unwrap_or_default();
        let mut selection = ReplaySelection::default();
        for l in self.read().await? {
            if !matches(&filter, &l) {
                continue;
            }
            if l.replayed && !request.include_replayed {
                selection.already_replayed += 1;
                continue;
            }
            match &l.letter {
                Ok(letter) if letter.payload_format != PayloadFormat::Raw => {
                    selection.letters.push(l);
                }
                _ => selection.unreplayable += 1,
            }
        }
        Ok(selection)
    }
}

/// What [`DeadLetterTopic::select_for_replay`] found.
#[derive(Debug, Default)]
pub struct ReplaySelection {
    /// Letters to replay (decodable, not yet replayed unless forced), in topic order.
    pub letters: Vec<StoredLetter>,
    /// Skipped: already replayed.
    pub already_replayed: u64,
    /// Skipped: the payload could not be decoded when the letter was written.
    pub unreplayable: u64,
}

/// Reads `topic` from the beginning up to its high watermarks at the time of the call. An absent
/// topic reads as empty.
async fn read_topic(
    kafka: &KafkaSettings,
    admin: &TopicAdmin,
    topic: &str,
    budget: Duration,
) -> Result<Vec<InboundMessage>, Error> {
    let err = |op: &'static str| {
        let topic = topic.to_owned();
        move |source| Error::Kafka { op, topic, source }
    };
    let topics = admin.list_topics().await.map_err(err("list topics"))?;
    if !topics.iter().any(|t| t == topic) {
        return Ok(Vec::new());
    }
    let marks = admin
        .high_watermarks(topic)
        .await
        .map_err(err("read watermarks"))?;
    // Last offset to wait for, per non-empty partition.
    let mut remaining: BTreeMap<i32, i64> = marks
        .iter()
        .filter(|w| w.high > w.low)
        .map(|w| (w.partition, w.high - 1))
        .collect();
    if remaining.is_empty() {
        return Ok(Vec::new());
    }
    // No group is joined (assign) and nothing is committed: the id only satisfies librdkafka.
    let settings =
        cdc_kafka::ConsumerSettings::new(format!("cdc-admin-reader-{}", uuid::Uuid::new_v4()));
    let (consumer, _rebalances) =
        ReadCommittedConsumer::new(kafka, &settings).map_err(err("open a consumer"))?;
    let starts: Vec<(TopicPartition, StartOffset)> = remaining
        .keys()
        .map(|p| (TopicPartition::new(topic, *p), StartOffset::Beginning))
        .collect();
    consumer.assign(&starts).map_err(err("assign partitions"))?;
    let deadline = Instant::now() + budget;
    let mut out = Vec::new();
    let outcome = loop {
        if remaining.is_empty() {
            break Ok(());
        }
        // Transaction markers at a partition's end are never delivered: a quiet second after
        // the first message means the rest is markers (or aborted records).
        let idle = if out.is_empty() {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(1)
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(Error::ReadTimeout {
                topic: topic.to_owned(),
                after_ms: u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
            });
        }
        match tokio::time::timeout(idle.min(left), consumer.recv()).await {
            Ok(Ok(m)) => {
                if remaining
                    .get(&m.partition)
                    .is_some_and(|last| m.offset >= *last)
                {
                    remaining.remove(&m.partition);
                }
                out.push(m);
            }
            Ok(Err(e)) if e.class() == cdc_kafka::ErrorClass::Retriable => {
                tracing::debug!(topic, error = %cdc_kafka::error_chain(&e), "Dead-letter read hiccup");
            }
            Ok(Err(e)) => break Err(err("read")(e)),
            Err(_) if Instant::now() >= deadline => {}
            Err(_) => break Ok(()),
        }
    };
    let _ = consumer.close().await;
    outcome?;
    out.sort_by_key(|m| (m.partition, m.offset));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use cdc_model::ErrorClass;

    use super::*;

    fn letter(cid: &str, class: ErrorClass, at: i64) -> StoredLetter {
        StoredLetter {
            partition: 0,
            offset: 7,
            timestamp_ms: Some(at),
            key: None,
            headers: Vec::new(),
            letter: Ok(DeadLetter {
                payload: b"{}".to_vec(),
                payload_format: PayloadFormat::Json,
                error_message: "value too long for column city".into(),
                error_class: class,
                stage: "sink-postgres".into(),
                destination: Some("postgres".into()),
                retry_count: 0,
                first_failure_at_ms: at,
                last_failure_at_ms: at,
                topic: "cdc.masked.shop.customers".into(),
                partition: 2,
                offset: 41,
                correlation_id: Some(cid.into()),
            }),
            replayed: false,
        }
    }

    #[test]
    fn filters_apply_field_by_field() {
        let l = letter("n1:5:100:0", ErrorClass::Poison, 1_000);
        let f = |edit: &dyn Fn(&mut pb::DeadLetterFilter)| {
            let mut f = pb::DeadLetterFilter::default();
            edit(&mut f);
            matches(&f, &l)
        };
        assert!(f(&|_| {}));
        assert!(f(&|x| x.destination = "postgres".into()));
        assert!(f(&|x| x.destination = "sink-postgres".into()));
        assert!(!f(&|x| x.destination = "clickhouse".into()));
        assert!(f(&|x| x.table = "shop.customers".into()));
        assert!(f(&|x| x.table = "customers".into()));
        assert!(!f(&|x| x.table = "shop.orders".into()));
        assert!(f(&|x| x.error_class = "POISON".into()));
        assert!(!f(&|x| x.error_class = "retriable".into()));
        assert!(f(&|x| x.since_ms = 1_000));
        assert!(!f(&|x| x.since_ms = 1_001));
        assert!(f(&|x| x.until_ms = 1_000));
        assert!(!f(&|x| x.until_ms = 999));
        assert!(f(&|x| x.correlation_id = "n1:5:100:0".into()));
        assert!(!f(&|x| x.correlation_id = "n1:5:100:1".into()));
        assert!(l.matches_id("n1:5:100:0") && l.matches_id("0:7") && l.matches_id("dlq:0:7"));
        assert!(!l.matches_id("0:8"));
    }

    #[test]
    fn database_details_are_withheld() {
        let text = "PostgreSQL merge failed: db error: ERROR: new row violates check constraint \"c\"\nDETAIL: Failing row contains (1000, fake-name).\nHINT: x";
        let r = redact_error(text);
        assert!(!r.contains("fake-name"), "{r}");
        assert!(
            r.contains("violates check constraint") && r.contains("HINT: x"),
            "{r}"
        );
        assert_eq!(redact_error("no detail"), "no detail");
        assert_eq!(
            redact_error("a DETAIL: Key (id)=(7) exists"),
            format!("a {WITHHELD_DETAIL}")
        );
    }

    #[test]
    fn summaries_and_details_never_carry_payloads() {
        let mut l = letter("c", ErrorClass::Poison, 5);
        if let Ok(x) = l.letter.as_mut() {
            x.payload = b"fake.user1@example.invalid".to_vec();
        }
        let s = summary("cdc.dlq.sink-postgres", &l);
        assert_eq!(s.table, "shop.customers");
        assert_eq!(s.dlq.as_ref().map(|d| d.offset), Some(7));
        let shown = format!("{s:?}{:?}", detail("t", &l, false));
        assert!(!shown.contains("example.invalid"), "{shown}");
        let d = detail("t", &l, true);
        assert!(d.event.is_none() && d.note.contains("does not decode"));
    }
}
