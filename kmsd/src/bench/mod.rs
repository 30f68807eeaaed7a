//! `kmsd bench`: drives a running kmsd (or OpenBao's Transit directly, for
//! comparison) with N concurrent callers over M connections for a duration,
//! and reports requests per second, latency percentiles and errors
//! (docs/performance.md).
//!
//! Latencies are recorded per request, exactly (no histogram buckets), and
//! sorted once at the end; warm-up requests are not counted.

mod openbao;
mod report;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use kms_client::{EncryptionContext, KmsClient};

pub use self::{openbao::OpenBaoTarget, report::Report};

/// What each caller does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// GenerateDataKey.
    Gdk,
    /// Decrypt of pre-generated blobs.
    Decrypt,
    /// Half GenerateDataKey, half Decrypt.
    Mix,
}

/// How hard and how long.
#[derive(Debug, Clone)]
pub struct Load {
    /// Concurrent callers.
    pub concurrency: usize,
    /// Connections (HTTP/2 channels) the callers share round-robin.
    pub connections: usize,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time first.
    pub warmup: Duration,
}

/// Where the load goes.
#[derive(Debug)]
pub enum Target {
    /// kmsd, through kms-client.
    Kmsd {
        /// One client per connection.
        clients: Vec<KmsClient>,
        /// The key (default key when `None`).
        key_id: Option<String>,
        /// The workload.
        workload: Workload,
    },
    /// OpenBao's `transit/datakey/plaintext/<key>` directly.
    OpenBao(Box<OpenBaoTarget>),
}

struct KmsdCaller {
    client: KmsClient,
    key_id: Option<String>,
    workload: Workload,
    blobs: Arc<Vec<Vec<u8>>>,
    context: EncryptionContext,
    n: usize,
}

enum Caller {
    Kmsd(Box<KmsdCaller>),
    OpenBao(Box<OpenBaoTarget>),
}

impl Caller {
    async fn call(&mut self) -> bool {
        match self {
            Caller::Kmsd(caller) => {
                let KmsdCaller {
                    client,
                    key_id,
                    workload,
                    blobs,
                    context,
                    n,
                } = caller.as_mut();
                *n += 1;
                let decrypt = match workload {
                    Workload::Gdk => false,
                    Workload::Decrypt => true,
                    Workload::Mix => *n % 2 == 0,
                };
                if decrypt {
                    let blob = &blobs[*n % blobs.len()];
                    client.decrypt(blob, context, None).await.is_ok()
                } else {
                    client
                        .generate_data_key(key_id.as_deref(), context)
                        .await
                        .is_ok()
                }
            }
            Caller::OpenBao(target) => target.datakey().await,
        }
    }
}

/// The context every benchmark request carries (a typical object's).
pub fn bench_context() -> EncryptionContext {
    EncryptionContext::from([
        ("bucket".to_owned(), "bench".to_owned()),
        ("object".to_owned(), "object-0001".to_owned()),
    ])
}

/// Runs the load and reports.
pub async fn run(target: Target, load: &Load) -> Result<Report, kms_client::Error> {
    let context = bench_context();
    let mut callers = Vec::with_capacity(load.concurrency);
    match target {
        Target::Kmsd {
            clients,
            key_id,
            workload,
        } => {
            let blobs = if workload == Workload::Gdk {
                vec![Vec::new()]
            } else {
                let mut blobs = Vec::with_capacity(1000);
                for _ in 0..1000 {
                    blobs.push(
                        clients[0]
                            .generate_data_key(key_id.as_deref(), &context)
                            .await?
                            .blob,
                    );
                }
                blobs
            };
            let blobs = Arc::new(blobs);
            for i in 0..load.concurrency {
                callers.push(Caller::Kmsd(Box::new(KmsdCaller {
                    client: clients[i % clients.len()].clone(),
                    key_id: key_id.clone(),
                    workload,
                    blobs: Arc::clone(&blobs),
                    context: context.clone(),
                    n: i,
                })));
            }
        }
        Target::OpenBao(target) => {
            for _ in 0..load.concurrency {
                callers.push(Caller::OpenBao(target.clone()));
            }
        }
    }

    let start = Instant::now();
    let measure_from = start + load.warmup;
    let end = measure_from + load.duration;
    let mut tasks = Vec::with_capacity(callers.len());
    for mut caller in callers {
        tasks.push(tokio::spawn(async move {
            let mut latencies_ns = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            let mut warmup = 0u64;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let ok = caller.call().await;
                if sent >= measure_from {
                    if ok {
                        let ns = sent.elapsed().as_nanos();
                        latencies_ns.push(u64::try_from(ns).unwrap_or(u64::MAX));
                    } else {
                        errors += 1;
                    }
                } else {
                    warmup += 1;
                }
            }
            (latencies_ns, errors, warmup)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut warmup = 0;
    for task in tasks {
        if let Ok((mut l, e, w)) = task.await {
            latencies.append(&mut l);
            errors += e;
            warmup += w;
        }
    }
    Ok(Report::new(latencies, errors, warmup, load))
}
