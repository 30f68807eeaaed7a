//! Accepting connections so that no flood on a TCP listener can take kmsd,
//! or its unix-socket data plane, down.
//!
//! - Each TCP listener has a connection limit, taken *before* `accept`: at
//!   the limit, new connections wait in the kernel's backlog and use no
//!   descriptor of kmsd's.
//! - The limits together stay within a descriptor budget: kmsd raises its
//!   soft `RLIMIT_NOFILE` to the hard limit and keeps a quarter of it (at
//!   least [`RESERVED_DESCRIPTORS`]) for the unix socket, the backend, the
//!   audit log and key files, so the data plane on the unix socket keeps
//!   answering whatever happens on the TCP listeners.
//! - A connection must send its first bytes (or finish its TLS handshake)
//!   within the header-read timeout, and is closed after the idle timeout
//!   without a byte either way; HTTP/1 request headers have the same
//!   header-read timeout (which also ends idle keep-alive connections).
//! - TLS handshakes run concurrently up to a bound per listener.
//! - An accept error (EMFILE and the like) backs off instead of spinning,
//!   and is logged at most once per [`LOG_EVERY`] with a count.

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    time::{Instant, Sleep},
};

/// Descriptors kept back from the TCP listeners at the least.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// A repeated event (an accept error, a refused handshake) is logged at
/// most this often.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);

use crate::config::ListenerLimits;

/// Raises the soft descriptor limit to the hard one and returns how many
/// descriptors the TCP listeners may hold together.
pub(crate) fn descriptor_budget() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "cannot raise RLIMIT_NOFILE to its hard limit");
        }
    }
    // `None` is "unlimited"; a million is more than any listener needs.
    let current = getrlimit(Resource::Nofile).current.unwrap_or(1 << 20);
    let reserved = (current / 4).max(RESERVED_DESCRIPTORS);
    current.saturating_sub(reserved).max(3)
}

/// Scales `wanted` (one limit per listener present) down proportionally when
/// together they exceed `budget`; each keeps at least one connection.
pub(crate) fn fit_to_budget(wanted: &[usize], budget: u64) -> Vec<usize> {
    let total: u64 = wanted.iter().map(|w| *w as u64).sum();
    if total <= budget {
        return wanted.to_vec();
    }
    wanted
        .iter()
        .map(|w| usize::try_from((*w as u64 * budget / total).max(1)).unwrap_or(1))
        .collect()
}

