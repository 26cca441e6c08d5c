//! Telemetry shared by every service: JSON logs, Prometheus metric names and registry, the admin HTTP
//! server (`/metrics`, `/livez`, `/readyz`) and OTLP trace export. Adapters never invent metric names.
