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
    #[arg(long, global = true, value_name = "FILE")]
    pub access_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key
    #[arg(long, global = true, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by these CAs (PEM): mutual TLS
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Trust X-Forwarded-For/-Proto/-Host from a reverse proxy in front
    #[arg(long, global = true, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub trust_forwarded_headers: Option<bool>,
    /// Token authentication (auth: token): the token server's URL for the Bearer challenge
    #[arg(long, global = true, value_name = "URL", requires_all = ["token_service", "token_issuer", "token_rootcertbundle"], conflicts_with = "htpasswd")]
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
        },
    }
}
