//! The layout of a whole object: which streams it is made of, their sizes,
//! and a MAC over that list so the list itself cannot be edited.

use std::ops::Range;

use super::{
    StreamError,
    format::{self, ChunkSize, HEADER_LEN, PART_ID_LEN, PartNumber, VERSION},
    seal::PartInfo,
};
use crate::{DataKey, crypto};

const LAYOUT_SALT: &[u8] = b"OSE1/layout";
const LABEL_LAYOUT: &[u8] = b"OSE1/layout-mac\0";

/// Bytes of a layout tag.
pub const LAYOUT_TAG_LEN: usize = 32;

/// The streams an object is made of, in order, authenticated as a whole.
///
/// A single-part object is one stream ([`PartNumber::SINGLE`]); a multipart
/// object is its completed parts in ascending part number (S3 allows gaps).
/// The layout tag is an HMAC under a key derived from the data key and
/// binding, over the chunk size and every part's number, plaintext size and
/// [`PartId`](super::PartId). So a reader that verified the layout knows the
/// exact streams, their order and where the object ends: dropping, adding,
/// reordering or swapping a part for another upload attempt is detected even
/// when the metadata is edited too.
///
/// Sizes and ranges can be computed without the key (for HEAD and for
/// planning reads); [`Decryptor::new`](super::Decryptor::new) checks the tag
/// before a byte is decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    chunk_size: ChunkSize,
    parts: Vec<PartInfo>,
    tag: [u8; LAYOUT_TAG_LEN],
    /// Plaintext and stored offset of each part, plus one entry for the end.
    starts: Vec<(u64, u64)>,
}

impl Layout {
    /// Builds and authenticates the layout of a finished object from the
    /// [`PartInfo`] of each stream: one with [`PartNumber::SINGLE`], or the
    /// completed multipart parts in any order (they are sorted).
    pub fn seal(
        key: &DataKey,
        binding: &[u8],
        parts: impl IntoIterator<Item = PartInfo>,
    ) -> Result<Self, StreamError> {
        format::check_binding(binding)?;
        let mut parts: Vec<PartInfo> = parts.into_iter().collect();
        parts.sort_by_key(|part| part.part);
        let mut layout = Self::build(parts, [0; LAYOUT_TAG_LEN])?;
        layout.tag = layout.compute_tag(key, binding);
        Ok(layout)
    }

    /// A layout as read back from storage; its tag is checked only by
    /// [`verify`](Self::verify) (which decryption always calls).
    pub fn from_parts(
        parts: Vec<PartInfo>,
        tag: [u8; LAYOUT_TAG_LEN],
    ) -> Result<Self, StreamError> {
        Self::build(parts, tag)
    }

    fn build(parts: Vec<PartInfo>, tag: [u8; LAYOUT_TAG_LEN]) -> Result<Self, StreamError> {
        let first = parts
            .first()
            .ok_or(StreamError::InvalidLayout("no parts"))?;
        let chunk_size = first.chunk_size;
        if parts.len() > PartNumber::MAX_PART as usize {
            return Err(StreamError::InvalidLayout("more than 10,000 parts"));
        }
        if first.part.is_single() && parts.len() != 1 {
            return Err(StreamError::InvalidLayout(
                "a single-part stream among parts",
            ));
        }
        if parts.windows(2).any(|pair| pair[0].part >= pair[1].part) {
            return Err(StreamError::InvalidLayout(
                "part numbers not strictly ascending",
            ));
        }
        if parts.iter().any(|part| part.chunk_size != chunk_size) {
            return Err(StreamError::InvalidLayout(
                "parts with different chunk sizes",
            ));
        }
        let mut starts = Vec::with_capacity(parts.len() + 1);
        let (mut plaintext, mut stored) = (0u64, 0u64);
        for part in &parts {
            starts.push((plaintext, stored));
            plaintext = plaintext
                .checked_add(part.plaintext_size)
                .ok_or(StreamError::TooLarge)?;
            stored = stored
                .checked_add(part.stored_size()?)
                .ok_or(StreamError::TooLarge)?;
        }
        starts.push((plaintext, stored));
        Ok(Self {
            chunk_size,
            parts,
            tag,
            starts,
        })
    }

