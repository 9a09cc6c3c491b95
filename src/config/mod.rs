//! One configuration model, built from everything our users already write.
//!
//! Precedence, low to high: built-in defaults; the YAML file (`DOCKER_REGISTRY_CONFIG`, the
//! legacy flavored format or a `registry:2` file); `/etc/sysconfig/docker-registry`; the
//! process environment (including `registry:2`'s `REGISTRY_<SECTION>_<KEY>` overrides);
//! command-line flags. Every value remembers where it came from ([`Source`]) so that
//! `docker-registry config` can show it and every error can name the file, line and key.
//!
//! Rules worth knowing:
//! * The listening address is two settings, host and port. `http.addr` (and
//!   `REGISTRY_HTTP_ADDR`) set both; `REGISTRY_ADDRESS` and `REGISTRY_PORT` set one each, so a
//!   `registry:2` file's `http.addr: 127.0.0.1:6000` with `REGISTRY_PORT=7000` in the
//!   sysconfig file listens on `127.0.0.1:7000`. Within one level `REGISTRY_ADDRESS` /
//!   `REGISTRY_PORT` refine `REGISTRY_HTTP_ADDR`.
//! * systemd's `EnvironmentFile=` exports the sysconfig file's variables into the process
//!   environment. A process variable whose value equals the file's is taken as the file's (its
//!   precedence and its `file:line`), so a drop-in's `REGISTRY_HTTP_ADDR` still wins over the
//!   file's `REGISTRY_PORT=5000`.
//! * The sysconfig file's variables (and the process environment over them) are what
//!   `_env:NAME` values of the YAML file read.
//! * `SETTINGS_FLAVOR` defaults to `local` (the old Python registry used `dev` without it).
//! * Garbage collection (`storage.maintenance.gc.*`, `gc_*`, `REGISTRY_STORAGE_MAINTENANCE_GC_*`)
//!   follows the same precedence, key by key; an interval of 0 turns scheduled collection off,
//!   so the environment can undo a file's schedule. Retention rules are a list and come only
//!   from the YAML file, as a whole. The keys of `storage.maintenance.gc` and of retention
//!   rules ignore case, `_` and `-` (`deleteuntagged` = `delete_untagged` = `deleteUntagged`).
//! * Authentication: `auth.htpasswd` or `auth.token` (`REGISTRY_AUTH`); without a method
//!   named, a level's htpasswd keys alone choose htpasswd and its token keys alone token (as
//!   registry:2 reads its `auth:` block), both at once is an error. `auth: token` with a
//!   signing key (`auth.token.signingkey`) is the built-in endpoint, whose users are
//!   `auth.token.htpasswd`. TLS keys and the flags over them combine key by key, so a file's
//!   `http.tls.clientcas` stays when `--tls-cert` replaces its certificate.
//! * When nothing names a storage directory: systemd's `STATE_DIRECTORY`, else
//!   `/var/lib/docker-registry` when writable, else a per-user directory.

mod distribution;
mod env;
mod layer;
mod legacy;
mod retention;
pub mod sysconfig;
mod values;
pub mod yaml;

use layer::{AuthChoice, Layer, StorageChoice, TokenLayer};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// A built-in default chosen at run time, with why (e.g. "not root: a user directory").
    Derived(String),
    /// A file (YAML or sysconfig), 1-based line, and the key as written there.
    File {
        path: PathBuf,
        line: usize,
        key: String,
    },
    /// A process environment variable.
    Env(String),
    /// A command-line flag.
    Cli(String),
    /// A YAML value written as `_env:NAME[:default]`: where it is written, the variable, and
    /// where the variable's value came from (`None`: unset, so the default written there).
    FileEnv {
        path: PathBuf,
        line: usize,
        key: String,
        var: String,
        origin: Option<Box<Source>>,
    },
    /// A value assembled from several places (the address from one, the port from another).
    Parts(Vec<(String, Source)>),
}

impl Source {
    /// The source of one named part of a [`Source::Parts`] value; any other source is the
    /// source of all its parts.
    pub fn part(&self, name: &str) -> &Source {
        match self {
            Source::Parts(parts) => parts
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s)
                .unwrap_or(self),
            _ => self,
        }
    }

    /// One source when every part came from the same place, else [`Source::Parts`].
    pub fn combine(parts: Vec<(&str, Source)>) -> Source {
        match parts.first() {
            Some((_, first)) if parts.iter().all(|(_, s)| s == first) => first.clone(),
            _ => Source::Parts(parts.into_iter().map(|(n, s)| (n.to_string(), s)).collect()),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Derived(why) => write!(f, "default ({why})"),
            Source::File { path, line, key } => write!(f, "{}:{line} ({key})", path.display()),
            Source::Env(name) => write!(f, "environment ({name})"),
            Source::Cli(flag) => write!(f, "command line ({flag})"),
            Source::FileEnv {
                path,
                line,
                key,
                var,
                origin,
            } => {
                write!(f, "{}:{line} ({key}: _env:{var} ", path.display())?;
                match origin.as_deref() {
                    None => f.write_str("unset, the default written there)"),
                    Some(Source::Env(_)) => f.write_str("from the environment)"),
                    Some(Source::File { path, line, .. }) => {
                        write!(f, "from {}:{line})", path.display())
                    }
                    Some(other) => write!(f, "from {other})"),
                }
            }
            Source::Parts(parts) => {
                for (i, (name, source)) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{name}: {source}")?;
                }
                Ok(())
            }
        }
    }
}

/// A value with its provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Sourced<T> {
    pub fn new(value: T, source: Source) -> Self {
        Sourced { value, source }
    }

    pub fn default_value(value: T) -> Self {
        Sourced {
            value,
            source: Source::Default,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// Accepts the names used by the legacy registry (Python logging: `critical`, `warning`)
    /// and by registry:2 (logrus: `panic`, `fatal`, `warn`).
    pub fn parse(s: &str) -> Option<LogLevel> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "panic" | "fatal" | "critical" | "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    Syslog,
}

impl LogTarget {
    pub fn as_str(&self) -> &'static str {
        match self {
            LogTarget::Stderr => "stderr",
            LogTarget::Syslog => "syslog",
        }
    }
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
    Filesystem { root: PathBuf },
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPurging {
    pub enabled: bool,
    pub age: Duration,
    pub interval: Duration,
    pub dry_run: bool,
}

impl Default for UploadPurging {
    fn default() -> Self {
        UploadPurging {
            enabled: true,
            age: Duration::from_secs(168 * 3600),
            interval: Duration::from_secs(24 * 3600),
            dry_run: false,
        }
    }
}

/// Garbage collection inside the daemon: `storage.maintenance.gc.{interval, grace,
/// deleteuntagged, socket}` in a registry:2 file, `gc_interval`, `gc_grace`,
/// `gc_delete_untagged`, `gc_socket` in a flavored one, `REGISTRY_STORAGE_MAINTENANCE_GC_*`
/// in the environment. An interval of 0 means no scheduled collection. See `registry::gc`
/// for what the grace period protects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcConfig {
    /// Run an online collection this often; `None`: only when asked
    /// (`docker-registry garbage-collect --online`).
    pub interval: Option<Duration>,
    /// Blobs written, and untagged manifests pushed, less than this long ago are never
    /// collected by the daemon: a push in progress has uploaded them but not yet
    /// referenced them.
    pub grace: Duration,
    /// Scheduled runs also remove manifests that no tag reaches.
    pub delete_untagged: bool,
    /// The daemon's admin socket for `garbage-collect --online`; `None`: the file
    /// `docker-registry-admin.sock` in the filesystem storage root.
    pub socket: Option<PathBuf>,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval: None,
            grace: Duration::from_secs(3600),
            delete_untagged: false,
            socket: None,
        }
    }
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

/// The effective configuration of one daemon.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address to bind (`REGISTRY_ADDRESS` + `REGISTRY_PORT`, or `http.addr`).
    pub listen: Sourced<SocketAddr>,
    /// Runtime worker threads; 0 = one per CPU (`GUNICORN_WORKERS`, `REGISTRY_WORKERS`).
    pub workers: Sourced<usize>,
    /// The legacy flavor section in use (`SETTINGS_FLAVOR`).
    pub flavor: Sourced<String>,
    /// The YAML file read, if any existed.
    pub config_file: Sourced<Option<PathBuf>>,
    /// The format of that file.
    pub file_format: FileFormat,
    /// The sysconfig file read, if any existed.
    pub sysconfig_file: Sourced<Option<PathBuf>>,
    pub storage: Sourced<StorageConfig>,
    pub delete_enabled: Sourced<bool>,
    pub readonly: Sourced<bool>,
    pub upload_purging: Sourced<UploadPurging>,
    pub gc: Sourced<GcConfig>,
    /// Retention rules, in order; the first rule whose pattern matches a repository applies.
    pub retention: Sourced<Vec<RetentionRule>>,
    pub log_level: Sourced<LogLevel>,
    pub log_target: Sourced<LogTarget>,
    /// Accepted for compatibility (`search_backend`); `/v1/search` always answers from the
    /// repository names.
    pub search_backend: Sourced<Option<String>>,
    /// The string `GET /` answers (the legacy `issue` key).
    pub issue: Sourced<String>,
    pub auth: Sourced<Option<AuthConfig>>,
    pub tls: Sourced<Option<TlsConfig>>,
    /// Trust `X-Forwarded-For`/`-Proto`/`-Host` from the proxy in front (client address for
    /// throttling and logs, absolute `Location` headers). Off: a client could forge them.
    pub trust_forwarded_headers: Sourced<bool>,
    /// Things the operator should know: unsupported keys by name, ignored variables.
    pub warnings: Vec<String>,
}

