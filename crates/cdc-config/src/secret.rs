//! Secret references (`env:NAME`, `file:/path`, `vault:<mount>/<path>#<field>`, `plain:<value>`) and their
//! resolution. Parsing is pure; only [`SecretRef::resolve`] reads the environment, files or Vault.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;
use crate::vault;

const FORMS: &str =
    "`env:NAME`, `file:/absolute/path`, `vault:<mount>/<path>#<field>` or `plain:<value>`";

/// Where a secret lives. The reference itself is safe to log; the resolved value never is.
///
/// `plain:` embeds the value in the configuration. It exists for local development only and is
/// discouraged: its value is redacted in `Debug`, `Display` and serialization.
#[derive(Clone)]
#[non_exhaustive]
pub enum SecretRef {
    /// Read the environment variable `var` at start-up.
    Env {
        /// Variable name.
        var: String,
    },
    /// Read the whole file (a trailing newline is removed), e.g. a mounted Kubernetes secret.
    File {
        /// Absolute path of the file.
        path: PathBuf,
    },
    /// HashiCorp Vault KV v2: `GET {VAULT_ADDR}/v1/<mount>/data/<path>`, field `<field>` of `data.data`.
    Vault {
        /// Secrets engine mount, e.g. `kv`.
        mount: String,
        /// Secret path below the mount, e.g. `cdc/postgres`.
        path: String,
        /// Field inside the secret's data, e.g. `password`.
        field: String,
    },
    /// The literal value (discouraged).
    Plain(SecretString),
}

impl SecretRef {
    /// True for `plain:` references, which validation may want to flag.
    pub fn is_plain(&self) -> bool {
        matches!(self, SecretRef::Plain(_))
    }

    /// True for `vault:` references.
    pub fn is_vault(&self) -> bool {
        matches!(self, SecretRef::Vault { .. })
    }

    /// True when the value behind the reference can change while the process runs (`file:` and `vault:`),
    /// i.e. when re-resolving it can pick up a rotated secret.
    pub fn can_change(&self) -> bool {
        matches!(self, SecretRef::File { .. } | SecretRef::Vault { .. })
    }

    /// Resolves the secret with Vault settings from `VAULT_ADDR` / `VAULT_TOKEN` and the process
    /// environment. Use [`SecretRef::resolve_with`] to apply the `secrets:` section of the config.
    pub async fn resolve(&self) -> Result<SecretString, Error> {
        self.resolve_with(&SecretResolver::from_env()).await
    }

    /// Resolves the secret with an explicit resolver.
    pub async fn resolve_with(&self, resolver: &SecretResolver) -> Result<SecretString, Error> {
        match self {
            SecretRef::Vault { mount, path, field } => {
                let token = match &resolver.vault_token {
                    Some(r) => resolver.resolve_local(r, self).await?,
                    None => resolver
                        .env_var("VAULT_TOKEN")
                        .map(SecretString::from)
                        .ok_or_else(|| Error::VaultNotConfigured {
                            reference: self.to_string(),
                            missing: "VAULT_TOKEN (or secrets.vault_token)".into(),
                        })?,
                };
                let addr = resolver
                    .vault_addr
                    .clone()
                    .or_else(|| resolver.env_var("VAULT_ADDR"))
                    .ok_or_else(|| Error::VaultNotConfigured {
                        reference: self.to_string(),
                        missing: "VAULT_ADDR (or secrets.vault_addr)".into(),
                    })?;
                let namespace = resolver
                    .vault_namespace
                    .clone()
                    .or_else(|| resolver.env_var("VAULT_NAMESPACE"));
                let request = vault::KvRequest {
                    reference: self.to_string(),
                    addr: &addr,
                    namespace: namespace.as_deref(),
                    token: &token,
                    mount,
                    path,
                    field,
                };
                let value = vault::read_kv2(&resolver.http, request).await?;
                non_empty(value, self)
            }
            other => resolver.resolve_local(other, other).await,
        }
    }
}

