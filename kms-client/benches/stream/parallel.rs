//! Two OSE1 streams encrypting at once on two threads, against one stream
//! alone, in the same round (issue 21: ≥ 1.8× on two cores).
//!
//! Wall: the pair's bytes per second over one stream's, median of the
//! per-round ratios. CPU time: the pair's bytes per CPU-second, times the
//! two streams, over one stream's: what two cores would give if neither
//! thread were preempted (a neighbour's load on this shared machine moves
//! the wall figure, not this one). Each thread reads its own CPU account.

use std::time::Instant;

use kms_client::{
    DataKey,
    stream::{ChunkSize, Encryptor, PartNumber},
};

use super::{BINDING, Clock, Config, FreeSource, MIB, drain_buf, median};

/// Encrypts `bytes` through one std `EncryptReader`: (wall, CPU) seconds.
fn one_stream(key: &DataKey, bytes: usize) -> (f64, f64) {
    let start = Clock::start();
    let encryptor =
        Encryptor::new(key, BINDING, PartNumber::SINGLE, ChunkSize::DEFAULT).expect("encryptor");
    drain_buf(encryptor.reader(FreeSource {
        remaining: bytes as u64,
    }))
    .expect("encrypt");
    start.elapsed()
}

pub(crate) fn parallel(config: &Config) {
    let key = DataKey::from_bytes([0x22; 32]);
    let bytes = config.mib_per_rep * MIB;
    let (mut wall_ratios, mut cpu_one, mut cpu_pair) = (Vec::new(), 0.0, 0.0);
    // The first round warms caches and frequency; it is not counted.
    for round in 0..=config.reps {
        let (wall_one, cpu) = one_stream(&key, bytes);
        let started = Instant::now();
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(|| one_stream(&key, bytes));
            let b = scope.spawn(|| one_stream(&key, bytes));
            (a.join().expect("stream a"), b.join().expect("stream b"))
        });
        let wall_pair = started.elapsed().as_secs_f64();
        if round == 0 {
            continue;
        }
        wall_ratios.push(2.0 * wall_one / wall_pair);
        cpu_one += cpu;
        cpu_pair += a.1 + b.1;
    }
    // Per CPU-second the pair moved twice the bytes: 2 × (2 / cpu_pair) ÷
    // (1 / cpu_one).
    let cpu_ratio = 2.0 * (2.0 * cpu_one / cpu_pair);
    println!(
        "\n## Two streams in parallel, two threads, {} rounds x {} MiB each",
        config.reps, config.mib_per_rep
    );
    println!("{:<52} {:>8} {:>8}", "", "CPU time", "wall");
    println!(
        "{:<52} {cpu_ratio:>8.3} {:>8.3}",
        "encrypt: two streams in parallel / one stream",
        median(wall_ratios)
    );
}
