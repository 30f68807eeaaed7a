//! A quick measurement of how the local backend's costs grow with the
//! number of keys (issue 21): CreateKey, RotateKey and the reads of the
//! data plane at a small and a large key count, through the backend's own
//! writer; CreateKey throughput alone and beside data-plane load; then what
//! opening the full directory and a one-key directory costs. Run it with
//!
//! ```sh
//! cargo run --release -p kmsd --example local_scale -- 100000 /dev/shm/kmsd-scale
//! ```
//!
//! On a tmpfs the figures are the CPU cost of kmsd's own work (fsync is
//! nearly free there); on a disk they include its fsyncs. The start-up
//! figures of a process that only opens a directory ([`open_figures`],
//! `local_scale open <dir>`) are cleaner than those measured after creating
//! the keys in the same process, whose heap already holds every key. With
//! [`PASSPHRASE_FILE_VAR`] set, every mode seals the directory.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use super::{LocalBackend, LocalConfig, LocalError, SealingSecret};
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
    /// A reader task of the throughput figure failed.
    #[error("a reader task failed: {0}")]
    Task(String),
}

/// The per-operation cost at one key count.
#[derive(Debug, Clone, Copy, serde::Serialize)]
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
    /// CreateKeys per second, one after another, durable writes.
    pub creates_per_s: f64,
    /// The same while [`LOAD_TASKS`] tasks run GenerateDataKey + Decrypt.
    pub creates_per_s_loaded: f64,
    /// GenerateDataKey + Decrypt pairs per second of those tasks.
    pub reads_per_s_loaded: f64,
}

/// What opening a directory costs, measured in the opening process.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct OpenFigures {
    /// Keys in the directory.
    pub keys: usize,
    /// `LocalBackend::open`, seconds.
    pub open_s: f64,
    /// VmRSS of the process after the open, KiB.
    pub rss_kib: u64,
    /// VmHWM (peak RSS) of the process after the open, KiB.
    pub hwm_kib: u64,
    /// The first use (GenerateDataKey + Decrypt) of a random unread key,
    /// µs each.
    pub first_use_us: f64,
    /// The next use of the same keys, µs each.
    pub warm_use_us: f64,
    /// ListKeys' first page of [`PAGE`] keys, ms.
    pub first_page_ms: f64,
    /// Every page of [`PAGE`] keys one after another, ms.
    pub full_list_ms: f64,
    /// VmRSS after that full listing, KiB.
    pub rss_after_list_kib: u64,
    /// VmHWM after that full listing, KiB.
    pub hwm_after_list_kib: u64,
}

/// Everything one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figures {
    /// At the small count (1,000 keys, or fewer if the run is smaller).
    pub small: Point,
    /// At the full count.
    pub large: Point,
    /// Opening the full directory again in this process.
    pub reopen: OpenFigures,
    /// Opening a directory of one key in this process.
    pub one_key: OpenFigures,
}

/// ListKeys page size of the listing figures.
pub const PAGE: usize = 100;
/// Tasks running GenerateDataKey + Decrypt during the loaded throughput.
pub const LOAD_TASKS: usize = 2;
/// Uses timed for the first-use figure.
const FIRST_USES: usize = 200;

/// Names a file holding a passphrase: the directory is then sealed under
/// it (as `[backend.sealing] passphrase_file` seals it for `kmsd serve`).
pub const PASSPHRASE_FILE_VAR: &str = "LOCAL_SCALE_PASSPHRASE_FILE";

fn open_dir(dir: &Path) -> Result<LocalBackend, LocalError> {
    let sealing = match std::env::var_os(PASSPHRASE_FILE_VAR) {
        Some(path) => {
            let path = std::path::PathBuf::from(path);
            let mut bytes = std::fs::read(&path).map_err(|source| LocalError::Io {
                path: path.clone(),
                source,
            })?;
            // As the daemon reads it: a final newline is not part of it.
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            Some(SealingSecret::Passphrase(kms_core::SecretBytes::new(bytes)))
        }
        None => None,
    };
    LocalBackend::open(
        LocalConfig {
            key_dir: dir.to_owned(),
            sealing,
        },
        Arc::new(SystemClock),
    )
}

/// Creates `keys` keys in the empty directory `dir` and measures `sample`
/// creates, rotations and reads at 1,000 keys and at `keys`; then opens
/// `dir` again, and a directory `<dir>-one` of one key.
pub async fn measure(dir: &Path, keys: usize, sample: usize) -> Result<Figures, ScaleError> {
    let backend = Arc::new(open_dir(dir)?);
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
    let reopen = open_figures(dir).await?;

    let one = dir.with_file_name(format!(
        "{}-one",
        dir.file_name().unwrap_or_default().to_string_lossy()
    ));
    crate::fsutil::ensure_private_dir(&one).map_err(|source| LocalError::Io {
        path: one.clone(),
        source,
    })?;
    let backend = open_dir(&one)?;
    if backend.keys.len() == 0 {
        create(&backend, 0).await?;
    }
    drop(backend);
    let one_key = open_figures(&one).await?;
    Ok(Figures {
        small,
        large,
        reopen,
        one_key,
    })
}

