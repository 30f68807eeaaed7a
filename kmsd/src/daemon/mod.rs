//! Assembles and runs the daemon: backend, service, listeners, background
//! tasks. Tests start it in-process through [`start`]; the binary does the
//! same from `cli/serve.rs`.

mod build;
mod listen;
mod tasks;

use std::{io, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::watch, task::JoinSet};

pub use self::build::{BuildEnv, BuildError, build_backend, ensure_default_key};
use self::{
    listen::{bind_unix, server, tcp_incoming, tls_incoming, unix_incoming, wait_for_shutdown},
    tasks::{
        credential_gauges, deletion_sweeper, key_counts, readiness_loop, reload_on_change, watchdog,
    },
};
use crate::{
    audit::AuditLog,
    clock::{Clock, SystemClock},
    config::Config,
    error::KmsError,
    grpc,
    http::{self, auth::AdminAuth},
    lifecycle::Lifecycle,
    metrics::Metrics,
    persist::RuntimeStore,
    policy::Policy,
    service::Kms,
    tls::ReloadableTls,
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
    AdminSecret(#[from] http::SecretError),
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
    pub kms: Kms,
    /// The bound TCP address (useful with port 0).
    pub tcp_addr: Option<SocketAddr>,
    /// The unix socket path.
    pub unix_path: Option<PathBuf>,
    /// The bound admin HTTP address.
    pub admin_addr: Option<SocketAddr>,
    /// The bound metrics and health address.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<Result<(), ServeError>>,
}

impl RunningDaemon {
    /// Stops accepting, lets requests in flight finish, and returns when
    /// every listener has closed.
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
        result
    }
}

/// Builds the backend (if configured), binds every listener and starts
/// serving. Returns once the daemon is ready to answer.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<RunningDaemon, StartError> {
    start_with(config, clock, false).await
}

/// As [`start`]; with `reset_runtime_state`, the runtime state saved by the
/// admin API is forgotten first and the config file applies.
pub async fn start_with(
    config: Config,
    clock: Arc<dyn Clock>,
    reset_runtime_state: bool,
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
    let store = config
        .state_dir
        .as_deref()
        .map(RuntimeStore::open)
        .transpose()?;
    if store.is_none() {
        tracing::warn!(
            "server.state_dir is not set: changes made through the admin API will not survive a restart"
        );
    }
    if let (Some(store), true) = (&store, reset_runtime_state) {
        store.clear()?;
        tracing::info!("forgot the runtime state saved by the admin API (--reset-runtime-state)");
    }
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
    };
    let policy = match &config.policy_file {
        Some(path) => Policy::from_file(path)?,
        None => {
            tracing::warn!(
                "no policy file ([policy] file): every caller that can reach kmsd may use every key and admin operation"
            );
            Policy::allow_all()
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

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();

    // Bound before the gRPC listeners serve, so that once kmsd answers
    // gRPC (what readiness checks probe) the admin API answers too.
    let admin_addr = match admin {
        Some((listen, auth)) => Some(
            serve_http(
                listen,
                http::router(kms.clone(), auth),
                &shutdown_rx,
                &mut tasks,
            )
            .await?,
        ),
        None => None,
    };
    let metrics_addr = match config.metrics_listen {
        Some(listen) => Some(
            serve_http(
                listen,
                http::public_router(kms.clone()),
                &shutdown_rx,
                &mut tasks,
            )
            .await?,
        ),
        None => None,
    };

    let unix_path = match &config.listen.unix {
        Some((path, mode)) => {
            let listener = bind_unix(path, *mode).map_err(|source| StartError::Listen {
                address: format!("unix:{}", path.display()),
                source,
            })?;
            let routes = grpc::routes(&kms, health_service.clone())?;
            let incoming = unix_incoming(listener, config.listen.unix_allowed.clone());
            let stop = wait_for_shutdown(shutdown_rx.clone());
            let serve = server()
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, stop);
            tasks.spawn(async move { serve.await.map_err(ServeError::Grpc) });
            Some(path.clone())
        }
        None => None,
    };
    let tls = config
        .listen
        .tls
        .clone()
        .map(ReloadableTls::load)
        .transpose()?
        .map(Arc::new);
    let tcp_addr = match config.listen.tcp {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Listen {
                    address: addr.to_string(),
                    source,
                })?;
            let bound = listener.local_addr().map_err(|source| StartError::Listen {
                address: addr.to_string(),
                source,
            })?;
            let routes = grpc::routes(&kms, health_service.clone())?;
            let stop = wait_for_shutdown(shutdown_rx.clone());
            let server = server().add_routes(routes);
            match &tls {
                Some(tls) => {
                    let incoming = tls_incoming(listener, tls.server_config(), shutdown_rx.clone());
                    let serve = server.serve_with_incoming_shutdown(incoming, stop);
                    tasks.spawn(async move { serve.await.map_err(ServeError::Grpc) });
                }
                None => {
                    tracing::warn!(%bound, "serving gRPC over PLAINTEXT TCP (danger_plaintext_tcp): anyone who can reach this port can use every key");
                    let serve = server.serve_with_incoming_shutdown(tcp_incoming(listener), stop);
                    tasks.spawn(async move { serve.await.map_err(ServeError::Grpc) });
                }
            }
            Some(bound)
        }
        None => None,
    };
    tokio::spawn(reload_on_change(
        kms.clone(),
        tls,
        config.policy_file.clone(),
        shutdown_rx.clone(),
    ));

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
    tokio::spawn(deletion_sweeper(
        kms.clone(),
        config.deletion_sweep_interval,
        shutdown_rx,
    ));

    Ok(RunningDaemon {
        kms,
        tcp_addr,
        unix_path,
        admin_addr,
        metrics_addr,
        shutdown,
        tasks,
    })
}

/// Binds an HTTP listener (admin API, or metrics and health) and serves
/// `router` on it until shutdown; returns the bound address.
async fn serve_http(
    listen: SocketAddr,
    router: axum::Router,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut JoinSet<Result<(), ServeError>>,
) -> Result<SocketAddr, StartError> {
    let failed = |source| StartError::Listen {
        address: listen.to_string(),
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(failed)?;
    let bound = listener.local_addr().map_err(failed)?;
    let stop = wait_for_shutdown(shutdown.clone());
    tasks.spawn(async move {
        http::serve(listener, router, stop)
            .await
            .map_err(ServeError::Http)
    });
    Ok(bound)
}
