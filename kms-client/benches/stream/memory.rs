//! Peak memory while streaming a large object, and bytes read for a
//! 1-byte range.

use super::*;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| {
            line.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0), and returns the RSS.
fn reset_peak() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kib("VmRSS:")
}

pub(super) fn memory(config: &Config) {
    let key = DataKey::from_bytes([0x55; 32]);
    let total = config.stream_bytes;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    println!(
        "\n## Peak memory streaming {} GiB (encrypt then decrypt, chained)",
        total as f64 / (1u64 << 30) as f64
    );
    let layout_for = |encryptor: &Encryptor| {
        let info = PartInfo {
            part: PartNumber::SINGLE,
            chunk_size: ChunkSize::DEFAULT,
            plaintext_size: total,
            id: encryptor.part_id(),
        };
        Layout::seal(&key, BINDING, [info]).expect("layout")
    };
    type Pipeline<'a> = (&'a str, Box<dyn Fn() -> u64 + 'a>);
    let pipelines: Vec<Pipeline> = vec![
        (
            "std EncryptReader -> DecryptReader",
            Box::new(|| {
                let encryptor =
                    Encryptor::new(&key, BINDING, PartNumber::SINGLE, ChunkSize::DEFAULT)
                        .expect("encryptor");
                let decryptor =
                    Decryptor::new(&key, BINDING, &layout_for(&encryptor)).expect("decryptor");
                drain_buf(decryptor.reader(encryptor.reader(FreeSource { remaining: total })))
                    .expect("stream")
            }),
        ),
        (
            "std EncryptWriter -> DecryptWriter",
            Box::new(|| {
                let encryptor =
                    Encryptor::new(&key, BINDING, PartNumber::SINGLE, ChunkSize::DEFAULT)
                        .expect("encryptor");
                let decryptor =
                    Decryptor::new(&key, BINDING, &layout_for(&encryptor)).expect("decryptor");
                let mut writer = encryptor.writer(decryptor.writer(io::sink()));
                let block = vec![7u8; 256 << 10];
                for _ in 0..total / block.len() as u64 {
                    writer.write_all(&block).expect("write");
                }
                let (inner, info) = writer.finish().expect("finish");
                inner.finish().expect("complete");
                info.plaintext_size
            }),
        ),
        (
            "tokio AsyncEncryptReader -> AsyncDecryptReader",
            Box::new(|| {
                let encryptor =
                    Encryptor::new(&key, BINDING, PartNumber::SINGLE, ChunkSize::DEFAULT)
                        .expect("encryptor");
                let decryptor =
                    Decryptor::new(&key, BINDING, &layout_for(&encryptor)).expect("decryptor");
                let reader =
                    decryptor.async_reader(encryptor.async_reader(FreeSource { remaining: total }));
                runtime.block_on(drain_async(reader)).expect("stream")
            }),
        ),
    ];
    for (name, run) in pipelines {
        let baseline = reset_peak();
        let start = Instant::now();
        let bytes = run();
        let seconds = start.elapsed().as_secs_f64();
        assert_eq!(bytes, total);
        let peak = status_kib("VmHWM:");
        println!(
            "{name:<48} peak {:>6.2} MiB above a {:.1} MiB baseline ({:.2} GB/s for both directions)",
            peak.saturating_sub(baseline) as f64 / 1024.0,
            baseline as f64 / 1024.0,
            gbps(bytes as usize, seconds),
        );
    }
}

pub(super) fn range(config: &Config) {
    let key = DataKey::from_bytes([0x66; 32]);
    let size = config.range_object;
    let offset = size / 3 * 2 + 12_345;
    let encryptor =
        Encryptor::new(&key, BINDING, PartNumber::SINGLE, ChunkSize::DEFAULT).expect("encryptor");
    let info = PartInfo {
        part: PartNumber::SINGLE,
        chunk_size: ChunkSize::DEFAULT,
        plaintext_size: size,
        id: encryptor.part_id(),
    };
    let layout = Layout::seal(&key, BINDING, [info]).expect("layout");
    let plan = layout.plan_range(offset..offset + 1).expect("plan");

    // Encrypt the whole object once, keeping only the planned bytes.
    let mut reader = encryptor.reader(PatternSource {
        offset: 0,
        end: size,
    });
    let mut kept = Vec::new();
    let mut position = 0u64;
    loop {
        let available = reader.fill_buf().expect("encrypt");
        if available.is_empty() {
            break;
        }
        let end = position + available.len() as u64;
        for r in plan.fetch_ranges() {
            let (from, to) = (r.start.max(position), r.end.min(end));
            if from < to {
                kept.extend_from_slice(
                    &available[(from - position) as usize..(to - position) as usize],
                );
            }
        }
        let n = available.len();
        reader.consume(n);
        position = end;
    }
    assert_eq!(position, layout.stored_size());

    let decryptor = Decryptor::new(&key, BINDING, &layout).expect("decryptor");
    let mut source = Counting {
        inner: &kept[..],
        count: 0,
    };
    let mut out = Vec::new();
    decryptor
        .range_reader(&plan, &mut source)
        .expect("plan")
        .read_to_end(&mut out)
        .expect("range read");
    assert_eq!(out, [pattern(offset)]);
    println!(
        "\n## A 1-byte range of a {} MiB object (byte {offset})",
        size >> 20
    );
    println!("fetch ranges: {:?}", plan.fetch_ranges());
    println!(
        "planned {} bytes, read {} bytes (one stored chunk is {} bytes, the header 76)",
        plan.fetch_len(),
        source.count,
        MIB + 16
    );
}
