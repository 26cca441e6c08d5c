//! The admin HTTP listener every service has (`/metrics`, `/livez`, `/readyz`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::validate::{Validator, key};

/// Where a service serves its admin endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Socket address (`ip:port`) of the admin HTTP server.
    pub listen_addr: SocketAddr,
}

impl AdminConfig {
    pub(crate) fn on_port(port: u16) -> Self {
        AdminConfig {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], port)),
        }
    }

    pub(crate) fn validate(&self, v: &mut Validator, prefix: &str) {
        v.int_range(
            key(prefix, "listen_addr") + " (port)",
            u64::from(self.listen_addr.port()),
            1,
            65_535,
        );
    }
}
