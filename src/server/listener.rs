//! The accept loop: takes connections off the listening socket and gives each its own task
//! (a [`Handler`]), until the stop signal; then lets in-flight requests finish within a
//! grace period.
//!
//! A semaphore bounds the connections served at once: when they are all taken the loop
//! stops accepting, so overload waits in the kernel's backlog rather than exhausting
//! memory or file descriptors.

use super::connection::{Handler, Serving};
use super::security::Tls;
use crate::api::AppState;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 4096;
/// How long in-flight requests may run after the stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// The pause after a failed accept (EMFILE and friends), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub struct Listener {
    tcp: TcpListener,
    serving: Arc<Serving>,
    permits: Arc<Semaphore>,
    /// Every connection's task, to wait for them at the end.
    connections: TaskTracker,
}

impl Listener {
    pub fn new(tcp: TcpListener, state: Arc<AppState>, tls: Option<Arc<Tls>>) -> Listener {
        Listener {
            tcp,
            serving: Arc::new(Serving {
                state,
                http: http_settings(),
                tls,
                stop: CancellationToken::new(),
            }),
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            connections: TaskTracker::new(),
        }
    }

    /// Serves until `stop` completes, then stops accepting and waits (within the grace
    /// period) for the connections to finish what they are doing.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        tokio::select! {
            _ = self.accept_loop() => {}
            _ = stop => {}
        }
        let Listener {
            tcp,
            serving,
            connections,
            ..
        } = self;
        // Closed now, so new clients are refused at once instead of queueing unanswered.
        drop(tcp);
        serving.stop.cancel();
        connections.close();
        tracing::info!(
            "waiting up to {}s for in-flight requests",
            SHUTDOWN_GRACE.as_secs()
        );
        tokio::select! {
            _ = connections.wait() => tracing::info!("all connections closed"),
            _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("grace period over; closing remaining connections"),
        }
    }

    async fn accept_loop(&self) {
        // The semaphore is never closed, so acquiring only ends the loop in theory.
        while let Ok(permit) = self.permits.clone().acquire_owned().await {
            let (stream, peer) = self.accept().await;
            let handler = Handler {
                serving: self.serving.clone(),
                peer,
            };
            self.connections.spawn(async move {
                handler.run(stream).await;
                drop(permit);
            });
        }
    }

    async fn accept(&self) -> (TcpStream, SocketAddr) {
        loop {
            match self.tcp.accept().await {
                Ok(accepted) => return accepted,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

/// HTTP/1.1 with keep-alive and HTTP/2, both with timers for their timeouts.
fn http_settings() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(60))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    builder
}
