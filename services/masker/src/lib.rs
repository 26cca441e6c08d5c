//! The masker stage as a library (the binary only wires configuration to it): consume `cdc.raw.*`
//! read_committed, mask every event with the policy in force, produce `cdc.masked.<ks>.<t>` to the
//! same partition, with dead letters and the consumed offsets in the same Kafka transaction.

pub mod admin;
mod error;
pub mod pipeline;
pub mod policy_reload;

pub use admin::MaskerAdmin;
pub use error::Error;
pub use pipeline::{AuditWriter, MaskerOptions, Pipeline, StdoutAudit};
pub use policy_reload::{PolicySource, watch_policy};
