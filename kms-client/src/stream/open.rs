//! Decryption: the [`Decryptor`] and the sans-I/O state machine that every
//! decrypting adapter drives.

use std::ops::Range;

use super::{
    StreamError,
    format::{self, CHUNK_OVERHEAD, HEADER_LEN, Header, StreamKeys},
    layout::{Layout, RangePlan, Segment},
};
use crate::DataKey;

/// Decrypts one object, whole or by ranges, after checking its layout.
///
/// ```
/// use std::io::{Read, Write};
/// use kms_client::{DataKey, stream::{ChunkSize, Decryptor, Encryptor, Layout, PartNumber}};
///
/// let key = DataKey::from_bytes([7; 32]);
/// let binding = b"photos/cat.jpg";
/// let mut writer = Encryptor::new(&key, binding, PartNumber::SINGLE, ChunkSize::DEFAULT)?
///     .writer(Vec::new());
/// writer.write_all(b"meow")?;
/// let (stored, info) = writer.finish()?;
/// let layout = Layout::seal(&key, binding, [info])?;
///
/// let decryptor = Decryptor::new(&key, binding, &layout)?;
/// let mut plaintext = Vec::new();
/// decryptor.reader(&stored[..]).read_to_end(&mut plaintext)?;
/// assert_eq!(plaintext, b"meow");
///
/// // Bytes 1..3 only: fetch the planned stored ranges, then decrypt them.
/// let plan = decryptor.plan_range(1..3)?;
/// let fetched: Vec<u8> = plan.fetch_ranges().iter()
///     .flat_map(|r| stored[r.start as usize..r.end as usize].to_vec())
///     .collect();
/// let mut part = Vec::new();
/// decryptor.range_reader(&plan, &fetched[..])?.read_to_end(&mut part)?;
/// assert_eq!(part, b"eo");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Decryptor {
    key: DataKey,
    binding: Vec<u8>,
    layout: Layout,
}

impl Decryptor {
    /// Checks `layout` under `key` and `binding` (the same ones the object
    /// was encrypted with); fails with [`StreamError::LayoutAuthentication`]
    /// otherwise.
    pub fn new(key: &DataKey, binding: &[u8], layout: &Layout) -> Result<Self, StreamError> {
        format::check_binding(binding)?;
        layout.verify(key, binding)?;
        Ok(Self {
            key: key.clone_secret(),
            binding: binding.to_vec(),
            layout: layout.clone(),
        })
    }

    /// The verified layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// A plan to decrypt plaintext bytes `range`, made from the layout this
    /// decryptor authenticated (see [`Layout::plan_range`]).
    pub fn plan_range(&self, range: Range<u64>) -> Result<RangePlan, StreamError> {
        self.layout.plan_range(range)
    }

    /// The opener of a caller's plan. The plan only says which bytes the
    /// caller fetched: the segments decrypted are planned again from the
    /// authenticated layout, and a plan that differs from them in any way
    /// is refused. Comparing the layout tag alone is not enough: a plan
    /// built from `Layout::from_parts` with edited parts (another upload
    /// attempt of a part, say) and the genuine tag carries that tag too,
    /// and would steer decryption to bytes the layout never named.
    pub(crate) fn opener(&self, plan: &RangePlan) -> Result<Opener, StreamError> {
        let foreign = || StreamError::InvalidLayout("the plan was made from another layout");
        let own = if plan.whole {
            self.layout.plan_all()
        } else {
            // A range outside this layout: the plan is someone else's.
            self.layout
                .plan_range(plan.plaintext_range())
                .map_err(|_| foreign())?
        };
        if own != *plan {
            return Err(foreign());
        }
        Ok(self.opener_of(own))
    }

    pub(crate) fn full_opener(&self) -> Opener {
        self.opener_of(self.layout.plan_all())
    }

    fn opener_of(&self, plan: RangePlan) -> Opener {
        Opener {
            key: self.key.clone_secret(),
            binding: self.binding.clone(),
            segments: plan.segments,
            segment: 0,
            keys: None,
            index: 0,
            taken: 0,
        }
    }
}

/// The decryption state machine: says how many bytes the next unit (a
/// header or a chunk) takes, then authenticates that unit in place and says
/// which of its bytes are plaintext to release.
#[derive(Debug)]
pub(crate) struct Opener {
    key: DataKey,
    binding: Vec<u8>,
    segments: Vec<Segment>,
    segment: usize,
    /// The keys of the current segment, once its header verified.
    keys: Option<StreamKeys>,
    /// The next chunk index in the current segment.
    index: u32,
    /// Plaintext released from the current segment.
    taken: u64,
}

impl Opener {
    /// The largest unit this plan reads: a full stored chunk, unless every
    /// stream in it is shorter than one chunk, so a reader of a small
    /// object or range allocates what it needs, not a whole chunk.
    pub(crate) fn max_unit(&self) -> usize {
        self.segments
            .iter()
            .map(|segment| {
                if segment.first < segment.final_index {
                    segment.part.chunk_size.len() + CHUNK_OVERHEAD
                } else {
                    segment.final_len + CHUNK_OVERHEAD
                }
            })
            .fold(HEADER_LEN, usize::max)
    }

    /// Bytes of the next unit, or `None` when the plan is complete.
    pub(crate) fn need(&self) -> Option<usize> {
        let segment = self.segments.get(self.segment)?;
        if self.keys.is_none() {
            return Some(HEADER_LEN);
        }
        let chunk = segment.part.chunk_size.len();
        Some(if self.index == segment.final_index {
            segment.final_len + CHUNK_OVERHEAD
        } else {
            chunk + CHUNK_OVERHEAD
        })
    }

    /// Authenticates `unit` (exactly [`need`](Self::need) bytes) and
    /// returns the range of it to release. Nothing outside that range, and
    /// nothing of a unit that failed, may be released.
    pub(crate) fn process(&mut self, unit: &mut [u8]) -> Result<Range<usize>, StreamError> {
        let Some(segment) = self.segments.get(self.segment) else {
            return Err(StreamError::TrailingData);
        };
        let Some(keys) = &self.keys else {
            let header = Header::parse(unit)?;
            let expected = segment.part;
            if header.part != expected.part {
                return Err(StreamError::PartMismatch {
                    expected: expected.part.get(),
                    found: header.part.get(),
                });
            }
            if header.chunk_size != expected.chunk_size {
                return Err(StreamError::ChunkSizeMismatch {
                    expected: expected.chunk_size.log2(),
                    found: header.chunk_size.log2(),
                });
            }
            let keys = StreamKeys::derive(&self.key, &self.binding, &header)?;
            // Authentic, but is it the attempt the layout names? A part id is
            // not secret, yet compare in constant time out of habit.
            if !crate::crypto::constant_time_eq(&header.part_id().0, &expected.id.0) {
                return Err(StreamError::PartIdMismatch {
                    part: expected.part.get(),
                });
            }
            self.keys = Some(keys);
            self.index = segment.first;
            self.taken = 0;
            return Ok(0..0);
        };
        let last = self.index == segment.final_index;
        let len = keys.open(segment.part.part, self.index, last, unit)?;
        let start = if self.index == segment.first {
            segment.skip.min(len)
        } else {
            0
        };
        let room = segment.take - self.taken;
        let end = start + (len - start).min(usize::try_from(room).unwrap_or(usize::MAX));
        self.taken += (end - start) as u64;
        if self.index == segment.last {
            self.segment += 1;
            self.keys = None;
        } else {
            self.index += 1;
        }
        Ok(start..end)
    }
}
