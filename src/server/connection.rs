//! One client connection, from the accepted socket to its close: the TLS handshake when
//! TLS is configured, then HTTP/1.1 or HTTP/2 (hyper, detected from the first bytes) with
//! every request handed to [`api::handle`], and a graceful end when the daemon stops.
//!
//! [`Conn`] is the byte stream hyper reads and writes. It is the one place that knows
//! whether the connection is plain TCP or TLS, so work that only applies to one of them
//! (zero-copy sends of blobs over plain HTTP/1.1, say) belongs there.

use super::security::{Tls, TLS_HANDSHAKE_TIMEOUT};
use crate::api::{self, AppState};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// What every connection shares: the registry's request state, the HTTP settings, TLS, and
/// the token that tells connections the daemon is stopping.
pub struct Serving {
    pub state: Arc<AppState>,
    pub http: auto::Builder<TokioExecutor>,
    pub tls: Option<Arc<Tls>>,
    pub stop: CancellationToken,
}

/// Serves one accepted connection until the client closes it, it fails, or the daemon
/// stops (then in-flight requests finish first: hyper's graceful shutdown).
pub struct Handler {
    pub serving: Arc<Serving>,
    pub peer: SocketAddr,
}

impl Handler {
    pub async fn run(self, stream: TcpStream) {
        if let Err(e) = self.serve(stream).await {
            tracing::debug!("connection from {} ended: {e}", self.peer);
        }
    }

    async fn serve(
        &self,
        stream: TcpStream,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        // Responses are written whole by hyper; waiting to coalesce them only adds latency.
        let _ = stream.set_nodelay(true);
        let io = self.secure(stream).await?;
        let state = self.serving.state.clone();
        let peer = self.peer;
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, std::convert::Infallible>(api::handle(state, req, peer).await) }
        });
        let conn = self
            .serving
            .http
            .serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        tokio::select! {
            ended = conn.as_mut() => return ended,
            _ = self.serving.stop.cancelled() => {}
        }
        conn.as_mut().graceful_shutdown();
        conn.await
    }

    /// The TLS handshake, bounded in time so a client that stops halfway does not hold the
    /// connection; a plain connection as it is.
    async fn secure(&self, stream: TcpStream) -> Result<Conn, String> {
        let Some(tls) = &self.serving.tls else {
            return Ok(Conn::Plain(stream));
        };
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await {
            Ok(Ok(stream)) => Ok(Conn::Tls(Box::new(stream))),
            Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
            Err(_) => Err("TLS handshake timed out".into()),
        }
    }
}

/// A client connection's bytes: plain TCP, or TLS over it.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
