//! The HTTP API: the OCI Distribution Spec (Docker Registry HTTP API v2) plus the legacy
//! `/_ping`, `/v1/_ping`, `/v1/search` and `/` endpoints.
//!
//! Each resource has a file with the same shape: parse the request into typed values,
//! call the registry, render the response. Errors of every layer become [`ApiError`]s and
//! are rendered one way.

mod access;
pub mod base;
pub mod blobs;
pub mod body;
pub mod errors;
pub mod health;
pub mod manifests;
mod notify;
pub(crate) mod range;
pub mod search;
pub mod sendfile;
pub mod tags;
pub mod token;
pub mod ui;
pub mod uploads;

use crate::registry::{Digest, Reference, Registry, RepositoryName};
use body::Body;
use body::Incoming;
use errors::{ApiError, ErrorCode};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// What every request handler shares.
#[derive(Debug)]
pub struct AppState {
    pub registry: Arc<Registry>,
    /// The legacy `issue` string answered at `GET /`.
    pub issue: String,
    /// Authentication and access rules; `None` serves everyone (no `auth:` configured).
    pub auth: Option<Arc<crate::auth::Authenticator>>,
    /// Token authentication (`auth: token`), used instead of `auth` when configured.
    pub token: Option<Arc<crate::auth::token::TokenVerifier>>,
    /// The built-in token endpoint (`GET /token`), whose users `auth` authenticates.
    pub token_issuer: Option<Arc<crate::auth::token::TokenIssuer>>,
    /// Trust `X-Forwarded-*` from the proxy in front (client address, external URL).
    pub trust_forwarded_headers: bool,
    /// Access log lines as JSON fields (`log.formatter: json`) rather than one line of text.
    pub json_log: bool,
    /// Notification events (`notifications.endpoints`), when any endpoint is configured.
    pub events: Option<Arc<crate::events::Events>>,
    /// The pull-through cache (`proxy`), when any upstream is configured.
    pub proxy: Option<Arc<crate::registry::proxy::Proxy>>,
    /// The web UI's sessions and caches.
    pub ui: ui::UiState,
}

pub type ApiResult = Result<Response<Body>, ApiError>;

/// A parsed route. Names may contain `/`, so routes are recognised from the end of the path.
#[derive(Debug, PartialEq)]
enum Route<'a> {
    Root,
    Ping,
    V1Search,
    /// `/v2/_catalog/search`: our JSON search (no repository name starts with `_`).
    Search,
    Base,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    UploadStart(&'a str),
    Upload(&'a str, &'a str),
    Referrers(&'a str, &'a str),
    /// The built-in token endpoint (`auth: token` with a signing key).
    TokenEndpoint,
    /// `/healthz`: the daemon answers.
    Live,
    /// `/readyz`: and its storage can serve.
    Ready,
    /// The web UI (`/ui/...`), which authenticates and answers in its own way.
    Ui,
    NotFound,
}

fn route(path: &str) -> Route<'_> {
    match path {
        "/" => return Route::Root,
        "/_ping" | "/v1/_ping" | "/v1/_ping/" | "/_ping/" => return Route::Ping,
        "/v1/search" | "/v1/search/" => return Route::V1Search,
        "/v2" | "/v2/" => return Route::Base,
        "/v2/_catalog" => return Route::Catalog,
        "/v2/_catalog/search" => return Route::Search,
        "/token" => return Route::TokenEndpoint,
        "/healthz" => return Route::Live,
        "/readyz" => return Route::Ready,
        _ if ui::is_ui_path(path) => return Route::Ui,
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Route::NotFound;
    };
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Route::UploadStart(name);
    }
    let Some((head, last)) = rest.rsplit_once('/') else {
        return Route::NotFound;
    };
    if let Some(name) = head.strip_suffix("/blobs/uploads") {
        return Route::Upload(name, last);
    }
    if head.ends_with("/tags") && last == "list" {
        return Route::Tags(&head[..head.len() - 5]);
    }
    let Some((name, kind)) = head.rsplit_once('/') else {
        return Route::NotFound;
    };
    match kind {
        "manifests" => Route::Manifest(name, last),
        "blobs" => Route::Blob(name, last),
        "referrers" => Route::Referrers(name, last),
        _ => Route::NotFound,
    }
}

pub(crate) fn repo_name(s: &str) -> Result<RepositoryName, ApiError> {
    s.parse().map_err(|e: crate::registry::names::NameError| {
        ApiError::new(ErrorCode::NameInvalid)
            .with_message(e.to_string())
            .with_detail(json!({"name": crate::registry::names::truncate(s, 300)}))
    })
}

