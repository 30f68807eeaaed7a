//! What each backend can do, in the capability names of RustFS's status
//! (`capabilities`), so RustFS tooling can tell what to offer.

use serde::Serialize;

use crate::blob::BackendKind;

/// RustFS's capability set, one flag each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Encrypt (small secrets).
    pub encrypt: bool,
    /// Decrypt.
    pub decrypt: bool,
    /// GenerateDataKey.
    pub generate_data_key: bool,
    /// EnableKey / DisableKey.
    pub enable_disable: bool,
    /// RotateKey, on demand.
    pub rotate: bool,
    /// Older versions keep decrypting after a rotation.
    pub versioning: bool,
    /// ReEncrypt.
    pub rewrap: bool,
    /// ScheduleKeyDeletion with a pending window.
    pub schedule_deletion: bool,
    /// The material is destroyed when the window passes.
    pub physical_delete: bool,
    /// UpdateKeyDescription, TagKey, UntagKey.
    pub update_key_metadata: bool,
    // kmsd's own, after RustFS's set (tools that know only RustFS's names
    // ignore them).
    /// CreateAlias, UpdateAlias, DeleteAlias, ListAliases; `alias/<name>`
    /// wherever a key id is taken.
    pub aliases: bool,
    /// EnableKeyRotation: the daemon rotates on a schedule.
    pub automatic_rotation: bool,
    /// Wraps and decrypts per key version, the wrap budget and the
    /// deletion guard.
    pub usage_figures: bool,
    /// GetParametersForImport and ImportKey (bring your own key).
    pub import_key_material: bool,
    /// `kmsd key backup` / `POST /kms/backup`. Vault's own snapshot is the
    /// Vault backend's backup (docs/vault.md), so it has none of kmsd's.
    pub backup: bool,
}

impl Capabilities {
    /// What `kind` can do. Both of kmsd's backends do everything in
    /// RustFS's set: the local backend versions and destroys its key files itself,
    /// the Vault backend uses Transit's versions and deletes the Transit
    /// key and its KV record.
    pub fn of(kind: BackendKind) -> Self {
        match kind {
            BackendKind::Local | BackendKind::Vault => Self {
                aliases: true,
                automatic_rotation: true,
                usage_figures: true,
                import_key_material: true,
                backup: kind == BackendKind::Local,
                encrypt: true,
                decrypt: true,
                generate_data_key: true,
                enable_disable: true,
                rotate: true,
                versioning: true,
                rewrap: true,
                schedule_deletion: true,
                physical_delete: true,
                update_key_metadata: true,
            },
        }
    }

    /// What the backend of type `backend_type` (`local`, `vault`) can do.
    pub fn of_type(backend_type: &str) -> Option<Self> {
        [BackendKind::Local, BackendKind::Vault]
            .into_iter()
            .find(|kind| kind.as_str() == backend_type)
            .map(Self::of)
    }

    /// The names of the supported capabilities: RustFS's in its order,
    /// then kmsd's own.
    pub fn names(self) -> Vec<&'static str> {
        [
            ("encrypt", self.encrypt),
            ("decrypt", self.decrypt),
            ("generate_data_key", self.generate_data_key),
            ("enable_disable", self.enable_disable),
            ("rotate", self.rotate),
            ("versioning", self.versioning),
            ("rewrap", self.rewrap),
            ("schedule_deletion", self.schedule_deletion),
            ("physical_delete", self.physical_delete),
            ("update_key_metadata", self.update_key_metadata),
            ("aliases", self.aliases),
            ("automatic_rotation", self.automatic_rotation),
            ("usage_figures", self.usage_figures),
            ("import_key_material", self.import_key_material),
            ("backup", self.backup),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect()
    }
}
