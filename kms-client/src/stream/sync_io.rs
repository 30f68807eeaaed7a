//! `std::io` adapters. Each holds one chunk of buffer whatever the object
//! size, and releases plaintext only after its chunk authenticated.

use std::{
    io::{self, BufRead, Read, Write},
    task::Poll,
};

use super::{
    StreamError,
    driver::{self, ReadCore, WriteCore},
    layout::RangePlan,
    open::Decryptor,
    seal::{Encryptor, PartInfo, Sealer},
};

/// Turns a `Poll` from a loop fed by blocking calls into its result.
fn blocking<T>(poll: Poll<io::Result<T>>) -> io::Result<T> {
    match poll {
        Poll::Ready(result) => result,
        // The closures given to the loops below never return Pending.
        Poll::Pending => Err(io::Error::other("blocking I/O returned Pending")),
    }
}

impl Encryptor {
    /// Encrypts everything written to it into `inner`.
    /// [`finish`](EncryptWriter::finish) must be called: a stream dropped
    /// before that lacks its final chunk, and every reader refuses it.
    pub fn writer<W: Write>(self, inner: W) -> EncryptWriter<W> {
        EncryptWriter {
            inner,
            sealer: self.into_sealer(),
        }
    }

    /// Reads plaintext from `inner` and yields the stored stream.
    pub fn reader<R: Read>(self, inner: R) -> EncryptReader<R> {
        EncryptReader {
            inner,
            sealer: self.into_sealer(),
        }
    }
}

/// A writer that encrypts into another writer; made by
/// [`Encryptor::writer`].
#[derive(Debug)]
pub struct EncryptWriter<W> {
    inner: W,
    sealer: Sealer,
}

impl<W: Write> EncryptWriter<W> {
    fn drain(&mut self) -> io::Result<()> {
        let inner = &mut self.inner;
        blocking(driver::drain_sealer(&mut self.sealer, |data| {
            Poll::Ready(inner.write(data))
        }))
    }

    /// Writes the final chunk, flushes, and returns the inner writer and
    /// what the stream is (for [`Layout::seal`](super::Layout::seal)).
    pub fn finish(mut self) -> io::Result<(W, PartInfo)> {
        let inner = &mut self.inner;
        blocking(driver::finish_sealer(&mut self.sealer, |data| {
            Poll::Ready(inner.write(data))
        }))?;
        self.inner.flush()?;
        Ok((self.inner, self.sealer.info()))
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }
}

impl<W: Write> Write for EncryptWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.sealer.is_finished() {
            return Err(StreamError::Finished.into());
        }
        self.drain()?;
        Ok(self.sealer.push(data)?)
    }

    /// Writes out every sealed chunk. The partial chunk being filled stays
    /// buffered: sealing it early would make it the last one.
    fn flush(&mut self) -> io::Result<()> {
        self.drain()?;
        self.inner.flush()
    }
}

/// A reader of the stored stream of the plaintext read from another reader;
/// made by [`Encryptor::reader`].
///
/// Its [`BufRead`] methods hand out the sealed chunk in place, without a
/// copy.
#[derive(Debug)]
pub struct EncryptReader<R> {
    inner: R,
    sealer: Sealer,
}

impl<R: Read> EncryptReader<R> {
    /// What the stream is, once it has been read to the end.
    pub fn info(&self) -> Option<PartInfo> {
        self.sealer.is_done().then(|| self.sealer.info())
    }

    /// The inner reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

impl<R: Read> BufRead for EncryptReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let inner = &mut self.inner;
        blocking(driver::fill_sealer(&mut self.sealer, |buf| {
            Poll::Ready(inner.read(buf))
        }))?;
        Ok(self.sealer.pending())
    }

    fn consume(&mut self, n: usize) {
        self.sealer.consume(n);
    }
}

impl<R: Read> Read for EncryptReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        read_buffered(self, out)
    }
}

impl Decryptor {
    /// Decrypts the whole stored object read from `source`. The reader
    /// fails, rather than ending early, if the source is truncated, and
    /// fails if data follows the object.
    pub fn reader<R: Read>(&self, source: R) -> DecryptReader<R> {
        DecryptReader {
            inner: source,
            core: ReadCore::new(self.full_opener()),
        }
    }

    /// Decrypts a plaintext range: `source` yields the concatenation of
    /// `plan.fetch_ranges()`, in order, and then ends (bound a longer
    /// source with [`Read::take`]): the reader checks for end of input and
    /// fails with [`StreamError::TrailingData`] if more follows.
    pub fn range_reader<R: Read>(
        &self,
        plan: &RangePlan,
        source: R,
    ) -> Result<DecryptReader<R>, StreamError> {
        Ok(DecryptReader {
            inner: source,
            core: ReadCore::new(self.opener(plan)?),
        })
    }

    /// Decrypts the stored object written to it into `sink`.
    /// [`finish`](DecryptWriter::finish) says whether the object was whole.
    pub fn writer<W: Write>(&self, sink: W) -> DecryptWriter<W> {
        DecryptWriter {
            inner: sink,
            core: WriteCore::new(self.full_opener()),
        }
    }
}

/// A reader of plaintext decrypted from a reader of stored bytes; made by
/// [`Decryptor::reader`] or [`Decryptor::range_reader`].
///
/// Its [`BufRead`] methods hand out the opened chunk in place.
#[derive(Debug)]
pub struct DecryptReader<R> {
    inner: R,
    core: ReadCore,
}

impl<R: Read> DecryptReader<R> {
    /// The inner reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The inner reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> BufRead for DecryptReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let inner = &mut self.inner;
        blocking(self.core.advance(|buf| Poll::Ready(inner.read(buf))))?;
        Ok(self.core.available())
    }

    fn consume(&mut self, n: usize) {
        self.core.consume(n);
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        read_buffered(self, out)
    }
}

/// A writer that decrypts stored bytes into another writer; made by
/// [`Decryptor::writer`].
#[derive(Debug)]
pub struct DecryptWriter<W> {
    inner: W,
    core: WriteCore,
}

impl<W: Write> DecryptWriter<W> {
    fn drain(&mut self) -> io::Result<()> {
        let inner = &mut self.inner;
        blocking(self.core.drain(|data| Poll::Ready(inner.write(data))))
    }

    /// Checks that the whole object arrived ([`StreamError::Truncated`]
    /// otherwise), flushes, and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.drain()?;
        self.core.finish()?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for DecryptWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.drain()?;
        self.core.push(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()?;
        self.inner.flush()
    }
}

/// `Read::read` of a reader that is its own `BufRead`: copies out what
/// one fill makes available (the encrypt and decrypt readers share it).
fn read_buffered(reader: &mut impl BufRead, out: &mut [u8]) -> io::Result<usize> {
    let available = reader.fill_buf()?;
    let n = available.len().min(out.len());
    out[..n].copy_from_slice(&available[..n]);
    reader.consume(n);
    Ok(n)
}
