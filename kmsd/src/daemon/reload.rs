//! Reload without restart: SIGHUP, Admin Reload and `POST /kms/reload`
//! re-read the config file's log level and admin access keys, the policy
//! file, every TLS certificate, key and CA (gRPC, admin) and rebuild a
//! Vault backend so its client certificates and CAs are read again.
//!
//! All or nothing: every new file is read and checked first, and nothing
//! changes unless all are good, so a half-written certificate never pairs
//! with the old key and a broken policy never leaves the admin keys
//! changed alone. What changed in the config file but cannot change while
//! serving (listen addresses, the backend, ...) is reported, not applied.
//! Between reloads the TLS files and the policy file are also watched and
//! reloaded alone when they change (what kubelet's secret updates need).

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use super::listen::wait_for_shutdown;
use crate::{
    config::Config,
    error::KmsError,
    http::auth::AdminCredentials,
    policy::Policy,
    service::{Kms, Reload, ReloadFuture, ReloadReport},
    tls::ReloadableTls,
};

/// How the daemon reads its configuration again: given by the binary, which
/// knows the config file, the command line and the log subscriber.
pub struct ReloadHooks {
    /// Reads the configuration the way the daemon was started.
    pub load_config: Box<dyn Fn() -> Result<Config, String> + Send + Sync>,
    /// Replaces the log filter.
    pub set_log_filter: Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>,
}

impl fmt::Debug for ReloadHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReloadHooks")
    }
}

