//! Background load for tests that change kmsd while it serves: data-key
//! round trips until told to stop, counting what succeeded and keeping
//! every error, so a test can assert that nothing failed.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use kms_client::KmsClient;
use tokio::task::JoinHandle;

use crate::ctx;

/// What the load tasks share: the stop flag and the counts.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Set to stop every task.
    pub stop: Arc<AtomicBool>,
    /// Round trips (or calls) that succeeded.
    pub ok: Arc<AtomicU64>,
    /// Those that failed.
    pub failed: Arc<AtomicU64>,
}

impl Counters {
    /// Counts one outcome, keeping the error's text.
    pub fn record<E: std::fmt::Display>(&self, result: Result<(), E>, errors: &mut Vec<String>) {
        match result {
            Ok(()) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                errors.push(e.to_string());
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// Whether the tasks were told to stop.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Stops the tasks and returns (succeeded, failed, every error).
    pub async fn finish(&self, tasks: Vec<JoinHandle<Vec<String>>>) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut errors = Vec::new();
        for task in tasks {
            errors.extend(task.await.expect("a load task panicked"));
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
        )
    }
}

/// GenerateDataKey then Decrypt of its blob, over and over on `client`,
/// until `counters` is stopped; returns the errors seen.
pub fn data_key_round_trips(client: KmsClient, counters: Counters) -> JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut errors = Vec::new();
        while !counters.stopped() {
            let context = ctx(&[("bucket", "b")]);
            let result = match client.generate_data_key(None, &context).await {
                Ok(key) => client.decrypt(&key.blob, &context, None).await.map(drop),
                Err(e) => Err(e),
            };
            counters.record(result, &mut errors);
        }
        errors
    })
}
