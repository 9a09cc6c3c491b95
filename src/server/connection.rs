//! One client connection, from the accepted socket to its close: the TLS handshake when
//! TLS is configured, then HTTP/1.1 or HTTP/2 (hyper, detected from the first bytes) with
//! every request handed to [`api::handle`], a watchdog that closes it when the client has
//! had its time (see [`super::activity`]), and a graceful end when the daemon stops or
//! needs the place for a newcomer.
//!
//! [`Conn`] is the byte stream hyper reads and writes. It is the one place that knows
//! whether the connection is plain TCP or TLS, so work that only applies to one of them
//! belongs there: on plain TCP, HTTP/1 requests are offered zero-copy sends of blobs
//! ([`api::sendfile`]), whose placeholder frames `Conn` turns into `sendfile(2)`.

use super::activity::{Activity, Overdue, Verdict};
use super::admission::Ticket;
use super::security::{Tls, TLS_HANDSHAKE_TIMEOUT};
use crate::api::sendfile::FileSends;
use crate::api::{self, AppState};
use crate::config::{Connections, Sendfile};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Once a connection is told to close, how long it may take before it is dropped if it has
/// no request in flight (a half-sent request head does not count).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What every connection shares: the registry's request state, the HTTP settings, TLS, the
/// time limits, and the token that tells connections the daemon is stopping.
pub struct Serving {
    pub state: Arc<AppState>,
    pub http: auto::Builder<TokioExecutor>,
    pub tls: Option<Arc<Tls>>,
    pub limits: Connections,
    pub sendfile: Sendfile,
    pub stop: CancellationToken,
}

/// Serves one admitted connection until the client closes it, it fails, its client runs
/// out of time, or the daemon stops (then in-flight requests finish first).
pub struct Handler {
    pub serving: Arc<Serving>,
    pub peer: SocketAddr,
    pub activity: Arc<Activity>,
    /// The connection's place among those admitted, freed when the handler ends.
    pub ticket: Ticket,
}

impl Handler {
    pub async fn run(self, stream: TcpStream) {
        if let Err(e) = self.serve(stream).await {
            tracing::debug!("connection from {} ended: {e}", self.peer);
        }
        drop(self.ticket);
    }

