//! gRPC reflection, answered only to callers the policy allows at least one
//! operation: it describes the API, which only those callers can use.
//! Health (`grpc.health.v1`) stays public, for orchestrators' probes.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tonic::{Status, body::Body, server::NamedService};
use tower::Service;

use super::identity::caller;
use crate::{request::RequestContext, service::Kms};

/// A service (reflection) behind the "allowed anything" check.
#[derive(Debug, Clone)]
pub(crate) struct Gated<S> {
    inner: S,
    kms: Kms,
}

impl<S> Gated<S> {
    pub(crate) fn new(inner: S, kms: Kms) -> Self {
        Self { inner, kms }
    }
}

impl<S: NamedService> NamedService for Gated<S> {
    const NAME: &'static str = S::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

impl<S> Service<http::Request<Body>> for Gated<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let cx = RequestContext::from(caller(request.extensions()));
        if self.kms.allows_anything(&cx) {
            Box::pin(self.inner.call(request))
        } else {
            tracing::info!(caller = %cx.caller, "gRPC reflection refused: the policy allows this caller nothing");
            Box::pin(std::future::ready(Ok(Status::permission_denied(
                "permission denied",
            )
            .into_http())))
        }
    }
}
