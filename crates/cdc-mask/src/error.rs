//! The crate's error type. Messages name files, keys, tables and columns — never values.

use cdc_model::ErrorClass;

/// Everything that can go wrong while loading a policy, masking an event or talking to the vault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The policy file could not be read.
    #[error("policy {file}: cannot read: {source}")]
    PolicyRead {
        file: String,
        #[source]
        source: std::io::Error,
    },

    /// The policy file is not valid YAML of the expected shape, or a key holds a bad value.
    #[error("policy {file}: key `{key}`: {reason}")]
    PolicyInvalid {
        file: String,
        key: String,
        reason: String,
    },

    /// A key id used by the policy (or the vault) has no key material.
    #[error(
        "policy {file}: key `{key}`: masking key id `{key_id}` is not configured (masker.keys)"
    )]
    MissingKey {
        file: String,
        key: String,
        key_id: String,
    },

    /// Key material that cannot be used (e.g. an AES key that is not 32 bytes).
    #[error("masking key `{key_id}` is unusable: {reason}")]
    BadKey { key_id: String, reason: String },

    /// A column whose strategy cannot be applied to its value (fail closed: the event goes to the DLQ).
    #[error("column `{column}` of {table}: {reason}")]
    Unmaskable {
        table: String,
        column: String,
        reason: String,
    },

    /// An unclassified column matched a default rule while `on_unclassified_match: fail`.
    #[error("column `{column}` of {table} matches default rule `{rule}` but is not classified")]
    UnclassifiedMatch {
        table: String,
        column: String,
        rule: String,
    },

    /// The event envelope could not be decoded or re-encoded.
    #[error("event codec: {0}")]
    Codec(#[from] cdc_model::Error),

    /// A token vault statement failed.
    #[error("token vault {op}: {source}")]
    Vault {
        op: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    /// The vault holds no row for a token.
    #[error("token vault: unknown token")]
    UnknownToken,

    /// Encryption or decryption of a vault entry failed (wrong key or tampered row).
    #[error("token vault: cannot {op} (wrong key or tampered ciphertext)")]
    Crypto { op: &'static str },
}

impl Error {
    /// Retriable (vault connectivity), Poison (this event cannot be masked) or Fatal (configuration).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::PolicyRead { .. }
            | Error::PolicyInvalid { .. }
            | Error::MissingKey { .. }
            | Error::BadKey { .. } => ErrorClass::Fatal,
            Error::Unmaskable { .. } | Error::UnclassifiedMatch { .. } | Error::Codec(_) => {
                ErrorClass::Poison
            }
            Error::Vault { source, .. } => vault_class(source),
            Error::UnknownToken | Error::Crypto { .. } => ErrorClass::Poison,
        }
    }
}

fn vault_class(e: &tokio_postgres::Error) -> ErrorClass {
    use tokio_postgres::error::SqlState;
    match e.code() {
        None => ErrorClass::Retriable,
        Some(c)
            if *c == SqlState::INSUFFICIENT_PRIVILEGE
                || *c == SqlState::INVALID_PASSWORD
                || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                || *c == SqlState::UNDEFINED_TABLE
                || *c == SqlState::UNDEFINED_FUNCTION
                || *c == SqlState::INVALID_SCHEMA_NAME =>
        {
            ErrorClass::Fatal
        }
        Some(c)
            if c.code().starts_with("08")
                || c.code().starts_with("57")
                || c.code() == "40001"
                || c.code() == "40P01"
                || c.code().starts_with("53") =>
        {
            ErrorClass::Retriable
        }
        Some(_) => ErrorClass::Poison,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let fatal = Error::MissingKey {
            file: "p.yaml".into(),
            key: "tables.a.b.columns.c.key_id".into(),
            key_id: "k".into(),
        };
        assert_eq!(fatal.class(), ErrorClass::Fatal);
        assert!(fatal.to_string().contains("p.yaml"));
        assert!(fatal.to_string().contains("tables.a.b.columns.c.key_id"));
        let poison = Error::Unmaskable {
            table: "ks.t".into(),
            column: "email".into(),
            reason: "counter columns cannot be masked".into(),
        };
        assert_eq!(poison.class(), ErrorClass::Poison);
        assert_eq!(
            Error::UnclassifiedMatch {
                table: "ks.t".into(),
                column: "email".into(),
                rule: "email".into()
            }
            .class(),
            ErrorClass::Poison
        );
        assert_eq!(Error::Crypto { op: "decrypt" }.class(), ErrorClass::Poison);
        assert_eq!(
            Error::BadKey {
                key_id: "k".into(),
                reason: "short".into()
            }
            .class(),
            ErrorClass::Fatal
        );
    }
}
