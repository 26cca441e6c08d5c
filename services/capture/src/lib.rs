//! The capture stage as a library: tails a Cassandra node's `cdc_raw` directory, turns each
//! mutation of a `cdc = true` table into `ChangeEvent`s and publishes them to `cdc.raw.<ks>.<t>` in
//! Kafka transactions that also carry the new source position (`cdc.capture.positions`), so every
//! event is published exactly once across crashes and restarts.
//!
//! - [`event_builder`]: pure, mutation → events;
//! - [`segment_dir`]: the `cdc_raw` directory (segments in id order, `_cdc.idx` state, sizes);
//! - [`dir_watch`]: inotify wake-ups on `cdc_raw` changes (polling remains the fallback);
//! - [`position_store`]: the last committed position of this node;
//! - [`runner`]: the loop wiring it together (driven by `main.rs` or in-process by tests);
//! - [`settings`]: `pipeline.yaml` sections → the settings of the loop and its clients;
//! - [`admin`]: the admin gRPC API (status, pause/resume).
//!
//! What it must not do: configure Kafka clients itself (cdc-kafka does), log column values, or
//! delete a segment that is not COMPLETED and fully committed.

pub mod admin;
pub mod dir_watch;
pub mod error;
pub mod event_builder;
pub mod position_store;
pub mod runner;
pub mod segment_dir;
pub mod settings;

pub use admin::CaptureAdmin;
pub use error::Error;
pub use event_builder::{BuiltEvent, BuiltMutation, MutationContext, build_events};
pub use runner::{CaptureRunner, CaptureSettings, HEADER_CORRELATION_ID, HEADER_SCHEMA_VERSION};
