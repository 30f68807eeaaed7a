//! Who is calling and what they ask: the context every service call carries
//! for policy, audit and metrics.

use std::fmt;

/// The authenticated identity of a caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A peer on the unix socket, identified by its kernel credentials.
    UnixPeer {
        /// The peer's user id.
        uid: u32,
        /// The peer's group id.
        gid: u32,
    },
    /// A TLS client, identified by the SHA-256 of its certificate's
    /// SubjectPublicKeyInfo (hex), and the name mapped to it, if any.
    Certificate {
        /// Hex SHA-256 of the SPKI.
        spki_sha256: String,
        /// The configured name for this key, if any.
        name: Option<String>,
    },
    /// A caller of the REST admin API, by access key.
    AdminKey(String),
    /// A caller on a listener configured without authentication.
    Anonymous,
    /// kmsd itself (the self-probe, startup).
    Internal,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::UnixPeer { uid, gid } => write!(f, "unix:uid={uid},gid={gid}"),
            Identity::Certificate {
                name: Some(name), ..
            } => write!(f, "cert:{name}"),
            Identity::Certificate { spki_sha256, .. } => write!(f, "cert:sha256:{spki_sha256}"),
            Identity::AdminKey(key) => write!(f, "access-key:{key}"),
            Identity::Anonymous => f.write_str("anonymous"),
            Identity::Internal => f.write_str("kmsd"),
        }
    }
}

/// What a request does. The names are the gRPC method names, and the only
/// values metric and audit labels take, so label sets stay bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// KeyManagement.GenerateDataKey
    GenerateDataKey,
    /// KeyManagement.GenerateDataKeyWithoutPlaintext
    GenerateDataKeyWithoutPlaintext,
    /// KeyManagement.Encrypt
    Encrypt,
    /// KeyManagement.Decrypt
    Decrypt,
    /// KeyManagement.ReEncrypt
    ReEncrypt,
    /// KeyAdmin.CreateKey
    CreateKey,
    /// KeyAdmin.DescribeKey
    DescribeKey,
    /// KeyAdmin.ListKeys
    ListKeys,
    /// KeyAdmin.RotateKey
    RotateKey,
    /// KeyAdmin.EnableKey
    EnableKey,
    /// KeyAdmin.DisableKey
    DisableKey,
    /// KeyAdmin.ScheduleKeyDeletion
    ScheduleKeyDeletion,
    /// KeyAdmin.CancelKeyDeletion
    CancelKeyDeletion,
    /// KeyAdmin.UpdateKeyDescription
    UpdateKeyDescription,
    /// KeyAdmin.TagKey
    TagKey,
    /// KeyAdmin.UntagKey
    UntagKey,
    /// KeyAdmin.CreateAlias
    CreateAlias,
    /// KeyAdmin.UpdateAlias
    UpdateAlias,
    /// KeyAdmin.DeleteAlias
    DeleteAlias,
    /// KeyAdmin.ListAliases
    ListAliases,
    /// Admin.Status
    Status,
    /// Admin.Configure
    Configure,
    /// Admin.Start
    Start,
    /// Admin.Stop
    Stop,
    /// Admin.Reconfigure
    Reconfigure,
    /// Admin.ClearCache
    ClearCache,
    /// Admin.Reload
    Reload,
    /// Admin: back up every key (REST `POST /kms/backup`).
    Backup,
    /// Admin: restore keys from a backup (REST `POST /kms/restore`).
    Restore,
    // Automatic rotation (issue 20 item 3).
    /// KeyAdmin.EnableKeyRotation
    EnableKeyRotation,
    /// KeyAdmin.DisableKeyRotation
    DisableKeyRotation,
    /// KeyAdmin.GetKeyRotationStatus
    GetKeyRotationStatus,
    // Import of key material (bring your own key).
    /// KeyAdmin.GetParametersForImport
    GetParametersForImport,
    /// KeyAdmin.ImportKey
    ImportKey,
}

/// Which part of the API an operation belongs to; policies grant them
/// separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Plane {
    /// KeyManagement.
    Data,
    /// KeyAdmin.
    Keys,
    /// Admin (runtime lifecycle).
    Admin,
}

