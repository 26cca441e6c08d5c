//! The TimescaleDB destination: the PostgreSQL adapter (same wire code, same layout) plus a
//! hypertable `ks.t_changes` holding every applied change, partitioned by change writetime and
//! unique on key + writetime + op + time so replays insert nothing.

use crate::error::Error;
use crate::postgres::ddl::ChangesLayout;
use crate::postgres::{PgSettings, PostgresDestination};

/// Hypertable options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimescaleOptions {
    pub chunk_interval_secs: u64,
    pub retention_secs: Option<u64>,
}

impl Default for TimescaleOptions {
    fn default() -> Self {
        TimescaleOptions {
            chunk_interval_secs: 86_400,
            retention_secs: None,
        }
    }
}

/// Builds the TimescaleDB adapter (named `timescaledb`).
pub fn timescale_destination(
    settings: &PgSettings,
    options: &TimescaleOptions,
) -> Result<PostgresDestination, Error> {
    PostgresDestination::with_layout(
        "timescaledb",
        settings,
        ChangesLayout {
            enabled: true,
            chunk_interval_secs: options.chunk_interval_secs,
            retention_secs: options.retention_secs,
        },
    )
}
