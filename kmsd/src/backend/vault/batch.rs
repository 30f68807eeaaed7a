//! Batching of concurrent Transit calls (docs/vault.md, "Batching").
//!
//! Vault spends most of a Transit call on the HTTP request itself (token
//! lookup, policy, routing), not on the AES-GCM of one data key. Under load
//! kmsd therefore sends the wraps (and unwraps) waiting for one key in one
//! `batch_input` request. Nothing waits for a batch to fill: a call that
//! finds a free worker is sent at once (alone, when nothing else waits), and
//! calls that arrive while every worker has a request in flight go together
//! in the next one. A single caller sees no added latency.
//!
//! Workers are spawned tasks, so a caller that gives up (its gRPC request
//! was cancelled) never takes the others' batch down with it.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex},
};

use tokio::sync::oneshot;

use super::error::VaultError;

/// Most items in one request: bounds the request size and the time the
/// last item of a batch waits for Vault to reach it.
pub(crate) const MAX_BATCH: usize = 32;
/// Most requests in flight per key: Vault serves each request on one
/// thread, so a few at once keep all of its cores busy.
const MAX_WORKERS: usize = 4;

type Reply<R> = oneshot::Sender<Result<R, VaultError>>;

struct Queue<J, R> {
    waiting: Vec<(J, Reply<R>)>,
    workers: usize,
}

impl<J, R> Default for Queue<J, R> {
    fn default() -> Self {
        Self {
            waiting: Vec::new(),
            workers: 0,
        }
    }
}

/// Calls of one kind, queued per key `K`; `J` is one call's input, `R` its
/// answer.
pub(crate) struct Batcher<K, J, R> {
    queues: Mutex<HashMap<K, Queue<J, R>>>,
}

impl<K, J, R> std::fmt::Debug for Batcher<K, J, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<K, J, R> Default for Batcher<K, J, R> {
    fn default() -> Self {
        Self {
            queues: Mutex::new(HashMap::new()),
        }
    }
}

impl<K, J, R> Batcher<K, J, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    J: Send + 'static,
    R: Send + 'static,
{
    /// Queues `job` for `key` and waits for its answer. `send` performs one
    /// request for a batch and answers each job, in order.
    pub(crate) async fn submit<F, Fut>(
        self: &Arc<Self>,
        key: K,
        job: J,
        send: F,
    ) -> Result<R, VaultError>
    where
        F: Fn(K, Vec<J>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Result<R, VaultError>>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let start_worker = {
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            let queue = queues.entry(key.clone()).or_default();
            queue.waiting.push((job, reply));
            let start = queue.workers < MAX_WORKERS;
            if start {
                queue.workers += 1;
            }
            start
        };
        if start_worker {
            tokio::spawn(Arc::clone(self).work(key, send));
        }
        answer.await.unwrap_or_else(|_| {
            Err(VaultError::Decode {
                op: "a batched Transit call".into(),
                reason: "the batch was abandoned".into(),
            })
        })
    }

    async fn work<F, Fut>(self: Arc<Self>, key: K, send: F)
    where
        F: Fn(K, Vec<J>) -> Fut,
        Fut: Future<Output = Vec<Result<R, VaultError>>>,
    {
        loop {
            let batch: Vec<(J, Reply<R>)> = {
                let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
                let Some(queue) = queues.get_mut(&key) else {
                    return;
                };
                if queue.waiting.is_empty() {
                    queue.workers -= 1;
                    if queue.workers == 0 {
                        queues.remove(&key);
                    }
                    return;
                }
                let take = queue.waiting.len().min(MAX_BATCH);
                queue.waiting.drain(..take).collect()
            };
            let (jobs, replies): (Vec<J>, Vec<Reply<R>>) = batch.into_iter().unzip();
            let answers = send(key.clone(), jobs).await;
            // A missing answer drops its sender: that caller sees an error.
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_share_requests_and_each_gets_its_own_answer() {
        let batcher: Arc<Batcher<u8, u32, u32>> = Arc::default();
        let requests = Arc::new(AtomicUsize::new(0));
        let largest = Arc::new(AtomicUsize::new(0));
        let send = {
            let (requests, largest) = (Arc::clone(&requests), Arc::clone(&largest));
            move |_key: u8, jobs: Vec<u32>| {
                requests.fetch_add(1, Ordering::Relaxed);
                largest.fetch_max(jobs.len(), Ordering::Relaxed);
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    jobs.into_iter()
                        .map(|j| {
                            if j == 13 {
                                Err(VaultError::Decode {
                                    op: "x".into(),
                                    reason: "13".into(),
                                })
                            } else {
                                Ok(j * 2)
                            }
                        })
                        .collect()
                }
            }
        };
        let calls: Vec<_> = (0..200u32)
            .map(|j| {
                let (batcher, send) = (Arc::clone(&batcher), send.clone());
                tokio::spawn(async move { (j, batcher.submit(0, j, send).await) })
            })
            .collect();
        for call in calls {
            let (j, answer) = call.await.unwrap();
            match answer {
                Ok(doubled) => assert_eq!(doubled, j * 2),
                Err(_) => assert_eq!(j, 13),
            }
        }
        let requests = requests.load(Ordering::Relaxed);
        assert!(requests < 200 / 4, "{requests} requests for 200 calls");
        assert!(largest.load(Ordering::Relaxed) <= MAX_BATCH);
        assert!(
            batcher.queues.lock().unwrap().is_empty(),
            "idle queues are removed"
        );
    }

    #[tokio::test]
    async fn a_lone_call_is_sent_at_once_and_alone() {
        let batcher: Arc<Batcher<u8, u32, u32>> = Arc::default();
        let sizes = Arc::new(Mutex::new(Vec::new()));
        for j in 0..3 {
            let sizes = Arc::clone(&sizes);
            let answer = batcher
                .submit(1, j, move |_, jobs: Vec<u32>| {
                    sizes.lock().unwrap().push(jobs.len());
                    async move { jobs.into_iter().map(Ok).collect() }
                })
                .await
                .unwrap();
            assert_eq!(answer, j);
        }
        assert_eq!(*sizes.lock().unwrap(), [1, 1, 1]);
    }
}
