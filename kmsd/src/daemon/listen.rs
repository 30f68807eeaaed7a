//! Listeners and the server layers they share. Connection limits,
//! timeouts and accept backoff are in `accept.rs`.

use std::{io, os::unix::fs::PermissionsExt, path::Path, sync::Arc, time::Duration};

use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
    sync::{mpsc, watch},
    task::JoinSet,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tower::util::MapResponseLayer;

use super::accept::{Conn, Gate, RateLimitedLog};
use crate::grpc;

/// A server with the layers every listener shares.
pub(crate) fn server()
-> Server<tower::layer::util::Stack<MapResponseLayer<OversizedFn>, tower::layer::util::Identity>> {
    Server::builder().layer(MapResponseLayer::new(
        grpc::oversized_as_resource_exhausted as OversizedFn,
    ))
}

pub(crate) type OversizedFn =
    fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body>;

pub(crate) async fn wait_for_shutdown(mut rx: watch::Receiver<bool>) {
    // An error means the sender is gone: shut down as well.
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Binds the unix socket, replacing a stale socket file left by a crash but
/// never one a live process still answers on.
pub(crate) fn bind_unix(path: &Path, mode: u32) -> io::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process is serving on this socket",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// Accepted unix-socket connections, keeping only peers in the allow lists
/// (by uid or gid; empty lists allow every peer the socket mode lets in).
/// Accept errors back off and are logged sparingly: the stream never
/// yields one (tonic would retry at once, spinning).
pub(crate) fn unix_incoming(
    listener: UnixListener,
    (uids, gids): (Vec<u32>, Vec<u32>),
    mut stop: watch::Receiver<bool>,
) -> ReceiverStream<io::Result<UnixStream>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let errors = RateLimitedLog::default();
        let refused = RateLimitedLog::default();
        let mut backoff = Duration::from_millis(10);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|s| *s) => return,
            };
            let stream = match accepted {
                Ok((stream, _)) => {
                    backoff = Duration::from_millis(10);
                    stream
                }
                Err(e) => {
                    if let Some(suppressed) = errors.should_log() {
                        tracing::warn!(listener = "unix", error = %e, suppressed, "accept failed; backing off");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            if !uids.is_empty() || !gids.is_empty() {
                let allowed = match stream.peer_cred() {
                    Ok(cred) => uids.contains(&cred.uid()) || gids.contains(&cred.gid()),
                    Err(_) => false,
                };
                if !allowed {
                    if let Some(suppressed) = refused.should_log() {
                        let cred = stream.peer_cred().ok();
                        tracing::warn!(
                            uid = cred.map(|c| c.uid()),
                            gid = cred.map(|c| c.gid()),
                            suppressed,
                            "refused a unix-socket peer that is not in server.unix_socket_allowed_uids/gids"
                        );
                    }
                    continue;
                }
            }
            if tx.send(Ok(stream)).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Accepted gRPC connections on a TCP listener, within `gate`'s limits:
/// with `tls`, connections whose handshake completed; without, connections
/// that sent their first bytes in time. Preparing a connection runs in its
/// own task, so a slow client never stalls the accept loop.
pub(crate) fn grpc_incoming<T: Send + 'static>(
    listener: TcpListener,
    gate: Gate,
    mut stop: watch::Receiver<bool>,
    prepare: impl Fn(Gate, Conn<TcpStream>, std::net::SocketAddr) -> PrepareFuture<T> + Send + 'static,
) -> ReceiverStream<io::Result<T>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some((conn, peer)) = gate.accept(&listener, &mut stop).await {
            let tx = tx.clone();
            let ready = prepare(gate.clone(), conn, peer);
            tokio::spawn(async move {
                if let Some(conn) = ready.await {
                    let _ = tx.send(Ok(conn)).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A connection being made ready for the server (a TLS handshake, the
/// wait for the first bytes).
pub(crate) type PrepareFuture<T> =
    std::pin::Pin<Box<dyn Future<Output = Option<T>> + Send + 'static>>;

/// Plain TCP: the first bytes must arrive within the header-read timeout.
pub(crate) fn plaintext(
    gate: Gate,
    conn: Conn<TcpStream>,
    _peer: std::net::SocketAddr,
) -> PrepareFuture<Conn<TcpStream>> {
    Box::pin(async move { gate.first_bytes(&conn).await.then_some(conn) })
}

/// TLS: the handshake must complete within the header-read timeout, with
/// at most `max_tls_handshakes` under way.
pub(crate) fn tls(
    config: Arc<rustls::ServerConfig>,
) -> impl Fn(Gate, Conn<TcpStream>, std::net::SocketAddr) -> PrepareFuture<TlsStream<Conn<TcpStream>>>
+ Send
+ 'static {
    let acceptor = TlsAcceptor::from(config);
    move |gate, conn, peer| {
        let acceptor = acceptor.clone();
        Box::pin(async move { gate.handshake(peer, acceptor.accept(conn)).await })
    }
}

/// Serves `router` on `listener` (HTTP/1.1 and HTTP/2, over TLS when
/// `tls` is set) within `gate`'s limits until `stop`, then lets requests in
/// flight finish.
pub(crate) async fn serve_http(
    listener: TcpListener,
    gate: Gate,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let mut connections = JoinSet::new();
    while let Some((conn, peer)) = gate.accept(&listener, &mut stop).await {
        while connections.try_join_next().is_some() {}
        let (gate, router, stop, acceptor) =
            (gate.clone(), router.clone(), stop.clone(), acceptor.clone());
        connections.spawn(async move {
            // A connection that has not sent a request yet is dropped at
            // shutdown rather than waited for.
            let shutdown = wait_for_shutdown(stop.clone());
            match acceptor {
                Some(acceptor) => {
                    let tls = tokio::select! {
                        tls = gate.handshake(peer, acceptor.accept(conn)) => tls,
                        () = shutdown => None,
                    };
                    if let Some(tls) = tls {
                        serve_http_connection(tls, &gate, router, stop).await;
                    }
                }
                None => {
                    let ready = tokio::select! {
                        ready = gate.first_bytes(&conn) => ready,
                        () = shutdown => false,
                    };
                    if ready {
                        serve_http_connection(conn, &gate, router, stop).await;
                    }
                }
            }
        });
    }
    // Stop accepting at once; connections finish their requests.
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn serve_http_connection<IO>(
    io: IO,
    gate: &Gate,
    router: axum::Router,
    stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(gate.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64);
    let connection =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(router));
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(listener = gate.name, error = %e, "HTTP connection ended with an error");
            }
        }
        () = wait_for_shutdown(stop) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
