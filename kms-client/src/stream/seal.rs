//! Encryption: the [`Encryptor`] and the sans-I/O state machine that every
//! encrypting adapter drives.

use super::{
    StreamError,
    format::{self, ChunkSize, HEADER_LEN, Header, PartId, PartNumber, SALT_LEN, StreamKeys},
};
use crate::{DataKey, crypto};

/// What an encrypted stream turned out to be, reported when it is finished.
///
/// A storage server keeps it with the uploaded part (like an ETag) and hands
/// all of them to [`Layout::seal`](super::Layout::seal) when the object is
/// complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartInfo {
    /// Which stream of the object this is.
    pub part: PartNumber,
    /// The chunk size it was written with.
    pub chunk_size: ChunkSize,
    /// Plaintext bytes it holds.
    pub plaintext_size: u64,
    /// Which upload attempt this is (a prefix of the header tag).
    pub id: PartId,
}

impl PartInfo {
    /// Stored bytes of the stream (header, chunks and tags).
    pub fn stored_size(&self) -> Result<u64, StreamError> {
        format::stored_size(self.plaintext_size, self.chunk_size)
    }
}

/// The keys and header of one new stream, ready to wrap a reader or writer.
///
/// Every `Encryptor` draws a fresh 256-bit salt, so it encrypts under a key
/// no other stream has ever used; retrying an upload means building a new
/// one. The adapters consume it, so one key can never encrypt two streams.
///
/// ```
/// use std::io::Write;
/// use kms_client::{DataKey, stream::{ChunkSize, Encryptor, PartNumber}};
///
/// let key = DataKey::from_bytes([7; 32]);
/// let encryptor = Encryptor::new(&key, b"photos/cat.jpg", PartNumber::SINGLE, ChunkSize::DEFAULT)?;
/// let mut writer = encryptor.writer(Vec::new());
/// writer.write_all(b"meow")?;
/// let (stored, info) = writer.finish()?;
/// assert_eq!(info.plaintext_size, 4);
/// assert_eq!(stored.len() as u64, info.stored_size()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Encryptor {
    keys: StreamKeys,
    header: Header,
}

impl Encryptor {
    /// Keys for a new stream of `part` under `key`, bound to `binding`
    /// (for example the bucket and object name; at most 4096 bytes). The
    /// same key and binding must be given to decrypt.
    pub fn new(
        key: &DataKey,
        binding: &[u8],
        part: PartNumber,
        chunk_size: ChunkSize,
    ) -> Result<Self, StreamError> {
        let mut salt = [0u8; SALT_LEN];
        crypto::fill_random(&mut salt).map_err(|_| StreamError::Random)?;
        Self::with_salt(key, binding, part, chunk_size, &salt)
    }

    /// Only for test vectors: a fixed salt would reuse nonces.
    pub(crate) fn with_salt(
        key: &DataKey,
        binding: &[u8],
        part: PartNumber,
        chunk_size: ChunkSize,
        salt: &[u8; SALT_LEN],
    ) -> Result<Self, StreamError> {
        format::check_binding(binding)?;
        let mut header = Header::new(chunk_size, part, salt);
        let keys = StreamKeys::for_new(key, binding, &mut header);
        Ok(Self { keys, header })
    }

    /// This stream's id, known before any byte is written.
    pub fn part_id(&self) -> PartId {
        self.header.part_id()
    }

    /// The stream header, the first [`HEADER_LEN`] bytes of the stream.
    pub fn header(&self) -> [u8; HEADER_LEN] {
        self.header.to_bytes()
    }

    /// The chunk size of this stream.
    pub fn chunk_size(&self) -> ChunkSize {
        self.header.chunk_size
    }

    pub(crate) fn into_sealer(self) -> Sealer {
        Sealer::new(self)
    }
}

/// The first buffer of a sealer, in plaintext bytes; it doubles up to a
/// chunk as plaintext arrives.
const INITIAL_BUFFER: usize = 4096;

/// The encryption state machine. Plaintext accumulates in `buf` until a
/// chunk is full (or the stream ends); the chunk is then sealed in place and
/// drained from the same buffer, so no byte is copied by the sealer itself
/// (beyond growing the buffer while the first chunk fills).
pub(crate) struct Sealer {
    keys: StreamKeys,
    header: [u8; HEADER_LEN],
    header_pos: usize,
    part: PartNumber,
    chunk_size: ChunkSize,
    id: PartId,
    buf: Vec<u8>,
    /// Plaintext bytes in `buf` while filling.
    filled: usize,
    /// Sealed bytes of `buf` not yet handed out: `out_pos..out_end`.
    out_pos: usize,
    out_end: usize,
    next_index: u32,
    plaintext_size: u64,
    finished: bool,
}