    async fn serve(&self, stream: TcpStream) -> Result<(), Error> {
        // Responses are written whole by hyper; waiting to coalesce them only adds latency.
        let _ = stream.set_nodelay(true);
        // A handshake in progress is no request either: eviction and stopping end it.
        let transport = tokio::select! {
            secured = self.secure(stream) => secured?,
            _ = self.activity.eviction.notified() => return Err("evicted during the TLS handshake".into()),
            _ = self.serving.stop.cancelled() => return Ok(()),
        };
        // For the watchdog's look at what the client has read; open while `conn` lives.
        let fd = transport.fd().as_raw_fd();
        let sends = match &transport {
            Transport::Plain(stream) if self.sends_files(stream) => {
                let activity = self.activity.clone();
                Some(FileSends::new(move || Box::new(activity.hold())))
            }
            _ => None,
        };
        let io = Conn {
            transport,
            activity: self.activity.clone(),
            sends: sends.clone(),
        };
        let state = self.serving.state.clone();
        let activity = self.activity.clone();
        let body_idle = self.serving.limits.body_idle_timeout;
        let peer = self.peer;
        let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let state = state.clone();
            let in_flight = activity.request();
            let sends = sends.clone();
            async move {
                let mut req = req.map(|body| api::body::Incoming::new(body, body_idle));
                // HTTP/2 frames bodies itself: only HTTP/1 sends placeholders as they are.
                if req.version() < http::Version::HTTP_2 {
                    if let Some(sends) = sends {
                        req.extensions_mut().insert(sends);
                    }
                }
                let response = api::handle(state, req, peer).await;
                // The body holds the request's count until it is sent whole (or dropped).
                let response = response.map(|body| {
                    body.map_frame(move |frame| {
                        let _in_flight = &in_flight;
                        frame
                    })
                });
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let conn = self
            .serving
            .http
            .serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let limits = &self.serving.limits;
        let watchdog = tokio::time::sleep(limits.check_every());
        tokio::pin!(watchdog);
        // Told to close: graceful shutdown asked, dropped at the next look if idle.
        let mut closing = false;
        loop {
            let why = tokio::select! {
                ended = conn.as_mut() => return ended,
                _ = self.serving.stop.cancelled(), if !closing => "the daemon is stopping".to_owned(),
                _ = self.activity.eviction.notified(), if !closing => {
                    "the daemon is full and this connection was idle the longest".to_owned()
                }
                _ = watchdog.as_mut() => match self.look(closing, fd) {
                    Look::DropNow(ended) => return ended,
                    Look::Close(why) => why,
                    Look::Again(after) => {
                        watchdog.as_mut().reset(Instant::now() + after);
                        continue;
                    }
                },
            };
            tracing::debug!("closing the connection from {}: {why}", self.peer);
            closing = true;
            conn.as_mut().graceful_shutdown();
            watchdog.as_mut().reset(Instant::now() + CLOSE_GRACE);
        }
    }

    /// Whether blobs go to this plain TCP connection with sendfile: with `auto`, when the
    /// client is on another host (see [`Sendfile::Auto`]).
    fn sends_files(&self, stream: &TcpStream) -> bool {
        match self.serving.sendfile {
            Sendfile::Always => true,
            Sendfile::Never => false,
            Sendfile::Auto => {
                let peer = self.peer.ip().to_canonical();
                let local = stream.local_addr().map(|a| a.ip().to_canonical());
                !peer.is_loopback() && local.map_or(true, |local| local != peer)
            }
        }
    }

    /// The watchdog's look at the connection (`closing`: a graceful close was asked; `fd`:
    /// its socket).
    fn look(&self, closing: bool, fd: RawFd) -> Look {
        let limits = &self.serving.limits;
        self.activity.socket_holds(|| unsent(fd));
        match self.activity.check(limits) {
            // A write has waited all this time, but the client did read some of it.
            Verdict::Close(Overdue::Reading) if self.activity.client_read_since(unsent(fd)) => {
                Look::Again(limits.check_every())
            }
            // Nothing is in flight that a graceful close would let finish: a request head is
            // not a request yet, and a client that does not read cannot be sent the rest.
            Verdict::Close(why @ (Overdue::Head | Overdue::Reading)) => {
                Look::DropNow(Err(why.describe(limits).into()))
            }
            _ if closing && self.activity.idleness().is_some() => Look::DropNow(Ok(())),
            Verdict::Close(why) if !closing => Look::Close(why.describe(limits)),
            Verdict::Close(_) => Look::Again(limits.check_every()),
            Verdict::LookAgainIn(after) => Look::Again(after),
        }
    }

    /// The TLS handshake, bounded in time so a client that stops halfway does not hold the
    /// connection; a plain connection as it is.
    async fn secure(&self, stream: TcpStream) -> Result<Transport, String> {
        let Some(tls) = &self.serving.tls else {
            return Ok(Transport::Plain(stream));
        };
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await {
            Ok(Ok(stream)) => Ok(Transport::Tls(Box::new(stream))),
            Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
            Err(_) => Err("TLS handshake timed out".into()),
        }
    }
}

/// What the watchdog found.
enum Look {
    /// End the connection now, with this outcome.
    DropNow(Result<(), Error>),
    /// Close it gracefully, for this reason.
    Close(String),
    /// Look again after this long.
    Again(Duration),
}

/// How the bytes travel.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl Transport {
    /// The TCP socket under it.
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Transport::Plain(s) => s.as_fd(),
            Transport::Tls(s) => s.get_ref().0.as_fd(),
        }
    }

    fn stream(&mut self) -> Pin<&mut dyn Stream> {
        match self {
            Transport::Plain(s) => Pin::new(s),
            Transport::Tls(s) => Pin::new(s.as_mut()),
        }
    }
}

/// The bytes a TCP socket holds for its peer: sent but not acknowledged, or not sent yet
/// (`SIOCOUTQ`). They go down as the client reads and its receive window opens.
/// `fd` must be a socket this connection keeps open across the call.
fn unsent(fd: RawFd) -> Option<u64> {
    let mut n: nix::libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int through the pointer, which is valid and
    // lives across the call; on a descriptor that is not a socket it fails, harmlessly.
    let r = unsafe { nix::libc::ioctl(fd, nix::libc::TIOCOUTQ, &mut n) };
    if r == 0 {
        u64::try_from(n).ok()
    } else {
        None
    }
}

/// A client connection's bytes, with the progress its watchdog needs recorded on the way.
pub struct Conn {
    transport: Transport,
    activity: Arc<Activity>,
    /// Zero-copy sends, on plain TCP.
    sends: Option<Arc<FileSends>>,
}

impl Conn {
    /// Notes whether a write got through or waits for the client to read.
    fn wrote<T>(&self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        let fd = self.transport.fd().as_raw_fd();
        self.activity.write(result.is_pending(), || unsent(fd));
        result
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = this.transport.stream().poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read();
        }
        result
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = match (&mut this.transport, &this.sends) {
            (Transport::Plain(s), Some(sends)) => sends.poll_send(s, cx, bufs),
            (transport, _) => transport.stream().poll_write_vectored(cx, bufs),
        };
        this.wrote(result)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.transport {
            // Always, on plain TCP: hyper then queues body frames as the slices they are
            // instead of copying them into its buffer, which zero-copy sends rely on.
            Transport::Plain(_) => true,
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = this.transport.stream().poll_flush(cx);
        this.wrote(result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().transport.stream().poll_shutdown(cx)
    }
}
