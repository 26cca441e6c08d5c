//! Exactly-once bookkeeping: deduplication tokens and the offsets table. The SQL and encodings are
//! pure; the adapter's offset reads and writes (and the replay) are at the end of this file.
//!
//! A batch is inserted into the state table as one insert whose `insert_deduplication_token` is
//! derived from what it holds — consumer group, topic, per Kafka partition the first and last
//! offset of its events, and a hash of the encoded rows — so retrying the same batch (the
//! framework retries a failed `write_batch` with the same batch) is dropped by the server
//! (`non_replicated_deduplication_window` is set on the table). The offsets are written *after* the rows, to `_cdc_offsets`
//! (a `ReplacingMergeTree` versioned by `next_offset`, read as the highest offset of the newest
//! *epoch*), so they never run ahead.
//!
//! # Replays: epochs
//!
//! Normal writes only move offsets forward, so "highest offset wins" is right for them. An
//! operator's replay (`cdcctl replay`) must move them *back*: it writes the chosen offsets with
//! an epoch one above the partition's current one, and every later write of that partition
//! carries the new epoch (the adapter remembers each partition's epoch from `load_offsets` and the
//! replay). The epoch is part of the sorting key, so merges never collapse an older epoch's higher
//! offset over the replayed one. Tables created before epochs existed gain the column (0) on
//! first use.
//!
//! A crash between the rows and the offsets leaves rows whose offsets are not stored. After a
//! restart the framework may cut the replayed events into different batches, so the token alone
//! cannot be relied upon: on partition assignment the adapter also reads the highest offset present
//! in the state table per partition and skips replayed events at or below it (an insert is one
//! block, hence atomic). Both mechanisms only avoid raw duplicates: the view is an argMax by
//! writetime, so a duplicate row could never show there anyway.

use std::collections::{BTreeMap, HashMap};

use cdc_model::Topic;
use cdc_typemap::clickhouse::{quote_ident, write_string};

use super::ddl::{self, OFFSETS_TABLE};
use super::{ClickHouseDestination, Error};
use crate::destination::NextOffset;

/// The deduplication token of an insert holding events with these `(partition, offset)` pairs.
///
/// `data` is the insert's RowBinary payload: its FNV-1a hash is appended so that a *different*
/// payload for the same offset range (a re-created topic whose offsets restarted) is never
/// mistaken for a replay. Encoding is deterministic, so a genuine replay hashes the same.
pub fn dedup_token(
    group: &str,
    topic: &str,
    offsets: impl IntoIterator<Item = (i32, i64)>,
    data: &[u8],
) -> String {
    let mut ranges: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for (p, o) in offsets {
        let r = ranges.entry(p).or_insert((o, o));
        r.0 = r.0.min(o);
        r.1 = r.1.max(o);
    }
    let parts: Vec<String> = ranges
        .iter()
        .map(|(p, (first, last))| format!("{p}:{first}-{last}"))
        .collect();
    format!(
        "cdc/{group}/{topic}/{}/{:016x}",
        parts.join(","),
        fnv1a64(data)
    )
}

/// FNV-1a, 64 bits: stable across builds and platforms (unlike `DefaultHasher`).
fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `INSERT INTO db._cdc_offsets (…) FORMAT RowBinary`.
pub fn insert_offsets_sql(database: &str) -> String {
    format!(
        "INSERT INTO {}.{} (`consumer_group`, `topic`, `partition`, `next_offset`, `epoch`) FORMAT RowBinary",
        quote_ident(database),
        quote_ident(OFFSETS_TABLE)
    )
}

/// RowBinary rows for [`insert_offsets_sql`]; `epoch_of` gives each partition's epoch.
pub fn encode_offsets(
    group: &str,
    offsets: &[NextOffset],
    epoch_of: impl Fn(&NextOffset) -> u64,
) -> Vec<u8> {
    let mut out = Vec::new();
    for o in offsets {
        write_string(group.as_bytes(), &mut out);
        write_string(o.topic.as_bytes(), &mut out);
        out.extend_from_slice(&o.partition.to_le_bytes());
        out.extend_from_slice(&o.next_offset.to_le_bytes());
        out.extend_from_slice(&epoch_of(o).to_le_bytes());
    }
    out
}

/// Stored next offsets of one group and topic, per partition: the highest offset of the newest
/// epoch, and that epoch.
pub fn select_offsets_sql(database: &str) -> String {
    format!(
        "SELECT `partition`, argMax(`next_offset`, (`epoch`, `next_offset`)) AS `next`, \
         max(`epoch`) AS `max_epoch` FROM {}.{} \
         WHERE `consumer_group` = ? AND `topic` = ? GROUP BY `partition`",
        quote_ident(database),
        quote_ident(OFFSETS_TABLE)
    )
}

