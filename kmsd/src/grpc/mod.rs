//! The gRPC front end: one tonic service per `kms.v1` service, plus health
//! (public, for probes) and reflection (only for callers the policy allows
//! something).

mod admin;
mod convert;
mod data_plane;
mod identity;
mod key_admin;
mod limits;
mod reflection;

use kms_proto::v1::{
    FILE_DESCRIPTOR_SET, admin_server::AdminServer, key_admin_server::KeyAdminServer,
    key_management_server::KeyManagementServer,
};
use tonic::service::Routes;

pub use self::{
    admin::AdminService, data_plane::DataPlane, key_admin::KeyAdminService,
    limits::oversized_as_resource_exhausted,
};
use crate::service::Kms;

/// The largest request message accepted. The largest legitimate request,
/// ReEncrypt with an 8 KiB blob and two full contexts, is under 32 KiB.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Every gRPC service kmsd serves, ready to mount on a listener.
pub fn routes(
    kms: &Kms,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> Result<Routes, tonic_reflection::server::Error> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let mut routes = Routes::builder();
    routes
        .add_service(
            KeyManagementServer::new(DataPlane::new(kms.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            KeyAdminServer::new(KeyAdminService::new(kms.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            AdminServer::new(AdminService::new(kms.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(health)
        .add_service(reflection::Gated::new(reflection, kms.clone()));
    Ok(routes.routes())
}
