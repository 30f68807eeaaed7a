//! Moving every stored sealed key to a new key version after a rotation (or
//! to another key), with kms-client's [`Rewrapper`]: one ReEncrypt per
//! distinct sealed key, payloads untouched.
//!
//! Objects that share a sealed key (every object written under one cached
//! bucket key) are re-wrapped together, so they keep sharing one blob and
//! reads keep costing one Decrypt per bucket key. Work is ordered by the
//! first metadata file of each such group; the checkpoint names one, and a
//! run resumed after it skips the groups that were finished before it.

use std::{collections::HashMap, path::PathBuf};

use kms_client::{
    EncryptionContext,
    rewrap::{RewrapOptions, RewrapProgress, Rewrapper, Wrapped},
    sse::{ObjectId, StoredSse},
};

use crate::{
    ObjectStore, S3Error,
    disk::{read_metadata, write_metadata},
    multipart,
};

/// The outcome of [`ObjectStore::rewrap`].
#[derive(Debug)]
pub struct RewrapSummary {
    /// Objects and uploads whose sealed key was considered (SSE-C ones
    /// have none).
    pub objects: u64,
    /// Distinct sealed keys among them (one ReEncrypt each).
    pub sealed_keys: u64,
    /// The final counts and checkpoint, as kms-client reports them.
    pub progress: RewrapProgress<String>,
    /// One line per sealed key that failed.
    pub failures: Vec<String>,
    /// kmsd stayed unavailable: run again (after the checkpoint) later.
    pub interrupted: bool,
}

/// One object (or upload) holding a sealed key.
struct Holder {
    meta: PathBuf,
}

impl ObjectStore {
    /// Re-wraps the sealed key of every SSE-S3 and SSE-KMS object and
    /// multipart upload. `resume_after` is a checkpoint of an earlier run.
    pub async fn rewrap(
        &self,
        options: RewrapOptions,
        resume_after: Option<&str>,
        progress: impl FnMut(&RewrapProgress<String>),
    ) -> Result<RewrapSummary, S3Error> {
        // Everything that holds a sealed key, in a stable order.
        let mut holders = Vec::new();
        for (bucket, key, meta) in self.disk.all_objects()? {
            holders.push((meta, bucket, key));
        }
        for (bucket, key, meta) in multipart::all_uploads(self)? {
            holders.push((meta, bucket, key));
        }
        holders.sort();
        let root_len = self.disk.root().as_os_str().len() + 1;
        let id_of = |meta: &PathBuf| {
            meta.to_string_lossy()
                .get(root_len..)
                .unwrap_or("")
                .to_owned()
        };

        // Group holders by (sealed key, context).
        let mut groups: Vec<Wrapped<String>> = Vec::new();
        // Per group: the sealed key it had, and who holds it.
        let mut members: HashMap<String, (Vec<u8>, Vec<Holder>)> = HashMap::new();
        let mut index: HashMap<(Vec<u8>, EncryptionContext), String> = HashMap::new();
        let mut objects = 0;
        for (meta, bucket, key) in holders {
            let Some(metadata) = read_metadata(&meta)? else {
                continue;
            };
            let (sealed, context) = match StoredSse::from_map(&metadata)? {
                Some(StoredSse::S3(sealed)) => (sealed, EncryptionContext::new()),
                Some(StoredSse::Kms(sealed, context)) => (sealed, context),
                Some(StoredSse::Customer { .. }) | None => continue,
            };
            objects += 1;
            // The context kmsd sealed with: the bucket's ARN for a bucket
            // key, else the object's ARN plus the client's context.
            let object = ObjectId::new(&bucket, &key);
            let context = match sealed.bucket_key_salt {
                Some(_) => object.bucket_context(),
                None => object.object_context(&context),
            };
            let group = index
                .entry((sealed.blob.clone(), context.clone()))
                .or_insert_with(|| {
                    let id = id_of(&meta);
                    groups.push(Wrapped {
                        id: id.clone(),
                        blob: sealed.blob.clone(),
                        context,
                    });
                    id
                });
            members
                .entry(group.clone())
                .or_insert_with(|| (sealed.blob, Vec::new()))
                .1
                .push(Holder { meta });
        }
        let sealed_keys = groups.len() as u64;
        let todo = groups
            .into_iter()
            .filter(|group| resume_after.is_none_or(|after| group.id.as_str() > after));

        let members = &members;
        let report = Rewrapper::new(self.client().clone(), options)
            .run(
                todo,
                |id, moved| async move {
                    let Some((old_blob, holders)) = members.get(&id) else {
                        return Ok(());
                    };
                    for holder in holders {
                        let Some(mut metadata) = read_metadata(&holder.meta)? else {
                            continue;
                        };
                        let Some(mut stored) = StoredSse::from_map(&metadata)? else {
                            continue;
                        };
                        if let StoredSse::S3(sealed) | StoredSse::Kms(sealed, _) = &mut stored
                            // Not if the object was rewritten meanwhile.
                            && sealed.blob == *old_blob
                        {
                            sealed.blob = moved.blob.blob.clone();
                            sealed.key_id = moved.blob.key_id.clone();
                            metadata.extend(stored.to_map());
                            write_metadata(&holder.meta, &metadata)?;
                        }
                    }
                    Ok::<(), S3Error>(())
                },
                progress,
            )
            .await;
        Ok(RewrapSummary {
            objects,
            sealed_keys,
            failures: report
                .failures
                .iter()
                .map(|(id, failure)| format!("{id}: {failure}"))
                .collect(),
            interrupted: report.interrupted,
            progress: report.progress,
        })
    }
}
