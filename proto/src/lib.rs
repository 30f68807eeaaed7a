//! Generated types, clients and servers of the kmsd `kms.v1` gRPC API.
//!
//! The `.proto` files live in `proto/kms/v1/`; `docs/api.md` documents every
//! RPC, field and error.
//!
//! The bottom of the workspace (README.md, "Repository"): `kms-proto`
//! (this crate), then `kms-core` (what both sides share), `kms-client`
//! (the storage server's library) and `kmsd` (the daemon) build on it.
#![forbid(unsafe_code)]

/// The `kms.v1` package.
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all
)]
pub mod v1 {
    tonic::include_proto!("kms.v1");

    /// The encoded `FileDescriptorSet` of the package, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("kms_v1_descriptor");
}
