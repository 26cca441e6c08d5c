//! The one mapping table from CQL types to PostgreSQL, TimescaleDB and ClickHouse types, and the value
//! conversions that go with it. Pure: no connections.

pub mod clickhouse;
pub mod order;
pub mod postgres;
