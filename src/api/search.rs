//! Searching repositories (see `registry::search`): the legacy `GET /v1/search?q=&n=&page=`,
//! answered as the python docker-registry and the Docker Hub of its time answered it, and
//! `GET /v2/_catalog/search?q=&n=&last=`, a JSON answer paginated as `/v2/_catalog` is
//! (`n`, `last`, a `Link` header to the next page).

use super::body::Incoming;
use super::tags::{link_header, page_size};
use super::{json_response, query_param, set_header, ApiResult, AppState};
use crate::registry::search::{Hit, Page};
use http::{Request, StatusCode};
use serde_json::json;

/// The legacy page size, and the largest a client may ask for (the Docker CLI's limit).
const LEGACY_PAGE: usize = 25;
const LEGACY_MAX_PAGE: usize = 100;

/// A positive number from the query string, or `default` (the legacy API ignored junk).
fn positive(req: &Request<Incoming>, key: &str, default: usize) -> usize {
    query_param(req, key)
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// `GET /v1/search?q=&n=&page=`: `{num_pages, num_results, page, page_size, query,
/// results: [{name, description}]}`, pages counted from 1, 25 results a page unless `n`
/// says otherwise (at most 100). Only the repositories `visible` accepts are found.
pub fn legacy(
    state: &AppState,
    req: &Request<Incoming>,
    visible: Option<&(dyn Fn(&str) -> bool + Sync)>,
) -> ApiResult {
    let head = super::base::only_get(req.method())?;
    let q = query_param(req, "q").unwrap_or_default();
    let n = positive(req, "n", LEGACY_PAGE).min(LEGACY_MAX_PAGE);
    let page = positive(req, "page", 1);
    let found = state.registry.search(
        &q,
        visible,
        Page::Offset {
            skip: (page - 1).saturating_mul(n),
            take: n,
        },
    );
    let results: Vec<_> = found
        .hits
        .iter()
        .map(|h| json!({"name": h.name, "description": h.description}))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        "application/json",
        &json!({
            "num_pages": found.total.div_ceil(n),
            "num_results": found.total,
            "page": page,
            "page_size": n,
            "query": q,
            "results": results,
        }),
        head,
    ))
}

#[derive(serde::Serialize)]
struct Result<'a> {
    name: &'a str,
    description: &'a str,
    /// How it matched: `name` (exact, prefix or inside) or `tag`/`description`.
    #[serde(rename = "match")]
    how: &'static str,
    /// Its tags containing the query.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    tags: &'a [String],
}

fn how(h: &Hit) -> &'static str {
    use crate::registry::search::Rank;
    match h.rank {
        Rank::Exact => "exact",
        Rank::Prefix => "prefix",
        Rank::InName => "name",
        Rank::Other if !h.tags.is_empty() => "tag",
        Rank::Other => "description",
    }
}

/// `GET /v2/_catalog/search?q=&n=&last=`: `{query, num_results, repositories: [{name,
/// description, match, tags}]}`, ranked (see `registry::search`), `n` at a time after the
/// name `last` with a `Link` to the next page, as `/v2/_catalog` pages.
pub fn v2(
    state: &AppState,
    req: &Request<Incoming>,
    visible: Option<&(dyn Fn(&str) -> bool + Sync)>,
) -> ApiResult {
    let head = super::base::only_get(req.method())?;
    let q = query_param(req, "q").unwrap_or_default();
    let n = page_size(req)?;
    let last = query_param(req, "last");
    let found = state.registry.search(
        &q,
        visible,
        Page::After {
            last: last.as_deref(),
            take: n.unwrap_or(usize::MAX),
        },
    );
    let repositories: Vec<Result<'_>> = found
        .hits
        .iter()
        .map(|h| Result {
            name: &h.name,
            description: &h.description,
            how: how(h),
            tags: &h.tags,
        })
        .collect();
    let mut r = json_response(
        StatusCode::OK,
        "application/json",
        &json!({"query": q, "num_results": found.total, "repositories": repositories}),
        head,
    );
    if let Some(last) = found.hits.last().filter(|_| found.more) {
        let q_enc: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
        let path = format!("/v2/_catalog/search?q={q_enc}");
        set_header(&mut r, "link", &link_header(&path, n, &last.name));
    }
    Ok(r)
}
