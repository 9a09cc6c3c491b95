//! Content digests (`sha256:<64 hex>`, `sha512:<128 hex>`), validated once at the edge so
//! that a `Digest` can be turned into a storage path without further checks, and the hashers
//! that compute them while bodies stream in.

use super::sha2_state::{self, Sha2};
use std::fmt;
use std::str::FromStr;

/// A digest algorithm we store content under: the two the OCI image spec registers.
/// Declared in the order listings visit them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Algorithm {
    /// What clients use unless told otherwise; also how we name manifests pushed by tag.
    #[default]
    Sha256,
    Sha512,
}

impl Algorithm {
    /// Every algorithm, for walking the directories each one has in the layout.
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

    /// The name in digests and in the storage layout (`blobs/<name>/...`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The digest of bytes held in memory (manifests, small documents).
    pub fn digest(self, bytes: &[u8]) -> Digest {
        let mut h = DigestHasher::new(self);
        h.update(bytes);
        h.finish()
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated content digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestError {
    /// Not of the form `algorithm:encoded`, or an encoding of the wrong length or alphabet.
    Malformed,
    /// A well-formed digest whose algorithm we do not support.
    UnsupportedAlgorithm(String),
}

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DigestError::Malformed => f.write_str(
                "invalid digest: expected sha256:<64 lowercase hex digits> \
                 or sha512:<128 lowercase hex digits>",
            ),
            DigestError::UnsupportedAlgorithm(a) => write!(
                f,
                "unsupported digest algorithm {a:?}: sha256 and sha512 are supported"
            ),
        }
    }
}

impl std::error::Error for DigestError {}

impl Digest {
    /// The lowercase hex encoding.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The sha256 digest of bytes held in memory: how manifests pushed by tag are named.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Algorithm::Sha256.digest(bytes)
    }

    /// Whether `bytes` hash to this digest, with this digest's algorithm.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        self.algorithm.digest(bytes) == *self
    }

    /// A digest from a directory name of the layout (`.../<algorithm>/<hex>`).
    pub fn from_parts(algorithm: Algorithm, hex: &str) -> Result<Digest, DigestError> {
        if hex.len() == algorithm.hex_len()
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Digest {
                algorithm,
                hex: hex.to_owned(),
            })
        } else {
            Err(DigestError::Malformed)
        }
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, enc) = s.split_once(':').ok_or(DigestError::Malformed)?;
        // The spec's grammar: algorithm-component ([a-z0-9]+) separated by [+._-].
        let alg_ok = !alg.is_empty()
            && alg.split(['+', '.', '_', '-']).all(|c| {
                !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        let enc_ok = !enc.is_empty()
            && enc
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
        if !alg_ok || !enc_ok {
            return Err(DigestError::Malformed);
        }
        match Algorithm::from_name(alg) {
            Some(a) => Digest::from_parts(a, enc),
            None => Err(DigestError::UnsupportedAlgorithm(alg.to_owned())),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An incremental hash of one algorithm, used while a body streams in. Only the algorithm
/// asked for is computed: sha512 costs about 2.7 times sha256 here (sha2 uses the CPU's
/// SHA extensions for sha256; there are none for sha512 on most x86 CPUs).
///
/// Its state can be saved and loaded ([`DigestHasher::save`]), so that an upload's hash
/// travels between requests and instances (see `sha2_state`).
#[derive(Clone)]
pub struct DigestHasher(Running);

#[derive(Clone)]
enum Running {
    Sha256(Sha2<sha2_state::Sha256>),
    Sha512(Sha2<sha2_state::Sha512>),
}

impl Default for DigestHasher {
    fn default() -> Self {
        DigestHasher::new(Algorithm::default())
    }
}

impl DigestHasher {
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => DigestHasher(Running::Sha256(Sha2::default())),
            Algorithm::Sha512 => DigestHasher(Running::Sha512(Sha2::default())),
        }
    }

    /// The state, to be taken up later by [`DigestHasher::load`].
    pub fn save(&self) -> Vec<u8> {
        match &self.0 {
            Running::Sha256(h) => h.save(),
            Running::Sha512(h) => h.save(),
        }
    }

    /// A state [`DigestHasher::save`] wrote for `algorithm`; `None` if it is not one.
    pub fn load(algorithm: Algorithm, saved: &[u8]) -> Option<Self> {
        match algorithm {
            Algorithm::Sha256 => Sha2::load(saved).map(|h| DigestHasher(Running::Sha256(h))),
            Algorithm::Sha512 => Sha2::load(saved).map(|h| DigestHasher(Running::Sha512(h))),
        }
    }

    /// Bytes hashed so far.
    pub fn hashed(&self) -> u64 {
        match &self.0 {
            Running::Sha256(h) => h.hashed(),
            Running::Sha512(h) => h.hashed(),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match &self.0 {
            Running::Sha256(_) => Algorithm::Sha256,
            Running::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.0 {
            Running::Sha256(h) => h.update(bytes),
            Running::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self.0 {
            Running::Sha256(h) => (Algorithm::Sha256, to_hex(&h.finalize())),
            Running::Sha512(h) => (Algorithm::Sha512, to_hex(&h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA512: &str = "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";

    #[test]
    fn parses_and_prints_sha256() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .expect("valid");
        assert_eq!(d, Digest::of_bytes(b""));
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string().len(), 71);
    }

    #[test]
    fn parses_prints_and_computes_sha512() {
        let d: Digest = EMPTY_SHA512.parse().expect("valid");
        assert_eq!(d.algorithm(), Algorithm::Sha512);
        assert_eq!(d.hex().len(), 128);
        assert_eq!(d.to_string(), EMPTY_SHA512);
        assert_eq!(Algorithm::Sha512.digest(b""), d);
        assert!(d.matches(b""));
        assert!(!d.matches(b"x"));
        // Streaming in pieces gives what hashing at once gives.
        let mut h = DigestHasher::new(Algorithm::Sha512);
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finish(), Algorithm::Sha512.digest(b"hello world"));
        assert_ne!(
            Algorithm::Sha512.digest(b"x"),
            Algorithm::Sha256.digest(b"x")
        );
    }

    #[test]
    fn the_same_hex_under_two_algorithms_is_two_digests() {
        let hex = "a".repeat(64);
        let d = Digest::from_parts(Algorithm::Sha256, &hex).expect("sha256");
        assert!(Digest::from_parts(Algorithm::Sha512, &hex).is_err());
        let long = Digest::from_parts(Algorithm::Sha512, &"a".repeat(128)).expect("sha512");
        assert_ne!(d, long);
        assert!(d < long, "listings visit sha256 before sha512");
    }

    #[test]
    fn rejects_malformed_and_hostile_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:../../etc/passwd",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            // A sha256-length encoding under sha512, and the other way round.
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            &format!("sha256:{}", &EMPTY_SHA512[7..]),
            &format!("{EMPTY_SHA512}0"),
        ] {
            assert_eq!(
                bad.parse::<Digest>(),
                Err(DigestError::Malformed),
                "{bad:?} accepted"
            );
        }
        assert_eq!(
            "sha384:abcd".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm("sha384".into()))
        );
    }
}
