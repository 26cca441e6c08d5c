//! The typed client `cdcctl` uses: connects with a timeout and names the endpoint in every error.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::error::Error;
use crate::pb;
use crate::pb::admin_client::AdminClient as Raw;

/// Time allowed to open the connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for one call (replays and dead-letter scans take longer: see
/// [`AdminClient::with_request_timeout`]).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The URL for an admin address: `host:port` gets `http://`; a wildcard listen address
/// (`0.0.0.0`, `[::]`) is reached through the loopback address.
pub fn endpoint_url(address: &str) -> String {
    let trimmed = address.trim().trim_end_matches('/');
    let (scheme, rest) = match trimmed.split_once("://") {
        Some((s, r)) => (s.to_owned(), r.to_owned()),
        None => ("http".to_owned(), trimmed.to_owned()),
    };
    let rest = if let Some(port) = rest.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = rest.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        rest
    };
    format!("{scheme}://{rest}")
}

/// A connected admin client.
#[derive(Debug, Clone)]
pub struct AdminClient {
    endpoint: String,
    inner: Raw<Channel>,
    request_timeout: Duration,
}

impl AdminClient {
    /// Connects to `address` (`host:port` or `http://host:port`) within `connect_timeout`.
    pub async fn connect(address: &str, connect_timeout: Duration) -> Result<Self, Error> {
        let endpoint = endpoint_url(address);
        let ep = Endpoint::from_shared(endpoint.clone()).map_err(|e| Error::InvalidEndpoint {
            endpoint: endpoint.clone(),
            reason: e.to_string(),
        })?;
        let ep = ep
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30));
        let channel = match tokio::time::timeout(connect_timeout, ep.connect()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(Error::Unreachable {
                    endpoint,
                    reason: cdc_kafka::error_chain(&e),
                });
            }
            Err(_) => {
                return Err(Error::Unreachable {
                    endpoint,
                    reason: format!("no answer within {} ms", connect_timeout.as_millis()),
                });
            }
        };
        Ok(AdminClient {
            endpoint,
            inner: Raw::new(channel),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// The same client with another per-call timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The URL this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.set_timeout(self.request_timeout);
        r
    }

    fn error(&self, rpc: &'static str, status: tonic::Status) -> Error {
        // A transport failure after connecting (the service died, or never spoke gRPC there).
        // Statuses the service sends itself carry no source error.
        if status.code() == tonic::Code::Unavailable && std::error::Error::source(&status).is_some()
        {
            return Error::Unreachable {
                endpoint: self.endpoint.clone(),
                reason: cdc_kafka::error_chain(&status),
            };
        }
        Error::Rpc {
            endpoint: self.endpoint.clone(),
            rpc,
            code: status.code(),
            message: status.message().to_owned(),
        }
    }

    /// `Status`.
    pub async fn status(&mut self) -> Result<pb::StatusResponse, Error> {
        let req = self.request(pb::StatusRequest {});
        match self.inner.status(req).await {
            Ok(r) => Ok(r.into_inner()),
            Err(s) => Err(self.error("Status", s)),
        }
    }

    /// `Pause`.
    pub async fn pause(&mut self) -> Result<(), Error> {
        let req = self.request(pb::PauseRequest {});
        match self.inner.pause(req).await {
            Ok(_) => Ok(()),
            Err(s) => Err(self.error("Pause", s)),
        }
    }

    /// `Resume`.
    pub async fn resume(&mut self) -> Result<(), Error> {
        let req = self.request(pb::ResumeRequest {});
        match self.inner.resume(req).await {
            Ok(_) => Ok(()),
            Err(s) => Err(self.error("Resume", s)),
        }
    }

    /// `Reload`: what was applied.
    pub async fn reload(&mut self) -> Result<String, Error> {
        let req = self.request(pb::ReloadRequest {});
        match self.inner.reload(req).await {
            Ok(r) => Ok(r.into_inner().summary),
            Err(s) => Err(self.error("Reload", s)),
        }
    }

    /// `Replay`: rewinds `destination` to `target`.
    pub async fn replay(
        &mut self,
        destination: &str,
        target: pb::replay_request::Target,
    ) -> Result<pb::ReplayResponse, Error> {
        let req = self.request(pb::ReplayRequest {
            destination: destination.to_owned(),
            target: Some(target),
        });
        match self.inner.replay(req).await {
            Ok(r) => Ok(r.into_inner()),
            Err(s) => Err(self.error("Replay", s)),
        }
    }

    /// `ListDeadLetters`.
    pub async fn list_dead_letters(
        &mut self,
        filter: pb::DeadLetterFilter,
        limit: u32,
    ) -> Result<pb::ListDeadLettersResponse, Error> {
        let req = self.request(pb::ListDeadLettersRequest {
            filter: Some(filter),
            limit,
        });
        match self.inner.list_dead_letters(req).await {
            Ok(r) => Ok(r.into_inner()),
            Err(s) => Err(self.error("ListDeadLetters", s)),
        }
    }

    /// `ReplayDeadLetters`.
    pub async fn replay_dead_letters(
        &mut self,
        filter: pb::DeadLetterFilter,
        include_replayed: bool,
    ) -> Result<pb::ReplayDeadLettersResponse, Error> {
        let req = self.request(pb::ReplayDeadLettersRequest {
            filter: Some(filter),
            include_replayed,
        });
        match self.inner.replay_dead_letters(req).await {
            Ok(r) => Ok(r.into_inner()),
            Err(s) => Err(self.error("ReplayDeadLetters", s)),
        }
    }

    /// `ShowDeadLetter`.
    pub async fn show_dead_letter(
        &mut self,
        id: &str,
    ) -> Result<pb::ShowDeadLetterResponse, Error> {
        let req = self.request(pb::ShowDeadLetterRequest { id: id.to_owned() });
        match self.inner.show_dead_letter(req).await {
            Ok(r) => Ok(r.into_inner()),
            Err(s) => Err(self.error("ShowDeadLetter", s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls() {
        assert_eq!(endpoint_url("0.0.0.0:9103"), "http://127.0.0.1:9103");
        assert_eq!(endpoint_url("[::]:9103"), "http://[::1]:9103");
        assert_eq!(endpoint_url("10.0.0.5:9101"), "http://10.0.0.5:9101");
        assert_eq!(
            endpoint_url("http://sink-pg.internal:9103/"),
            "http://sink-pg.internal:9103"
        );
        assert_eq!(endpoint_url("https://x:1"), "https://x:1");
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_named() {
        // Bind then drop: the port is free and refuses connections.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let err = AdminClient::connect(&format!("127.0.0.1:{port}"), Duration::from_secs(2))
            .await
            .err();
        let Some(err) = err else {
            panic!("connecting to a closed port succeeded");
        };
        assert!(err.is_unreachable(), "{err}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }
}
