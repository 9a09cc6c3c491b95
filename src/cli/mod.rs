//! The `docker-registry` command line: `serve` (the default), `config`, `htpasswd` (also run
//! as `docker-registry-htpasswd`) and the maintenance commands `garbage-collect`, `fsck` and
//! `retention`, one file each. Every command is a thin layer over the library: it reads the
//! configuration, calls the registry, prints, and chooses the exit code.
//!
//! Kept in the library (not in `main.rs`) so that `examples/gen-docs.rs` generates the man
//! pages and shell completions from the same definition the binary parses.

mod config;
mod fsck;
mod garbage_collect;
mod htpasswd;
mod retention;
mod serve;

pub use self::config::ConfigArgs;
pub use fsck::FsckArgs;
pub use garbage_collect::GcArgs;
pub use htpasswd::{HtpasswdArgs, HtpasswdPassthrough};
pub use retention::RetentionArgs;
pub use serve::ServeArgs;

use crate::config::{Config, LoadOptions, SettingFlags};
use crate::registry::{Registry, RegistryOptions};
use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

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

/// The options every command takes: where the configuration is, and every setting's flag.
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

/// The subcommands; each one's help text is on its arguments' struct, in its own file.
#[derive(Subcommand, Debug)]
pub enum Command {
    Serve(ServeArgs),
    Htpasswd(HtpasswdPassthrough),
    Config(ConfigArgs),
    GarbageCollect(GcArgs),
    Fsck(FsckArgs),
    Retention(RetentionArgs),
}

/// Runs the command line `argv` (the program name first) and returns the exit code.
pub fn main(argv: Vec<OsString>) -> ExitCode {
    let program = argv
        .first()
        .map(std::path::Path::new)
        .and_then(|p| p.file_name());
    if program.is_some_and(|p| p == "docker-registry-htpasswd") {
        return htpasswd::run(argv.into_iter().skip(1));
    }
    // Parsed apart from the rest: Apache's `-c` (create) would clash with our `-c` (config).
    if argv.get(1).is_some_and(|a| a == "htpasswd") {
        return htpasswd::run(argv.into_iter().skip(2));
    }
    let cli = Cli::parse_from(argv);
    match cli.command {
        None => Ok(serve::run(&cli.global, &ServeArgs::default())),
        Some(Command::Serve(args)) => Ok(serve::run(&cli.global, &args)),
        Some(Command::Htpasswd(args)) => Ok(htpasswd::run(args.args.into_iter().map(Into::into))),
        Some(Command::Config(args)) => Ok(config::run(&cli.global, &args)),
        Some(Command::GarbageCollect(args)) => garbage_collect::run(&cli.global, &args),
        Some(Command::Fsck(args)) => fsck::run(&cli.global, &args),
        Some(Command::Retention(args)) => retention::run(&cli.global, &args),
    }
    .unwrap_or_else(|code| code)
}

/// A command's exit code; `Err` when it stopped early, its reason printed.
type Exit = Result<ExitCode, ExitCode>;

/// The value parser of every duration flag.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 90s, 30m, 168h, 7days)"))
}

/// What the configuration is read from: the global options, `file` (a command's FILE
/// argument) over `--config`, and this process's environment.
pub fn load_options(g: &GlobalArgs, file: Option<PathBuf>) -> LoadOptions {
    LoadOptions {
        sysconfig: g.sysconfig.clone(),
        config: file.or_else(|| g.config.clone()),
        env: std::env::vars().collect(),
        cli: g.settings.0.clone(),
    }
}

/// The configuration for a maintenance command, its warnings printed; exit code 2 when it
/// has errors, as the daemon's.
fn load_config(global: &GlobalArgs, file: Option<PathBuf>) -> Result<Config, ExitCode> {
    match Config::load(&load_options(global, file)) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            Ok(c)
        }
        Err(e) => {
            eprintln!("docker-registry: configuration errors:\n{e}");
            Err(ExitCode::from(2))
        }
    }
}

/// The configured storage as a registry, with a small runtime to drive it from a command.
struct Storage {
    runtime: tokio::runtime::Runtime,
    registry: Registry,
}

impl Storage {
    fn open(config: &Config) -> Result<Storage, ExitCode> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| {
                eprintln!("docker-registry: cannot start the runtime: {e}");
                ExitCode::from(1)
            })?;
        match crate::server::build_driver(config) {
            Ok(driver) => Ok(Storage {
                runtime,
                registry: Registry::new(driver, RegistryOptions::shared_by_instances(config)),
            }),
            Err(e) => {
                eprintln!("docker-registry: {e}");
                Err(ExitCode::from(1))
            }
        }
    }

    /// Runs `work` to its end; a failure is printed as `docker-registry: COMMAND on
    /// LOCATION: error` and is exit code 1.
    fn run<T, E: std::fmt::Display>(
        &self,
        command: &str,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, ExitCode> {
        self.runtime.block_on(work).map_err(|e| {
            eprintln!(
                "docker-registry: {command} on {}: {e}",
                self.registry.driver().location()
            );
            ExitCode::from(1)
        })
    }
}

use crate::registry::images::human_bytes;
