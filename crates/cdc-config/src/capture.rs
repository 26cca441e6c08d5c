//! The `capture:` section: the sidecar that reads `cdc_raw` segments on a Cassandra node.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::admin::AdminConfig;
use crate::filter::{self, validate_table_globs};
use crate::validate::{Validator, key};

/// Settings of the capture service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Cassandra's `cdc_raw_directory`, where finished and in-progress CDC segments appear.
    pub cdc_raw_dir: PathBuf,
    /// Cassandra's `commitlog_directory`; unset = not read (only `cdc_raw_dir` is used).
    pub commitlog_dir: Option<PathBuf>,
    /// Host id of the local node (`nodetool info`); unset = read from `system.local` at start.
    pub host_id: Option<Uuid>,
    /// How often `cdc_raw_dir` and `_cdc.idx` files are polled, in milliseconds.
    pub poll_interval_ms: u64,
    /// Most events in one Kafka transaction.
    pub batch_max_events: u32,
    /// Longest wait for a batch to fill before it is committed, in milliseconds.
    pub batch_linger_ms: u64,
    /// Keep segment files after they are fully committed (debugging); false = delete them.
    pub retain_processed_segments: bool,
    /// Cassandra's `cdc_total_space` (bytes), the denominator of the `cdc_raw` fill ratio.
    pub cdc_total_space_bytes: u64,
    /// Tables to capture as `keyspace.table` globs; empty = every table in included keyspaces.
    pub include_tables: Vec<String>,
    /// Tables never captured (`keyspace.table` globs), applied after `include_tables`.
    pub exclude_tables: Vec<String>,
    /// Deadline to finish the open transaction after SIGTERM, in seconds.
    pub drain_timeout_secs: u64,
    /// Admin HTTP listener.
    pub admin: AdminConfig,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            cdc_raw_dir: PathBuf::from("/var/lib/cassandra/cdc_raw"),
            commitlog_dir: None,
            host_id: None,
            poll_interval_ms: 250,
            batch_max_events: 1_000,
            batch_linger_ms: 100,
            retain_processed_segments: false,
            cdc_total_space_bytes: 4_294_967_296,
            include_tables: Vec::new(),
            exclude_tables: Vec::new(),
            drain_timeout_secs: 30,
            admin: AdminConfig::on_port(9101),
        }
    }
}

impl CaptureConfig {
    /// True when `keyspace.table` passes the table filters.
    pub fn includes_table(&self, keyspace: &str, table: &str) -> bool {
        filter::included(
            &self.include_tables,
            &self.exclude_tables,
            &format!("{keyspace}.{table}"),
        )
    }

    pub(crate) fn validate(&self, v: &mut Validator, prefix: &str) {
        if !self.cdc_raw_dir.is_absolute() {
            v.fail(
                key(prefix, "cdc_raw_dir"),
                "an absolute path",
                format!("{:?}", self.cdc_raw_dir),
            );
        }
        if let Some(dir) = &self.commitlog_dir
            && !dir.is_absolute()
        {
            v.fail(
                key(prefix, "commitlog_dir"),
                "an absolute path",
                format!("{dir:?}"),
            );
        }
        v.int_range(
            key(prefix, "poll_interval_ms"),
            self.poll_interval_ms,
            10,
            60_000,
        );
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
            key(prefix, "cdc_total_space_bytes"),
            self.cdc_total_space_bytes,
            1 << 20,
            u64::MAX,
        );
        v.int_range(
            key(prefix, "drain_timeout_secs"),
            self.drain_timeout_secs,
            1,
            3_600,
        );
        validate_table_globs(v, key(prefix, "include_tables"), &self.include_tables);
        validate_table_globs(v, key(prefix, "exclude_tables"), &self.exclude_tables);
        self.admin.validate(v, &key(prefix, "admin"));
    }
}