/// Logs a repeated event at most once per [`LOG_EVERY`], with how many
/// occurrences were not logged.
#[derive(Debug, Default)]
pub(crate) struct RateLimitedLog {
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimitedLog {
    /// `Some(suppressed)` when this occurrence should be logged.
    pub(crate) fn should_log(&self) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < LOG_EVERY => {
                state.1 += 1;
                None
            }
            _ => {
                let suppressed = state.1;
                *state = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

/// One TCP listener's limits, shared by its connections.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    /// The listener's name in logs ("grpc", "admin", "metrics").
    pub(crate) name: &'static str,
    connections: Arc<Semaphore>,
    handshakes: Arc<Semaphore>,
    /// Time to the first bytes, the TLS handshake, HTTP/1 headers.
    pub(crate) header_read_timeout: Duration,
    idle_timeout: Duration,
    /// Refused handshakes and early closes, logged sparingly.
    pub(crate) refusals: Arc<RateLimitedLog>,
}

impl Gate {
    pub(crate) fn new(name: &'static str, max_connections: usize, limits: &ListenerLimits) -> Self {
        Self {
            name,
            connections: Arc::new(Semaphore::new(max_connections.max(1))),
            handshakes: Arc::new(Semaphore::new(limits.max_tls_handshakes.max(1))),
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            refusals: Arc::new(RateLimitedLog::default()),
        }
    }

    /// Takes a connection slot, then accepts; `None` once `stop` is set.
    /// Accept errors back off and are logged sparingly; they never end the
    /// loop.
    pub(crate) async fn accept(
        &self,
        listener: &TcpListener,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<(Conn<TcpStream>, std::net::SocketAddr)> {
        let permit = tokio::select! {
            permit = Arc::clone(&self.connections).acquire_owned() => permit.ok()?,
            _ = stop.wait_for(|s| *s) => return None,
        };
        let errors = RateLimitedLog::default();
        let mut backoff = Duration::from_millis(50);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|s| *s) => return None,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((Conn::new(stream, permit, self.idle_timeout), peer));
                }
                Err(e) => {
                    let pause = if is_resource_exhaustion(&e) {
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        backoff
                    } else {
                        Duration::from_millis(10)
                    };
                    if let Some(suppressed) = errors.should_log() {
                        tracing::warn!(listener = self.name, error = %e, suppressed, "accept failed; backing off");
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// Waits for a handshake slot and runs `handshake` within the
    /// header-read timeout; `None` (logged sparingly) if it fails.
    pub(crate) async fn handshake<T, E: std::fmt::Display>(
        &self,
        peer: std::net::SocketAddr,
        handshake: impl Future<Output = Result<T, E>>,
    ) -> Option<T> {
        let bounded = async {
            let _slot = self.handshakes.acquire().await.ok()?;
            Some(handshake.await)
        };
        let outcome = tokio::time::timeout(self.header_read_timeout, bounded).await;
        let reason = match outcome {
            Ok(Some(Ok(done))) => return Some(done),
            Ok(Some(Err(e))) => e.to_string(),
            Ok(None) => "shutting down".to_owned(),
            Err(_) => "timed out".to_owned(),
        };
        if let Some(suppressed) = self.refusals.should_log() {
            tracing::info!(listener = self.name, %peer, error = %reason, suppressed, "TLS handshake refused");
        }
        None
    }

    /// Waits until a plaintext connection sends its first bytes, within
    /// the header-read timeout.
    pub(crate) async fn first_bytes(&self, conn: &Conn<TcpStream>) -> bool {
        let mut byte = [0u8; 1];
        let arrived =
            tokio::time::timeout(self.header_read_timeout, conn.get_ref().peek(&mut byte))
                .await
                .is_ok_and(|r| r.is_ok_and(|n| n > 0));
        if !arrived && self.refusals.should_log().is_some() {
            tracing::debug!(
                listener = self.name,
                "closed a connection that sent nothing in time"
            );
        }
        arrived
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM: retrying at once fails again.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// An accepted connection: holds its listener's slot until dropped, and
/// fails with `TimedOut` after the idle timeout without a byte either way.
#[derive(Debug)]
pub(crate) struct Conn<S> {
    inner: S,
    _slot: OwnedSemaphorePermit,
    idle: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<S> Conn<S> {
    fn new(inner: S, slot: OwnedSemaphorePermit, idle: Duration) -> Self {
        let last = Instant::now();
        Self {
            inner,
            _slot: slot,
            idle,
            last,
            timer: Box::pin(tokio::time::sleep_until(last + idle)),
        }
    }

    /// The wrapped stream.
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    /// `Ready` with the error once the connection has been idle too long;
    /// otherwise `Pending`, with the timer armed.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let deadline = self.last + self.idle;
            if Instant::now() >= deadline {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for too long",
                ));
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.last = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(result) => {
                if result.as_ref().is_ok_and(|n| *n > 0) {
                    this.last = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                if result.as_ref().is_ok_and(|n| *n > 0) {
                    this.last = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// tonic reads the caller's address (and, through TLS, its certificate)
/// from the stream it is given; the wrapper passes that through.
impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Conn<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_fit_the_budget() {
        assert_eq!(fit_to_budget(&[1024, 64, 64], 10_000), vec![1024, 64, 64]);
        let fitted = fit_to_budget(&[1024, 64, 64], 192);
        assert!(fitted.iter().sum::<usize>() <= 192, "{fitted:?}");
        assert!(fitted.iter().all(|n| *n >= 1), "{fitted:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_events_are_logged_once_per_window() {
        let log = RateLimitedLog::default();
        assert_eq!(log.should_log(), Some(0));
        for _ in 0..1000 {
            assert_eq!(log.should_log(), None);
        }
        tokio::time::advance(LOG_EVERY).await;
        assert_eq!(log.should_log(), Some(1000));
    }

    #[tokio::test]
    async fn a_connection_must_send_its_first_bytes_in_time() {
        use tokio::io::AsyncWriteExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ListenerLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ListenerLimits::default()
        };
        let gate = Gate::new("test", 4, &limits);
        let (_tx, mut stop) = watch::channel(false);
        let _silent = TcpStream::connect(addr).await.unwrap();
        let (conn, _) = gate.accept(&listener, &mut stop).await.unwrap();
        let started = Instant::now();
        assert!(!gate.first_bytes(&conn).await);
        assert!(started.elapsed() >= Duration::from_millis(300));
        let mut talker = TcpStream::connect(addr).await.unwrap();
        talker.write_all(b"GET").await.unwrap();
        let (conn, _) = gate.accept(&listener, &mut stop).await.unwrap();
        assert!(gate.first_bytes(&conn).await);
    }

    #[tokio::test]
    async fn an_idle_connection_fails_and_a_busy_one_does_not() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let slot = Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
        let mut conn = Conn::new(stream, slot, Duration::from_millis(300));
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            client.write_all(b"x").await.unwrap();
            let mut byte = [0u8; 1];
            conn.read_exact(&mut byte).await.unwrap();
        }
        let mut byte = [0u8; 1];
        let err = conn.read(&mut byte).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
