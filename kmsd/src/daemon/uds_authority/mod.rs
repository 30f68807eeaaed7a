//! Stock gRPC clients over the unix socket.
//!
//! grpcio (gRPC C-core, under Python, C++, Ruby, PHP and C#), grpc-java and
//! grpc-swift send the socket path, percent-encoded or raw, as the HTTP/2
//! `:authority` of every request. The h2 server under tonic refuses such an
//! authority with `RST_STREAM(PROTOCOL_ERROR)` (hyperium/h2 pull request
//! 487 is still open; grpc/grpc issue 38142 and grpc/grpc-java issue 12664
//! were closed without a client-side change), and h2 has no option to
//! accept it. So the unix-socket listener wraps each connection in
//! [`AuthorityFix`], which replaces such an authority with `localhost`
//! before hyper reads the request. kmsd never uses the authority; clients
//! need no option. TCP listeners are not wrapped: clients there send
//! `host:port`.

mod rewrite;
#[cfg(test)]
mod tests;

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::{Connected, UdsConnectInfo};

use self::rewrite::Rewriter;

/// How much is read from the socket at a time while frames are parsed.
const READ_CHUNK: usize = 16 * 1024;

/// Wraps every accepted unix-socket connection in [`AuthorityFix`].
pub(crate) fn fix_incoming<S, E>(
    incoming: impl tokio_stream::Stream<Item = Result<S, E>>,
) -> impl tokio_stream::Stream<Item = Result<AuthorityFix<S>, E>> {
    use tokio_stream::StreamExt;
    incoming.map(|stream| stream.map(AuthorityFix::new))
}

/// A connection whose incoming request headers have an invalid
/// `:authority` replaced (see the module docs). What the server writes
/// passes through untouched.
#[derive(Debug)]
pub(crate) struct AuthorityFix<S> {
    inner: S,
    rewriter: Rewriter,
    /// Bytes read from the socket, not yet handled.
    input: BytesMut,
    /// Handled bytes hyper has not read yet.
    output: BytesMut,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            rewriter: Rewriter::default(),
            input: BytesMut::new(),
            output: BytesMut::new(),
            eof: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.rewriter.is_passthrough() {
                if this.input.is_empty() {
                    // The common case after the first request: no copy.
                    return Pin::new(&mut this.inner).poll_read(cx, buf);
                }
                this.output.extend_from_slice(&this.input.split());
                continue;
            }
            this.input.reserve(READ_CHUNK);
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.input
            ))?;
            if n == 0 {
                // hyper sees the truncated frame, if any, and the end.
                this.eof = true;
                this.output.extend_from_slice(&this.input.split());
                continue;
            }
            if let Err(error) = this.rewriter.process(&mut this.input, &mut this.output) {
                tracing::info!(%error, "closing a unix-socket connection whose request headers cannot be read");
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The policy identifies unix-socket callers by their kernel credentials:
/// they stay those of the wrapped socket.
impl<S: Connected<ConnectInfo = UdsConnectInfo>> Connected for AuthorityFix<S> {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
