//! Bulk re-wrapping: moves every stored sealed key to the newest version of
//! its master key (after a rotation) or to another key (after a backend
//! migration), with kmsd's ReEncrypt. Only the sealed keys change: payloads
//! stay as stored, and the plaintext keys never leave kmsd.
//!
//! The storage server lists its objects in a stable order and hands each
//! sealed key to [`Rewrapper::run`] as a [`Wrapped`]; the helper keeps at
//! most [`RewrapOptions::concurrency`] ReEncrypt calls and saves in flight,
//! calls back with [`RewrapProgress`] after every object, and reports a
//! [`checkpoint`](RewrapProgress::checkpoint): the last object before
//! which everything is done. Persist the checkpoint; after an interruption,
//! list again starting after it. Objects already at the version a run has
//! seen kmsd seal with are skipped without a kmsd call, so running again
//! after a completed run costs one ReEncrypt per master key.
//!
//! ```no_run
//! # async fn demo(client: kms_client::KmsClient) -> Result<(), Box<dyn std::error::Error>> {
//! use kms_client::{EncryptionContext, rewrap::{RewrapOptions, Rewrapper, Wrapped}};
//!
//! // The storage server's catalog: (object name, stored sealed key, context).
//! let objects: Vec<(String, Vec<u8>, EncryptionContext)> = Vec::new();
//! let report = Rewrapper::new(client, RewrapOptions::default())
//!     .run(
//!         objects.into_iter().map(|(id, blob, context)| Wrapped { id, blob, context }),
//!         |id, rewrapped| async move {
//!             // Store rewrapped.blob.blob as the object's new sealed key.
//!             # let _ = (id, rewrapped);
//!             Ok::<(), std::io::Error>(())
//!         },
//!         |progress| eprintln!("{} done, checkpoint {:?}", progress.done(), progress.checkpoint),
//!     )
//!     .await;
//! assert!(report.failures.is_empty());
//! # Ok(()) }
//! ```

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    pin::Pin,
};

use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::{EncryptionContext, Error, KmsClient, ReEncrypted};

/// One stored sealed key.
#[derive(Debug, Clone)]
pub struct Wrapped<Id> {
    /// Names the object (or upload, or bucket key) in the storage server;
    /// handed back to the save callback and in the checkpoint.
    pub id: Id,
    /// The sealed key as stored.
    pub blob: Vec<u8>,
    /// The encryption context it was sealed with.
    pub context: EncryptionContext,
}

/// How a run proceeds.
#[derive(Debug, Clone)]
pub struct RewrapOptions {
    /// ReEncrypt calls (and saves) in flight at once; at least 1. The
    /// default, 16, keeps kmsd busy without crowding out the storage
    /// server's own requests.
    pub concurrency: usize,
    /// `None`: each blob moves to the newest version of its own key.
    /// `Some(key)`: every blob moves to `key` (a backend migration).
    pub destination_key_id: Option<String>,
}

impl Default for RewrapOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            destination_key_id: None,
        }
    }
}

/// Counts so far, and where to resume.
#[derive(Debug, Clone)]
pub struct RewrapProgress<Id> {
    /// Objects re-wrapped and saved.
    pub rewrapped: u64,
    /// Objects skipped: already sealed under the version this run moves to.
    pub already_current: u64,
    /// Objects that failed (see [`RewrapReport::failures`]).
    pub failed: u64,
    /// The last object such that it and every object listed before it are
    /// done: resume by listing the objects after it. `None` until the first
    /// object is done; it stops moving at the first failure.
    pub checkpoint: Option<Id>,
}

impl<Id> RewrapProgress<Id> {
    /// Objects handled, successfully or not.
    pub fn done(&self) -> u64 {
        self.rewrapped + self.already_current + self.failed
    }
}

