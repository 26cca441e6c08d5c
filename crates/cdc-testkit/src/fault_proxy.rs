//! A loopback TCP proxy placed between a service and one dependency. A test can add latency
//! ([`FaultProxy::set_delay`]), refuse new connections while open ones keep flowing
//! ([`FaultProxy::refuse_new`]), cut the open connections ([`FaultProxy::cut_existing`]), do both at
//! once — a network partition ([`FaultProxy::partition`], [`FaultProxy::set_up`]`(false)`) — and
//! heal ([`FaultProxy::heal`]). [`FaultProxy::partition_for`] bounds a partition in time: it heals
//! itself even when the test forgets (or panics before) the heal.
//!
//! Everything stays on 127.0.0.1; the proxy never touches the target's server.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::AbortHandle;

/// A running proxy: listens on `127.0.0.1:<port>` and relays to its target while up.
pub struct FaultProxy {
    /// The port services should connect to instead of the target's.
    pub port: u16,
    /// The relayed `host:port`.
    pub target: String,
    /// New connections are accepted and relayed (false: closed at once, i.e. refused).
    accepting: Arc<AtomicBool>,
    /// Latency added to every chunk relayed, in milliseconds, both directions.
    delay_ms: Arc<AtomicU64>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    /// Connections accepted and relayed since the start.
    relayed: Arc<AtomicU64>,
    /// The pending self-heal of [`FaultProxy::partition_for`].
    heal_timer: Mutex<Option<AbortHandle>>,
    listener: AbortHandle,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("port", &self.port)
            .field("target", &self.target)
            .field("accepting", &self.accepting.load(Ordering::SeqCst))
            .field("delay_ms", &self.delay_ms.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

/// Copies `from` to `to`, sleeping `delay` (read per chunk, so changes apply at once) before each
/// chunk is forwarded.
async fn relay_one_way(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay_ms: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl FaultProxy {
    /// Starts a proxy to `target` (`host:port`), up, without added latency.
    ///
    /// # Panics
    /// When no loopback port can be bound (a broken test machine).
    pub async fn start(target: String) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy on loopback");
        let port = listener.local_addr().expect("fault proxy address").port();
        let accepting = Arc::new(AtomicBool::new(true));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let relayed = Arc::new(AtomicU64::new(0));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (accept_up, accept_connections, accept_delay, accept_relayed) = (
            Arc::clone(&accepting),
            Arc::clone(&connections),
            Arc::clone(&delay_ms),
            Arc::clone(&relayed),
        );
        let accept_target = target.clone();
        let listener = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    drop(inbound); // closed at once: the connection is refused
                    continue;
                }
                accept_relayed.fetch_add(1, Ordering::Relaxed);
                let target = accept_target.clone();
                let delay = Arc::clone(&accept_delay);
                let relay = tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    // Without TCP_NODELAY, Nagle + delayed ACKs add ~40 ms to many of the
                    // small protocol messages relayed (seen: catch-up 2 s → 50 s).
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (in_r, in_w) = inbound.into_split();
                    let (out_r, out_w) = outbound.into_split();
                    let up = relay_one_way(in_r, out_w, Arc::clone(&delay));
                    let down = relay_one_way(out_r, in_w, delay);
                    // Either side closing ends the pair (the other half is dropped with it).
                    tokio::select! {
                        () = up => {}
                        () = down => {}
                    }
                });
                if let Ok(mut list) = accept_connections.lock() {
                    list.retain(|h| !h.is_finished());
                    list.push(relay.abort_handle());
                }
            }
        })
        .abort_handle();
        FaultProxy {
            port,
            target,
            accepting,
            delay_ms,
            connections,
            relayed,
            heal_timer: Mutex::new(None),
            listener,
        }
    }

    /// `127.0.0.1:<port>`: the address to give a service instead of the target's.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Heals (`true`: [`FaultProxy::heal`]) or partitions (`false`: [`FaultProxy::partition`]).
    pub fn set_up(&self, up: bool) {
        if up {
            self.heal();
        } else {
            self.partition();
        }
    }

    /// Adds `delay` of latency to every chunk relayed from now on, both directions (zero: none).
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// New connections are closed at once; open connections keep flowing.
    pub fn refuse_new(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// Drops every open connection (both ends see the close); new connections are still
    /// accepted unless [`FaultProxy::refuse_new`] is in force.
    pub fn cut_existing(&self) {
        if let Ok(mut list) = self.connections.lock() {
            for h in list.drain(..) {
                h.abort();
            }
        }
    }

    /// A network partition: new connections refused and open ones dropped.
    pub fn partition(&self) {
        self.refuse_new();
        self.cut_existing();
    }

    /// A partition healed after `duration` by a timer task (also when the test stops watching).
    /// [`FaultProxy::heal`] before that heals at once and cancels the timer.
    pub fn partition_for(&self, duration: Duration) {
        self.partition();
        let accepting = Arc::clone(&self.accepting);
        let timer = tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            accepting.store(true, Ordering::SeqCst);
        });
        if let Ok(mut slot) = self.heal_timer.lock()
            && let Some(old) = slot.replace(timer.abort_handle())
        {
            old.abort();
        }
    }

    /// Back to normal: new connections accepted, no added latency, no pending timer.
    pub fn heal(&self) {
        if let Ok(mut slot) = self.heal_timer.lock()
            && let Some(timer) = slot.take()
        {
            timer.abort();
        }
        self.delay_ms.store(0, Ordering::SeqCst);
        self.accepting.store(true, Ordering::SeqCst);
    }

    /// True while new connections are accepted.
    pub fn is_up(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    /// Connections accepted and relayed since the start (refused ones not counted).
    pub fn connections_relayed(&self) -> u64 {
        self.relayed.load(Ordering::Relaxed)
    }

    /// Open relayed connections right now.
    pub fn open_connections(&self) -> usize {
        self.connections
            .lock()
            .map(|mut l| {
                l.retain(|h| !h.is_finished());
                l.len()
            })
            .unwrap_or(0)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.listener.abort();
        self.cut_existing();
        if let Ok(mut slot) = self.heal_timer.lock()
            && let Some(timer) = slot.take()
        {
            timer.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

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

    async fn echo_server() -> String {
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
        target
    }

    async fn round_trip(c: &mut tokio::net::TcpStream) -> Duration {
        let started = Instant::now();
        c.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.expect("echo");
        assert_eq!(&buf, b"ping");
        started.elapsed()
    }

    #[tokio::test]
    async fn delay_refuse_new_cut_existing_and_timed_partition() {
        let proxy = FaultProxy::start(echo_server().await).await;
        let mut c = tokio::net::TcpStream::connect(proxy.addr())
            .await
            .expect("connect");
        assert!(round_trip(&mut c).await < Duration::from_millis(150));

        proxy.set_delay(Duration::from_millis(150));
        let slow = round_trip(&mut c).await;
        assert!(
            slow >= Duration::from_millis(300),
            "both directions delayed: {slow:?}"
        );
        proxy.set_delay(Duration::ZERO);

        // Refusing new connections leaves the open one working.
        proxy.refuse_new();
        assert!(!proxy.is_up());
        let mut refused = tokio::net::TcpStream::connect(proxy.addr())
            .await
            .expect("the listener still accepts");
        let mut buf = [0u8; 4];
        assert_eq!(
            refused.read(&mut buf).await.unwrap_or(0),
            0,
            "closed at once"
        );
        round_trip(&mut c).await;
        assert_eq!(proxy.open_connections(), 1);

        // Cutting open connections while accepting new ones.
        proxy.heal();
        proxy.cut_existing();
        let mut rest = Vec::new();
        assert_eq!(c.read_to_end(&mut rest).await.unwrap_or(0), 0, "cut");
        let mut fresh = tokio::net::TcpStream::connect(proxy.addr())
            .await
            .expect("connect");
        round_trip(&mut fresh).await;

        // A bounded partition heals by itself.
        proxy.partition_for(Duration::from_millis(300));
        assert!(!proxy.is_up());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(proxy.is_up(), "healed by the timer");
        let mut healed = tokio::net::TcpStream::connect(proxy.addr())
            .await
            .expect("connect");
        round_trip(&mut healed).await;
        assert!(proxy.connections_relayed() >= 3);
    }
}
