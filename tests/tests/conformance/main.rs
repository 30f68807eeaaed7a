//! The conformance suite: every data-plane and key-admin RPC through the
//! generated client against a real kmsd process, run once per backend.

// Test code: a failed unwrap is a failed test, with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod aliases;
mod data_plane;
mod import;
mod key_admin;
mod lifecycle;

use kms_client::KmsClient;
use kmsd_openbao_testkit::OpenBao;
use kmsd_tests::{
    Kmsd, KmsdOptions,
    rest::{AdminClient, with_admin},
};

/// Which backend a run uses.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Backend {
    Local,
    /// A real OpenBao dev server of the test's own.
    Vault,
}

/// A kmsd on one backend and a client for it.
#[derive(Debug)]
pub(crate) struct Fixture {
    pub(crate) kmsd: Kmsd,
    pub(crate) client: KmsClient,
    /// The admin REST API, when started with [`Fixture::start_admin`].
    pub(crate) rest: Option<AdminClient>,
    /// Kept alive for the test's duration.
    _openbao: Option<OpenBao>,
}

impl Fixture {
    pub(crate) async fn start(backend: Backend) -> Self {
        let (options, openbao) = match backend {
            Backend::Local => (KmsdOptions::local(), None),
            Backend::Vault => {
                let openbao = OpenBao::dev().await;
                let options = KmsdOptions {
                    backend_toml: Some(openbao.backend_toml(&openbao.root_token(), "default")),
                    ..KmsdOptions::local()
                };
                (options, Some(openbao))
            }
        };
        let kmsd = Kmsd::start(options).await;
        let client = kmsd.client().await;
        Self {
            kmsd,
            client,
            rest: None,
            _openbao: openbao,
        }
    }

    /// As [`Self::start`], plus the admin REST API and an audit log
    /// (`<dir>/audit.log`); the Vault run's token holds only the policy
    /// of docs/vault.md.
    pub(crate) async fn start_admin(backend: Backend) -> Self {
        let (options, openbao) = match backend {
            Backend::Local => (KmsdOptions::local(), None),
            Backend::Vault => {
                let openbao = OpenBao::dev().await;
                openbao
                    .write_policy("kmsd", &kmsd_openbao_testkit::documented_policy())
                    .await;
                let token = openbao.create_token(&["kmsd"], "1h").await;
                let options = KmsdOptions {
                    backend_toml: Some(openbao.backend_toml(&token, "default")),
                    ..KmsdOptions::local()
                };
                (options, Some(openbao))
            }
        };
        let (mut options, port) = with_admin(options, "lifecycle-admin", "lifecycle-secret-key");
        options
            .extra_toml
            .push_str("\n[audit]\noutput = \"{dir}/audit.log\"\n");
        let kmsd = Kmsd::start(options).await;
        let client = kmsd.client().await;
        Self {
            kmsd,
            client,
            rest: Some(AdminClient::new(
                port,
                "lifecycle-admin",
                "lifecycle-secret-key",
            )),
            _openbao: openbao,
        }
    }

    /// The admin REST client of [`Self::start_admin`].
    pub(crate) fn rest(&self) -> &AdminClient {
        self.rest.as_ref().expect("started with start_admin")
    }

    /// The audit lines written so far, as JSON.
    pub(crate) fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.kmsd.dir().join("audit.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
            .collect()
    }

    /// Restarts the kmsd process (same config and state).
    pub(crate) async fn restart(&mut self) {
        self.kmsd.restart().await;
        self.client = self.kmsd.client().await;
    }

    /// Creates a key with a fresh id and returns the id.
    pub(crate) async fn new_key(&self, prefix: &str) -> String {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key_id = format!("{prefix}-{}-{n}", std::process::id());
        self.client
            .key_admin()
            .create_key(kms_client::proto::CreateKeyRequest {
                key_id: key_id.clone(),
                description: String::new(),
                tags: Default::default(),
            })
            .await
            .expect("create key");
        key_id
    }
}

/// One `#[tokio::test]` per suite function, in a module per backend.
macro_rules! tests_for {
    ($backend:ident, $variant:expr, $($name:ident => $path:path),*) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $path(crate::Fixture::start($variant).await).await
                }
            )*
        }
    };
}

/// As `tests_for!`, with [`Fixture::start_admin`].
macro_rules! admin_tests_for {
    ($backend:ident, $variant:expr, $($name:ident => $path:path),*) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $path(crate::Fixture::start_admin($variant).await).await
                }
            )*
        }
    };
}

mod with_admin_api {
    admin_tests_for!(local, crate::Backend::Local,
        imported_material_is_the_key => crate::import::imported_material_is_the_key,
        metadata_updates => crate::lifecycle::metadata_updates,
        aliases_move_new_writes => crate::aliases::aliases_move_new_writes);
    admin_tests_for!(vault, crate::Backend::Vault,
        imported_material_is_the_key => crate::import::imported_material_is_the_key,
        metadata_updates => crate::lifecycle::metadata_updates,
        aliases_move_new_writes => crate::aliases::aliases_move_new_writes);
}

macro_rules! suite {
    ($($name:ident => $path:path),* $(,)?) => {
        tests_for!(local, crate::Backend::Local, $($name => $path),*);
        tests_for!(vault, crate::Backend::Vault, $($name => $path),*);
    };
}

suite! {
    generate_data_key_round_trips => crate::data_plane::generate_data_key_round_trips,
    generate_without_plaintext_round_trips => crate::data_plane::generate_without_plaintext_round_trips,
    encrypt_round_trips_up_to_4_kib => crate::data_plane::encrypt_round_trips_up_to_4_kib,
    oversized_encrypt_is_rejected => crate::data_plane::oversized_encrypt_is_rejected,
    wrong_context_is_rejected => crate::data_plane::wrong_context_is_rejected,
    every_flipped_bit_is_rejected => crate::data_plane::every_flipped_bit_is_rejected,
    truncated_and_extended_blobs_are_rejected => crate::data_plane::truncated_and_extended_blobs_are_rejected,
    malformed_blobs_are_rejected => crate::data_plane::malformed_blobs_are_rejected,
    wrong_expected_key_id_is_rejected => crate::data_plane::wrong_expected_key_id_is_rejected,
    unknown_keys_are_not_found => crate::data_plane::unknown_keys_are_not_found,
    invalid_key_ids_are_rejected => crate::data_plane::invalid_key_ids_are_rejected,
    context_limits => crate::data_plane::context_limits,
    oversized_messages_are_refused => crate::data_plane::oversized_messages_are_refused,
    re_encrypt_moves_blobs => crate::data_plane::re_encrypt_moves_blobs,
    create_describe_and_list => crate::key_admin::create_describe_and_list,
    create_refuses_duplicates_and_reserved_ids => crate::key_admin::create_refuses_duplicates_and_reserved_ids,
    rotation_keeps_old_blobs_decrypting => crate::key_admin::rotation_keeps_old_blobs_decrypting,
    disable_and_enable => crate::key_admin::disable_and_enable,
    deletion_window_and_cancel => crate::key_admin::deletion_window_and_cancel,
    admin_calls_validate_key_ids => crate::key_admin::admin_calls_validate_key_ids,
    keys_survive_a_restart => crate::key_admin::keys_survive_a_restart,
    health_and_reflection => crate::key_admin::health_and_reflection,
}
