//! Listings: `GET /v2/<name>/tags/list`, `GET /v2/_catalog` (both with `n`/`last`
//! pagination and a `Link` header), and `GET /v2/<name>/referrers/<digest>`.

use super::body::Incoming;
use super::errors::{ApiError, ErrorCode};
use super::{json_response, query_param, set_header, ApiResult, AppState};
use crate::registry::manifest::OCI_INDEX;
use crate::registry::proxy::Proxied;
use crate::registry::{Digest, RepositoryName};
use http::{Method, Request, StatusCode};
use serde_json::json;

/// One page of a sorted list: entries after `last`, at most `n`; and whether more follow.
/// The page borrows from the list: nothing is copied before it is written out as JSON.
fn paginate<'a>(
    all: &'a [String],
    req: &Request<Incoming>,
) -> Result<(&'a [String], Option<usize>, bool), ApiError> {
    let n = page_size(req)?;
    let last = query_param(req, "last");
    let start = match &last {
        Some(l) => all.partition_point(|x| x.as_str() <= l.as_str()),
        None => 0,
    };
    let rest = all.len() - start;
    let take = n.unwrap_or(rest).min(rest);
    let more = take < rest;
    Ok((&all[start..start + take], n, more))
}

/// A listing's `n`: none (everything), or a number.
pub(super) fn page_size(req: &Request<Incoming>) -> Result<Option<usize>, ApiError> {
    match query_param(req, "n") {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => Ok(Some(v.parse::<usize>().map_err(|_| {
            ApiError::new(ErrorCode::PaginationNumberInvalid).with_message(format!(
                "n must be a number, not {:?}",
                crate::registry::names::truncate(&v, 32)
            ))
        })?)),
    }
}

/// Listing pages, serialised straight from the borrowed page (no intermediate JSON tree).
#[derive(serde::Serialize)]
struct TagPage<'a> {
    name: &'a str,
    tags: &'a [String],
}

#[derive(serde::Serialize)]
struct CatalogPage<'a> {
    repositories: &'a [String],
}

/// The `Link` to the page after `last`; `path` may have a query of its own.
pub(super) fn link_header(path: &str, n: Option<usize>, last: &str) -> String {
    let last_q: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
    let join = if path.contains('?') { '&' } else { '?' };
    match n {
        Some(n) => format!("<{path}{join}last={last_q}&n={n}>; rel=\"next\""),
        None => format!("<{path}{join}last={last_q}>; rel=\"next\""),
    }
}

/// A repository's tags; a proxied repository's as its upstream lists them (with the
/// client's `n` and `last`), or the stored ones when the upstream cannot answer.
pub async fn list(
    state: &AppState,
    req: &Request<Incoming>,
    name: &RepositoryName,
    proxied: Option<&Proxied>,
) -> ApiResult {
    let head = req.method() == Method::HEAD;
    if !(req.method() == Method::GET || head) {
        return Err(super::method_not_allowed());
    }
    if let (Some(p), Some(proxy)) = (proxied, &state.proxy) {
        let query: Option<String> = req.uri().query().map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k == "n" || k == "last")
                .fold(
                    form_urlencoded::Serializer::new(String::new()),
                    |mut s, (k, v)| {
                        s.append_pair(&k, &v);
                        s
                    },
                )
                .finish()
        });
        let query = query.filter(|q| !q.is_empty());
        if let Some(body) = proxy.tags(p, name, query.as_deref()).await {
            let len = body.len();
            let mut r = http::Response::new(if head {
                super::body::empty()
            } else {
                super::body::full(body)
            });
            r.headers_mut()
                .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
            set_header(&mut r, "content-type", "application/json");
            return Ok(r);
        }
    }
    let name = proxied.map_or(name, |p| &p.local);
    let tags = state.registry.tags(name).await?;
    let (page, n, more) = paginate(&tags, req)?;
    let next = if more { page.last().cloned() } else { None };
    let mut r = json_response(
        StatusCode::OK,
        "application/json",
        &TagPage {
            name: name.as_str(),
            tags: page,
        },
        head,
    );
    if let Some(last) = next {
        set_header(
            &mut r,
            "link",
            &link_header(&format!("/v2/{name}/tags/list"), n, &last),
        );
    }
    Ok(r)
}

/// The catalog, showing only the repositories `visible` (the caller may pull) accepts.
pub async fn catalog(
    state: &AppState,
    req: &Request<Incoming>,
    visible: Option<&(dyn Fn(&str) -> bool + Sync)>,
) -> ApiResult {
    let head = req.method() == Method::HEAD;
    if !(req.method() == Method::GET || head) {
        return Err(super::method_not_allowed());
    }
    let repos = state.registry.catalog().await?;
    // Only what the caller may pull; with access control off, nothing is copied.
    let filtered: Vec<String>;
    let repos: &[String] = match visible {
        None => &repos,
        Some(v) => {
            filtered = repos.iter().filter(|r| v(r)).cloned().collect();
            &filtered
        }
    };
    let (page, n, more) = paginate(repos, req)?;
    let next = if more { page.last().cloned() } else { None };
    let mut r = json_response(
        StatusCode::OK,
        "application/json",
        &CatalogPage { repositories: page },
        head,
    );
    if let Some(last) = next {
        set_header(&mut r, "link", &link_header("/v2/_catalog", n, &last));
    }
    Ok(r)
}

pub async fn referrers(
    state: &AppState,
    req: &Request<Incoming>,
    name: &RepositoryName,
    subject: &Digest,
) -> ApiResult {
    let artifact_type = query_param(req, "artifactType").filter(|a| !a.is_empty());
    let manifests = state
        .registry
        .referrers(name, subject, artifact_type.as_deref())
        .await?;
    let mut r = json_response(
        StatusCode::OK,
        "application/vnd.oci.image.index.v1+json",
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
        false,
    );
    if artifact_type.is_some() {
        set_header(&mut r, "oci-filters-applied", "artifactType");
    }
    Ok(r)
}