impl Operation {
    /// Every operation, in a fixed order (the index of [`Self::index`]).
    pub const ALL: [Operation; 34] = [
        Operation::GenerateDataKey,
        Operation::GenerateDataKeyWithoutPlaintext,
        Operation::Encrypt,
        Operation::Decrypt,
        Operation::ReEncrypt,
        Operation::CreateKey,
        Operation::DescribeKey,
        Operation::ListKeys,
        Operation::RotateKey,
        Operation::EnableKey,
        Operation::DisableKey,
        Operation::ScheduleKeyDeletion,
        Operation::CancelKeyDeletion,
        Operation::UpdateKeyDescription,
        Operation::TagKey,
        Operation::UntagKey,
        Operation::CreateAlias,
        Operation::UpdateAlias,
        Operation::DeleteAlias,
        Operation::ListAliases,
        Operation::Status,
        Operation::Configure,
        Operation::Start,
        Operation::Stop,
        Operation::Reconfigure,
        Operation::ClearCache,
        Operation::Reload,
        Operation::Backup,
        Operation::Restore,
        // Automatic rotation.
        Operation::EnableKeyRotation,
        Operation::DisableKeyRotation,
        Operation::GetKeyRotationStatus,
        // Import of key material.
        Operation::GetParametersForImport,
        Operation::ImportKey,
    ];

    /// The position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The gRPC method name.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::GenerateDataKey => "GenerateDataKey",
            Operation::GenerateDataKeyWithoutPlaintext => "GenerateDataKeyWithoutPlaintext",
            Operation::Encrypt => "Encrypt",
            Operation::Decrypt => "Decrypt",
            Operation::ReEncrypt => "ReEncrypt",
            Operation::CreateKey => "CreateKey",
            Operation::DescribeKey => "DescribeKey",
            Operation::ListKeys => "ListKeys",
            Operation::RotateKey => "RotateKey",
            Operation::EnableKey => "EnableKey",
            Operation::DisableKey => "DisableKey",
            Operation::ScheduleKeyDeletion => "ScheduleKeyDeletion",
            Operation::CancelKeyDeletion => "CancelKeyDeletion",
            Operation::UpdateKeyDescription => "UpdateKeyDescription",
            Operation::TagKey => "TagKey",
            Operation::UntagKey => "UntagKey",
            Operation::CreateAlias => "CreateAlias",
            Operation::UpdateAlias => "UpdateAlias",
            Operation::DeleteAlias => "DeleteAlias",
            Operation::ListAliases => "ListAliases",
            Operation::Status => "Status",
            Operation::Configure => "Configure",
            Operation::Start => "Start",
            Operation::Stop => "Stop",
            Operation::Reconfigure => "Reconfigure",
            Operation::ClearCache => "ClearCache",
            Operation::Reload => "Reload",
            Operation::Backup => "Backup",
            Operation::Restore => "Restore",
            Operation::EnableKeyRotation => "EnableKeyRotation",
            Operation::DisableKeyRotation => "DisableKeyRotation",
            Operation::GetKeyRotationStatus => "GetKeyRotationStatus",
            Operation::GetParametersForImport => "GetParametersForImport",
            Operation::ImportKey => "ImportKey",
        }
    }

    /// The plane the operation belongs to.
    pub fn plane(self) -> Plane {
        match self {
            Operation::GenerateDataKey
            | Operation::GenerateDataKeyWithoutPlaintext
            | Operation::Encrypt
            | Operation::Decrypt
            | Operation::ReEncrypt => Plane::Data,
            Operation::CreateKey
            | Operation::DescribeKey
            | Operation::ListKeys
            | Operation::RotateKey
            | Operation::EnableKey
            | Operation::DisableKey
            | Operation::ScheduleKeyDeletion
            | Operation::CancelKeyDeletion
            | Operation::UpdateKeyDescription
            | Operation::TagKey
            | Operation::UntagKey
            | Operation::CreateAlias
            | Operation::UpdateAlias
            | Operation::DeleteAlias
            | Operation::ListAliases
            | Operation::EnableKeyRotation
            | Operation::DisableKeyRotation
            | Operation::GetKeyRotationStatus => Plane::Keys,
            Operation::GetParametersForImport | Operation::ImportKey => Plane::Keys,
            Operation::Status
            | Operation::Configure
            | Operation::Start
            | Operation::Stop
            | Operation::Reconfigure
            | Operation::ClearCache
            | Operation::Reload
            | Operation::Backup
            | Operation::Restore => Plane::Admin,
        }
    }

    /// Parses a gRPC method name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == name)
    }
}

/// The context of one request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Who is calling.
    pub caller: Identity,
}

impl RequestContext {
    /// A request made by kmsd itself.
    #[cfg(test)]
    pub fn internal() -> Self {
        Self {
            caller: Identity::Internal,
        }
    }

    /// A request from `caller`.
    pub fn from(caller: Identity) -> Self {
        Self { caller }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_indexed_in_order_and_named_once() {
        for (i, op) in Operation::ALL.into_iter().enumerate() {
            assert_eq!(op.index(), i);
            assert_eq!(Operation::from_name(op.as_str()), Some(op));
        }
    }
}
