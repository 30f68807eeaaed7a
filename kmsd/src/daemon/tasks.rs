//! Background tasks: readiness and the self-probe, deletion sweeps, key
//! counts, and the systemd watchdog.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tonic_health::{ServingStatus, server::HealthReporter};

use super::listen::wait_for_shutdown;
use crate::{error::KmsError, service::Kms};

const SERVICE: &str = "kms.v1.KeyManagement";

/// Runs the self-probe every `interval` (and every second while not ready,
/// so recovery is seen quickly), and keeps `grpc.health.v1` in step with
/// readiness: SERVING only while the backend does real work.
pub(crate) async fn readiness_loop(
    kms: Kms,
    reporter: HealthReporter,
    interval: Duration,
    stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval.min(Duration::from_millis(500)));
    let mut last_probe: Option<Instant> = None;
    let mut serving = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wait_for_shutdown(stop.clone()) => {
                reporter.set_service_status("", ServingStatus::NotServing).await;
                reporter.set_service_status(SERVICE, ServingStatus::NotServing).await;
                return;
            }
        }
        let due = last_probe.is_none_or(|t| t.elapsed() >= interval)
            || kms.readiness().is_err()
                && last_probe.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due && kms.lifecycle().active().is_ok() {
            last_probe = Some(Instant::now());
            let _ = kms.self_probe().await;
        }
        let status = match kms.readiness() {
            Ok(()) => ServingStatus::Serving,
            Err(_) => ServingStatus::NotServing,
        };
        if serving != Some(status) {
            serving = Some(status);
            reporter.set_service_status("", status).await;
            reporter.set_service_status(SERVICE, status).await;
        }
    }
}

/// Destroys keys whose deletion window has passed.
pub(crate) async fn deletion_sweeper(kms: Kms, every: Duration, stop: watch::Receiver<bool>) {
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

/// Keeps the key-count gauges current.
pub(crate) async fn key_counts(kms: Kms, every: Duration, stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wait_for_shutdown(stop.clone()) => return,
        }
        if let Ok((enabled, disabled, pending)) = kms.count_keys().await {
            kms.metrics().set_keys(enabled, disabled, pending);
        }
    }
}

/// Pets systemd's watchdog while the runtime is alive, when the unit asks
/// for it (`WatchdogSec=`).
pub(crate) async fn watchdog(stop: watch::Receiver<bool>) {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_micros(usec) / 2);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wait_for_shutdown(stop.clone()) => return,
        }
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
    }
}
