//! Access control at the HTTP edge: which access each route needs, asking [`crate::auth`]
//! whether the caller has it, and answering as registry:2 does when not — 401 with a
//! `WWW-Authenticate: Basic realm="..."` challenge and the access records in the detail for
//! callers without (valid) credentials, 403 DENIED for users without permission, 429
//! TOOMANYREQUESTS with `Retry-After` while failures are throttled. Also the proxy headers:
//! the client address and the external URL when the proxy in front is trusted.

use super::errors::{ApiError, ErrorCode};
use super::Route;
use crate::auth::access::Action;
use crate::auth::token::{Grants, TokenVerifier};
use crate::auth::{AuthFailure, Authenticator, Identity};
use http::{HeaderMap, Method};
use serde_json::{json, Value};
use std::net::IpAddr;

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Need<'a> {
    /// `/_ping`, `/v1/_ping`, `GET /`, unknown paths.
    Open,
    /// `GET /v2/`: any valid user, so that `docker login` sees a challenge.
    Login,
    /// The catalog and `/v1/search`: shows only what the caller may pull.
    Listing,
    /// These actions on this repository (as written in the path; it is validated later).
    Repository(&'a str, &'static [Action]),
}

const PULL: &[Action] = &[Action::Pull];
const PUSH: &[Action] = &[Action::Pull, Action::Push];
const DELETE: &[Action] = &[Action::Delete];

/// The access a route needs for a method. Writes need pull too, as Docker's scopes say:
/// a push starts by asking which blobs the registry already has.
pub(super) fn need<'a>(route: &Route<'a>, method: &Method) -> Need<'a> {
    let by_method = |name| match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Need::Repository(name, PULL),
        Method::DELETE => Need::Repository(name, DELETE),
        _ => Need::Repository(name, PUSH),
    };
    match *route {
        // The token endpoint authenticates its callers itself.
        Route::Root | Route::Ping | Route::NotFound | Route::TokenEndpoint => Need::Open,
        // Probes carry no credentials.
        Route::Live | Route::Ready => Need::Open,
        // The UI checks each page's access itself (it also knows sessions).
        Route::Ui => Need::Open,
        Route::Base => Need::Login,
        Route::Catalog | Route::V1Search | Route::Search => Need::Listing,
        Route::Tags(name) | Route::Referrers(name, _) => Need::Repository(name, PULL),
        Route::Manifest(name, _) | Route::Blob(name, _) => by_method(name),
        // Every step of an upload, cancelling included, is part of a push.
        Route::UploadStart(name) | Route::Upload(name, _) => Need::Repository(name, PUSH),
    }
}

/// The authenticated caller of one request, for the checks a handler makes itself
/// (listings, cross-repository mounts).
#[derive(Debug, Clone)]
pub(super) struct Caller<'s> {
    auth: Option<&'s Authenticator>,
    identity: Identity,
    /// With token authentication: what the token allows.
    grants: Option<Grants>,
}

impl Caller<'_> {
    /// Whether listings must be filtered (access control is on).
    pub(super) fn restricted(&self) -> bool {
        self.auth.is_some() || self.grants.is_some()
    }

    /// The authenticated user, `None` for anonymous callers (the access log, the web UI).
    pub(super) fn user(&self) -> Option<&str> {
        self.identity.user()
    }

    pub(super) fn may(&self, repository: &str, action: Action) -> bool {
        if let Some(g) = &self.grants {
            // A token's registry:catalog:* already decided the listing: show it all.
            return g.allows("repository", repository, action.as_str())
                || (action == Action::Pull && g.allows("registry", "catalog", "*"));
        }
        match self.auth {
            None => true,
            Some(a) => a.allows(&self.identity, repository, action),
        }
    }
}

fn records(need: &Need<'_>) -> Value {
    match need {
        Need::Open | Need::Login => Value::Null,
        Need::Listing => json!([{"Type": "registry", "Class": "", "Name": "catalog", "Action": "*"}]),
        Need::Repository(name, actions) => Value::Array(
            actions
                .iter()
                .map(|a| {
                    json!({"Type": "repository", "Class": "", "Name": crate::registry::names::truncate(name, 256), "Action": a.as_str()})
                })
                .collect(),
        ),
    }
}

