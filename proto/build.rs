//! Generates the kms.v1 Rust code with protox (a pure-Rust protobuf
//! compiler), so building needs no system `protoc`.

use std::{env, error::Error, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let files = ["kms/v1/kms.proto", "kms/v1/admin.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // Server reflection serves this set, so tools like grpcurl work without
    // a local copy of the .proto files.
    std::fs::write(
        out.join("kms_v1_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        // Ordered maps: encryption contexts are canonicalised by key order.
        .btree_map(".")
        .compile_fds(descriptors)?;
    Ok(())
}