/// Overrides given on the command line (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct CliOverrides {
    pub address: Option<IpAddr>,
    pub port: Option<u16>,
    pub workers: Option<usize>,
    pub storage_path: Option<PathBuf>,
    pub log_level: Option<LogLevel>,
    pub delete_enabled: Option<bool>,
    pub htpasswd: Option<PathBuf>,
    pub auth_realm: Option<String>,
    pub access_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub trust_forwarded_headers: Option<bool>,
    pub token_realm: Option<String>,
    pub token_service: Option<String>,
    pub token_issuer: Option<String>,
    pub token_rootcertbundle: Option<PathBuf>,
    pub token_signing_key: Option<PathBuf>,
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The sysconfig file; `None` means `/etc/sysconfig/docker-registry`, read if it exists.
    /// A path given explicitly must exist.
    pub sysconfig: Option<PathBuf>,
    /// The YAML file; `None` means `DOCKER_REGISTRY_CONFIG` or `/etc/docker-registry.yml`,
    /// read if it exists. A path given explicitly must exist.
    pub config: Option<PathBuf>,
    /// The process environment (a snapshot, so tests can pass their own).
    pub env: BTreeMap<String, String>,
    pub cli: CliOverrides,
}

/// One problem found in the configuration: `file:line: key: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(p), Some(l)) => write!(f, "{}:{l}: ", p.display())?,
            (Some(p), None) => write!(f, "{}: ", p.display())?,
            _ => {}
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// All the problems found; loading reports every one, not just the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigError {
    /// An error about the value that `source` set: the file, line and key come from there.
    pub fn at(source: &Source, message: impl Into<String>) -> ConfigError {
        let message = message.into();
        match source {
            Source::File { path, line, key } => ConfigError {
                file: Some(path.clone()),
                line: Some(*line),
                key: key.clone(),
                message,
            },
            Source::FileEnv {
                path,
                line,
                key,
                var,
                origin,
            } => {
                let how = match origin.as_deref() {
                    None => format!("_env:{var} is unset, so the default written there"),
                    Some(Source::Env(_)) => format!("_env:{var}, set in the environment"),
                    Some(Source::File { path, line, .. }) => {
                        format!("_env:{var}, set in {}:{line}", path.display())
                    }
                    Some(other) => format!("_env:{var}, from {other}"),
                };
                ConfigError {
                    file: Some(path.clone()),
                    line: Some(*line),
                    key: key.clone(),
                    message: format!("{message} (value from {how})"),
                }
            }
            Source::Env(name) => ConfigError {
                file: None,
                line: None,
                key: name.clone(),
                message: format!("{message} (set in the environment)"),
            },
            Source::Cli(flag) => ConfigError {
                file: None,
                line: None,
                key: flag.clone(),
                message,
            },
            Source::Parts(parts) => match parts.first() {
                Some((_, s)) => ConfigError::at(s, message),
                None => ConfigError {
                    file: None,
                    line: None,
                    key: String::new(),
                    message,
                },
            },
            Source::Default | Source::Derived(_) => ConfigError {
                file: None,
                line: None,
                key: String::new(),
                message,
            },
        }
    }
}

/// The source of a YAML mapping entry: its line and the path where it was written, and the
/// variable when it was an `_env:` reference.
fn entry_source(file: &Path, entry: &yaml::Entry) -> Source {
    let key = if entry.value.path.is_empty() {
        entry.key.clone()
    } else {
        entry.value.path.clone()
    };
    match &entry.value.env {
        Some(r) => Source::FileEnv {
            path: file.to_path_buf(),
            line: entry.key_line,
            key,
            var: r.var.clone(),
            origin: r.origin.clone().map(Box::new),
        },
        None => Source::File {
            path: file.to_path_buf(),
            line: entry.key_line,
            key,
        },
    }
}

/// An optional setting's value and source (`Default` when no level set it).
fn unsourced<T>(s: Option<Sourced<T>>) -> (Option<T>, Source) {
    match s {
        Some(s) => (Some(s.value), s.source),
        None => (None, Source::Default),
    }
}

/// The method a level's keys ask for when no level names one: htpasswd keys alone ask for
/// htpasswd and token keys alone for token, as registry:2 reads a file's `auth:` block.
fn implied_auth(l: &Layer, errors: &mut Vec<ConfigError>) -> Option<Sourced<AuthChoice>> {
    let htpasswd = [
        l.auth_path.as_ref().map(|s| &s.source),
        l.auth_realm.as_ref().map(|s| &s.source),
        l.auth_access_file.as_ref().map(|s| &s.source),
    ]
    .into_iter()
    .flatten()
    .next();
    let token = l.token.any_source();
    match (htpasswd, token) {
        (None, None) => None,
        (Some(h), None) => Some(Sourced::new(AuthChoice::Htpasswd, h.clone())),
        (None, Some(t)) => Some(Sourced::new(AuthChoice::Token, t.clone())),
        (Some(h), Some(t)) => {
            errors.push(ConfigError::at(
                t,
                format!(
                    "both token and htpasswd settings are given (htpasswd: {h}): choose one with REGISTRY_AUTH=token or htpasswd (auth: in a file)"
                ),
            ));
            None
        }
    }
}

pub const DEFAULT_SYSCONFIG: &str = "/etc/sysconfig/docker-registry";
pub const DEFAULT_CONFIG: &str = "/etc/docker-registry.yml";
pub const PACKAGED_STORAGE_ROOT: &str = "/var/lib/docker-registry";

/// The realm announced for htpasswd authentication when none is configured.
pub const DEFAULT_REALM: &str = "Registry Realm";

/// The variables the configuration can read: the process environment over the sysconfig file.
struct Environment<'a> {
    process: &'a BTreeMap<String, String>,
    file: Option<(&'a Path, &'a sysconfig::Parsed)>,
}

impl Environment<'_> {
    /// A variable as written in the sysconfig file.
    fn file_var(&self, name: &str) -> Option<(String, Source)> {
        let (path, parsed) = self.file?;
        let a = parsed.get(name)?;
        Some((
            a.value.clone(),
            Source::File {
                path: path.to_path_buf(),
                line: a.line,
                key: name.to_string(),
            },
        ))
    }

    /// A variable set in the process environment and not merely passed through from the
    /// sysconfig file: systemd's `EnvironmentFile=` exports the file's variables, and a value
    /// equal to the file's keeps the file's (lower) precedence and its `file:line` source.
    fn process_var(&self, name: &str) -> Option<(String, Source)> {
        let v = self.process.get(name)?;
        match self.file_var(name) {
            Some((fv, _)) if fv == *v => None,
            _ => Some((v.clone(), Source::Env(name.to_string()))),
        }
    }

    /// The process environment wins over the file.
    fn lookup(&self, name: &str) -> Option<(String, Source)> {
        self.process_var(name).or_else(|| self.file_var(name))
    }
}

