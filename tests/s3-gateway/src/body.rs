//! Request and response bodies through OSE1: encrypting uploads while
//! checking the client's checksums against the plaintext, and decrypting
//! downloads.

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, TryStreamExt, stream};
use kms_client::stream::{AsyncEncryptReader, Decryptor, Encryptor, PartInfo, RangePlan};
use s3s::{S3Error, S3ErrorCode, crypto::Checksum as _, dto::StreamingBlob, s3_error};
use tokio_util::io::{ReaderStream, StreamReader};

/// The integrity values a client sent with a body: Content-MD5 and the
/// `x-amz-checksum-*` of any algorithm, in headers or (streaming) trailers.
/// They describe the plaintext, so they are checked here, before the
/// encrypted body is committed, and never handed to s3s-fs (which would
/// hash the ciphertext).
#[derive(Debug, Default)]
pub(crate) struct Checks {
    pub(crate) content_md5: Option<String>,
    pub(crate) expected: s3s::dto::Checksum,
    pub(crate) algorithm: Option<String>,
    pub(crate) trailers: Option<s3s::TrailingHeaders>,
}

const TRAILER_NAMES: [&str; 5] = [
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
    "x-amz-checksum-crc64nvme",
];

impl Checks {
    fn hasher(&self) -> Result<s3s::checksum::ChecksumHasher, S3Error> {
        let mut hasher = s3s::checksum::ChecksumHasher::default();
        let e = &self.expected;
        let algorithm = self.algorithm.as_deref().map(str::to_ascii_uppercase);
        let wants = |name: &str, present: bool| present || algorithm.as_deref() == Some(name);
        if wants("CRC32", e.checksum_crc32.is_some()) {
            hasher.crc32 = Some(Default::default());
        }
        if wants("CRC32C", e.checksum_crc32c.is_some()) {
            hasher.crc32c = Some(Default::default());
        }
        if wants("SHA1", e.checksum_sha1.is_some()) {
            hasher.sha1 = Some(Default::default());
        }
        if wants("SHA256", e.checksum_sha256.is_some()) {
            hasher.sha256 = Some(Default::default());
        }
        if wants("CRC64NVME", e.checksum_crc64nvme.is_some()) {
            hasher.crc64nvme = Some(Default::default());
        }
        Ok(hasher)
    }

    /// Compares what was computed with what the client sent (headers, then
    /// trailers, which arrive only once the body has been read).
    fn verify(&self, md5: [u8; 16], computed: &s3s::dto::Checksum) -> Result<(), S3Error> {
        if let Some(expected) = &self.content_md5 {
            let sent = base64_decode(expected).ok_or_else(|| s3_error!(InvalidDigest))?;
            if sent != md5 {
                return Err(s3_error!(BadDigest, "Content-MD5 does not match the body"));
            }
        }
        let mut expected = self.expected.clone();
        if let Some(trailers) = &self.trailers {
            trailers.read(|map| {
                for (i, name) in TRAILER_NAMES.iter().enumerate() {
                    let value = map
                        .get(*name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let slot = match i {
                        0 => &mut expected.checksum_crc32,
                        1 => &mut expected.checksum_crc32c,
                        2 => &mut expected.checksum_sha1,
                        3 => &mut expected.checksum_sha256,
                        _ => &mut expected.checksum_crc64nvme,
                    };
                    if value.is_some() {
                        *slot = value;
                    }
                }
            });
        }
        let pairs = [
            (&expected.checksum_crc32, &computed.checksum_crc32),
            (&expected.checksum_crc32c, &computed.checksum_crc32c),
            (&expected.checksum_sha1, &computed.checksum_sha1),
            (&expected.checksum_sha256, &computed.checksum_sha256),
            (&expected.checksum_crc64nvme, &computed.checksum_crc64nvme),
        ];
        for (sent, ours) in pairs {
            if sent.is_some() && sent != ours {
                return Err(s3_error!(BadDigest, "the checksum does not match the body"));
            }
        }
        Ok(())
    }
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
}

/// What an encrypted body turned out to be: its part info and the
/// checksums of its plaintext, or the checksum error that failed it.
type Ended = Result<(PartInfo, s3s::dto::Checksum), S3Error>;

/// How an encrypted upload ended, filled in when its body has been read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome(Arc<Mutex<Option<Ended>>>);

impl Outcome {
    fn set(&self, value: Ended) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(value);
        }
    }

    /// The part info and plaintext checksums, or the checksum error that
    /// failed the body; `None` if the body was not read to its end.
    pub(crate) fn take(&self) -> Option<Ended> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// The plaintext, hashed on its way to the encryptor. At its end it checks
