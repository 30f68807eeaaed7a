//! A quick measurement of how the local backend's costs grow with the
//! number of keys (issue 21): CreateKey, RotateKey and the reads of the
//! data plane at a small and a large key count, through the backend's own
//! writer, then the time to open the full directory. Run it with
//!
//! ```sh
//! cargo run --release -p kmsd --example local_scale -- 100000 /dev/shm/kmsd-scale
//! ```
//!
//! On a tmpfs the figures are the CPU cost of kmsd's own work (fsync is
//! nearly free there); on a disk they include its fsyncs.

use std::{path::Path, sync::Arc, time::Instant};

use super::{LocalBackend, LocalConfig, LocalError};
use crate::{
    backend::{KeyBackend, NewKey},
    blob,
    clock::SystemClock,
    context::EncryptionContext,
    error::KmsError,
    key_id::KeyId,
};

/// Why a measurement stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// Opening the directory failed.
    #[error(transparent)]
    Open(#[from] LocalError),
    /// A backend call failed.
    #[error(transparent)]
    Call(#[from] KmsError),
    /// The directory already holds keys; the count would be wrong.
    #[error("{0} is not empty; give a new directory")]
    NotEmpty(String),
}

/// The per-operation cost at one key count.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    /// How many keys the backend held.
    pub keys: usize,
    /// Mean wall time of one CreateKey, in microseconds.
    pub create_us: f64,
    /// Mean CPU time (user + system, whole process) of one CreateKey.
    pub create_cpu_us: f64,
    /// Mean wall time of one RotateKey of a random key.
    pub rotate_us: f64,
    /// Mean wall time of one GenerateDataKey + Decrypt of a random key.
    pub read_us: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Figures {
    /// At the small count (1,000 keys, or fewer if the run is smaller).
    pub small: Point,
    /// At the full count.
    pub large: Point,
    /// Opening the full directory again (what start-up does), seconds.
    pub reopen_s: f64,
}

/// Creates `keys` keys in the empty directory `dir` and measures `sample`
/// creates, rotations and reads at 1,000 keys and at `keys`.
pub async fn measure(dir: &Path, keys: usize, sample: usize) -> Result<Figures, ScaleError> {
    let clock = Arc::new(SystemClock);
    let open = || {
        LocalBackend::open(
            LocalConfig {
                key_dir: dir.to_owned(),
                sealing: None,
            },
            clock.clone(),
        )
    };
    let backend = open()?;
    if backend.keys.len() != 0 {
        return Err(ScaleError::NotEmpty(dir.display().to_string()));
    }
    let small_at = keys.min(1_000).saturating_sub(sample);
    let large_at = keys.saturating_sub(sample).max(small_at + sample);
    let mut made = 0;
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    fill(&backend, &mut made, small_at).await?;
    let small = point(&backend, &mut made, sample, &mut rng).await?;
    fill(&backend, &mut made, large_at).await?;
    let large = point(&backend, &mut made, sample, &mut rng).await?;
    drop(backend);
    let started = Instant::now();
    let reopened = open()?;
    let reopen_s = started.elapsed().as_secs_f64();
    drop(reopened);
    Ok(Figures {
        small,
        large,
        reopen_s,
    })
}

fn key_id(n: usize) -> Result<KeyId, KmsError> {
    KeyId::parse(&format!("scale-{n:07}"))
}

async fn create(backend: &LocalBackend, n: usize) -> Result<(), KmsError> {
    backend
        .create_key(NewKey {
            key_id: key_id(n)?,
            description: String::new(),
            tags: Default::default(),
        })
        .await
        .map(drop)
}

async fn fill(backend: &LocalBackend, made: &mut usize, to: usize) -> Result<(), KmsError> {
    while *made < to {
        create(backend, *made).await?;
        *made += 1;
    }
    Ok(())
}

/// xorshift64: spreads the sampled keys over the whole map.
fn next(rng: &mut u64, below: usize) -> usize {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    // Truncation is the point: any 64 bits pick a key.
    (*rng as usize) % below.max(1)
}

/// The CPU time of the whole process (every thread, user and system).
fn cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

async fn point(
    backend: &LocalBackend,
    made: &mut usize,
    sample: usize,
    rng: &mut u64,
) -> Result<Point, KmsError> {
    let per = |started: Instant| started.elapsed().as_secs_f64() * 1e6 / sample as f64;
    let (cpu, started) = (cpu_seconds(), Instant::now());
    for _ in 0..sample {
        create(backend, *made).await?;
        *made += 1;
    }
    let create_cpu_us = (cpu_seconds() - cpu) * 1e6 / sample as f64;
    let create_us = per(started);
    let started = Instant::now();
    for _ in 0..sample {
        backend.rotate_key(&key_id(next(rng, *made))?).await?;
    }
    let rotate_us = per(started);
    let context = EncryptionContext::empty();
    let started = Instant::now();
    for _ in 0..sample {
        let generated = backend
            .generate_data_key(&key_id(next(rng, *made))?, &context)
            .await?;
        let parsed = blob::parse(&generated.sealed.blob)?;
        backend.decrypt(&parsed, &context).await?;
    }
    let read_us = per(started);
    Ok(Point {
        keys: *made,
        create_us,
        create_cpu_us,
        rotate_us,
        read_us,
    })
}