pub(crate) fn digest_param(s: &str) -> Result<Digest, ApiError> {
    s.parse()
        .map_err(|e: crate::registry::digest::DigestError| {
            ApiError::new(ErrorCode::DigestInvalid).with_message(e.to_string())
        })
}

/// A manifest reference. Only a PUT creates what it names, so only a PUT is told its tag is
/// invalid (`MANIFEST_INVALID`); to a read or a delete a tag that cannot exist is simply not
/// found, which is what clients probing for a manifest expect.
pub(crate) fn reference_param(s: &str, method: &Method) -> Result<Reference, ApiError> {
    s.parse().map_err(|e| match e {
        crate::registry::names::ReferenceError::Digest(d) => {
            ApiError::new(ErrorCode::DigestInvalid).with_message(d.to_string())
        }
        crate::registry::names::ReferenceError::Tag(t) if method == Method::PUT => {
            ApiError::new(ErrorCode::ManifestInvalid).with_message(t.to_string())
        }
        crate::registry::names::ReferenceError::Tag(_) => ApiError::new(ErrorCode::ManifestUnknown)
            .with_detail(json!({"reference": crate::registry::names::truncate(s, 300)})),
    })
}

/// Query parameters, first value wins.
pub(crate) fn query_param(req: &Request<Incoming>, key: &str) -> Option<String> {
    let q = req.uri().query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

pub(crate) fn header_str(
    req: &Request<Incoming>,
    name: impl http::header::AsHeaderName,
) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Which upstream serves a repository (with the request's `ns`), if any. The repository
/// to use is then the answer's `local` (under `ns`, the upstream's name with a prefix).
fn proxied(
    state: &AppState,
    req: &Request<Incoming>,
    name: &RepositoryName,
) -> Result<Option<crate::registry::proxy::Proxied>, ApiError> {
    match &state.proxy {
        None => Ok(None),
        Some(p) => Ok(p.route(name, query_param(req, "ns").as_deref())?),
    }
}

/// Pushes and deletes in a proxied repository are refused, as registry:2 refuses them.
fn refuse_write(
    state: &AppState,
    req: &Request<Incoming>,
    name: &RepositoryName,
) -> Result<(), ApiError> {
    match (proxied(state, req, name)?, &state.proxy) {
        (Some(p), Some(proxy)) => Err(ApiError::new(ErrorCode::Unsupported).with_message(format!(
            "{name} is a pull-through cache of {}: pushes and deletes are refused there \
                 (push to a repository no proxy upstream serves)",
            proxy.upstream_url(&p)
        ))),
        _ => Ok(()),
    }
}

fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::Unsupported).with_message("method not allowed on this endpoint")
}

fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

impl Route<'_> {
    /// The `handler` label of the request metrics: registry:2's route names, and ours for
    /// routes it does not have.
    fn handler(&self) -> &'static str {
        match self {
            Route::Root => "root",
            Route::Ping => "ping",
            Route::V1Search => "search",
            Route::Search => "catalog-search",
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Tags(_) => "tags",
            Route::Manifest(..) => "manifest",
            Route::Blob(..) => "blob",
            Route::UploadStart(_) => "blob-upload",
            Route::Upload(..) => "blob-upload-chunk",
            Route::Referrers(..) => "referrers",
            Route::TokenEndpoint => "token",
            Route::Live => "healthz",
            Route::Ready => "readyz",
            Route::Ui => "ui",
            Route::NotFound => "notfound",
        }
    }
}

/// A method as a metric label: the methods clients send, anything else as one.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The request's metrics, taken when metrics are on: timed from here to its response.
struct Measured {
    timer: crate::metrics::RequestTimer,
    /// Held while an upload's data is received.
    _upload: Option<crate::metrics::Upload>,
    /// The bytes of a successful answer count as pulled.
    pull: bool,
}

impl Measured {
    fn start(
        m: &'static crate::metrics::Metrics,
        r: &Route<'_>,
        req: &Request<Incoming>,
    ) -> Measured {
        let method = req.method();
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let sends = matches!(*method, Method::POST | Method::PATCH | Method::PUT);
        let upload = matches!(r, Route::UploadStart(_) | Route::Upload(..)) && sends;
        Measured {
            timer: m.request(r.handler(), method_label(method), declared),
            _upload: upload.then(|| m.upload()),
            pull: *method == Method::GET && matches!(r, Route::Blob(..) | Route::Manifest(..)),
        }
    }

