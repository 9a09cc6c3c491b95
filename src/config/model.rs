//! The configuration's types, and what is resolved from several settings once every level is
//! read (the listening address, the storage, authentication, TLS), with the checks that only
//! make sense as a whole.

use super::kinds::{named_values, Bool};
use super::setting::{named, variable, Kind};
use super::source::{ConfigError, Source, Sourced};
use super::table::SETTINGS;
use super::Config;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_SYSCONFIG: &str = "/etc/sysconfig/docker-registry";
pub const DEFAULT_CONFIG: &str = "/etc/docker-registry.yml";

/// The realm announced for htpasswd authentication when none is configured.
pub const DEFAULT_REALM: &str = "Registry Realm";

/// Where registry:2's filesystem driver keeps data when `rootdirectory` is not given.
pub const DISTRIBUTION_DEFAULT_ROOT: &str = "/var/lib/registry";

named_values! {
    /// Log levels as the legacy registry (Python logging: `critical`, `warning`) and registry:2
    /// (logrus: `panic`, `fatal`, `warn`) name them.
    #[derive(PartialOrd, Ord)]
    pub enum LogLevel as Level("LEVEL", "unknown log level {:?} (use error, warn, info, debug or trace; critical, warning, fatal and panic are accepted too)") {
        Error = "error" | "panic" | "fatal" | "critical",
        Warn = "warn" | "warning",
        Info = "info",
        Debug = "debug",
        Trace = "trace",
    }
}

named_values! {
    /// Where the log goes.
    pub enum LogTarget as Target("TARGET", "unknown log target {:?} (use stderr or syslog)") {
        Stderr = "stderr" | "journal" | "journald",
        Syslog = "syslog",
    }
}

/// One of registry:2's `notifications.endpoints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationEndpoint {
    pub name: String,
    pub url: String,
    /// Sent with every request, in order.
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// Failures in a row before a warning is logged.
    pub threshold: u32,
    /// The first wait after a failure; it doubles up to a minute.
    pub backoff: Duration,
    /// `ignoredmediatypes` and `ignore.mediatypes`.
    pub ignored_media_types: Vec<String>,
    /// `ignore.actions`.
    pub ignore_actions: Vec<String>,
    pub disabled: bool,
}

named_values! {
    /// How log lines are written: registry:2's `log.formatter`.
    pub enum LogFormat as Formatter("FORMAT", "unknown log formatter {:?} (use text or json)") {
        /// One line of text per event.
        Text = "text",
        /// One JSON object per line, for log shippers (registry:2's `logstash` too).
        Json = "json" | "logstash",
    }
}

named_values! {
    /// When blobs go from the page cache to the socket with `sendfile(2)` (plain HTTP/1.1
    /// only; see `api::sendfile`); true and false (as booleans are written) are always and
    /// never.
    pub enum Sendfile as SendfileWhen("WHEN", "expected auto, always or never, found {:?}") {
        /// To clients on other hosts. A client on this host has to copy the bytes out of the
        /// kernel anyway: sendfile then only moves the read of the page cache into the
        /// client, which makes a pull slower where the client is the busier side.
        Auto = "auto",
        Always = "always",
        Never = "never",
    }
    otherwise |s| Bool::text(s).ok().map(|on| if on { Sendfile::Always } else { Sendfile::Never })
}

/// Which kind of YAML file was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// No YAML file.
    None,
    /// The legacy docker-registry format: `common` and flavor sections.
    Legacy,
    /// A `registry:2` (distribution) file, `version: 0.1`.
    Distribution,
}

impl FileFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            FileFormat::None => "none",
            FileFormat::Legacy => "legacy flavored",
            FileFormat::Distribution => "registry:2",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    Filesystem {
        root: PathBuf,
    },
    /// A bucket (`storage: s3`), with its settings checked.
    S3(Box<crate::storage::S3Options>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    /// `auth: htpasswd` (`REGISTRY_AUTH_HTPASSWD_REALM`, `..._PATH`), with an optional access
    /// file saying who may pull, push and delete what (none: every user may do everything).
    Htpasswd {
        realm: String,
        path: PathBuf,
        access_file: Option<PathBuf>,
    },
    /// `auth: token`: Bearer tokens (JWT, RS256/ES256) from a token server, signed by a key
    /// whose certificate is in `rootcertbundle`; their `access` claims say what they allow.
    Token {
        realm: String,
        service: String,
        issuer: String,
        rootcertbundle: PathBuf,
        /// The registry's own token endpoint (`GET /token`), if it issues tokens itself.
        endpoint: Option<TokenEndpoint>,
    },
}