/// the client's values and fails the stream (so s3s-fs discards the file)
/// on a mismatch.
struct Checked {
    inner: StreamingBlob,
    checks: Checks,
    md5: s3s::crypto::Md5,
    hasher: Option<s3s::checksum::ChecksumHasher>,
    outcome: Outcome,
    checksum: Arc<Mutex<Option<s3s::dto::Checksum>>>,
}

impl Stream for Checked {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match ready!(this.inner.poll_next_unpin(cx)) {
            Some(Ok(bytes)) => {
                this.md5.update(&bytes);
                if let Some(hasher) = &mut this.hasher {
                    hasher.update(&bytes);
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(io::Error::other(e)))),
            None => {
                let Some(hasher) = this.hasher.take() else {
                    return Poll::Ready(None);
                };
                let md5 = std::mem::replace(&mut this.md5, s3s::crypto::Md5::new()).finalize();
                let computed = hasher.finalize();
                match this.checks.verify(md5, &computed) {
                    Ok(()) => {
                        if let Ok(mut slot) = this.checksum.lock() {
                            *slot = Some(computed);
                        }
                        Poll::Ready(None)
                    }
                    Err(error) => {
                        this.outcome.set(Err(error));
                        Poll::Ready(Some(Err(io::Error::other("checksum mismatch"))))
                    }
                }
            }
        }
    }
}

/// The stored stream of a plaintext body, chunk by chunk.
struct Encrypting {
    reader: AsyncEncryptReader<StreamReader<Checked, Bytes>>,
    buf: BytesMut,
    outcome: Outcome,
    checksum: Arc<Mutex<Option<s3s::dto::Checksum>>>,
    done: bool,
}

impl Stream for Encrypting {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        this.buf.reserve(64 * 1024);
        match ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut this.reader),
            cx,
            &mut this.buf
        )) {
            Ok(0) => {
                this.done = true;
                let checksum = this.checksum.lock().ok().and_then(|mut c| c.take());
                if let (Some(info), Some(checksum)) = (this.reader.info(), checksum) {
                    this.outcome.set(Ok((info, checksum)));
                }
                Poll::Ready(None)
            }
            Ok(_) => Poll::Ready(Some(Ok(this.buf.split().freeze()))),
            Err(e) => {
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

/// Encrypts `body` with `encryptor`; `Outcome` reports the part info and
/// the plaintext checksums once the body has been consumed.
pub(crate) fn encrypt(
    body: StreamingBlob,
    encryptor: Encryptor,
    checks: Checks,
) -> Result<(StreamingBlob, Outcome), S3Error> {
    let outcome = Outcome::default();
    let checksum = Arc::new(Mutex::new(None));
    let checked = Checked {
        hasher: Some(checks.hasher()?),
        inner: body,
        checks,
        md5: s3s::crypto::Md5::new(),
        outcome: outcome.clone(),
        checksum: checksum.clone(),
    };
    let reader = encryptor.async_reader(StreamReader::new(checked));
    let stream = Encrypting {
        reader,
        buf: BytesMut::new(),
        outcome: outcome.clone(),
        checksum,
        done: false,
    };
    Ok((StreamingBlob::wrap(stream), outcome))
}

/// Decrypts the concatenation of `sources` (the stored ranges of `plan`,
/// in order) into plaintext.
pub(crate) fn decrypt(
    decryptor: &Decryptor,
    plan: &RangePlan,
    sources: Vec<StreamingBlob>,
) -> Result<StreamingBlob, S3Error> {
    let stored = stream::iter(sources).flatten().map_err(io::Error::other);
    let reader = decryptor
        .async_range_reader(plan, StreamReader::new(stored))
        .map_err(|e| S3Error::with_message(S3ErrorCode::InternalError, e.to_string()))?;
    Ok(StreamingBlob::wrap(ReaderStream::with_capacity(
        reader,
        64 * 1024,
    )))
}
