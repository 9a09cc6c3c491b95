//! The accept loop: takes connections off the listening socket and gives each its own task
//! (a [`Handler`]), until the stop signal; then lets in-flight requests finish within a
//! grace period.
//!
//! Every connection is accepted at once and then [admitted](super::admission) or answered
//! 503: the loop never stops accepting to wait for room, because a connection left in the
//! kernel's backlog is a client waiting without knowing why (and with the backlog full,
//! every client waits). The descriptors this needs are kept free by the connection maximum
//! (see [`super::limits`]).

use super::activity::Activity;
use super::admission::{Admission, Refused};
use super::connection::{Handler, Serving};
use super::security::Tls;
use crate::api::AppState;
use crate::config::{Connections, Sendfile};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long in-flight requests may run after the stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// The pause after a failed accept (EMFILE and friends), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub struct Listener {
    tcp: TcpListener,
    serving: Arc<Serving>,
    admission: Arc<Admission>,
    /// Every connection's task, to wait for them at the end.
    connections: TaskTracker,
}

impl Listener {
    /// `max_connections` in all, at most `limits.per_client` (0: any number) from one
    /// client.
    pub fn new(
        tcp: TcpListener,
        state: Arc<AppState>,
        tls: Option<Arc<Tls>>,
        limits: Connections,
        max_connections: usize,
        sendfile: Sendfile,
    ) -> Listener {
        Listener {
            tcp,
            admission: Admission::new(max_connections, limits.per_client),
            serving: Arc::new(Serving {
                state,
                http: http_settings(),
                tls,
                limits,
                sendfile,
                stop: CancellationToken::new(),
            }),
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
        loop {
            let (stream, peer) = self.accept().await;
            let activity = Arc::new(Activity::new());
            match self.admission.admit(peer.ip(), &activity) {
                Ok(ticket) => {
                    let handler = Handler {
                        serving: self.serving.clone(),
                        peer,
                        activity,
                        ticket,
                    };
                    self.connections.spawn(handler.run(stream));
                }
                Err(why) => self.overflow(stream, peer, activity, why),
            }
        }
    }

    /// A connection that found no place: when the daemon is full and some connection is
    /// idle, that one is asked to close and the newcomer waits a moment for its place;
    /// otherwise, or when the wait is in vain, the newcomer is refused.
    fn overflow(&self, stream: TcpStream, peer: SocketAddr, activity: Arc<Activity>, why: Refused) {
        // Out of refusals too: closed as it is, without spending anything more on it.
        let Some(permit) = self.admission.refusal_permit() else {
            return;
        };
        let evicted = match why {
            Refused::Full => self.admission.evict_one(),
            Refused::Client => None,
        };
        let admission = self.admission.clone();
        let tls = self.serving.tls.is_some();
        let serving = self.serving.clone();
        self.connections.spawn(async move {
            let admitted = match evicted {
                Some(place) => admission.admit_soon(peer.ip(), &activity, place).await,
                None => Err(why),
            };
            match admitted {
                Ok(ticket) => {
                    drop(permit);
                    let handler = Handler {
                        serving,
                        peer,
                        activity,
                        ticket,
                    };
                    handler.run(stream).await;
                }
                Err(why) => {
                    admission.refuse(stream, why, tls).await;
                    drop(permit);
                }
            }
        });
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

/// Bytes hyper reads from an HTTP/1 connection at most at once (the bound of its read
/// buffer, which also bounds a request head). hyper's default, 400 KiB, took a `recv` per
/// 400 KiB of a pushed blob (650 per 256 MiB); at 1 MiB a fast client's upload comes in
/// 1 MiB reads, the size of an upload's batch (`registry::uploads`).
const HTTP1_READ_BUFFER: usize = 1 << 20;

/// HTTP/1.1 with keep-alive, and HTTP/2.
fn http_settings() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The connection's watchdog times request heads: hyper's timer would also cut
        // keep-alive idling short, and does not start before the protocol is known.
        .header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(HTTP1_READ_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    builder
}