/// The built-in token endpoint: htpasswd users, under the access file, get tokens signed
/// with `signing_key` (PKCS#8 PEM, RSA or EC P-256; its certificate belongs in
/// `rootcertbundle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEndpoint {
    pub htpasswd: PathBuf,
    pub access_file: Option<PathBuf>,
    pub signing_key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// Files of CA certificates (PEM, every certificate in each is read) that client
    /// certificates must chain to: mutual TLS (`http.tls.clientcas`). Empty: no client
    /// certificates asked for.
    pub client_cas: Vec<PathBuf>,
}

/// One retention rule (`retention` list): in repositories matching `repositories` (a glob,
/// `*` matches any characters including `/`), keep the newest `keep_tags` tags and/or the
/// tags pushed less than `keep_younger_than` ago; tags matching `protect_tags` (a glob) are
/// never touched. Other tags are removed by `docker-registry retention --apply`. Written as a
/// `retention:` list in either file format (see `retention.rs` in this module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRule {
    pub repositories: String,
    pub keep_tags: Option<usize>,
    pub keep_younger_than: Option<Duration>,
    pub protect_tags: Option<String>,
}

impl fmt::Display for RetentionRule {
    /// The rule as it would be written in a registry:2 file, on one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "repositories={}", self.repositories)?;
        if let Some(n) = self.keep_tags {
            write!(f, " keeptags={n}")?;
        }
        if let Some(d) = self.keep_younger_than {
            write!(f, " keepyoungerthan={}", humantime::format_duration(d))?;
        }
        if let Some(p) = &self.protect_tags {
            write!(f, " protecttags={p}")?;
        }
        Ok(())
    }
}

/// Which storage driver a level asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageChoice {
    Filesystem,
    S3,
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

impl Config {
    /// Built-in defaults: the table's, and where data goes when nothing says.
    pub fn defaults(env: &BTreeMap<String, String>) -> Config {
        let mut c = Config::table_defaults();
        c.storage_root = default_storage(env);
        c.storage = Sourced::new(
            StorageConfig::Filesystem {
                root: c.storage_root.value.clone(),
            },
            c.storage_root.source.clone(),
        );
        c
    }

    /// Resolves what several settings decide together, once every level is read.
    pub(super) fn resolve(&mut self, errors: &mut Vec<ConfigError>) {
        self.listen = Sourced::new(
            SocketAddr::new(self.address.value, self.port.value),
            Source::combine(vec![
                ("address", self.address.source.clone()),
                ("port", self.port.source.clone()),
            ]),
        );
        match &self.storage_driver {
            Sourced {
                value: StorageChoice::Unsupported { name },
                source,
            } => {
                let message = match (self.file_format, source) {
                    (FileFormat::Legacy, Source::File { .. } | Source::FileEnv { .. }) => format!(
                        "flavor {} uses storage {name}: {}",
                        self.flavor.value,
                        storage_message(name)
                    ),
                    _ => storage_message(name),
                };
                errors.push(ConfigError::at(source, message));
            }
            Sourced {
                value: StorageChoice::Filesystem,
                ..
            } => {
                self.storage = Sourced::new(
                    StorageConfig::Filesystem {
                        root: self.storage_root.value.clone(),
                    },
                    self.storage_root.source.clone(),
                );
            }
            Sourced {
                value: StorageChoice::S3,
                ..
            } => self.resolve_s3(errors),
        }
        self.resolve_redirect();
        let purging = &self.upload_purging;
        if purging.value.interval.is_zero() && purging.value.enabled {
            errors.push(ConfigError::at(
                purging.source.part("interval"),
                "the upload purging interval must be longer than 0",
            ));
        }
        self.auth = self.resolve_auth(errors);
        self.tls = self.resolve_tls(errors);
        self.check_debug(errors);
        self.check_proxy(errors);
    }

    /// The pull-through cache's upstreams in the order they are matched: `proxy.upstreams`,
    /// then `proxy.remoteurl` for every other repository. Empty: no proxy.
    pub fn proxy_upstreams(&self) -> Vec<ProxyUpstream> {
        let mut all = self.proxy_upstreams.value.clone();
        let p = &self.proxy.value;
        if let Some(url) = &p.remoteurl {
            all.push(ProxyUpstream {
                username: p.username.clone(),
                password: p.password.clone(),
                ttl: p.ttl,
                ..ProxyUpstream::catch_all(url.clone())
            });
        }
        all
    }