fn non_empty(value: SecretString, reference: &SecretRef) -> Result<SecretString, Error> {
    if value.expose_secret().is_empty() {
        Err(Error::SecretEmpty {
            reference: reference.to_string(),
        })
    } else {
        Ok(value)
    }
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl FromStr for SecretRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidSecretRef { reason };
        if let Some(var) = s.strip_prefix("env:") {
            if !valid_env_name(var) {
                return Err(invalid(format!(
                    "`env:` needs a variable name like PG_PASSWORD, got `{s}`"
                )));
            }
            Ok(SecretRef::Env {
                var: var.to_owned(),
            })
        } else if let Some(path) = s.strip_prefix("file:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(invalid(format!(
                    "`file:` needs an absolute path, got `{s}`"
                )));
            }
            Ok(SecretRef::File { path })
        } else if let Some(rest) = s.strip_prefix("vault:") {
            let shape = || {
                invalid(format!(
                    "expected `vault:<mount>/<path>#<field>`, got `{s}`"
                ))
            };
            let (location, field) = rest.split_once('#').ok_or_else(shape)?;
            let (mount, path) = location.split_once('/').ok_or_else(shape)?;
            let bad_segment = |seg: &str| seg.is_empty() || seg == "." || seg == "..";
            if bad_segment(mount) || path.split('/').any(bad_segment) || field.is_empty() {
                return Err(shape());
            }
            Ok(SecretRef::Vault {
                mount: mount.to_owned(),
                path: path.to_owned(),
                field: field.to_owned(),
            })
        } else if let Some(value) = s.strip_prefix("plain:") {
            Ok(SecretRef::Plain(SecretString::from(value.to_owned())))
        } else {
            // Never echo the value: a bare string here is most likely a pasted password.
            Err(invalid(format!(
                "expected {FORMS}; the value has no such prefix (not shown, it may be a secret)"
            )))
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env { var } => write!(f, "env:{var}"),
            SecretRef::File { path } => write!(f, "file:{}", path.display()),
            SecretRef::Vault { mount, path, field } => write!(f, "vault:{mount}/{path}#{field}"),
            SecretRef::Plain(_) => f.write_str("plain:[REDACTED]"),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretRef({self})")
    }
}

impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a secret reference: {FORMS}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretRef, E> {
                v.parse().map_err(|e: Error| match e {
                    Error::InvalidSecretRef { reason } => E::custom(reason),
                    other => E::custom(other),
                })
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Resolves [`SecretRef`]s: environment lookup, file reads and a Vault HTTP client.
#[derive(Clone)]
pub struct SecretResolver {
    http: reqwest::Client,
    vault_addr: Option<String>,
    vault_token: Option<SecretRef>,
    vault_namespace: Option<String>,
    env: EnvLookup,
}

impl fmt::Debug for SecretResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretResolver")
            .field("vault_addr", &self.vault_addr)
            .field("vault_token", &self.vault_token)
            .field("vault_namespace", &self.vault_namespace)
            .finish_non_exhaustive()
    }
}

impl SecretResolver {
    /// A resolver that takes Vault settings from `VAULT_ADDR`, `VAULT_TOKEN` and `VAULT_NAMESPACE`.
    pub fn from_env() -> Self {
        Self::new(&SecretsConfig::default())
    }

    /// A resolver configured by the `secrets:` section; unset values fall back to `VAULT_*` variables.
    pub fn new(config: &SecretsConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.vault_request_timeout_ms))
            .build()
            // Building only fails when the TLS backend cannot initialise; fall back to defaults.
            .unwrap_or_default();
        SecretResolver {
            http,
            vault_addr: config.vault_addr.clone(),
            vault_token: config.vault_token.clone(),
            vault_namespace: config.vault_namespace.clone(),
            env: Arc::new(|name| std::env::var(name).ok()),
        }
    }

    /// Replaces the environment lookup (for embedding and tests); the default reads the process env.
    pub fn with_env_lookup(
        mut self,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.env = Arc::new(lookup);
        self
    }

    /// Convenience for tests: the environment is exactly `vars`.
    pub fn with_env_map(self, vars: BTreeMap<String, String>) -> Self {
        self.with_env_lookup(move |name| vars.get(name).cloned())
    }

    fn env_var(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// Resolves a reference that needs no Vault; `outer` is the reference reported in errors.
    async fn resolve_local(
        &self,
        reference: &SecretRef,
        outer: &SecretRef,
    ) -> Result<SecretString, Error> {
        let value = match reference {
            SecretRef::Env { var } => {
                self.env_var(var).map(SecretString::from).ok_or_else(|| {
                    Error::SecretEnvMissing {
                        reference: reference.to_string(),
                        var: var.clone(),
                    }
                })?
            }
            SecretRef::File { path } => {
                let mut text =
                    tokio::fs::read_to_string(path)
                        .await
                        .map_err(|source| Error::SecretFile {
                            reference: reference.to_string(),
                            source,
                        })?;
                // Files written by editors and `echo` end in a newline that is not part of the secret.
                let keep = text.trim_end_matches(['\n', '\r']).len();
                text.truncate(keep);
                SecretString::from(text)
            }
            SecretRef::Plain(value) => value.clone(),
            SecretRef::Vault { .. } => {
                return Err(Error::VaultNotConfigured {
                    reference: outer.to_string(),
                    missing: "a Vault token given as a `vault:` reference cannot be resolved"
                        .into(),
                });
            }
        };
        non_empty(value, reference)
    }
}

