//! Access control: who is calling (HTTP Basic authentication against an Apache htpasswd
//! file) and what they may do (the optional access file).
//!
//! bcrypt is slow on purpose and clients send their credentials with every request, so a
//! successful verification is cached for a short while, keyed by a SHA-256 of user and
//! password (never the password itself); concurrent requests with the same new credential
//! share one verification. Failed attempts are throttled per client address, and per user
//! only for addresses that have not recently logged in as that user: someone guessing a
//! user's password from elsewhere must not lock the real user out.
//! The files are re-read on SIGHUP ([`Authenticator::reload`]) and when they change on disk
//! ([`Authenticator::reload_if_changed`]); a reload empties the cache.
//!
//! `api` asks this layer; this layer knows nothing of routes, HTTP responses or storage.

pub mod access;
pub mod htpasswd;
pub mod token;
pub mod users_file;

use access::{AccessRules, Action};
use base64::Engine;
use htpasswd::Htpasswd;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// How long a verified credential is trusted without hashing again.
pub const CREDENTIAL_TTL: Duration = Duration::from_secs(60);
/// How many verified credentials are remembered; beyond, the oldest are forgotten.
const CREDENTIAL_CACHE_SIZE: usize = 1024;
/// Failed attempts allowed in a burst, per client address and per user.
const FAILURE_BURST: f64 = 10.0;
/// After the burst, one more attempt is allowed every this long.
const FAILURE_RECOVERY: Duration = Duration::from_secs(3);
/// Throttle entries kept; beyond, the quietest are forgotten.
const THROTTLE_ENTRIES: usize = 16384;
/// How long a successful login exempts its (user, address) pair from the per-user throttle.
const RECENT_SUCCESS: Duration = Duration::from_secs(24 * 3600);
/// (user, address) pairs remembered as recently successful; beyond, the oldest are forgotten.
const RECENT_SUCCESS_ENTRIES: usize = 16384;
/// An `Authorization` header longer than this is not a credential anyone typed.
const MAX_AUTHORIZATION: usize = 4096;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User(String),
}

impl Identity {
    pub fn user(&self) -> Option<&str> {
        match self {
            Identity::Anonymous => None,
            Identity::User(u) => Some(u),
        }
    }
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// Credentials were given but are wrong, unknown or malformed.
    BadCredentials,
    /// Too many failures from this address or for this user; try again after this long.
    Throttled(Duration),
}

/// A problem with the users or access file: at startup or reload (the registry must not
/// serve without its password file), or editing the users file.
#[derive(Debug, Clone)]
pub struct AuthError(pub String);

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthError {}

/// What the files said, swapped whole on reload.
struct Policy {
    users: Arc<Htpasswd>,
    access: Option<AccessRules>,
}

/// Size, modification time and inode of a file: what tells us it changed.
type FileStamp = Option<(u64, SystemTime, u64)>;

fn stamp(path: &Path) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?, m.ino()))
}

type CredentialKey = [u8; 32];

/// One credential being or having been verified. Waiters share the cell.
struct CachedCredential {
    result: Arc<tokio::sync::OnceCell<bool>>,
    since: Instant,
}

#[derive(Default)]
struct CredentialCache {
    entries: HashMap<CredentialKey, CachedCredential>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ThrottleKey {
    Client(IpAddr),
    User(String),
}

/// A leaky bucket of failures: each failure adds one; one leaks out per recovery period.
#[derive(Debug, Clone, Copy)]
struct FailureBucket {
    level: f64,
    at: Instant,
}

impl FailureBucket {
    fn level_now(&self, now: Instant) -> f64 {
        let leaked = now.duration_since(self.at).as_secs_f64() / FAILURE_RECOVERY.as_secs_f64();
        (self.level - leaked).max(0.0)
    }
}

/// Authenticates requests and decides what each caller may do.
pub struct Authenticator {
    realm: String,
    htpasswd_path: PathBuf,
    access_path: Option<PathBuf>,
    policy: RwLock<Arc<Policy>>,
    stamps: Mutex<(FileStamp, FileStamp)>,
    cache: Mutex<CredentialCache>,
    throttle: Mutex<HashMap<ThrottleKey, FailureBucket>>,
    /// When each (user, address) pair last verified a password: such an address is known to
    /// the user, so failures from elsewhere do not throttle it.
    successes: Mutex<HashMap<(String, IpAddr), Instant>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("realm", &self.realm)
            .field("htpasswd", &self.htpasswd_path)
            .field("access_file", &self.access_path)
            .finish()
    }
}