/// Reads a configuration file; a missing file that was not asked for explicitly is no error.
fn read_text(path: &Path, explicit: Option<&str>, errors: &mut Vec<ConfigError>) -> Option<String> {
    let fail = |message: String| ConfigError {
        file: Some(path.to_path_buf()),
        line: None,
        key: String::new(),
        message,
    };
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Some(text),
            Err(e) => {
                errors.push(fail(format!(
                    "not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                )));
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => None,
        Err(e) => {
            let why = explicit
                .map(|w| format!(" (given by {w})"))
                .unwrap_or_default();
            errors.push(fail(format!("cannot read this file{why}: {e}")));
            None
        }
    }
}

fn storage_message(name: &str) -> String {
    if name == "s3" {
        "S3 storage arrives in a later release of docker-registry; until then use the filesystem \
         (storage: local in a flavored file, storage.filesystem in a registry:2 file, or \
         REGISTRY_STORAGE=filesystem)"
            .to_string()
    } else {
        format!(
            "storage {name:?} is not supported by docker-registry (filesystem storage only; S3 arrives in a later release)"
        )
    }
}

impl Config {
    /// Loads and validates the configuration. Every problem is reported, not just the first.
    pub fn load(opts: &LoadOptions) -> Result<Config, ConfigErrors> {
        let mut errors: Vec<ConfigError> = Vec::new();
        let mut warnings: Vec<String> = Vec::new();
        let mut config = Config::defaults(&opts.env);

        // 1. The sysconfig file: it can choose the YAML file and the flavor.
        let (sys_path, sys_explicit) = match &opts.sysconfig {
            Some(p) => (p.clone(), Some("--sysconfig")),
            None => (PathBuf::from(DEFAULT_SYSCONFIG), None),
        };
        let sys =
            read_text(&sys_path, sys_explicit, &mut errors).map(|text| sysconfig::parse(&text));
        config.sysconfig_file = match (&sys, sys_explicit) {
            (Some(_), Some(flag)) => Sourced::new(Some(sys_path.clone()), Source::Cli(flag.into())),
            (Some(_), None) => Sourced::default_value(Some(sys_path.clone())),
            (None, _) => Sourced::new(
                None,
                Source::Derived(format!("{DEFAULT_SYSCONFIG} does not exist")),
            ),
        };
        if let Some(parsed) = &sys {
            for p in &parsed.errors {
                errors.push(ConfigError {
                    file: Some(sys_path.clone()),
                    line: Some(p.line),
                    key: p.key.clone(),
                    message: p.message.clone(),
                });
            }
            for r in &parsed.remarks {
                warnings.push(format!(
                    "{}:{}: {}: {}",
                    sys_path.display(),
                    r.line,
                    r.key,
                    r.message
                ));
            }
        }
        let env = Environment {
            process: &opts.env,
            file: sys.as_ref().map(|p| (sys_path.as_path(), p)),
        };

        if let Some((flavor, source)) = env.lookup("SETTINGS_FLAVOR").filter(|(v, _)| !v.is_empty())
        {
            config.flavor = Sourced::new(flavor, source);
        }

        // 2. The YAML file.
        let yaml_file = match &opts.config {
            Some(p) => Some((
                p.clone(),
                Source::Cli("--config".into()),
                Some("--config".to_string()),
            )),
            None => match env
                .lookup("DOCKER_REGISTRY_CONFIG")
                .filter(|(v, _)| !v.is_empty())
            {
                Some((p, source)) => {
                    let why = format!("DOCKER_REGISTRY_CONFIG, {source}");
                    Some((PathBuf::from(p), source, Some(why)))
                }
                None => Some((PathBuf::from(DEFAULT_CONFIG), Source::Default, None)),
            },
        };
        let mut yaml_layer = Layer::default();
        let mut env_references: Vec<String> = Vec::new();
        if let Some((path, source, explicit)) = yaml_file {
            match read_text(&path, explicit.as_deref(), &mut errors) {
                None => {
                    if explicit.is_none() {
                        config.config_file = Sourced::new(
                            None,
                            Source::Derived(format!("{} does not exist", path.display())),
                        );
                    }
                }
                Some(text) => {
                    config.config_file = Sourced::new(Some(path.clone()), source);
                    yaml_layer = config.read_yaml(
                        &path,
                        &text,
                        &env,
                        &mut env_references,
                        &mut errors,
                        &mut warnings,
                    );
                }
            }
        }

        // 3. The sysconfig file's own level, and the variables nothing reads.
        let sys_layer = env::layer_from(|n| env.file_var(n), &mut errors);
        if let Some(parsed) = &sys {
            let mut unused: Vec<String> = Vec::new();
            for a in &parsed.assignments {
                let used = env::is_known(&a.name) || env_references.contains(&a.name);
                if !used
                    && !unused
                        .iter()
                        .any(|u| u.starts_with(&format!("{} ", a.name)))
                {
                    unused.push(format!("{} (line {})", a.name, a.line));
                }
            }
            if !unused.is_empty() {
                warnings.push(format!(
                    "{}: ignoring variables docker-registry does not use: {}",
                    sys_path.display(),
                    unused.join(", ")
                ));
            }
        }

        // 4. The process environment.
        let env_layer = env::layer_from(|n| env.process_var(n), &mut errors);
        let unused: Vec<&str> = opts
            .env
            .keys()
            .filter(|k| {
                k.starts_with("REGISTRY_") && !env::is_known(k) && env.process_var(k).is_some()
            })
            .map(|k| k.as_str())
            .collect();
        if !unused.is_empty() {
            warnings.push(format!(
                "ignoring environment variables docker-registry does not use: {}",
                unused.join(", ")
            ));
        }

        // 5. The command line.
        let cli_layer = cli_layer(&opts.cli, &mut errors);

        let mut settings = yaml_layer;
        settings.overlay(sys_layer);
        settings.overlay(env_layer);
        settings.overlay(cli_layer);
        config.resolve(settings, &mut errors);
        // The access-control and TLS flags, applied over the resolved settings.
        if let Err(e) = apply_cli_security(&mut config, &opts.cli) {
            errors.push(e);
        }
        config.warnings = warnings;
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Parses the YAML file, recognises its format and reads its level.
    fn read_yaml(
        &mut self,
        path: &Path,
        text: &str,
        env: &Environment<'_>,
        env_references: &mut Vec<String>,
        errors: &mut Vec<ConfigError>,
        warnings: &mut Vec<String>,
    ) -> Layer {
        let (root, remarks) = match yaml::parse(text) {
            Ok(parsed) => parsed,
            Err(e) => {
                errors.push(ConfigError {
                    file: Some(path.to_path_buf()),
                    line: Some(e.line),
                    key: String::new(),
                    message: format!("not valid YAML: {}", e.message),
                });
                return Layer::default();
            }
        };
        for r in remarks {
            warnings.push(format!(
                "{}:{}: {}: {}",
                path.display(),
                r.line,
                r.path,
                r.message
            ));
        }
        let Some(root) = root else {
            warnings.push(format!(
                "{}: the file is empty; using the built-in defaults",
                path.display()
            ));
            return Layer::default();
        };
        root.env_references(env_references);
        match root.get("version") {
            Some(v) if v.value.entries().is_none() => {
                let version = values::node_text(&v.value)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                if version != "0.1" {
                    errors.push(ConfigError {
                        file: Some(path.to_path_buf()),
                        line: Some(v.key_line),
                        key: "version".into(),
                        message: format!("unsupported registry:2 configuration version {version:?} (expected 0.1)"),
                    });
                    return Layer::default();
                }
                self.file_format = FileFormat::Distribution;
                if self.flavor.source != Source::Default {
                    warnings.push(format!(
                        "SETTINGS_FLAVOR={} ({}) is not used: {} is a registry:2 file, which has no flavors",
                        self.flavor.value,
                        self.flavor.source,
                        path.display()
                    ));
                }
                distribution::read(path, &root, errors, warnings)
            }
            _ => {
                self.file_format = FileFormat::Legacy;
                legacy::read(
                    path,
                    &root,
                    &self.flavor,
                    &|n| env.lookup(n),
                    errors,
                    warnings,
                )
            }
        }
    }

    /// Turns the stacked levels into the effective configuration, checking what only makes
    /// sense as a whole (a storage driver we have, a password file for htpasswd, ...).
    fn resolve(&mut self, l: Layer, errors: &mut Vec<ConfigError>) {
        let auth_method = l.auth.clone().or_else(|| implied_auth(&l, errors));
        let address = l
            .address
            .unwrap_or_else(|| Sourced::default_value(self.listen.value.ip()));
        let port = l
            .port
            .unwrap_or_else(|| Sourced::default_value(self.listen.value.port()));
        self.listen = Sourced::new(
            SocketAddr::new(address.value, port.value),
            Source::combine(vec![("address", address.source), ("port", port.source)]),
        );
        if let Some(w) = l.workers {
            self.workers = w;
        }

        match l.storage {
            Some(Sourced {
                value: StorageChoice::Unsupported { name },
                source,
            }) => {
                let message = match (self.file_format, &source) {
                    (FileFormat::Legacy, Source::File { .. } | Source::FileEnv { .. }) => {
                        format!(
                            "flavor {} uses storage {name}: {}",
                            self.flavor.value,
                            storage_message(&name)
                        )
                    }
                    _ => storage_message(&name),
                };
                errors.push(ConfigError::at(&source, message));
            }
            _ => {
                if let Some(root) = l.storage_root {
                    self.storage =
                        Sourced::new(StorageConfig::Filesystem { root: root.value }, root.source);
                }
            }
        }

        if let Some(v) = l.delete_enabled {
            self.delete_enabled = v;
        }
        if let Some(v) = l.readonly {
            self.readonly = v;
        }
        if let Some(v) = l.log_level {
            self.log_level = v;
        }
        if let Some(v) = l.log_target {
            self.log_target = v;
        }
        if let Some(v) = l.search_backend {
            self.search_backend = v;
        }
        if let Some(v) = l.issue {
            self.issue = v;
        }

        let defaults = UploadPurging::default();
        let enabled = l
            .purge_enabled
            .unwrap_or_else(|| Sourced::default_value(defaults.enabled));
        let age = l
            .purge_age
            .unwrap_or_else(|| Sourced::default_value(defaults.age));
        let interval = l
            .purge_interval
            .unwrap_or_else(|| Sourced::default_value(defaults.interval));
        let dry_run = l
            .purge_dry_run
            .unwrap_or_else(|| Sourced::default_value(defaults.dry_run));
        if interval.value.is_zero() && enabled.value {
            errors.push(ConfigError::at(
                &interval.source,
                "the upload purging interval must be longer than 0",
            ));
        }
        self.upload_purging = Sourced::new(
            UploadPurging {
                enabled: enabled.value,
                age: age.value,
                interval: interval.value,
                dry_run: dry_run.value,
            },
            Source::combine(vec![
                ("enabled", enabled.source),
                ("age", age.source),
                ("interval", interval.source),
                ("dryrun", dry_run.source),
            ]),
        );

        let defaults = GcConfig::default();
        let interval = l
            .gc_interval
            .unwrap_or_else(|| Sourced::default_value(defaults.interval));
        let grace = l
            .gc_grace
            .unwrap_or_else(|| Sourced::default_value(defaults.grace));
        let delete_untagged = l
            .gc_delete_untagged
            .unwrap_or_else(|| Sourced::default_value(defaults.delete_untagged));
        let socket = l
            .gc_socket
            .map(|s| Sourced::new(Some(s.value), s.source))
            .unwrap_or_else(|| Sourced::default_value(defaults.socket));
        self.gc = Sourced::new(
            GcConfig {
                interval: interval.value,
                grace: grace.value,
                delete_untagged: delete_untagged.value,
                socket: socket.value,
            },
            Source::combine(vec![
                ("interval", interval.source),
                ("grace", grace.source),
                ("deleteuntagged", delete_untagged.source),
                ("socket", socket.source),
            ]),
        );
        if let Some(rules) = l.retention {
            self.retention = rules;
        }

        match auth_method {
            None => {}
            Some(Sourced { value: AuthChoice::Unsupported { name }, source }) => errors.push(ConfigError::at(
                &source,
                format!(
                    "authentication {name:?} is not supported (only htpasswd and token); refusing to start without the authentication asked for"
                ),
            )),
            Some(Sourced { value: AuthChoice::Htpasswd, source }) => match l.auth_path {
                None => errors.push(ConfigError::at(
                    &source,
                    "htpasswd authentication needs a password file: set auth.htpasswd.path (or REGISTRY_AUTH_HTPASSWD_PATH)",
                )),
                Some(path) => {
                    let realm = l.auth_realm.unwrap_or_else(|| Sourced::default_value(DEFAULT_REALM.to_string()));
                    let (access_file, access_source) = unsourced(l.auth_access_file);
                    self.auth = Sourced::new(
                        Some(AuthConfig::Htpasswd { realm: realm.value, path: path.value, access_file }),
                        Source::combine(vec![
                            ("method", source),
                            ("realm", realm.source),
                            ("path", path.source),
                            ("accessfile", access_source),
                        ]),
                    );
                }
            },
            Some(Sourced { value: AuthChoice::Token, source }) => {
                self.resolve_token(source, &l.token, errors)
            }
        }

        match (l.tls_certificate, l.tls_key) {
            (None, None) => {
                if let Some(cas) = l.tls_client_cas {
                    errors.push(ConfigError::at(
                        &cas.source,
                        "client CAs (mutual TLS) without a TLS certificate and key: set http.tls.certificate and http.tls.key (or REGISTRY_HTTP_TLS_CERTIFICATE and _KEY) too",
                    ));
                }
            }
            (Some(c), Some(k)) => {
                let (client_cas, cas_source) = match l.tls_client_cas {
                    Some(cas) => (cas.value, cas.source),
                    None => (Vec::new(), Source::Default),
                };
                self.tls = Sourced::new(
                    Some(TlsConfig { certificate: c.value, key: k.value, client_cas }),
                    Source::combine(vec![
                        ("certificate", c.source),
                        ("key", k.source),
                        ("clientcas", cas_source),
                    ]),
                );
            }
            (Some(c), None) => errors.push(ConfigError::at(
                &c.source,
                "a TLS certificate without its key: set http.tls.key (or REGISTRY_HTTP_TLS_KEY) too",
            )),
            (None, Some(k)) => errors.push(ConfigError::at(
                &k.source,
                "a TLS key without its certificate: set http.tls.certificate (or REGISTRY_HTTP_TLS_CERTIFICATE) too",
            )),
        }
        if let Some(v) = l.trust_forwarded_headers {
            self.trust_forwarded_headers = v;
        }
    }

    /// `auth: token`: the four settings registry:2 needs, and the built-in endpoint when a
    /// signing key is given (which then needs its users' htpasswd file).
    fn resolve_token(&mut self, method: Source, t: &TokenLayer, errors: &mut Vec<ConfigError>) {
        let missing: Vec<&str> = [
            ("realm", t.realm.is_none()),
            ("service", t.service.is_none()),
            ("issuer", t.issuer.is_none()),
            ("rootcertbundle", t.rootcertbundle.is_none()),
        ]
        .iter()
        .filter(|(_, missing)| *missing)
        .map(|(k, _)| *k)
        .collect();
        let (Some(realm), Some(service), Some(issuer), Some(bundle)) = (
            t.realm.clone(),
            t.service.clone(),
            t.issuer.clone(),
            t.rootcertbundle.clone(),
        ) else {
            let keys: Vec<String> = missing.iter().map(|k| format!("auth.token.{k}")).collect();
            let vars: Vec<String> = missing
                .iter()
                .map(|k| format!("REGISTRY_AUTH_TOKEN_{}", k.to_ascii_uppercase()))
                .collect();
            errors.push(ConfigError::at(
                &method,
                format!(
                    "token authentication needs {} (or {})",
                    keys.join(", "),
                    vars.join(", ")
                ),
            ));
            return;
        };
        let endpoint = match (&t.signing_key, &t.htpasswd) {
            (Some(key), Some(htpasswd)) => Some(TokenEndpoint {
                htpasswd: htpasswd.value.clone(),
                access_file: t.access_file.as_ref().map(|a| a.value.clone()),
                signing_key: key.value.clone(),
            }),
            (Some(key), None) => {
                errors.push(ConfigError::at(
                    &key.source,
                    "the built-in token endpoint needs its users: set auth.token.htpasswd (or REGISTRY_AUTH_TOKEN_HTPASSWD) too",
                ));
                return;
            }
            (None, Some(htpasswd)) => {
                errors.push(ConfigError::at(
                    &htpasswd.source,
                    "a password file is for the built-in token endpoint, which needs its signing key: set auth.token.signingkey (or REGISTRY_AUTH_TOKEN_SIGNINGKEY) too",
                ));
                return;
            }
            (None, None) => {
                if let Some(a) = &t.access_file {
                    errors.push(ConfigError::at(
                        &a.source,
                        "an access file is for the built-in token endpoint: set auth.token.signingkey and auth.token.htpasswd too (with an outside token server, its tokens say what they allow)",
                    ));
                    return;
                }
                None
            }
        };
        let part = |s: &Option<Sourced<PathBuf>>| {
            s.as_ref()
                .map(|s| s.source.clone())
                .unwrap_or(Source::Default)
        };
        self.auth = Sourced::new(
            Some(AuthConfig::Token {
                realm: realm.value,
                service: service.value,
                issuer: issuer.value,
                rootcertbundle: bundle.value,
                endpoint,
            }),
            Source::combine(vec![
                ("method", method),
                ("realm", realm.source),
                ("service", service.source),
                ("issuer", issuer.source),
                ("rootcertbundle", bundle.source),
                ("signingkey", part(&t.signing_key)),
                ("htpasswd", part(&t.htpasswd)),
                ("accessfile", part(&t.access_file)),
            ]),
        );
    }

    /// Built-in defaults.
    pub fn defaults(env: &BTreeMap<String, String>) -> Config {
        Config {
            listen: Sourced::default_value(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                5000,
            )),
            workers: Sourced::default_value(0),
            flavor: Sourced::default_value("local".into()),
            config_file: Sourced::default_value(None),
            file_format: FileFormat::None,
            sysconfig_file: Sourced::default_value(None),
            storage: default_storage(env),
            delete_enabled: Sourced::default_value(false),
            readonly: Sourced::default_value(false),
            upload_purging: Sourced::default_value(UploadPurging::default()),
            gc: Sourced::default_value(GcConfig::default()),
            retention: Sourced::default_value(Vec::new()),
            log_level: Sourced::default_value(LogLevel::Info),
            log_target: Sourced::default_value(LogTarget::Stderr),
            search_backend: Sourced::default_value(None),
            issue: Sourced::default_value("\"docker-registry server\"".into()),
            auth: Sourced::default_value(None),
            tls: Sourced::default_value(None),
            trust_forwarded_headers: Sourced::default_value(false),
            warnings: Vec::new(),
        }
    }

    /// The effective configuration, one setting per line with where it came from.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: String, s: &Source| {
            out.push_str(&format!("{k:<44} {v:<32} # {s}\n"));
        };
        let shown = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(none)".into())
        };
        line(
            "sysconfig",
            shown(&self.sysconfig_file.value),
            &self.sysconfig_file.source,
        );
        line(
            "config",
            shown(&self.config_file.value),
            &self.config_file.source,
        );
        line(
            "config.format",
            self.file_format.as_str().into(),
            &self.config_file.source,
        );
        let flavor = match self.file_format {
            FileFormat::Legacy => self.flavor.value.clone(),
            _ => format!("{} (unused: no flavored file)", self.flavor.value),
        };
        line("flavor", flavor, &self.flavor.source);
        line(
            "http.addr",
            self.listen.value.to_string(),
            &self.listen.source,
        );
        let workers = match self.workers.value {
            0 => "0 (one per CPU)".to_string(),
            n => n.to_string(),
        };
        line("workers", workers, &self.workers.source);
        let StorageConfig::Filesystem { root } = &self.storage.value;
        line(
            "storage.filesystem.rootdirectory",
            root.display().to_string(),
            &self.storage.source,
        );
        line(
            "storage.delete.enabled",
            self.delete_enabled.value.to_string(),
            &self.delete_enabled.source,
        );
        line(
            "storage.maintenance.readonly.enabled",
            self.readonly.value.to_string(),
            &self.readonly.source,
        );
        let p = &self.upload_purging;
        let key = "storage.maintenance.uploadpurging";
        line(
            &format!("{key}.enabled"),
            p.value.enabled.to_string(),
            p.source.part("enabled"),
        );
        line(
            &format!("{key}.age"),
            humantime::format_duration(p.value.age).to_string(),
            p.source.part("age"),
        );
        line(
            &format!("{key}.interval"),
            humantime::format_duration(p.value.interval).to_string(),
            p.source.part("interval"),
        );
        line(
            &format!("{key}.dryrun"),
            p.value.dry_run.to_string(),
            p.source.part("dryrun"),
        );
        let gc = &self.gc;
        let key = "storage.maintenance.gc";
        line(
            &format!("{key}.interval"),
            match gc.value.interval {
                Some(d) => humantime::format_duration(d).to_string(),
                None => "off (only garbage-collect --online)".into(),
            },
            gc.source.part("interval"),
        );
        line(
            &format!("{key}.grace"),
            humantime::format_duration(gc.value.grace).to_string(),
            gc.source.part("grace"),
        );
        line(
            &format!("{key}.deleteuntagged"),
            gc.value.delete_untagged.to_string(),
            gc.source.part("deleteuntagged"),
        );
        line(
            &format!("{key}.socket"),
            match &gc.value.socket {
                Some(p) => p.display().to_string(),
                None => "docker-registry-admin.sock in the storage root".into(),
            },
            gc.source.part("socket"),
        );
        if self.retention.value.is_empty() {
            line("retention", "(none)".into(), &self.retention.source);
        }
        for (i, rule) in self.retention.value.iter().enumerate() {
            let name = format!("retention[{i}]");
            line(&name, rule.to_string(), self.retention.source.part(&name));
        }
        line(
            "log.level",
            self.log_level.value.as_str().into(),
            &self.log_level.source,
        );
        line(
            "log.target",
            self.log_target.value.as_str().into(),
            &self.log_target.source,
        );
        line(
            "search_backend",
            self.search_backend
                .value
                .clone()
                .unwrap_or_else(|| "(none)".into()),
            &self.search_backend.source,
        );
        line("issue", self.issue.value.clone(), &self.issue.source);
        let shown_path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(none)".into())
        };
        let auth = &self.auth.source;
        match &self.auth.value {
            None => line("auth", "(none)".into(), auth),
            Some(AuthConfig::Htpasswd {
                realm,
                path,
                access_file,
            }) => {
                line("auth.htpasswd.realm", realm.clone(), auth.part("realm"));
                line(
                    "auth.htpasswd.path",
                    path.display().to_string(),
                    auth.part("path"),
                );
                line(
                    "auth.htpasswd.accessfile",
                    shown_path(access_file),
                    auth.part("accessfile"),
                );
            }
            Some(AuthConfig::Token {
                realm,
                service,
                issuer,
                rootcertbundle,
                endpoint,
            }) => {
                line("auth.token.realm", realm.clone(), auth.part("realm"));
                line("auth.token.service", service.clone(), auth.part("service"));
                line("auth.token.issuer", issuer.clone(), auth.part("issuer"));
                line(
                    "auth.token.rootcertbundle",
                    rootcertbundle.display().to_string(),
                    auth.part("rootcertbundle"),
                );
                match endpoint {
                    None => line(
                        "auth.token.signingkey",
                        "(none: tokens come from the realm's server)".into(),
                        auth.part("signingkey"),
                    ),
                    Some(e) => {
                        line(
                            "auth.token.signingkey",
                            e.signing_key.display().to_string(),
                            auth.part("signingkey"),
                        );
                        line(
                            "auth.token.htpasswd",
                            e.htpasswd.display().to_string(),
                            auth.part("htpasswd"),
                        );
                        line(
                            "auth.token.accessfile",
                            shown_path(&e.access_file),
                            auth.part("accessfile"),
                        );
                    }
                }
            }
        }
        let tls = &self.tls.source;
        match &self.tls.value {
            None => line("http.tls", "(none)".into(), tls),
            Some(t) => {
                line(
                    "http.tls.certificate",
                    t.certificate.display().to_string(),
                    tls.part("certificate"),
                );
                line("http.tls.key", t.key.display().to_string(), tls.part("key"));
                let cas: Vec<String> = t
                    .client_cas
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                line(
                    "http.tls.clientcas",
                    if cas.is_empty() {
                        "(none: no client certificates asked for)".into()
                    } else {
                        cas.join(", ")
                    },
                    tls.part("clientcas"),
                );
            }
        }
        line(
            "http.trustforwardedheaders",
            self.trust_forwarded_headers.value.to_string(),
            &self.trust_forwarded_headers.source,
        );
        out
    }
}

