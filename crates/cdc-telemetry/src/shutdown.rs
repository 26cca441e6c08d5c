//! The root `CancellationToken`, cancelled on SIGTERM or SIGINT, and SIGHUP reported separately as
//! a reload request.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::Error;

/// Signal wiring of a service.
#[derive(Debug, Clone)]
pub struct Shutdown {
    token: CancellationToken,
    reloads: watch::Receiver<u64>,
}

impl Shutdown {
    /// Installs SIGTERM, SIGINT and SIGHUP handlers and returns the root token. Call once, inside a
    /// Tokio runtime. After the first SIGTERM/SIGINT further ones are ignored; the orchestrator's
    /// kill deadline bounds the drain.
    pub fn install() -> Result<Self, Error> {
        let mut term = signal(SignalKind::terminate()).map_err(Error::Signal)?;
        let mut int = signal(SignalKind::interrupt()).map_err(Error::Signal)?;
        let mut hup = signal(SignalKind::hangup()).map_err(Error::Signal)?;
        let token = CancellationToken::new();
        let (tx, reloads) = watch::channel(0_u64);
        let cancel = token.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    Some(()) = term.recv() => {
                        tracing::info!(signal = "SIGTERM", "Shutdown requested");
                        cancel.cancel();
                    }
                    Some(()) = int.recv() => {
                        tracing::info!(signal = "SIGINT", "Shutdown requested");
                        cancel.cancel();
                    }
                    Some(()) = hup.recv() => {
                        tracing::info!(signal = "SIGHUP", "Configuration reload requested");
                        tx.send_modify(|n| *n += 1);
                    }
                }
            }
        });
        Ok(Shutdown { token, reloads })
    }

    /// The root token: cancelled on SIGTERM/SIGINT. Hand out `child_token()`s to tasks.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// A receiver whose value increases on every SIGHUP; `changed().await` waits for the next one.
    pub fn reloads(&self) -> watch::Receiver<u64> {
        self.reloads.clone()
    }
}