/// Shows the position, never the buffer: it holds plaintext.
impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("part", &self.part)
            .field("chunk_size", &self.chunk_size)
            .field("next_index", &self.next_index)
            .field("plaintext_size", &self.plaintext_size)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    fn new(encryptor: Encryptor) -> Self {
        let chunk_size = encryptor.header.chunk_size;
        Self {
            header: encryptor.header.to_bytes(),
            header_pos: 0,
            part: encryptor.header.part,
            id: encryptor.header.part_id(),
            keys: encryptor.keys,
            chunk_size,
            buf: vec![0; chunk_size.len().min(INITIAL_BUFFER) + format::CHUNK_OVERHEAD],
            filled: 0,
            out_pos: 0,
            out_end: 0,
            next_index: 0,
            plaintext_size: 0,
            finished: false,
        }
    }

    /// Bytes ready to be written out, in order.
    pub(crate) fn pending(&self) -> &[u8] {
        if self.header_pos < HEADER_LEN {
            &self.header[self.header_pos..]
        } else {
            &self.buf[self.out_pos..self.out_end]
        }
    }

    /// Marks `n` bytes of [`pending`](Self::pending) as written.
    pub(crate) fn consume(&mut self, n: usize) {
        if self.header_pos < HEADER_LEN {
            self.header_pos = (self.header_pos + n).min(HEADER_LEN);
        } else {
            self.out_pos = (self.out_pos + n).min(self.out_end);
        }
    }

    /// Whether a sealed chunk still occupies the buffer.
    fn draining(&self) -> bool {
        self.out_pos < self.out_end
    }

    /// Room for more plaintext; empty while a sealed chunk is pending or
    /// after [`finish`](Self::finish).
    pub(crate) fn space(&mut self) -> &mut [u8] {
        if self.draining() || self.finished {
            return &mut [];
        }
        let chunk = self.chunk_size.len();
        let capacity = self.buf.len() - format::CHUNK_OVERHEAD;
        if self.filled == capacity && capacity < chunk {
            // Grow geometrically: a small object never costs a whole chunk,
            // and a large one reaches full size within its first chunk.
            let grown = (capacity * 2).min(chunk);
            self.buf.resize(grown + format::CHUNK_OVERHEAD, 0);
        }
        let end = (self.buf.len() - format::CHUNK_OVERHEAD).min(chunk);
        &mut self.buf[self.filled..end]
    }

    /// Records `n` bytes written into [`space`](Self::space); seals the
    /// chunk once it is full.
    pub(crate) fn add(&mut self, n: usize) -> Result<(), StreamError> {
        self.filled += n;
        self.plaintext_size += n as u64;
        if self.filled == self.chunk_size.len() {
            // A full chunk is never the last one (the last is always short,
            // possibly empty), so it can be sealed without looking ahead.
            // Index u32::MAX is kept for the final chunk.
            if self.next_index == u32::MAX {
                return Err(StreamError::TooLarge);
            }
            self.seal(false);
        }
        Ok(())
    }

    /// Copies as much of `data` as fits; returns how much was taken.
    pub(crate) fn push(&mut self, data: &[u8]) -> Result<usize, StreamError> {
        let space = self.space();
        let n = space.len().min(data.len());
        space[..n].copy_from_slice(&data[..n]);
        self.add(n)?;
        Ok(n)
    }

    /// Seals the final, short chunk, unless a sealed chunk is still
    /// pending: then it does nothing yet, and the adapter drains and calls
    /// again (see [`is_done`](Self::is_done)).
    pub(crate) fn finish(&mut self) {
        if self.finished || self.draining() {
            return;
        }
        self.seal(true);
        self.finished = true;
    }

    fn seal(&mut self, last: bool) {
        let len = self.filled;
        self.keys.seal(self.next_index, last, &mut self.buf, len);
        self.next_index = self.next_index.wrapping_add(1);
        self.filled = 0;
        self.out_pos = 0;
        self.out_end = len + format::CHUNK_OVERHEAD;
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// Whether the whole stream has been handed out.
    pub(crate) fn is_done(&self) -> bool {
        self.finished && self.pending().is_empty()
    }

    pub(crate) fn info(&self) -> PartInfo {
        PartInfo {
            part: self.part,
            chunk_size: self.chunk_size,
            plaintext_size: self.plaintext_size,
            id: self.id,
        }
    }
}
