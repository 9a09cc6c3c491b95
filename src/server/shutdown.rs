//! Stopping: SIGTERM (systemd's stop) and SIGINT (Ctrl-C at a terminal) are one event, the
//! [`StopSignal`], after which the [listener](super::listener) accepts nothing more and
//! gives in-flight requests a grace period.
//!
//! The handlers are installed before the daemon says READY=1, so a stop that systemd sends
//! the moment the daemon is up is a graceful one, not the default action (exit at once).

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Either stop signal, whichever comes first.
pub struct StopSignal {
    term: Signal,
    int: Signal,
}

impl StopSignal {
    pub fn install() -> Result<StopSignal, String> {
        let term =
            signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
        let int =
            signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
        Ok(StopSignal { term, int })
    }

    /// Waits for SIGTERM or SIGINT and logs which one came.
    pub async fn recv(mut self) {
        let name = tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        };
        tracing::info!("{name}: stopping");
    }
}
