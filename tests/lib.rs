//! Integration tests against the real local stack live in this package's test targets; see `stack.rs`.