/// The daemon's reloadable parts.
#[derive(Debug)]
pub(crate) struct Reloader {
    /// The configuration as started: what the restart-only settings are
    /// compared with, and the source when there are no hooks (tests).
    started: Config,
    hooks: Option<ReloadHooks>,
    tls: Vec<(&'static str, Arc<ReloadableTls>)>,
    admin: Option<AdminCredentials>,
    /// The policy file in force and when it was read.
    policy: Mutex<(Option<PathBuf>, Option<SystemTime>)>,
    /// One reload at a time: SIGHUP and the API may arrive together.
    serial: tokio::sync::Mutex<()>,
}

fn refused(part: &str, reason: impl fmt::Display) -> KmsError {
    KmsError::ReloadFailed(format!("{part}: {reason}"))
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The policy a configuration asks for: its file, or the default without
/// one.
fn policy_of(config: &Config) -> Result<Policy, KmsError> {
    match &config.policy_file {
        Some(path) => Policy::from_file(path).map_err(|e| refused("policy file", e)),
        None => Ok(Policy::without_file(
            config.listen.tcp.is_some() && config.listen.tls.is_none(),
        )),
    }
}

/// The settings read only at start whose value differs, by config key.
/// Compared through `Debug`, which every config type has and which prints
/// paths and addresses, never secrets.
fn restart_required(started: &Config, new: &Config) -> Vec<String> {
    fn differs(a: &impl fmt::Debug, b: &impl fmt::Debug) -> bool {
        format!("{a:?}") != format!("{b:?}")
    }
    let admin_listener = |c: &Config| {
        c.admin
            .as_ref()
            .map(|a| (a.listen, a.region.clone(), a.hosts.clone(), a.tls.clone()))
    };
    [
        ("server", differs(&started.listen, &new.listen)),
        ("log.format", differs(&started.log.format, &new.log.format)),
        ("backend", started.backend != new.backend),
        ("server.state_dir", started.state_dir != new.state_dir),
        ("audit", differs(&started.audit, &new.audit)),
        ("limits", differs(&started.service, &new.service)),
        (
            "admin",
            differs(&admin_listener(started), &admin_listener(new)),
        ),
        ("metrics", started.metrics_listen != new.metrics_listen),
        ("cluster", differs(&started.cluster, &new.cluster)),
    ]
    .into_iter()
    .filter(|(_, changed)| *changed)
    .map(|(key, _)| key.to_owned())
    .collect()
}

impl Reloader {
    pub(crate) fn new(
        started: Config,
        hooks: Option<ReloadHooks>,
        tls: Vec<(&'static str, Arc<ReloadableTls>)>,
        admin: Option<AdminCredentials>,
    ) -> Self {
        let policy_file = started.policy_file.clone();
        let read_at = policy_file.as_deref().and_then(mtime);
        Self {
            started,
            hooks,
            tls,
            admin,
            policy: Mutex::new((policy_file, read_at)),
            serial: tokio::sync::Mutex::new(()),
        }
    }

    /// Everything, all or nothing (SIGHUP, Admin Reload), counted by
    /// `trigger` in `kmsd_reloads_total`.
    async fn reload_all(&self, kms: &Kms, trigger: &str) -> Result<ReloadReport, KmsError> {
        let result = self.reload_checked(kms).await;
        kms.metrics().reload(trigger, result.is_ok());
        result
    }

    async fn reload_checked(&self, kms: &Kms) -> Result<ReloadReport, KmsError> {
        let _one_at_a_time = self.serial.lock().await;
        let config = match &self.hooks {
            Some(hooks) => (hooks.load_config)().map_err(|e| refused("config file", e))?,
            None => self.started.clone(),
        };
        // 1. Read and check every new file; nothing is in force yet.
        let policy = policy_of(&config)?;
        let credentials = match (&self.admin, &config.admin) {
            (Some(_), Some(admin)) => {
                Some(AdminCredentials::read(admin).map_err(|e| refused("admin access keys", e))?)
            }
            _ => None,
        };
        let mut tls = Vec::with_capacity(self.tls.len());
        for (name, reloadable) in &self.tls {
            let prepared = reloadable
                .prepare()
                .map_err(|e| refused(&format!("tls:{name}"), e))?;
            tls.push((*name, reloadable, prepared));
        }
        // RUST_LOG, when set, overrides the file at start; so it does here.
        let log_filter = match std::env::var_os(EnvFilter::DEFAULT_ENV) {
            Some(_) => None,
            None => {
                Some(EnvFilter::try_new(&config.log.level).map_err(|e| refused("log.level", e))?)
            }
        };
        // 2. The backend: built and checked before it replaces the old one.
        let rebuilt = kms
            .lifecycle()
            .refresh_active()
            .await
            .map_err(|e| refused("backend", e))?;
        // 3. Everything checked: put it in force.
        let mut reloaded = Vec::new();
        for (name, reloadable, prepared) in tls {
            reloadable.install(prepared);
            reloaded.push(format!("tls:{name}"));
        }
        if let (Some(admin), Some(credentials)) = (&self.admin, credentials) {
            admin.replace(credentials);
            reloaded.push("admin_access_keys".to_owned());
        }
        self.install_policy(kms, policy, config.policy_file.clone());
        reloaded.push("policy".to_owned());
        if let (Some(hooks), Some(filter)) = (&self.hooks, log_filter) {
            match (hooks.set_log_filter)(filter) {
                Ok(()) => reloaded.push("log_level".to_owned()),
                // The subscriber is gone (shutdown): nothing to report.
                Err(e) => tracing::warn!(error = %e, "the log level could not be changed"),
            }
        }
        if rebuilt {
            reloaded.push("backend".to_owned());
        }
        let restart_required = restart_required(&self.started, &config);
        if !restart_required.is_empty() {
            tracing::warn!(
                ?restart_required,
                "some settings changed in the config file take effect only at the next start"
            );
        }
        tracing::info!(?reloaded, "reloaded");
        Ok(ReloadReport {
            reloaded,
            restart_required,
        })
    }

    fn install_policy(&self, kms: &Kms, policy: Policy, file: Option<PathBuf>) {
        kms.set_policy(policy);
        if let Ok(mut current) = self.policy.lock() {
            let read_at = file.as_deref().and_then(mtime);
            *current = (file, read_at);
        }
    }

    /// Between reloads: a TLS file or the policy file that changed is
    /// reloaded alone; a broken one is logged and the old one stays.
    fn reload_changed_files(&self, kms: &Kms) {
        for (name, tls) in &self.tls {
            match tls.reload_if_changed() {
                Ok(true) => kms.metrics().reload("file", true),
                Ok(false) => {}
                Err(e) => {
                    kms.metrics().reload("file", false);
                    tracing::error!(listener = name, error = %e, "TLS reload failed; the previous certificate stays in use");
                }
            }
        }
        let (path, read_at) = match self.policy.lock() {
            Ok(current) => current.clone(),
            Err(_) => return,
        };
        let Some(path) = path else { return };
        let now = mtime(&path);
        if now == read_at {
            return;
        }
        match Policy::from_file(&path) {
            Ok(policy) => {
                kms.metrics().reload("file", true);
                self.install_policy(kms, policy, Some(path.clone()));
                tracing::info!(path = %path.display(), "policy reloaded");
            }
            Err(e) => {
                kms.metrics().reload("file", false);
                // Not again until the file changes once more.
                if let Ok(mut current) = self.policy.lock() {
                    current.1 = now;
                }
                tracing::error!(error = %e, "policy reload failed; the previous policy stays in force");
            }
        }
    }

    /// Reloads everything on SIGHUP, and changed files every few seconds,
    /// until shutdown.
    pub(crate) async fn run(self: Arc<Self>, kms: Kms, stop: watch::Receiver<bool>) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reloading on file changes only");
                None
            }
        };
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let signalled = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
                _ = wait_for_shutdown(stop.clone()) => return,
            };
            if !signalled {
                self.reload_changed_files(&kms);
                continue;
            }
            tracing::info!("SIGHUP: reloading");
            if let Err(e) = self.reload_all(&kms, "signal").await {
                tracing::error!(error = %e, "SIGHUP reload refused");
            }
        }
    }
}

impl Reload for Reloader {
    fn reload<'a>(&'a self, kms: &'a Kms) -> ReloadFuture<'a> {
        Box::pin(self.reload_all(kms, "api"))
    }
}
