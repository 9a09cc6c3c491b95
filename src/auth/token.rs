//! Docker token authentication (`auth: token`): clients get a JWT from a token server (the
//! `realm` of our `Bearer` challenge) and present it; we check its signature against the
//! certificates of `rootcertbundle` (RS256 or ES256), its issuer, audience (our `service`)
//! and validity period, and take what it allows from its `access` claim
//! (`[{"type":"repository","name":"library/debian","actions":["pull"]}]`).
//!
//! Tokens are verified with the public key of each certificate in the bundle (the token
//! server's signing certificate must be there; `x5c` chains in the token header are not
//! followed). [`TokenIssuer`] signs tokens for the built-in endpoint (`GET /token`).

use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Clock difference tolerated between the token server and us.
const LEEWAY_SECS: i64 = 60;
/// Longer tokens are refused before any parsing.
const MAX_TOKEN: usize = 16 * 1024;

/// A token's header: the signature algorithm is all we read.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    #[serde(skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    alg: Option<String>,
}

/// A token's claims, as the token server writes them and as we issue them.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(default, deserialize_with = "access_claim")]
    access: Vec<Access>,
}

/// `aud`: one audience or a list of them.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// One entry of the `access` claim.
#[derive(Debug, Serialize, Deserialize)]
struct Access {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

/// `access` entries that are not `{type, name, actions}` are one error, whatever is wrong.
fn access_claim<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Access>, D::Error> {
    Option::<Vec<Access>>::deserialize(d)
        .map(Option::unwrap_or_default)
        .map_err(|_| D::Error::custom("malformed access claim"))
}

/// A JSON object as `T`: `not_json` when it does not parse, what is wrong with it (after
/// `what: `) when it parses but does not fit. serde would take an array for a struct by
/// position: a JWT part is an object.
fn json_object<T: DeserializeOwned>(bytes: &[u8], what: &str, not_json: &str) -> Result<T, String> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(not_json.into());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            format!("{what}: {e}")
        } else {
            not_json.into()
        }
    })
}

/// An optional claim as JSON shows it in a message: `"text"` or `null`.
fn shown(value: Option<&str>) -> String {
    value.map_or_else(|| "null".into(), |v| format!("{v:?}"))
}

/// What one token allows: (type, name, actions), as in its `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grants(pub Vec<(String, String, Vec<String>)>);

impl Grants {
    /// Does the token allow `action` on resource `kind`:`name` (`*` among the actions: all)?
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.0.iter().any(|(t, n, acts)| {
            t == kind && n == name && acts.iter().any(|a| a == action || a == "*")
        })
    }
}

/// A verified token: who it was issued to and what it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub subject: String,
    pub grants: Grants,
}

/// Checks tokens for one service.
#[derive(Debug)]
pub struct TokenVerifier {
    pub realm: String,
    pub service: String,
    issuer: String,
    certificates: Vec<CertificateDer<'static>>,
}

impl TokenVerifier {
    pub fn new(
        realm: &str,
        service: &str,
        issuer: &str,
        rootcertbundle: &Path,
    ) -> Result<TokenVerifier, String> {
        let certificates = CertificateDer::pem_file_iter(rootcertbundle)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                format!(
                    "cannot read the token root certificate bundle {}: {e}",
                    rootcertbundle.display()
                )
            })?;
        if certificates.is_empty() {
            return Err(format!(
                "no certificate in the token root certificate bundle {}",
                rootcertbundle.display()
            ));
        }
        for c in &certificates {
            webpki::EndEntityCert::try_from(c).map_err(|e| {
                format!(
                    "{}: a certificate cannot be used: {e:?}",
                    rootcertbundle.display()
                )
            })?;
        }
        Ok(TokenVerifier {
            realm: realm.into(),
            service: service.into(),
            issuer: issuer.into(),
            certificates,
        })
    }

    /// Verifies a compact JWT; the error says why it is refused (for the log, not the client).
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, String> {
        if token.len() > MAX_TOKEN {
            return Err("token too long".into());
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a compact JWT (three dot-separated parts)".into());
        };
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header: Header = json_object(
            &b64.decode(h).map_err(|_| "header is not base64url")?,
            "header",
            "header is not JSON",
        )?;
        let signature = b64.decode(s).map_err(|_| "signature is not base64url")?;
        let signed = &token.as_bytes()[..h.len() + 1 + c.len()];
        let (alg, sig): (
            &dyn rustls_pki_types::SignatureVerificationAlgorithm,
            Vec<u8>,
        ) = match header.alg.as_deref() {
            Some("RS256") => (webpki::ring::RSA_PKCS1_2048_8192_SHA256, signature),
            Some("ES256") => (
                webpki::ring::ECDSA_P256_SHA256,
                ecdsa_raw_to_der(&signature)?,
            ),
            other => return Err(format!("unsupported alg {other:?}: RS256 or ES256")),
        };
        let verified = self.certificates.iter().any(|der| {
            webpki::EndEntityCert::try_from(der)
                .is_ok_and(|cert| cert.verify_signature(alg, signed, &sig).is_ok())
        });
        if !verified {
            return Err("signature does not verify with any certificate of the root bundle".into());
        }
        let claims = b64.decode(c).map_err(|_| "claims are not base64url")?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.read_claims(&claims, now)
    }

    /// Checks the claims of a token whose signature verified, at time `now` (Unix seconds).
    fn read_claims(&self, claims: &[u8], now: i64) -> Result<VerifiedToken, String> {
        let claims: Claims = json_object(claims, "claims", "claims are not JSON")?;
        if claims.iss.as_deref() != Some(self.issuer.as_str()) {
            return Err(format!(
                "issuer {} is not {:?}",
                shown(claims.iss.as_deref()),
                self.issuer
            ));
        }
        let audience_ok = match &claims.aud {
            Some(Audience::One(a)) => *a == self.service,
            Some(Audience::Many(list)) => list.contains(&self.service),
            None => false,
        };
        if !audience_ok {
            let aud = match &claims.aud {
                Some(Audience::Many(list)) => format!("{list:?}"),
                Some(Audience::One(a)) => shown(Some(a)),
                None => shown(None),
            };
            return Err(format!("audience {aud} is not {:?}", self.service));
        }
        match claims.exp {
            // Saturating: the token server may write any i64 (`exp: 9223372036854775807`).
            Some(exp) if exp.saturating_add(LEEWAY_SECS) >= now => {}
            Some(_) => return Err("token expired".into()),
            None => return Err("token has no exp".into()),
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf.saturating_sub(LEEWAY_SECS) > now)
        {
            return Err("token not valid yet".into());
        }
        let grants = claims.access.into_iter();
        Ok(VerifiedToken {
            subject: claims.sub.unwrap_or_default(),
            grants: Grants(grants.map(|a| (a.kind, a.name, a.actions)).collect()),
        })
    }
}

