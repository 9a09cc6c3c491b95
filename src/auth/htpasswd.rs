//! Apache `htpasswd` files: parsing every hash format Apache's `htpasswd` writes, verifying a
//! password against a user's hash, and hashing new passwords for the `htpasswd` subcommand.
//!
//! Formats: bcrypt (`$2y$`, `$2a$`, `$2b$`, Apache's `-B`), APR1-MD5 (`$apr1$`, Apache's
//! default and what the nginx tutorials made), `{SHA}` (base64 SHA-1, `-s`), SHA-256/512 crypt
//! (`$5$`, `$6$`, `-2`/`-5`), and traditional DES crypt (`-d`), which is accepted with a loud
//! warning because it only looks at the first 8 characters of a password. Plain-text entries
//! are refused: a line we cannot recognise is a load error naming the file and line, never a
//! user who can log in with anything. Every comparison of a computed hash with the stored one
//! is constant-time.

use base64::Engine;
use md5::{Digest as _, Md5};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use subtle::ConstantTimeEq;

/// The alphabet of crypt(3)'s base64 ("./0-9A-Za-z"), used by APR1 and DES crypt.
const CRYPT64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// How many password hashes this process has computed to verify a password; the credential
/// cache exists to keep this low, and the debug log shows it so a test can prove it.
static HASH_VERIFICATIONS: AtomicU64 = AtomicU64::new(0);

/// The number of password hash verifications computed so far by this process.
pub fn hash_verifications() -> u64 {
    HASH_VERIFICATIONS.load(Ordering::Relaxed)
}

/// One user's stored password hash, in the format it was written.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$2y$`, `$2a$`, `$2b$` (and `$2x$`): the whole string, as the bcrypt crate parses it.
    Bcrypt(String),
    /// `$apr1$salt$hash`: Apache's MD5 crypt variant.
    Apr1 { salt: String, checksum: String },
    /// `{SHA}base64`: one unsalted SHA-1.
    Sha1([u8; 20]),
    /// `$5$[rounds=N$]salt$hash`.
    Sha256Crypt(String),
    /// `$6$[rounds=N$]salt$hash`.
    Sha512Crypt(String),
    /// Traditional 13-character DES crypt.
    DesCrypt(String),
}

// Hashes are secrets of a sort: never print them, even in debug output.
impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme())
    }
}

