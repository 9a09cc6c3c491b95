//! The notification events of a served request (see [`crate::events`]): manifest and blob
//! pushes, pulls and deletes, and blob mounts, each once its response says it succeeded.
//! What the event names comes from the request and from the response's headers, so the
//! handlers need not know about events; a pushed blob's size, which no header carries,
//! comes in the response's [`PushedSize`] extension.

use super::{body::Incoming, query_param, route, Route};
use crate::events::{event, Action, RequestInfo, Target};
use http::{Request, Response};
use std::net::IpAddr;

/// A finished upload's size, for its push event.
#[derive(Clone, Copy)]
pub(crate) struct PushedSize(pub u64);

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
                let size = resp.extensions().get::<PushedSize>().map_or(0, |s| s.0);
                let mut t = Target {
                    media_type: "application/octet-stream".into(),
                    digest: header("docker-content-digest"),
                    size,
                    ..Target::default()
                };
                let action = match (&self.from, method) {
                    (Some(from), "POST") if size == 0 => {
                        t.from_repository = from.clone();
                        Action::Mount
                    }
                    _ => Action::Push,
                };
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
