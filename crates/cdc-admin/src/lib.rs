//! The admin gRPC API every service serves (`proto/admin.proto`, package `cdc.admin.v1`) and the
//! typed client `cdcctl` uses.
//!
//! - [`pb`]: the generated messages, client and server (tonic 0.14, prost 0.14; the `.proto` is
//!   compiled by `build.rs` with protox, so no `protoc` is needed).
//! - [`AdminHandler`]: what a service implements (status, pause/resume, reload, replay, dead
//!   letters). Defaults answer `UNIMPLEMENTED` naming the stage and the reason, so a stage only
//!   writes what it supports (capture has no replay, …).
//! - [`grpc_router`] / [`serve`]: the gRPC service as an axum router, merged into the service's
//!   existing admin HTTP server (`/metrics`, `/livez`, `/readyz`), so each service keeps **one**
//!   admin port (`admin.listen_addr`: 9101 capture, 9102 masker, 9103 postgres, 9104 clickhouse,
//!   9105 timescaledb). gRPC runs over HTTP/2 without TLS (h2c) on that port; plain HTTP/1 probes
//!   keep working.
//! - [`AdminClient`]: connect with a timeout; errors name the endpoint.
//! - [`stats`]: status numbers read back from the service's own Prometheus registry (rates and
//!   latency percentiles over a sliding window), so `cdcctl status` and `/metrics` never disagree.
//! - [`dead_letters`]: reading a DLQ topic from the beginning with a short-lived consumer,
//!   filtering, and the compacted `<dlq topic>.replayed` topic that records which letters were
//!   replayed (so a letter is not replayed twice).
//!
//! What this crate must not do: configure Kafka clients itself (cdc-kafka does), print or return
//! payload bytes or column values (dead-letter details carry column names, types and writetimes;
//! primary-key values only from masked topics, where classified columns are already masked).

pub mod client;
pub mod dead_letters;
mod error;
pub mod handler;
pub mod stats;

/// The generated protobuf messages and gRPC client/server of `cdc.admin.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("cdc.admin.v1");
}

pub use client::{AdminClient, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, endpoint_url};
pub use error::Error;
pub use handler::{AdminHandler, HEALTH_INTAKE, grpc_router, serve, unsupported};

/// Re-exported so implementers share this crate's tonic and need no macro crate of their own.
pub use async_trait::async_trait;
pub use tonic::{Code, Status};
