//! A loopback TCP proxy placed between a service and one dependency, which a test can cut (existing
//! connections dropped, new ones refused: a network partition) and heal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::AbortHandle;

/// A running proxy: listens on `127.0.0.1:<port>` and relays to its target while up.
pub struct FaultProxy {
    /// The port services should connect to instead of the target's.
    pub port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl FaultProxy {
    /// Starts a proxy to `target` (`host:port`), up.
    ///
    /// # Panics
    /// When no loopback port can be bound (a broken test machine).
    pub async fn start(target: String) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy on loopback");
        let port = listener.local_addr().expect("fault proxy address").port();
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (accept_up, accept_connections) = (Arc::clone(&up), Arc::clone(&connections));
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue; // dropped at once: the connection is refused
                }
                let target = target.clone();
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        // Without TCP_NODELAY, Nagle + delayed ACKs add ~40 ms to many of the
                        // small protocol messages relayed (seen: catch-up 2 s → 50 s).
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                if let Ok(mut list) = accept_connections.lock() {
                    list.retain(|h| !h.is_finished());
                    list.push(relay.abort_handle());
                }
            }
        });
        FaultProxy {
            port,
            up,
            connections,
        }
    }

    /// Heals (`true`) or cuts (`false`) the link; cutting drops every open connection.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up && let Ok(mut list) = self.connections.lock() {
            for h in list.drain(..) {
                h.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn relays_while_up_and_refuses_while_cut() {
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let target = echo.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 16];
                    while let Ok(n @ 1..) = s.read(&mut buf).await {
                        let _ = s.write_all(&buf[..n]).await;
                    }
                });
            }
        });
        let proxy = FaultProxy::start(target).await;
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
            .await
            .expect("connect");
        c.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.expect("echo");
        assert_eq!(&buf, b"ping");

        proxy.set_up(false);
        let mut rest = Vec::new();
        let n = c.read_to_end(&mut rest).await.unwrap_or(0);
        assert_eq!(n, 0, "a cut drops the open connection");
        let mut cut = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
            .await
            .expect("the listener still accepts");
        assert_eq!(
            cut.read(&mut buf).await.unwrap_or(0),
            0,
            "new connections are closed"
        );

        proxy.set_up(true);
        let mut healed = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
            .await
            .expect("connect");
        healed.write_all(b"pong").await.expect("write");
        healed.read_exact(&mut buf).await.expect("echo");
        assert_eq!(&buf, b"pong");
    }
}
