//! The library side of `cdcctl`: the logic of its commands, testable without a terminal.
//! `src/main.rs` and `src/commands/` only parse arguments, call into here and print.
//!
//! - [`loadgen`]: the load generator of `cdcctl load` (operation mix, key space, fake values,
//!   rate control, report);
//! - [`verifier`]: `cdcctl verify` — Cassandra against each destination, row by row or by token
//!   range ([`token`] computes Cassandra's Murmur3 tokens), masked columns compared through the
//!   masking function ([`masking`]), values in one canonical form ([`canon`], [`compare`]);
//! - [`auditor`]: `cdcctl audit` — classified columns hold only masked forms, unclassified text
//!   holds nothing PII-looking ([`pii`]);
//! - [`cassandra`] and [`destinations`]: reading Cassandra and the destinations' live views.
//!
//! Nothing here prints or returns a value of a classified column, a secret or a plaintext from
//! the token vault; `verify` and `audit` never write to any destination or to the vault.

pub mod auditor;
pub mod canon;
pub mod cassandra;
pub mod compare;
pub mod destinations;
pub mod loadgen;
pub mod masking;
pub mod pii;
pub mod token;
pub mod verifier;
