//! Listeners and the server layers they share.

use std::{io, os::unix::fs::PermissionsExt, path::Path, sync::Arc};

use tokio::{
    net::{TcpListener, TcpStream, UnixListener},
    sync::watch,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tonic::transport::Server;
use tower::util::MapResponseLayer;

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
pub(crate) fn unix_incoming(
    listener: UnixListener,
    (uids, gids): (Vec<u32>, Vec<u32>),
) -> impl tokio_stream::Stream<Item = io::Result<tokio::net::UnixStream>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::UnixListenerStream::new(listener).filter(move |stream| {
        let Ok(stream) = stream else { return true };
        if uids.is_empty() && gids.is_empty() {
            return true;
        }
        match stream.peer_cred() {
            Ok(cred) if uids.contains(&cred.uid()) || gids.contains(&cred.gid()) => true,
            Ok(cred) => {
                tracing::warn!(uid = cred.uid(), gid = cred.gid(), "refused a unix-socket peer that is not in server.unix_socket_allowed_uids/gids");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "refused a unix-socket peer whose credentials cannot be read");
                false
            }
        }
    })
}

/// Accepted plain TCP connections (with TCP_NODELAY: requests are small
/// and latency-bound).
pub(crate) fn tcp_incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = io::Result<TcpStream>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|stream| {
        let stream = stream?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

/// Accepted TLS connections. Each handshake runs in its own task with a
/// deadline, so a slow or hostile client cannot stall the accept loop; a
/// failed handshake (no certificate, an unknown CA, an expired certificate)
/// is logged and the connection dropped.
pub(crate) fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    mut stop: watch::Receiver<bool>,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|s| *s) => return,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