/// Fills `dir` up to `keys` keys through the backend's own writer (each
/// file written and fsynced as CreateKey does); returns how many it made.
/// A directory that already holds keys gets more (to profile creates in a
/// large directory without the cost of filling it in the same run).
pub async fn populate(dir: &Path, keys: usize) -> Result<usize, ScaleError> {
    let backend = open_dir(dir)?;
    let mut made = 0;
    let mut n = backend.keys.len();
    while backend.keys.len() < keys {
        match create(&backend, n).await {
            Ok(()) => made += 1,
            Err(KmsError::KeyAlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        n += 1;
    }
    Ok(made)
}

/// Opens `dir` and measures what a start costs: the open, the memory
/// after it, first and later uses of random keys, and ListKeys.
pub async fn open_figures(dir: &Path) -> Result<OpenFigures, ScaleError> {
    let started = Instant::now();
    let backend = open_dir(dir)?;
    let open_s = started.elapsed().as_secs_f64();
    let (rss_kib, hwm_kib) = memory_kib();
    let keys = backend.keys.len();

    // Random keys of the directory, by listing ids without reading keys.
    let ids: Vec<KeyId> = backend
        .keys
        .cells_after(None)
        .map(|cell| cell.key().clone())
        .collect();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let picked: Vec<&KeyId> = (0..FIRST_USES.min(ids.len()))
        .filter_map(|_| ids.get(next(&mut rng, ids.len())))
        .collect();
    let context = EncryptionContext::empty();
    let mut uses = [0.0; 2];
    for pass in &mut uses {
        let started = Instant::now();
        for key_id in &picked {
            use_key(&backend, key_id, &context).await?;
        }
        *pass = started.elapsed().as_secs_f64() * 1e6 / picked.len().max(1) as f64;
    }
    drop(ids);

    let started = Instant::now();
    let first = backend.list_keys(None, PAGE).await?;
    let first_page_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let mut after = first.last().map(|k| k.key_id.clone());
    while let Some(last) = after {
        let page = backend.list_keys(Some(&last), PAGE).await?;
        after = page.last().map(|k| k.key_id.clone());
    }
    // The first page counts towards the full listing too.
    let full_list_ms = started.elapsed().as_secs_f64() * 1e3 + first_page_ms;
    let (rss_after_list_kib, hwm_after_list_kib) = memory_kib();
    Ok(OpenFigures {
        keys,
        open_s,
        rss_kib,
        hwm_kib,
        first_use_us: uses[0],
        warm_use_us: uses[1],
        first_page_ms,
        full_list_ms,
        rss_after_list_kib,
        hwm_after_list_kib,
    })
}

/// VmRSS and VmHWM of this process, KiB (0 where /proc is unreadable).
pub fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
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

/// One GenerateDataKey + Decrypt.
async fn use_key(
    backend: &LocalBackend,
    key_id: &KeyId,
    context: &EncryptionContext,
) -> Result<(), KmsError> {
    let generated = backend.generate_data_key(key_id, context).await?;
    let parsed = blob::parse(&generated.sealed.blob)?;
    backend.decrypt(&parsed, context).await.map(drop)
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
    backend: &Arc<LocalBackend>,
    made: &mut usize,
    sample: usize,
    rng: &mut u64,
) -> Result<Point, ScaleError> {
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
        use_key(backend, &key_id(next(rng, *made))?, &context).await?;
    }
    let read_us = per(started);
    let (creates_per_s, _) = throughput(backend, made, sample, 0).await?;
    let (creates_per_s_loaded, reads_per_s_loaded) =
        throughput(backend, made, sample, LOAD_TASKS).await?;
    Ok(Point {
        keys: *made,
        create_us,
        create_cpu_us,
        rotate_us,
        read_us,
        creates_per_s,
        creates_per_s_loaded,
        reads_per_s_loaded,
    })
}

/// CreateKeys per second over `count` creates while `readers` tasks run
/// GenerateDataKey + Decrypt of random existing keys, and their pairs per
/// second.
async fn throughput(
    backend: &Arc<LocalBackend>,
    made: &mut usize,
    count: usize,
    readers: usize,
) -> Result<(f64, f64), ScaleError> {
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let existing = *made;
    let tasks: Vec<_> = (0..readers)
        .map(|n| {
            let (backend, stop, reads) =
                (Arc::clone(backend), Arc::clone(&stop), Arc::clone(&reads));
            tokio::spawn(async move {
                let context = EncryptionContext::empty();
                let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ (n as u64 + 1);
                while !stop.load(Ordering::Relaxed) {
                    use_key(&backend, &key_id(next(&mut rng, existing))?, &context).await?;
                    reads.fetch_add(1, Ordering::Relaxed);
                    // Lets the creating task in on a small runtime.
                    tokio::task::yield_now().await;
                }
                Ok::<_, KmsError>(())
            })
        })
        .collect();
    let started = Instant::now();
    for _ in 0..count {
        create(backend, *made).await?;
        *made += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.map_err(|e| ScaleError::Task(e.to_string()))??;
    }
    let pairs = reads.load(Ordering::Relaxed) as f64;
    Ok((count as f64 / seconds, pairs / seconds))
}