    fn finish(self, status: StatusCode, bytes: u64) {
        if self.pull && status.is_success() {
            if let Some(m) = crate::metrics::get() {
                m.bytes_pulled.inc_by(bytes);
            }
        }
        self.timer.finish(status.as_u16(), bytes);
    }
}

async fn dispatch(
    state: &AppState,
    req: Request<Incoming>,
    client: IpAddr,
    r: Route<'_>,
    user: &mut Option<String>,
) -> ApiResult {
    let method = req.method().clone();
    let need = access::need(&r, &method);
    let caller = access::authorize(
        state.auth.as_deref(),
        state.token.as_deref(),
        req.headers(),
        client,
        &need,
    )
    .await?;
    *user = caller.user().map(str::to_owned);
    let may_pull = |name: &str| caller.may(name, crate::auth::access::Action::Pull);
    // The UI's forms (a login) are not writes to the registry; its deletions check.
    let registry_write = !matches!(r, Route::NotFound | Route::Ui);
    if state.registry.options().readonly && is_write(&method) && registry_write {
        return Err(ApiError::new(ErrorCode::Unsupported).with_message(
            "the registry is in read-only mode for maintenance; writes are refused",
        ));
    }
    match r {
        Route::Ui => Ok(ui::handle(state, req, client).await),
        Route::Root if ui::wants_html(&req) => Ok(ui::redirect_to_ui()),
        Route::Root => base::root(state, &method),
        Route::TokenEndpoint => token::issue(state, &req, client).await,
        Route::Ping => base::ping(&method),
        Route::Live => health::live(&method),
        Route::Ready => health::ready(state, &method).await,
        Route::Base => base::base(&method),
        Route::Catalog | Route::V1Search | Route::Search => {
            // Only what the caller may pull; with access control off, nothing is checked.
            let filter = caller
                .restricted()
                .then_some(&may_pull as &(dyn Fn(&str) -> bool + Sync));
            match r {
                Route::V1Search => search::legacy(state, &req, filter),
                Route::Search => search::v2(state, &req, filter),
                _ => tags::catalog(state, &req, filter).await,
            }
        }
        Route::Tags(name) => {
            let name = repo_name(name)?;
            let proxied = proxied(state, &req, &name)?;
            tags::list(state, &req, &name, proxied.as_ref()).await
        }
        Route::Manifest(name, reference) => {
            let name = repo_name(name)?;
            let reference = reference_param(reference, &method)?;
            match method {
                Method::GET | Method::HEAD => {
                    let proxied = proxied(state, &req, &name)?;
                    manifests::get(state, &req, &name, &reference, proxied.as_ref()).await
                }
                Method::PUT => {
                    refuse_write(state, &req, &name)?;
                    manifests::put(state, req, &name, &reference).await
                }
                Method::DELETE => {
                    refuse_write(state, &req, &name)?;
                    manifests::delete(state, &name, &reference).await
                }
                _ => Err(method_not_allowed()),
            }
        }
        Route::Blob(name, digest) => {
            let name = repo_name(name)?;
            let digest = digest_param(digest)?;
            match method {
                Method::GET | Method::HEAD => {
                    let proxied = proxied(state, &req, &name)?;
                    blobs::get(state, &req, &name, &digest, proxied.as_ref()).await
                }
                Method::DELETE => {
                    refuse_write(state, &req, &name)?;
                    blobs::delete(state, &name, &digest).await
                }
                _ => Err(method_not_allowed()),
            }
        }
        Route::UploadStart(name) => {
            let name = repo_name(name)?;
            refuse_write(state, &req, &name)?;
            match method {
                Method::POST => {
                    // Mounting from a repository the caller may not pull would leak its
                    // blobs: such a mount becomes an ordinary upload, as the spec allows.
                    let mount_allowed = query_param(&req, "from").is_none_or(|f| may_pull(&f));
                    uploads::start(state, req, &name, mount_allowed).await
                }
                _ => Err(method_not_allowed()),
            }
        }
        Route::Upload(name, id) => {
            let name = repo_name(name)?;
            refuse_write(state, &req, &name)?;
            let id = crate::registry::uploads::parse_upload_id(id)?;
            match method {
                Method::GET => uploads::status(state, &name, &id).await,
                Method::PATCH => uploads::patch(state, req, &name, &id).await,
                Method::PUT => uploads::finish(state, req, &name, &id).await,
                Method::DELETE => uploads::cancel(state, &name, &id).await,
                _ => Err(method_not_allowed()),
            }
        }
        Route::Referrers(name, digest) => {
            let name = repo_name(name)?;
            let name = proxied(state, &req, &name)?.map_or(name, |p| p.local);
            let digest = digest_param(digest)?;
            match method {
                Method::GET => tags::referrers(state, &req, &name, &digest).await,
                _ => Err(method_not_allowed()),
            }
        }
        Route::NotFound => Err(ApiError::new(ErrorCode::Unsupported)
            .with_status(StatusCode::NOT_FOUND)
            .with_message("no such endpoint")),
    }
}