fn challenge(auth: &Authenticator, need: &Need<'_>) -> ApiError {
    let realm = auth.realm().replace('\\', "\\\\").replace('"', "\\\"");
    ApiError::new(ErrorCode::Unauthorized)
        .with_detail(records(need))
        .with_header("www-authenticate", format!("Basic realm=\"{realm}\""))
}

/// `Bearer realm=...,service=...,scope=...` as Docker's token specification gives it.
fn bearer_challenge(t: &TokenVerifier, need: &Need<'_>, error: Option<&str>) -> ApiError {
    let quote = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    let mut value = format!(
        "Bearer realm=\"{}\",service=\"{}\"",
        quote(&t.realm),
        quote(&t.service)
    );
    match need {
        Need::Listing => value.push_str(",scope=\"registry:catalog:*\""),
        Need::Repository(name, actions) => {
            let acts: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
            value.push_str(&format!(
                ",scope=\"repository:{}:{}\"",
                quote(name),
                acts.join(",")
            ));
        }
        Need::Open | Need::Login => {}
    }
    if let Some(e) = error {
        value.push_str(&format!(",error=\"{e}\""));
    }
    ApiError::new(ErrorCode::Unauthorized)
        .with_detail(records(need))
        .with_header("www-authenticate", value)
}

/// Token authentication: a valid Bearer token, and its grants checked against the need.
/// Lacking access is a 401 with `error="insufficient_scope"`, so clients fetch a new token.
fn authorize_token<'s>(
    t: &TokenVerifier,
    headers: &HeaderMap,
    need: &Need<'_>,
) -> Result<Caller<'s>, ApiError> {
    let header = headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let token = header.and_then(|h| {
        let (scheme, rest) = h.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    let (identity, grants) = match (header, token) {
        (None, _) => (Identity::Anonymous, Grants::default()),
        (Some(_), None) => {
            failed("invalid_token");
            return Err(bearer_challenge(t, need, Some("invalid_token")));
        }
        (Some(_), Some(tok)) => match t.verify(tok) {
            Ok(v) => (Identity::User(v.subject), v.grants),
            Err(why) => {
                tracing::info!("token refused: {why}");
                failed("invalid_token");
                return Err(bearer_challenge(t, need, Some("invalid_token")));
            }
        },
    };
    let allowed = match need {
        Need::Open => true,
        Need::Login => identity != Identity::Anonymous,
        Need::Listing => grants.allows("registry", "catalog", "*"),
        Need::Repository(name, actions) => actions
            .iter()
            .all(|a| grants.allows("repository", name, a.as_str())),
    };
    if allowed {
        Ok(Caller {
            auth: None,
            identity,
            grants: Some(grants),
        })
    } else if identity == Identity::Anonymous {
        Err(bearer_challenge(t, need, None))
    } else {
        failed("denied");
        Err(bearer_challenge(t, need, Some("insufficient_scope")))
    }
}

/// Authenticates the request and checks that the caller has what the route needs.
pub(super) async fn authorize<'s>(
    auth: Option<&'s Authenticator>,
    token: Option<&TokenVerifier>,
    headers: &HeaderMap,
    client: IpAddr,
    need: &Need<'_>,
) -> Result<Caller<'s>, ApiError> {
    if *need == Need::Open {
        // Open routes never look at credentials: a stale or foreign Authorization header
        // (a Basic one sent to the token endpoint, say) must not turn them into a 401.
        return Ok(Caller {
            auth,
            identity: Identity::Anonymous,
            grants: None,
        });
    }
    if let Some(t) = token {
        return authorize_token(t, headers, need);
    }
    let Some(a) = auth else {
        return Ok(Caller {
            auth: None,
            identity: Identity::Anonymous,
            grants: None,
        });
    };
    let header = headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let identity = match a.authenticate(header, client).await {
        Ok(i) => i,
        Err(AuthFailure::BadCredentials) => {
            failed("bad_credentials");
            return Err(challenge(a, need));
        }
        Err(AuthFailure::Throttled(wait)) => {
            if let Some(m) = crate::metrics::get() {
                m.auth_throttled.inc();
            }
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(ApiError::new(ErrorCode::TooManyRequests)
                .with_message("too many failed authentication attempts; try again later")
                .with_header("retry-after", secs.max(1).to_string()));
        }
    };
    check_identity(a, identity, need)
}

