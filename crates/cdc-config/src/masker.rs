//! The `masker:` section: consume raw events, mask per policy, produce masked events transactionally.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::admin::AdminConfig;
use crate::secret::SecretRef;
use crate::validate::{Validator, key};

static KEY_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9._-]{1,64}$").expect("static regex"));

/// Settings of the masker service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskerConfig {
    /// Masking policy file (per table and column: class and strategy).
    pub policy_file: PathBuf,
    /// How often the policy file is checked for changes, in milliseconds.
    pub policy_reload_interval_ms: u64,
    /// Kafka consumer group of the masker.
    pub group_id: String,
    /// Regular expression selecting the raw topics to consume.
    pub topics_pattern: String,
    /// Most events in one Kafka transaction.
    pub batch_max_events: u32,
    /// Longest wait for a batch to fill before it is committed, in milliseconds.
    pub batch_linger_ms: u64,
    /// Consumer group session timeout, in milliseconds: how long a crashed masker holds its
    /// partitions before the group hands them to a restarted or other instance.
    pub session_timeout_ms: u64,
    /// Topic receiving events that cannot be masked (fail closed).
    pub dlq_topic: String,
    /// Masking keys by key id (the id is recorded with each hash so keys can rotate).
    pub keys: BTreeMap<String, SecretRef>,
    /// Token vault used by the `tokenize` strategy; unset = `tokenize` is unavailable.
    pub vault: Option<TokenVaultConfig>,
    /// Deadline to finish the open transaction after SIGTERM, in seconds.
    pub drain_timeout_secs: u64,
    /// Admin HTTP listener.
    pub admin: AdminConfig,
}

impl Default for MaskerConfig {
    fn default() -> Self {
        MaskerConfig {
            policy_file: PathBuf::from("/etc/cdc/masking-policy.yaml"),
            policy_reload_interval_ms: 5_000,
            group_id: "cdc-masker".to_owned(),
            topics_pattern: r"^cdc\.raw\..*".to_owned(),
            batch_max_events: 1_000,
            batch_linger_ms: 100,
            session_timeout_ms: 45_000,
            dlq_topic: "cdc.dlq.masker".to_owned(),
            keys: BTreeMap::new(),
            vault: None,
            drain_timeout_secs: 30,
            admin: AdminConfig::on_port(9102),
        }
    }
}

/// The token vault: a PostgreSQL schema of its own, reached with a separate role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenVaultConfig {
    /// PostgreSQL connection URL of the vault role, as a secret reference.
    pub url: SecretRef,
    /// Schema holding the token table.
    #[serde(default = "default_vault_schema")]
    pub schema: String,
    /// Connections in the vault pool.
    #[serde(default = "default_vault_pool_size")]
    pub pool_size: u32,
    /// Timeout of one vault statement, in milliseconds.
    #[serde(default = "default_vault_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// Id (in `masker.keys`) of the key that encrypts token plaintexts with AES-GCM.
    pub encryption_key_id: String,
}

fn default_vault_schema() -> String {
    "token_vault".to_owned()
}
fn default_vault_pool_size() -> u32 {
    4
}
fn default_vault_statement_timeout_ms() -> u64 {
    5_000
}

impl MaskerConfig {
    pub(crate) fn validate(&self, v: &mut Validator, prefix: &str) {
        v.int_range(
            key(prefix, "policy_reload_interval_ms"),
            self.policy_reload_interval_ms,
            100,
            3_600_000,
        );
        v.name(key(prefix, "group_id"), &self.group_id);
        v.regex(key(prefix, "topics_pattern"), &self.topics_pattern);
        v.int_range(
            key(prefix, "batch_max_events"),
            u64::from(self.batch_max_events),
            1,
            1_000_000,
        );
        v.int_range(
            key(prefix, "batch_linger_ms"),
            self.batch_linger_ms,
            0,
            60_000,
        );
        v.int_range(
            key(prefix, "session_timeout_ms"),
            self.session_timeout_ms,
            6_000,
            300_000,
        );
        v.topic(key(prefix, "dlq_topic"), &self.dlq_topic);
        for id in self.keys.keys() {
            v.matches(
                key(prefix, &format!("keys.{id}")),
                id,
                &KEY_ID,
                "a key id of 1-64 [A-Za-z0-9._-]",
            );
        }
        if let Some(vault) = &self.vault {
            let p = key(prefix, "vault");
            v.name(key(&p, "schema"), &vault.schema);
            v.int_range(key(&p, "pool_size"), u64::from(vault.pool_size), 1, 1_000);
            v.int_range(
                key(&p, "statement_timeout_ms"),
                vault.statement_timeout_ms,
                100,
                600_000,
            );
            if !self.keys.contains_key(&vault.encryption_key_id) {
                v.fail(
                    key(&p, "encryption_key_id"),
                    format!("one of the ids in {}", key(prefix, "keys")),
                    format!("{:?}", vault.encryption_key_id),
                );
            }
        }
        v.int_range(
            key(prefix, "drain_timeout_secs"),
            self.drain_timeout_secs,
            1,
            3_600,
        );
        self.admin.validate(v, &key(prefix, "admin"));
    }
}
