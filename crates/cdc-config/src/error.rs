//! The crate's one error type and its retry class.

use std::fmt;
use std::path::PathBuf;

/// How the caller should react to an error (ARCHITECTURE.md §8); shared by every crate.
pub use cdc_model::ErrorClass;

/// One problem found in the configuration, located by origin and key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Where the offending value came from: the file path or `environment variable CDC__...`.
    pub origin: String,
    /// Dotted key path, e.g. `sinks.postgres.batch.max_rows`.
    pub key: String,
    /// What was wrong and what was expected. Never contains a secret value.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(f, "{}: {}: {}", self.origin, self.key, self.message)
        }
    }
}

struct IssueList<'a>(&'a [Issue]);

impl fmt::Display for IssueList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

/// Errors from loading, validating and resolving configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file could not be read.
    #[error("{}: cannot read configuration file: {source}", file.display())]
    Read {
        /// The file that was asked for.
        file: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file or an environment override is not valid YAML or does not match the schema
    /// (unknown key, wrong type, bad secret reference).
    #[error("{}", IssueList(issues))]
    Parse {
        /// Every problem figment reported.
        issues: Vec<Issue>,
    },
    /// The configuration parsed but a value is out of range or inconsistent.
    #[error("{}", IssueList(issues))]
    Invalid {
        /// Every violated rule.
        issues: Vec<Issue>,
    },
    /// A secret reference string does not have a known form.
    #[error("invalid secret reference: {reason}")]
    InvalidSecretRef {
        /// What is wrong; never echoes the raw value.
        reason: String,
    },
    /// `env:NAME` names a variable that is not set or not UTF-8.
    #[error("secret {reference}: environment variable {var} is not set")]
    SecretEnvMissing {
        /// The reference as written (no secret in it).
        reference: String,
        /// The variable name.
        var: String,
    },
    /// `file:/path` could not be read.
    #[error("secret {reference}: cannot read file: {source}")]
    SecretFile {
        /// The reference as written.
        reference: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The secret resolved to an empty string.
    #[error("secret {reference}: resolved to an empty value")]
    SecretEmpty {
        /// The reference as written.
        reference: String,
    },
    /// A `vault:` reference was used but no Vault address or token is configured.
    #[error("secret {reference}: Vault is not configured: {missing}")]
    VaultNotConfigured {
        /// The reference as written.
        reference: String,
        /// What is missing (`VAULT_ADDR`, `VAULT_TOKEN`, ...).
        missing: String,
    },
    /// The HTTP request to Vault failed (connect, timeout, TLS).
    #[error("secret {reference}: request to Vault failed: {source}")]
    VaultRequest {
        /// The reference as written.
        reference: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// Vault answered with a non-success status.
    #[error("secret {reference}: Vault answered HTTP {status}")]
    VaultStatus {
        /// The reference as written.
        reference: String,
        /// HTTP status code.
        status: u16,
    },
    /// Vault answered 200 but the body is not a KV v2 secret, or the field is missing or not a string.
    #[error("secret {reference}: {reason}")]
    VaultResponse {
        /// The reference as written.
        reference: String,
        /// What was wrong with the response; never includes the body.
        reason: String,
    },
}

impl Error {
    /// The retry class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::VaultRequest { .. } => ErrorClass::Retriable,
            // 408/429 and server-side failures are transient; 4xx (missing path, denied) is config.
            Error::VaultStatus { status, .. }
                if *status == 408 || *status == 429 || *status >= 500 =>
            {
                ErrorClass::Retriable
            }
            _ => ErrorClass::Fatal,
        }
    }

    /// The issues of a `Parse` or `Invalid` error, empty otherwise.
    pub fn issues(&self) -> &[Issue] {
        match self {
            Error::Parse { issues } | Error::Invalid { issues } => issues,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_variant() {
        let io = || std::io::Error::other("x");
        let cases = [
            (
                Error::Read {
                    file: "p".into(),
                    source: io(),
                },
                ErrorClass::Fatal,
            ),
            (Error::Parse { issues: vec![] }, ErrorClass::Fatal),
            (Error::Invalid { issues: vec![] }, ErrorClass::Fatal),
            (
                Error::InvalidSecretRef { reason: "r".into() },
                ErrorClass::Fatal,
            ),
            (
                Error::SecretEnvMissing {
                    reference: "env:A".into(),
                    var: "A".into(),
                },
                ErrorClass::Fatal,
            ),
            (
                Error::SecretFile {
                    reference: "file:/a".into(),
                    source: io(),
                },
                ErrorClass::Fatal,
            ),
            (
                Error::SecretEmpty {
                    reference: "env:A".into(),
                },
                ErrorClass::Fatal,
            ),
            (
                Error::VaultNotConfigured {
                    reference: "vault:kv/a#b".into(),
                    missing: "VAULT_ADDR".into(),
                },
                ErrorClass::Fatal,
            ),
            (
                Error::VaultStatus {
                    reference: "v".into(),
                    status: 503,
                },
                ErrorClass::Retriable,
            ),
            (
                Error::VaultStatus {
                    reference: "v".into(),
                    status: 429,
                },
                ErrorClass::Retriable,
            ),
            (
                Error::VaultStatus {
                    reference: "v".into(),
                    status: 404,
                },
                ErrorClass::Fatal,
            ),
            (
                Error::VaultStatus {
                    reference: "v".into(),
                    status: 403,
                },
                ErrorClass::Fatal,
            ),
            (
                Error::VaultResponse {
                    reference: "v".into(),
                    reason: "r".into(),
                },
                ErrorClass::Fatal,
            ),
        ];
        for (err, class) in cases {
            assert_eq!(err.class(), class, "{err}");
        }
    }

    #[test]
    fn issues_render_one_per_line() {
        let err = Error::Invalid {
            issues: vec![
                Issue {
                    origin: "pipeline.yaml".into(),
                    key: "a.b".into(),
                    message: "expected x, got y".into(),
                },
                Issue {
                    origin: "pipeline.yaml".into(),
                    key: "c".into(),
                    message: "expected z, got w".into(),
                },
            ],
        };
        assert_eq!(
            err.to_string(),
            "pipeline.yaml: a.b: expected x, got y\npipeline.yaml: c: expected z, got w"
        );
    }
}
