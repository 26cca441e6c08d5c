//! Test helpers for integration tests against the local stack: stack addresses, unique names,
//! the fault proxy ([`fault_proxy`]), process control of stack servers and memory readings
//! ([`process`]), the whole pipeline as child processes ([`pipeline`]) and read access to the
//! warehouses ([`warehouse`]), a test OTLP trace collector ([`otlp`]). Never used by production code.
//!
//! Integration tests never skip: when the stack is not running, [`StackEnv::load`] panics with a
//! message telling the developer to run `make stack-up`. A test that cannot reach its server fails.

pub mod fault_proxy;
pub mod names;
pub mod otlp;
pub mod pipeline;
pub mod process;
pub mod stack;
pub mod warehouse;

pub use fault_proxy::FaultProxy;
pub use names::unique_name;
pub use otlp::OtlpCollector;
pub use pipeline::{Destination, PipelineSpec, RunningPipeline, Service};
pub use process::{RestartGuard, StackServer};
pub use stack::StackEnv;
pub use warehouse::Warehouses;
