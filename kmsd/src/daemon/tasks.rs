//! Background tasks: readiness and the self-probe, deletion and rotation
//! sweeps, key counts, and the systemd watchdog.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tonic_health::{ServingStatus, server::HealthReporter};

use super::listen::wait_for_shutdown;
use crate::{error::KmsError, service::Kms};

const SERVICE: &str = "kms.v1.KeyManagement";

/// Runs the self-probe every `interval` (and every second while the
/// backend is degraded or kmsd not ready, so recovery is seen quickly),
/// keeps `grpc.health.v1` in step with readiness (SERVING while kmsd can
/// serve what it is asked) and the `kmsd_backend_degraded` gauge current.
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
                report_status(&reporter, ServingStatus::NotServing).await;
                return;
            }
        }
        let unwell = kms.readiness().is_err() || kms.degraded().is_some();
        let due = last_probe.is_none_or(|t| t.elapsed() >= interval)
            || unwell && last_probe.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due && kms.lifecycle().active().is_ok() {
            last_probe = Some(Instant::now());
            let _ = kms.self_probe().await;
        }
        kms.degraded();
        let status = readiness_status(&kms);
        if serving != Some(status) {
            serving = Some(status);
            report_status(&reporter, status).await;
        }
    }
}

fn readiness_status(kms: &Kms) -> ServingStatus {
    match kms.readiness() {
        Ok(()) => ServingStatus::Serving,
        Err(_) => ServingStatus::NotServing,
    }
}

async fn report_status(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    reporter.set_service_status(SERVICE, status).await;
}

/// Registers `grpc.health.v1`'s answer before any listener serves, so that
/// a Check racing the first pass of [`readiness_loop`] finds kmsd's
/// readiness rather than "service not registered" (NOT_FOUND).
pub(crate) async fn report_initial_readiness(kms: &Kms, reporter: &HealthReporter) {
    report_status(reporter, readiness_status(kms)).await;
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

/// Rotates keys whose automatic rotation is due. Every kmsd runs it; the
/// backend makes each due key rotate once (backend/rotation.rs).
pub(crate) async fn rotation_sweeper(kms: Kms, every: Duration, stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    // A sweep that overran (a slow Vault) is not followed by a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wait_for_shutdown(stop.clone()) => return,
        }
        match kms.sweep_rotations().await {
            Ok(_) | Err(KmsError::NotRunning(_)) => {}
            Err(e) => tracing::error!(error = %e, "rotation sweep failed"),
        }
    }
}

/// Persists this node's usage figures every `every` (and reads the other
/// nodes'); the last flush happens when the daemon stops
/// ([`super::RunningDaemon`]).
pub(crate) async fn usage_flusher(kms: Kms, every: Duration, stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    // The first tick is immediate, and the start has just loaded them.
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wait_for_shutdown(stop.clone()) => return,
        }
        flush_usage(&kms).await;
    }
}

/// One flush of the usage figures, failures logged.
pub(crate) async fn flush_usage(kms: &Kms) {
    match kms.flush_usage().await {
        Ok(()) | Err(KmsError::NotRunning(_)) => {}
        Err(e) => {
            tracing::warn!(error = %e, "usage figures could not be persisted; they stay in memory until the next flush")
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

/// Keeps the credential gauges current (the Vault token's time to live),
/// often enough for an alert to fire before the token expires.
pub(crate) async fn credential_gauges(kms: Kms, stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wait_for_shutdown(stop.clone()) => return,
        }
        let ttl = kms
            .lifecycle()
            .active()
            .ok()
            .and_then(|active| active.backend.credential_ttl());
        // -1: no credential that expires (the local backend, a root or
        // periodic token), so "expiring soon" alerts can exclude it.
        let seconds = ttl.map_or(-1, |ttl| i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        kms.metrics().vault_token_ttl.set(seconds);
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
