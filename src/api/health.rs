//! `GET /healthz` and `/readyz` on the registry's own listener, open to all (no
//! authentication), for load balancers and orchestrators: live means the daemon answers;
//! ready means its storage is reachable and writable (reachable, when read-only is
//! configured) — the check `/debug/health` and the systemd watchdog use too
//! (`registry::health`). Ready answers 503 with the problem otherwise.

use super::{body, ApiResult, AppState};
use http::{HeaderValue, Method, Response, StatusCode};

pub fn live(method: &Method) -> ApiResult {
    super::base::only_get(method)?;
    Ok(text(StatusCode::OK, "ok\n".into(), method))
}

pub async fn ready(state: &AppState, method: &Method) -> ApiResult {
    super::base::only_get(method)?;
    Ok(match state.registry.storage_health().await {
        Ok(()) => text(StatusCode::OK, "ok\n".into(), method),
        Err(problem) => {
            let mut r = text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("storage: {problem}\n"),
                method,
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("5"));
            r
        }
    })
}

fn text(status: StatusCode, message: String, method: &Method) -> Response<body::Body> {
    let len = message.len();
    let mut r = Response::new(if method == Method::HEAD {
        body::empty()
    } else {
        body::full(message)
    });
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    r
}
