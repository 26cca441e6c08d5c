//! Unique names so tests never share keyspaces, topics, tables or consumer groups.

use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Cassandra's limit on keyspace and table names (the tightest of the systems named below).
pub const MAX_NAME_LEN: usize = 48;

/// A name unique to this process and call: `<prefix>_<8 hex of a v4 uuid>_<n>`, lower case, valid as
/// a Cassandra keyspace/table, PostgreSQL identifier, ClickHouse database and Kafka topic. A long
/// prefix is shortened so the whole name fits in [`MAX_NAME_LEN`] (the unique tail is kept).
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let tail = format!("_{}_{n}", &id[..8]);
    let mut prefix = prefix.to_ascii_lowercase();
    prefix.truncate(MAX_NAME_LEN.saturating_sub(tail.len()));
    format!("{prefix}{tail}")
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

    #[test]
    fn a_long_prefix_is_shortened_to_fit_cassandra() {
        let prefix = "chaos_long_timescale_refuses_connections_to_the_sink";
        let a = unique_name(prefix);
        let b = unique_name(prefix);
        assert_ne!(a, b, "the unique tail survives the shortening");
        assert!(a.len() <= MAX_NAME_LEN, "{a} is {} characters", a.len());
        assert!(a.starts_with("chaos_long_timescale"), "{a}");
    }
}