impl Authenticator {
    /// Reads the htpasswd file (and the access file, if any). Either missing or invalid is an
    /// error: starting without them would serve an open registry.
    pub fn new(
        realm: &str,
        htpasswd: &Path,
        access_file: Option<&Path>,
    ) -> Result<Authenticator, AuthError> {
        let a = Authenticator {
            realm: realm.to_string(),
            htpasswd_path: htpasswd.to_path_buf(),
            access_path: access_file.map(Path::to_path_buf),
            policy: RwLock::new(Arc::new(Policy {
                users: Arc::new(Htpasswd::default()),
                access: None,
            })),
            stamps: Mutex::new((None, None)),
            cache: Mutex::new(CredentialCache::default()),
            throttle: Mutex::new(HashMap::new()),
            successes: Mutex::new(HashMap::new()),
        };
        a.reload()?;
        Ok(a)
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Re-reads both files and forgets every cached credential. On error the running policy
    /// stays (a half-written file must not lock everyone out or let everyone in).
    pub fn reload(&self) -> Result<(), AuthError> {
        let stamps = (
            stamp(&self.htpasswd_path),
            self.access_path.as_deref().and_then(stamp),
        );
        let users = Htpasswd::load(&self.htpasswd_path).map_err(|e| AuthError(e.to_string()))?;
        for w in &users.warnings {
            tracing::warn!("{w}");
        }
        if users.is_empty() {
            tracing::warn!(
                "{}: no users: every request needing credentials will be refused",
                self.htpasswd_path.display()
            );
        }
        let access = match &self.access_path {
            Some(p) => Some(AccessRules::load(p).map_err(AuthError)?),
            None => None,
        };
        let count = users.len();
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Policy {
            users: Arc::new(users),
            access,
        });
        *self.stamps.lock().unwrap_or_else(|e| e.into_inner()) = stamps;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .clear();
        tracing::info!(
            "authentication: {count} users from {}{}",
            self.htpasswd_path.display(),
            match &self.access_path {
                Some(p) => format!(", access rules from {}", p.display()),
                None => ", every user may pull, push and delete (no access file)".into(),
            }
        );
        Ok(())
    }

    /// Reloads when either file changed on disk since the last load (size, time or inode:
    /// editors and our own `htpasswd` command replace the file by renaming).
    pub fn reload_if_changed(&self) {
        let now = (
            stamp(&self.htpasswd_path),
            self.access_path.as_deref().and_then(stamp),
        );
        let changed = *self.stamps.lock().unwrap_or_else(|e| e.into_inner()) != now;
        if changed {
            match self.reload() {
                Ok(()) => tracing::info!("authentication files changed on disk: reloaded"),
                Err(e) => {
                    // Remember the broken state so the error is logged once, not every poll.
                    *self.stamps.lock().unwrap_or_else(|e| e.into_inner()) = now;
                    tracing::error!("authentication files changed but cannot be used, keeping the previous ones: {e}");
                }
            }
        }
    }

    fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Authenticates one request from its `Authorization` header (raw bytes, `None` when
    /// absent). Malformed headers are bad credentials, never a panic.
    pub async fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        client: IpAddr,
    ) -> Result<Identity, AuthFailure> {
        let Some(header) = authorization else {
            return Ok(Identity::Anonymous);
        };
        let Some((user, password)) = parse_basic(header) else {
            self.record_failure(client, None);
            return Err(AuthFailure::BadCredentials);
        };
        let key = credential_key(&user, &password);
        let cell = {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = cache.entries.get(&key) {
                if c.result.get() == Some(&true) && c.since.elapsed() < CREDENTIAL_TTL {
                    return Ok(Identity::User(user));
                }
            }
            // Not known good: only now does throttling apply, so a caller already proven
            // right is never locked out by someone else guessing at the same user.
            if let Some(wait) = self.throttled(client, &user) {
                return Err(AuthFailure::Throttled(wait));
            }
            let reuse = cache
                .entries
                .get(&key)
                .filter(|c| c.result.get().is_none())
                .map(|c| c.result.clone());
            match reuse {
                Some(cell) => cell,
                None => {
                    if cache.entries.len() >= CREDENTIAL_CACHE_SIZE {
                        evict(&mut cache);
                    }
                    let cell = Arc::new(tokio::sync::OnceCell::new());
                    cache.entries.insert(
                        key,
                        CachedCredential {
                            result: cell.clone(),
                            since: Instant::now(),
                        },
                    );
                    cell
                }
            }
        };
        let users = self.policy().users.clone();
        let ok = *cell
            .get_or_init(|| {
                let user = user.clone();
                async move {
                    let verified = tokio::task::spawn_blocking({
                        let user = user.clone();
                        move || users.verify(&user, &password)
                    })
                    .await
                    .unwrap_or(false);
                    tracing::debug!(
                        "password hash verification for {user:?}: {} ({} so far)",
                        if verified { "ok" } else { "failed" },
                        htpasswd::hash_verifications()
                    );
                    verified
                }
            })
            .await;
        if ok {
            self.record_success(client, &user);
            return Ok(Identity::User(user));
        }
        {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache
                .entries
                .get(&key)
                .is_some_and(|c| Arc::ptr_eq(&c.result, &cell))
            {
                cache.entries.remove(&key);
            }
        }
        self.record_failure(client, Some(&user));
        Err(AuthFailure::BadCredentials)
    }

    /// May this caller do `action` on `repository`? Without an access file, every
    /// authenticated user may do everything and anonymous callers nothing.
    pub fn allows(&self, who: &Identity, repository: &str, action: Action) -> bool {
        match &self.policy().access {
            Some(rules) => rules.allows(who.user(), repository, action),
            None => who.user().is_some(),
        }
    }

    /// Whether anonymous callers may pull anything at all.
    pub fn anonymous_may_pull(&self) -> bool {
        self.policy()
            .access
            .as_ref()
            .is_some_and(AccessRules::has_anonymous_rules)
    }

    /// How long this caller must wait: the address's own failures always count; the user's
    /// failures (from anywhere) only when this address has not recently logged in as them.
    fn throttled(&self, client: IpAddr, user: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut keys = vec![ThrottleKey::Client(client)];
        if !self.recently_succeeded(client, user, now) {
            keys.push(ThrottleKey::User(user.to_string()));
        }
        let t = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter_map(|k| t.get(k))
            .map(|b| b.level_now(now))
            // Throttled once the burst is used up (the bucket leaks continuously, so a burst of
            // exactly FAILURE_BURST quick failures leaves it just under that level).
            .filter(|level| *level > FAILURE_BURST - 1.0)
            .map(|level| FAILURE_RECOVERY.mul_f64(level - (FAILURE_BURST - 1.0)))
            .max()
    }

    fn recently_succeeded(&self, client: IpAddr, user: &str, now: Instant) -> bool {
        let s = self.successes.lock().unwrap_or_else(|e| e.into_inner());
        s.get(&(user.to_string(), client))
            .is_some_and(|at| now.duration_since(*at) < RECENT_SUCCESS)
    }

    fn record_success(&self, client: IpAddr, user: &str) {
        let now = Instant::now();
        let mut s = self.successes.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() >= RECENT_SUCCESS_ENTRIES {
            s.retain(|_, at| now.duration_since(*at) < RECENT_SUCCESS);
            if s.len() >= RECENT_SUCCESS_ENTRIES {
                // Still full: keep the most recent half.
                let mut times: Vec<Instant> = s.values().copied().collect();
                times.sort();
                let median = times[times.len() / 2];
                s.retain(|_, at| *at > median);
            }
        }
        s.insert((user.to_string(), client), now);
    }

