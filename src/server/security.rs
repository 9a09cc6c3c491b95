//! Wiring access control and TLS from the configuration: the [`Authenticator`] (with a
//! watcher that reloads the htpasswd and access files when they change on disk), and native
//! TLS with rustls (TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, optional client certificates
//! for mutual TLS). Both reload on SIGHUP; a reload that fails keeps what is running.

use crate::auth::token::{TokenIssuer, TokenVerifier};
use crate::auth::Authenticator;
use crate::config::{AuthConfig, Config, TlsConfig};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often the authentication files are checked for changes.
const AUTH_POLL: Duration = Duration::from_secs(2);
/// A client that has not finished its TLS handshake by then is dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// The authenticator the configuration asks for; `None` when `auth:` is not set. A file that
/// is missing or invalid stops the start: never serve an open registry by accident.
pub fn build_auth(config: &Config) -> Result<Option<Arc<Authenticator>>, String> {
    match &config.auth.value {
        None => Ok(None),
        Some(AuthConfig::Htpasswd {
            realm,
            path,
            access_file,
        }) => Authenticator::new(realm, path, access_file.as_deref())
            .map(|a| Some(Arc::new(a)))
            .map_err(|e| {
                format!(
                    "authentication ({}): {e}; refusing to start an open registry",
                    config.auth.source
                )
            }),
        // With the built-in token endpoint, its users authenticate at GET /token.
        Some(AuthConfig::Token {
            realm,
            endpoint: Some(e),
            ..
        }) => Authenticator::new(realm, &e.htpasswd, e.access_file.as_deref())
            .map(|a| Some(Arc::new(a)))
            .map_err(|e| {
                format!(
                    "token endpoint ({}): {e}; refusing to start an open registry",
                    config.auth.source
                )
            }),
        // Otherwise token authentication has only its verifier (build_token).
        Some(AuthConfig::Token { endpoint: None, .. }) => Ok(None),
    }
}

/// The signer of the built-in token endpoint, when configured.
pub fn build_token_issuer(config: &Config) -> Result<Option<Arc<TokenIssuer>>, String> {
    match &config.auth.value {
        Some(AuthConfig::Token {
            service,
            issuer,
            endpoint: Some(e),
            ..
        }) => TokenIssuer::new(&e.signing_key, issuer, service)
            .map(|t| Some(Arc::new(t)))
            .map_err(|e| format!("token endpoint ({}): {e}", config.auth.source)),
        _ => Ok(None),
    }
}

/// The token verifier when `auth: token` is configured; an unreadable certificate bundle
/// stops the start.
pub fn build_token(config: &Config) -> Result<Option<Arc<TokenVerifier>>, String> {
    match &config.auth.value {
        Some(AuthConfig::Token {
            realm,
            service,
            issuer,
            rootcertbundle,
            ..
        }) => TokenVerifier::new(realm, service, issuer, rootcertbundle)
            .map(|t| Some(Arc::new(t)))
            .map_err(|e| {
                format!(
                    "token authentication ({}): {e}; refusing to start an open registry",
                    config.auth.source
                )
            }),
        _ => Ok(None),
    }
}

/// Re-reads the authentication files whenever they change on disk.
pub fn spawn_auth_watcher(auth: Arc<Authenticator>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(AUTH_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let a = auth.clone();
            // Reading and parsing files is blocking work.
            let _ = tokio::task::spawn_blocking(move || a.reload_if_changed()).await;
        }
    })
}

/// The TLS settings in use, swapped whole when the certificates are reloaded.
pub struct Tls {
    config: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    pub fn from_config(config: &Config) -> Result<Option<Arc<Tls>>, String> {
        let Some(tls) = &config.tls.value else {
            return Ok(None);
        };
        let server = server_config(tls).map_err(|e| format!("TLS ({}): {e}", config.tls.source))?;
        Ok(Some(Arc::new(Tls {
            config: tls.clone(),
            current: RwLock::new(Arc::new(server)),
        })))
    }

    /// The acceptor for the next connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    /// Re-reads certificate, key and client CAs (renewed certificates); on error keeps the
    /// running ones.
    pub fn reload(&self) -> Result<(), String> {
        let server = server_config(&self.config)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(server);
        Ok(())
    }

    pub fn mutual(&self) -> bool {
        !self.config.client_cas.is_empty()
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "no PEM certificate in the {what} {}",
            path.display()
        ));
    }
    Ok(certs)
}

fn server_config(tls: &TlsConfig) -> Result<ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(&tls.certificate, "certificate file")?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| format!("cannot read the private key {}: {e}", tls.key.display()))?;
    // TLS 1.2 and 1.3 only: rustls has no older versions to offer.
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = if tls.client_cas.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for ca in &tls.client_cas {
            for c in read_certs(ca, "client CA file")? {
                roots
                    .add(c)
                    .map_err(|e| format!("bad client CA certificate in {}: {e}", ca.display()))?;
            }
        }
        let shown: Vec<String> = tls
            .client_cas
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("client CAs {}: {e}", shown.join(", ")))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut server = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "certificate {} and key {} do not go together: {e}",
            tls.certificate.display(),
            tls.key.display()
        )
    })?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(server)
}

/// SIGHUP: re-read the authentication files and the certificates. Which files, and whether
/// there is authentication or TLS at all, is fixed at start: say so when the new
/// configuration (`new`, if it loaded) asks for something else.
pub fn reload(
    auth: Option<&Authenticator>,
    tls: Option<&Tls>,
    running: &Config,
    new: Option<&Config>,
) {
    if let Some(new) = new {
        if new.auth.value != running.auth.value || new.tls.value != running.tls.value {
            tracing::warn!(
                "SIGHUP: the auth or TLS settings changed; the files are re-read but the new settings take effect only after a restart"
            );
        }
    }
    if let Some(a) = auth {
        match a.reload() {
            Ok(()) => tracing::info!("SIGHUP: authentication files reloaded"),
            Err(e) => tracing::error!(
                "SIGHUP: authentication files not reloaded, keeping the running ones: {e}"
            ),
        }
    }
    if let Some(t) = tls {
        match t.reload() {
            Ok(()) => tracing::info!("SIGHUP: TLS certificates reloaded"),
            Err(e) => tracing::error!(
                "SIGHUP: TLS certificates not reloaded, keeping the running ones: {e}"
            ),
        }
    }
}
