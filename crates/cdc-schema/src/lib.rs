//! Cassandra table schemas read from `system_schema` over CQL, kept as versions so each mutation is
//! decoded with the schema in force when it was written. Owns CQL value decoding into `cdc-model`.