/// How `vault:` references are resolved. Every field falls back to the usual `VAULT_*` variable.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Vault base URL, e.g. `https://vault.internal:8200`; unset = environment variable `VAULT_ADDR`.
    pub vault_addr: Option<String>,
    /// Vault token as an `env:` or `file:` reference; unset = environment variable `VAULT_TOKEN`.
    pub vault_token: Option<SecretRef>,
    /// Vault Enterprise namespace sent as `X-Vault-Namespace`; unset = `VAULT_NAMESPACE` or none.
    pub vault_namespace: Option<String>,
    /// Timeout of one Vault HTTP request, in milliseconds.
    pub vault_request_timeout_ms: u64,
    /// How often [`RefreshingSecret`](crate::RefreshingSecret) handles re-read their `file:` and `vault:`
    /// references, in seconds, so a rotated secret is picked up without a restart; unset = resolved once at
    /// start. `env:` and `plain:` references never change while the process runs.
    pub refresh_interval_secs: Option<u64>,
}

impl SecretsConfig {
    /// The refresh period, when refreshing is on.
    pub fn refresh_interval(&self) -> Option<Duration> {
        self.refresh_interval_secs.map(Duration::from_secs)
    }
}

impl Default for SecretsConfig {
    fn default() -> Self {
        SecretsConfig {
            vault_addr: None,
            vault_token: None,
            vault_namespace: None,
            vault_request_timeout_ms: 10_000,
            refresh_interval_secs: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn parses_every_form() {
        assert!(
            matches!("env:PG_PASSWORD".parse(), Ok(SecretRef::Env { var }) if var == "PG_PASSWORD")
        );
        assert!(
            matches!("file:/run/secrets/pg".parse(), Ok(SecretRef::File { path }) if path == Path::new("/run/secrets/pg"))
        );
        match "vault:kv/cdc/postgres#password".parse::<SecretRef>() {
            Ok(SecretRef::Vault { mount, path, field }) => {
                assert_eq!(
                    (mount.as_str(), path.as_str(), field.as_str()),
                    ("kv", "cdc/postgres", "password")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            "plain:not-a-real-secret".parse(),
            Ok(SecretRef::Plain(_))
        ));
    }

    #[test]
    fn rejects_malformed_without_echoing_bare_values() {
        for bad in [
            "env:",
            "env:1ABC",
            "env:A-B",
            "file:relative/path",
            "vault:kv#x",
            "vault:kv/p",
            "vault:kv/p#",
            "vault:kv/../p#x",
        ] {
            let err = bad.parse::<SecretRef>().expect_err(bad).to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        let err = "hunter2-fake-password"
            .parse::<SecretRef>()
            .expect_err("bare")
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("env:NAME"), "{err}");
    }

    #[test]
    fn display_round_trips_and_redacts_plain() {
        for s in ["env:A_B", "file:/a/b", "vault:kv/a/b#c"] {
            let r: SecretRef = s.parse().expect("valid");
            assert_eq!(r.to_string(), s);
            assert_eq!(format!("{r:?}"), format!("SecretRef({s})"));
        }
        let r: SecretRef = "plain:fake-secret-value".parse().expect("valid");
        assert_eq!(r.to_string(), "plain:[REDACTED]");
        assert!(!format!("{r:?}").contains("fake-secret-value"));
        let json = serde_json::to_string(&r).expect("serialize");
        assert!(!json.contains("fake-secret-value"), "{json}");
    }
}
