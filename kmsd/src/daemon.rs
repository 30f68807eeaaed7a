//! Assembles and runs the daemon: backend, service, listeners, background
//! tasks. Tests start it in-process through [`start`]; the binary does the
//! same from `cli/serve.rs`.

use std::{
    io,
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use kms_client::SecretBytes;
use tokio::{
    net::{TcpListener, UnixListener},
    sync::watch,
    task::JoinSet,
};
use tokio_stream::{
    StreamExt,
    wrappers::{TcpListenerStream, UnixListenerStream},
};
use tonic::transport::Server;
use tonic_health::server::HealthReporter;
use tower::util::MapResponseLayer;

use crate::{
    backend::{
        Backend, KeyBackend,
        local::{LocalBackend, LocalConfig, LocalError, SealingSecret},
    },
    clock::Clock,
    config::{BackendKindSettings, BackendSettings, Config, SealingSource},
    error::KmsError,
    grpc,
    lifecycle::{Active, Lifecycle},
    persist::RuntimeStore,
    service::Kms,
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
    /// The reflection service could not be built.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Why a backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The local key directory could not be opened.
    #[error(transparent)]
    Local(#[from] LocalError),
    /// The sealing secret could not be read.
    #[error("cannot read the sealing secret ({source_desc}): {reason}")]
    SealingSecret {
        /// Where it was to come from.
        source_desc: String,
        /// Why it could not be used.
        reason: String,
    },
    /// The default key could not be created or read.
    #[error("the default key is not usable: {0}")]
    DefaultKey(#[source] KmsError),
    /// A background task failed.
    #[error("backend setup task failed: {0}")]
    Task(String),
}

/// Builds the backend described by `settings`. Secrets named by path or
/// environment variable are read now, so a changed secret file is picked up
/// by the next build.
pub async fn build_backend(
    settings: &BackendSettings,
    clock: Arc<dyn Clock>,
) -> Result<Active, BuildError> {
    let (backend, summary) = match &settings.kind {
        BackendKindSettings::Local { key_dir, sealing } => {
            let sealing = sealing.as_ref().map(read_sealing_secret).transpose()?;
            let config = LocalConfig {
                key_dir: key_dir.clone(),
                sealing,
            };
            let backend = tokio::task::spawn_blocking(move || LocalBackend::open(config, clock))
                .await
                .map_err(|e| BuildError::Task(e.to_string()))??;
            let summary = vec![
                ("key_dir", backend.key_dir().display().to_string()),
                ("sealed", backend.is_sealed().to_string()),
            ];
            (Backend::Local(backend), summary)
        }
    };
    Ok(Active {
        backend: Arc::new(backend),
        default_key_id: settings.default_key_id.clone(),
        summary,
    })
}

/// Creates the default key if it is missing and the settings ask for it,
/// and checks that it can be described otherwise.
pub async fn ensure_default_key(
    backend: &Backend,
    settings: &BackendSettings,
) -> Result<(), BuildError> {
    let Some(default) = &settings.default_key_id else {
        return Ok(());
    };
    match backend.describe_key(default).await {
        Ok(_) => Ok(()),
        Err(KmsError::KeyNotFound(_)) if settings.create_default_key => {
            backend
                .create_key(crate::backend::NewKey {
                    key_id: default.clone(),
                    description: "default key, created by kmsd at startup".into(),
                    tags: Default::default(),
                })
                .await
                .map_err(BuildError::DefaultKey)?;
            tracing::info!(key_id = %default, "created the default key");
            Ok(())
        }
        Err(e) => Err(BuildError::DefaultKey(e)),
    }
}

fn read_sealing_secret(source: &SealingSource) -> Result<SealingSecret, BuildError> {
    let fail = |reason: String| BuildError::SealingSecret {
        source_desc: format!("{source:?}"),
        reason,
    };
    match source {
        SealingSource::PassphraseFile(path) => {
            let mut bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
            // Editors add a final newline; it is not part of the passphrase.
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            let secret = SecretBytes::new(bytes);
            if secret.is_empty() {
                return Err(fail("the file is empty".into()));
            }
            Ok(SealingSecret::Passphrase(secret))
        }
        SealingSource::PassphraseEnv(var) => {
            let value =
                std::env::var_os(var).ok_or_else(|| fail("the variable is not set".into()))?;
            let secret = SecretBytes::new(value.into_encoded_bytes());
            if secret.is_empty() {
                return Err(fail("the variable is empty".into()));
            }
            Ok(SealingSecret::Passphrase(secret))
        }
        SealingSource::KeyFile(path) => {
            let secret = SecretBytes::new(std::fs::read(path).map_err(|e| fail(e.to_string()))?);
            if secret.len() < 32 {
                return Err(fail("a key file must hold at least 32 random bytes".into()));
            }
            Ok(SealingSecret::KeyFile(secret))
        }
    }
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
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<Result<(), tonic::transport::Error>>,
}

impl RunningDaemon {
    /// Stops accepting, lets requests in flight finish, and returns when
    /// every listener has closed.
    pub async fn shutdown(mut self) -> Result<(), tonic::transport::Error> {
        let _ = self.shutdown.send(true);
        self.join_all().await
    }

    /// Waits until the daemon stops (after [`Self::shutdown`] elsewhere).
    pub async fn wait(mut self) -> Result<(), tonic::transport::Error> {
        self.join_all().await
    }

    /// A handle that stops the daemon when `true` is sent.
    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    async fn join_all(&mut self) -> Result<(), tonic::transport::Error> {
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
    let kms = Kms::new(Lifecycle::new(Arc::clone(&clock), store), clock);
    kms.lifecycle()
        .initialize(config.backend_raw.clone())
        .await?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();

    let unix_path = match &config.listen.unix {
        Some((path, mode)) => {
            let listener = bind_unix(path, *mode).map_err(|source| StartError::Listen {
                address: format!("unix:{}", path.display()),
                source,
            })?;
            let routes = grpc::routes(&kms, health_service.clone())?;
            let incoming = UnixListenerStream::new(listener);
            let stop = wait_for_shutdown(shutdown_rx.clone());
            tasks.spawn(
                server()
                    .add_routes(routes)
                    .serve_with_incoming_shutdown(incoming, stop),
            );
            Some(path.clone())
        }
        None => None,
    };
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
            let incoming = TcpListenerStream::new(listener).map(|stream| {
                let stream = stream?;
                stream.set_nodelay(true)?;
                Ok::<_, io::Error>(stream)
            });
            let stop = wait_for_shutdown(shutdown_rx.clone());
            tasks.spawn(
                server()
                    .add_routes(routes)
                    .serve_with_incoming_shutdown(incoming, stop),
            );
            Some(bound)
        }
        None => None,
    };

    tokio::spawn(health_loop(
        kms.clone(),
        health_reporter,
        shutdown_rx.clone(),
    ));
    tokio::spawn(deletion_sweeper(
        kms.clone(),
        config.deletion_sweep_interval,
        shutdown_rx,
    ));

    Ok(RunningDaemon {
        kms,
        tcp_addr,
        unix_path,
        shutdown,
        tasks,
    })
}

/// A server with the layers every listener shares.
fn server()
-> Server<tower::layer::util::Stack<MapResponseLayer<OversizedFn>, tower::layer::util::Identity>> {
    Server::builder().layer(MapResponseLayer::new(
        grpc::oversized_as_resource_exhausted as OversizedFn,
    ))
}

type OversizedFn = fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body>;

async fn wait_for_shutdown(mut rx: watch::Receiver<bool>) {
    // An error means the sender is gone: shut down as well.
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Binds the unix socket, replacing a stale socket file left by a crash but
/// never one a live process still answers on.
fn bind_unix(path: &Path, mode: u32) -> io::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process is serving on this socket",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// Keeps `grpc.health.v1` in step with the backend: SERVING only while it
/// answers.
async fn health_loop(kms: Kms, reporter: HealthReporter, stop: watch::Receiver<bool>) {
    const SERVICE: &str = "kms.v1.KeyManagement";
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wait_for_shutdown(stop.clone()) => {
                reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
                reporter.set_service_status(SERVICE, tonic_health::ServingStatus::NotServing).await;
                return;
            }
        }
        let status = match kms.health().await {
            Ok(()) => tonic_health::ServingStatus::Serving,
            Err(e) => {
                tracing::warn!(error = %e, "health check failed");
                tonic_health::ServingStatus::NotServing
            }
        };
        reporter.set_service_status("", status).await;
        reporter.set_service_status(SERVICE, status).await;
    }
}

async fn deletion_sweeper(kms: Kms, every: Duration, stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wait_for_shutdown(stop.clone()) => return,
        }
        match kms.sweep_deletions().await {
            Ok(_) | Err(KmsError::NotRunning(_)) => {}
            Err(e) => tracing::error!(error = %e, "deletion sweep failed"),
        }
    }
}
