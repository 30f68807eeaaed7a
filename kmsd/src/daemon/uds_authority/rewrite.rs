//! The sans-IO half: the client's HTTP/2 bytes in, the same frames out, with
//! an `:authority` that h2 would refuse replaced by `localhost`.
//!
//! HPACK is stateful: a header block may refer to entries an earlier block
//! added to the connection's dynamic table. A block cannot be edited in
//! place, so once a connection needs rewriting every block is decoded with
//! the client's table and encoded again without touching hyper's table
//! (literals without indexing). A connection whose first request carries a
//! valid authority (tonic, grpc-go, grpc-js) is passed through untouched from
//! then on.

use bytes::{BufMut, BytesMut};
use loona_hpack::{Decoder, decoder::DecoderError, encoder::encode_integer};

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The largest header block accepted, encoded and decoded (h2 refuses
/// header lists over 16 KiB by default; this only bounds our buffering).
pub(super) const MAX_BLOCK: usize = 64 * 1024;
/// The payload size of the frames written: the minimum every HTTP/2 peer
/// accepts (RFC 9113 §4.2), so never too large for hyper.
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// h2's SETTINGS_HEADER_TABLE_SIZE, which kmsd leaves at the default: the
/// client's encoder may use this much dynamic table, and no more.
const HEADER_TABLE_SIZE: usize = 4096;
/// What an invalid authority becomes: what grpc-go and kubernetes send over
/// unix sockets.
pub(super) const REPLACEMENT: &[u8] = b"localhost";

/// Why a connection could not be rewritten; it is then closed, as h2 would
/// close it for the same input.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RewriteError {
    #[error("a header block over {MAX_BLOCK} bytes")]
    BlockTooLarge,
    #[error("a frame other than CONTINUATION of the same stream inside a header block")]
    InterruptedBlock,
    #[error("a HEADERS frame whose padding or priority does not fit")]
    MalformedHeaders,
    #[error("a header block that does not decode: {0}")]
    Hpack(DecoderError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Before the 24-byte client preface.
    Preface,
    /// Before the first complete header block.
    Sniff,
    /// Every header block is decoded and encoded again.
    Rewrite,
    /// Bytes pass unchanged (a valid first authority, or not HTTP/2 with
    /// prior knowledge: hyper answers that itself).
    Passthrough,
}

/// A header block being collected from HEADERS and CONTINUATION frames.
struct Block {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: BytesMut,
    /// The frames as received, while sniffing: sent as they are when the
    /// block needs no change.
    raw: BytesMut,
}

/// The state of one connection's client-to-server direction.
pub(crate) struct Rewriter {
    mode: Mode,
    decoder: Decoder<'static>,
    block: Option<Block>,
    /// Payload bytes of a frame being forwarded as they arrive.
    forward: usize,
}

impl std::fmt::Debug for Rewriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rewriter")
            .field("mode", &self.mode)
            .field("forward", &self.forward)
            .finish_non_exhaustive()
    }
}

impl Default for Rewriter {
    fn default() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self {
            mode: Mode::Preface,
            decoder,
            block: None,
            forward: 0,
        }
    }
}

impl Rewriter {
    /// True once nothing will ever be changed on this connection.
    pub(crate) fn is_passthrough(&self) -> bool {
        self.mode == Mode::Passthrough
    }

    /// Moves everything `input` holds that can be handled now to `output`;
    /// what is left is the start of an incomplete frame.
    pub(crate) fn process(
        &mut self,
        input: &mut BytesMut,
        output: &mut BytesMut,
    ) -> Result<(), RewriteError> {
        loop {
            match self.mode {
                Mode::Passthrough => {
                    output.extend_from_slice(&input.split());
                    return Ok(());
                }
                Mode::Preface => {
                    let seen = input.len().min(PREFACE.len());
                    if input[..seen] != PREFACE[..seen] {
                        self.mode = Mode::Passthrough;
                        continue;
                    }
                    if seen < PREFACE.len() {
                        return Ok(());
                    }
                    output.extend_from_slice(&input.split_to(PREFACE.len()));
                    self.mode = Mode::Sniff;
                }
                Mode::Sniff | Mode::Rewrite => {
                    if self.forward > 0 {
                        let n = self.forward.min(input.len());
                        if n == 0 {
                            return Ok(());
                        }
                        output.extend_from_slice(&input.split_to(n));
                        self.forward -= n;
                        continue;
                    }
                    if input.len() < FRAME_HEADER_LEN {
                        return Ok(());
                    }
                    let len = u32::from_be_bytes([0, input[0], input[1], input[2]]) as usize;
                    let kind = input[3];
                    let flags = input[4];
                    let stream_id =
                        u32::from_be_bytes([input[5], input[6], input[7], input[8]]) & 0x7fff_ffff;
                    if kind != TYPE_HEADERS && kind != TYPE_CONTINUATION {
                        if self.block.is_some() {
                            return Err(RewriteError::InterruptedBlock);
                        }
                        output.extend_from_slice(&input.split_to(FRAME_HEADER_LEN));
                        self.forward = len;
                        continue;
                    }
                    if len > MAX_BLOCK {
                        return Err(RewriteError::BlockTooLarge);
                    }
                    if input.len() < FRAME_HEADER_LEN + len {
                        input.reserve(FRAME_HEADER_LEN + len - input.len());
                        return Ok(());
                    }
                    let frame = input.split_to(FRAME_HEADER_LEN + len);
                    self.header_frame(kind, flags, stream_id, &frame, output)?;
                }
            }
        }
    }