impl PasswordHash {
    /// Recognises the format of one stored hash.
    pub fn parse(s: &str) -> Result<PasswordHash, String> {
        if let Some(rest) = s.strip_prefix("$apr1$") {
            let (salt, checksum) = rest
                .split_once('$')
                .ok_or_else(|| "an $apr1$ hash needs $apr1$SALT$HASH".to_string())?;
            if salt.is_empty() || salt.len() > 8 || checksum.len() != 22 {
                return Err(
                    "malformed $apr1$ hash (salt of 1-8 characters, 22-character hash)".into(),
                );
            }
            return Ok(PasswordHash::Apr1 {
                salt: salt.into(),
                checksum: checksum.into(),
            });
        }
        if ["$2y$", "$2a$", "$2b$", "$2x$"]
            .iter()
            .any(|p| s.starts_with(p))
        {
            // Parse now so that a damaged line is a load error rather than a failed login.
            bcrypt_parts(s)?;
            return Ok(PasswordHash::Bcrypt(s.into()));
        }
        if let Some(b64) = s.strip_prefix("{SHA}") {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("malformed {{SHA}} hash: {e}"))?;
            let digest: [u8; 20] = raw
                .try_into()
                .map_err(|_| "malformed {SHA} hash: not 20 bytes of SHA-1".to_string())?;
            return Ok(PasswordHash::Sha1(digest));
        }
        if s.starts_with("$5$") || s.starts_with("$6$") {
            let parts: Vec<&str> = s.split('$').collect();
            let ok = matches!(parts.len(), 4 | 5)
                && (parts.len() == 4 || parts[2].starts_with("rounds="))
                && !parts[parts.len() - 1].is_empty();
            if !ok {
                return Err(
                    "malformed SHA-crypt hash: expected $5$ or $6$, [rounds=N$]SALT$HASH".into(),
                );
            }
            return Ok(if s.starts_with("$5$") {
                PasswordHash::Sha256Crypt(s.into())
            } else {
                PasswordHash::Sha512Crypt(s.into())
            });
        }
        if s.len() == 13 && s.bytes().all(|b| CRYPT64.contains(&b)) {
            return Ok(PasswordHash::DesCrypt(s.into()));
        }
        if s.starts_with('$') {
            let scheme = s.split('$').nth(1).unwrap_or_default();
            return Err(format!(
                "unsupported hash scheme ${scheme}$: use bcrypt (htpasswd -B)"
            ));
        }
        Err("not a password hash this registry knows (plain-text passwords are refused): use bcrypt (htpasswd -B)".into())
    }

    /// The format's name, for warnings and `Debug`.
    pub fn scheme(&self) -> &'static str {
        match self {
            PasswordHash::Bcrypt(_) => "bcrypt",
            PasswordHash::Apr1 { .. } => "apr1-md5",
            PasswordHash::Sha1(_) => "sha1",
            PasswordHash::Sha256Crypt(_) => "sha256-crypt",
            PasswordHash::Sha512Crypt(_) => "sha512-crypt",
            PasswordHash::DesCrypt(_) => "des-crypt",
        }
    }

    /// Checks a password. Slow on purpose for bcrypt and SHA-crypt: call it off the async
    /// runtime (`spawn_blocking`) and cache the result.
    pub fn verify(&self, password: &[u8]) -> bool {
        HASH_VERIFICATIONS.fetch_add(1, Ordering::Relaxed);
        match self {
            PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            PasswordHash::Apr1 { salt, checksum } => {
                let computed = apr1_checksum(password, salt.as_bytes());
                computed.as_bytes().ct_eq(checksum.as_bytes()).into()
            }
            PasswordHash::Sha1(stored) => {
                let computed = sha1::Sha1::digest(password);
                computed.as_slice().ct_eq(stored.as_slice()).into()
            }
            // SHA-crypt is defined over bytes, but the crate takes text: a password that is not
            // UTF-8 cannot match a hash Apache made from a terminal's text anyway.
            PasswordHash::Sha256Crypt(h) => match std::str::from_utf8(password) {
                Ok(p) => sha_crypt::sha256_check(p, h).is_ok(),
                Err(_) => false,
            },
            PasswordHash::Sha512Crypt(h) => match std::str::from_utf8(password) {
                Ok(p) => sha_crypt::sha512_check(p, h).is_ok(),
                Err(_) => false,
            },
            PasswordHash::DesCrypt(h) => pwhash::unix_crypt::verify(password, h),
        }
    }
}

fn bcrypt_parts(s: &str) -> Result<(), String> {
    // `$2y$NN$` + 22 characters of salt + 31 of hash.
    let cost = s.get(4..6).and_then(|c| c.parse::<u32>().ok());
    match cost {
        Some(4..=31) if s.len() == 60 && s.as_bytes()[6] == b'$' => Ok(()),
        _ => Err("malformed bcrypt hash: expected $2y$COST$ and 53 characters".into()),
    }
}

/// crypt(3)'s base64 of the low `n` 6-bit groups of `v`, least significant first.
fn to64(out: &mut String, mut v: u32, n: usize) {
    for _ in 0..n {
        out.push(CRYPT64[(v & 0x3f) as usize] as char);
        v >>= 6;
    }
}

/// The 22-character checksum of Apache's `$apr1$` (Poul-Henning Kamp's MD5 crypt with the
/// magic string `$apr1$`), as APR's `apr_md5_encode` computes it.
pub fn apr1_checksum(password: &[u8], salt: &[u8]) -> String {
    const MAGIC: &[u8] = b"$apr1$";
    let salt = &salt[..salt.len().min(8)];
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut ctx = Md5::new()
        .chain_update(password)
        .chain_update(MAGIC)
        .chain_update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alternate[..n]);
        left -= n;
    }
    let mut bits = password.len();
    while bits > 0 {
        if bits & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        bits >>= 1;
    }
    let mut fin = ctx.finalize();
    // A thousand rounds, mixing password, salt and the previous result in a fixed pattern:
    // the scheme's (weak, by today's standards) way of being slow.
    for i in 0..1000 {
        let mut c = Md5::new();
        if i & 1 == 1 {
            c.update(password);
        } else {
            c.update(fin);
        }
        if i % 3 != 0 {
            c.update(salt);
        }
        if i % 7 != 0 {
            c.update(password);
        }
        if i & 1 == 1 {
            c.update(fin);
        } else {
            c.update(password);
        }
        fin = c.finalize();
    }
    let mut out = String::with_capacity(22);
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        to64(
            &mut out,
            (u32::from(fin[a]) << 16) | (u32::from(fin[b]) << 8) | u32::from(fin[c]),
            4,
        );
    }
    to64(&mut out, u32::from(fin[11]), 2);
    out
}

