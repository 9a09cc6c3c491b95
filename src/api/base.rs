//! `GET /v2/`, and the legacy endpoints proxies and scripts still call: `GET /`,
//! `/_ping` and `/v1/_ping` (`/v1/search` is in `search`).

use super::{json_response, ApiResult, AppState};
use http::{Method, StatusCode};
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
