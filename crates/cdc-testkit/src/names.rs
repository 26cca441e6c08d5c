//! Unique names so tests never share keyspaces, topics, tables or consumer groups.

use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `<prefix>_<8 hex of a v4 uuid>_<n>`, lower case, valid as
/// a Cassandra keyspace/table, PostgreSQL identifier, ClickHouse database and Kafka topic.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{}_{}_{}", prefix.to_ascii_lowercase(), &id[..8], n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_identifier_safe() {
        let a = unique_name("Ks");
        let b = unique_name("Ks");
        assert_ne!(a, b);
        assert!(a.starts_with("ks_"));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
        assert!(
            a.len() <= 48,
            "Cassandra names are limited to 48 characters"
        );
    }
}
