//! Pure parser of Cassandra commit-log and CDC segments: descriptor, sync sections, mutations and
//! `_cdc.idx`. Bytes in, typed structures out. No I/O, no Kafka, no schema lookups.
