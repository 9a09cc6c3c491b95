//! One configuration model, built from everything our users already write.
//!
//! Precedence, low to high: built-in defaults; the YAML file (`DOCKER_REGISTRY_CONFIG`, the
//! legacy flavored format or a `registry:2` file); `/etc/sysconfig/docker-registry`; the
//! process environment (including `registry:2`'s `REGISTRY_<SECTION>_<KEY>` overrides);
//! command-line flags. Every value remembers where it came from ([`Source`]) so that
//! `docker-registry config` can show it and every error can name the file, line and key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// A built-in default chosen at run time, with why (e.g. "not root: a user directory").
    Derived(String),
    /// A file (YAML or sysconfig), 1-based line, and the key as written there.
    File { path: PathBuf, line: usize, key: String },
    /// A process environment variable.
    Env(String),
    /// A command-line flag.
    Cli(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Derived(why) => write!(f, "default ({why})"),
            Source::File { path, line, key } => write!(f, "{}:{line} ({key})", path.display()),
            Source::Env(name) => write!(f, "environment ({name})"),
            Source::Cli(flag) => write!(f, "command line ({flag})"),
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
        Sourced { value, source: Source::Default }
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    Filesystem { root: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    Htpasswd { realm: String, path: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub certificate: PathBuf,
    pub key: PathBuf,
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

/// Garbage collection inside the daemon (`gc` section; keys wired by the configuration
/// parser). See `registry::gc` for why the grace period makes online collection safe.
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
        GcConfig { interval: None, grace: Duration::from_secs(3600), delete_untagged: false, socket: None }
    }
}

/// One retention rule (`retention` list): in repositories matching `repositories` (a glob,
/// `*` matches any characters including `/`), keep the newest `keep_tags` tags and/or the
/// tags pushed less than `keep_younger_than` ago; tags matching `protect_tags` (a glob) are
/// never touched. Other tags are removed by `docker-registry retention --apply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRule {
    pub repositories: String,
    pub keep_tags: Option<usize>,
    pub keep_younger_than: Option<Duration>,
    pub protect_tags: Option<String>,
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

pub const DEFAULT_SYSCONFIG: &str = "/etc/sysconfig/docker-registry";
pub const DEFAULT_CONFIG: &str = "/etc/docker-registry.yml";
pub const PACKAGED_STORAGE_ROOT: &str = "/var/lib/docker-registry";

impl Config {
    /// Loads and validates the configuration.
    pub fn load(opts: &LoadOptions) -> Result<Config, ConfigErrors> {
        let mut c = Config::defaults(&opts.env);
        let cli = &opts.cli;
        if let Some(a) = cli.address {
            c.listen = Sourced::new(SocketAddr::new(a, c.listen.value.port()), Source::Cli("--address".into()));
        }
        if let Some(p) = cli.port {
            c.listen = Sourced::new(SocketAddr::new(c.listen.value.ip(), p), Source::Cli("--port".into()));
        }
        if let Some(w) = cli.workers {
            c.workers = Sourced::new(w, Source::Cli("--workers".into()));
        }
        if let Some(p) = &cli.storage_path {
            c.storage = Sourced::new(StorageConfig::Filesystem { root: p.clone() }, Source::Cli("--storage-path".into()));
        }
        if let Some(l) = cli.log_level {
            c.log_level = Sourced::new(l, Source::Cli("--log-level".into()));
        }
        if let Some(d) = cli.delete_enabled {
            c.delete_enabled = Sourced::new(d, Source::Cli("--delete-enabled".into()));
        }
        Ok(c)
    }

    /// Built-in defaults.
    pub fn defaults(env: &BTreeMap<String, String>) -> Config {
        Config {
            listen: Sourced::default_value(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5000)),
            workers: Sourced::default_value(0),
            flavor: Sourced::default_value("local".into()),
            config_file: Sourced::default_value(None),
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
            warnings: Vec::new(),
        }
    }

    /// The effective configuration, one setting per line with where it came from.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: String, s: &Source| {
            out.push_str(&format!("{k:<24} {v:<40} # {s}\n"));
        };
        line("listen", self.listen.value.to_string(), &self.listen.source);
        line("workers", self.workers.value.to_string(), &self.workers.source);
        line("flavor", self.flavor.value.clone(), &self.flavor.source);
        let StorageConfig::Filesystem { root } = &self.storage.value;
        line("storage.filesystem.root", root.display().to_string(), &self.storage.source);
        line("storage.delete.enabled", self.delete_enabled.value.to_string(), &self.delete_enabled.source);
        line("log.level", self.log_level.value.as_str().into(), &self.log_level.source);
        out
    }
}

/// Where data goes when nothing says: systemd's `STATE_DIRECTORY`, the packaged
/// `/var/lib/docker-registry` when it is writable, else a per-user directory.
fn default_storage(env: &BTreeMap<String, String>) -> Sourced<StorageConfig> {
    if let Some(dir) = env.get("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        let first = dir.split(':').next().unwrap_or(dir);
        return Sourced::new(
            StorageConfig::Filesystem { root: PathBuf::from(first) },
            Source::Derived("systemd STATE_DIRECTORY".into()),
        );
    }
    let packaged = PathBuf::from(PACKAGED_STORAGE_ROOT);
    if nix::unistd::access(&packaged, nix::unistd::AccessFlags::W_OK).is_ok() {
        return Sourced::new(
            StorageConfig::Filesystem { root: packaged },
            Source::Derived("packaged data directory".into()),
        );
    }
    let user_dir = env
        .get("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| env.get("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".local/share")))
        .map(|d| d.join("docker-registry"));
    match user_dir {
        Some(d) => Sourced::new(
            StorageConfig::Filesystem { root: d },
            Source::Derived(format!("{PACKAGED_STORAGE_ROOT} is not writable: a per-user directory")),
        ),
        None => Sourced::new(
            StorageConfig::Filesystem { root: std::env::temp_dir().join("docker-registry") },
            Source::Derived("no HOME: a temporary directory".into()),
        ),
    }
}
