//! `kmsd serve`: load the configuration, start the daemon, wait for a
//! signal, drain.

use std::{
    io::{IsTerminal, Write},
    net::SocketAddr,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use anyhow::Context;
use clap::Args;
use tracing_subscriber::EnvFilter;

use super::{EXIT_CONFIG, output::say};
use crate::{
    clock::SystemClock,
    config::{
        BackendConfig, Config, LocalBackendConfig, LogConfig, LogFormat, RawAccessKey, RawConfig,
    },
    daemon::{self, ReloadHooks},
};

/// Flags of `kmsd serve`. Every flag also reads an environment variable;
/// flags win over the environment, which wins over the config file.
#[derive(Debug, Clone, Args)]
pub(crate) struct ServeArgs {
    /// TOML configuration file (docs/configuration.md).
    #[arg(long, short, env = "KMSD_CONFIG")]
    config: Option<PathBuf>,
    /// Development mode: a local backend under --data-dir, a default key
    /// named "default", a unix socket in the data directory, TCP on
    /// 127.0.0.1:7373 and the admin REST API on 127.0.0.1:7374 with access
    /// key "admin", secret key "admin". Needs no config file. Keys are not
    /// sealed.
    #[arg(long)]
    dev: bool,
    /// Where --dev keeps its keys and socket.
    #[arg(long, env = "KMSD_DATA_DIR", default_value = "kmsd-data")]
    data_dir: PathBuf,
    /// Serve gRPC on this unix socket.
    #[arg(long, env = "KMSD_UNIX_SOCKET")]
    unix_socket: Option<PathBuf>,
    /// Serve gRPC on this TCP address (mutual TLS per [server.tls], or
    /// plaintext with danger_plaintext_tcp).
    #[arg(long, env = "KMSD_TCP")]
    tcp: Option<SocketAddr>,
    /// Serve /metrics, /health/live and /health/ready on this address.
    #[arg(long, env = "KMSD_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Serve the admin REST API (AWS SigV4) on this address.
    #[arg(long, env = "KMSD_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Add an admin access key with this id; its secret comes from
    /// --admin-secret-key-file or --admin-secret-key-env.
    #[arg(long, env = "KMSD_ADMIN_ACCESS_KEY")]
    admin_access_key: Option<String>,
    /// A file holding the secret key of --admin-access-key.
    #[arg(long, env = "KMSD_ADMIN_SECRET_KEY_FILE")]
    admin_secret_key_file: Option<PathBuf>,
    /// The name of an environment variable holding the secret key of
    /// --admin-access-key.
    #[arg(long, env = "KMSD_ADMIN_SECRET_KEY_ENV")]
    admin_secret_key_env: Option<String>,
    /// Use the local backend with this key directory.
    #[arg(long, env = "KMSD_KEY_DIR")]
    key_dir: Option<PathBuf>,
    /// The key used when a request names none.
    #[arg(long, env = "KMSD_DEFAULT_KEY_ID")]
    default_key_id: Option<String>,
    /// Log filter, e.g. "info" or "kmsd=debug" (RUST_LOG wins).
    #[arg(long, env = "KMSD_LOG_LEVEL")]
    log_level: Option<String>,
    /// Log format.
    #[arg(long, env = "KMSD_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Where changes made through the admin API are persisted (see
    /// docs/configuration.md).
    #[arg(long, env = "KMSD_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Forget the runtime state saved by the admin API and apply the config
    /// file's backend.
    #[arg(long)]
    reset_runtime_state: bool,
    /// Validate the configuration, print a summary and exit.
    #[arg(long)]
    check_config: bool,
}

pub(crate) fn run(args: ServeArgs) -> ExitCode {
    let (config, dev_admin) = match load(&args) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.check_config {
        let printed = super::output::print_line("configuration OK")
            .and_then(|()| super::output::print_line(format_args!("{config:#?}")));
        return match printed {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => ExitCode::FAILURE,
            _ => ExitCode::SUCCESS,
        };
    }
    let set_log_filter = init_tracing(&config.log);
    if let Err(e) = crate::hardening::harden_process(config.mlock) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dev = args.dev.then_some(DevInfo { admin: dev_admin });
    let reset_runtime_state = args.reset_runtime_state;
    // SIGHUP and Admin Reload read the file and the flags again, as here.
    let reload = ReloadHooks {
        load_config: Box::new(move || {
            load(&args)
                .map(|(config, _)| config)
                .map_err(|e| format!("{e:#}"))
        }),
        set_log_filter,
    };
    match runtime.block_on(serve(config, dev, reset_runtime_state, reload)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What `--dev` set up that the startup banner shows.
#[derive(Debug)]
struct DevInfo {
    /// The admin access key dev mode added, and its secret file.
    admin: Option<(String, PathBuf)>,
}

/// The development admin credentials, as in the RustFS examples, so their
/// `awscurl --access_key admin --secret_key admin` commands work unchanged.
const DEV_ADMIN_ACCESS_KEY: &str = "admin";
const DEV_ADMIN_SECRET_KEY: &str = "admin";

fn load(args: &ServeArgs) -> anyhow::Result<(Config, Option<(String, PathBuf)>)> {
    let mut raw = match &args.config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    // Before the dev defaults, which add their own key only if none is set.
    apply_admin_flags(&mut raw, args)?;
    let mut dev_admin = None;
    if args.dev {
        dev_admin = apply_dev_defaults(&mut raw, &args.data_dir)?;
    }
    if let Some(path) = &args.unix_socket {
        raw.server.unix_socket = Some(path.clone());
    }
    if let Some(addr) = args.tcp {
        raw.server.tcp = Some(addr);
    }
    if let Some(key_dir) = &args.key_dir {
        match &mut raw.backend {
            Some(BackendConfig::Local(local)) => local.key_dir = key_dir.clone(),
            Some(BackendConfig::Vault(_)) => {
                anyhow::bail!("--key-dir applies to the local backend, not vault")
            }
            None => {
                raw.backend = Some(BackendConfig::Local(LocalBackendConfig {
                    key_dir: key_dir.clone(),
                    default_key_id: None,
                    create_default_key: None,
                    sealing: None,
                }));
            }
        }
    }
    if let Some(id) = &args.default_key_id {
        match &mut raw.backend {
            Some(BackendConfig::Local(local)) => local.default_key_id = Some(id.clone()),
            Some(BackendConfig::Vault(vault)) => vault.default_key_id = Some(id.clone()),
            None => anyhow::bail!(
                "--default-key-id needs a backend (--key-dir, --dev or a config file)"
            ),
        }
    }
    if let Some(dir) = &args.state_dir {
        raw.server.state_dir = Some(dir.clone());
    }
    if let Some(level) = &args.log_level {
        raw.log.level = Some(level.clone());
    }
    if let Some(format) = args.log_format {
        raw.log.format = Some(format);
    }
    Ok((Config::from_raw(raw)?, dev_admin))
}

fn apply_admin_flags(raw: &mut RawConfig, args: &ServeArgs) -> anyhow::Result<()> {
    if let Some(addr) = args.metrics_listen {
        raw.metrics.listen = Some(addr);
    }
    if let Some(addr) = args.admin_listen {
        raw.admin.listen = Some(addr);
    }
    let secret = (&args.admin_secret_key_file, &args.admin_secret_key_env);
    match (&args.admin_access_key, secret) {
        (None, (None, None)) => {}
        (Some(access_key), (Some(_), None) | (None, Some(_))) => {
            // The flag's key replaces one of the same id from the file.
            raw.admin
                .access_keys
                .retain(|k| k.access_key != *access_key);
            raw.admin.access_keys.push(RawAccessKey {
                access_key: access_key.clone(),
                secret_key_file: args.admin_secret_key_file.clone(),
                secret_key_env: args.admin_secret_key_env.clone(),
            });
        }
        (Some(_), _) => anyhow::bail!(
            "--admin-access-key needs exactly one of --admin-secret-key-file, --admin-secret-key-env"
        ),
        (None, _) => anyhow::bail!(
            "--admin-secret-key-file and --admin-secret-key-env need --admin-access-key"
        ),
    }
    Ok(())
}

fn apply_dev_defaults(
    raw: &mut RawConfig,
    data_dir: &Path,
) -> anyhow::Result<Option<(String, PathBuf)>> {
    if !data_dir.exists() {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        // The socket lives here; only this user needs to reach it.
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", data_dir.display()))?;
    }
    let data_dir = data_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", data_dir.display()))?;
    if raw.backend.is_none() {
        raw.backend = Some(BackendConfig::Local(LocalBackendConfig {
            key_dir: data_dir.join("keys"),
            default_key_id: Some("default".into()),
            create_default_key: Some(true),
            sealing: None,
        }));
    }
    if raw.server.unix_socket.is_none() {
        raw.server.unix_socket = Some(data_dir.join("kmsd.sock"));
    }
    if raw.server.tcp.is_none() {
        raw.server.tcp = Some(SocketAddr::from(([127, 0, 0, 1], 7373)));
        if raw.server.tls.is_none() {
            raw.server.danger_plaintext_tcp = true;
        }
    }
    if raw.server.state_dir.is_none() {
        raw.server.state_dir = Some(data_dir.join("state"));
    }
    // Inline Vault tokens given to the admin API (the RustFS examples do)
    // are sealed in the state directory; dev mode keeps the key next to it,
    // which protects nothing but keeps the flow the same as production's.
    if raw.server.state_sealing.is_none() {
        let key_file = data_dir.join("state-sealing.key");
        if !key_file.exists() {
            let key = crate::crypto::random_array::<32>()
                .map_err(|e| anyhow::anyhow!("cannot generate {}: {e}", key_file.display()))?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key_file)
                .with_context(|| format!("cannot create {}", key_file.display()))?;
            file.write_all(&key)
                .with_context(|| format!("cannot write {}", key_file.display()))?;
        }
        raw.server.state_sealing = Some(crate::config::SealingConfig {
            passphrase_file: None,
            passphrase_env: None,
            key_file: Some(key_file),
        });
    }
    // The admin API may name files under the data directory (a key_dir
    // for the local backend, as the RustFS configure examples do).
    if raw.admin.allowed_dirs.is_empty() {
        raw.admin.allowed_dirs.push(data_dir.clone());
    }
    if raw.admin.listen.is_none() {
        raw.admin.listen = Some(SocketAddr::from(([127, 0, 0, 1], 7374)));
    }
    if !raw.admin.access_keys.is_empty() {
        return Ok(None);
    }
    // A file, like every other secret; an operator may put another secret
    // in it, which later starts keep.
    let secret_file = data_dir.join("admin-secret");
    if !secret_file.exists() {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret_file)
            .with_context(|| format!("cannot create {}", secret_file.display()))?;
        writeln!(file, "{DEV_ADMIN_SECRET_KEY}")
            .with_context(|| format!("cannot write {}", secret_file.display()))?;
    }
    raw.admin.access_keys.push(RawAccessKey {
        access_key: DEV_ADMIN_ACCESS_KEY.into(),
        secret_key_file: Some(secret_file.clone()),
        secret_key_env: None,
    });
    Ok(Some((DEV_ADMIN_ACCESS_KEY.into(), secret_file)))
}

/// Replaces the log filter of the subscriber [`init_tracing`] installed.
type SetLogFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

fn init_tracing(log: &LogConfig) -> SetLogFilter {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match log.format {
        LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string()))
        }
        LogFormat::Json => {
            let builder = builder.json().with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string()))
        }
    }
}

