//! Pure comparison of one table's rows: Cassandra's (masked, canonical) rows against one
//! destination's, keyed by primary key; and order-independent digests per token range for tables
//! too large to hold in memory.
//!
//! Row keys are the JSON array of the canonical key values (partition then clustering key). They
//! are shown only through [`display_key`], which hashes them when a key column is classified.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::canon::Canon;

/// The key string of a row: the JSON array of its canonical key values.
pub fn key_string(key: &[Canon]) -> String {
    serde_json::to_string(key).unwrap_or_default()
}

/// A short hash of a key (`key#<16 hex>`), shown instead of the key when it may hold PII.
pub fn hashed_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("key#{}", hex::encode(&digest[..8]))
}

/// How a key is shown: as is, or hashed when `classified`.
pub fn display_key(key: &str, classified: bool) -> String {
    if classified {
        hashed_key(key)
    } else {
        key.to_owned()
    }
}

/// A 128-bit digest of one row (key and values).
pub fn row_digest(key: &str, values: &[Canon]) -> u128 {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update([0u8]);
    h.update(serde_json::to_string(values).unwrap_or_default().as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    u128::from_le_bytes(b)
}

/// A 64-bit hash of a key (duplicate detection without keeping keys).
pub fn key_hash64(key: &str) -> u64 {
    let d = Sha256::digest(key.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

/// The bucket of a key when tokens cannot be computed from the destination's form of the key
/// (a masked partition key): a hash of the partition-key part, the same on both sides.
pub fn key_bucket(partition_key: &[Canon], ranges: u32) -> u32 {
    (key_hash64(&key_string(partition_key)) % u64::from(ranges.max(1))) as u32
}

/// Order-independent digest of a set of rows: count and wrapping sum of row digests (a sum, not a
/// XOR, so a duplicated row changes it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeDigest {
    pub rows: u64,
    pub sum: u128,
}

impl RangeDigest {
    /// Adds one row.
    pub fn add(&mut self, digest: u128) {
        self.rows += 1;
        self.sum = self.sum.wrapping_add(digest);
    }
}

/// Indexes of the ranges whose digests differ.
pub fn differing_ranges(expected: &[RangeDigest], actual: &[RangeDigest]) -> Vec<u32> {
    (0..expected.len().max(actual.len()))
        .filter(|i| expected.get(*i) != actual.get(*i))
        .map(|i| i as u32)
        .collect()
}

/// One row difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Difference {
    /// In Cassandra, not in the destination.
    Missing { key: String },
    /// In the destination, not in Cassandra.
    Extra { key: String },
    /// In both, with different values in these columns (names only, never values).
    Stale { key: String, columns: Vec<String> },
    /// The same primary key appears `copies` times in the destination's live view.
    Duplicate { key: String, copies: u64 },
}

/// Counts and the first differences of one comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RowComparison {
    pub missing: u64,
    pub extra: u64,
    pub stale: u64,
    pub duplicate: u64,
    /// At most `max_details` differences, keys shown through [`display_key`].
    pub details: Vec<Difference>,
}

impl RowComparison {
    /// Whether nothing differs.
    pub fn is_clean(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.stale == 0 && self.duplicate == 0
    }

    fn push(&mut self, d: Difference, max: usize) {
        if self.details.len() < max {
            self.details.push(d);
        }
    }
}

/// Rows of the destination: values of the first copy seen and how many copies were seen.
pub type ActualRows = BTreeMap<String, (Vec<Canon>, u64)>;

/// Compares rows key by key. `columns` names the values (same order in both maps);
/// `classified_key` makes keys show hashed.
pub fn compare_rows(
    columns: &[String],
    expected: &BTreeMap<String, Vec<Canon>>,
    actual: &ActualRows,
    classified_key: bool,
    max_details: usize,
) -> RowComparison {
    let mut out = RowComparison::default();
    let show = |k: &str| display_key(k, classified_key);
    for (key, want) in expected {
        match actual.get(key) {
            None => {
                out.missing += 1;
                out.push(Difference::Missing { key: show(key) }, max_details);
            }
            Some((got, _)) => {
                let differing: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| want.get(*i) != got.get(*i))
                    .map(|(_, c)| c.clone())
                    .collect();
                if !differing.is_empty() {
                    out.stale += 1;
                    out.push(
                        Difference::Stale {
                            key: show(key),
                            columns: differing,
                        },
                        max_details,
                    );
                }
            }
        }
    }
    for (key, (_, copies)) in actual {
        if !expected.contains_key(key) {
            out.extra += 1;
            out.push(Difference::Extra { key: show(key) }, max_details);
        }
        if *copies > 1 {
            out.duplicate += 1;
            out.push(
                Difference::Duplicate {
                    key: show(key),
                    copies: *copies,
                },
                max_details,
            );
        }
    }
    out
}

