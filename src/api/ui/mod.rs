//! The web UI at `/ui/`: server-rendered pages to browse repositories, tags and images,
//! see storage use and the last garbage collection, and delete tags and manifests.
//!
//! Each page is one request: the server computes what it shows (sizes, platforms, created
//! times) from the registry's caches and the image summaries ([`ImageSummaries`]), so the
//! browser never makes a request per tag. The pages work without JavaScript; the one
//! script (embedded, like the stylesheet) adds copy buttons. Access is the API's: the same
//! users and access rules, given by a Basic `Authorization` header or by a session from
//! the login form ([`session`]); every state-changing form carries a CSRF token. Every
//! answer carries a strict Content-Security-Policy (no inline script or style at all),
//! `X-Frame-Options: DENY` and `Referrer-Policy: same-origin` (no address leaks to
//! other sites, and same-origin forms still carry an `Origin` to check).

mod pages;
mod session;

use super::access::{self, Caller, Need};
use super::body::{self, Body, Incoming};
use super::errors::ErrorCode;
use super::AppState;
use crate::auth::access::Action;
use crate::auth::{AuthFailure, Identity};
use crate::registry::images::ImageSummaries;
use crate::registry::{Reference, RepositoryName};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A form body larger than this is not one of ours.
const MAX_FORM: usize = 16 * 1024;
/// How long a walk of the blob store is reused by the storage page.
const STORAGE_TTL: Duration = Duration::from_secs(30);

/// What the UI keeps between requests.
#[derive(Debug, Default)]
pub struct UiState {
    sessions: session::Sessions,
    summaries: ImageSummaries,
    /// The last walk of the blob store: when it started, bytes, blobs.
    storage: Mutex<Option<(std::time::SystemTime, u64, usize)>>,
}

/// Whether this request is the UI's (its pages, its assets, the browser's favicon).
pub fn is_ui_path(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/") || path == "/favicon.ico"
}

/// Whether a client asking `/` is a browser (it prefers HTML): it is sent to the UI.
pub fn wants_html(req: &Request<Incoming>) -> bool {
    req.method() == Method::GET
        && super::header_str(req, http::header::ACCEPT).is_some_and(|a| a.contains("text/html"))
}

/// A page of the UI, parsed from the path.
#[derive(Debug, PartialEq)]
enum Page<'a> {
    Repositories,
    Storage,
    Login,
    Logout,
    Asset(&'a str),
    Repository(&'a str),
    Image(&'a str, &'a str),
    Delete(&'a str, &'a str),
    NotFound,
}

/// `/ui/r/<name>`, `/ui/r/<name>/-/<reference>` and `.../delete`: names hold `/` but
/// never a `-` component, so `/-/` separates the name from the reference.
fn page(path: &str) -> Page<'_> {
    match path {
        "/ui/" => return Page::Repositories,
        "/ui/storage" => return Page::Storage,
        "/ui/login" => return Page::Login,
        "/ui/logout" => return Page::Logout,
        "/favicon.ico" => return Page::Asset("icon.svg"),
        _ => {}
    }
    if let Some(a) = path.strip_prefix("/ui/static/") {
        return Page::Asset(a);
    }
    let Some(rest) = path.strip_prefix("/ui/r/") else {
        return Page::NotFound;
    };
    match rest.split_once("/-/") {
        None => Page::Repository(rest),
        Some((name, r)) => match r.strip_suffix("/delete") {
            Some(r) => Page::Delete(name, r),
            None => Page::Image(name, r),
        },
    }
}

/// Who is looking, as the pages need to know: for the header, the CSRF token and links.
pub(super) struct Viewer<'s> {
    caller: Caller<'s>,
    /// The session id when logged in through the form.
    session: Option<String>,
    /// Whether authentication is on at all (the header offers to log in or out).
    auth_on: bool,
}

impl Viewer<'_> {
    fn subject(&self) -> session::Subject<'_> {
        match (&self.session, self.caller.user()) {
            (Some(id), _) => session::Subject::Session(id),
            (None, Some(u)) => session::Subject::User(u),
            (None, None) => session::Subject::Nobody,
        }
    }

    fn user(&self) -> Option<&str> {
        self.caller.user()
    }
}