/// Why one object was not re-wrapped.
#[derive(Debug, thiserror::Error)]
pub enum RewrapFailure<E> {
    /// kmsd refused the ReEncrypt (a damaged blob, a wrong context, a
    /// disabled key, ...).
    #[error("ReEncrypt failed: {0}")]
    Kms(#[source] Error),
    /// The save callback failed; the object keeps its old sealed key,
    /// which still opens.
    #[error("saving the new sealed key failed: {0}")]
    Save(#[source] E),
}

/// The outcome of a run.
#[derive(Debug)]
pub struct RewrapReport<Id, E> {
    /// The final counts and checkpoint.
    pub progress: RewrapProgress<Id>,
    /// Each object that failed, in completion order.
    pub failures: Vec<(Id, RewrapFailure<E>)>,
    /// True when the run stopped early because kmsd stayed unreachable or
    /// overloaded after the client's retries (a transient error): the
    /// objects after the checkpoint were not all tried. Run again later.
    pub interrupted: bool,
}

/// The key id and version a sealed blob names in its header
/// (docs/format.md, "Sealed blob v1"); `None` if it is not a v1 blob.
/// Reading them needs no key and proves nothing: only kmsd authenticates
/// a blob.
pub fn sealed_by(blob: &[u8]) -> Option<(&str, u32)> {
    let (header, rest) = blob.split_first_chunk::<5>()?;
    if header[..3] != [0x6b, 0x6d, 0x01] {
        return None;
    }
    let len = usize::from(header[4]);
    let key_id = std::str::from_utf8(rest.get(..len)?).ok()?;
    let version = rest.get(len..len + 4)?;
    let version = u32::from_be_bytes([version[0], version[1], version[2], version[3]]);
    Some((key_id, version))
}

/// Re-wraps sealed keys through one [`KmsClient`] (whose retry policy
/// applies to each ReEncrypt).
#[derive(Debug, Clone)]
pub struct Rewrapper {
    client: KmsClient,
    options: RewrapOptions,
}

type Pending<'a, Id, E> =
    Pin<Box<dyn Future<Output = (u64, Id, Result<Outcome, RewrapFailure<E>>)> + Send + 'a>>;

enum Outcome {
    Rewrapped { key_id: String, version: u32 },
    AlreadyCurrent,
}

impl Rewrapper {
    /// A re-wrapper over `client`.
    pub fn new(client: KmsClient, options: RewrapOptions) -> Self {
        Self { client, options }
    }

    /// Re-wraps every item (pulled lazily, in order), calling `save` with
    /// each new sealed key and `progress` after each object.
    ///
    /// `save` must persist the new blob in place of the old one (its key id
    /// and version are in the [`ReEncrypted`]); until it has, the old blob
    /// keeps opening, so a crash in between loses nothing. Items are
    /// independent: one failure does not stop the run, except a transient
    /// one (see [`RewrapReport::interrupted`]).
    pub async fn run<Id, E, I, S, SFut, P>(
        &self,
        items: I,
        save: S,
        mut progress: P,
    ) -> RewrapReport<Id, E>
    where
        Id: Clone + Send,
        E: Send,
        I: IntoIterator<Item = Wrapped<Id>>,
        S: Fn(Id, ReEncrypted) -> SFut + Sync,
        SFut: Future<Output = Result<(), E>> + Send,
        P: FnMut(&RewrapProgress<Id>),
    {
        let mut report = RewrapReport {
            progress: RewrapProgress {
                rewrapped: 0,
                already_current: 0,
                failed: 0,
                checkpoint: None,
            },
            failures: Vec::new(),
            interrupted: false,
        };
        // The version kmsd sealed with, per key, as seen in this run.
        let mut current: HashMap<String, u32> = HashMap::new();
        // Sequence numbers done out of order, waiting for the checkpoint.
        let mut finished: BTreeMap<u64, Id> = BTreeMap::new();
        let mut next_checkpoint = 0u64;
        let mut blocked = false;
        let mut items = items.into_iter().enumerate();
        let mut in_flight: FuturesUnordered<Pending<'_, Id, E>> = FuturesUnordered::new();
        let save = &save;
        loop {
            while !report.interrupted && in_flight.len() < self.options.concurrency.max(1) {
                let Some((seq, item)) = items.next() else {
                    break;
                };
                let seq = seq as u64;
                let skip = self.options.destination_key_id.is_none()
                    && sealed_by(&item.blob).is_some_and(|(key, version)| {
                        current.get(key).is_some_and(|v| version >= *v)
                    });
                in_flight.push(Box::pin(self.one(seq, item, skip, save)));
            }
            let Some((seq, id, result)) = in_flight.next().await else {
                break;
            };
            let ok = match result {
                Ok(Outcome::AlreadyCurrent) => {
                    report.progress.already_current += 1;
                    true
                }
                Ok(Outcome::Rewrapped { key_id, version }) => {
                    report.progress.rewrapped += 1;
                    let seen = current.entry(key_id).or_insert(version);
                    *seen = (*seen).max(version);
                    true
                }
                Err(failure) => {
                    report.progress.failed += 1;
                    if matches!(&failure, RewrapFailure::Kms(e) if e.is_transient()) {
                        report.interrupted = true;
                    }
                    report.failures.push((id.clone(), failure));
                    false
                }
            };
            // Every object before `next_checkpoint` is done, so a failure
            // is at or after it: the checkpoint can never pass it.
            blocked |= !ok;
            if ok && !blocked {
                finished.insert(seq, id);
                while let Some(id) = finished.remove(&next_checkpoint) {
                    report.progress.checkpoint = Some(id);
                    next_checkpoint += 1;
                }
            }
            progress(&report.progress);
        }
        report
    }

    async fn one<Id, E, S, SFut>(
        &self,
        seq: u64,
        item: Wrapped<Id>,
        skip: bool,
        save: &S,
    ) -> (u64, Id, Result<Outcome, RewrapFailure<E>>)
    where
        Id: Clone,
        S: Fn(Id, ReEncrypted) -> SFut,
        SFut: Future<Output = Result<(), E>>,
    {
        if skip {
            return (seq, item.id, Ok(Outcome::AlreadyCurrent));
        }
        let moved = self
            .client
            .re_encrypt(
                &item.blob,
                &item.context,
                self.options.destination_key_id.as_deref(),
                None,
            )
            .await;
        let moved = match moved {
            Ok(moved) => moved,
            Err(e) => return (seq, item.id, Err(RewrapFailure::Kms(e))),
        };
        let outcome = Outcome::Rewrapped {
            key_id: moved.blob.key_id.clone(),
            version: moved.blob.key_version,
        };
        let result = save(item.id.clone(), moved)
            .await
            .map(|()| outcome)
            .map_err(RewrapFailure::Save);
        (seq, item.id, result)
    }
}

#[cfg(test)]
mod tests {
    use super::sealed_by;

    #[test]
    fn sealed_by_reads_the_key_and_version_of_a_v1_header() {
        let mut blob = vec![0x6b, 0x6d, 0x01, 0x01, 7];
        blob.extend(b"app-key");
        blob.extend(3u32.to_be_bytes());
        blob.extend([0xaa; 40]);
        assert_eq!(sealed_by(&blob), Some(("app-key", 3)));
        // Truncated, another magic, another format version: not a v1 blob.
        for bad in [
            &blob[..10],
            &[0x6b, 0x6e, 0x01, 0x01, 1, b'a', 0, 0, 0, 1][..],
            &[0x6b, 0x6d, 0x02][..],
            &[],
        ] {
            assert_eq!(sealed_by(bad), None, "{bad:?}");
        }
    }
}
