//! The command line: `docker-registry [serve]`, `config`, and the maintenance commands.
//! Kept in the library so that man pages and shell completions are generated from it.

use crate::config::{CliOverrides, LoadOptions, LogLevel};
use clap::{Args, Parser, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "docker-registry",
    version,
    about = "A private container image registry (OCI Distribution / Docker Registry HTTP API v2)",
    long_about = "A private container image registry serving the OCI Distribution API.\n\n\
        Configuration is read from /etc/sysconfig/docker-registry (REGISTRY_ADDRESS, REGISTRY_PORT, \
        GUNICORN_WORKERS, SETTINGS_FLAVOR, DOCKER_REGISTRY_CONFIG) and /etc/docker-registry.yml \
        (legacy flavored format or a registry:2 file), then the environment (including registry:2's \
        REGISTRY_<SECTION>_<KEY> variables), then these flags."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// The sysconfig file (KEY=VALUE) [default: /etc/sysconfig/docker-registry]
    #[arg(long, global = true, value_name = "FILE")]
    pub sysconfig: Option<PathBuf>,
    /// The YAML configuration file, legacy flavored or registry:2 format
    /// [default: $DOCKER_REGISTRY_CONFIG or /etc/docker-registry.yml]
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to bind (overrides REGISTRY_ADDRESS)
    #[arg(long, global = true, value_name = "IP")]
    pub address: Option<IpAddr>,
    /// Port to bind, 0 for any free port (overrides REGISTRY_PORT)
    #[arg(long, short = 'p', global = true, value_name = "PORT")]
    pub port: Option<u16>,
    /// Worker threads, 0 for one per CPU (overrides GUNICORN_WORKERS)
    #[arg(long, global = true, value_name = "N")]
    pub workers: Option<usize>,
    /// Storage directory (overrides storage_path / rootdirectory)
    #[arg(long, global = true, value_name = "DIR")]
    pub storage_path: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace
    #[arg(long, global = true, value_name = "LEVEL", value_parser = parse_level)]
    pub log_level: Option<LogLevel>,
    /// Allow deleting manifests, tags and blobs (storage.delete.enabled)
    #[arg(long, global = true, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub delete_enabled: Option<bool>,
    /// Require Basic authentication against this Apache htpasswd file (auth: htpasswd)
    #[arg(long, global = true, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
    /// The realm named in the authentication challenge [default: docker-registry]
    #[arg(long, global = true, value_name = "REALM")]
    pub auth_realm: Option<String>,
    /// Who may pull, push and delete which repositories (YAML); needs --htpasswd
    /// (auth.htpasswd.accessfile)
    #[arg(long, global = true, value_name = "FILE")]
    pub access_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key
    #[arg(long, global = true, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by these CAs (PEM): mutual TLS (http.tls.clientcas)
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Trust X-Forwarded-For/-Proto/-Host from a reverse proxy in front
    /// (http.trustforwardedheaders)
    #[arg(long, global = true, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub trust_forwarded_headers: Option<bool>,
    /// Token authentication (auth: token): the token server's URL for the Bearer challenge
    #[arg(long, global = true, value_name = "URL", requires_all = ["token_service", "token_issuer", "token_rootcertbundle"])]
    pub token_realm: Option<String>,
    /// The service name tokens must be issued for (their `aud`)
    #[arg(long, global = true, value_name = "NAME", requires = "token_realm")]
    pub token_service: Option<String>,
    /// The issuer tokens must name (their `iss`)
    #[arg(long, global = true, value_name = "NAME", requires = "token_realm")]
    pub token_issuer: Option<String>,
    /// Certificates (PEM) of the keys allowed to sign tokens
    #[arg(long, global = true, value_name = "FILE", requires = "token_realm")]
    pub token_rootcertbundle: Option<PathBuf>,
    /// Issue tokens at GET /token for the --htpasswd users (under --access-file), signed
    /// with this key (PKCS#8 PEM, RSA or EC P-256); point --token-realm at that URL
    #[arg(long, global = true, value_name = "FILE", requires_all = ["token_realm", "htpasswd"])]
    pub token_signing_key: Option<PathBuf>,
}