/// JWS ES256 signatures are r||s (32 bytes each); webpki wants an ASN.1 DER
/// `SEQUENCE { INTEGER r, INTEGER s }`.
fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, String> {
    if raw.len() != 64 {
        return Err("an ES256 signature is 64 bytes".into());
    }
    let integer = |bytes: &[u8]| {
        let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
        let mut v = if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
            let mut v = vec![0u8];
            v.extend(&trimmed);
            v
        } else {
            trimmed
        };
        v.insert(0, v.len() as u8);
        v.insert(0, 0x02);
        v
    };
    let mut body = integer(&raw[..32]);
    body.extend(integer(&raw[32..]));
    let mut der = vec![0x30, body.len() as u8];
    der.extend(body);
    Ok(der)
}

/// How long tokens from the built-in endpoint are valid.
pub const ISSUED_TOKEN_TTL_SECS: i64 = 300;

enum SigningKey {
    Rsa(ring::signature::RsaKeyPair),
    Ec(ring::signature::EcdsaKeyPair),
}

/// The built-in token endpoint's signer: RS256 with an RSA key, ES256 with a P-256 key.
pub struct TokenIssuer {
    key: SigningKey,
    issuer: String,
    service: String,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .field("service", &self.service)
            .finish()
    }
}

impl TokenIssuer {
    /// Reads a PKCS#8 PEM private key (what `openssl genpkey` writes).
    pub fn new(signing_key: &Path, issuer: &str, service: &str) -> Result<TokenIssuer, String> {
        use rustls_pki_types::PrivateKeyDer;
        let where_ = signing_key.display();
        let der = match PrivateKeyDer::from_pem_file(signing_key)
            .map_err(|e| format!("cannot read the token signing key {where_}: {e}"))?
        {
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
            _ => return Err(format!("{where_}: the token signing key must be PKCS#8 (BEGIN PRIVATE KEY); convert it with `openssl pkcs8 -topk8 -nocrypt`")),
        };
        let rng = ring::rand::SystemRandom::new();
        let key = match ring::signature::RsaKeyPair::from_pkcs8(&der) {
            Ok(k) => SigningKey::Rsa(k),
            Err(_) => SigningKey::Ec(
                ring::signature::EcdsaKeyPair::from_pkcs8(
                    &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &der,
                    &rng,
                )
                .map_err(|e| format!("{where_}: neither an RSA nor an EC P-256 key: {e}"))?,
            ),
        };
        Ok(TokenIssuer {
            key,
            issuer: issuer.into(),
            service: service.into(),
            rng,
        })
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// A signed token for `subject` ("" for anonymous) with these grants.
    pub fn issue(&self, subject: &str, grants: &Grants) -> Result<String, String> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let alg = match self.key {
            SigningKey::Rsa(_) => "RS256",
            SigningKey::Ec(_) => "ES256",
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut jti = [0u8; 16];
        ring::rand::SecureRandom::fill(&self.rng, &mut jti)
            .map_err(|_| "no randomness for a token id")?;
        let header = Header {
            typ: Some("JWT".into()),
            alg: Some(alg.into()),
        };
        let claims = Claims {
            iss: Some(self.issuer.clone()),
            sub: Some(subject.into()),
            aud: Some(Audience::One(self.service.clone())),
            exp: Some(now + ISSUED_TOKEN_TTL_SECS),
            nbf: Some(now - 1),
            iat: Some(now),
            jti: Some(b64.encode(jti)),
            access: grants
                .0
                .iter()
                .map(|(kind, name, actions)| Access {
                    kind: kind.clone(),
                    name: name.clone(),
                    actions: actions.clone(),
                })
                .collect(),
        };
        let header = serde_json::to_vec(&header).map_err(|e| format!("token header: {e}"))?;
        let claims = serde_json::to_vec(&claims).map_err(|e| format!("token claims: {e}"))?;
        let input = format!("{}.{}", b64.encode(header), b64.encode(claims));
        let signature = match &self.key {
            SigningKey::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &self.rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .map_err(|_| "RSA signing failed")?;
                sig
            }
            SigningKey::Ec(k) => k
                .sign(&self.rng, input.as_bytes())
                .map_err(|_| "ECDSA signing failed")?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{input}.{}", b64.encode(signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ecdsa_signatures_become_der() {
        let mut raw = [0u8; 64];
        raw[0] = 0x80; // r needs a leading zero
        raw[63] = 1; // s is 1
        let der = ecdsa_raw_to_der(&raw).expect("converts");
        assert_eq!(&der[..4], &[0x30, 33 + 2 + 3, 0x02, 33]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 1, 1]);
        assert!(ecdsa_raw_to_der(&[0; 63]).is_err());
    }

