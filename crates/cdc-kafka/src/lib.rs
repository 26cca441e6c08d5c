//! The only place Kafka clients are configured: transactional producer, read_committed consumer and
//! topic admin. Other crates never call `ClientConfig::set` themselves.
