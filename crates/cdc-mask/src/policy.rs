//! The masking policy file: a version, default key ids, per-table column rules and default rules by
//! column-name pattern. Parsing checks every key id against the configured keys so a policy that
//! references a missing secret or an unknown strategy fails at start, naming the file and the key.
//!
//! ```yaml
//! version: 3                        # required, > 0; travels in the cdc-policy-version header
//! hash_key_id: hmac-2025-01         # key id used by `hash` unless a rule says otherwise
//! token_key_id: tok-2025-01         # key id used by `tokenize` unless a rule says otherwise
//! on_unclassified_match: mask       # mask | fail | allow (columns not listed that match a rule)
//! default_rules:                    # optional; omitted = the built-in rules (email, ssn, phone,
//!   - name: email                   #   mrn, dob, passport/national id, card/account numbers);
//!     pattern: "(?i)e_?mail"        #   [] = no default rules
//!     class: pii
//!     strategy: hash
//! tables:
//!   shop.customers:                 # <keyspace>.<table>
//!     email: {class: pii, strategy: hash}
//!     ssn: {class: pii, strategy: hash, key_id: hmac-2025-01}
//!     medical_record_number: {class: phi, strategy: tokenize}
//!     phone: {class: pii, strategy: partial, keep_last: 4}
//!     address.street: {class: pii, strategy: redact, placeholder: "[street]"}   # UDT field
//!     card_token: {class: pii, strategy: passthrough}   # encrypted upstream; audited
//!     nickname: {class: none}       # explicitly readable, even if a default rule matches
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;
use serde_yaml::{Mapping, Value as Yaml};

use crate::{Error, KeyRing};

/// Sensitivity class of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Pii,
    Phi,
    None,
}

impl Class {
    /// `pii`, `phi` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Pii => "pii",
            Class::Phi => "phi",
            Class::None => "none",
        }
    }
}

/// How a classified value is masked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// HMAC-SHA-256 with the key `key_id`: `hash_<64 hex>`.
    Hash { key_id: String },
    /// Deterministic `tok_<32 hex>` (HMAC with `key_id`); the vault keeps the encrypted original.
    Tokenize { key_id: String },
    /// Already encrypted upstream: left as is, recorded in the audit log.
    Passthrough,
    /// Replaced by a fixed placeholder.
    Redact { placeholder: String },
    /// All but the last `keep_last` characters replaced by `*`.
    Partial { keep_last: usize },
}

impl Strategy {
    /// Metric/audit label: `hash`, `tokenize`, `passthrough`, `redact`, `partial`.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Hash { .. } => "hash",
            Strategy::Tokenize { .. } => "tokenize",
            Strategy::Passthrough => "passthrough",
            Strategy::Redact { .. } => "redact",
            Strategy::Partial { .. } => "partial",
        }
    }

    /// The key id, for strategies that use one.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Strategy::Hash { key_id } | Strategy::Tokenize { key_id } => Some(key_id),
            _ => None,
        }
    }

    /// Distinct inputs give distinct outputs (safe on primary-key columns).
    pub fn is_injective(&self) -> bool {
        matches!(
            self,
            Strategy::Hash { .. } | Strategy::Tokenize { .. } | Strategy::Passthrough
        )
    }
}

/// A classified column's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRule {
    pub class: Class,
    pub strategy: Strategy,
}

/// What to do with a column that is not listed but matches a default rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnclassifiedMatch {
    /// Mask it with the rule's strategy.
    Mask,
    /// Refuse the event (dead letter) until the policy classifies the column.
    Fail,
    /// Let it through readable.
    Allow,
}

/// A default rule: columns whose name matches `pattern` are treated as `rule`.
#[derive(Debug, Clone)]
pub struct DefaultRule {
    pub name: String,
    pub pattern: Regex,
    pub rule: ColumnRule,
}

/// What the policy says about one column (or UDT field `col.field`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Readable as is.
    Clear,
    /// Mask with this rule.
    Mask(ColumnRule),
    /// Unclassified but matches the named default rule, and the policy says fail.
    Fail { rule: String },
}

