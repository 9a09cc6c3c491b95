//! systemd's notification protocol (`Type=notify`): READY=1 once the listener is bound and
//! storage is writable, STATUS= lines, WATCHDOG=1 pings while the storage is healthy,
//! STOPPING=1. Without NOTIFY_SOCKET every call does nothing.

use crate::registry::Registry;
use sd_notify::NotifyState;
use std::sync::Arc;
use std::time::Duration;

fn send(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

pub fn ready(text: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(text)]);
}

pub fn reloading() {
    send(&[
        NotifyState::Reloading,
        NotifyState::Status("reloading configuration"),
    ]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Pings the watchdog at half its interval when systemd asked for it (WATCHDOG_USEC), while
/// the storage passes the health check `/readyz` answers with: a daemon that cannot write
/// its store is restarted by systemd, as one that hangs is.
pub fn spawn_watchdog(registry: Arc<Registry>) -> Option<tokio::task::JoinHandle<()>> {
    // As sd_watchdog_enabled(3): WATCHDOG_PID, when set, must name this process.
    let usec = std::env::var("WATCHDOG_USEC")
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    if usec == 0 {
        return None;
    }
    let period = Duration::from_micros(usec / 2).max(Duration::from_millis(100));
    tracing::info!("systemd watchdog every {:?}", period);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            match registry.storage_health().await {
                Ok(()) => send(&[NotifyState::Watchdog]),
                // Logged by the check; systemd acts when pings stop.
                Err(e) => status(&format!("storage unhealthy: {e}")),
            }
        }
    }))
}