/// The parts of an htpasswd and of a token [`AuthConfig`]'s source, as `describe` names them.
const HTPASSWD_PARTS: &[&str] = &["method", "realm", "path", "accessfile"];
const TOKEN_PARTS: &[&str] = &[
    "method",
    "realm",
    "service",
    "issuer",
    "rootcertbundle",
    "signingkey",
    "htpasswd",
    "accessfile",
];

/// `source` with the parts named in `new` replaced.
fn with_parts(source: &Source, names: &[&str], new: &[(&str, Option<Source>)]) -> Source {
    Source::combine(
        names
            .iter()
            .map(|n| {
                let replaced = new
                    .iter()
                    .find(|(m, _)| m == n)
                    .and_then(|(_, s)| s.clone());
                (*n, replaced.unwrap_or_else(|| source.part(n).clone()))
            })
            .collect(),
    )
}

/// `--htpasswd`, `--auth-realm`, `--access-file` and the `--token-*` flags: each overrides
/// only its own part of what the files said. (TLS and `--trust-forwarded-headers` are
/// plain settings of the command-line level, see [`cli_layer`].)
fn apply_cli_security(c: &mut Config, cli: &CliOverrides) -> Result<(), ConfigError> {
    let flag = |given: bool, f: &str| given.then(|| Source::Cli(f.to_string()));
    let realm_flag = flag(cli.auth_realm.is_some(), "--auth-realm");
    let access_flag = flag(cli.access_file.is_some(), "--access-file");
    let htpasswd_flag = flag(cli.htpasswd.is_some(), "--htpasswd");
    let token_flags = cli.token_realm.is_some();
    match &mut c.auth.value {
        // --access-file alone changes the access file of the files' built-in token endpoint.
        Some(AuthConfig::Token {
            endpoint: Some(e), ..
        }) if cli.htpasswd.is_none() && cli.auth_realm.is_none() && !token_flags => {
            if let Some(a) = &cli.access_file {
                e.access_file = Some(a.clone());
                c.auth.source = with_parts(
                    &c.auth.source,
                    TOKEN_PARTS,
                    &[("accessfile", access_flag.clone())],
                );
            }
        }
        // The files' htpasswd settings, with the flags given over them.
        Some(AuthConfig::Htpasswd {
            realm,
            path,
            access_file,
        }) => {
            if let Some(r) = &cli.auth_realm {
                *realm = r.clone();
            }
            if let Some(p) = &cli.htpasswd {
                *path = p.clone();
            }
            if let Some(a) = &cli.access_file {
                *access_file = Some(a.clone());
            }
            c.auth.source = with_parts(
                &c.auth.source,
                HTPASSWD_PARTS,
                &[
                    ("method", htpasswd_flag.clone()),
                    ("realm", realm_flag.clone()),
                    ("path", htpasswd_flag.clone()),
                    ("accessfile", access_flag.clone()),
                ],
            );
        }
        // Token authentication or none in the files: --htpasswd asks for htpasswd.
        _ => match &cli.htpasswd {
            Some(path) => {
                c.auth = Sourced::new(
                    Some(AuthConfig::Htpasswd {
                        realm: cli
                            .auth_realm
                            .clone()
                            .unwrap_or_else(|| "docker-registry".to_string()),
                        path: path.clone(),
                        access_file: cli.access_file.clone(),
                    }),
                    Source::combine(vec![
                        ("method", Source::Cli("--htpasswd".into())),
                        ("realm", realm_flag.unwrap_or(Source::Default)),
                        ("path", Source::Cli("--htpasswd".into())),
                        ("accessfile", access_flag.unwrap_or(Source::Default)),
                    ]),
                );
            }
            None if cli.auth_realm.is_some() || cli.access_file.is_some() => {
                return Err(ConfigError {
                    file: None,
                    line: None,
                    key: "--auth-realm/--access-file".into(),
                    message: "needs --htpasswd FILE (or auth: htpasswd in the configuration)"
                        .into(),
                });
            }
            None => {}
        },
    }
    if let (Some(realm), Some(service), Some(issuer), Some(bundle)) = (
        &cli.token_realm,
        &cli.token_service,
        &cli.token_issuer,
        &cli.token_rootcertbundle,
    ) {
        let endpoint =
            match (&cli.token_signing_key, &cli.htpasswd) {
                (None, None) => None,
                (Some(key), Some(htpasswd)) => Some(TokenEndpoint {
                    htpasswd: htpasswd.clone(),
                    access_file: cli.access_file.clone(),
                    signing_key: key.clone(),
                }),
                _ => return Err(ConfigError {
                    file: None,
                    line: None,
                    key: "--token-signing-key".into(),
                    message:
                        "the built-in token endpoint needs both --token-signing-key and --htpasswd"
                            .into(),
                }),
            };
        c.auth = Sourced::new(
            Some(AuthConfig::Token {
                realm: realm.clone(),
                service: service.clone(),
                issuer: issuer.clone(),
                rootcertbundle: bundle.clone(),
                endpoint,
            }),
            Source::Cli("--token-realm".into()),
        );
    }
    Ok(())
}