    #[test]
    fn claims_with_extreme_times_are_judged_without_overflow() {
        let verifier = TokenVerifier {
            realm: "https://auth/token".into(),
            service: "registry".into(),
            issuer: "auth".into(),
            certificates: Vec::new(),
        };
        let claims = |exp: i64, nbf: i64| {
            format!(r#"{{"iss":"auth","aud":"registry","sub":"a","exp":{exp},"nbf":{nbf}}}"#)
        };
        let now = 1_700_000_000;
        let forever = claims(i64::MAX, i64::MIN);
        assert!(verifier.read_claims(forever.as_bytes(), now).is_ok());
        let long_ago = claims(i64::MIN, i64::MIN);
        assert_eq!(
            verifier.read_claims(long_ago.as_bytes(), now),
            Err("token expired".into())
        );
        let far_future = claims(i64::MAX, i64::MAX);
        assert_eq!(
            verifier.read_claims(far_future.as_bytes(), now),
            Err("token not valid yet".into())
        );
    }

    #[test]
    fn claims_are_read_into_their_types_and_refused_with_a_reason() {
        let verifier = TokenVerifier {
            realm: "https://auth/token".into(),
            service: "registry".into(),
            issuer: "auth".into(),
            certificates: Vec::new(),
        };
        let now = 1_700_000_000;
        let read = |claims: &str| verifier.read_claims(claims.as_bytes(), now);
        let ok = read(
            r#"{"iss":"auth","aud":["other","registry"],"sub":"u","exp":1700000000,
                "access":[{"type":"repository","name":"a/b","actions":["pull","push"]}],"extra":1}"#,
        )
        .expect("valid claims");
        assert_eq!(ok.subject, "u");
        assert!(ok.grants.allows("repository", "a/b", "push"));
        let anonymous = read(r#"{"iss":"auth","aud":"registry","exp":1700000000}"#);
        assert_eq!(anonymous.map(|t| t.subject), Ok(String::new()));
        for (claims, why) in [
            ("not json", "claims are not JSON"),
            (r#"["auth","u","registry"]"#, "claims are not JSON"),
            (
                r#"{"iss":"x","aud":"registry"}"#,
                r#"issuer "x" is not "auth""#,
            ),
            (r#"{"aud":"registry"}"#, r#"issuer null is not "auth""#),
            (
                r#"{"iss":"auth","aud":"r2"}"#,
                r#"audience "r2" is not "registry""#,
            ),
            (
                r#"{"iss":"auth","aud":["r2"]}"#,
                r#"audience ["r2"] is not "registry""#,
            ),
            (r#"{"iss":"auth","aud":"registry"}"#, "token has no exp"),
        ] {
            assert_eq!(read(claims), Err(why.to_string()), "{claims}");
        }
        for malformed in [
            r#"{"iss":"auth","aud":"registry","exp":1700000000,"access":[{"type":"repository"}]}"#,
            r#"{"iss":"auth","aud":"registry","exp":1700000000,"access":"all"}"#,
        ] {
            let e = read(malformed).expect_err(malformed);
            assert!(e.starts_with("claims: malformed access claim"), "{e}");
        }
    }

    #[test]
    fn grants_match_type_name_and_action() {
        let g = Grants(vec![
            ("repository".into(), "a/b".into(), vec!["pull".into()]),
            ("registry".into(), "catalog".into(), vec!["*".into()]),
        ]);
        assert!(g.allows("repository", "a/b", "pull"));
        assert!(!g.allows("repository", "a/b", "push"));
        assert!(!g.allows("repository", "a", "pull"));
        assert!(g.allows("registry", "catalog", "*"));
    }
}