/// Serves one UI request; failures are pages, not the API's JSON errors.
pub async fn handle(state: &AppState, req: Request<Incoming>, client: IpAddr) -> Response<Body> {
    let start = Instant::now();
    let path = req.uri().path().to_owned();
    let mut resp = match route(state, req, client, &path).await {
        Ok(r) => r,
        Err(r) => *r,
    };
    // The time the page took on the server, which browsers' developer tools show.
    let timing = format!("app;dur={:.1}", start.elapsed().as_secs_f64() * 1000.0);
    super::set_header(&mut resp, "server-timing", &timing);
    let h = resp.headers_mut();
    let set = |h: &mut http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "same-origin");
    set(h, "x-content-type-options", "nosniff");
    if !h.contains_key(http::header::CACHE_CONTROL) {
        // Pages hold CSRF tokens and what a user may see: never kept by a cache.
        set(h, "cache-control", "no-store");
    }
    resp
}

/// A page, or the page that says why not (boxed: a response is large to move around).
type UiResult<T = Response<Body>> = Result<T, Failure>;
type Failure = Box<Response<Body>>;

async fn route(state: &AppState, req: Request<Incoming>, client: IpAddr, path: &str) -> UiResult {
    if path == "/ui" {
        return Ok(redirect("/ui/"));
    }
    let p = page(path);
    let method = req.method().clone();
    match (&p, &method) {
        (Page::Asset(name), &Method::GET | &Method::HEAD) => return asset(name),
        (Page::Login, &Method::GET) => return Ok(pages::login(state, &req, None)),
        (Page::Login, &Method::POST) => return login(state, req, client).await,
        (Page::Logout, &Method::POST) => return logout(state, req, client).await,
        (Page::NotFound, _) => return Err(error_page(StatusCode::NOT_FOUND, "No such page.")),
        (Page::Delete(..), &Method::GET | &Method::POST) => {}
        (_, &Method::GET | &Method::HEAD) => {}
        _ => {
            return Err(error_page(
                StatusCode::METHOD_NOT_ALLOWED,
                "This page does not take that method.",
            ))
        }
    }
    let need = match &p {
        Page::Repositories | Page::Storage => Need::Listing,
        Page::Repository(name) | Page::Image(name, _) => Need::Repository(name, &[Action::Pull]),
        Page::Delete(name, _) if method == Method::POST => {
            Need::Repository(name, &[Action::Delete])
        }
        Page::Delete(name, _) => Need::Repository(name, &[Action::Pull]),
        _ => Need::Open,
    };
    let viewer = authorize(state, &req, client, &need).await?;
    match p {
        Page::Repositories => pages::repositories(state, &req, &viewer).await,
        Page::Storage => pages::storage(state, &viewer).await,
        Page::Repository(name) => pages::repository(state, &req, &viewer, &repo(name)?).await,
        Page::Image(name, r) => {
            pages::image(state, &req, &viewer, &repo(name)?, &reference(r)?).await
        }
        Page::Delete(name, r) => {
            let (name, r) = (repo(name)?, reference(r)?);
            if method == Method::POST {
                delete(state, req, &viewer, &name, &r).await
            } else {
                pages::confirm_delete(state, &viewer, &name, &r).await
            }
        }
        _ => Err(error_page(StatusCode::NOT_FOUND, "No such page.")),
    }
}

fn repo(s: &str) -> UiResult<RepositoryName> {
    s.parse()
        .map_err(|_| error_page(StatusCode::NOT_FOUND, "No repository by that name."))
}

fn reference(s: &str) -> UiResult<Reference> {
    s.parse()
        .map_err(|_| error_page(StatusCode::NOT_FOUND, "No tag or digest by that name."))
}