    fn record_failure(&self, client: IpAddr, user: Option<&str>) {
        let now = Instant::now();
        let mut t = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() >= THROTTLE_ENTRIES {
            t.retain(|_, b| b.level_now(now) > 0.0);
            if t.len() >= THROTTLE_ENTRIES {
                // Still full: a flood of distinct names. Forget the quietest half.
                let mut levels: Vec<f64> = t.values().map(|b| b.level_now(now)).collect();
                levels.sort_by(f64::total_cmp);
                let median = levels[levels.len() / 2];
                t.retain(|_, b| b.level_now(now) > median);
            }
        }
        let mut keys = vec![ThrottleKey::Client(client)];
        if let Some(u) = user {
            keys.push(ThrottleKey::User(u.to_string()));
        }
        for k in keys {
            let b = t.entry(k).or_insert(FailureBucket {
                level: 0.0,
                at: now,
            });
            b.level = b.level_now(now) + 1.0;
            b.at = now;
        }
    }
}

fn evict(cache: &mut CredentialCache) {
    cache
        .entries
        .retain(|_, c| c.result.get().is_none() || c.since.elapsed() < CREDENTIAL_TTL);
    while cache.entries.len() >= CREDENTIAL_CACHE_SIZE {
        let oldest = cache
            .entries
            .iter()
            .min_by_key(|(_, c)| c.since)
            .map(|(k, _)| *k);
        match oldest {
            Some(k) => {
                cache.entries.remove(&k);
            }
            None => break,
        }
    }
}

/// The cache key: SHA-256 over the user's length, the user and the password, so that no
/// two different pairs collide by moving the boundary and the password is never stored.
fn credential_key(user: &str, password: &[u8]) -> CredentialKey {
    let mut h = Sha256::new();
    h.update((user.len() as u64).to_be_bytes());
    h.update(user.as_bytes());
    h.update(password);
    h.finalize().into()
}