/// The command line as the highest level.
fn cli_layer(cli: &CliOverrides, errors: &mut Vec<ConfigError>) -> Layer {
    let flag = |f: &str| Source::Cli(f.to_string());
    let mut l = Layer {
        address: cli.address.map(|a| Sourced::new(a, flag("--address"))),
        port: cli.port.map(|p| Sourced::new(p, flag("--port"))),
        log_level: cli.log_level.map(|v| Sourced::new(v, flag("--log-level"))),
        delete_enabled: cli
            .delete_enabled
            .map(|v| Sourced::new(v, flag("--delete-enabled"))),
        ..Layer::default()
    };
    if let (Some(certificate), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
        l.tls_certificate = Some(Sourced::new(certificate.clone(), flag("--tls-cert")));
        l.tls_key = Some(Sourced::new(key.clone(), flag("--tls-key")));
    }
    if let Some(ca) = &cli.tls_client_ca {
        l.tls_client_cas = Some(Sourced::new(vec![ca.clone()], flag("--tls-client-ca")));
    }
    if let Some(t) = cli.trust_forwarded_headers {
        l.trust_forwarded_headers = Some(Sourced::new(t, flag("--trust-forwarded-headers")));
    }
    if let Some(w) = cli.workers {
        layer::set(
            &mut l.workers,
            values::workers_text(&w.to_string()).map(Some),
            flag("--workers"),
            errors,
        );
    }
    if let Some(p) = &cli.storage_path {
        l.storage = Some(Sourced::new(
            StorageChoice::Filesystem,
            flag("--storage-path"),
        ));
        l.storage_root = Some(Sourced::new(p.clone(), flag("--storage-path")));
    }
    l
}

