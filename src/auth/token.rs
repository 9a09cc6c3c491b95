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
use serde_json::Value;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Clock difference tolerated between the token server and us.
const LEEWAY_SECS: i64 = 60;
/// Longer tokens are refused before any parsing.
const MAX_TOKEN: usize = 16 * 1024;

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
        let header: Value =
            serde_json::from_slice(&b64.decode(h).map_err(|_| "header is not base64url")?)
                .map_err(|_| "header is not JSON")?;
        let signature = b64.decode(s).map_err(|_| "signature is not base64url")?;
        let signed = &token.as_bytes()[..h.len() + 1 + c.len()];
        let (alg, sig): (
            &dyn rustls_pki_types::SignatureVerificationAlgorithm,
            Vec<u8>,
        ) = match header["alg"].as_str() {
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
        let claims: Value = serde_json::from_slice(claims).map_err(|_| "claims are not JSON")?;
        if claims["iss"].as_str() != Some(self.issuer.as_str()) {
            return Err(format!("issuer {} is not {:?}", claims["iss"], self.issuer));
        }
        let audience_ok = match &claims["aud"] {
            Value::String(a) => *a == self.service,
            Value::Array(list) => list
                .iter()
                .any(|a| a.as_str() == Some(self.service.as_str())),
            _ => false,
        };
        if !audience_ok {
            return Err(format!(
                "audience {} is not {:?}",
                claims["aud"], self.service
            ));
        }
        match claims["exp"].as_i64() {
            // Saturating: the token server may write any i64 (`exp: 9223372036854775807`).
            Some(exp) if exp.saturating_add(LEEWAY_SECS) >= now => {}
            Some(_) => return Err("token expired".into()),
            None => return Err("token has no exp".into()),
        }
        if let Some(nbf) = claims["nbf"].as_i64() {
            if nbf.saturating_sub(LEEWAY_SECS) > now {
                return Err("token not valid yet".into());
            }
        }
        let mut grants = Vec::new();
        if let Some(list) = claims["access"].as_array() {
            for a in list {
                let (Some(t), Some(n), Some(acts)) = (
                    a["type"].as_str(),
                    a["name"].as_str(),
                    a["actions"].as_array(),
                ) else {
                    return Err("malformed access claim".into());
                };
                let acts = acts
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect();
                grants.push((t.to_string(), n.to_string(), acts));
            }
        }
        Ok(VerifiedToken {
            subject: claims["sub"].as_str().unwrap_or_default().to_string(),
            grants: Grants(grants),
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
        let access: Vec<Value> = grants
            .0
            .iter()
            .map(|(t, n, a)| serde_json::json!({"type": t, "name": n, "actions": a}))
            .collect();
        let header = serde_json::json!({"typ": "JWT", "alg": alg});
        let claims = serde_json::json!({
            "iss": self.issuer, "sub": subject, "aud": self.service,
            "exp": now + ISSUED_TOKEN_TTL_SECS, "nbf": now - 1, "iat": now,
            "jti": b64.encode(jti), "access": access,
        });
        let input = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
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