/// `Basic base64(user:password)`: the user (UTF-8, non-empty) ends at the first colon; the
/// password is the rest, bytes as sent.
pub fn parse_basic(header: &[u8]) -> Option<(String, Vec<u8>)> {
    if header.len() > MAX_AUTHORIZATION {
        return None;
    }
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, b64) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let colon = raw.iter().position(|b| *b == b':')?;
    let user = std::str::from_utf8(&raw[..colon]).ok()?;
    if user.is_empty() {
        return None;
    }
    Some((user.to_string(), raw[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn basic_headers_parse_and_malformed_ones_do_not() {
        let h = format!("Basic {}", b64("bob:b0b:with:colons"));
        assert_eq!(
            parse_basic(h.as_bytes()),
            Some(("bob".into(), b"b0b:with:colons".to_vec()))
        );
        let lower = format!("basic {}", b64("a:"));
        assert_eq!(
            parse_basic(lower.as_bytes()),
            Some(("a".into(), Vec::new()))
        );
        let huge = format!("Basic {}", "A".repeat(10_000));
        for bad in [
            "Basic".to_string(),
            "Basic !!!notbase64".into(),
            format!("Basic {}", b64("nocolon")),
            format!("Basic {}", b64(":emptyuser")),
            format!("Bearer {}", b64("a:b")),
            huge,
        ] {
            assert_eq!(parse_basic(bad.as_bytes()), None, "{bad:.40}");
        }
        assert_eq!(parse_basic(&[0xff, 0xfe]), None);
    }

    /// An htpasswd file of three users in three schemes, kept until the handle drops.
    fn users_file() -> tempfile::NamedTempFile {
        let mut text = String::new();
        for (user, password, scheme) in [
            ("testuser", "testpass", htpasswd::HashScheme::Apr1),
            ("carol", "sha1 pass", htpasswd::HashScheme::Sha1),
            ("erin", "sha256pass", htpasswd::HashScheme::Sha256Crypt),
        ] {
            let hash = htpasswd::hash_password(password.as_bytes(), scheme).expect("hashes");
            text.push_str(&format!("{user}:{hash}\n"));
        }
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), text).expect("write users");
        file
    }

    #[tokio::test]
    async fn one_verification_per_credential_and_reload_forgets() {
        let users = users_file();
        let a = Authenticator::new("r", users.path(), None).expect("loads");
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let h = format!("Basic {}", b64("testuser:testpass"));
        let before = htpasswd::hash_verifications();
        for _ in 0..20 {
            assert_eq!(
                a.authenticate(Some(h.as_bytes()), ip).await,
                Ok(Identity::User("testuser".into()))
            );
        }
        // Other tests run in parallel and verify too, so count only what this one could add.
        let after = htpasswd::hash_verifications();
        assert!(
            after - before < 20,
            "{} verifications for 20 requests",
            after - before
        );
        assert!(a
            .cache
            .lock()
            .expect("lock")
            .entries
            .contains_key(&credential_key("testuser", b"testpass")));
        a.reload().expect("reloads");
        assert!(a.cache.lock().expect("lock").entries.is_empty());
    }

    #[tokio::test]
    async fn failures_are_throttled_per_client_and_per_user() {
        let users = users_file();
        let a = Authenticator::new("r", users.path(), None).expect("loads");
        let ip: IpAddr = "192.0.2.2".parse().expect("ip");
        let wrong = format!("Basic {}", b64("carol:wrong"));
        for _ in 0..10 {
            assert_eq!(
                a.authenticate(Some(wrong.as_bytes()), ip).await,
                Err(AuthFailure::BadCredentials)
            );
        }
        match a.authenticate(Some(wrong.as_bytes()), ip).await {
            Err(AuthFailure::Throttled(d)) => assert!(d >= Duration::from_secs(1)),
            other => panic!("expected throttling, got {other:?}"),
        }
        // The same user from elsewhere is throttled too (per user) ...
        let other: IpAddr = "192.0.2.3".parse().expect("ip");
        let right = format!("Basic {}", b64("carol:sha1 pass"));
        assert!(matches!(
            a.authenticate(Some(right.as_bytes()), other).await,
            Err(AuthFailure::Throttled(_))
        ));
        // ... but another user from that other address is not.
        let erin = format!("Basic {}", b64("erin:sha256pass"));
        assert_eq!(
            a.authenticate(Some(erin.as_bytes()), other).await,
            Ok(Identity::User("erin".into()))
        );
    }

    #[tokio::test]
    async fn a_guesser_elsewhere_does_not_lock_out_an_address_the_user_logged_in_from() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("users");
        let hash =
            htpasswd::hash_password(b"sha256pass", htpasswd::HashScheme::Bcrypt(4)).expect("hash");
        std::fs::write(&file, format!("erin:{hash}\n")).expect("write");
        let a = Authenticator::new("r", &file, None).expect("loads");
        let home: IpAddr = "192.0.2.10".parse().expect("ip");
        let attacker: IpAddr = "198.51.100.7".parse().expect("ip");
        let right = format!("Basic {}", b64("erin:sha256pass"));
        let wrong = format!("Basic {}", b64("erin:guess"));
        assert_eq!(
            a.authenticate(Some(right.as_bytes()), home).await,
            Ok(Identity::User("erin".into()))
        );
        let mut throttled = 0;
        for _ in 0..60 {
            if let Err(AuthFailure::Throttled(_)) =
                a.authenticate(Some(wrong.as_bytes()), attacker).await
            {
                throttled += 1;
            }
        }
        assert!(
            throttled >= 40,
            "the guesser is throttled ({throttled} of 60)"
        );
        // The cached credential expires (a reload forgets it): the user still gets in from
        // home, where they logged in before, at once and with a real verification.
        a.reload().expect("reloads");
        assert_eq!(
            a.authenticate(Some(right.as_bytes()), home).await,
            Ok(Identity::User("erin".into()))
        );
        // A wrong password from home is still counted against home itself.
        assert_eq!(
            a.authenticate(Some(wrong.as_bytes()), home).await,
            Err(AuthFailure::BadCredentials)
        );
        // An address that never logged in as erin is throttled for her while the attack lasts
        // (once her credential is no longer cached as verified).
        a.reload().expect("reloads");
        let fresh: IpAddr = "203.0.113.5".parse().expect("ip");
        assert!(matches!(
            a.authenticate(Some(right.as_bytes()), fresh).await,
            Err(AuthFailure::Throttled(_))
        ));
    }

    #[test]
    fn a_missing_file_is_a_startup_error() {
        let e = Authenticator::new("r", Path::new("/nonexistent/htpasswd"), None).unwrap_err();
        assert!(e.0.contains("/nonexistent/htpasswd"));
    }
}
