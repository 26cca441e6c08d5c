//! Masking policy (classes and strategies per table and column) and the strategies themselves:
//! keyed hashing, tokenization, passthrough, redaction, partial masking; the audit record of a
//! batch; and the token-vault client. Pure logic except [`vault`], which is reached through the
//! [`TokenVault`] trait. Never logs, prints or returns a value it masks.

pub mod audit;
mod error;
pub mod event_mask;
mod keys;
pub mod policy;
pub mod strategy;
pub mod vault;

pub use cdc_model::ErrorClass;
pub use error::Error;
pub use event_mask::{MaskedEvent, MaskedField, Masker, masked_type};
pub use keys::KeyRing;
pub use policy::{
    Class, ColumnRule, Decision, OnUnclassifiedMatch, Policy, PolicyContext, Strategy,
};
pub use strategy::VaultEntry;
pub use vault::{PgTokenVault, TokenVault, VaultReader, migrate};

pub use cdc_model::headers::{
    CORRELATION_ID as CORRELATION_ID_HEADER, POLICY_VERSION as POLICY_VERSION_HEADER,
};
