//! The debug listener (registry:2's `http.debug.addr`): `GET /debug/health` and, when
//! `http.debug.prometheus.enabled`, the metrics at `http.debug.prometheus.path`. On an
//! address of its own, without authentication, so that monitoring reaches it and clients
//! of the registry need not: bind it to loopback or a management network.
//!
//! `/debug/health` answers as registry:2's does: 200 and `{}` when healthy, 503 and
//! `{"storagedriver_<name>": "<problem>"}` when not.

use crate::registry::Registry;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections served at once: monitoring needs a few, and the listener must not become a
/// way to exhaust the daemon's descriptors.
const MAX_CONNECTIONS: usize = 64;
/// A request head must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the listener serves.
pub struct DebugRoutes {
    pub registry: Arc<Registry>,
    /// The metrics' path, when they are on.
    pub metrics: Option<String>,
}

/// Binds the listener (an error names the address and the setting); then serves it in a
/// task, which the caller aborts at shutdown.
pub async fn spawn(
    addr: SocketAddr,
    routes: DebugRoutes,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        format!("cannot listen on {addr} for the debug listener: {e} (http.debug.addr, REGISTRY_HTTP_DEBUG_ADDR)")
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the debug listener's address: {e}"))?;
    let routes = Arc::new(routes);
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            let Ok(place) = places.clone().acquire_owned().await else {
                return;
            };
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("debug listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let routes = routes.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let routes = routes.clone();
                    async move { Ok::<_, std::convert::Infallible>(routes.answer(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                drop(place);
            });
        }
    });
    Ok((local, task))
}

impl DebugRoutes {
    async fn answer<B>(&self, req: Request<B>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
        }
        let path = req.uri().path();
        if path == "/debug/health" {
            return match self.registry.storage_health().await {
                Ok(()) => text(StatusCode::OK, "application/json", "{}"),
                Err(problem) => {
                    let key = format!("storagedriver_{}", self.registry.driver().name());
                    let body = serde_json::json!({ key: problem }).to_string();
                    text(StatusCode::SERVICE_UNAVAILABLE, "application/json", &body)
                }
            };
        }
        if self.metrics.as_deref() == Some(path) {
            return text(
                StatusCode::OK,
                crate::metrics::CONTENT_TYPE,
                &crate::metrics::encode(),
            );
        }
        text(StatusCode::NOT_FOUND, "text/plain", "not found\n")
    }
}

fn text(status: StatusCode, content_type: &'static str, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}