/// The caller, by session cookie, Basic header or as nobody, checked against `need` with
/// the API's rules. Nobody lacking access is sent to the login form; wrong credentials get
/// the Basic challenge again.
async fn authorize<'s>(
    state: &'s AppState,
    req: &Request<Incoming>,
    client: IpAddr,
    need: &Need<'_>,
) -> UiResult<Viewer<'s>> {
    let Some(auth) = state.auth.as_deref() else {
        if state.token.is_some() {
            return Err(error_page(
                StatusCode::FORBIDDEN,
                "The web UI needs the registry's own users: with token authentication from \
                 an external token server it is not available. Use the built-in token \
                 endpoint (auth.token with an htpasswd file) or htpasswd authentication.",
            ));
        }
        let caller = access::authorize(None, None, req.headers(), client, need)
            .await
            .map_err(|e| error_page(e.status, &e.message))?;
        return Ok(Viewer {
            caller,
            session: None,
            auth_on: false,
        });
    };
    let (identity, session) = match state.ui.sessions.find(req.headers()) {
        Some((id, user)) => (Identity::User(user), Some(id)),
        None => {
            let header = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            match auth.authenticate(header, client).await {
                Ok(i) => (i, None),
                Err(AuthFailure::BadCredentials) => return Err(challenge(auth.realm())),
                Err(AuthFailure::Throttled(_)) => {
                    return Err(error_page(
                        StatusCode::TOO_MANY_REQUESTS,
                        "Too many failed logins; try again in a minute.",
                    ))
                }
            }
        }
    };
    let anonymous = identity == Identity::Anonymous;
    match access::check_identity(auth, identity, need) {
        Ok(caller) => Ok(Viewer {
            caller,
            session,
            auth_on: true,
        }),
        Err(_) if anonymous => {
            let next = req
                .uri()
                .path_and_query()
                .map_or("/ui/", |p| p.as_str())
                .to_owned();
            let q: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
            Err(Box::new(redirect(&format!("/ui/login?next={q}"))))
        }
        Err(e) if e.code == ErrorCode::Denied => Err(error_page(
            StatusCode::FORBIDDEN,
            "You may not see or do this: the access rules do not allow it.",
        )),
        Err(e) => Err(error_page(e.status, &e.message)),
    }
}

/// 401 with the Basic challenge: a browser asks for a user and password again.
fn challenge(realm: &str) -> Failure {
    let mut r = error_page(
        StatusCode::UNAUTHORIZED,
        "Wrong user or password. Log in again through the form at /ui/login.",
    );
    let realm = realm.replace('\\', "\\\\").replace('"', "\\\"");
    if let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{realm}\"")) {
        r.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
    }
    r
}

/// A form body (`application/x-www-form-urlencoded`), at most [`MAX_FORM`] bytes.
async fn form(req: Request<Incoming>) -> UiResult<Vec<(String, String)>> {
    let too_large = || error_page(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.");
    let mut body = req.into_body();
    let mut data = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|_| error_page(StatusCode::BAD_REQUEST, "The form did not arrive."))?;
        if let Ok(chunk) = frame.into_data() {
            if data.len() + chunk.len() > MAX_FORM {
                return Err(too_large());
            }
            data.extend_from_slice(&chunk);
        }
    }
    Ok(form_urlencoded::parse(&data).into_owned().collect())
}

fn field<'f>(form: &'f [(String, String)], key: &str) -> &'f str {
    form.iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

/// Refuses a state-changing request from another site or without this subject's token.
fn check_csrf(
    state: &AppState,
    headers: &http::HeaderMap,
    subject: &session::Subject<'_>,
    form: &[(String, String)],
) -> UiResult<()> {
    if session::cross_site(headers) || !state.ui.sessions.csrf_valid(subject, field(form, "csrf")) {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            "This form is stale or came from another site (CSRF check failed). Reload the \
             page and try again.",
        ));
    }
    Ok(())
}

/// Only paths of the UI itself are followed after a login (no open redirect).
fn safe_next(next: &str) -> &str {
    if next.starts_with("/ui/") && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/ui/"
    }
}

async fn login(state: &AppState, req: Request<Incoming>, client: IpAddr) -> UiResult {
    let Some(auth) = state.auth.as_deref() else {
        return Ok(redirect("/ui/"));
    };
    let headers = req.headers().clone();
    let f = form(req).await?;
    check_csrf(state, &headers, &session::Subject::Nobody, &f)?;
    let (user, password) = (field(&f, "username"), field(&f, "password"));
    // The same check as a Basic header, throttling and credential cache included.
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{user}:{password}")
        )
    );
    let next = safe_next(field(&f, "next"));
    match auth.authenticate(Some(basic.as_bytes()), client).await {
        Ok(Identity::User(u)) => {
            let id = state.ui.sessions.create(&u);
            let mut r = redirect(next);
            super::set_header(&mut r, "set-cookie", &session::set_cookie(Some(&id)));
            Ok(r)
        }
        Ok(Identity::Anonymous) | Err(AuthFailure::BadCredentials) => {
            let mut r = pages::login_with(next, "Wrong user or password.", state);
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            Err(Box::new(r))
        }
        Err(AuthFailure::Throttled(_)) => Err(error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed logins; try again in a minute.",
        )),
    }
}

