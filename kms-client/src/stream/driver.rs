//! The I/O loops shared by the std and tokio adapters.
//!
//! Each loop takes the underlying read or write as a closure returning
//! `Poll`: the tokio adapters pass their `poll_*` calls, the std adapters
//! pass blocking calls that are always `Ready`. So one implementation of
//! every rule (when to seal, when a stream is truncated, when data trails)
//! serves both.

use std::{
    fmt, io,
    ops::Range,
    task::{Poll, ready},
};

use super::{StreamError, open::Opener, seal::Sealer};

/// Writes everything the sealer has pending.
pub(crate) fn drain_sealer(
    sealer: &mut Sealer,
    mut write: impl FnMut(&[u8]) -> Poll<io::Result<usize>>,
) -> Poll<io::Result<()>> {
    loop {
        let pending = sealer.pending();
        if pending.is_empty() {
            return Poll::Ready(Ok(()));
        }
        match ready!(write(pending)) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => sealer.consume(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// Drains, seals the final chunk, drains again.
pub(crate) fn finish_sealer(
    sealer: &mut Sealer,
    mut write: impl FnMut(&[u8]) -> Poll<io::Result<usize>>,
) -> Poll<io::Result<()>> {
    while !sealer.is_done() {
        ready!(drain_sealer(sealer, &mut write))?;
        sealer.finish();
    }
    Poll::Ready(Ok(()))
}

/// Reads plaintext until the sealer has output (a sealed chunk, or the
/// header) or the stream is complete.
pub(crate) fn fill_sealer(
    sealer: &mut Sealer,
    mut read: impl FnMut(&mut [u8]) -> Poll<io::Result<usize>>,
) -> Poll<io::Result<()>> {
    loop {
        if !sealer.pending().is_empty() || sealer.is_finished() {
            return Poll::Ready(Ok(()));
        }
        match ready!(read(sealer.space())) {
            Ok(0) => sealer.finish(),
            Ok(n) => sealer.add(n)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

#[derive(Debug)]
enum Status {
    Running,
    Done,
    Failed(StreamError),
}

/// A decrypting reader's state: the opener, one chunk of buffer, and the
/// authenticated plaintext not yet handed out.
pub(crate) struct ReadCore {
    opener: Opener,
    buf: Vec<u8>,
    filled: usize,
    out: Range<usize>,
    status: Status,
}

/// Shows the state, never the buffer: it holds plaintext.
impl fmt::Debug for ReadCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadCore")
            .field("opener", &self.opener)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl ReadCore {
    pub(crate) fn new(opener: Opener) -> Self {
        Self {
            buf: vec![0; opener.max_unit()],
            opener,
            filled: 0,
            out: 0..0,
            status: Status::Running,
        }
    }

    /// Authenticated plaintext ready to hand out; empty at the end.
    pub(crate) fn available(&self) -> &[u8] {
        &self.buf[self.out.clone()]
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.out.start = (self.out.start + n).min(self.out.end);
    }

    fn fail(&mut self, error: StreamError) -> Poll<io::Result<()>> {
        self.status = Status::Failed(error.clone());
        Poll::Ready(Err(error.into()))
    }

    /// Makes plaintext available, or reaches the verified end. A stream
    /// error poisons the reader: every later call returns it again.
    pub(crate) fn advance(
        &mut self,
        mut read: impl FnMut(&mut [u8]) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.out.is_empty() {
                return Poll::Ready(Ok(()));
            }
            match &self.status {
                Status::Running => {}
                Status::Done => return Poll::Ready(Ok(())),
                Status::Failed(error) => return Poll::Ready(Err(error.clone().into())),
            }
            let Some(need) = self.opener.need() else {
                // Every planned byte was read: the source must end here.
                let mut probe = [0u8; 1];
                match ready!(read(&mut probe)) {
                    Ok(0) => self.status = Status::Done,
                    Ok(_) => return self.fail(StreamError::TrailingData),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
                continue;
            };
            while self.filled < need {
                match ready!(read(&mut self.buf[self.filled..need])) {
                    Ok(0) => return self.fail(StreamError::Truncated),
                    Ok(n) => self.filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            self.filled = 0;
            match self.opener.process(&mut self.buf[..need]) {
                Ok(range) => self.out = range,
                Err(error) => return self.fail(error),
            }
        }
    }
}

/// A decrypting writer's state: stored bytes come in, authenticated
/// plaintext goes out one chunk at a time.
pub(crate) struct WriteCore {
    opener: Opener,
    buf: Vec<u8>,
    filled: usize,
    out: Range<usize>,
    failed: Option<StreamError>,
}

/// Shows the state, never the buffer: it holds plaintext.
impl fmt::Debug for WriteCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteCore")
            .field("opener", &self.opener)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl WriteCore {
    pub(crate) fn new(opener: Opener) -> Self {
        Self {
            buf: vec![0; opener.max_unit()],
            opener,
            filled: 0,
            out: 0..0,
            failed: None,
        }
    }

    fn check(&self) -> io::Result<()> {
        match &self.failed {
            Some(error) => Err(error.clone().into()),
            None => Ok(()),
        }
    }

    fn fail(&mut self, error: StreamError) -> io::Error {
        self.failed = Some(error.clone());
        error.into()
    }

    /// Writes out pending plaintext.
    pub(crate) fn drain(
        &mut self,
        mut write: impl FnMut(&[u8]) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            match ready!(write(&self.buf[self.out.clone()])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.out.start += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Takes stored bytes; call only after [`drain`](Self::drain).
    pub(crate) fn push(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check()?;
        if data.is_empty() {
            return Ok(0);
        }
        let Some(need) = self.opener.need() else {
            return Err(self.fail(StreamError::TrailingData));
        };
        let n = (need - self.filled).min(data.len());
        self.buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
        self.filled += n;
        if self.filled == need {
            self.filled = 0;
            match self.opener.process(&mut self.buf[..need]) {
                Ok(range) => self.out = range,
                Err(error) => return Err(self.fail(error)),
            }
        }
        Ok(n)
    }

    /// Checks that the whole stream arrived; call after draining.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        self.check()?;
        if self.opener.need().is_some() {
            return Err(self.fail(StreamError::Truncated));
        }
        Ok(())
    }
}
