//! Automatic rotation against the real binary, on both backends: the
//! three RPCs with their REST routes and CLI, the period rules, the
//! daemon's sweep, and two kmsd on one OpenBao rotating once per period.

// Test code: a failed unwrap is a failed test, with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod sweep;

use std::time::{Duration, Instant};

use kms_client::{KmsClient, proto};
use kmsd_openbao_testkit::OpenBao;
use kmsd_tests::{
    Kmsd, KmsdOptions,
    rest::{AdminClient, with_admin},
};

/// The shortest period these kmsd accept, in seconds.
pub(crate) const MIN_PERIOD_SECS: u64 = 2;

/// Which backend a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Local,
    Vault,
}

/// One kmsd with the admin REST API, an audit log, a one-second rotation
/// sweep and a two-second minimum period.
pub(crate) struct Node {
    pub(crate) kmsd: Kmsd,
    pub(crate) client: KmsClient,
    pub(crate) rest: AdminClient,
    /// The admin listener's port, which serves /metrics too.
    pub(crate) admin_port: u16,
}

impl Node {
    pub(crate) async fn start(backend_toml: String) -> Self {
        let options = KmsdOptions {
            backend_toml: Some(backend_toml),
            ..KmsdOptions::local()
        };
        let (mut options, port) = with_admin(options, "rotation-admin", "rotation-secret-key");
        options.extra_toml.push_str(&format!(
            "\n[audit]\noutput = \"{{dir}}/audit.log\"\n[keys]\nrotation_sweep_interval_secs = 1\nmin_rotation_period_secs = {MIN_PERIOD_SECS}\n"
        ));
        let kmsd = Kmsd::start(options).await;
        let client = kmsd.client().await;
        Self {
            kmsd,
            client,
            rest: AdminClient::new(port, "rotation-admin", "rotation-secret-key"),
            admin_port: port,
        }
    }

    /// The audit lines of `operation` written so far.
    pub(crate) fn audit(&self, operation: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.kmsd.dir().join("audit.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|l| l["operation"] == operation)
            .collect()
    }

    pub(crate) async fn describe(&self, key_id: &str) -> proto::KeyMetadata {
        self.client
            .key_admin()
            .describe_key(proto::DescribeKeyRequest {
                key_id: key_id.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .key_metadata
            .unwrap()
    }

    pub(crate) async fn create(&self, key_id: &str) {
        self.client
            .key_admin()
            .create_key(proto::CreateKeyRequest {
                key_id: key_id.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    /// EnableKeyRotation with a period in seconds.
    pub(crate) async fn enable_secs(&self, key_id: &str, secs: u64) -> proto::KeyMetadata {
        self.client
            .key_admin()
            .enable_key_rotation(proto::EnableKeyRotationRequest {
                key_id: key_id.into(),
                rotation_period_in_days: 0,
                rotation_period_seconds: secs,
            })
            .await
            .unwrap()
            .into_inner()
            .key_metadata
            .unwrap()
    }

    /// `kmsd_key_rotations_total` of `trigger` and `result`.
    pub(crate) async fn rotations_counted(&self, trigger: &str, result: &str) -> Option<f64> {
        let metrics = kmsd_tests::metrics::scrape(self.admin_port).await;
        kmsd_tests::metrics::series(
            &metrics,
            &format!("kmsd_key_rotations_total{{result=\"{result}\",trigger=\"{trigger}\"}}"),
        )
    }

    /// Polls until `key_id`'s current version is at least `version`.
    pub(crate) async fn wait_for_version(&self, key_id: &str, version: u32, limit: Duration) {
        let started = Instant::now();
        loop {
            let current = self.describe(key_id).await.current_version;
            if current >= version {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "{key_id} still at version {current} after {limit:?}:\n{}",
                self.kmsd.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A kmsd on `backend`, and the OpenBao it uses (kept alive by the
/// caller). The Vault run's token holds only docs/vault.md's policy.
pub(crate) async fn start(backend: Backend) -> (Node, Option<OpenBao>) {
    match backend {
        Backend::Local => (
            Node::start(
                "[backend]\nbackend_type = \"local\"\nkey_dir = \"{dir}/keys\"\ndefault_key_id = \"default\"\n"
                    .into(),
            )
            .await,
            None,
        ),
        Backend::Vault => {
            let openbao = OpenBao::dev().await;
            let toml = documented_token_toml(&openbao).await;
            (Node::start(toml).await, Some(openbao))
        }
    }
}

/// A `[backend]` table with a token of docs/vault.md's policy only.
pub(crate) async fn documented_token_toml(openbao: &OpenBao) -> String {
    openbao
        .write_policy("kmsd", &kmsd_openbao_testkit::documented_policy())
        .await;
    let token = openbao.create_token(&["kmsd"], "1h").await;
    openbao.backend_toml(&token, "default")
}

/// The key's next rotation date, as Unix seconds.
pub(crate) fn next_rotation(meta: &proto::KeyMetadata) -> Option<i64> {
    meta.next_rotation_date.as_ref().map(|t| t.seconds)
}

/// When each version of the key was made, as Unix seconds, oldest first.
pub(crate) fn version_times(meta: &proto::KeyMetadata) -> Vec<i64> {
    meta.versions
        .iter()
        .map(|v| v.created_at.as_ref().expect("a creation date").seconds)
        .collect()
}

/// Now, as Unix seconds.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

macro_rules! both_backends {
    ($($name:ident => $path:path),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $path(crate::Backend::Local).await
                }
            )*
        }
        mod vault {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $path(crate::Backend::Vault).await
                }
            )*
        }
    };
}

both_backends! {
    enable_disable_and_status => crate::api::enable_disable_and_status,
    bad_periods_are_refused_precisely => crate::api::bad_periods_are_refused_precisely,
    the_cli_manages_rotation => crate::api::the_cli_manages_rotation,
    the_sweep_rotates_due_keys => crate::sweep::the_sweep_rotates_due_keys,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_kmsd_on_one_openbao_rotate_once_per_period() {
    sweep::two_kmsd_on_one_openbao_rotate_once_per_period().await
}
