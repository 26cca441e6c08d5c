//! The `cassandra:` section: how capture and `cdcctl` reach the source cluster over CQL.

use serde::{Deserialize, Serialize};

use crate::filter::{self, validate_keyspace_globs};
use crate::secret::SecretRef;
use crate::validate::{Validator, key};

/// Connection to the source Cassandra cluster (schema, host id, verification).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CassandraConfig {
    /// Contact points as `host` or `host:port`; a list or one comma-separated string.
    #[serde(deserialize_with = "crate::string_list::deserialize")]
    pub contact_points: Vec<String>,
    /// CQL native port used for contact points without an explicit port.
    pub port: u16,
    /// Local datacenter for load balancing; unset = driver default (any DC).
    pub local_dc: Option<String>,
    /// CQL username as a secret reference; unset = no authentication.
    pub username: Option<SecretRef>,
    /// CQL password as a secret reference (set together with `username`).
    pub password: Option<SecretRef>,
    /// Timeout of establishing a connection, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Timeout of one CQL request, in milliseconds.
    pub request_timeout_ms: u64,
    /// How often `system_schema` is polled for schema changes, in milliseconds.
    pub schema_refresh_interval_ms: u64,
    /// Which keyspaces are replicated. System keyspaces are always excluded.
    pub keyspaces: KeyspaceFilter,
}

impl Default for CassandraConfig {
    fn default() -> Self {
        CassandraConfig {
            contact_points: vec!["127.0.0.1".to_owned()],
            port: 9042,
            local_dc: None,
            username: None,
            password: None,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 12_000,
            schema_refresh_interval_ms: 30_000,
            keyspaces: KeyspaceFilter::default(),
        }
    }
}

/// Keyspace include/exclude lists of `*` globs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyspaceFilter {
    /// Keyspaces to replicate; empty = every non-system keyspace.
    pub include: Vec<String>,
    /// Keyspaces never replicated, applied after `include`.
    pub exclude: Vec<String>,
}

const SYSTEM_KEYSPACES: &[&str] = &[
    "system",
    "system_schema",
    "system_auth",
    "system_distributed",
    "system_traces",
    "system_views",
    "system_virtual_schema",
];

impl KeyspaceFilter {
    /// True when `keyspace` is replicated.
    pub fn includes(&self, keyspace: &str) -> bool {
        !SYSTEM_KEYSPACES.contains(&keyspace)
            && filter::included(&self.include, &self.exclude, keyspace)
    }
}

impl CassandraConfig {
    pub(crate) fn validate(&self, v: &mut Validator, prefix: &str) {
        if self.contact_points.is_empty() {
            v.fail(
                key(prefix, "contact_points"),
                "at least one host",
                "an empty list",
            );
        }
        for (i, cp) in self.contact_points.iter().enumerate() {
            let host_ok = match cp.rsplit_once(':') {
                // A bare IPv6 address has colons but no port.
                Some((h, p)) if !cp.contains('[') && h.contains(':') => !p.is_empty(),
                Some((h, p)) => !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0),
                None => !cp.is_empty(),
            };
            if !host_ok {
                v.fail(
                    format!("{}[{i}]", key(prefix, "contact_points")),
                    "`host` or `host:port`",
                    format!("{cp:?}"),
                );
            }
        }
        v.int_range(key(prefix, "port"), u64::from(self.port), 1, 65_535);
        if self.username.is_some() != self.password.is_some() {
            v.fail(
                key(prefix, "password"),
                "username and password set together or not at all",
                "only one of them",
            );
        }
        v.int_range(
            key(prefix, "connect_timeout_ms"),
            self.connect_timeout_ms,
            100,
            600_000,
        );
        v.int_range(
            key(prefix, "request_timeout_ms"),
            self.request_timeout_ms,
            100,
            600_000,
        );
        v.int_range(
            key(prefix, "schema_refresh_interval_ms"),
            self.schema_refresh_interval_ms,
            1_000,
            3_600_000,
        );
        validate_keyspace_globs(v, key(prefix, "keyspaces.include"), &self.keyspaces.include);
        validate_keyspace_globs(v, key(prefix, "keyspaces.exclude"), &self.keyspaces.exclude);
    }
}
