//! `GET /v2/`, and the legacy endpoints proxies and scripts still call: `GET /`,
//! `/_ping`, `/v1/_ping` and `/v1/search`.

use super::body::Incoming;
use super::{json_response, query_param, ApiResult, AppState};
use http::{Method, Request, StatusCode};
use serde_json::json;

pub(super) fn only_get(method: &Method) -> Result<bool, super::ApiError> {
    match *method {
        Method::GET => Ok(false),
        Method::HEAD => Ok(true),
        _ => Err(super::method_not_allowed()),
    }
}

pub fn base(method: &Method) -> ApiResult {
    let head = only_get(method)?;
    Ok(json_response(
        StatusCode::OK,
        "application/json",
        &json!({}),
        head,
    ))
}

pub fn ping(method: &Method) -> ApiResult {
    let head = only_get(method)?;
    let mut r = json_response(StatusCode::OK, "application/json", &json!(true), head);
    super::set_header(&mut r, "x-docker-registry-standalone", "True");
    Ok(r)
}

pub fn root(state: &AppState, method: &Method) -> ApiResult {
    let head = only_get(method)?;
    // The legacy registry answered its `issue` string, itself a JSON string literal.
    let issue = state.issue.trim();
    let value: serde_json::Value = serde_json::from_str(issue).unwrap_or_else(|_| json!(issue));
    Ok(json_response(
        StatusCode::OK,
        "application/json",
        &value,
        head,
    ))
}

/// `GET /v1/search?q=`: a substring match over repository names.
/// Shows only the repositories `visible` (the caller may pull) accepts.
pub async fn search(
    state: &AppState,
    req: &Request<Incoming>,
    visible: &(dyn Fn(&str) -> bool + Sync),
) -> ApiResult {
    let head = only_get(req.method())?;
    let q = query_param(req, "q").unwrap_or_default();
    let needle = q.to_lowercase();
    let results: Vec<_> = state
        .registry
        .catalog()
        .await?
        .iter()
        .filter(|name| name.contains(&needle) && visible(name))
        .map(|name| json!({"description": "", "name": name}))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        "application/json",
        &json!({"num_results": results.len(), "query": q, "results": results}),
        head,
    ))
}