/// Where data goes when nothing says: systemd's `STATE_DIRECTORY`, else a per-user directory
/// (`$XDG_DATA_HOME/docker-registry` or `~/.local/share/docker-registry`), else a temporary one.
fn default_storage(env: &BTreeMap<String, String>) -> Sourced<StorageConfig> {
    if let Some(dir) = env.get("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        let first = dir.split(':').next().unwrap_or(dir);
        return Sourced::new(
            StorageConfig::Filesystem {
                root: PathBuf::from(first),
            },
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
            StorageConfig::Filesystem { root: d },
            Source::Derived("no storage configured: a per-user directory".into()),
        ),
        None => Sourced::new(
            StorageConfig::Filesystem {
                root: std::env::temp_dir().join("docker-registry"),
            },
            Source::Derived("no HOME: a temporary directory".into()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Files for one test, and the options that read them (never the host's /etc files).
    struct Setup {
        dir: tempfile::TempDir,
        opts: LoadOptions,
    }

    impl Setup {
        fn new(sysconfig: &str, yaml: &str, env: &[(&str, &str)]) -> Setup {
            let dir = tempfile::tempdir().expect("temp dir");
            let write = |name: &str, text: &str| {
                let path = dir.path().join(name);
                let mut f = std::fs::File::create(&path).expect("create");
                f.write_all(text.as_bytes()).expect("write");
                path
            };
            let opts = LoadOptions {
                sysconfig: Some(write("sysconfig", sysconfig)),
                config: Some(write("registry.yml", yaml)),
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                cli: CliOverrides::default(),
            };
            Setup { dir, opts }
        }

        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).display().to_string()
        }

        fn load(&self) -> Config {
            Config::load(&self.opts).unwrap_or_else(|e| panic!("errors:\n{e}"))
        }

        fn errors(&self) -> Vec<String> {
            match Config::load(&self.opts) {
                Ok(_) => panic!("expected errors"),
                Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
            }
        }
    }

    const LEGACY: &str = "common: &common\n  loglevel: _env:LOGLEVEL:info\nlocal:\n  <<: *common\n  storage: local\n  \
                          storage_path: _env:STORAGE_PATH:/srv/registry\ns3:\n  <<: *common\n  storage: s3\n";

    #[test]
    fn sysconfig_port_replaces_only_the_port_of_http_addr() {
        let s = Setup::new(
            "REGISTRY_PORT=7000\n",
            "version: 0.1\nhttp:\n  addr: 127.0.0.1:6000\n",
            &[],
        );
        let c = s.load();
        assert_eq!(c.listen.value, "127.0.0.1:7000".parse().expect("addr"));
        assert_eq!(
            c.listen.source.to_string(),
            format!(
                "address: {}:3 (http.addr); port: {}:1 (REGISTRY_PORT)",
                s.path("registry.yml"),
                s.path("sysconfig")
            )
        );
    }

    #[test]
    fn each_level_wins_over_the_ones_below() {
        let yaml = "version: 0.1\nlog:\n  level: error\n";
        let s = Setup::new("REGISTRY_LOG_LEVEL=warn\n", yaml, &[]);
        assert_eq!(s.load().log_level.value, LogLevel::Warn);
        let mut s = Setup::new(
            "REGISTRY_LOG_LEVEL=warn\n",
            yaml,
            &[("REGISTRY_LOG_LEVEL", "debug")],
        );
        let c = s.load();
        assert_eq!(
            (c.log_level.value, c.log_level.source),
            (LogLevel::Debug, Source::Env("REGISTRY_LOG_LEVEL".into()))
        );
        s.opts.cli.log_level = Some(LogLevel::Trace);
        let c = s.load();
        assert_eq!(
            (c.log_level.value, c.log_level.source),
            (LogLevel::Trace, Source::Cli("--log-level".into()))
        );
        let s = Setup::new("", yaml, &[]);
        assert_eq!(s.load().log_level.value, LogLevel::Error);
    }

    #[test]
    fn a_variable_systemd_passed_from_the_file_keeps_the_files_precedence() {
        // EnvironmentFile= exports REGISTRY_PORT=5000; a drop-in sets REGISTRY_HTTP_ADDR.
        let s = Setup::new(
            "REGISTRY_PORT=5000\n",
            "",
            &[
                ("REGISTRY_PORT", "5000"),
                ("REGISTRY_HTTP_ADDR", "127.0.0.1:6000"),
            ],
        );
        let c = s.load();
        assert_eq!(c.listen.value, "127.0.0.1:6000".parse().expect("addr"));
        // A different value in the environment is the environment's.
        let s = Setup::new("REGISTRY_PORT=5000\n", "", &[("REGISTRY_PORT", "5001")]);
        let c = s.load();
        assert_eq!(c.listen.value.port(), 5001);
        assert_eq!(
            c.listen.source.part("port"),
            &Source::Env("REGISTRY_PORT".into())
        );
    }

    #[test]
    fn sysconfig_variables_feed_env_references_and_the_process_wins() {
        let s = Setup::new(
            "STORAGE_PATH=/srv/from-sysconfig\nLOGLEVEL=debug\n",
            LEGACY,
            &[("LOGLEVEL", "warning")],
        );
        let c = s.load();
        assert_eq!(
            c.storage.value,
            StorageConfig::Filesystem {
                root: "/srv/from-sysconfig".into()
            }
        );
        assert!(
            c.storage
                .source
                .to_string()
                .ends_with(&format!("from {}:1)", s.path("sysconfig"))),
            "{}",
            c.storage.source
        );
        assert_eq!(c.log_level.value, LogLevel::Warn);
        // Variables read by _env: are not "unknown".
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn docker_registry_config_in_the_sysconfig_file_chooses_the_yaml_file() {
        let mut s = Setup::new("", LEGACY, &[]);
        let yml = s.path("registry.yml");
        std::fs::write(
            s.dir.path().join("sysconfig"),
            format!("DOCKER_REGISTRY_CONFIG={yml}\n"),
        )
        .expect("write");
        s.opts.config = None;
        let c = s.load();
        assert_eq!(c.config_file.value, Some(PathBuf::from(&yml)));
        assert_eq!(c.file_format, FileFormat::Legacy);
        std::fs::write(
            s.dir.path().join("sysconfig"),
            "DOCKER_REGISTRY_CONFIG=/nonexistent/registry.yml\n",
        )
        .expect("write");
        let errors = s.errors();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with(
                "/nonexistent/registry.yml: cannot read this file (given by DOCKER_REGISTRY_CONFIG"
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn every_error_of_every_level_is_reported() {
        let s = Setup::new(
            "REGISTRY_PORT=http\nGUNICORN_WORKERS=many\n",
            "common:\n  loglevel: loud\nlocal:\n  storage: local\n",
            &[("REGISTRY_STORAGE_DELETE_ENABLED", "sometimes")],
        );
        let errors = s.errors();
        let sys = s.path("sysconfig");
        let yml = s.path("registry.yml");
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors[0].starts_with(&format!("{yml}:2: common.loglevel: unknown log level")),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with(&format!("{sys}:1: REGISTRY_PORT: not a port number")),
            "{errors:?}"
        );
        assert!(
            errors[2].starts_with(&format!("{sys}:2: GUNICORN_WORKERS: not a number")),
            "{errors:?}"
        );
        assert!(
            errors[3].starts_with("REGISTRY_STORAGE_DELETE_ENABLED: expected true or false"),
            "{errors:?}"
        );
    }

    #[test]
    fn unknown_variables_are_warned_about_by_name() {
        let s = Setup::new(
            "GUNICORN_OPTS=--preload\nSETTINGS_FLAVOR=local\n",
            LEGACY,
            &[("REGISTRY_HTTP_SECRET", "x"), ("HOME", "/root")],
        );
        let c = s.load();
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(
            c.warnings[0].ends_with("does not use: GUNICORN_OPTS (line 1)"),
            "{:?}",
            c.warnings
        );
        assert!(
            c.warnings[1].ends_with("does not use: REGISTRY_HTTP_SECRET"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn distribution_overrides_work_on_a_flavored_file() {
        let s = Setup::new(
            "SETTINGS_FLAVOR=s3\n",
            LEGACY,
            &[
                ("REGISTRY_STORAGE", "filesystem"),
                ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/srv/fs"),
                ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
            ],
        );
        let c = s.load();
        assert_eq!(
            c.storage.value,
            StorageConfig::Filesystem {
                root: "/srv/fs".into()
            }
        );
        assert!(c.delete_enabled.value);
        // Without REGISTRY_STORAGE the flavor's s3 stands, and is refused.
        let s = Setup::new(
            "SETTINGS_FLAVOR=s3\n",
            LEGACY,
            &[("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/srv/fs")],
        );
        let errors = s.errors();
        assert!(
            errors[0].contains(
                "s3.storage: flavor s3 uses storage s3: S3 storage arrives in a later release"
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn a_flavor_set_for_a_registry_2_file_is_reported_as_unused() {
        let s = Setup::new("SETTINGS_FLAVOR=dev\n", "version: 0.1\n", &[]);
        let c = s.load();
        assert_eq!(c.file_format, FileFormat::Distribution);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].starts_with("SETTINGS_FLAVOR=dev ("),
            "{:?}",
            c.warnings
        );
        assert!(
            c.warnings[0].ends_with("is a registry:2 file, which has no flavors"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn htpasswd_needs_a_password_file_and_has_a_default_realm() {
        let s = Setup::new("", "", &[("REGISTRY_AUTH", "htpasswd")]);
        let errors = s.errors();
        assert_eq!(errors, ["REGISTRY_AUTH: htpasswd authentication needs a password file: set auth.htpasswd.path (or REGISTRY_AUTH_HTPASSWD_PATH) (set in the environment)"]);
        let s = Setup::new(
            "REGISTRY_AUTH_HTPASSWD_PATH=/etc/registry/htpasswd\n",
            "",
            &[],
        );
        let c = s.load();
        assert_eq!(
            c.auth.value,
            Some(AuthConfig::Htpasswd {
                realm: DEFAULT_REALM.into(),
                path: "/etc/registry/htpasswd".into(),
                access_file: None,
            })
        );
        let s = Setup::new("", "", &[("REGISTRY_AUTH", "ldap")]);
        assert!(s.errors()[0].contains("authentication \"ldap\" is not supported"));
    }

    #[test]
    fn token_auth_from_a_file_needs_its_four_settings_and_the_endpoint_its_users() {
        let s = Setup::new("", "", &[("REGISTRY_AUTH", "token")]);
        assert_eq!(
            s.errors(),
            [
                "REGISTRY_AUTH: token authentication needs auth.token.realm, auth.token.service, \
              auth.token.issuer, auth.token.rootcertbundle (or REGISTRY_AUTH_TOKEN_REALM, \
              REGISTRY_AUTH_TOKEN_SERVICE, REGISTRY_AUTH_TOKEN_ISSUER, \
              REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE) (set in the environment)"
            ]
        );
        let yaml = "version: 0.1\nauth:\n  token:\n    realm: https://r.example/token\n    \
                    service: r.example\n    issuer: r.example\n    rootcertbundle: /etc/r/token.crt\n    \
                    signingkey: /etc/r/token.key\n";
        let s = Setup::new("", yaml, &[]);
        let errors = s.errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(&format!(
                "{}:8: auth.token.signingkey: the built-in token endpoint needs its users",
                s.path("registry.yml")
            )),
            "{errors:?}"
        );
        // The sysconfig file supplies the users; the environment overrides the access file.
        let s = Setup::new(
            "REGISTRY_AUTH_TOKEN_HTPASSWD=/etc/r/users\n",
            yaml,
            &[("REGISTRY_AUTH_TOKEN_ACCESSFILE", "/etc/r/access.yml")],
        );
        let c = s.load();
        assert_eq!(
            c.auth.value,
            Some(AuthConfig::Token {
                realm: "https://r.example/token".into(),
                service: "r.example".into(),
                issuer: "r.example".into(),
                rootcertbundle: "/etc/r/token.crt".into(),
                endpoint: Some(TokenEndpoint {
                    htpasswd: "/etc/r/users".into(),
                    access_file: Some("/etc/r/access.yml".into()),
                    signing_key: "/etc/r/token.key".into(),
                }),
            })
        );
        assert_eq!(
            c.auth.source.part("rootcertbundle").to_string(),
            format!("{}:7 (auth.token.rootcertbundle)", s.path("registry.yml"))
        );
        assert_eq!(
            c.auth.source.part("accessfile"),
            &Source::Env("REGISTRY_AUTH_TOKEN_ACCESSFILE".into())
        );
        // --access-file overrides the endpoint's access file only.
        let mut s = s;
        s.opts.cli.access_file = Some("/cli/access.yml".into());
        let c = s.load();
        let Some(AuthConfig::Token {
            endpoint: Some(e), ..
        }) = &c.auth.value
        else {
            panic!("{:?}", c.auth)
        };
        assert_eq!(e.access_file, Some(PathBuf::from("/cli/access.yml")));
        assert_eq!(
            c.auth.source.part("accessfile"),
            &Source::Cli("--access-file".into())
        );
        assert_eq!(
            c.auth.source.part("htpasswd").to_string(),
            format!("{}:1 (REGISTRY_AUTH_TOKEN_HTPASSWD)", s.path("sysconfig"))
        );
    }

    #[test]
    fn token_and_htpasswd_keys_without_a_method_are_ambiguous() {
        let s = Setup::new(
            "REGISTRY_AUTH_HTPASSWD_PATH=/etc/r/users\n",
            "",
            &[("REGISTRY_AUTH_TOKEN_REALM", "https://r.example/token")],
        );
        let errors = s.errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("REGISTRY_AUTH_TOKEN_REALM: both token and htpasswd settings"),
            "{errors:?}"
        );
        // Naming the method settles it.
        let s = Setup::new(
            "REGISTRY_AUTH_HTPASSWD_PATH=/etc/r/users\nREGISTRY_AUTH=htpasswd\n",
            "",
            &[("REGISTRY_AUTH_HTPASSWD_ACCESSFILE", "/etc/r/access.yml")],
        );
        assert_eq!(
            s.load().auth.value,
            Some(AuthConfig::Htpasswd {
                realm: DEFAULT_REALM.into(),
                path: "/etc/r/users".into(),
                access_file: Some("/etc/r/access.yml".into()),
            })
        );
    }

    #[test]
    fn client_cas_need_a_certificate_and_flags_override_them_key_by_key() {
        let yaml = "version: 0.1\nhttp:\n  trustforwardedheaders: true\n  tls:\n    clientcas:\n      - /ca1.pem\n      - /ca2.pem\n";
        let s = Setup::new("", yaml, &[]);
        let errors = s.errors();
        assert!(
            errors[0].ends_with(":5: http.tls.clientcas: client CAs (mutual TLS) without a TLS certificate and key: set http.tls.certificate and http.tls.key (or REGISTRY_HTTP_TLS_CERTIFICATE and _KEY) too"),
            "{errors:?}"
        );
        // The flags give the certificate; the file's client CAs stay (no silent downgrade).
        let mut s = Setup::new("", yaml, &[]);
        s.opts.cli.tls_cert = Some("/c.pem".into());
        s.opts.cli.tls_key = Some("/k.pem".into());
        let c = s.load();
        assert_eq!(
            c.tls.value,
            Some(TlsConfig {
                certificate: "/c.pem".into(),
                key: "/k.pem".into(),
                client_cas: vec!["/ca1.pem".into(), "/ca2.pem".into()],
            })
        );
        assert!(c.trust_forwarded_headers.value);
        s.opts.cli.tls_client_ca = Some("/cli-ca.pem".into());
        s.opts.cli.trust_forwarded_headers = Some(false);
        let c = s.load();
        let tls = c.tls.value.expect("tls");
        assert_eq!(tls.client_cas, vec![PathBuf::from("/cli-ca.pem")]);
        assert_eq!(
            c.tls.source.part("clientcas"),
            &Source::Cli("--tls-client-ca".into())
        );
        assert_eq!(
            (
                c.trust_forwarded_headers.value,
                c.trust_forwarded_headers.source
            ),
            (false, Source::Cli("--trust-forwarded-headers".into()))
        );
    }

    #[test]
    fn tls_needs_both_certificate_and_key() {
        let s = Setup::new(
            "",
            "version: 0.1\nhttp:\n  tls:\n    certificate: /c.pem\n",
            &[],
        );
        let errors = s.errors();
        assert!(errors[0].ends_with(":4: http.tls.certificate: a TLS certificate without its key: set http.tls.key (or REGISTRY_HTTP_TLS_KEY) too"), "{errors:?}");
        let s = Setup::new(
            "",
            "version: 0.1\nhttp:\n  tls:\n    certificate: /c.pem\n",
            &[("REGISTRY_HTTP_TLS_KEY", "/k.pem")],
        );
        assert_eq!(
            s.load().tls.value,
            Some(TlsConfig {
                certificate: "/c.pem".into(),
                key: "/k.pem".into(),
                client_cas: Vec::new(),
            })
        );
    }

    #[test]
    fn ipv6_addresses_with_or_without_brackets() {
        for (written, expected) in [
            ("::1", "[::1]:5000"),
            ("[::]", "[::]:5000"),
            ("'[::1]'", "[::1]:5000"),
        ] {
            let s = Setup::new(&format!("REGISTRY_ADDRESS={written}\n"), "", &[]);
            assert_eq!(
                s.load().listen.value,
                expected.parse::<SocketAddr>().expect("addr"),
                "{written}"
            );
        }
        let s = Setup::new("REGISTRY_ADDRESS=example\n", "", &[]);
        assert!(s.errors()[0].contains(":1: REGISTRY_ADDRESS: not an IP address"));
    }

    #[test]
    fn a_flavor_missing_from_the_file_lists_those_available() {
        let s = Setup::new("SETTINGS_FLAVOR=staging\n", LEGACY, &[]);
        let errors = s.errors();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].contains("SETTINGS_FLAVOR: flavor \"staging\""),
            "{errors:?}"
        );
        assert!(
            errors[0].contains(&format!("{}:1 (SETTINGS_FLAVOR)", s.path("sysconfig"))),
            "{errors:?}"
        );
        assert!(
            errors[0].ends_with("flavors available: common, local, s3"),
            "{errors:?}"
        );
    }

    #[test]
    fn an_unsupported_version_is_an_error_and_an_empty_file_a_warning() {
        let s = Setup::new("", "version: 0.2\n", &[]);
        assert!(s.errors()[0].ends_with(
            ":1: version: unsupported registry:2 configuration version \"0.2\" (expected 0.1)"
        ));
        let s = Setup::new("", "", &[]);
        let c = s.load();
        assert!(
            c.warnings[0].ends_with("the file is empty; using the built-in defaults"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn storage_defaults_to_state_directory_when_nothing_configures_it() {
        let s = Setup::new(
            "",
            "",
            &[("STATE_DIRECTORY", "/var/lib/docker-registry-test:/other")],
        );
        let c = s.load();
        assert_eq!(
            c.storage.value,
            StorageConfig::Filesystem {
                root: "/var/lib/docker-registry-test".into()
            }
        );
        assert_eq!(
            c.storage.source,
            Source::Derived("systemd STATE_DIRECTORY".into())
        );
        let mut s = Setup::new("", LEGACY, &[("STATE_DIRECTORY", "/x")]);
        s.opts.cli.storage_path = Some("/cli".into());
        let c = s.load();
        assert_eq!(
            (c.storage.value, c.storage.source),
            (
                StorageConfig::Filesystem {
                    root: "/cli".into()
                },
                Source::Cli("--storage-path".into())
            )
        );
    }

    const GC_YAML: &str = "version: 0.1\nstorage:\n  maintenance:\n    gc:\n      interval: 24h\n      grace: 2h\n      \
                           deleteuntagged: true\nretention:\n  - repositories: library/*\n    keeptags: 10\n\
                           \x20 - repositories: '*'\n    keepyoungerthan: 720h\n    protecttags: v*\n";

    #[test]
    fn gc_settings_take_the_environment_over_sysconfig_over_the_file() {
        let s = Setup::new("", GC_YAML, &[]);
        let c = s.load();
        let yml = s.path("registry.yml");
        assert_eq!(
            c.gc.value,
            GcConfig {
                interval: Some(Duration::from_secs(24 * 3600)),
                grace: Duration::from_secs(7200),
                delete_untagged: true,
                socket: None,
            }
        );
        assert_eq!(
            c.gc.source.part("interval").to_string(),
            format!("{yml}:5 (storage.maintenance.gc.interval)")
        );
        assert_eq!(c.gc.source.part("socket"), &Source::Default);
        assert_eq!(c.retention.value.len(), 2);
        assert_eq!(
            c.retention.source.part("retention[1]").to_string(),
            format!("{yml}:11 (retention[1])")
        );
        let s = Setup::new(
            "REGISTRY_STORAGE_MAINTENANCE_GC_GRACE=10m\nREGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL=6h\n",
            GC_YAML,
            &[
                ("REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL", "0"),
                ("REGISTRY_STORAGE_MAINTENANCE_GC_SOCKET", "/run/admin.sock"),
            ],
        );
        let c = s.load();
        assert_eq!(c.gc.value.interval, None);
        assert_eq!(
            c.gc.source.part("interval"),
            &Source::Env("REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL".into())
        );
        assert_eq!(c.gc.value.grace, Duration::from_secs(600));
        assert_eq!(
            c.gc.source.part("grace").to_string(),
            format!(
                "{}:1 (REGISTRY_STORAGE_MAINTENANCE_GC_GRACE)",
                s.path("sysconfig")
            )
        );
        assert!(c.gc.value.delete_untagged);
        assert_eq!(c.gc.value.socket, Some(PathBuf::from("/run/admin.sock")));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn gc_and_retention_errors_of_every_level_are_reported_together() {
        let s = Setup::new(
            "REGISTRY_STORAGE_MAINTENANCE_GC_GRACE=soon\n",
            "version: 0.1\nstorage:\n  maintenance:\n    gc:\n      interval: often\nretention:\n  - keeptags: 1\n",
            &[("REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED", "maybe")],
        );
        let errors = s.errors();
        let yml = s.path("registry.yml");
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors[0].starts_with(&format!(
                "{yml}:5: storage.maintenance.gc.interval: not a duration: \"often\""
            )),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with(&format!(
                "{yml}:7: retention[0]: a retention rule needs repositories"
            )),
            "{errors:?}"
        );
        assert!(
            errors[2].starts_with(&format!(
                "{}:1: REGISTRY_STORAGE_MAINTENANCE_GC_GRACE: not a duration",
                s.path("sysconfig")
            )),
            "{errors:?}"
        );
        assert!(
            errors[3].starts_with("REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED: expected true"),
            "{errors:?}"
        );
    }

    #[test]
    fn describe_shows_gc_and_retention_with_their_sources() {
        let s = Setup::new(
            "",
            GC_YAML,
            &[("REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED", "false")],
        );
        let text = s.load().describe();
        let yml = s.path("registry.yml");
        let line = |key: &str| {
            text.lines()
                .find(|l| l.split_whitespace().next() == Some(key))
                .unwrap_or_else(|| panic!("{key} in\n{text}"))
                .to_string()
        };
        let l = line("storage.maintenance.gc.interval");
        assert!(
            l.contains(" 1day ")
                && l.ends_with(&format!("# {yml}:5 (storage.maintenance.gc.interval)")),
            "{l}"
        );
        assert!(
            line("storage.maintenance.gc.grace").contains(" 2h "),
            "{text}"
        );
        assert!(
            line("storage.maintenance.gc.deleteuntagged").ends_with(
                " false                            # environment (REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED)"
            ),
            "{text}"
        );
        assert!(
            line("storage.maintenance.gc.socket").ends_with("in the storage root # default"),
            "{text}"
        );
        let l = line("retention[0]");
        assert!(
            l.contains(" repositories=library/* keeptags=10 ")
                && l.ends_with(&format!("# {yml}:9 (retention[0])")),
            "{l}"
        );
        let l = line("retention[1]");
        assert!(
            l.contains(" repositories=* keepyoungerthan=30days protecttags=v* ")
                && l.ends_with(&format!("# {yml}:11 (retention[1])")),
            "{l}"
        );
        assert!(!text.lines().any(|l| l.starts_with("retention ")), "{text}");
        // Without rules, one line says so; without an interval, collection is on demand.
        let text = Setup::new("", "version: 0.1\n", &[]).load().describe();
        assert!(
            text.lines().any(|l| l.starts_with("retention ")
                && l.contains(" (none) ")
                && l.ends_with("# default")),
            "{text}"
        );
        assert!(
            text.contains("off (only garbage-collect --online)"),
            "{text}"
        );
    }

    #[test]
    fn describe_shows_every_setting_with_its_source() {
        let s = Setup::new(
            "GUNICORN_WORKERS=3\n",
            LEGACY,
            &[("REGISTRY_STORAGE_DELETE_ENABLED", "true")],
        );
        let text = s.load().describe();
        let line = |key: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{key} ")))
                .unwrap_or_else(|| panic!("{key} in\n{text}"))
                .to_string()
        };
        assert!(
            line("workers").contains(" 3 ")
                && line("workers")
                    .ends_with(&format!("# {}:1 (GUNICORN_WORKERS)", s.path("sysconfig")))
        );
        assert!(line("storage.delete.enabled")
            .ends_with("# environment (REGISTRY_STORAGE_DELETE_ENABLED)"));
        assert!(line("storage.filesystem.rootdirectory").contains("/srv/registry"));
        assert!(
            line("log.level")
                .contains(":2 (common.loglevel: _env:LOGLEVEL unset, the default written there)"),
            "{text}"
        );
        assert!(
            line("http.addr").ends_with("0.0.0.0:5000                     # default"),
            "{text}"
        );
    }
}
