//! The command line: `docker-registry [serve]`, `config`, and the maintenance commands.
//! Kept in the library so that man pages and shell completions are generated from it.

use crate::config::{LoadOptions, SettingFlags};
use clap::{Args, Parser, Subcommand};
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
    /// Every setting's flag (`--port`, `--storage-path`, `--htpasswd`, ...), from the
    /// settings table.
    #[command(flatten)]
    pub settings: SettingFlags,
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
        cli: g.settings.0.clone(),
    }
}
