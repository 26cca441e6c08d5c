//! Telemetry shared by every service: JSON logs, OTLP traces with W3C context carried in message
//! headers, Prometheus metric names and registry, the admin HTTP server (`/metrics`, `/livez`,
//! `/readyz`), and signal-driven shutdown. Adapters never invent metric names; probes never open
//! connections.

pub mod admin;
mod error;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod propagation;
pub mod shutdown;

pub use admin::{AdminServer, BoundAdminServer};
pub use error::{Error, ErrorClass};
pub use health::{DependencyState, DependencyStatus, HealthSnapshot, HealthState};
pub use logging::{JsonLayer, TelemetryGuard, init};
pub use metrics::{CaptureMetrics, KafkaMetrics, MaskerMetrics, SinkMetrics, new_registry};
pub use shutdown::Shutdown;

/// Re-exported so services share this crate's versions.
pub use prometheus::Registry;
pub use tokio_util::sync::CancellationToken;