    /// The catch-all upstream is checked as the listed ones are when they are read.
    fn check_proxy(&self, errors: &mut Vec<ConfigError>) {
        let p = &self.proxy;
        let Some(url) = &p.value.remoteurl else {
            if p.value.username.is_some() || p.value.password.is_some() {
                errors.push(ConfigError::at(
                    p.source.part("username"),
                    "proxy credentials without proxy.remoteurl (or REGISTRY_PROXY_REMOTEURL)",
                ));
            }
            return;
        };
        let upstream = ProxyUpstream {
            username: p.value.username.clone(),
            password: p.value.password.clone(),
            ..ProxyUpstream::catch_all(url.clone())
        };
        if let Err(m) = upstream.check() {
            errors.push(ConfigError::at(p.source.part("remoteurl"), m));
        }
    }

    /// Metrics are served on the debug listener only (their path is checked as it is read).
    fn check_debug(&self, errors: &mut Vec<ConfigError>) {
        let debug = &self.debug;
        if debug.value.prometheus_enabled && debug.value.addr.is_none() {
            errors.push(ConfigError::at(
                debug.source.part("prometheus_enabled"),
                "metrics are served on the debug listener: set http.debug.addr (or REGISTRY_HTTP_DEBUG_ADDR, debug_addr in a flavored file) too",
            ));
        }
    }

    /// The method named, else the one a level's keys ask for.
    pub(super) fn auth_in_effect(&self) -> Option<AuthChoice> {
        self.auth_method
            .value
            .clone()
            .or_else(|| self.implied_auth(&mut Vec::new()).map(|m| m.value))
    }

    /// The method the keys given ask for when no level names one: htpasswd keys alone ask for
    /// htpasswd and token keys alone for token, as registry:2 reads a file's `auth:` block.
    fn implied_auth(&self, errors: &mut Vec<ConfigError>) -> Option<Sourced<AuthChoice>> {
        let given = |prefix: &str| {
            SETTINGS
                .iter()
                .filter(|s| s.key.starts_with(prefix))
                .map(|s| s.get(self).1)
                .find(|source| **source != Source::Default)
                .cloned()
        };
        match (given("auth.htpasswd."), given("auth.token.")) {
            (None, None) => None,
            (Some(h), None) => Some(Sourced::new(AuthChoice::Htpasswd, h)),
            (None, Some(t)) => Some(Sourced::new(AuthChoice::Token, t)),
            (Some(h), Some(t)) => {
                errors.push(ConfigError::at(
                    &t,
                    format!(
                        "both token and htpasswd settings are given (htpasswd: {h}): choose one with REGISTRY_AUTH=token or htpasswd (auth: in a file)"
                    ),
                ));
                None
            }
        }
    }

    fn resolve_auth(&mut self, errors: &mut Vec<ConfigError>) -> Sourced<Option<AuthConfig>> {
        let given = self.auth_method.value.clone();
        let method = match given.map(|m| Sourced::new(m, self.auth_method.source.clone())) {
            Some(m) => m,
            None => match self.implied_auth(errors) {
                Some(implied) => implied,
                None => return Sourced::default_value(None),
            },
        };
        // `config` shows the settings of the method in effect.
        self.auth_method = Sourced::new(Some(method.value.clone()), method.source.clone());
        match method.value {
            AuthChoice::Unsupported { name } => {
                errors.push(ConfigError::at(
                    &method.source,
                    format!("authentication {name:?} is not supported (only htpasswd and token); refusing to start without the authentication asked for"),
                ));
                Sourced::default_value(None)
            }
            AuthChoice::Htpasswd => match &self.htpasswd_path.value {
                None => {
                    errors.push(ConfigError::at(
                        &method.source,
                        format!(
                            "htpasswd authentication needs a password file: set {}",
                            named("auth.htpasswd.path").hint()
                        ),
                    ));
                    Sourced::default_value(None)
                }
                Some(path) => Sourced::new(
                    Some(AuthConfig::Htpasswd {
                        realm: self.htpasswd_realm.value.clone(),
                        path: path.clone(),
                        access_file: self.htpasswd_access_file.value.clone(),
                    }),
                    Source::combine(vec![
                        ("method", method.source),
                        ("realm", self.htpasswd_realm.source.clone()),
                        ("path", self.htpasswd_path.source.clone()),
                        ("accessfile", self.htpasswd_access_file.source.clone()),
                    ]),
                ),
            },
            AuthChoice::Token => self.resolve_token(method.source, errors),
        }
    }

