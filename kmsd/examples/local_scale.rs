//! How the local backend's costs grow with the number of keys (issue 21):
//! see `kmsd/src/backend/local/scale.rs`.
//!
//! ```sh
//! local_scale [KEYS] [DIR] [SAMPLE]   # the whole measurement
//! local_scale populate DIR KEYS       # only fill DIR up to KEYS keys
//! local_scale open DIR                # only open DIR: start-up figures
//! ```
//!
//! The whole measurement takes the key count (default 100000), an empty
//! directory (created with mode 0700; default a new one under /dev/shm),
//! and the number of operations timed per figure (default 500). Each mode
//! prints a table, then its figures as one JSON object on the last line.

use std::{os::unix::fs::DirBuilderExt as _, path::PathBuf};

use anyhow::Context as _;
use kmsd::backend::local::scale::{self, OpenFigures, PAGE};

fn make_dir(dir: &PathBuf) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn print_open(what: &str, f: &OpenFigures) {
    println!(
        "open {what} ({} keys): {:.3} s, VmRSS {} KiB, VmHWM {} KiB; first use {:.1} µs, warm use {:.1} µs",
        f.keys, f.open_s, f.rss_kib, f.hwm_kib, f.first_use_us, f.warm_use_us
    );
    println!(
        "  ListKeys: first page of {PAGE} {:.2} ms, every page {:.1} ms; then VmRSS {} KiB, VmHWM {} KiB",
        f.first_page_ms, f.full_list_ms, f.rss_after_list_kib, f.hwm_after_list_kib
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("open") => {
            let dir = PathBuf::from(args.get(1).context("local_scale open DIR")?);
            let figures = scale::open_figures(&dir).await?;
            print_open(&dir.display().to_string(), &figures);
            println!("{}", serde_json::to_string(&figures)?);
            return Ok(());
        }
        Some("populate") => {
            let dir = PathBuf::from(args.get(1).context("local_scale populate DIR KEYS")?);
            let keys: usize = args
                .get(2)
                .context("local_scale populate DIR KEYS")?
                .parse()?;
            make_dir(&dir)?;
            let started = std::time::Instant::now();
            let made = scale::populate(&dir, keys).await?;
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "populated {} with {made} keys in {seconds:.1} s",
                dir.display()
            );
            println!(
                "{}",
                serde_json::json!({ "keys": made, "seconds": seconds })
            );
            return Ok(());
        }
        _ => {}
    }
    let mut args = args.into_iter();
    let keys: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let dir = args.next().map_or_else(
        || PathBuf::from(format!("/dev/shm/kmsd-scale-{}", std::process::id())),
        PathBuf::from,
    );
    let sample: usize = args.next().map_or(Ok(500), |a| a.parse())?;
    make_dir(&dir)?;
    let figures = scale::measure(&dir, keys, sample).await?;
    println!("dir {}", dir.display());
    println!(
        "{:>8}  {:>10}  {:>14}  {:>10}  {:>18}  {:>10}  {:>16}  {:>14}",
        "keys",
        "create µs",
        "create CPU µs",
        "rotate µs",
        "GDK+decrypt µs",
        "creates/s",
        "creates/s+load",
        "reads/s+load"
    );
    for p in [figures.small, figures.large] {
        println!(
            "{:>8}  {:>10.1}  {:>14.1}  {:>10.1}  {:>18.1}  {:>10.0}  {:>16.0}  {:>14.0}",
            p.keys,
            p.create_us,
            p.create_cpu_us,
            p.rotate_us,
            p.read_us,
            p.creates_per_s,
            p.creates_per_s_loaded,
            p.reads_per_s_loaded
        );
    }
    let (l, s) = (figures.large, figures.small);
    println!(
        "large/small: create {:.2}x, create CPU {:.2}x, rotate {:.2}x, read {:.2}x",
        l.create_us / s.create_us,
        l.create_cpu_us / s.create_cpu_us,
        l.rotate_us / s.rotate_us,
        l.read_us / s.read_us,
    );
    print_open("again, same process", &figures.reopen);
    print_open("of one key, same process", &figures.one_key);
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}
