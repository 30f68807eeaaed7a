//! The AWS CLI (v1, from PyPI): `aws s3 cp` splits large files into
//! multipart uploads and downloads them with parallel range GETs, and
//! copies server-side with UploadPartCopy.

use super::*;

struct Cli<'a> {
    gateway: &'a Gateway,
    dir: tempfile::TempDir,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Output {
        aws_command(venv_tool("aws"), self.dir.path())
            .arg("--endpoint-url")
            .arg(self.gateway.endpoint())
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("aws runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        check(&output, &format!("aws {}", args.join(" ")), self.gateway);
        String::from_utf8(output.stdout).unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

#[tokio::test]
async fn aws_cli_copies_large_files_in_and_out() {
    let (kmsd, _) = start_kmsd().await;
    let root = private_dir();
    let gateway = Gateway::start(&kmsd, root.path(), &[]);
    let cli = Cli {
        gateway: &gateway,
        dir: private_dir(),
    };
    // 9 MiB + 3: above the CLI's 8 MiB multipart threshold.
    let marker = b"PLAINTEXT-cli-";
    let data: Vec<u8> = marker
        .iter()
        .copied()
        .cycle()
        .take(9 * 1024 * 1024 + 3)
        .collect();
    fs::write(cli.path("big"), &data).unwrap();
    fs::write(cli.path("key.bin"), [7u8; 32]).unwrap();
    let ssec = ["--sse-c", "AES256", "--sse-c-key", "fileb://key.bin"];

    cli.ok(&["s3", "mb", "s3://cli"]);
    cli.ok(&[
        "s3",
        "cp",
        "big",
        "s3://cli/kms",
        "--sse",
        "aws:kms",
        "--sse-kms-key-id",
        "app-key",
    ]);
    cli.ok(&[&["s3", "cp", "big", "s3://cli/c"][..], &ssec].concat());

    // Downloads (parallel ranged GETs) return the plaintext.
    cli.ok(&["s3", "cp", "s3://cli/kms", "kms.out"]);
    assert!(fs::read(cli.path("kms.out")).unwrap() == data);
    cli.ok(&[&["s3", "cp", "s3://cli/c", "c.out"][..], &ssec].concat());
    assert!(fs::read(cli.path("c.out")).unwrap() == data);

    // s3api shows the encryption; SSE-C needs the key, even for HEAD.
    let head: serde_json::Value =
        serde_json::from_str(&cli.ok(&["s3api", "head-object", "--bucket", "cli", "--key", "kms"]))
            .unwrap();
    assert_eq!(head["ServerSideEncryption"], "aws:kms");
    assert_eq!(head["SSEKMSKeyId"], "app-key");
    assert_eq!(head["ContentLength"], data.len());
    let refused = cli.run(&["s3api", "head-object", "--bucket", "cli", "--key", "c"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("(400)"),
        "{refused:?}"
    );
    let ssec_api = [
        "--sse-customer-algorithm",
        "AES256",
        "--sse-customer-key",
        "fileb://key.bin",
    ];
    let head: serde_json::Value = serde_json::from_str(
        &cli.ok(&[
            &["s3api", "head-object", "--bucket", "cli", "--key", "c"][..],
            &ssec_api,
        ]
        .concat()),
    )
    .unwrap();
    assert_eq!(head["SSECustomerAlgorithm"], "AES256");
    cli.ok(&[
        &[
            "s3api",
            "get-object",
            "--bucket",
            "cli",
            "--key",
            "c",
            "--range",
            "bytes=8388600-8388615",
        ][..],
        &ssec_api,
        &["range.out"],
    ]
    .concat());
    assert_eq!(
        fs::read(cli.path("range.out")).unwrap(),
        &data[8388600..8388616]
    );

    // A server-side copy of an SSE-C object into SSE-S3 (UploadPartCopy
    // for a file this large).
    cli.ok(&[
        "s3",
        "cp",
        "s3://cli/c",
        "s3://cli/copy",
        "--sse",
        "AES256",
        "--sse-c-copy-source",
        "AES256",
        "--sse-c-copy-source-key",
        "fileb://key.bin",
    ]);
    cli.ok(&["s3", "cp", "s3://cli/copy", "copy.out"]);
    assert!(fs::read(cli.path("copy.out")).unwrap() == data);

    // Listings show plaintext sizes; the disk holds no plaintext.
    let listing = cli.ok(&["s3", "ls", "s3://cli/"]);
    assert!(listing.contains(&data.len().to_string()), "{listing}");
    assert!(!on_disk(root.path(), marker));
}
