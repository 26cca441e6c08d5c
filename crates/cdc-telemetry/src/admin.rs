//! The admin HTTP server: `/metrics`, `/livez`, `/readyz`, plus routes a service adds.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::health::HealthState;
use crate::metrics::encode_text;

#[derive(Clone)]
struct AdminState {
    registry: Registry,
    health: HealthState,
}

/// Builder for the admin server.
pub struct AdminServer {
    router: Router,
}

/// An admin server bound to its socket, ready to run.
pub struct BoundAdminServer {
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    router: Router,
}

impl AdminServer {
    /// The standard routes over `registry` and `health`.
    pub fn new(registry: Registry, health: HealthState) -> Self {
        let router = Router::new()
            .route("/metrics", get(metrics))
            .route("/livez", get(livez))
            .route("/readyz", get(readyz))
            .with_state(AdminState { registry, health });
        AdminServer { router }
    }

    /// Adds a service's own routes (status page, admin API). Paths must not clash with the standard ones.
    pub fn with_routes(mut self, extra: Router) -> Self {
        self.router = self.router.merge(extra);
        self
    }

    /// The router, for embedding in another server.
    pub fn into_router(self) -> Router {
        self.router
    }

    /// Binds `listen_addr` (port 0 picks a free port; see [`BoundAdminServer::local_addr`]).
    pub async fn bind(self, listen_addr: SocketAddr) -> Result<BoundAdminServer, Error> {
        let listener = tokio::net::TcpListener::bind(listen_addr)
            .await
            .map_err(|source| Error::Bind {
                addr: listen_addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: listen_addr,
            source,
        })?;
        Ok(BoundAdminServer {
            listener,
            local_addr,
            router: self.router,
        })
    }

    /// Binds and serves the standard routes until `cancel` fires.
    pub async fn serve(
        listen_addr: SocketAddr,
        registry: Registry,
        health: HealthState,
        cancel: CancellationToken,
    ) -> Result<(), Error> {
        AdminServer::new(registry, health)
            .bind(listen_addr)
            .await?
            .run(cancel)
            .await
    }
}

impl BoundAdminServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `cancel` fires, then finishes in-flight requests and returns.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), Error> {
        tracing::info!(addr = %self.local_addr, "Admin server listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await
            .map_err(Error::Serve)
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    match encode_text(&state.registry) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(
                error = &e as &dyn std::error::Error,
                "Cannot encode metrics"
            );
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn livez() -> Response {
    axum::Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let snapshot = state.health.snapshot();
    let status = if snapshot.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(snapshot)).into_response()
}
