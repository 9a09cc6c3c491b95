//! Web UI sessions and CSRF tokens.
//!
//! A login through the form gets a random session id in a cookie (`HttpOnly`,
//! `SameSite=Strict`, path `/ui/`); the session lives in this process's memory only (a
//! restart logs everyone out, which is the safe direction). Every state-changing request
//! carries a CSRF token: an HMAC, under a key drawn at start, of who the caller is (the
//! session, or the Basic user, or nobody), so a token is useless to anyone else and a
//! forged cross-site form cannot know it. Browsers that say where a request comes from
//! (`Sec-Fetch-Site`, `Origin`) are also refused when it is another site.

use http::HeaderMap;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie's name.
pub(super) const COOKIE: &str = "registry_ui_session";
/// How long a session lasts without being used.
const IDLE: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept; past this the expired ones go, then the oldest.
const MAX_SESSIONS: usize = 10_000;

/// Who a CSRF token is for.
pub(super) enum Subject<'a> {
    Session(&'a str),
    User(&'a str),
    Nobody,
}

struct Session {
    user: String,
    last_used: Instant,
}

pub(crate) struct Sessions {
    key: ring::hmac::Key,
    map: Mutex<HashMap<String, Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

/// 244 random bits as text, from two version-4 UUIDs (the OS's generator).
fn random_id() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, random_id().as_bytes()),
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl Sessions {
    /// Starts a session for `user`; returns its id (the cookie's value).
    pub(super) fn create(&self, user: &str) -> String {
        let id = random_id();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.last_used.elapsed() < IDLE);
            if map.len() >= MAX_SESSIONS {
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(
            id.clone(),
            Session {
                user: user.to_owned(),
                last_used: Instant::now(),
            },
        );
        id
    }

    /// The session the request's cookie names, if it is live: its id and user.
    pub(super) fn find(&self, headers: &HeaderMap) -> Option<(String, String)> {
        let id = cookie(headers, COOKIE)?;
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let s = map.get_mut(id)?;
        if s.last_used.elapsed() >= IDLE {
            map.remove(id);
            return None;
        }
        s.last_used = Instant::now();
        Some((id.to_owned(), s.user.clone()))
    }

    pub(super) fn end(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn tag(&self, subject: &Subject<'_>) -> ring::hmac::Tag {
        let text = match subject {
            Subject::Session(id) => format!("session\0{id}"),
            Subject::User(u) => format!("user\0{u}"),
            Subject::Nobody => "nobody".to_owned(),
        };
        ring::hmac::sign(&self.key, text.as_bytes())
    }

    /// The CSRF token forms carry for this subject.
    pub(super) fn csrf_token(&self, subject: &Subject<'_>) -> String {
        hex(self.tag(subject).as_ref())
    }

    /// Whether `token` is this subject's (compared in constant time).
    pub(super) fn csrf_valid(&self, subject: &Subject<'_>, token: &str) -> bool {
        let expected = self.csrf_token(subject);
        use subtle::ConstantTimeEq;
        expected.len() == token.len() && bool::from(expected.as_bytes().ct_eq(token.as_bytes()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the browser says the request comes from another site: `Sec-Fetch-Site:
/// cross-site` (or `same-site`, another host of the domain), or an `Origin` whose host is
/// not the one the request was sent to.
pub(super) fn cross_site(headers: &HeaderMap) -> bool {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return true;
        }
    }
    match (header("origin"), header("host")) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
            !origin_host.eq_ignore_ascii_case(host)
        }
        _ => false,
    }
}

/// The `Set-Cookie` value that starts a session, and the one that ends it.
pub(super) fn set_cookie(id: Option<&str>) -> String {
    match id {
        Some(id) => format!(
            "{COOKIE}={id}; Path=/ui/; HttpOnly; SameSite=Strict; Max-Age={}",
            IDLE.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/ui/; HttpOnly; SameSite=Strict; Max-Age=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csrf_token_is_good_only_for_its_subject() {
        let s = Sessions::default();
        let a = s.csrf_token(&Subject::Session("a"));
        assert!(s.csrf_valid(&Subject::Session("a"), &a));
        assert!(!s.csrf_valid(&Subject::Session("b"), &a));
        assert!(!s.csrf_valid(&Subject::User("a"), &a));
        assert!(!s.csrf_valid(&Subject::Session("a"), ""));
        // Another process (another key) does not accept it either.
        assert!(!Sessions::default().csrf_valid(&Subject::Session("a"), &a));
    }

    #[test]
    fn sessions_are_found_by_cookie_and_ended() {
        let s = Sessions::default();
        let id = s.create("alice");
        let mut h = HeaderMap::new();
        let c = format!("other=1; {COOKIE}={id}");
        h.insert(http::header::COOKIE, c.parse().expect("header"));
        assert_eq!(s.find(&h), Some((id.clone(), "alice".to_owned())));
        s.end(&id);
        assert_eq!(s.find(&h), None);
    }

    #[test]
    fn other_sites_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert("host", "reg.example:5000".parse().expect("v"));
        assert!(!cross_site(&h));
        h.insert("origin", "http://reg.example:5000".parse().expect("v"));
        assert!(!cross_site(&h));
        h.insert("origin", "http://evil.example".parse().expect("v"));
        assert!(cross_site(&h));
        h.remove("origin");
        h.insert("sec-fetch-site", "cross-site".parse().expect("v"));
        assert!(cross_site(&h));
    }
}