    fn compute_tag(&self, key: &DataKey, binding: &[u8]) -> [u8; LAYOUT_TAG_LEN] {
        let binding_len = (binding.len() as u32).to_be_bytes();
        let mac_key = crypto::hkdf_sha256(
            LAYOUT_SALT,
            key.expose_secret(),
            &[LABEL_LAYOUT, &binding_len, binding],
        );
        let mut message = Vec::with_capacity(10 + self.parts.len() * (12 + PART_ID_LEN));
        message.extend_from_slice(&format::MAGIC);
        message.push(VERSION);
        message.push(self.chunk_size.log2());
        message.extend_from_slice(&(self.parts.len() as u32).to_be_bytes());
        for part in &self.parts {
            message.extend_from_slice(&part.part.get().to_be_bytes());
            message.extend_from_slice(&part.plaintext_size.to_be_bytes());
            message.extend_from_slice(&part.id.0);
        }
        crypto::hmac_sha256(mac_key.as_ref(), &[&message])
    }

    /// Checks the tag under `key` and `binding`.
    pub fn verify(&self, key: &DataKey, binding: &[u8]) -> Result<(), StreamError> {
        let expected = self.compute_tag(key, binding);
        if crypto::constant_time_eq(&expected, &self.tag) {
            Ok(())
        } else {
            Err(StreamError::LayoutAuthentication)
        }
    }

    /// The chunk size of every stream.
    pub fn chunk_size(&self) -> ChunkSize {
        self.chunk_size
    }

    /// The streams, in order.
    pub fn parts(&self) -> &[PartInfo] {
        &self.parts
    }

    /// The layout tag.
    pub fn tag(&self) -> &[u8; LAYOUT_TAG_LEN] {
        &self.tag
    }

    /// Whether this is a multipart object.
    pub fn is_multipart(&self) -> bool {
        !self.parts[0].part.is_single()
    }

    /// The object's plaintext size: its Content-Length.
    pub fn plaintext_size(&self) -> u64 {
        self.starts[self.parts.len()].0
    }

    /// The object's stored size: what the storage server keeps.
    pub fn stored_size(&self) -> u64 {
        self.starts[self.parts.len()].1
    }

    /// Where part `index` (0-based position, not part number) lies, as
    /// (plaintext range, stored range).
    pub fn part_bounds(&self, index: usize) -> Option<(Range<u64>, Range<u64>)> {
        let (p0, s0) = *self.starts.get(index)?;
        let (p1, s1) = *self.starts.get(index + 1)?;
        Some((p0..p1, s0..s1))
    }

    /// A plan to decrypt the whole object: every stored byte, in one range.
    pub fn plan_all(&self) -> RangePlan {
        let segments = (0..self.parts.len())
            .map(|index| {
                let part = &self.parts[index];
                let last = final_index(part.plaintext_size, self.chunk_size);
                self.segment(index, 0, last, 0, part.plaintext_size)
            })
            .collect();
        self.finish_plan(segments, 0..self.plaintext_size(), true)
    }

    /// A plan to decrypt plaintext bytes `range` (half-open, so S3's
    /// `bytes=a-b` is `a..b + 1`): which stored bytes to fetch, and how to
    /// decrypt them. Only the chunks that cover the range are fetched, plus
    /// the header of each part they lie in.
    pub fn plan_range(&self, range: Range<u64>) -> Result<RangePlan, StreamError> {
        let size = self.plaintext_size();
        if range.start > range.end || range.end > size {
            return Err(StreamError::RangeOutOfBounds {
                start: range.start,
                end: range.end,
                size,
            });
        }
        let chunk = self.chunk_size.bytes();
        let mut segments = Vec::new();
        if range.start < range.end {
            // The first part whose end lies beyond range.start.
            let first = self.starts[1..].partition_point(|&(end, _)| end <= range.start);
            for index in first..self.parts.len() {
                let (part_start, _) = self.starts[index];
                if part_start >= range.end {
                    break;
                }
                let part_end = self.starts[index + 1].0;
                if part_end == part_start {
                    continue;
                }
                let from = range.start.max(part_start) - part_start;
                let to = range.end.min(part_end) - part_start;
                let (c0, c1) = (from / chunk, (to - 1) / chunk);
                segments.push(self.segment(index, c0, c1, from - c0 * chunk, to - from));
            }
        }
        Ok(self.finish_plan(segments, range, false))
    }

