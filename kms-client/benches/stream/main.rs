//! OSE1 benchmark: throughput against the raw cipher, peak memory while
//! streaming a large object, bytes read for a 1-byte range, and two
//! streams in parallel against one.
//!
//! ```text
//! cargo bench -p kms-client --bench stream                  # full run
//! KMS_BENCH_QUICK=1 cargo bench -p kms-client --bench stream  # CI smoke, < 20 s
//! cargo bench -p kms-client --features aws-lc --bench stream  # aws-lc-rs backend
//! ```
//!
//! Throughput is single-threaded over 1 MiB chunks. Encryption is compared
//! with sealing the same 1 MiB buffer in place with the backend's
//! AES-256-GCM; decryption with copying each stored chunk into the working
//! buffer and opening it in place (opening is destructive, so any reader,
//! raw or not, must first bring the ciphertext into its buffer). Sources
//! are free (they claim to fill the buffer and leave it as it is) and sinks
//! take bytes through `BufRead`, so what is measured is the format and the
//! adapters, not a memcpy of the test harness. Each figure is reported in
//! the thread's CPU time (immune to preemption by neighbours on a shared
//! machine) and in wall time; see docs/performance.md.
// A benchmark has no caller to report to: any failure aborts the run.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{
    io::{self, BufRead, Read, Write},
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

#[cfg(feature = "aws-lc")]
use aws_lc_rs as backend;
#[cfg(not(feature = "aws-lc"))]
use ring as backend;

use backend::aead;
use kms_client::{
    DataKey,
    stream::{ChunkSize, Decryptor, Encryptor, Layout, PartInfo, PartNumber},
};
use tokio::io::{AsyncBufReadExt, AsyncRead, ReadBuf};

const MIB: usize = 1 << 20;
const BINDING: &[u8] = b"bench/object";

struct Config {
    quick: bool,
    reps: usize,
    /// MiB per throughput repetition.
    mib_per_rep: usize,
    /// Bytes streamed for the memory measurement.
    stream_bytes: u64,
    /// Size of the object for the range measurement.
    range_object: u64,
}

fn config() -> Config {
    if std::env::var_os("KMS_BENCH_QUICK").is_some() {
        Config {
            quick: true,
            reps: 15,
            mib_per_rep: 64,
            stream_bytes: 512 << 20,
            range_object: 1 << 30,
        }
    } else {
        Config {
            quick: false,
            reps: 41,
            mib_per_rep: 256,
            stream_bytes: 4 << 30,
            range_object: 1 << 30,
        }
    }
}

/// A reader of `remaining` plaintext bytes that costs nothing: it reports
/// the buffer as filled without touching it.
struct FreeSource {
    remaining: u64,
}

impl Read for FreeSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        self.remaining -= n as u64;
        Ok(n)
    }
}

impl AsyncRead for FreeSource {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = buf
            .remaining()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        // The adapters hand in initialized buffers, so this does not write.
        buf.initialize_unfilled_to(n);
        buf.advance(n);
        self.remaining -= n as u64;
        Poll::Ready(Ok(()))
    }
}

/// Plaintext whose byte at offset `x` is `pattern(x)`, cheap to produce.
struct PatternSource {
    offset: u64,
    end: u64,
}

fn pattern(offset: u64) -> u8 {
    (offset >> 12) as u8 ^ 0x5a
}

impl Read for PatternSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min((self.end - self.offset) as usize)
            .min(4096 - (self.offset % 4096) as usize);
        buf[..n].fill(pattern(self.offset));
        self.offset += n as u64;
        Ok(n)
    }
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

fn drain_buf(mut reader: impl BufRead) -> io::Result<u64> {
    let mut total = 0;
    loop {
        let n = reader.fill_buf()?.len();
        if n == 0 {
            return Ok(total);
        }
        reader.consume(n);
        total += n as u64;
    }
}

async fn drain_async(mut reader: impl tokio::io::AsyncBufRead + Unpin) -> io::Result<u64> {
    let mut total = 0;
    loop {
        let n = reader.fill_buf().await?.len();
        if n == 0 {
            return Ok(total);
        }
        reader.consume(n);
        total += n as u64;
    }
}

fn gcm_key() -> aead::LessSafeKey {
    aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_256_GCM, &[0x11; 32]).expect("32-byte key"),
    )
}

fn nonce(i: u64) -> aead::Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&i.to_be_bytes());
    aead::Nonce::assume_unique_for_key(bytes)
}

/// A single-part object of `chunks` full chunks (plus the empty last one).
fn stored_object(key: &DataKey, chunks: usize) -> (Vec<u8>, Layout) {
    let encryptor =
        Encryptor::new(key, BINDING, PartNumber::SINGLE, ChunkSize::DEFAULT).expect("encryptor");
    let mut reader = encryptor.reader(FreeSource {
        remaining: (chunks * MIB) as u64,
    });
    let mut stored = Vec::new();
    reader.read_to_end(&mut stored).expect("encrypt");
    let info = reader.info().expect("finished");
    (stored, Layout::seal(key, BINDING, [info]).expect("layout"))
}

