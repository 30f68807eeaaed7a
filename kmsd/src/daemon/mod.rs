//! Assembles and runs the daemon: backend, service, listeners, background
//! tasks. Tests start it in-process through [`start`]; the binary does the
//! same from `cli/serve.rs`.

mod accept;
mod build;
mod listen;
mod listeners;
mod reload;
mod tasks;
mod uds_authority;

use std::{io, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::{sync::watch, task::JoinSet};
use tonic_health::server::HealthReporter;

pub use self::build::{BuildEnv, BuildError, build_backend, ensure_default_key};
pub use self::reload::ReloadHooks;
// `kmsd key backup`/`restore` read secret files as the daemon does.
pub(crate) use self::build::read_sealing_secret;
use self::{
    accept::{descriptor_budget, fit_to_budget},
    listeners::Listeners,
    reload::Reloader,
    tasks::{
        credential_gauges, deletion_sweeper, flush_usage, key_counts, readiness_loop,
        report_initial_readiness, rotation_sweeper, usage_flusher, watchdog,
    },
};
use crate::{
    audit::AuditLog,
    clock::{Clock, SystemClock},
    config::Config,
    error::KmsError,
    http::auth::AdminAuth,
    lifecycle::Lifecycle,
    metrics::Metrics,
    persist::RuntimeStore,
    policy::Policy,
    service::Kms,
    tls::{ALPN_GRPC, ALPN_HTTP, ReloadableTls, TlsSettings},
};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The backend could not be started.
    #[error(transparent)]
    Backend(#[from] KmsError),
    /// The state directory cannot be used.
    #[error(transparent)]
    State(#[from] crate::persist::PersistError),
    /// A listener could not be opened.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address or socket path.
        address: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The policy file is invalid.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// The TLS files are invalid.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The reflection service could not be built.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// An admin secret key could not be read.
    #[error(transparent)]
    AdminSecret(#[from] crate::http::SecretError),
    /// The state directory's sealing secret could not be read.
    #[error("server.state_sealing: {0}")]
    StateSealing(#[source] BuildError),
}

/// Why a listener stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A gRPC listener failed.
    #[error("gRPC listener: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The admin HTTP listener failed.
    #[error("admin HTTP listener: {0}")]
    Http(#[source] io::Error),
}

/// A running daemon.
#[derive(Debug)]
pub struct RunningDaemon {
    /// The service core.
    #[cfg(test)]
    pub kms: Kms,
    /// The bound TCP address (useful with port 0).
    pub tcp_addr: Option<SocketAddr>,
    /// The unix socket path.
    pub unix_path: Option<PathBuf>,
    /// The bound admin HTTP address.
    pub admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<Result<(), ServeError>>,
    /// For the last flush of the usage figures, once every listener closed.
    usage: Kms,
}

impl RunningDaemon {
    /// Stops accepting, lets requests in flight finish, and returns when
    /// every listener has closed.
    #[cfg(test)]
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        let _ = self.shutdown.send(true);
        self.join_all().await
    }

    /// Waits until the daemon stops (after [`Self::shutdown`] elsewhere).
    pub async fn wait(mut self) -> Result<(), ServeError> {
        self.join_all().await
    }

    /// A handle that stops the daemon when `true` is sent.
    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    async fn join_all(&mut self) -> Result<(), ServeError> {
        let mut result = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(e) => tracing::error!(error = %e, "server task failed"),
            }
        }
        if let Some(path) = &self.unix_path {
            let _ = std::fs::remove_file(path);
        }
        flush_usage(&self.usage).await;
        result
    }
}

/// Builds the backend (if configured), binds every listener and starts
/// serving. Returns once the daemon is ready to answer.
#[cfg(test)]
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<RunningDaemon, StartError> {
    start_with(config, clock, false, None).await
}

/// As [`start`]; with `reset_runtime_state`, the runtime state saved by the
/// admin API is forgotten first and the config file applies. `reload` says
/// how SIGHUP and Admin Reload read the configuration again; without it
/// they re-read the files named by `config`.
pub async fn start_with(
    config: Config,
    clock: Arc<dyn Clock>,
    reset_runtime_state: bool,
    reload: Option<ReloadHooks>,
) -> Result<RunningDaemon, StartError> {
    // Read before anything is bound or restored, so a missing secret fails
    // the start at once. Signatures are dated by the client's wall clock,
    // so they are checked against the system clock even when the daemon
    // runs on an injected one.
    let admin = config
        .admin
        .as_ref()
        .map(|admin| AdminAuth::load(admin, Arc::new(SystemClock)).map(|auth| (admin.listen, auth)))
        .transpose()?;
    let store = open_state(&config, reset_runtime_state).await?;
    let kms = build_kms(&config, clock, store).await?;
    // Before any request: counting continues from the persisted figures.
    match kms.load_usage().await {
        Ok(()) | Err(crate::error::KmsError::NotRunning(_)) => {}
        Err(e) => {
            tracing::warn!(error = %e, "usage figures could not be read; they are read again at the next flush")
        }
    }

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    report_initial_readiness(&kms, &health_reporter).await;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let [tcp_max, admin_max, metrics_max] = connection_limits(&config, admin.is_some());
    let mut listeners = Listeners {
        kms: &kms,
        limits: config.listeners,
        shutdown: &shutdown_rx,
        tasks: JoinSet::new(),
    };

    let admin_tls = load_tls(config.admin.as_ref().and_then(|a| a.tls.clone()), ALPN_HTTP)?;
    let tls = load_tls(config.listen.tls.clone(), ALPN_GRPC)?;
    // Registered before any listener serves, so Admin Reload always finds it.
    let reloader = Arc::new(Reloader::new(
        config.clone(),
        reload,
        tls.iter()
            .map(|t| ("grpc", Arc::clone(t)))
            .chain(admin_tls.iter().map(|t| ("admin", Arc::clone(t))))
            .collect(),
        admin.as_ref().map(|(_, auth)| auth.credentials()),
    ));
    kms.set_reloader(Arc::clone(&reloader) as Arc<dyn crate::service::Reload>);
    // Bound before the gRPC listeners serve, so that once kmsd answers
    // gRPC (what readiness checks probe) the admin API answers too.
    let admin_addr = match (admin, &config.admin) {
        (Some((listen, auth)), Some(settings)) => Some(
            listeners
                .admin(
                    listen,
                    auth,
                    settings,
                    admin_tls.as_deref(),
                    admin_max,
                    &config,
                )
                .await?,
        ),
        _ => None,
    };
    if let Some(listen) = config.metrics_listen {
        listeners.metrics(listen, metrics_max).await?;
    }

    // The TCP listener before the unix socket: once the unix socket
    // answers (what the harness and local probes check), every listener does.
    let tcp_addr = match config.listen.tcp {
        Some(addr) => Some(
            listeners
                .grpc_tcp(addr, tls.as_deref(), tcp_max, &health_service)
                .await?,
        ),
        None => None,
    };
    let unix_path = match &config.listen.unix {
        Some((path, mode)) => {
            listeners.grpc_unix(path, *mode, &config, &health_service)?;
            Some(path.clone())
        }
        None => None,
    };
    let tasks = listeners.tasks;
    spawn_background(&kms, &config, reloader, health_reporter, shutdown_rx);

    Ok(RunningDaemon {
        usage: kms.clone(),
        #[cfg(test)]
        kms,
        tcp_addr,
        unix_path,
        admin_addr,
        shutdown,
        tasks,
    })
}

/// Opens the state directory (if configured), unsealing it with
/// `[server.state_sealing]`, and forgets what it holds when asked to.
async fn open_state(
    config: &Config,
    reset_runtime_state: bool,
) -> Result<Option<RuntimeStore>, StartError> {
    let sealing = config
        .state_sealing
        .as_ref()
        .map(build::read_sealing_secret)
        .transpose()
        .map_err(StartError::StateSealing)?;
    let store = match config.state_dir.clone() {
        // Argon2id takes a moment: off the async workers.
        Some(dir) => Some(
            tokio::task::spawn_blocking(move || RuntimeStore::open(&dir, sealing.as_ref()))
                .await
                .map_err(|e| StartError::StateSealing(BuildError::Task(e.to_string())))??,
        ),
        None => None,
    };
    if let (Some(store), Some(backend)) = (&store, &config.backend_raw)
        && let Err(e) = store.check_persistable(backend)
    {
        tracing::warn!(error = %e, "admin-API changes will be refused while [backend] holds an inline secret and [server.state_sealing] is not set");
    }
    if store.is_none() {
        tracing::warn!(
            "server.state_dir is not set: changes made through the admin API will not survive a restart"
        );
    }
    if let (Some(store), true) = (&store, reset_runtime_state) {
        store.clear()?;
        tracing::info!("forgot the runtime state saved by the admin API (--reset-runtime-state)");
    }
    Ok(store)
}

/// The service core: metrics, audit log, policy and lifecycle, with the
/// backend restored or built from the config file.
async fn build_kms(
    config: &Config,
    clock: Arc<dyn Clock>,
    store: Option<RuntimeStore>,
) -> Result<Kms, StartError> {
    let metrics = Metrics::new();
    let audit =
        AuditLog::open(&config.audit, metrics.clone()).map_err(|source| StartError::Listen {
            address: format!("audit log {:?}", config.audit.output),
            source,
        })?;
    let env = BuildEnv {
        clock: Arc::clone(&clock),
        metrics: metrics.clone(),
        breaker: config.breaker,
        cache: config.service.cache,
    };
    let policy = match &config.policy_file {
        Some(path) => Policy::from_file(path)?,
        None => {
            // Plain TCP is the one listener without authentication, and it
            // exists only with danger_plaintext_tcp.
            let plaintext_tcp = config.listen.tcp.is_some() && config.listen.tls.is_none();
            tracing::warn!(
                plaintext_tcp,
                "no policy file ([policy] file): every authenticated caller may use every key and admin operation"
            );
            Policy::without_file(plaintext_tcp)
        }
    };
    let kms = Kms::new(
        Lifecycle::new(env, store),
        clock,
        metrics,
        audit,
        policy,
        config.service.clone(),
    );
    kms.lifecycle()
        .initialize(config.backend_raw.clone())
        .await?;
    Ok(kms)
}

/// The connection limits of the gRPC TCP, admin and metrics listeners.
/// The TCP listeners share a descriptor budget, so the unix socket (and
/// the backend, the audit log, key files) always has descriptors left.
fn connection_limits(config: &Config, admin: bool) -> [usize; 3] {
    let limits = config.listeners;
    let budget = descriptor_budget();
    let wanted = [
        config.listen.tcp.map(|_| limits.max_tcp_connections),
        admin.then_some(limits.max_admin_connections),
        config
            .metrics_listen
            .map(|_| limits.max_metrics_connections),
    ];
    let present: Vec<usize> = wanted.iter().flatten().copied().collect();
    let fitted = fit_to_budget(&present, budget);
    if fitted != present {
        tracing::warn!(
            budget,
            ?present,
            ?fitted,
            "the TCP listeners' connection limits exceed the descriptor budget (RLIMIT_NOFILE minus the reserve); they are scaled down"
        );
    }
    let mut fitted = fitted.into_iter();
    wanted.map(|w| w.and_then(|_| fitted.next()).unwrap_or(1))
}

/// Loads a listener's certificate and key, to be reloaded on change.
fn load_tls(
    settings: Option<TlsSettings>,
    alpn: &[&[u8]],
) -> Result<Option<Arc<ReloadableTls>>, StartError> {
    Ok(settings
        .map(|settings| ReloadableTls::load(settings, alpn))
        .transpose()?
        .map(Arc::new))
}

/// The background tasks: reloads (SIGHUP, changed files), readiness, key
/// counts, the watchdog, credential gauges and the deletion sweep.
fn spawn_background(
    kms: &Kms,
    config: &Config,
    reloader: Arc<Reloader>,
    health_reporter: HealthReporter,
    shutdown_rx: watch::Receiver<bool>,
) {
    tokio::spawn(reloader.run(kms.clone(), shutdown_rx.clone()));
    tokio::spawn(readiness_loop(
        kms.clone(),
        health_reporter,
        config.probe_interval,
        shutdown_rx.clone(),
    ));
    tokio::spawn(key_counts(
        kms.clone(),
        Duration::from_secs(30),
        shutdown_rx.clone(),
    ));
    tokio::spawn(watchdog(shutdown_rx.clone()));
    tokio::spawn(credential_gauges(kms.clone(), shutdown_rx.clone()));
    tokio::spawn(rotation_sweeper(
        kms.clone(),
        config.rotation_sweep_interval,
        shutdown_rx.clone(),
    ));
    tokio::spawn(usage_flusher(
        kms.clone(),
        config.service.usage.flush_interval,
        shutdown_rx.clone(),
    ));
    tokio::spawn(deletion_sweeper(
        kms.clone(),
        config.deletion_sweep_interval,
        shutdown_rx,
    ));
}
