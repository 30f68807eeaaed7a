//! `objstore`: the example object store from the command line. Each command
//! is one S3 request; SSE is asked for with the same headers S3 clients
//! send (`-H 'x-amz-server-side-encryption: aws:kms'`).
//!
//! ```text
//! objstore --kmsd unix:/run/kmsd/kmsd.sock --root /srv/objstore put photos cat.jpg ./cat.jpg -H 'x-amz-server-side-encryption: AES256'
//! objstore ... get photos cat.jpg --range 0-99 > part.bin
//! objstore ... rewrap --concurrency 16
//! ```

use std::{io::Write, path::PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use http::{HeaderMap, HeaderName, HeaderValue};
use kms_client::{ClientConfig, KmsClient, TlsSettings, rewrap::RewrapOptions, sse::Transport};
use kms_objstore::ObjectStore;

#[derive(Parser)]
#[command(about = "A minimal filesystem object store with S3 SSE through kmsd")]
struct Cli {
    /// kmsd's endpoint: unix:/path or https://host:port.
    #[arg(long, env = "KMSD_ENDPOINT")]
    kmsd: String,
    /// The CA of kmsd's certificate, for an https endpoint.
    #[arg(long)]
    kmsd_ca: Option<PathBuf>,
    /// Where objects are stored.
    #[arg(long)]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// PutObject from a file.
    Put {
        bucket: String,
        key: String,
        file: PathBuf,
        #[arg(short = 'H')]
        header: Vec<String>,
    },
    /// GetObject to stdout; `--range FIRST-LAST` as in HTTP (inclusive).
    Get {
        bucket: String,
        key: String,
        #[arg(long)]
        range: Option<String>,
        #[arg(short = 'H')]
        header: Vec<String>,
    },
    /// HeadObject: the size and SSE headers.
    Head {
        bucket: String,
        key: String,
        #[arg(short = 'H')]
        header: Vec<String>,
    },
    /// CopyObject.
    Copy {
        source_bucket: String,
        source_key: String,
        bucket: String,
        key: String,
        #[arg(short = 'H')]
        header: Vec<String>,
    },
    /// A whole multipart upload of a file, in parts of `--part-size` bytes.
    Multipart {
        bucket: String,
        key: String,
        file: PathBuf,
        #[arg(long, default_value_t = 5 << 20)]
        part_size: usize,
        #[arg(short = 'H')]
        header: Vec<String>,
    },
    /// PutBucketEncryption from an XML file.
    BucketEncryption { bucket: String, xml: PathBuf },
    /// Re-wraps every stored sealed key (after a key rotation, or to
    /// `--to-key`); prints progress and the checkpoint to resume after.
    Rewrap {
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long)]
        to_key: Option<String>,
        #[arg(long)]
        resume_after: Option<String>,
    },
}

fn headers(lines: &[String]) -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').context("a header is `name: value`")?;
        map.append(
            HeaderName::try_from(name.trim())?,
            HeaderValue::try_from(value.trim())?,
        );
    }
    Ok(map)
}

fn print_headers(headers: &[(&str, String)]) {
    for (name, value) in headers {
        eprintln!("{name}: {value}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = ClientConfig::new(cli.kmsd.parse()?);
    if let Some(ca) = &cli.kmsd_ca {
        config.tls = Some(TlsSettings::new(std::fs::read(ca)?));
    }
    let client = KmsClient::connect_with(config).await?;
    // Requests come from this machine's command line, never a network.
    let store = ObjectStore::new(cli.root, client, Transport::Secure);
    match cli.command {
        Command::Put {
            bucket,
            key,
            file,
            header,
        } => {
            let body = std::fs::read(file)?;
            print_headers(
                &store
                    .put_object(&bucket, &key, &headers(&header)?, &body)
                    .await?,
            );
        }
        Command::Get {
            bucket,
            key,
            range,
            header,
        } => {
            let range = range
                .map(|r| -> anyhow::Result<_> {
                    let (first, last) = r.split_once('-').context("--range FIRST-LAST")?;
                    Ok(first.parse::<u64>()?..last.parse::<u64>()? + 1)
                })
                .transpose()?;
            let object = store
                .get_object(&bucket, &key, &headers(&header)?, range)
                .await?;
            print_headers(&object.headers);
            std::io::stdout().write_all(&object.body)?;
        }
        Command::Head {
            bucket,
            key,
            header,
        } => {
            let (size, sse) = store.head_object(&bucket, &key, &headers(&header)?)?;
            println!("content-length: {size}");
            print_headers(&sse);
        }
        Command::Copy {
            source_bucket,
            source_key,
            bucket,
            key,
            header,
        } => {
            let sse = store
                .copy_object(
                    (&source_bucket, &source_key),
                    (&bucket, &key),
                    &headers(&header)?,
                )
                .await?;
            print_headers(&sse);
        }
        Command::Multipart {
            bucket,
            key,
            file,
            part_size,
            header,
        } => {
            let headers = headers(&header)?;
            let body = std::fs::read(file)?;
            let (id, sse) = store
                .create_multipart_upload(&bucket, &key, &headers)
                .await?;
            print_headers(&sse);
            let mut parts = Vec::new();
            for (i, part) in body.chunks(part_size.max(1)).enumerate() {
                let n = u32::try_from(i + 1)?;
                store.upload_part(&id, n, &headers, part).await?;
                parts.push(n);
            }
            // SSE-C: the key is needed here too (it keys the layout tag).
            let customer: HeaderMap = headers
                .iter()
                .filter(|(name, _)| {
                    name.as_str()
                        .starts_with("x-amz-server-side-encryption-customer-")
                })
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            print_headers(
                &store
                    .complete_multipart_upload(&id, &parts, &customer)
                    .await?,
            );
        }
        Command::BucketEncryption { bucket, xml } => {
            store.put_bucket_encryption(&bucket, &std::fs::read_to_string(xml)?)?;
        }
        Command::Rewrap {
            concurrency,
            to_key,
            resume_after,
        } => {
            let options = RewrapOptions {
                concurrency,
                destination_key_id: to_key,
            };
            let summary = store
                .rewrap(options, resume_after.as_deref(), |p| {
                    if p.done() % 100 == 0 {
                        eprintln!("rewrap: {} done, checkpoint {:?}", p.done(), p.checkpoint);
                    }
                })
                .await?;
            for failure in &summary.failures {
                eprintln!("rewrap failed: {failure}");
            }
            let p = &summary.progress;
            println!(
                "objects {} sealed_keys {} rewrapped {} already_current {} failed {} interrupted {}",
                summary.objects,
                summary.sealed_keys,
                p.rewrapped,
                p.already_current,
                p.failed,
                summary.interrupted
            );
            if let Some(checkpoint) = &p.checkpoint {
                println!("checkpoint {checkpoint}");
            }
            anyhow::ensure!(
                p.failed == 0 && !summary.interrupted,
                "rewrap incomplete; resume after the checkpoint"
            );
        }
    }
    Ok(())
}