    /// `auth: token`: the four settings registry:2 needs, and the built-in endpoint when a
    /// signing key is given (which then needs its users' htpasswd file).
    fn resolve_token(
        &self,
        method: Source,
        errors: &mut Vec<ConfigError>,
    ) -> Sourced<Option<AuthConfig>> {
        let none = Sourced::default_value(None);
        let (Some(realm), Some(service), Some(issuer), Some(bundle)) = (
            &self.token_realm.value,
            &self.token_service.value,
            &self.token_issuer.value,
            &self.token_rootcertbundle.value,
        ) else {
            let missing: Vec<&str> = [
                ("realm", self.token_realm.value.is_none()),
                ("service", self.token_service.value.is_none()),
                ("issuer", self.token_issuer.value.is_none()),
                ("rootcertbundle", self.token_rootcertbundle.value.is_none()),
            ]
            .iter()
            .filter(|(_, missing)| *missing)
            .map(|(k, _)| *k)
            .collect();
            let keys: Vec<String> = missing.iter().map(|k| format!("auth.token.{k}")).collect();
            let vars: Vec<String> = keys.iter().map(|k| variable(k)).collect();
            errors.push(ConfigError::at(
                &method,
                format!(
                    "token authentication needs {} (or {})",
                    keys.join(", "),
                    vars.join(", ")
                ),
            ));
            return none;
        };
        let (key, htpasswd, access) = (
            &self.token_signing_key,
            &self.token_htpasswd,
            &self.token_access_file,
        );
        let problem = match (&key.value, &htpasswd.value, &access.value) {
            (Some(_), None, _) => Some((&key.source, "the built-in token endpoint needs its users: set auth.token.htpasswd (or REGISTRY_AUTH_TOKEN_HTPASSWD) too")),
            (None, Some(_), _) => Some((&htpasswd.source, "a password file is for the built-in token endpoint, which needs its signing key: set auth.token.signingkey (or REGISTRY_AUTH_TOKEN_SIGNINGKEY) too")),
            (None, None, Some(_)) => Some((&access.source, "an access file is for the built-in token endpoint: set auth.token.signingkey and auth.token.htpasswd too (with an outside token server, its tokens say what they allow)")),
            _ => None,
        };
        if let Some((source, message)) = problem {
            errors.push(ConfigError::at(source, message));
            return none;
        }
        let endpoint = match (&key.value, &htpasswd.value) {
            (Some(key), Some(htpasswd)) => Some(TokenEndpoint {
                htpasswd: htpasswd.clone(),
                access_file: access.value.clone(),
                signing_key: key.clone(),
            }),
            _ => None,
        };
        Sourced::new(
            Some(AuthConfig::Token {
                realm: realm.clone(),
                service: service.clone(),
                issuer: issuer.clone(),
                rootcertbundle: bundle.clone(),
                endpoint,
            }),
            Source::combine(vec![
                ("method", method),
                ("realm", self.token_realm.source.clone()),
                ("service", self.token_service.source.clone()),
                ("issuer", self.token_issuer.source.clone()),
                ("rootcertbundle", self.token_rootcertbundle.source.clone()),
                ("signingkey", key.source.clone()),
                ("htpasswd", htpasswd.source.clone()),
                ("accessfile", access.source.clone()),
            ]),
        )
    }

    /// Redirects follow registry:2 (on unless storage.redirect.disable) except in a legacy
    /// flavored file, where the old registry's default holds: served by us unless
    /// `storage_redirect: true`, so an upgrade does not send clients to a bucket they may
    /// not reach. A level that sets storage.redirect.disable itself wins.
    fn resolve_redirect(&mut self) {
        if self.redirect_disable.source != Source::Default {
            return;
        }
        if let Some(on) = self.storage_redirect.value {
            self.redirect_disable = Sourced::new(!on, self.storage_redirect.source.clone());
        } else if self.file_format == FileFormat::Legacy {
            self.redirect_disable = Sourced::new(true, self.config_file.source.clone());
        }
    }