/// A parsed, checked masking policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Policy version (header `cdc-policy-version`, metric `cdc_masker_policy_version`).
    pub version: u64,
    /// Where it was loaded from (for messages).
    pub file: String,
    tables: BTreeMap<String, BTreeMap<String, Option<ColumnRule>>>,
    default_rules: Vec<DefaultRule>,
    on_unclassified_match: OnUnclassifiedMatch,
}

/// What parsing checks the policy against.
#[derive(Debug, Clone, Copy)]
pub struct PolicyContext<'a> {
    /// The configured keys; every key id the policy uses must be here.
    pub keys: &'a KeyRing,
    /// Whether a token vault is configured (`tokenize` needs one).
    pub vault_configured: bool,
}

const STRATEGIES: &str = "hash, tokenize, passthrough, redact, partial";

const BUILTIN_RULES: &[(&str, &str, Class, &str)] = &[
    ("email", r"(?i)e_?mail", Class::Pii, "hash"),
    (
        "ssn",
        r"(?i)(^|_)(ssn|social_security(_number|_no)?)($|_)",
        Class::Pii,
        "hash",
    ),
    (
        "phone",
        r"(?i)(phone|mobile|msisdn|(^|_)fax($|_))",
        Class::Pii,
        "hash",
    ),
    (
        "mrn",
        r"(?i)(^|_)(mrn|medical_record(_number|_no)?)($|_)",
        Class::Phi,
        "tokenize",
    ),
    (
        "dob",
        r"(?i)(^|_)(dob|date_of_birth|birth_?date|birthday)($|_)",
        Class::Pii,
        "hash",
    ),
    (
        "national_id",
        r"(?i)(passport|national_id|tax_id|driver_?licen[cs]e)",
        Class::Pii,
        "hash",
    ),
    (
        "financial_account",
        r"(?i)(credit_?card|card_number|iban|account_number)",
        Class::Pii,
        "hash",
    ),
];

struct Parser<'a> {
    file: String,
    ctx: PolicyContext<'a>,
    hash_key_id: Option<String>,
    token_key_id: Option<String>,
}