async fn logout(state: &AppState, req: Request<Incoming>, client: IpAddr) -> UiResult {
    let viewer = authorize(state, &req, client, &Need::Open).await?;
    let headers = req.headers().clone();
    let f = form(req).await?;
    check_csrf(state, &headers, &viewer.subject(), &f)?;
    if let Some(id) = &viewer.session {
        state.ui.sessions.end(id);
    }
    let mut r = redirect("/ui/");
    super::set_header(&mut r, "set-cookie", &session::set_cookie(None));
    Ok(r)
}

/// Whether the viewer may delete in this repository (and deletion is possible at all).
fn may_delete(state: &AppState, viewer: &Viewer<'_>, name: &RepositoryName) -> bool {
    let o = state.registry.options();
    o.delete_enabled && !o.readonly && viewer.caller.may(name.as_str(), Action::Delete)
}

async fn delete(
    state: &AppState,
    req: Request<Incoming>,
    viewer: &Viewer<'_>,
    name: &RepositoryName,
    r: &Reference,
) -> UiResult {
    let headers = req.headers().clone();
    let f = form(req).await?;
    check_csrf(state, &headers, &viewer.subject(), &f)?;
    if !may_delete(state, viewer, name) {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            "Deletion is disabled on this registry, or it is read-only.",
        ));
    }
    state
        .registry
        .delete_manifest(name, r)
        .await
        .map_err(|e| error_page(StatusCode::NOT_FOUND, &e.to_string()))?;
    let what: String = form_urlencoded::byte_serialize(r.to_string().as_bytes()).collect();
    Ok(redirect(&format!("/ui/r/{name}?deleted={what}")))
}

/// 303 See Other to `to` (after a form, the browser GETs it).
fn redirect(to: &str) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    super::set_header(&mut r, "location", to);
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// A redirect from `/` for browsers.
pub fn redirect_to_ui() -> Response<Body> {
    redirect("/ui/")
}

fn html_response(status: StatusCode, html: String) -> Response<Body> {
    let len = html.len();
    let mut r = Response::new(body::full(html));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

fn error_page(status: StatusCode, message: &str) -> Failure {
    Box::new(html_response(status, pages::error(status, message)))
}

/// The stylesheet, the script and the icon, compiled into the binary.
fn asset(name: &str) -> UiResult {
    let (content_type, bytes): (&'static str, &'static [u8]) = match name {
        "ui.css" => ("text/css; charset=utf-8", include_bytes!("assets/ui.css")),
        "ui.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("assets/ui.js"),
        ),
        "icon.svg" => ("image/svg+xml", include_bytes!("assets/icon.svg")),
        _ => return Err(error_page(StatusCode::NOT_FOUND, "No such file.")),
    };
    let mut r = Response::new(body::full(bytes));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_recognised_with_slashes_in_names() {
        assert_eq!(page("/ui/"), Page::Repositories);
        assert_eq!(page("/ui/r/a/b"), Page::Repository("a/b"));
        assert_eq!(page("/ui/r/a/b/-/latest"), Page::Image("a/b", "latest"));
        assert_eq!(
            page("/ui/r/a/-/sha256:00/delete"),
            Page::Delete("a", "sha256:00")
        );
        assert_eq!(page("/ui/static/ui.css"), Page::Asset("ui.css"));
        assert_eq!(page("/ui/x"), Page::NotFound);
    }

    #[test]
    fn only_ui_paths_are_followed_after_login() {
        assert_eq!(safe_next("/ui/r/a"), "/ui/r/a");
        assert_eq!(safe_next("https://evil.example/"), "/ui/");
        assert_eq!(safe_next("//evil.example/ui/"), "/ui/");
        assert_eq!(safe_next("/v2/_catalog"), "/ui/");
    }
}