    fn header_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream_id: u32,
        frame: &[u8],
        output: &mut BytesMut,
    ) -> Result<(), RewriteError> {
        let payload = &frame[FRAME_HEADER_LEN..];
        let sniffing = self.mode == Mode::Sniff;
        if kind == TYPE_HEADERS {
            if self.block.is_some() {
                return Err(RewriteError::InterruptedBlock);
            }
            let (priority, fragment) = split_headers_payload(flags, payload)?;
            self.block = Some(Block {
                stream_id,
                end_stream: flags & FLAG_END_STREAM != 0,
                priority,
                fragment: BytesMut::from(fragment),
                raw: if sniffing {
                    BytesMut::from(frame)
                } else {
                    BytesMut::new()
                },
            });
        } else {
            match &mut self.block {
                // A CONTINUATION outside a block: hyper refuses it itself.
                None => {
                    output.extend_from_slice(frame);
                    return Ok(());
                }
                Some(block) if block.stream_id != stream_id => {
                    return Err(RewriteError::InterruptedBlock);
                }
                Some(block) => {
                    if block.fragment.len() + payload.len() > MAX_BLOCK {
                        return Err(RewriteError::BlockTooLarge);
                    }
                    block.fragment.extend_from_slice(payload);
                    if sniffing {
                        block.raw.extend_from_slice(frame);
                    }
                }
            }
        }
        if flags & FLAG_END_HEADERS != 0
            && let Some(block) = self.block.take()
        {
            self.finish_block(block, output)?;
        }
        Ok(())
    }

    fn finish_block(&mut self, block: Block, output: &mut BytesMut) -> Result<(), RewriteError> {
        let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        // Decoded size as h2 counts it (RFC 9113 §6.5.2): indexed fields
        // can expand a small block a thousandfold.
        let mut size = 0usize;
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                size += name.len() + value.len() + 32;
                if size <= MAX_BLOCK {
                    headers.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(RewriteError::Hpack)?;
        if size > MAX_BLOCK {
            return Err(RewriteError::BlockTooLarge);
        }
        let invalid = headers
            .iter()
            .position(|(name, value)| name == b":authority" && !valid_authority(value));
        if self.mode == Mode::Sniff && invalid.is_none() {
            output.extend_from_slice(&block.raw);
            self.mode = Mode::Passthrough;
            return Ok(());
        }
        if self.mode == Mode::Sniff {
            tracing::debug!(
                "a unix-socket client sent its socket path as :authority; rewriting this connection's request headers"
            );
            self.mode = Mode::Rewrite;
        }
        if let Some(i) = invalid {
            headers[i].1 = REPLACEMENT.to_vec();
        }
        let mut encoded = Vec::with_capacity(block.fragment.len() + 64);
        for (name, value) in &headers {
            // Literal header field without indexing, new name (RFC 7541
            // §6.2.2): hyper's dynamic table is never used.
            encoded.push(0);
            encode_string(name, &mut encoded);
            encode_string(value, &mut encoded);
        }
        write_header_frames(&block, &encoded, output);
        Ok(())
    }
}

/// What h2 accepts as `:authority` (h2's own check, `Authority` parsing).
fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

fn split_headers_payload(
    flags: u8,
    mut payload: &[u8],
) -> Result<(Option<[u8; 5]>, &[u8]), RewriteError> {
    let mut padding = 0;
    if flags & FLAG_PADDED != 0 {
        let (&len, rest) = payload
            .split_first()
            .ok_or(RewriteError::MalformedHeaders)?;
        padding = usize::from(len);
        payload = rest;
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        let (fields, rest) = payload
            .split_first_chunk::<5>()
            .ok_or(RewriteError::MalformedHeaders)?;
        priority = Some(*fields);
        payload = rest;
    }
    let end = payload
        .len()
        .checked_sub(padding)
        .ok_or(RewriteError::MalformedHeaders)?;
    Ok((priority, &payload[..end]))
}

/// An HPACK string literal without Huffman coding (RFC 7541 §5.2).
fn encode_string(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&encode_integer(bytes.len(), 7));
    out.extend_from_slice(bytes);
}

/// One HEADERS frame (unpadded, with the original priority), then as many
/// CONTINUATION frames as the block needs.
fn write_header_frames(block: &Block, encoded: &[u8], output: &mut BytesMut) {
    let priority_len = if block.priority.is_some() { 5 } else { 0 };
    let first = encoded.len().min(MAX_FRAME_PAYLOAD - priority_len);
    let (head, mut rest) = encoded.split_at(first);
    let mut flags = 0;
    if block.end_stream {
        flags |= FLAG_END_STREAM;
    }
    if block.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    frame_header(
        output,
        priority_len + head.len(),
        TYPE_HEADERS,
        flags,
        block.stream_id,
    );
    if let Some(priority) = &block.priority {
        output.extend_from_slice(priority);
    }
    output.extend_from_slice(head);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME_PAYLOAD));
        rest = tail;
        let flags = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
        frame_header(
            output,
            chunk.len(),
            TYPE_CONTINUATION,
            flags,
            block.stream_id,
        );
        output.extend_from_slice(chunk);
    }
}

fn frame_header(output: &mut BytesMut, len: usize, kind: u8, flags: u8, stream_id: u32) {
    // `len` is at most MAX_FRAME_PAYLOAD, so it fits the 24-bit field.
    let len = (len as u32).to_be_bytes();
    output.put_slice(&len[1..]);
    output.put_u8(kind);
    output.put_u8(flags);
    output.put_u32(stream_id);
}