impl Parser<'_> {
    fn invalid(&self, key: &str, reason: impl Into<String>) -> Error {
        Error::PolicyInvalid {
            file: self.file.clone(),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    fn string(&self, v: &Yaml, key: &str) -> Result<String, Error> {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.invalid(key, "expected a string"))
    }

    fn mapping<'y>(&self, v: &'y Yaml, key: &str) -> Result<&'y Mapping, Error> {
        v.as_mapping()
            .ok_or_else(|| self.invalid(key, "expected a mapping"))
    }

    fn key_id(
        &self,
        explicit: Option<&Yaml>,
        key: &str,
        default_key: &str,
    ) -> Result<String, Error> {
        let (id, where_) = match explicit {
            Some(v) => (
                self.string(v, &format!("{key}.key_id"))?,
                format!("{key}.key_id"),
            ),
            None => {
                let default = if default_key == "hash_key_id" {
                    &self.hash_key_id
                } else {
                    &self.token_key_id
                };
                match default {
                    Some(id) => (id.clone(), default_key.to_owned()),
                    None => {
                        return Err(self.invalid(
                            key,
                            format!("needs `key_id` or a top-level `{default_key}`"),
                        ));
                    }
                }
            }
        };
        if !self.ctx.keys.contains(&id) {
            return Err(Error::MissingKey {
                file: self.file.clone(),
                key: where_,
                key_id: id,
            });
        }
        Ok(id)
    }

    fn rule(&self, v: &Yaml, key: &str) -> Result<Option<ColumnRule>, Error> {
        let m = self.mapping(v, key)?;
        let allowed = [
            "class",
            "strategy",
            "key_id",
            "placeholder",
            "keep_last",
            "name",
            "pattern",
        ];
        for k in m.keys() {
            let name = k.as_str().unwrap_or("?");
            if !allowed.contains(&name) {
                return Err(self.invalid(&format!("{key}.{name}"), "unknown key"));
            }
        }
        let class = match m.get("class").and_then(Yaml::as_str) {
            Some("pii") => Class::Pii,
            Some("phi") => Class::Phi,
            Some("none") => Class::None,
            Some(other) => {
                return Err(self.invalid(
                    &format!("{key}.class"),
                    format!("unknown class `{other}`, expected pii, phi or none"),
                ));
            }
            None => return Err(self.invalid(&format!("{key}.class"), "missing (pii, phi or none)")),
        };
        let strategy_key = format!("{key}.strategy");
        let strategy = m
            .get("strategy")
            .map(|s| self.string(s, &strategy_key))
            .transpose()?;
        if class == Class::None {
            if strategy.is_some() {
                return Err(self.invalid(&strategy_key, "class none takes no strategy"));
            }
            return Ok(None);
        }
        let Some(strategy) = strategy else {
            return Err(self.invalid(
                &strategy_key,
                format!("missing, expected one of {STRATEGIES}"),
            ));
        };
        let strategy = match strategy.as_str() {
            "hash" => Strategy::Hash {
                key_id: self.key_id(m.get("key_id"), key, "hash_key_id")?,
            },
            "tokenize" => {
                if !self.ctx.vault_configured {
                    return Err(self.invalid(
                        &strategy_key,
                        "tokenize needs a token vault (masker.vault is not configured)",
                    ));
                }
                Strategy::Tokenize {
                    key_id: self.key_id(m.get("key_id"), key, "token_key_id")?,
                }
            }
            "passthrough" => Strategy::Passthrough,
            "redact" => Strategy::Redact {
                placeholder: match m.get("placeholder") {
                    Some(p) => self.string(p, &format!("{key}.placeholder"))?,
                    None => "[REDACTED]".to_owned(),
                },
            },
            "partial" => Strategy::Partial {
                keep_last: match m.get("keep_last") {
                    Some(n) => n
                        .as_u64()
                        .filter(|n| *n <= 64)
                        .map(|n| n as usize)
                        .ok_or_else(|| {
                            self.invalid(&format!("{key}.keep_last"), "expected 0-64")
                        })?,
                    None => 4,
                },
            },
            other => {
                return Err(self.invalid(
                    &strategy_key,
                    format!("unknown strategy `{other}`, expected one of {STRATEGIES}"),
                ));
            }
        };
        if m.contains_key("key_id") && strategy.key_id().is_none() {
            return Err(self.invalid(
                &format!("{key}.key_id"),
                format!("strategy {} uses no key", strategy.name()),
            ));
        }
        Ok(Some(ColumnRule { class, strategy }))
    }
}

