//! Integration tests of the sink framework and the PostgreSQL/TimescaleDB adapters against the
//! local stack (`make stack-up`). They fail, never skip, when the stack is down.

#[path = "../common/mod.rs"]
mod common;

mod cassandra_semantics;
mod evolution;
mod framework;
mod postgres;
mod timescale_hypertable;
mod typemap_pg;
