//! Test helpers for integration tests against the local stack: stack addresses, unique names,
//! consistency checking and the fault proxy. Never used by production code.
//!
//! Integration tests never skip: when the stack is not running, [`StackEnv::load`] panics with a
//! message telling the developer to run `make stack-up`. A test that cannot reach its server fails.

pub mod fault_proxy;
pub mod names;
pub mod stack;

pub use fault_proxy::FaultProxy;
pub use names::unique_name;
pub use stack::StackEnv;
