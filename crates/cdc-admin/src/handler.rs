//! The server side: the [`AdminHandler`] trait every service implements and the glue that serves
//! it as gRPC on the service's existing admin HTTP listener.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use cdc_telemetry::{AdminServer, BoundAdminServer, HealthState, Registry};
use tonic::{Request, Response, Status};

use crate::pb;

/// Health dependency a service marks down while an operator has paused its intake, so `/readyz`
/// (and `cdcctl status`) show it.
pub const HEALTH_INTAKE: &str = "intake";

/// `UNIMPLEMENTED` for an RPC a stage does not support, saying why and where to go instead.
pub fn unsupported(stage: &str, rpc: &str, why: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not supported by {stage}: {why}"))
}

/// What a service answers on the admin API. Only [`AdminHandler::status`] is required; every
/// other RPC defaults to `UNIMPLEMENTED` with a message naming the stage and the reason.
///
/// Handlers must be quick or bounded: `cdcctl` waits with a timeout. Errors are gRPC statuses
/// whose message names what failed (destination, topic, file); never values.
#[async_trait]
pub trait AdminHandler: Send + Sync + 'static {
    /// `capture`, `masker`, `sink-postgres`, … (used in messages).
    fn stage(&self) -> &str;

    /// Health and numbers of this service (per destination for sinks).
    async fn status(&self) -> Result<pb::StatusResponse, Status>;

    /// Stops intake without stopping the process; in-flight work is finished first.
    async fn pause(&self) -> Result<pb::PauseResponse, Status> {
        Err(unsupported(
            self.stage(),
            "Pause",
            "this stage has no intake to pause",
        ))
    }

    /// Restarts intake after [`AdminHandler::pause`].
    async fn resume(&self) -> Result<pb::ResumeResponse, Status> {
        Err(unsupported(
            self.stage(),
            "Resume",
            "this stage has no intake to pause",
        ))
    }

    /// Re-reads the configuration (and policy) files; `summary` says what was applied.
    async fn reload(&self) -> Result<pb::ReloadResponse, Status> {
        Err(unsupported(
            self.stage(),
            "Reload",
            "nothing of its configuration can change at run time; restart it to apply a new configuration",
        ))
    }

    /// Rewinds (or advances) one destination's stored offsets.
    async fn replay(&self, _request: pb::ReplayRequest) -> Result<pb::ReplayResponse, Status> {
        Err(unsupported(
            self.stage(),
            "Replay",
            "only sinks keep offsets of record; call the sink of that destination \
             (sink-postgres, sink-clickhouse or sink-timescaledb)",
        ))
    }

    /// Dead letters of this stage matching a filter.
    async fn list_dead_letters(
        &self,
        _request: pb::ListDeadLettersRequest,
    ) -> Result<pb::ListDeadLettersResponse, Status> {
        Err(unsupported(
            self.stage(),
            "ListDeadLetters",
            "this stage has no dead-letter topic",
        ))
    }

    /// Re-applies the matching dead letters (each at most once unless forced).
    async fn replay_dead_letters(
        &self,
        _request: pb::ReplayDeadLettersRequest,
    ) -> Result<pb::ReplayDeadLettersResponse, Status> {
        Err(unsupported(
            self.stage(),
            "ReplayDeadLetters",
            "this stage has no dead-letter topic",
        ))
    }

    /// Full context of the dead letters with one id.
    async fn show_dead_letter(
        &self,
        _request: pb::ShowDeadLetterRequest,
    ) -> Result<pb::ShowDeadLetterResponse, Status> {
        Err(unsupported(
            self.stage(),
            "ShowDeadLetter",
            "this stage has no dead-letter topic",
        ))
    }
}

/// The tonic service delegating to a handler.
struct Grpc<H>(Arc<H>);

impl<H> Clone for Grpc<H> {
    fn clone(&self) -> Self {
        Grpc(Arc::clone(&self.0))
    }
}

fn log_call(stage: &str, rpc: &'static str) {
    // Mutating calls are operator actions: keep a trace of them in the service's own log.
    tracing::info!(stage, rpc, "Admin request");
}

#[tonic::async_trait]
impl<H: AdminHandler> pb::admin_server::Admin for Grpc<H> {
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.0.status().await.map(Response::new)
    }

    async fn pause(
        &self,
        _request: Request<pb::PauseRequest>,
    ) -> Result<Response<pb::PauseResponse>, Status> {
        log_call(self.0.stage(), "Pause");
        self.0.pause().await.map(Response::new)
    }

    async fn resume(
        &self,
        _request: Request<pb::ResumeRequest>,
    ) -> Result<Response<pb::ResumeResponse>, Status> {
        log_call(self.0.stage(), "Resume");
        self.0.resume().await.map(Response::new)
    }

    async fn reload(
        &self,
        _request: Request<pb::ReloadRequest>,
    ) -> Result<Response<pb::ReloadResponse>, Status> {
        log_call(self.0.stage(), "Reload");
        self.0.reload().await.map(Response::new)
    }

    async fn replay(
        &self,
        request: Request<pb::ReplayRequest>,
    ) -> Result<Response<pb::ReplayResponse>, Status> {
        log_call(self.0.stage(), "Replay");
        self.0.replay(request.into_inner()).await.map(Response::new)
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        self.0
            .list_dead_letters(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn replay_dead_letters(
        &self,
        request: Request<pb::ReplayDeadLettersRequest>,
    ) -> Result<Response<pb::ReplayDeadLettersResponse>, Status> {
        log_call(self.0.stage(), "ReplayDeadLetters");
        self.0
            .replay_dead_letters(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn show_dead_letter(
        &self,
        request: Request<pb::ShowDeadLetterRequest>,
    ) -> Result<Response<pb::ShowDeadLetterResponse>, Status> {
        self.0
            .show_dead_letter(request.into_inner())
            .await
            .map(Response::new)
    }
}

/// The gRPC API as an axum router (only `/cdc.admin.v1.Admin/*`; no fallback, so it merges into
/// the admin HTTP server without taking over unknown paths).
pub fn grpc_router<H: AdminHandler>(handler: Arc<H>) -> axum::Router {
    use tonic::server::NamedService;
    type Server<H> = pb::admin_server::AdminServer<Grpc<H>>;
    let service: Server<H> = pb::admin_server::AdminServer::new(Grpc(handler));
    axum::Router::new().route_service(
        &format!("/{}/{{*rest}}", <Server<H> as NamedService>::NAME),
        service,
    )
}

/// Binds the service's admin listener with `/metrics`, `/livez`, `/readyz` *and* the gRPC admin
/// API; run the result with [`BoundAdminServer::run`].
pub async fn serve<H: AdminHandler>(
    listen_addr: SocketAddr,
    registry: Registry,
    health: HealthState,
    handler: Arc<H>,
) -> Result<BoundAdminServer, cdc_telemetry::Error> {
    AdminServer::new(registry, health)
        .with_routes(grpc_router(handler))
        .bind(listen_addr)
        .await
}
