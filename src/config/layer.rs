//! One level of the precedence (the YAML file, the sysconfig file, the environment, the
//! command line): every setting it mentions, each with its source. Levels are stacked with
//! [`Layer::overlay`], then [`super::Config`] is resolved from the result, so a setting's value
//! and source always come from the highest level that mentions it.

use super::{Source, Sourced};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Which storage driver a level asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageChoice {
    Filesystem,
    /// A driver we do not have (yet); reported as an error only if it is the one in effect.
    Unsupported {
        name: String,
    },
}

/// Which authentication a level asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthChoice {
    Htpasswd,
    Token,
    Unsupported { name: String },
}

#[derive(Debug, Clone, Default)]
pub struct Layer {
    pub address: Option<Sourced<IpAddr>>,
    pub port: Option<Sourced<u16>>,
    pub workers: Option<Sourced<usize>>,
    pub storage: Option<Sourced<StorageChoice>>,
    pub storage_root: Option<Sourced<PathBuf>>,
    pub delete_enabled: Option<Sourced<bool>>,
    pub readonly: Option<Sourced<bool>>,
    pub purge_enabled: Option<Sourced<bool>>,
    pub purge_age: Option<Sourced<Duration>>,
    pub purge_interval: Option<Sourced<Duration>>,
    pub purge_dry_run: Option<Sourced<bool>>,
    /// `None` inside: no scheduled collection (an interval of 0).
    pub gc_interval: Option<Sourced<Option<Duration>>>,
    pub gc_grace: Option<Sourced<Duration>>,
    pub gc_delete_untagged: Option<Sourced<bool>>,
    pub gc_socket: Option<Sourced<PathBuf>>,
    /// Only files set it; a file's list replaces the defaults' (empty) one as a whole.
    pub retention: Option<Sourced<Vec<super::RetentionRule>>>,
    pub log_level: Option<Sourced<super::LogLevel>>,
    pub log_target: Option<Sourced<super::LogTarget>>,
    pub search_backend: Option<Sourced<Option<String>>>,
    pub issue: Option<Sourced<String>>,
    pub auth: Option<Sourced<AuthChoice>>,
    pub auth_realm: Option<Sourced<String>>,
    pub auth_path: Option<Sourced<PathBuf>>,
    /// `auth.htpasswd.accessfile` (ours): who may do what, for htpasswd users.
    pub auth_access_file: Option<Sourced<PathBuf>>,
    /// `auth.token.*`.
    pub token: TokenLayer,
    pub tls_certificate: Option<Sourced<PathBuf>>,
    pub tls_key: Option<Sourced<PathBuf>>,
    /// `http.tls.clientcas`: a level's list replaces a lower level's as a whole.
    pub tls_client_cas: Option<Sourced<Vec<PathBuf>>>,
    pub trust_forwarded_headers: Option<Sourced<bool>>,
}

/// The settings of `auth: token` in one level.
#[derive(Debug, Clone, Default)]
pub struct TokenLayer {
    pub realm: Option<Sourced<String>>,
    pub service: Option<Sourced<String>>,
    pub issuer: Option<Sourced<String>>,
    pub rootcertbundle: Option<Sourced<PathBuf>>,
    /// The built-in token endpoint (ours): its signing key, its users, their access file.
    pub signing_key: Option<Sourced<PathBuf>>,
    pub htpasswd: Option<Sourced<PathBuf>>,
    pub access_file: Option<Sourced<PathBuf>>,
}

impl TokenLayer {
    /// The source of the first setting given, if any.
    pub fn any_source(&self) -> Option<&Source> {
        [
            self.realm.as_ref().map(|s| &s.source),
            self.service.as_ref().map(|s| &s.source),
            self.issuer.as_ref().map(|s| &s.source),
            self.rootcertbundle.as_ref().map(|s| &s.source),
            self.signing_key.as_ref().map(|s| &s.source),
            self.htpasswd.as_ref().map(|s| &s.source),
            self.access_file.as_ref().map(|s| &s.source),
        ]
        .into_iter()
        .flatten()
        .next()
    }

    fn overlay(&mut self, high: TokenLayer) {
        over(&mut self.realm, high.realm);
        over(&mut self.service, high.service);
        over(&mut self.issuer, high.issuer);
        over(&mut self.rootcertbundle, high.rootcertbundle);
        over(&mut self.signing_key, high.signing_key);
        over(&mut self.htpasswd, high.htpasswd);
        over(&mut self.access_file, high.access_file);
    }
}

fn over<T>(low: &mut Option<T>, high: Option<T>) {
    if high.is_some() {
        *low = high;
    }
}

impl Layer {
    /// Puts `high` over `self`: every setting `high` mentions replaces ours.
    pub fn overlay(&mut self, high: Layer) {
        over(&mut self.address, high.address);
        over(&mut self.port, high.port);
        over(&mut self.workers, high.workers);
        over(&mut self.storage, high.storage);
        over(&mut self.storage_root, high.storage_root);
        over(&mut self.delete_enabled, high.delete_enabled);
        over(&mut self.readonly, high.readonly);
        over(&mut self.purge_enabled, high.purge_enabled);
        over(&mut self.purge_age, high.purge_age);
        over(&mut self.purge_interval, high.purge_interval);
        over(&mut self.purge_dry_run, high.purge_dry_run);
        over(&mut self.gc_interval, high.gc_interval);
        over(&mut self.gc_grace, high.gc_grace);
        over(&mut self.gc_delete_untagged, high.gc_delete_untagged);
        over(&mut self.gc_socket, high.gc_socket);
        over(&mut self.retention, high.retention);
        over(&mut self.log_level, high.log_level);
        over(&mut self.log_target, high.log_target);
        over(&mut self.search_backend, high.search_backend);
        over(&mut self.issue, high.issue);
        over(&mut self.auth, high.auth);
        over(&mut self.auth_realm, high.auth_realm);
        over(&mut self.auth_path, high.auth_path);
        over(&mut self.auth_access_file, high.auth_access_file);
        self.token.overlay(high.token);
        over(&mut self.tls_certificate, high.tls_certificate);
        over(&mut self.tls_key, high.tls_key);
        over(&mut self.tls_client_cas, high.tls_client_cas);
        over(
            &mut self.trust_forwarded_headers,
            high.trust_forwarded_headers,
        );
    }
}

/// Sets `slot` from a conversion result, or records the error against `source`.
pub fn set<T>(
    slot: &mut Option<Sourced<T>>,
    result: Result<Option<T>, String>,
    source: Source,
    errors: &mut Vec<super::ConfigError>,
) {
    match result {
        Ok(Some(v)) => *slot = Some(Sourced::new(v, source)),
        Ok(None) => {}
        Err(message) => errors.push(super::ConfigError::at(&source, message)),
    }
}
