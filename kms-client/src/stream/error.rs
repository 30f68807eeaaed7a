//! Why a stream could not be written or read.

use std::io;

/// A stream, layout or range that this crate refuses.
///
/// Adapters that implement `std::io` or tokio traits report these inside an
/// [`io::Error`] of kind [`io::ErrorKind::InvalidData`] (or `InvalidInput`
/// for caller mistakes); [`StreamError::from_io`] gets them back.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The header is not an OSE1 header (magic, length or reserved bits).
    #[error("not an OSE1 stream header")]
    MalformedHeader,
    /// The header names a format version this crate does not read.
    #[error("unsupported OSE1 version {0}")]
    UnsupportedVersion(u8),
    /// The header names a cipher suite this crate does not read.
    #[error("unsupported OSE1 cipher suite {0}")]
    UnsupportedSuite(u8),
    /// A chunk size outside 2^6 to 2^24 bytes (255: not a power of two).
    #[error("invalid chunk size 2^{0}")]
    InvalidChunkSize(u8),
    /// A part number outside 1 to 10,000.
    #[error("invalid part number {0}")]
    InvalidPartNumber(u32),
    /// The binding data is longer than 4096 bytes.
    #[error("binding data of {0} bytes is longer than 4096")]
    BindingTooLong(usize),
    /// The header does not verify: another data key or binding, or a
    /// changed header.
    #[error("stream header does not authenticate (wrong key or binding, or altered header)")]
    HeaderAuthentication,
    /// The header is authentic but for another position than the layout's.
    #[error("stream header is for part {found}, expected part {expected}")]
    PartMismatch {
        /// The part number the layout expects (0: single object).
        expected: u32,
        /// The part number in the header.
        found: u32,
    },
    /// The header's chunk size differs from the layout's.
    #[error("stream chunk size 2^{found} differs from the layout's 2^{expected}")]
    ChunkSizeMismatch {
        /// log2 of the layout's chunk size.
        expected: u8,
        /// log2 of the header's chunk size.
        found: u8,
    },
    /// The header is authentic but is not the upload attempt the layout
    /// records (a stale retry, or a part of another object).
    #[error("part {part} is not the upload the layout records")]
    PartIdMismatch {
        /// The part number (0: single object).
        part: u32,
    },
    /// A chunk does not authenticate: altered, moved, duplicated, spliced
    /// from another stream, or its end-of-stream flag is wrong.
    #[error("chunk {index} of part {part} does not authenticate")]
    ChunkAuthentication {
        /// The part number (0: single object).
        part: u32,
        /// The chunk index within the part.
        index: u32,
    },
    /// The stored bytes ended before the stream did.
    #[error("the stream is truncated")]
    Truncated,
    /// Bytes follow the end of the stream.
    #[error("data follows the end of the stream")]
    TrailingData,
    /// The layout's tag does not verify under this data key and binding.
    #[error("the object layout does not authenticate")]
    LayoutAuthentication,
    /// The layout breaks a structural rule.
    #[error("invalid object layout: {0}")]
    InvalidLayout(&'static str),
    /// The plaintext range is not within the object.
    #[error("range {start}..{end} is not within an object of {size} bytes")]
    RangeOutOfBounds {
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The object's plaintext size.
        size: u64,
    },
    /// No plaintext size encrypts to this stored size.
    #[error("{0} is not the stored size of any stream")]
    InvalidStoredSize(u64),
    /// The stream would exceed 2^32 chunks (or a size overflows 64 bits).
    #[error("the stream is too large for the format")]
    TooLarge,
    /// The stream was already finished; nothing more can be written.
    #[error("the stream is already finished")]
    Finished,
    /// The operating system's random generator failed.
    #[error("the system random number generator failed")]
    Random,
}

impl StreamError {
    /// The stream error inside an I/O error returned by an adapter, if any.
    pub fn from_io(error: &io::Error) -> Option<&StreamError> {
        error.get_ref()?.downcast_ref::<StreamError>()
    }

    pub(crate) fn into_io(self) -> io::Error {
        let kind = match self {
            StreamError::BindingTooLong(_)
            | StreamError::InvalidChunkSize(_)
            | StreamError::InvalidPartNumber(_)
            | StreamError::RangeOutOfBounds { .. }
            | StreamError::Finished => io::ErrorKind::InvalidInput,
            StreamError::Random => io::ErrorKind::Other,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, self)
    }
}

impl From<StreamError> for io::Error {
    fn from(error: StreamError) -> Self {
        error.into_io()
    }
}
