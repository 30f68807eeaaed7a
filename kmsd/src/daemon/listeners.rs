//! Binding the listeners and spawning their servers: the admin REST API,
//! the metrics listener, gRPC on TCP and on the unix socket.

use std::{net::SocketAddr, path::Path};

use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use tonic_health::pb::health_server::{Health, HealthServer};

use super::{
    ServeError, StartError,
    accept::Gate,
    listen::{self, bind_unix, grpc_incoming, plaintext, server, unix_incoming, wait_for_shutdown},
    uds_authority,
};
use crate::{
    cluster::Peers,
    config::{AdminConfig, Config, ListenerLimits},
    grpc,
    http::{self, auth::AdminAuth, sigv4::HostPolicy},
    service::Kms,
    tls::ReloadableTls,
};

/// Binds listeners and spawns their servers into `tasks`.
pub(super) struct Listeners<'a> {
    pub(super) kms: &'a Kms,
    pub(super) limits: ListenerLimits,
    pub(super) shutdown: &'a watch::Receiver<bool>,
    pub(super) tasks: JoinSet<Result<(), ServeError>>,
}

impl Listeners<'_> {
    /// The admin REST API; returns its bound address.
    pub(super) async fn admin(
        &mut self,
        listen: SocketAddr,
        auth: AdminAuth,
        settings: &AdminConfig,
        tls: Option<&ReloadableTls>,
        max_connections: usize,
        config: &Config,
    ) -> Result<SocketAddr, StartError> {
        let (listener, bound) = bind_tcp(listen).await?;
        let hosts = HostPolicy::new(
            settings
                .hosts
                .clone()
                .unwrap_or_else(|| default_hosts(bound)),
            bound.port(),
        );
        tracing::info!(hosts = ?hosts.entries(), tls = tls.is_some(), "admin API: requests must be signed for one of these hosts");
        let router = http::router(
            self.kms.clone(),
            auth.with_hosts(hosts),
            Peers::new(config.cluster.clone()),
        );
        let gate = Gate::new("admin", max_connections, &self.limits);
        let tls = tls.map(ReloadableTls::server_config);
        let stop = self.shutdown.clone();
        self.tasks.spawn(async move {
            listen::serve_http(listener, gate, tls, router, stop)
                .await
                .map_err(ServeError::Http)
        });
        Ok(bound)
    }

    /// The public routes alone (`[metrics] listen`).
    pub(super) async fn metrics(
        &mut self,
        listen: SocketAddr,
        max_connections: usize,
    ) -> Result<(), StartError> {
        let (listener, _) = bind_tcp(listen).await?;
        let gate = Gate::new("metrics", max_connections, &self.limits);
        let router = http::public_router(self.kms.clone());
        let stop = self.shutdown.clone();
        self.tasks.spawn(async move {
            listen::serve_http(listener, gate, None, router, stop)
                .await
                .map_err(ServeError::Http)
        });
        Ok(())
    }

    /// gRPC on TCP, with TLS unless `danger_plaintext_tcp`; returns the
    /// bound address.
    pub(super) async fn grpc_tcp(
        &mut self,
        addr: SocketAddr,
        tls: Option<&ReloadableTls>,
        max_connections: usize,
        health: &HealthServer<impl Health>,
    ) -> Result<SocketAddr, StartError> {
        let (listener, bound) = bind_tcp(addr).await?;
        let routes = grpc::routes(self.kms, health.clone())?;
        let stop = wait_for_shutdown(self.shutdown.clone());
        let server = server().add_routes(routes);
        let gate = Gate::new("grpc", max_connections, &self.limits);
        match tls {
            Some(tls) => {
                let incoming = grpc_incoming(
                    listener,
                    gate,
                    self.shutdown.clone(),
                    listen::tls(tls.server_config()),
                );
                let serve = server.serve_with_incoming_shutdown(incoming, stop);
                self.tasks
                    .spawn(async move { serve.await.map_err(ServeError::Grpc) });
            }
            None => {
                tracing::warn!(%bound, "serving gRPC over PLAINTEXT TCP (danger_plaintext_tcp): anyone who can reach this port can use every key");
                let incoming = grpc_incoming(listener, gate, self.shutdown.clone(), plaintext);
                let serve = server.serve_with_incoming_shutdown(incoming, stop);
                self.tasks
                    .spawn(async move { serve.await.map_err(ServeError::Grpc) });
            }
        }
        Ok(bound)
    }

    /// gRPC on the unix socket.
    pub(super) fn grpc_unix(
        &mut self,
        path: &Path,
        mode: u32,
        config: &Config,
        health: &HealthServer<impl Health>,
    ) -> Result<(), StartError> {
        let listener = bind_unix(path, mode).map_err(|source| StartError::Listen {
            address: format!("unix:{}", path.display()),
            source,
        })?;
        let routes = grpc::routes(self.kms, health.clone())?;
        let incoming = uds_authority::fix_incoming(unix_incoming(
            listener,
            config.listen.unix_allowed.clone(),
            self.shutdown.clone(),
        ));
        let stop = wait_for_shutdown(self.shutdown.clone());
        let serve = server()
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, stop);
        self.tasks
            .spawn(async move { serve.await.map_err(ServeError::Grpc) });
        Ok(())
    }
}

/// Binds a TCP listener; returns it with its bound address (port 0 picks
/// one).
async fn bind_tcp(listen: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let failed = |source| StartError::Listen {
        address: listen.to_string(),
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(failed)?;
    let bound = listener.local_addr().map_err(failed)?;
    Ok((listener, bound))
}

/// The hosts the admin API answers to unless `[admin] hosts` says: the
/// bound address, `localhost` and the machine's hostname (each with the
/// listener's port).
fn default_hosts(bound: SocketAddr) -> Vec<String> {
    let mut hosts = vec![bound.to_string(), "localhost".to_owned()];
    let uname = rustix::system::uname();
    if let Ok(name) = uname.nodename().to_str()
        && !name.is_empty()
    {
        hosts.push(name.to_owned());
    }
    hosts
}
