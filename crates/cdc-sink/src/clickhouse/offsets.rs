//! Exactly-once bookkeeping: deduplication tokens and the offsets table. Pure.
//!
//! A batch is inserted into the state table as one insert whose `insert_deduplication_token` is
//! derived from what it holds — consumer group, topic, per Kafka partition the first and last
//! offset of its events, and a hash of the encoded rows — so retrying the same batch (the
//! framework retries a failed `write_batch` with the same batch) is dropped by the server
//! (`non_replicated_deduplication_window` is set on the table). The offsets are written *after* the rows, to `_cdc_offsets`
//! (a `ReplacingMergeTree` versioned by `next_offset`, read with `max`), so they never run ahead.
//!
//! A crash between the rows and the offsets leaves rows whose offsets are not stored. After a
//! restart the framework may cut the replayed events into different batches, so the token alone
//! cannot be relied upon: on partition assignment the adapter also reads the highest offset present
//! in the state table per partition and skips replayed events at or below it (an insert is one
//! block, hence atomic). Both mechanisms only avoid raw duplicates: the view is an argMax by
//! writetime, so a duplicate row could never show there anyway.

use std::collections::BTreeMap;

use cdc_typemap::clickhouse::{quote_ident, write_string};

use super::ddl::OFFSETS_TABLE;
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
        "INSERT INTO {}.{} (`consumer_group`, `topic`, `partition`, `next_offset`) FORMAT RowBinary",
        quote_ident(database),
        quote_ident(OFFSETS_TABLE)
    )
}

/// RowBinary rows for [`insert_offsets_sql`].
pub fn encode_offsets(group: &str, offsets: &[NextOffset]) -> Vec<u8> {
    let mut out = Vec::new();
    for o in offsets {
        write_string(group.as_bytes(), &mut out);
        write_string(o.topic.as_bytes(), &mut out);
        out.extend_from_slice(&o.partition.to_le_bytes());
        out.extend_from_slice(&o.next_offset.to_le_bytes());
    }
    out
}

/// Stored next offsets of one group and topic, per partition.
pub fn select_offsets_sql(database: &str) -> String {
    format!(
        "SELECT `partition`, max(`next_offset`) AS `next` FROM {}.{} \
         WHERE `consumer_group` = ? AND `topic` = ? GROUP BY `partition`",
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
        );
        assert_eq!(
            hex::encode(rows),
            "0167017402000000".to_owned() + "0a00000000000000"
        );
        assert!(insert_offsets_sql("ks").contains("`ks`.`_cdc_offsets`"));
    }
}