/// Serves one request: dispatch, render errors, add the common headers, log one line.
pub async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
    client: SocketAddr,
) -> Response<Body> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let head = method == Method::HEAD;
    let trust = state.trust_forwarded_headers;
    let client = access::client_address(req.headers(), client.ip(), trust);
    let external = access::external_base(req.headers(), trust);
    let r = route(&path);
    let measured = crate::metrics::get().map(|m| Measured::start(m, &r, &req));
    let pending = state
        .events
        .as_ref()
        .map(|_| notify::Pending::new(&req, client, external.as_deref()));
    let mut user = None;
    let mut resp = match dispatch(&state, req, client, r, &mut user).await {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(%method, path = %crate::registry::names::truncate(&path, 200), "{}", e.message);
            }
            e.into_response(head)
        }
    };
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    if let Some(base) = external {
        // Relative Locations are right everywhere; behind a trusted proxy that says what the
        // client's URL is, give the absolute one as registry:2 does.
        let location = resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok());
        if let Some(absolute) = location
            .filter(|l| l.starts_with('/'))
            .map(|l| format!("{base}{l}"))
        {
            set_header(&mut resp, "location", &absolute);
        }
    }
    let bytes = resp
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if let Some(measured) = measured {
        measured.finish(resp.status(), bytes);
    }
    if let (Some(events), Some(pending)) = (&state.events, pending) {
        if let Some(event) = pending.event(&path, &resp, user.as_deref()) {
            events.emit(event);
        }
    }
    access_log(
        &state,
        client,
        user.as_deref(),
        &method,
        &path,
        &resp,
        bytes,
        start,
    );
    resp
}

/// One line per request: the client, the authenticated user (`-` for none), the request, its
/// status, the body's bytes and the time to the response head; as fields of their own for
/// `log.formatter: json`.
#[allow(clippy::too_many_arguments)]
fn access_log(
    state: &AppState,
    client: IpAddr,
    user: Option<&str>,
    method: &Method,
    path: &str,
    resp: &Response<Body>,
    bytes: u64,
    start: Instant,
) {
    let path = crate::registry::names::truncate(path, 300);
    let status = resp.status().as_u16();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if state.json_log {
        tracing::info!(
            target: "access",
            client = %client,
            user = user.unwrap_or(""),
            method = %method,
            path = %path,
            status,
            bytes,
            duration_ms = ms,
            "request"
        );
    } else {
        let user = user.unwrap_or("-");
        tracing::info!(target: "access", "{client} {user} {method} {path} {status} {bytes} {ms:.3}ms");
    }
}

/// A response with no body and the given status.
pub(crate) fn empty_response(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// A JSON document response.
pub(crate) fn json_response(
    status: StatusCode,
    content_type: &'static str,
    value: &impl serde::Serialize,
    head: bool,
) -> Response<Body> {
    let text = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let len = text.len();
    let mut r = Response::new(if head {
        body::empty()
    } else {
        body::full(text)
    });
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

pub(crate) fn set_header(resp: &mut Response<Body>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_names_with_slashes_and_keywords() {
        assert_eq!(route("/v2/"), Route::Base);
        assert_eq!(
            route("/v2/a/b/manifests/latest"),
            Route::Manifest("a/b", "latest")
        );
        assert_eq!(
            route("/v2/x/manifests/manifests/v1"),
            Route::Manifest("x/manifests", "v1")
        );
        assert_eq!(route("/v2/a/blobs/sha256:1"), Route::Blob("a", "sha256:1"));
        assert_eq!(route("/v2/a/blobs/uploads/"), Route::UploadStart("a"));
        assert_eq!(route("/v2/a/blobs/uploads/u-1"), Route::Upload("a", "u-1"));
        assert_eq!(route("/v2/a/tags/list"), Route::Tags("a"));
        assert_eq!(
            route("/v2/a/referrers/sha256:1"),
            Route::Referrers("a", "sha256:1")
        );
        assert_eq!(route("/ui/r/a/-/b"), Route::Ui);
        assert_eq!(route("/v2/a"), Route::NotFound);
        assert_eq!(route("/v3/a"), Route::NotFound);
    }
}
