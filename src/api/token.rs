//! The built-in token endpoint, `GET /token?service=...&scope=...`, for clients doing
//! Docker's Bearer dance against a registry configured with `auth: token` and its own
//! signing key: the caller authenticates with Basic credentials from the htpasswd file (with
//! the same credential cache and throttling as Basic authentication), and gets a token
//! granting, of the scopes asked for, what the access file allows them.

use super::body::Incoming;
use super::errors::{ApiError, ErrorCode};
use super::{json_response, ApiResult, AppState};
use crate::auth::access::Action;
use crate::auth::token::{Grants, ISSUED_TOKEN_TTL_SECS};
use crate::auth::{AuthFailure, Identity};
use http::{Method, Request, StatusCode};
use serde_json::json;
use std::net::IpAddr;

/// What the caller may have of one requested scope (`type:name:actions`), or `None`.
fn grant(state: &AppState, who: &Identity, scope: &str) -> Option<(String, String, Vec<String>)> {
    let auth = state.auth.as_deref()?;
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let granted: Vec<String> = match (kind, name) {
        ("repository", _) => actions
            .split(',')
            .filter(|a| {
                let action = match *a {
                    "pull" => Action::Pull,
                    "push" => Action::Push,
                    "delete" => Action::Delete,
                    _ => return false,
                };
                auth.allows(who, name, action)
            })
            .map(str::to_string)
            .collect(),
        ("registry", "catalog") if who.user().is_some() => vec!["*".to_string()],
        _ => Vec::new(),
    };
    (!granted.is_empty()).then(|| (kind.to_string(), name.to_string(), granted))
}

pub async fn issue(state: &AppState, req: &Request<Incoming>, client: IpAddr) -> ApiResult {
    let (Some(issuer), Some(auth)) = (state.token_issuer.as_deref(), state.auth.as_deref()) else {
        return Err(ApiError::new(ErrorCode::Unsupported)
            .with_status(StatusCode::NOT_FOUND)
            .with_message("no token endpoint is configured"));
    };
    if req.method() != Method::GET {
        return Err(super::method_not_allowed());
    }
    let params: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
        if service != issuer.service() {
            return Err(ApiError::new(ErrorCode::Denied)
                .with_status(StatusCode::BAD_REQUEST)
                .with_message(format!(
                    "this endpoint issues tokens for {:?} only",
                    issuer.service()
                )));
        }
    }
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let who = match auth.authenticate(header, client).await {
        Ok(who) => who,
        Err(AuthFailure::BadCredentials) => {
            let realm = auth.realm().replace('\\', "\\\\").replace('"', "\\\"");
            return Err(ApiError::new(ErrorCode::Unauthorized)
                .with_header("www-authenticate", format!("Basic realm=\"{realm}\"")));
        }
        Err(AuthFailure::Throttled(wait)) => {
            return Err(ApiError::new(ErrorCode::TooManyRequests)
                .with_header("retry-after", wait.as_secs().max(1).to_string()));
        }
    };
    // `scope` may repeat, and one value may hold several scopes separated by spaces.
    let grants = Grants(
        params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' '))
            .filter_map(|scope| grant(state, &who, scope))
            .collect(),
    );
    let token = issuer
        .issue(who.user().unwrap_or(""), &grants)
        .map_err(|e| ApiError::new(ErrorCode::Unknown).with_message(e))?;
    Ok(json_response(
        StatusCode::OK,
        "application/json",
        &json!({"token": token, "access_token": token, "expires_in": ISSUED_TOKEN_TTL_SECS}),
        false,
    ))
}