/// This thread's time on a CPU, in seconds, from the scheduler's account
/// (`se.sum_exec_runtime` in /proc/thread-self/sched). Unlike wall time it
/// does not grow while a neighbour's build holds the core. The kernel
/// updates it only at scheduler ticks (every 4 ms here), so it is summed
/// over all rounds, where the rounding errors average out, rather than
/// compared round by round. `None` where the kernel lacks the file.
fn cpu_seconds() -> Option<f64> {
    let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
    let line = sched
        .lines()
        .find(|line| line.starts_with("se.sum_exec_runtime"))?;
    let ms: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    Some(ms / 1e3)
}

/// Wall and CPU time of one measurement.
struct Clock {
    wall: Instant,
    cpu: Option<f64>,
}

impl Clock {
    fn start() -> Self {
        Self {
            cpu: cpu_seconds(),
            wall: Instant::now(),
        }
    }

    /// (wall seconds, CPU seconds or else wall seconds).
    fn elapsed(&self) -> (f64, f64) {
        let wall = self.wall.elapsed().as_secs_f64();
        let cpu = match (self.cpu, cpu_seconds()) {
            (Some(start), Some(end)) if end > start => end - start,
            _ => wall,
        };
        (wall, cpu)
    }
}

fn gbps(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e9
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn throughput(config: &Config) {
    let key = DataKey::from_bytes([0x22; 32]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let bytes = config.mib_per_rep * MIB;
    let raw = gcm_key();
    let mut buf = vec![0x33u8; MIB + 16];
    // A 16 MiB object fits in L3, like the raw baseline's buffers.
    let passes = config.mib_per_rep / 16;
    let (stored, layout) = stored_object(&key, 16);
    let decryptor = Decryptor::new(&key, BINDING, &layout).expect("decryptor");
    // The raw baseline's stored chunks: 16 valid 1 MiB ciphertexts.
    let raw_chunks: Vec<Vec<u8>> = (0..16u64)
        .map(|i| {
            let mut chunk = vec![i as u8; MIB + 16];
            let tag = raw
                .seal_in_place_separate_tag(
                    nonce(i),
                    aead::Aad::from(&[0u8; 41]),
                    &mut chunk[..MIB],
                )
                .expect("seal");
            chunk[MIB..].copy_from_slice(tag.as_ref());
            chunk
        })
        .collect();
    let source_chunk = vec![0x44u8; MIB];

    let names = [
        "raw seal",
        "OSE1 encrypt, std EncryptReader (BufRead)",
        "OSE1 encrypt, tokio AsyncEncryptReader",
        "OSE1 encrypt, std EncryptWriter (copies input)",
        "raw copy+open",
        "raw open only",
        "OSE1 decrypt, std DecryptReader (BufRead)",
        "OSE1 decrypt, tokio AsyncDecryptReader",
    ];
    let mut results = vec![Vec::new(); names.len()];
    let mut cpu_results = vec![Vec::new(); names.len()];
    for _ in 0..=config.reps {
        let mut timings = Vec::new();
        let start = Clock::start();
        for i in 0..config.mib_per_rep {
            let tag = raw.seal_in_place_separate_tag(
                nonce(i as u64),
                aead::Aad::from(&[0u8; 41]),
                &mut buf[..MIB],
            );
            let _ = std::hint::black_box(tag.expect("seal"));
        }
        timings.push((bytes, start.elapsed()));

        let start = Clock::start();
        let encryptor = Encryptor::new(&key, BINDING, PartNumber::SINGLE, ChunkSize::DEFAULT)
            .expect("encryptor");
        drain_buf(encryptor.reader(FreeSource {
            remaining: bytes as u64,
        }))
        .expect("encrypt");
        timings.push((bytes, start.elapsed()));

        let start = Clock::start();
        let encryptor = Encryptor::new(&key, BINDING, PartNumber::SINGLE, ChunkSize::DEFAULT)
            .expect("encryptor");
        runtime
            .block_on(drain_async(encryptor.async_reader(FreeSource {
                remaining: bytes as u64,
            })))
            .expect("encrypt");
        timings.push((bytes, start.elapsed()));

        let start = Clock::start();
        let encryptor = Encryptor::new(&key, BINDING, PartNumber::SINGLE, ChunkSize::DEFAULT)
            .expect("encryptor");
        let mut writer = encryptor.writer(io::sink());
        for _ in 0..config.mib_per_rep {
            writer.write_all(&source_chunk).expect("write");
        }
        writer.finish().expect("finish");
        timings.push((bytes, start.elapsed()));

        let start = Clock::start();
        for _ in 0..passes {
            for (i, chunk) in raw_chunks.iter().enumerate() {
                buf.copy_from_slice(chunk);
                let opened =
                    raw.open_in_place(nonce(i as u64), aead::Aad::from(&[0u8; 41]), &mut buf[..]);
                assert!(opened.is_ok());
            }
        }
        timings.push((bytes, start.elapsed()));

        // Open only: seal first (untimed), then time the open.
        // Timed call by call, so wall time only (reading the CPU account
        // per call would cost more than the calls are worth measuring).
        let mut open_time = 0.0;
        for i in 0..config.mib_per_rep {
            let tag = raw
                .seal_in_place_separate_tag(
                    nonce(i as u64),
                    aead::Aad::from(&[0u8; 41]),
                    &mut buf[..MIB],
                )
                .expect("seal");
            buf[MIB..].copy_from_slice(tag.as_ref());
            let start = Instant::now();
            let opened =
                raw.open_in_place(nonce(i as u64), aead::Aad::from(&[0u8; 41]), &mut buf[..]);
            open_time += start.elapsed().as_secs_f64();
            assert!(opened.is_ok());
        }
        timings.push((bytes, (open_time, open_time)));

        let start = Clock::start();
        for _ in 0..passes {
            drain_buf(decryptor.reader(&stored[..])).expect("decrypt");
        }
        timings.push((bytes, start.elapsed()));

        let start = Clock::start();
        for _ in 0..passes {
            runtime
                .block_on(drain_async(decryptor.async_reader(&stored[..])))
                .expect("decrypt");
        }
        timings.push((bytes, start.elapsed()));

        // The first round warms caches and frequency; it is not counted.
        if results[0].len() < config.reps && timings.len() == names.len() {
            for ((wall, cpu), (n, (wall_s, cpu_s))) in
                results.iter_mut().zip(cpu_results.iter_mut()).zip(timings)
            {
                wall.push(gbps(n, wall_s));
                cpu.push(cpu_s);
            }
        }
        if results[0].len() == config.reps {
            break;
        }
    }
    // Ratios are taken within each round, then the median: the machine is
    // shared, and a neighbour's load shifts whole rounds, not single runs.
    // CPU time does not count time spent preempted; it is summed over the
    // rounds because the kernel accounts it in 4 ms ticks.
    let ratio = |results: &[Vec<f64>], a: usize, b: usize| {
        median(
            results[a]
                .iter()
                .zip(&results[b])
                .map(|(x, y)| x / y)
                .collect(),
        )
    };
    let cpu_gbps: Vec<f64> = cpu_results
        .iter()
        .map(|seconds| gbps(bytes * seconds.len(), seconds.iter().sum()))
        .collect();
    let pairs = [
        ("encrypt: std EncryptReader / raw seal", 1, 0),
        ("encrypt: tokio AsyncEncryptReader / raw seal", 2, 0),
        ("encrypt: std EncryptWriter / raw seal", 3, 0),
        ("decrypt: std DecryptReader / raw copy+open", 6, 4),
        ("decrypt: tokio AsyncDecryptReader / raw copy+open", 7, 4),
        ("decrypt: std DecryptReader / raw open only (wall)", 6, 5),
    ];
    println!(
        "\n## Throughput, one core, 1 MiB chunks, {} rounds x {} MiB (GB/s; CPU: totals, wall: median)",
        config.reps, config.mib_per_rep
    );
    println!("{:<48} {:>8} {:>8}", "", "CPU time", "wall");
    for (index, name) in names.iter().enumerate() {
        let cpu = cpu_gbps[index];
        let wall = median(results[index].clone());
        println!("{name:<48} {cpu:>8.2} {wall:>8.2}");
    }
    println!("\n## Ratios (CPU: of totals over all rounds; wall: median of per-round ratios)");
    println!("{:<52} {:>8} {:>8}", "", "CPU time", "wall");
    for (name, a, b) in pairs {
        let cpu = cpu_gbps[a] / cpu_gbps[b];
        let wall = ratio(&results, a, b);
        println!("{name:<52} {cpu:>8.3} {wall:>8.3}");
    }
}

mod memory;
mod parallel;

use self::{
    memory::{memory, range},
    parallel::parallel,
};

fn main() {
    let config = config();
    let start = Instant::now();
    println!(
        "OSE1 benchmark ({}; backend: {})",
        if config.quick { "quick" } else { "full" },
        if cfg!(feature = "aws-lc") {
            "aws-lc-rs"
        } else {
            "ring"
        }
    );
    memory(&config);
    range(&config);
    throughput(&config);
    parallel(&config);
    println!("\ntotal {:.1} s", start.elapsed().as_secs_f64());
}