    fn segment(&self, index: usize, first: u64, last: u64, skip: u64, take: u64) -> Segment {
        let part = self.parts[index];
        let final_chunk = final_index(part.plaintext_size, self.chunk_size);
        let final_len = part.plaintext_size - final_chunk * self.chunk_size.bytes();
        let part_stored = self.starts[index].1;
        let chunk_stored = self.chunk_size.stored_len();
        let chunks_start = part_stored + HEADER_LEN as u64 + first * chunk_stored;
        let chunks_end = if last == final_chunk {
            self.starts[index + 1].1
        } else {
            part_stored + HEADER_LEN as u64 + (last + 1) * chunk_stored
        };
        // Chunk indices are below 2^32: the layout's stored sizes were
        // checked with format::stored_size, which enforces that.
        Segment {
            part,
            first: first as u32,
            last: last as u32,
            final_index: final_chunk as u32,
            final_len: final_len as usize,
            skip: skip as usize,
            take,
            fetch: [
                part_stored..part_stored + HEADER_LEN as u64,
                chunks_start..chunks_end,
            ],
        }
    }

    fn finish_plan(&self, segments: Vec<Segment>, plaintext: Range<u64>, whole: bool) -> RangePlan {
        let mut fetch: Vec<Range<u64>> = Vec::new();
        for range in segments
            .iter()
            .flat_map(|segment| segment.fetch.iter().cloned())
        {
            match fetch.last_mut() {
                Some(previous) if previous.end == range.start => previous.end = range.end,
                _ => fetch.push(range),
            }
        }
        RangePlan {
            segments,
            fetch,
            plaintext,
            whole,
        }
    }
}

fn final_index(plaintext_size: u64, chunk_size: ChunkSize) -> u64 {
    plaintext_size / chunk_size.bytes()
}

/// One part's share of a plan: its header, then chunks `first..=last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) part: PartInfo,
    pub(crate) first: u32,
    pub(crate) last: u32,
    pub(crate) final_index: u32,
    pub(crate) final_len: usize,
    /// Plaintext bytes to drop from the start of chunk `first`.
    pub(crate) skip: usize,
    /// Plaintext bytes to release from this segment.
    pub(crate) take: u64,
    fetch: [Range<u64>; 2],
}

/// Which stored bytes to read to serve a plaintext range, and how to
/// decrypt them; made by [`Layout::plan_range`] or [`Layout::plan_all`].
///
/// Fetch the [`fetch_ranges`](Self::fetch_ranges) and hand their
/// concatenation, in order, to
/// [`Decryptor::range_reader`](super::Decryptor::range_reader).
///
/// A plan is only a description of what was fetched: the decryptor plans
/// the same range again from the layout it authenticated and refuses a plan
/// that differs in any part (one made from a [`Layout::from_parts`] with
/// edited parts and the genuine tag, say).
/// [`Decryptor::plan_range`](super::Decryptor::plan_range) plans from the
/// authenticated layout directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePlan {
    pub(crate) segments: Vec<Segment>,
    fetch: Vec<Range<u64>>,
    plaintext: Range<u64>,
    /// Made by [`Layout::plan_all`] (which also covers empty parts).
    pub(crate) whole: bool,
}

impl RangePlan {
    /// Stored byte ranges to fetch, ascending and merged where adjacent.
    pub fn fetch_ranges(&self) -> &[Range<u64>] {
        &self.fetch
    }

    /// Total stored bytes to fetch.
    pub fn fetch_len(&self) -> u64 {
        self.fetch.iter().map(|range| range.end - range.start).sum()
    }

    /// The plaintext range this plan serves.
    pub fn plaintext_range(&self) -> Range<u64> {
        self.plaintext.clone()
    }
}