/// Whether the offsets table of a database has the `epoch` column (tables created before epochs
/// existed lack it).
pub fn epoch_column_count_sql() -> &'static str {
    "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = 'epoch'"
}

/// Adds `epoch` to an offsets table created before epochs existed. ClickHouse only lets a sorting
/// key grow by a column added in the same statement, without a default expression (it is 0).
pub fn add_epoch_sql(database: &str) -> String {
    format!(
        "ALTER TABLE {}.{} ADD COLUMN IF NOT EXISTS `epoch` UInt64, \
         MODIFY ORDER BY (`consumer_group`, `topic`, `partition`, `epoch`)",
        quote_ident(database),
        quote_ident(OFFSETS_TABLE)
    )
}

/// The highest offset present in a state table, per Kafka partition.
pub fn select_present_sql(state_table: &str) -> String {
    format!(
        "SELECT `_cdc_partition` AS `partition`, max(`_cdc_offset`) AS `next` FROM {state_table} \
         GROUP BY `_cdc_partition`"
    )
}

/// Epochs known per (consumer group, topic, partition).
pub(super) type EpochCache = std::sync::Mutex<HashMap<(String, String, i32), u64>>;

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct StoredOffsetRow {
    partition: i32,
    next: i64,
    max_epoch: u64,
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct OffsetsTableState {
    columns: u64,
    epoch: u64,
}

impl ClickHouseDestination {
    async fn offsets_table_state(&self, database: &str) -> Result<OffsetsTableState, Error> {
        self.timed(
            "read offsets columns",
            database,
            self.client
                .query(
                    "SELECT count() AS columns, countIf(name = 'epoch') AS epoch \
                     FROM system.columns WHERE database = ? AND table = ?",
                )
                .bind(database)
                .bind(OFFSETS_TABLE)
                .fetch_one::<OffsetsTableState>(),
        )
        .await
    }

    /// Gives an offsets table created before epochs existed its `epoch` column; `false` when the
    /// database has no offsets table yet.
    async fn migrate_offsets(&self, database: &str) -> Result<bool, Error> {
        if self.offsets_ready.lock().await.contains(database) {
            return Ok(true);
        }
        let state = self.offsets_table_state(database).await?;
        if state.columns == 0 {
            return Ok(false);
        }
        if state.epoch == 0 {
            let added = self
                .execute("add the offsets epoch", database, &add_epoch_sql(database))
                .await;
            // Another instance may have added it meanwhile.
            if let Err(e) = added
                && self.offsets_table_state(database).await?.epoch == 0
            {
                return Err(e);
            }
            tracing::info!(database, "Offsets table upgraded with an epoch column");
        }
        self.offsets_ready.lock().await.insert(database.to_owned());
        Ok(true)
    }

    /// Creates the database's offsets table when missing (the database must exist) and upgrades
    /// an older one.
    pub(super) async fn create_offsets_table(&self, database: &str) -> Result<(), Error> {
        self.execute(
            "create offsets table",
            database,
            &ddl::create_offsets_table_sql(database),
        )
        .await?;
        self.migrate_offsets(database).await.map(|_| ())
    }

    fn remember_epoch(&self, group: &str, topic: &str, partition: i32, epoch: u64) {
        if let Ok(mut epochs) = self.epochs.lock() {
            let e = epochs
                .entry((group.to_owned(), topic.to_owned(), partition))
                .or_insert(epoch);
            *e = (*e).max(epoch);
        }
    }

    fn known_epoch(&self, group: &str, topic: &str, partition: i32) -> Option<u64> {
        self.epochs
            .lock()
            .ok()?
            .get(&(group.to_owned(), topic.to_owned(), partition))
            .copied()
    }

    /// Stored next offset and epoch per partition of `group` on `topic` (empty when nothing is
    /// stored yet); remembers the epochs for later writes.
    pub(super) async fn fetch_stored(
        &self,
        database: &str,
        group: &str,
        topic: &str,
    ) -> Result<BTreeMap<i32, (i64, u64)>, Error> {
        if !self.migrate_offsets(database).await? {
            return Ok(BTreeMap::new());
        }
        let rows = match self
            .timed(
                "read offsets",
                database,
                self.client
                    .query(&select_offsets_sql(database))
                    .bind(group)
                    .bind(topic)
                    .fetch_all::<StoredOffsetRow>(),
            )
            .await
        {
            Ok(rows) => rows,
            Err(e) if e.is_missing_relation() => return Ok(BTreeMap::new()),
            Err(e) => return Err(e),
        };
        let mut out = BTreeMap::new();
        for r in rows {
            self.remember_epoch(group, topic, r.partition, r.max_epoch);
            out.insert(r.partition, (r.next, r.max_epoch));
        }
        Ok(out)
    }

    /// The epoch to write with each offset (the partition's current one; looked up when this
    /// process has not seen the partition yet).
    pub(super) async fn epochs_for(
        &self,
        database: &str,
        group: &str,
        offsets: &[NextOffset],
    ) -> Result<HashMap<(String, i32), u64>, Error> {
        let mut out = HashMap::new();
        let mut looked_up: Vec<&str> = Vec::new();
        for o in offsets {
            let epoch = match self.known_epoch(group, &o.topic, o.partition) {
                Some(e) => e,
                None => {
                    if !looked_up.contains(&o.topic.as_str()) {
                        looked_up.push(&o.topic);
                        self.fetch_stored(database, group, &o.topic).await?;
                    }
                    let e = self.known_epoch(group, &o.topic, o.partition).unwrap_or(0);
                    self.remember_epoch(group, &o.topic, o.partition, e);
                    e
                }
            };
            out.insert((o.topic.clone(), o.partition), epoch);
        }
        Ok(out)
    }

    /// An operator's replay: stores `offsets` under a new epoch per partition, so they win over
    /// any higher offset stored before, and forgets the crash-recovery skip marks of those
    /// partitions (the replayed events must be applied again).
    pub(super) async fn rewind(&self, group: &str, offsets: &[NextOffset]) -> Result<(), Error> {
        let mut by_topic: BTreeMap<&str, Vec<NextOffset>> = BTreeMap::new();
        for o in offsets {
            by_topic
                .entry(o.topic.as_str())
                .or_default()
                .push(o.clone());
        }
        for (topic, offsets) in by_topic {
            let Ok(Topic::Table { keyspace, .. }) = Topic::parse(topic) else {
                return Err(Error::Topic {
                    topic: topic.to_owned(),
                });
            };
            let database = self.settings.database(&keyspace);
            self.execute(
                "create database",
                &database,
                &ddl::create_database_sql(&database),
            )
            .await?;
            self.create_offsets_table(&database).await?;
            let stored = self.fetch_stored(&database, group, topic).await?;
            let mut epochs = HashMap::new();
            for o in &offsets {
                let current = stored
                    .get(&o.partition)
                    .map_or(0, |(_, e)| *e)
                    .max(self.known_epoch(group, topic, o.partition).unwrap_or(0));
                epochs.insert(o.partition, current + 1);
            }
            self.insert(
                "replay offsets",
                &database,
                insert_offsets_sql(&database),
                None,
                encode_offsets(group, &offsets, |o| {
                    epochs.get(&o.partition).copied().unwrap_or(1)
                }),
            )
            .await?;
            for o in &offsets {
                let epoch = epochs.get(&o.partition).copied().unwrap_or(1);
                self.remember_epoch(group, topic, o.partition, epoch);
            }
            if let Ok(mut present) = self.present.lock() {
                for o in &offsets {
                    present.remove(&(o.topic.clone(), o.partition));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_depend_on_the_offset_ranges_and_the_payload() {
        let t = "cdc.masked.ks.t";
        let a = dedup_token("g", t, [(0, 5), (1, 9), (0, 7), (0, 6)], b"rows");
        let b = dedup_token("g", t, [(1, 9), (0, 7), (0, 5)], b"rows");
        assert_eq!(a, "cdc/g/cdc.masked.ks.t/0:5-7,1:9-9/a3a7061ff10a8138");
        assert_eq!(a, b);
        assert_ne!(a, dedup_token("g", t, [(0, 5), (0, 8)], b"rows"));
        assert_ne!(a, dedup_token("h", t, [(0, 5), (0, 7), (1, 9)], b"rows"));
        assert_ne!(
            a,
            dedup_token("g", t, [(0, 5), (0, 7), (1, 9)], b"other rows")
        );
    }

    #[test]
    fn offsets_encode_as_row_binary() {
        let rows = encode_offsets(
            "g",
            &[NextOffset {
                topic: "t".into(),
                partition: 2,
                next_offset: 10,
            }],
            |_| 3,
        );
        assert_eq!(
            hex::encode(rows),
            "0167017402000000".to_owned() + "0a00000000000000" + "0300000000000000"
        );
        assert!(insert_offsets_sql("ks").contains("`ks`.`_cdc_offsets`"));
        assert!(insert_offsets_sql("ks").contains("`epoch`"));
        assert!(
            select_offsets_sql("ks").contains("argMax(`next_offset`, (`epoch`, `next_offset`))")
        );
    }
}
