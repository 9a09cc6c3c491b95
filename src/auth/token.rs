//! Docker token authentication (`auth: token`): clients get a JWT from a token server (the
//! `realm` of our `Bearer` challenge) and present it; we check its signature against the
//! certificates of `rootcertbundle` (RS256 or ES256), its issuer, audience (our `service`)
//! and validity period, and take what it allows from its `access` claim
//! (`[{"type":"repository","name":"library/debian","actions":["pull"]}]`).
//!
//! Tokens are verified with the public key of each certificate in the bundle (the token
//! server's signing certificate must be there; `x5c` chains in the token header are not
//! followed). Not implemented: a token endpoint of our own.

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
        let claims: Value =
            serde_json::from_slice(&b64.decode(c).map_err(|_| "claims are not base64url")?)
                .map_err(|_| "claims are not JSON")?;
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
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        match claims["exp"].as_i64() {
            Some(exp) if exp + LEEWAY_SECS >= now => {}
            Some(_) => return Err("token expired".into()),
            None => return Err("token has no exp".into()),
        }
        if let Some(nbf) = claims["nbf"].as_i64() {
            if nbf - LEEWAY_SECS > now {
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
