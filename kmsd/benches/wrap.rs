//! The cryptography of one GenerateDataKey on the local backend, against
//! the least any KMS must do, measured in the same run (docs/performance.md,
//! issue 10's "crypto per request ≤ 1 µs").
//!
//! - kmsd: one `getrandom` for the data key and the wrap seed (64 bytes),
//!   then `WrappingKey::seal_append`: HKDF-SHA256 of a per-message key from
//!   the seed, and AES-256-GCM over the 32-byte data key with the blob's
//!   associated data.
//! - baseline: one `getrandom` for the data key and a nonce (44 bytes), and
//!   AES-256-GCM over the data key under one fixed `LessSafeKey` (what
//!   `kmsd/examples/grpc_floor.rs` does; it is not safe past 2^32 wraps,
//!   which is why kmsd derives a key per wrap).
//!
//! ```sh
//! cargo bench -p kmsd --bench wrap
//! KMSD_BENCH_QUICK=1 cargo bench -p kmsd --bench wrap
//! ```
//!
//! Rounds alternate between the two, and the figure printed is the median
//! round, so a neighbour's load shifts both sides alike.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{hint::black_box, time::Instant};

use kms_core::crypto::{KEY_LEN, SEED_LEN, WrappingKey, fill_random};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// A blob header and a context digest's worth of associated data.
const AAD: &[u8] = &[0x42; 64];

fn kmsd_wrap(key: &WrappingKey, out: &mut Vec<u8>) {
    let mut random = [0u8; KEY_LEN + SEED_LEN];
    fill_random(&mut random).unwrap();
    let (dek, seed) = random.split_at(KEY_LEN);
    let seed: &[u8; SEED_LEN] = seed.try_into().unwrap();
    out.clear();
    key.seal_append(seed, AAD, dek, out).unwrap();
}

fn baseline_wrap(key: &LessSafeKey, out: &mut Vec<u8>) {
    let mut random = [0u8; KEY_LEN + NONCE_LEN];
    fill_random(&mut random).unwrap();
    let (dek, nonce) = random.split_at(KEY_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).unwrap();
    out.clear();
    out.extend_from_slice(dek);
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::from(AAD), out)
        .unwrap();
    out.extend_from_slice(tag.as_ref());
}

fn ns_per_op(iterations: u32, mut op: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..iterations {
        op();
    }
    started.elapsed().as_nanos() as f64 / f64::from(iterations)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let quick = std::env::var_os("KMSD_BENCH_QUICK").is_some();
    let (rounds, iterations) = if quick { (5, 20_000) } else { (21, 100_000) };
    let kmsd_key = WrappingKey::new(&[7; KEY_LEN], b"kmsd/bench/wrap");
    let baseline_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; KEY_LEN]).unwrap());
    let mut out = Vec::with_capacity(128);
    let (mut kmsd, mut baseline, mut random) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        kmsd.push(ns_per_op(iterations, || {
            kmsd_wrap(&kmsd_key, &mut out);
            black_box(&out);
        }));
        baseline.push(ns_per_op(iterations, || {
            baseline_wrap(&baseline_key, &mut out);
            black_box(&out);
        }));
        random.push(ns_per_op(iterations, || {
            let mut bytes = [0u8; KEY_LEN + SEED_LEN];
            fill_random(&mut bytes).unwrap();
            black_box(&bytes);
        }));
    }
    let (kmsd, baseline, random) = (median(kmsd), median(baseline), median(random));
    println!("wrap bench: {rounds} rounds x {iterations} wraps, medians of rounds");
    println!("kmsd wrap (getrandom 64 B + HKDF + AES-256-GCM)   {kmsd:8.0} ns");
    println!("baseline (getrandom 44 B + AES-256-GCM, one key)  {baseline:8.0} ns");
    println!("  of which getrandom of 64 bytes                  {random:8.0} ns");
    println!(
        "ratio kmsd / baseline                             {:8.2}",
        kmsd / baseline
    );
}