impl Policy {
    /// Reads and checks the policy file at `path`.
    pub fn load(path: &Path, ctx: PolicyContext<'_>) -> Result<Policy, Error> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::PolicyRead {
            file: file.clone(),
            source,
        })?;
        Policy::parse(&file, &text, ctx)
    }

    /// Parses and checks policy text; `file` names it in messages.
    pub fn parse(file: &str, text: &str, ctx: PolicyContext<'_>) -> Result<Policy, Error> {
        let invalid = |key: &str, reason: String| Error::PolicyInvalid {
            file: file.to_owned(),
            key: key.to_owned(),
            reason,
        };
        let root: Yaml =
            serde_yaml::from_str(text).map_err(|e| invalid("$", format!("not valid YAML: {e}")))?;
        let mut p = Parser {
            file: file.to_owned(),
            ctx,
            hash_key_id: None,
            token_key_id: None,
        };
        let root = p.mapping(&root, "$")?;
        for k in root.keys() {
            let name = k.as_str().unwrap_or("?");
            if ![
                "version",
                "hash_key_id",
                "token_key_id",
                "on_unclassified_match",
                "default_rules",
                "tables",
            ]
            .contains(&name)
            {
                return Err(invalid(name, "unknown key".into()));
            }
        }
        let version = root
            .get("version")
            .and_then(Yaml::as_u64)
            .filter(|v| *v > 0)
            .ok_or_else(|| invalid("version", "expected an integer > 0".into()))?;
        p.hash_key_id = root
            .get("hash_key_id")
            .map(|v| p.string(v, "hash_key_id"))
            .transpose()?;
        p.token_key_id = root
            .get("token_key_id")
            .map(|v| p.string(v, "token_key_id"))
            .transpose()?;
        let on_unclassified_match = match root
            .get("on_unclassified_match")
            .map(|v| p.string(v, "on_unclassified_match"))
            .transpose()?
            .as_deref()
        {
            None | Some("mask") => OnUnclassifiedMatch::Mask,
            Some("fail") => OnUnclassifiedMatch::Fail,
            Some("allow") => OnUnclassifiedMatch::Allow,
            Some(other) => {
                return Err(invalid(
                    "on_unclassified_match",
                    format!("unknown value `{other}`, expected mask, fail or allow"),
                ));
            }
        };
        let mut default_rules = Vec::new();
        match root.get("default_rules") {
            None => {
                // Built-in rules only bind when they can be applied.
                for (name, pattern, class, strategy) in BUILTIN_RULES {
                    let key = format!("default_rules(builtin {name})");
                    let rule_yaml = serde_yaml::to_value(BTreeMap::from([
                        ("class", class.as_str()),
                        ("strategy", strategy),
                    ]))
                    .map_err(|e| invalid(&key, e.to_string()))?;
                    let rule = match p.rule(&rule_yaml, &key) {
                        Ok(Some(rule)) => rule,
                        Ok(None) => continue,
                        // A built-in tokenize rule without a vault falls back to hashing.
                        Err(_) if *strategy == "tokenize" && p.hash_key_id.is_some() => {
                            ColumnRule {
                                class: *class,
                                strategy: Strategy::Hash {
                                    key_id: p.key_id(None, &key, "hash_key_id")?,
                                },
                            }
                        }
                        Err(e) => return Err(e),
                    };
                    default_rules.push(DefaultRule {
                        name: (*name).to_owned(),
                        pattern: Regex::new(pattern).map_err(|e| invalid(&key, e.to_string()))?,
                        rule,
                    });
                }
            }
            Some(list) => {
                let list = list
                    .as_sequence()
                    .ok_or_else(|| invalid("default_rules", "expected a list".into()))?;
                for (i, item) in list.iter().enumerate() {
                    let key = format!("default_rules[{i}]");
                    let m = p.mapping(item, &key)?;
                    let name = match m.get("name") {
                        Some(n) => p.string(n, &format!("{key}.name"))?,
                        None => format!("rule {i}"),
                    };
                    let pattern = m
                        .get("pattern")
                        .ok_or_else(|| invalid(&format!("{key}.pattern"), "missing".into()))
                        .and_then(|v| p.string(v, &format!("{key}.pattern")))?;
                    let pattern = Regex::new(&pattern).map_err(|e| {
                        invalid(&format!("{key}.pattern"), format!("invalid regex: {e}"))
                    })?;
                    let Some(rule) = p.rule(item, &key)? else {
                        return Err(invalid(
                            &format!("{key}.class"),
                            "a default rule must classify (pii or phi)".into(),
                        ));
                    };
                    default_rules.push(DefaultRule {
                        name,
                        pattern,
                        rule,
                    });
                }
            }
        }
        let mut tables = BTreeMap::new();
        if let Some(t) = root.get("tables") {
            for (tk, cols) in p.mapping(t, "tables")? {
                let table = tk
                    .as_str()
                    .filter(|s| {
                        s.split('.').count() == 2 && !s.starts_with('.') && !s.ends_with('.')
                    })
                    .ok_or_else(|| {
                        invalid("tables", "table keys must be <keyspace>.<table>".into())
                    })?;
                let tkey = format!("tables.{table}");
                let mut columns = BTreeMap::new();
                for (ck, rule) in p.mapping(cols, &tkey)? {
                    let column = ck
                        .as_str()
                        .filter(|s| !s.is_empty() && s.split('.').count() <= 2)
                        .ok_or_else(|| {
                            invalid(
                                &tkey,
                                "column keys must be <column> or <column>.<field>".into(),
                            )
                        })?;
                    columns.insert(
                        column.to_owned(),
                        p.rule(rule, &format!("{tkey}.{column}"))?,
                    );
                }
                tables.insert(table.to_owned(), columns);
            }
        }
        Ok(Policy {
            version,
            file: file.to_owned(),
            tables,
            default_rules,
            on_unclassified_match,
        })
    }

    /// What the policy says about `column` (a column name, or `col.field` for a UDT field) of
    /// `keyspace.table`. Default rules match the last path component.
    pub fn decide(&self, keyspace: &str, table: &str, column: &str) -> Decision {
        if let Some(entry) = self
            .tables
            .get(&format!("{keyspace}.{table}"))
            .and_then(|cols| cols.get(column))
        {
            return match entry {
                Some(rule) => Decision::Mask(rule.clone()),
                None => Decision::Clear,
            };
        }
        let name = column.rsplit('.').next().unwrap_or(column);
        match self.default_rules.iter().find(|r| r.pattern.is_match(name)) {
            None => Decision::Clear,
            Some(r) => match self.on_unclassified_match {
                OnUnclassifiedMatch::Mask => Decision::Mask(r.rule.clone()),
                OnUnclassifiedMatch::Allow => Decision::Clear,
                OnUnclassifiedMatch::Fail => Decision::Fail {
                    rule: r.name.clone(),
                },
            },
        }
    }

    /// Key ids any rule uses.
    pub fn key_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .tables
            .values()
            .flat_map(|c| c.values().flatten())
            .chain(self.default_rules.iter().map(|r| &r.rule))
            .filter_map(|r| r.strategy.key_id())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        let mut k = KeyRing::new();
        k.insert("h1", b"fake-hmac-key-one".to_vec());
        k.insert("t1", b"fake-token-key-one".to_vec());
        k
    }

    fn ctx(keys: &KeyRing) -> PolicyContext<'_> {
        PolicyContext {
            keys,
            vault_configured: true,
        }
    }

    const POLICY: &str = r#"
