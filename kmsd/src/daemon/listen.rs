//! Listeners and the server layers they share.

use std::{io, os::unix::fs::PermissionsExt, path::Path};

use tokio::{net::UnixListener, sync::watch};
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