    /// With S3 chosen and no region written anywhere: the region the AWS CLI would use,
    /// from `AWS_REGION`, `AWS_DEFAULT_REGION` or the profile's `region` in the shared
    /// config file (`~/.aws/config`), with where it came from for `config`.
    pub(super) fn default_s3_region(&mut self, var: impl Fn(&str) -> Option<(String, Source)>) {
        if self.storage_driver.value != StorageChoice::S3 || !self.s3.value.region.is_empty() {
            return;
        }
        let set = ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .into_iter()
            .find_map(|name| var(name).filter(|(v, _)| !v.is_empty()))
            .or_else(|| {
                let plain = |name: &str| var(name).map(|(v, _)| v);
                crate::storage::s3::credentials::profile_region(&plain).map(
                    |(region, path, line, profile)| {
                        let section = crate::storage::s3::credentials::config_section(&profile);
                        let key = format!("[{section}] region");
                        (region, Source::File { path, line, key })
                    },
                )
            });
        if let Some((region, source)) = set {
            self.s3.value.region = region;
            super::table::set_s3_source(self, "region", source);
        }
    }

    /// The bucket's settings, with the legacy flavor's endpoint keys folded in, checked.
    fn resolve_s3(&mut self, errors: &mut Vec<ConfigError>) {
        // The old registry's boto settings: host[:port], https unless s3_secure is false.
        if let Some(host) = self.boto_host.value.clone().filter(|h| !h.is_empty()) {
            if self.s3.value.regionendpoint.is_empty() {
                let scheme = if self.s3.value.secure {
                    "https"
                } else {
                    "http"
                };
                let port = self
                    .boto_port
                    .value
                    .map(|p| format!(":{p}"))
                    .unwrap_or_default();
                self.s3.value.regionendpoint = format!("{scheme}://{host}{port}");
                let source = Source::combine(vec![
                    ("boto_host", self.boto_host.source.clone()),
                    ("boto_port", self.boto_port.source.clone()),
                ]);
                super::table::set_s3_source(self, "regionendpoint", source);
            }
        }
        if let Some(format) = self
            .boto_calling_format
            .value
            .clone()
            .filter(|f| !f.is_empty())
        {
            if self.s3.value.forcepathstyle.is_none() {
                self.s3.value.forcepathstyle = Some(format.contains("OrdinaryCallingFormat"));
                let source = self.boto_calling_format.source.clone();
                super::table::set_s3_source(self, "forcepathstyle", source);
            }
        }
        let options = self.s3.value.options();
        match options.check() {
            Ok(()) => {
                // Where s3 was chosen; `config` shows where each of its settings came from.
                self.storage = Sourced::new(
                    StorageConfig::S3(Box::new(options)),
                    self.storage_driver.source.clone(),
                )
            }
            Err((key, message)) => {
                let source = self.s3.source.part(key);
                errors.push(match source {
                    // Nothing set it: say so where s3 was chosen.
                    Source::Default => ConfigError::at(
                        &self.storage_driver.source,
                        format!("storage.s3.{key}: {message}"),
                    ),
                    _ => ConfigError::at(source, message),
                });
            }
        }
    }

    /// A certificate and its key, and client CAs only with them.
    fn resolve_tls(&self, errors: &mut Vec<ConfigError>) -> Sourced<Option<TlsConfig>> {
        let (c, k, cas) = (&self.tls_certificate, &self.tls_key, &self.tls_client_cas);
        let problem = match (&c.value, &k.value) {
            (Some(certificate), Some(key)) => {
                return Sourced::new(
                    Some(TlsConfig {
                        certificate: certificate.clone(),
                        key: key.clone(),
                        client_cas: cas.value.clone(),
                    }),
                    Source::combine(vec![
                        ("certificate", c.source.clone()),
                        ("key", k.source.clone()),
                        ("clientcas", cas.source.clone()),
                    ]),
                )
            }
            (None, None) if cas.value.is_empty() => None,
            (None, None) => Some((&cas.source, "client CAs (mutual TLS) without a TLS certificate and key: set http.tls.certificate and http.tls.key (or REGISTRY_HTTP_TLS_CERTIFICATE and _KEY) too")),
            (Some(_), None) => Some((&c.source, "a TLS certificate without its key: set http.tls.key (or REGISTRY_HTTP_TLS_KEY) too")),
            (None, Some(_)) => Some((&k.source, "a TLS key without its certificate: set http.tls.certificate (or REGISTRY_HTTP_TLS_CERTIFICATE) too")),
        };
        if let Some((source, message)) = problem {
            errors.push(ConfigError::at(source, message));
        }
        Sourced::default_value(None)
    }
}

