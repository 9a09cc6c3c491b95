//! The token (JWT) parser (`auth::token::TokenVerifier`). An input with a newline is a
//! header and claims, both JSON, that this target signs (ES256) with the key of the
//! verifier's certificate, so that the claims checks behind the signature are reached; an
//! input without one is a token as a client would present it, which must never verify.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use docker_registry::auth::token::TokenVerifier;
use libfuzzer_sys::fuzz_target;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use std::process::Command;
use std::sync::OnceLock;

const ISSUER: &str = "fuzz-issuer";
const SERVICE: &str = "fuzz-service";

struct Keys {
    verifier: TokenVerifier,
    signer: EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

/// A P-256 key and its self-signed certificate, made by openssl once per run.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("docker-registry-fuzz-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
        let status = Command::new("openssl")
            .args(["req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=fuzz"])
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (the token target makes its key with it)");
        assert!(status.success(), "openssl req failed");
        let verifier = TokenVerifier::new("https://fuzz/token", SERVICE, ISSUER, &cert)
            .expect("a verifier for the certificate");
        let der = match PrivateKeyDer::from_pem_file(&key).expect("the key openssl wrote") {
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
            _ => panic!("openssl wrote a key that is not PKCS#8"),
        };
        let rng = ring::rand::SystemRandom::new();
        let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .expect("a P-256 key");
        let _ = std::fs::remove_dir_all(&dir);
        Keys {
            verifier,
            signer,
            rng,
        }
    })
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(input) = std::str::from_utf8(bytes) else {
        return;
    };
    let keys = keys();
    let Some((header, claims)) = input.split_once('\n') else {
        assert!(
            keys.verifier.verify(input).is_err(),
            "an unsigned token verified: {input:?}"
        );
        return;
    };
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = keys
        .signer
        .sign(&keys.rng, signed.as_bytes())
        .expect("ECDSA signing");
    let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
    if let Ok(verified) = keys.verifier.verify(&token) {
        // Whatever the claims say, the grants read are what `allows` answers for.
        for (kind, name, actions) in &verified.grants.0 {
            for action in actions {
                assert!(verified.grants.allows(kind, name, action));
            }
        }
    }
});
