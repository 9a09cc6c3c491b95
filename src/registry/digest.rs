//! Content digests (`sha256:<64 hex>`), validated once at the edge so that a `Digest` can be
//! turned into a storage path without further checks.

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::str::FromStr;

/// A validated content digest. Only `sha256` is accepted for content we store: it is what
/// every client sends, and it lets us hash while streaming without guessing the algorithm.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestError {
    /// Not of the form `algorithm:encoded`.
    Malformed,
    /// A well-formed digest whose algorithm we do not support.
    UnsupportedAlgorithm(String),
}

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DigestError::Malformed => {
                write!(
                    f,
                    "invalid digest: expected sha256:<64 lowercase hex digits>"
                )
            }
            DigestError::UnsupportedAlgorithm(a) => {
                write!(
                    f,
                    "unsupported digest algorithm {a:?}: only sha256 is supported"
                )
            }
        }
    }
}

impl std::error::Error for DigestError {}

impl Digest {
    pub const ALGORITHM: &'static str = "sha256";

    /// The lowercase hex encoding (64 characters).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    pub fn algorithm(&self) -> &'static str {
        Self::ALGORITHM
    }

    /// Digest of a byte slice held in memory (manifests, small documents).
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        let mut h = DigestHasher::new();
        h.update(bytes);
        h.finish()
    }

    pub fn from_hex(hex: &str) -> Result<Digest, DigestError> {
        if hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Digest {
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
        match alg {
            "sha256" => Digest::from_hex(enc),
            other => Err(DigestError::UnsupportedAlgorithm(other.to_owned())),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
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

/// Incremental SHA-256 used while a body streams in. `sha2` picks the CPU's SHA extensions
/// at run time when they exist.
#[derive(Clone, Default)]
pub struct DigestHasher {
    inner: Sha256,
}

impl DigestHasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
    }

    pub fn finish(self) -> Digest {
        let out = self.inner.finalize();
        Digest { hex: to_hex(&out) }
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

    #[test]
    fn parses_and_prints_sha256() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .expect("valid");
        assert_eq!(d, Digest::of_bytes(b""));
        assert_eq!(d.to_string().len(), 71);
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
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            "sha512:abcd".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm("sha512".into()))
        );
    }
}