/// `http.addr` (`REGISTRY_HTTP_ADDR`) sets the address and the port at once; the table lists
/// it before them, so `REGISTRY_ADDRESS` and `REGISTRY_PORT` refine it within one level.
pub(super) fn split_http_addr(c: &mut Config, addr: SocketAddr, source: Source) {
    c.address = Sourced::new(addr.ip(), source.clone());
    c.port = Sourced::new(addr.port(), source.clone());
    c.http_addr = Sourced::new(addr, source);
}

fn storage_message(name: &str) -> String {
    format!("storage {name:?} is not supported by docker-registry (filesystem and s3 are)")
}

/// Where data goes when nothing says: systemd's `STATE_DIRECTORY`, else a per-user directory
/// (`$XDG_DATA_HOME/docker-registry` or `~/.local/share/docker-registry`), else a temporary one.
fn default_storage(env: &BTreeMap<String, String>) -> Sourced<PathBuf> {
    if let Some(dir) = env.get("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        let first = dir.split(':').next().unwrap_or(dir);
        return Sourced::new(
            PathBuf::from(first),
            Source::Derived("systemd STATE_DIRECTORY".into()),
        );
    }
    // Not /var/lib/docker-registry even when writable: a developer's run by hand must not mix
    // its data into the packaged service's (or Debian's registry:2 package's) directory. The
    // packaged service gets it from the shipped yml and the unit's StateDirectory=.
    let user_dir = env
        .get("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env.get("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        })
        .map(|d| d.join("docker-registry"));
    match user_dir {
        Some(d) => Sourced::new(
            d,
            Source::Derived("no storage configured: a per-user directory".into()),
        ),
        None => Sourced::new(
            std::env::temp_dir().join("docker-registry"),
            Source::Derived("no HOME: a temporary directory".into()),
        ),
    }
}

/// One upstream of the pull-through cache: `proxy.upstreams` entries, then registry:2's
/// single `proxy.remoteurl` as the catch-all (`**`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUpstream {
    /// The local repositories it serves: a glob (`library/**`, `quay/**`, `**` for all;
    /// `*` matches any characters including `/`).
    pub prefix: String,
    /// The registry pulled from: `https://registry-1.docker.io`.
    pub remoteurl: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// How long a tag fetched or checked is served without asking the upstream again (a
    /// HEAD); `None`: checked on every pull, as registry:2 does.
    pub ttl: Option<Duration>,
    /// Leave the prefix's fixed part out of the name asked upstream: `quay/coreos/etcd`
    /// under `quay/**` is `coreos/etcd` there.
    pub strip_prefix: bool,
    /// containerd's `ns` query parameter values (the registry host a client was told to
    /// pull from, `docker.io`) that choose this upstream.
    pub namespaces: Vec<String>,
}

impl ProxyUpstream {
    /// registry:2's `proxy.remoteurl`: every repository.
    pub fn catch_all(remoteurl: String) -> ProxyUpstream {
        ProxyUpstream {
            prefix: "**".into(),
            remoteurl,
            username: None,
            password: None,
            ttl: None,
            strip_prefix: false,
            namespaces: Vec::new(),
        }
    }

    /// What is wrong with it, for the operator.
    pub fn check(&self) -> Result<(), String> {
        let url = &self.remoteurl;
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.parse::<http::Uri>().is_err()
        {
            return Err(format!(
                "a proxy upstream needs an http:// or https:// remoteurl, found {url:?}"
            ));
        }
        super::kinds::glob_text(&self.prefix)?;
        if self.strip_prefix && !fixed_part(&self.prefix).ends_with('/') {
            return Err(format!(
                "stripprefix needs a prefix whose fixed part ends with / (quay/**), found {:?}",
                self.prefix
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err("a proxy upstream's username and password go together".into());
        }
        Ok(())
    }
}

/// A prefix pattern's part before its first wildcard.
pub fn fixed_part(pattern: &str) -> &str {
    let end = pattern.find(['*', '?']).unwrap_or(pattern.len());
    &pattern[..end]
}

impl fmt::Display for ProxyUpstream {
    /// As it would be written in a registry:2 file, on one line; the password masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "prefix={} remoteurl={}", self.prefix, self.remoteurl)?;
        if let Some(u) = &self.username {
            write!(f, " username={u} password=********")?;
        }
        match self.ttl {
            Some(d) => write!(f, " ttl={}", humantime::format_duration(d))?,
            None => f.write_str(" ttl=0")?,
        }
        if self.strip_prefix {
            f.write_str(" stripprefix=true")?;
        }
        if !self.namespaces.is_empty() {
            write!(f, " namespaces={}", self.namespaces.join(","))?;
        }
        Ok(())
    }
}