/// A problem with an htpasswd file, naming the file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtpasswdError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for HtpasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for HtpasswdError {}

/// The users of one htpasswd file.
#[derive(Debug, Clone, Default)]
pub struct Htpasswd {
    users: HashMap<String, PasswordHash>,
    /// Things the operator must hear about (DES hashes, duplicate users), with file and line.
    pub warnings: Vec<String>,
}

impl Htpasswd {
    /// Reads a file. A missing or unreadable file is an error: the caller must not serve an
    /// open registry because the password file went away.
    pub fn load(path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let text = std::fs::read(path).map_err(|e| HtpasswdError {
            path: path.into(),
            line: None,
            message: format!("cannot read the htpasswd file: {e}"),
        })?;
        let text = String::from_utf8(text).map_err(|_| HtpasswdError {
            path: path.into(),
            line: None,
            message: "the htpasswd file is not text (UTF-8)".into(),
        })?;
        Htpasswd::parse(&text, path)
    }

    /// Parses the text of a file (`path` only names it in errors and warnings).
    pub fn parse(text: &str, path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let mut h = Htpasswd::default();
        let mut errors = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The user name ends at the first colon; the hash is the rest (hashes have none).
            let Some((user, hash)) = line.split_once(':') else {
                errors.push(format!("{}:{line_no}: expected USER:HASH", path.display()));
                continue;
            };
            if user.is_empty() {
                errors.push(format!("{}:{line_no}: empty user name", path.display()));
                continue;
            }
            match PasswordHash::parse(hash.trim()) {
                Ok(parsed) => {
                    if parsed.scheme() == "des-crypt" {
                        h.warnings.push(format!(
                            "{}:{line_no}: user {user:?} has a DES crypt hash, which only checks the first 8 characters of a password and is cracked in minutes: re-create it with `docker-registry htpasswd {} {user}` (bcrypt)",
                            path.display(),
                            path.display()
                        ));
                    }
                    if h.users.insert(user.to_string(), parsed).is_some() {
                        h.warnings.push(format!(
                            "{}:{line_no}: user {user:?} appears more than once; the last line wins",
                            path.display()
                        ));
                    }
                }
                Err(message) => errors.push(format!(
                    "{}:{line_no}: user {user:?}: {message}",
                    path.display()
                )),
            }
        }
        if errors.is_empty() {
            Ok(h)
        } else {
            Err(HtpasswdError {
                path: path.into(),
                line: None,
                message: format!("invalid entries:\n  {}", errors.join("\n  ")),
            })
        }
    }

    /// Checks a user's password. An unknown user costs a bcrypt too, so that response time
    /// does not tell which user names exist.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(hash) => hash.verify(password),
            None => {
                let _ = dummy_hash().verify(password);
                false
            }
        }
    }

    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The users in file order is not kept; this is for listing and tests.
    pub fn users(&self) -> impl Iterator<Item = (&str, &PasswordHash)> {
        self.users.iter().map(|(u, h)| (u.as_str(), h))
    }
}

/// A bcrypt hash (cost 10, a typical cost) of nothing in particular, made once, to spend the
/// same time on unknown users as on known ones.
fn dummy_hash() -> &'static PasswordHash {
    static DUMMY: std::sync::OnceLock<PasswordHash> = std::sync::OnceLock::new();
    DUMMY.get_or_init(
        || match hash_password(b"not a password", HashScheme::Bcrypt(10)) {
            Ok(h) => PasswordHash::Bcrypt(h),
            // Cannot happen with a valid cost; a cheap stand-in keeps unknown users failing.
            Err(_) => PasswordHash::Sha1([0; 20]),
        },
    )
}

