//! tokio adapters: the same state machines as the `std::io` ones, driven by
//! `poll_*` calls.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};

use super::{
    StreamError,
    driver::{self, ReadCore, WriteCore},
    layout::RangePlan,
    open::Decryptor,
    seal::{Encryptor, PartInfo, Sealer},
};

/// Reads into `buf` from a pinned inner reader, as the drivers expect.
fn poll_read_into<R: AsyncRead + Unpin>(
    inner: &mut R,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    let mut read_buf = ReadBuf::new(buf);
    ready!(Pin::new(inner).poll_read(cx, &mut read_buf))?;
    Poll::Ready(Ok(read_buf.filled().len()))
}

fn copy_out(available: &[u8], out: &mut ReadBuf<'_>) -> usize {
    let n = available.len().min(out.remaining());
    out.put_slice(&available[..n]);
    n
}

impl Encryptor {
    /// The tokio form of [`Encryptor::writer`]: `poll_shutdown` writes the
    /// final chunk; a stream not shut down lacks it and is refused.
    pub fn async_writer<W: AsyncWrite + Unpin>(self, inner: W) -> AsyncEncryptWriter<W> {
        AsyncEncryptWriter {
            inner,
            sealer: self.into_sealer(),
        }
    }

    /// The tokio form of [`Encryptor::reader`].
    pub fn async_reader<R: AsyncRead + Unpin>(self, inner: R) -> AsyncEncryptReader<R> {
        AsyncEncryptReader {
            inner,
            sealer: self.into_sealer(),
        }
    }
}

/// An [`AsyncWrite`] that encrypts into another; made by
/// [`Encryptor::async_writer`].
#[derive(Debug)]
pub struct AsyncEncryptWriter<W> {
    inner: W,
    sealer: Sealer,
}

impl<W> AsyncEncryptWriter<W> {
    /// What the stream is, once it has been shut down.
    pub fn info(&self) -> Option<PartInfo> {
        self.sealer.is_done().then(|| self.sealer.info())
    }

    /// The inner writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for AsyncEncryptWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.sealer.is_finished() {
            return Poll::Ready(Err(StreamError::Finished.into()));
        }
        let inner = &mut this.inner;
        ready!(driver::drain_sealer(&mut this.sealer, |d| Pin::new(
            &mut *inner
        )
        .poll_write(cx, d)))?;
        Poll::Ready(Ok(this.sealer.push(data)?))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let inner = &mut this.inner;
        ready!(driver::drain_sealer(&mut this.sealer, |d| Pin::new(
            &mut *inner
        )
        .poll_write(cx, d)))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let inner = &mut this.inner;
        ready!(driver::finish_sealer(&mut this.sealer, |d| Pin::new(
            &mut *inner
        )
        .poll_write(cx, d)))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// An [`AsyncRead`] of the stored stream of another reader's plaintext;
/// made by [`Encryptor::async_reader`].
#[derive(Debug)]
pub struct AsyncEncryptReader<R> {
    inner: R,
    sealer: Sealer,
}

impl<R> AsyncEncryptReader<R> {
    /// What the stream is, once it has been read to the end.
    pub fn info(&self) -> Option<PartInfo> {
        self.sealer.is_done().then(|| self.sealer.info())
    }
}

impl<R: AsyncRead + Unpin> AsyncBufRead for AsyncEncryptReader<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        let inner = &mut this.inner;
        ready!(driver::fill_sealer(&mut this.sealer, |buf| poll_read_into(
            inner, cx, buf
        )))?;
        Poll::Ready(Ok(this.sealer.pending()))
    }

    fn consume(self: Pin<&mut Self>, n: usize) {
        self.get_mut().sealer.consume(n);
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for AsyncEncryptReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        poll_read_buffered(self, cx, out)
    }
}

impl Decryptor {
    /// The tokio form of [`Decryptor::reader`].
    pub fn async_reader<R: AsyncRead + Unpin>(&self, source: R) -> AsyncDecryptReader<R> {
        AsyncDecryptReader {
            inner: source,
            core: ReadCore::new(self.full_opener()),
        }
    }

    /// The tokio form of [`Decryptor::range_reader`].
    pub fn async_range_reader<R: AsyncRead + Unpin>(
        &self,
        plan: &RangePlan,
        source: R,
    ) -> Result<AsyncDecryptReader<R>, StreamError> {
        Ok(AsyncDecryptReader {
            inner: source,
            core: ReadCore::new(self.opener(plan)?),
        })
    }

    /// The tokio form of [`Decryptor::writer`]: `poll_shutdown` fails with
    /// [`StreamError::Truncated`] unless the whole object arrived.
    pub fn async_writer<W: AsyncWrite + Unpin>(&self, sink: W) -> AsyncDecryptWriter<W> {
        AsyncDecryptWriter {
            inner: sink,
            core: WriteCore::new(self.full_opener()),
        }
    }
}

/// An [`AsyncRead`] of plaintext decrypted from stored bytes; made by
/// [`Decryptor::async_reader`] or [`Decryptor::async_range_reader`].
#[derive(Debug)]
pub struct AsyncDecryptReader<R> {
    inner: R,
    core: ReadCore,
}

impl<R: AsyncRead + Unpin> AsyncBufRead for AsyncDecryptReader<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        let inner = &mut this.inner;
        ready!(this.core.advance(|buf| poll_read_into(inner, cx, buf)))?;
        Poll::Ready(Ok(this.core.available()))
    }

    fn consume(self: Pin<&mut Self>, n: usize) {
        self.get_mut().core.consume(n);
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for AsyncDecryptReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        poll_read_buffered(self, cx, out)
    }
}

/// An [`AsyncWrite`] that decrypts stored bytes into another; made by
/// [`Decryptor::async_writer`].
#[derive(Debug)]
pub struct AsyncDecryptWriter<W> {
    inner: W,
    core: WriteCore,
}

impl<W> AsyncDecryptWriter<W> {
    /// The inner writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for AsyncDecryptWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let inner = &mut this.inner;
        ready!(this.core.drain(|d| Pin::new(&mut *inner).poll_write(cx, d)))?;
        Poll::Ready(this.core.push(data))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let inner = &mut this.inner;
        ready!(this.core.drain(|d| Pin::new(&mut *inner).poll_write(cx, d)))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let inner = &mut this.inner;
        ready!(this.core.drain(|d| Pin::new(&mut *inner).poll_write(cx, d)))?;
        this.core.finish()?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// `AsyncRead::poll_read` of a reader that is its own `AsyncBufRead`:
/// copies out what one fill makes available (the encrypt and decrypt
/// readers share it).
fn poll_read_buffered<T: AsyncBufRead>(
    mut reader: Pin<&mut T>,
    cx: &mut Context<'_>,
    out: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    let available = ready!(reader.as_mut().poll_fill_buf(cx))?;
    let n = copy_out(available, out);
    reader.consume(n);
    Poll::Ready(Ok(()))
}