pub fn parse_level(s: &str) -> Result<LogLevel, String> {
    LogLevel::parse(s)
        .ok_or_else(|| format!("unknown log level {s:?}: use error, warn, info, debug or trace"))
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the registry (the default command)
    Serve {
        /// A configuration file, as `registry serve FILE` takes it (same as --config)
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Manage an htpasswd file with Apache htpasswd's flags (bcrypt by default); also
    /// installed as docker-registry-htpasswd. See `docker-registry htpasswd --help`
    #[command(disable_help_flag = true)]
    Htpasswd {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
    /// Print the effective configuration and where each value came from
    Config {
        /// Only validate: print problems as file:line: key: message and exit non-zero
        #[arg(long)]
        check: bool,
    },
    /// Remove blobs no manifest references, and unfinished uploads past their age
    #[command(
        long_about = "Remove blobs no manifest revision references (and, with \
        --delete-untagged, manifests no tag reaches), and unfinished uploads older than \
        upload_purging.age.\n\nPrints each blob digest removed (or, with --dry-run, that would be \
        removed) on stdout, one digest (`sha256:...` or `sha512:...`) per line, and each \
        untagged manifest as `REPOSITORY@<digest>`; progress and the summary (bytes freed) go to stderr.\n\n\
        Offline (the default) it works on the configured storage directly and refuses to \
        run while the daemon answers on its admin socket; --online asks the running daemon \
        to collect, with no read-only window."
    )]
    GarbageCollect(GcArgs),
    /// Verify every blob's digest and every link; report broken images by repository and tag
    #[command(
        long_about = "Verify every blob's content against its digest and every link \
        (layer, revision, tag, tag history, referrer), and report what is corrupt or missing by \
        repository and tag, one problem a line on stdout. Exits 0 when the store is sound.\n\n\
        --repair removes dangling links (links to content that is gone) and nothing else: \
        corrupt content is reported, never deleted."
    )]
    Fsck(FsckArgs),
    /// Remove tags that retention rules do not keep (a dry run unless --apply)
    #[command(
        long_about = "Apply the retention rules of the configuration (or the one rule \
        given with --repositories and --keep-tags / --keep-younger-than / --protect-tags): for \
        each repository the first matching rule keeps the newest N tags and/or those pushed \
        less than D ago; tags matching the protect pattern are never touched. Prints each \
        tag removed (or, by default, that would be removed) as REPOSITORY:TAG on stdout.\n\n\
        Removing a tag frees no disk by itself: run `garbage-collect --delete-untagged` after."
    )]
    Retention(RetentionArgs),
}

/// `retention` options.
#[derive(Args, Debug, Clone, Default)]
pub struct RetentionArgs {
    /// A registry:2 configuration file (same as --config)
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Only report (the default)
    #[arg(long, conflicts_with = "apply")]
    pub dry_run: bool,
    /// Remove the tags the rules do not keep
    #[arg(long)]
    pub apply: bool,
    /// One rule instead of the configured ones: repositories it applies to (glob, * = any)
    #[arg(long, value_name = "GLOB")]
    pub repositories: Option<String>,
    /// Keep the newest N tags
    #[arg(long, value_name = "N", requires = "repositories")]
    pub keep_tags: Option<usize>,
    /// Keep tags pushed less than this long ago (e.g. 30days)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "repositories")]
    pub keep_younger_than: Option<std::time::Duration>,
    /// Never touch tags matching this glob (e.g. 'v*' or 'latest')
    #[arg(long, value_name = "GLOB", requires = "repositories")]
    pub protect_tags: Option<String>,
}

/// `fsck` options.
#[derive(Args, Debug, Clone, Default)]
pub struct FsckArgs {
    /// A registry:2 configuration file (same as --config)
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Remove dangling links (only those)
    #[arg(long)]
    pub repair: bool,
}

/// `garbage-collect` options; `-d` and `-m` as registry:2 spells them.
#[derive(Args, Debug, Clone, Default)]
pub struct GcArgs {
    /// A registry:2 configuration file, as `registry garbage-collect FILE` takes it
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Report what would be removed; remove nothing
    #[arg(long, short = 'd')]
    pub dry_run: bool,
    /// Also remove manifests no tag reaches (not children of a tagged index, not
    /// referrers of a kept manifest)
    #[arg(long, short = 'm')]
    pub delete_untagged: bool,
    /// Ask the running daemon to collect (over its admin socket) instead of working on the
    /// storage directly
    #[arg(long)]
    pub online: bool,
    /// Keep blobs and untagged manifests younger than this (e.g. 1h) [default: 0 offline,
    /// gc.grace online]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub grace: Option<std::time::Duration>,
    /// Purge unfinished uploads older than this [default: upload_purging.age]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub upload_age: Option<std::time::Duration>,
}

pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 90s, 30m, 168h, 7days)"))
}

pub fn load_options(g: &GlobalArgs, file: Option<PathBuf>) -> LoadOptions {
    LoadOptions {
        sysconfig: g.sysconfig.clone(),
        config: file.or_else(|| g.config.clone()),
        env: std::env::vars().collect(),
        cli: CliOverrides {
            address: g.address,
            port: g.port,
            workers: g.workers,
            storage_path: g.storage_path.clone(),
            log_level: g.log_level,
            delete_enabled: g.delete_enabled,
            htpasswd: g.htpasswd.clone(),
            auth_realm: g.auth_realm.clone(),
            access_file: g.access_file.clone(),
            tls_cert: g.tls_cert.clone(),
            tls_key: g.tls_key.clone(),
            tls_client_ca: g.tls_client_ca.clone(),
            trust_forwarded_headers: g.trust_forwarded_headers,
            token_realm: g.token_realm.clone(),
            token_service: g.token_service.clone(),
            token_issuer: g.token_issuer.clone(),
            token_rootcertbundle: g.token_rootcertbundle.clone(),
            token_signing_key: g.token_signing_key.clone(),
        },
    }
}
