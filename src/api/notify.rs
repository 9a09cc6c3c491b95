//! The notification events of a served request (see [`crate::events`]): manifest and blob
//! pushes, pulls and deletes, and blob mounts, each once its response says it succeeded.
//! What the event names comes from the request and from the response's headers, so the
//! handlers need not know about events; a pushed blob's size, which no header carries,
//! comes in the response's [`Placed`] extension, which also tells a mount from a push.

use super::{body::Incoming, query_param, route, Route};
use crate::events::{event, Action, RequestInfo, Target};
use http::{Request, Response};
use std::net::IpAddr;

/// How a blob came to be in a repository, and its size: for its push or mount event.
#[derive(Clone, Copy)]
pub(crate) enum Placed {
    /// An upload finished.
    Pushed(u64),
    /// A cross-repository mount (`?mount=&from=`).
    Mounted(u64),
}

/// What the event needs from the request, taken before it is handed on.
pub(super) struct Pending {
    request: RequestInfo,
    content_type: String,
    content_length: u64,
    from: Option<String>,
    base: String,
}

impl Pending {
    pub(super) fn new(req: &Request<Incoming>, client: IpAddr, external: Option<&str>) -> Pending {
        let header = |name: http::header::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let host = header(http::header::HOST);
        Pending {
            base: external.map_or_else(|| format!("http://{host}"), str::to_owned),
            request: RequestInfo {
                addr: client.to_string(),
                host,
                method: req.method().to_string(),
                user_agent: header(http::header::USER_AGENT),
            },
            content_type: header(http::header::CONTENT_TYPE),
            content_length: header(http::header::CONTENT_LENGTH).parse().unwrap_or(0),
            from: query_param(req, "mount").and(query_param(req, "from")),
        }
    }

    /// The event of this request and its response, if it made one.
    pub(super) fn event<B>(
        self,
        path: &str,
        resp: &Response<B>,
        user: Option<&str>,
    ) -> Option<serde_json::Value> {
        if !resp.status().is_success() {
            return None;
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let length = || header("content-length").parse().unwrap_or(0);
        let method = self.request.method.as_str();
        let (action, repository, mut target) = match route(path) {
            Route::Manifest(name, reference) => {
                let tag = if reference.contains(':') {
                    ""
                } else {
                    reference
                };
                let mut t = Target {
                    digest: header("docker-content-digest"),
                    tag: tag.to_owned(),
                    ..Target::default()
                };
                let action = match method {
                    "GET" => {
                        t.media_type = header("content-type");
                        t.size = length();
                        Action::Pull
                    }
                    "PUT" => {
                        t.media_type = self.content_type.clone();
                        t.size = self.content_length;
                        Action::Push
                    }
                    "DELETE" => {
                        if t.digest.is_empty() && tag.is_empty() {
                            t.digest = reference.to_owned();
                        }
                        Action::Delete
                    }
                    _ => return None,
                };
                (action, name, t)
            }
            Route::Blob(name, digest) => {
                let action = match method {
                    "GET" => Action::Pull,
                    "DELETE" => Action::Delete,
                    _ => return None,
                };
                let size = if action == Action::Pull { length() } else { 0 };
                let t = Target {
                    media_type: "application/octet-stream".into(),
                    digest: digest.to_owned(),
                    size,
                    ..Target::default()
                };
                (action, name, t)
            }
            // A blob in place: an upload finished, a monolithic upload, or a mount.
            Route::UploadStart(name) | Route::Upload(name, _)
                if resp.status() == http::StatusCode::CREATED =>
            {
                let (action, size) = match resp.extensions().get::<Placed>() {
                    Some(Placed::Mounted(n)) => (Action::Mount, *n),
                    Some(Placed::Pushed(n)) => (Action::Push, *n),
                    None => (Action::Push, 0),
                };
                let mut t = Target {
                    media_type: "application/octet-stream".into(),
                    digest: header("docker-content-digest"),
                    size,
                    ..Target::default()
                };
                if action == Action::Mount {
                    t.from_repository = self.from.clone().unwrap_or_default();
                }
                (action, name, t)
            }
            _ => return None,
        };
        let kind = if matches!(route(path), Route::Manifest(..)) {
            "manifests"
        } else {
            "blobs"
        };
        target.repository = repository.to_owned();
        if !target.digest.is_empty() {
            target.url = format!("{}/v2/{repository}/{kind}/{}", self.base, target.digest);
        }
        Some(event(action, &target, &self.request, user))
    }
}