/// The hash formats the `htpasswd` subcommand can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashScheme {
    /// bcrypt with a cost (4..=31).
    Bcrypt(u32),
    Apr1,
    Sha1,
    Sha256Crypt,
    Sha512Crypt,
}

/// Hashes a new password in the given scheme, with a fresh random salt.
pub fn hash_password(password: &[u8], scheme: HashScheme) -> Result<String, String> {
    match scheme {
        HashScheme::Bcrypt(cost) => bcrypt::hash_with_result(password, cost)
            .map(|h| h.format_for_version(bcrypt::Version::TwoY))
            .map_err(|e| format!("cannot hash with bcrypt: {e}")),
        HashScheme::Apr1 => {
            let salt = random_salt(8)?;
            Ok(format!(
                "$apr1${salt}${}",
                apr1_checksum(password, salt.as_bytes())
            ))
        }
        HashScheme::Sha1 => Ok(format!(
            "{{SHA}}{}",
            base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(password))
        )),
        HashScheme::Sha256Crypt | HashScheme::Sha512Crypt => {
            let text = std::str::from_utf8(password)
                .map_err(|_| "SHA-crypt needs a UTF-8 password".to_string())?;
            // Apache's default of 5000 rounds; the crate emits `rounds=` only when not default.
            if scheme == HashScheme::Sha256Crypt {
                let params = sha_crypt::Sha256Params::new(5000).map_err(|e| format!("{e:?}"))?;
                sha_crypt::sha256_simple(text, &params).map_err(|e| format!("cannot hash: {e:?}"))
            } else {
                let params = sha_crypt::Sha512Params::new(5000).map_err(|e| format!("{e:?}"))?;
                sha_crypt::sha512_simple(text, &params).map_err(|e| format!("cannot hash: {e:?}"))
            }
        }
    }
}

/// `n` random characters of the crypt alphabet, from the operating system's generator.
fn random_salt(n: usize) -> Result<String, String> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom for a salt: {e}"))?;
    Ok(bytes
        .iter()
        .map(|b| CRYPT64[(b & 0x3f) as usize] as char)
        .collect())
}

#[cfg(test)]
mod tests {
    // Files written by Apache's own htpasswd, in every format, are checked in tests/auth.rs.
    use super::*;

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let e = Htpasswd::load(Path::new("/nonexistent/htpasswd")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/htpasswd"), "{e}");
    }

    #[test]
    fn plain_text_and_damaged_lines_are_refused_with_their_line() {
        let p = Path::new("users");
        for text in [
            "alice:secret",
            "alice:$apr1$x",
            "alice:{SHA}bm90c2hhMQ==",
            "alice:$2y$05$short",
            "alice:$1$abc$def",
            "justauser",
        ] {
            let e = Htpasswd::parse(&format!("# c\n{text}\n"), p).unwrap_err();
            assert!(e.message.contains("users:2"), "{text}: {e}");
        }
    }

    #[test]
    fn apr1_matches_known_vectors() {
        // Made by Apache's htpasswd: testuser:$apr1$mml32Bn1$loguVBtZutfeyv.WMcqn./
        assert_eq!(
            apr1_checksum(b"testpass", b"mml32Bn1"),
            "loguVBtZutfeyv.WMcqn./"
        );
    }

    #[test]
    fn new_hashes_verify_in_every_scheme() {
        for scheme in [
            HashScheme::Bcrypt(4),
            HashScheme::Apr1,
            HashScheme::Sha1,
            HashScheme::Sha256Crypt,
            HashScheme::Sha512Crypt,
        ] {
            let hash = hash_password(b"p@ss:word", scheme).expect("hashes");
            let parsed = PasswordHash::parse(&hash).expect("parses");
            assert!(parsed.verify(b"p@ss:word"), "{scheme:?}: {hash}");
            assert!(!parsed.verify(b"p@ss:wore"), "{scheme:?}");
        }
        assert!(hash_password(b"x", HashScheme::Bcrypt(5))
            .expect("hashes")
            .starts_with("$2y$05$"));
    }
}
