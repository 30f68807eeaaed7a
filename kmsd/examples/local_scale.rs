//! How the local backend's costs grow with the number of keys (issue 21):
//! see `kmsd/src/backend/local/scale.rs`.
//!
//! ```sh
//! cargo run --release -p kmsd --example local_scale -- 100000 /dev/shm/kmsd-scale
//! ```
//!
//! Arguments: the key count (default 100000), an empty directory (created
//! with mode 0700; default a new one under /dev/shm), and the number of
//! operations timed per figure (default 500).

use std::os::unix::fs::DirBuilderExt as _;

use anyhow::Context as _;
use kmsd::backend::local::scale;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let keys: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let dir = args.next().map_or_else(
        || std::path::PathBuf::from(format!("/dev/shm/kmsd-scale-{}", std::process::id())),
        std::path::PathBuf::from,
    );
    let sample: usize = args.next().map_or(Ok(500), |a| a.parse())?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let figures = scale::measure(&dir, keys, sample).await?;
    println!("dir {}", dir.display());
    println!(
        "{:>8}  {:>10}  {:>14}  {:>10}  {:>18}",
        "keys", "create µs", "create CPU µs", "rotate µs", "GDK+decrypt µs"
    );
    for p in [figures.small, figures.large] {
        println!(
            "{:>8}  {:>10.1}  {:>14.1}  {:>10.1}  {:>18.1}",
            p.keys, p.create_us, p.create_cpu_us, p.rotate_us, p.read_us
        );
    }
    let ratio = |a: f64, b: f64| a / b;
    println!(
        "large/small: create {:.2}x, create CPU {:.2}x, rotate {:.2}x, read {:.2}x",
        ratio(figures.large.create_us, figures.small.create_us),
        ratio(figures.large.create_cpu_us, figures.small.create_cpu_us),
        ratio(figures.large.rotate_us, figures.small.rotate_us),
        ratio(figures.large.read_us, figures.small.read_us),
    );
    println!(
        "reopen of {} keys: {:.3} s",
        figures.large.keys, figures.reopen_s
    );
    Ok(())
}
