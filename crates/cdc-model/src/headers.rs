//! Kafka header names every stage agrees on. Values are ASCII text.

/// The event's correlation id (`<node>:<segment>:<position>:<index>`), set by capture and kept by
/// every later stage.
pub const CORRELATION_ID: &str = "cdc-correlation-id";
/// The table's schema-history version the event was decoded with (decimal), set by capture.
pub const SCHEMA_VERSION: &str = "cdc-schema-version";
/// The masking-policy version an event was masked under (decimal), set by the masker.
pub const POLICY_VERSION: &str = "cdc-policy-version";
