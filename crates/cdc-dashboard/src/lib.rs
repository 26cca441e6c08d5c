//! The live dashboard behind `cdcctl dashboard`: polls every service's `/metrics` and `/readyz`
//! (every 5 s by default), keeps 15 minutes of history in memory, and serves one self-contained
//! page (`GET /`, inline CSS/JS/SVG, nothing fetched from elsewhere) plus its JSON
//! (`GET /api/snapshot`).
//!
//! Per destination it shows lag, throughput, error rate, backlog, p50/p95/p99 end-to-end latency
//! and health; per stage (capture, masker) health and throughput. The parsing and every derivation
//! (counter rates across restarts, percentiles from histogram buckets, health rules) are pure and
//! tested without a network: [`exposition`], [`rate`], [`quantile`], [`status`], [`history`].
//!
//! It only reads: it never writes to a service, never opens a connection to Kafka or a database,
//! and holds no secrets (admin endpoints carry none).

pub mod dashboard;
pub mod endpoint;
mod error;
pub mod exposition;
pub mod history;
pub mod point;
pub mod quantile;
pub mod rate;
pub mod scrape;
pub mod status;

pub use dashboard::{Dashboard, Settings};
pub use endpoint::{Endpoint, Role, endpoints_from_config, parse_duration};
pub use error::{Error, ErrorClass};
pub use history::Snapshot;
pub use status::{Health, Thresholds};
/// Re-exported so callers cancel [`Dashboard::run`] with this crate's version.
pub use tokio_util::sync::CancellationToken;