/// Checks that `identity` (authenticated by the caller: a Basic header, a web UI session)
/// has what `need` asks, by the users and access rules of `a`.
pub(super) fn check_identity<'s>(
    a: &'s Authenticator,
    identity: Identity,
    need: &Need<'_>,
) -> Result<Caller<'s>, ApiError> {
    let caller = Caller {
        auth: Some(a),
        identity,
        grants: None,
    };
    let allowed = match need {
        Need::Open => true,
        Need::Login => caller.identity.user().is_some(),
        // Anyone who may pull something may list; the listing shows only that.
        Need::Listing => caller.identity.user().is_some() || a.anonymous_may_pull(),
        Need::Repository(name, actions) => actions.iter().all(|act| caller.may(name, *act)),
    };
    if allowed {
        Ok(caller)
    } else if caller.identity == Identity::Anonymous {
        // No credentials: ask for them, even where anonymous pulls are allowed elsewhere.
        Err(challenge(a, need))
    } else {
        failed("denied");
        Err(ApiError::new(ErrorCode::Denied).with_detail(records(need)))
    }
}

/// Counts a refused request in `registry_auth_failures_total{reason}`.
fn failed(reason: &'static str) {
    if let Some(m) = crate::metrics::get() {
        m.auth_failure(reason);
    }
}

/// The client's address: the peer, or with a trusted proxy the last address it appended
/// to `X-Forwarded-For` (earlier entries are whatever the client claimed), or `X-Real-IP`.
pub(super) fn client_address(headers: &HeaderMap, peer: IpAddr, trust_forwarded: bool) -> IpAddr {
    if !trust_forwarded {
        return peer;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("x-forwarded-for")
        .and_then(|v| v.rsplit(',').next())
        .or_else(|| header("x-real-ip"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(peer)
}

/// `proto://host` as the client sees the registry, from a trusted proxy's
/// `X-Forwarded-Proto` and `X-Forwarded-Host` (or `Host`); `None` keeps Locations relative.
pub(super) fn external_base(headers: &HeaderMap, trust_forwarded: bool) -> Option<String> {
    if !trust_forwarded {
        return None;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let proto = header("x-forwarded-proto")?;
    if proto != "http" && proto != "https" {
        return None;
    }
    let host = header("x-forwarded-host").or_else(|| header("host"))?;
    // A host with anything but host[:port] characters would let a header inject a URL.
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    {
        return None;
    }
    Some(format!("{proto}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_what_registry_2_asks_for() {
        assert_eq!(need(&Route::Ping, &Method::GET), Need::Open);
        assert_eq!(need(&Route::Base, &Method::GET), Need::Login);
        assert_eq!(need(&Route::Catalog, &Method::GET), Need::Listing);
        assert_eq!(
            need(&Route::Manifest("a/b", "x"), &Method::HEAD),
            Need::Repository("a/b", PULL)
        );
        assert_eq!(
            need(&Route::Manifest("a", "x"), &Method::PUT),
            Need::Repository("a", PUSH)
        );
        assert_eq!(
            need(&Route::Blob("a", "d"), &Method::DELETE),
            Need::Repository("a", DELETE)
        );
        assert_eq!(
            need(&Route::Upload("a", "u"), &Method::DELETE),
            Need::Repository("a", PUSH)
        );
        assert_eq!(
            records(&Need::Repository("x", PULL)),
            json!([{"Type":"repository","Class":"","Name":"x","Action":"pull"}])
        );
    }

    #[test]
    fn proxy_headers_count_only_when_trusted() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.9".parse().expect("value"),
        );
        h.insert("x-forwarded-proto", "https".parse().expect("value"));
        h.insert("host", "registry.example.com".parse().expect("value"));
        let peer: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(client_address(&h, peer, false), peer);
        assert_eq!(
            client_address(&h, peer, true),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(external_base(&h, false), None);
        assert_eq!(
            external_base(&h, true).as_deref(),
            Some("https://registry.example.com")
        );
        h.insert("x-forwarded-host", "evil/x?".parse().expect("value"));
        assert_eq!(external_base(&h, true), None);
    }
}
