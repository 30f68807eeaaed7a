//! Who is calling, from the connection a request arrived on.

use tonic::{
    Request,
    transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo},
};

use crate::request::{Identity, RequestContext};

/// The caller of a gRPC request: the key of its TLS client certificate, or
/// the kernel credentials of a unix-socket peer; otherwise anonymous (plain
/// TCP, only with `danger_plaintext_tcp`).
pub(crate) fn request_context<T>(request: &Request<T>) -> RequestContext {
    RequestContext::from(caller(request.extensions()))
}

/// The caller, from the connection information tonic puts in every
/// request's extensions (also before a request becomes a `tonic::Request`,
/// for services kmsd does not implement itself, such as reflection).
pub(crate) fn caller(extensions: &http::Extensions) -> Identity {
    if let Some(spki_sha256) = extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
        .and_then(|certs| certs.first().and_then(crate::tls::spki_sha256))
    {
        return Identity::Certificate {
            spki_sha256,
            name: None,
        };
    }
    if let Some(cred) = extensions
        .get::<UdsConnectInfo>()
        .and_then(|info| info.peer_cred)
    {
        return Identity::UnixPeer {
            uid: cred.uid(),
            gid: cred.gid(),
        };
    }
    Identity::Anonymous
}