/// Adds a destination row to `rows`, counting copies of a key already seen.
pub fn add_actual(rows: &mut ActualRows, key: String, values: Vec<Canon>) {
    rows.entry(key)
        .and_modify(|(_, n)| *n += 1)
        .or_insert((values, 1));
}

/// Keys seen more than once, by 64-bit key hash (for tables compared by range digests).
#[derive(Debug, Default)]
pub struct DuplicateCounter {
    seen: std::collections::HashSet<u64>,
    duplicated: BTreeSet<u64>,
}

impl DuplicateCounter {
    /// Records a key; true when it was seen before.
    pub fn add(&mut self, key: &str) -> bool {
        let h = key_hash64(key);
        if !self.seen.insert(h) {
            self.duplicated.insert(h);
            true
        } else {
            false
        }
    }

    /// Number of distinct keys seen more than once.
    pub fn duplicated_keys(&self) -> u64 {
        self.duplicated.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Canon {
        Some(s.to_owned())
    }

    #[test]
    fn rows_are_classified_as_missing_extra_stale_duplicate() {
        let cols = vec!["email".to_owned(), "age".to_owned()];
        let mut expected = BTreeMap::new();
        expected.insert(key_string(&[c("1")]), vec![c("hash_a"), c("30")]);
        expected.insert(key_string(&[c("2")]), vec![c("hash_b"), c("31")]);
        expected.insert(key_string(&[c("3")]), vec![c("hash_c"), None]);
        let mut actual = ActualRows::new();
        add_actual(
            &mut actual,
            key_string(&[c("1")]),
            vec![c("hash_a"), c("30")],
        );
        add_actual(
            &mut actual,
            key_string(&[c("1")]),
            vec![c("hash_a"), c("30")],
        );
        add_actual(
            &mut actual,
            key_string(&[c("3")]),
            vec![c("hash_c"), c("99")],
        );
        add_actual(&mut actual, key_string(&[c("4")]), vec![None, None]);
        let r = compare_rows(&cols, &expected, &actual, false, 10);
        assert_eq!((r.missing, r.extra, r.stale, r.duplicate), (1, 1, 1, 1));
        assert!(r.details.contains(&Difference::Missing {
            key: "[\"2\"]".into()
        }));
        assert!(r.details.contains(&Difference::Stale {
            key: "[\"3\"]".into(),
            columns: vec!["age".into()]
        }));
        assert!(r.details.contains(&Difference::Duplicate {
            key: "[\"1\"]".into(),
            copies: 2
        }));
        let hashed = compare_rows(&cols, &expected, &actual, true, 1);
        assert_eq!(hashed.details.len(), 1);
        assert!(
            !serde_json::to_string(&hashed.details)
                .unwrap()
                .contains("\\\"2\\\"")
        );
    }

    #[test]
    fn digests_ignore_order_but_not_duplicates() {
        let rows = [("a", vec![c("1")]), ("b", vec![c("2")])];
        let mut x = RangeDigest::default();
        let mut y = RangeDigest::default();
        x.add(row_digest(rows[0].0, &rows[0].1));
        x.add(row_digest(rows[1].0, &rows[1].1));
        y.add(row_digest(rows[1].0, &rows[1].1));
        y.add(row_digest(rows[0].0, &rows[0].1));
        assert_eq!(x, y);
        y.add(row_digest(rows[0].0, &rows[0].1));
        assert_ne!(x, y);
        assert_eq!(differing_ranges(&[x, x], &[x, y]), vec![1]);
        let mut stale = RangeDigest::default();
        stale.add(row_digest(rows[0].0, &[c("9")]));
        stale.add(row_digest(rows[1].0, &rows[1].1));
        assert_ne!(x, stale);
    }

    #[test]
    fn duplicate_counter_counts_keys() {
        let mut d = DuplicateCounter::default();
        assert!(!d.add("a"));
        assert!(d.add("a"));
        assert!(d.add("a"));
        assert!(!d.add("b"));
        assert_eq!(d.duplicated_keys(), 1);
        assert_eq!(hashed_key("x").len(), 4 + 16);
    }
}
