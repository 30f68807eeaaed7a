//! Who is calling, from the connection a request arrived on.

use tonic::{Request, transport::server::UdsConnectInfo};

use crate::request::{Identity, RequestContext};

/// The caller of a gRPC request: the kernel credentials of a unix-socket
/// peer; otherwise anonymous.
pub(crate) fn request_context<T>(request: &Request<T>) -> RequestContext {
    if let Some(cred) = request
        .extensions()
        .get::<UdsConnectInfo>()
        .and_then(|info| info.peer_cred)
    {
        return RequestContext::from(Identity::UnixPeer {
            uid: cred.uid(),
            gid: cred.gid(),
        });
    }
    RequestContext::from(Identity::Anonymous)
}