version: 2
hash_key_id: h1
token_key_id: t1
tables:
  shop.customers:
    email: {class: pii, strategy: hash}
    medical_record_number: {class: phi, strategy: tokenize}
    phone: {class: pii, strategy: partial, keep_last: 4}
    address.street: {class: pii, strategy: redact}
    nickname_email: {class: none}
"#;

    #[test]
    fn explicit_rules_and_defaults() {
        let keys = ring();
        let p = Policy::parse("p.yaml", POLICY, ctx(&keys)).unwrap();
        assert_eq!(p.version, 2);
        assert!(matches!(
            p.decide("shop", "customers", "email"),
            Decision::Mask(ColumnRule {
                strategy: Strategy::Hash { .. },
                ..
            })
        ));
        assert_eq!(
            p.decide("shop", "customers", "nickname_email"),
            Decision::Clear
        );
        assert_eq!(p.decide("shop", "customers", "city"), Decision::Clear);
        // Default rules classify unlisted columns (mask by default), also in other tables.
        assert!(matches!(
            p.decide("other", "t", "ssn"),
            Decision::Mask(ColumnRule {
                strategy: Strategy::Hash { .. },
                ..
            })
        ));
        assert!(matches!(
            p.decide("other", "t", "mrn"),
            Decision::Mask(ColumnRule {
                class: Class::Phi,
                strategy: Strategy::Tokenize { .. }
            })
        ));
        assert!(matches!(
            p.decide("other", "t", "contact.email"),
            Decision::Mask(_)
        ));
        assert_eq!(p.key_ids(), vec!["h1", "t1"]);
    }

    #[test]
    fn on_unclassified_match_fail_and_allow() {
        let keys = ring();
        let fail = format!("{POLICY}on_unclassified_match: fail\n");
        let p = Policy::parse("p.yaml", &fail, ctx(&keys)).unwrap();
        assert_eq!(
            p.decide("x", "y", "home_phone"),
            Decision::Fail {
                rule: "phone".into()
            }
        );
        let allow = format!("{POLICY}on_unclassified_match: allow\n");
        let p = Policy::parse("p.yaml", &allow, ctx(&keys)).unwrap();
        assert_eq!(p.decide("x", "y", "home_phone"), Decision::Clear);
    }

    #[test]
    fn unknown_strategy_names_file_and_key() {
        let keys = ring();
        let text = "version: 1\nhash_key_id: h1\ntables:\n  a.b:\n    email: {class: pii, strategy: rot13}\n";
        let e = Policy::parse("/etc/cdc/policy.yaml", text, ctx(&keys)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/etc/cdc/policy.yaml"), "{msg}");
        assert!(msg.contains("tables.a.b.email.strategy"), "{msg}");
        assert!(msg.contains("rot13"), "{msg}");
        assert_eq!(e.class(), cdc_model::ErrorClass::Fatal);
    }

    #[test]
    fn missing_key_names_file_and_key() {
        let keys = ring();
        let text = "version: 1\nhash_key_id: h1\ntables:\n  a.b:\n    ssn: {class: pii, strategy: hash, key_id: gone}\n";
        let msg = Policy::parse("p.yaml", text, ctx(&keys))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("p.yaml") && msg.contains("tables.a.b.ssn.key_id") && msg.contains("gone"),
            "{msg}"
        );
        let text = "version: 1\nhash_key_id: nope\n";
        let msg = Policy::parse("p.yaml", text, ctx(&keys))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("hash_key_id") && msg.contains("nope"), "{msg}");
    }

    #[test]
    fn tokenize_needs_a_vault_and_class_none_no_strategy() {
        let keys = ring();
        let text = "version: 1\nhash_key_id: h1\ntoken_key_id: t1\ntables:\n  a.b:\n    mrn: {class: phi, strategy: tokenize}\n";
        let no_vault = PolicyContext {
            keys: &keys,
            vault_configured: false,
        };
        let msg = Policy::parse("p.yaml", text, no_vault)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("tables.a.b.mrn.strategy") && msg.contains("vault"),
            "{msg}"
        );
        let text =
            "version: 1\nhash_key_id: h1\ntables:\n  a.b:\n    x: {class: none, strategy: hash}\n";
        assert!(Policy::parse("p.yaml", text, ctx(&keys)).is_err());
        let text = "version: 0\n";
        assert!(
            Policy::parse("p.yaml", text, ctx(&keys))
                .unwrap_err()
                .to_string()
                .contains("version")
        );
        let text = "version: 1\nbogus: 1\n";
        assert!(
            Policy::parse("p.yaml", text, ctx(&keys))
                .unwrap_err()
                .to_string()
                .contains("bogus")
        );
    }

    #[test]
    fn custom_default_rules_replace_builtins() {
        let keys = ring();
        let text = "version: 1\ndefault_rules:\n  - {name: secret, pattern: '(?i)secret', class: pii, strategy: redact}\n";
        let p = Policy::parse("p.yaml", text, ctx(&keys)).unwrap();
        assert_eq!(p.decide("a", "b", "email"), Decision::Clear);
        assert!(matches!(p.decide("a", "b", "my_secret"), Decision::Mask(_)));
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn the_shipped_example_policy_parses() {
        let mut keys = KeyRing::new();
        keys.insert("hmac-2025-01", b"fake".to_vec());
        keys.insert("tok-2025-01", b"fake".to_vec());
        let text = include_str!("../masking-policy.example.yaml");
        let p = Policy::parse(
            "masking-policy.example.yaml",
            text,
            PolicyContext {
                keys: &keys,
                vault_configured: true,
            },
        )
        .unwrap();
        assert_eq!(p.version, 1);
        assert_eq!(p.decide("shop", "customers", "nickname"), Decision::Clear);
    }
}
