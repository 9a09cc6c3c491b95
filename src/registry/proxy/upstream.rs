//! The HTTP client of one upstream registry: requests to its `/v2/` API with its
//! credentials, through whichever challenge it answers with. Basic upstreams get the
//! username and password; token upstreams (`WWW-Authenticate: Bearer realm=..., service=...,
//! scope=...`) get a token from the realm for the scope asked (with the credentials, or
//! anonymously), kept until it expires and shared by every request for that scope.

use http::{HeaderMap, Method, StatusCode};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a request to an upstream may take to answer with its head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// A token without `expires_in` lives 60 s (the token specification's default).
const DEFAULT_TOKEN_LIFE: u64 = 60;

/// Why an upstream could not answer.
#[derive(Debug)]
pub enum UpstreamError {
    /// It answers that it does not have it (404).
    NotFound,
    /// It could not be reached, refused our credentials, or answered something else.
    Failed(String),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::NotFound => f.write_str("not found upstream"),
            UpstreamError::Failed(m) => f.write_str(m),
        }
    }
}

/// A token for one scope, and when to stop using it.
struct Token {
    value: String,
    until: Instant,
}

/// One upstream registry.
pub struct Upstream {
    /// `https://registry-1.docker.io`, without a trailing `/`.
    base: String,
    credentials: Option<(String, String)>,
    client: reqwest::Client,
    tokens: Mutex<HashMap<String, Token>>,
    /// The upstream asked for Basic authentication once: send it with every request.
    basic: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("base", &self.base)
            .finish()
    }
}

impl Upstream {
    pub fn new(
        remoteurl: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<Upstream, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!(
                "docker-registry/",
                env!("CARGO_PKG_VERSION"),
                " (pull-through cache)"
            ))
            .build()
            .map_err(|e| format!("proxy upstream {remoteurl}: {e}"))?;
        Ok(Upstream {
            base: remoteurl.trim_end_matches('/').to_string(),
            credentials: username
                .zip(password)
                .map(|(u, p)| (u.to_string(), p.to_string())),
            client,
            tokens: Mutex::new(HashMap::new()),
            basic: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The upstream's URL, for logs and messages.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Sends `method` to `/v2/<repo>/<path>` and returns the answer, authenticating as the
    /// upstream asks; a 404 is [`UpstreamError::NotFound`], any other failure `Failed`.
    pub async fn send(
        &self,
        method: Method,
        repo: &str,
        path: &str,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, UpstreamError> {
        let url = format!("{}/v2/{repo}/{path}", self.base);
        let scope = format!("repository:{repo}:pull");
        let mut retried = false;
        loop {
            let mut req = self
                .client
                .request(method.clone(), &url)
                .headers(headers.clone());
            if let Some(token) = self.cached_token(&scope) {
                req = req.bearer_auth(token);
            } else if let (true, Some((u, p))) = (
                self.basic.load(std::sync::atomic::Ordering::Relaxed),
                &self.credentials,
            ) {
                req = req.basic_auth(u, Some(p));
            }
            let resp = tokio::time::timeout(HEAD_TIMEOUT, req.send())
                .await
                .map_err(|_| {
                    self.failed(&format!(
                        "{method} {url}: no answer within {HEAD_TIMEOUT:?}"
                    ))
                })?
                .map_err(|e| self.failed(&format!("{method} {url}: {e}")))?;
            match resp.status() {
                StatusCode::UNAUTHORIZED if !retried => {
                    retried = true;
                    let challenge = resp
                        .headers()
                        .get(http::header::WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    self.answer(&challenge, &scope).await?;
                }
                StatusCode::NOT_FOUND => return Err(UpstreamError::NotFound),
                s if s.is_success() => return Ok(resp),
                s => return Err(self.failed(&format!("{method} {url}: the upstream answered {s}"))),
            }
        }
    }

    fn failed(&self, message: &str) -> UpstreamError {
        UpstreamError::Failed(message.to_string())
    }

    fn cached_token(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(scope)
            .filter(|t| t.until > Instant::now())
            .map(|t| t.value.clone())
    }

    /// Meets a 401's challenge: Basic remembers to send the credentials; Bearer fetches a
    /// token for `scope` from the realm.
    async fn answer(&self, challenge: &str, scope: &str) -> Result<(), UpstreamError> {
        let (scheme, params) = parse_challenge(challenge);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" if self.credentials.is_some() => {
                self.basic.store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            "bearer" => self.fetch_token(&params, scope).await,
            _ => Err(self.failed(&format!(
                "{}: refused our credentials (challenge {challenge:?})",
                self.base
            ))),
        }
    }

    async fn fetch_token(
        &self,
        params: &HashMap<String, String>,
        scope: &str,
    ) -> Result<(), UpstreamError> {
        let realm = params.get("realm").ok_or_else(|| {
            self.failed(&format!(
                "{}: a Bearer challenge without a realm",
                self.base
            ))
        })?;
        // Asked for with the challenge's scope when it names one (ours, usually), kept
        // under ours, which the next request looks for.
        let asked = params.get("scope").map(String::as_str).unwrap_or(scope);
        let mut query: Vec<(&str, &str)> = vec![("scope", asked)];
        if let Some(service) = params.get("service") {
            query.push(("service", service));
        }
        let mut req = self.client.get(realm).query(&query);
        if let Some((u, p)) = &self.credentials {
            req = req.basic_auth(u, Some(p));
        }
        let resp = tokio::time::timeout(HEAD_TIMEOUT, req.send())
            .await
            .map_err(|_| self.failed(&format!("token from {realm}: no answer")))?
            .map_err(|e| self.failed(&format!("token from {realm}: {e}")))?;
        if !resp.status().is_success() {
            return Err(self.failed(&format!(
                "token from {realm}: the token server answered {}",
                resp.status()
            )));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.failed(&format!("token from {realm}: {e}")))?;
        let body: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| self.failed(&format!("token from {realm}: not JSON: {e}")))?;
        let value = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| self.failed(&format!("token from {realm}: no token in the answer")))?;
        let life = body
            .get("expires_in")
            .and_then(|e| e.as_u64())
            .unwrap_or(DEFAULT_TOKEN_LIFE);
        // A little early, so that a token is never sent as it expires.
        let until = Instant::now() + Duration::from_secs(life.saturating_sub(5).max(1));
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.retain(|_, t| t.until > Instant::now());
        tokens.insert(
            scope.to_string(),
            Token {
                value: value.to_string(),
                until,
            },
        );
        Ok(())
    }
}

/// `Bearer realm="https://auth",service="registry",scope="repository:a:pull"`: the scheme
/// and its parameters (names lower-cased; values unquoted, `\"` unescaped).
pub fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_with_commas_in_quoted_values() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry.example");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let (scheme, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(scheme, "Basic");
        assert_eq!(p["realm"], "Registry Realm");
        let (_, p) = parse_challenge("Bearer realm=http://x/t, service=s");
        assert_eq!(p["realm"], "http://x/t");
        assert_eq!(p["service"], "s");
    }
}