async fn serve(
    config: Config,
    dev: Option<DevInfo>,
    reset_runtime_state: bool,
    reload: ReloadHooks,
) -> anyhow::Result<()> {
    let running = daemon::start_with(
        config.clone(),
        Arc::new(SystemClock),
        reset_runtime_state,
        Some(reload),
    )
    .await?;
    announce(&config, &running, dev.as_ref());
    // Tell systemd (Type=notify) we serve; a no-op elsewhere.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let stop = running.shutdown_sender();
    let grace = config.shutdown_grace;
    let (signalled_tx, signalled) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: draining requests in flight"
        );
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        let _ = stop.send(true);
        let _ = signalled_tx.send(());
    });
    let drained = running.wait();
    tokio::pin!(drained);
    tokio::select! {
        result = &mut drained => result.context("a listener failed")?,
        () = async {
            // The grace period starts at the signal, not at startup.
            let _ = signalled.await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_secs = grace.as_secs(), "requests still in flight after the grace period; exiting anyway");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

fn announce(config: &Config, running: &daemon::RunningDaemon, dev: Option<&DevInfo>) {
    let mut endpoints = Vec::new();
    if let Some(path) = &running.unix_path {
        endpoints.push(format!("unix:{}", path.display()));
    }
    if let Some(addr) = running.tcp_addr {
        endpoints.push(format!("http://{addr}"));
    }
    let admin = running.admin_addr.map(|addr| format!("http://{addr}"));
    tracing::info!(endpoints = ?endpoints, admin = ?admin, version = env!("CARGO_PKG_VERSION"), "kmsd ready");
    if let Some(dev) = dev {
        say!("kmsd {} (development mode)", env!("CARGO_PKG_VERSION"));
        if let Some(backend) = &config.backend {
            if let crate::config::BackendKindSettings::Local { key_dir, .. } = &backend.kind {
                say!(
                    "  keys:        {} (local backend, not sealed: for development only)",
                    key_dir.display()
                );
            }
            if let Some(id) = &backend.default_key_id {
                say!("  default key: {id}");
            }
        }
        for endpoint in &endpoints {
            say!("  listening:   {endpoint}");
        }
        if let Some(admin) = &admin {
            say!(
                "  admin API:   {admin}{}/kms/ (AWS SigV4, service s3)",
                crate::http::ADMIN_PREFIX
            );
        }
        // The secret is shown only while it is the well-known dev default;
        // an operator's own secret stays in its file.
        let default_secret = dev.admin.as_ref().is_some_and(|(_, file)| {
            std::fs::read_to_string(file)
                .is_ok_and(|s| s.trim_end_matches(['\n', '\r']) == DEV_ADMIN_SECRET_KEY)
        });
        if let Some((access_key, secret_file)) = &dev.admin {
            if default_secret {
                say!(
                    "  admin keys:  access key {access_key:?}, secret key {DEV_ADMIN_SECRET_KEY:?} (development only; change it in {})",
                    secret_file.display()
                );
            } else {
                say!(
                    "  admin keys:  access key {access_key:?}, secret key in {}",
                    secret_file.display()
                );
            }
        }
        if let Some(first) = endpoints.first() {
            say!("try it:  cargo run -p kmsd -- datakey --endpoint {first}");
        }
        if let (Some(admin), true) = (&admin, default_secret) {
            say!(
                "         awscurl --service s3 --region us-east-1 --access_key {DEV_ADMIN_ACCESS_KEY} --secret_key {DEV_ADMIN_SECRET_KEY} {admin}/rustfs/admin/v3/kms/status"
            );
        }
    }
}

async fn wait_for_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
