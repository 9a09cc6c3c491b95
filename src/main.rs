//! The `docker-registry` command: `serve` (the default), `config`.

use clap::{Args, Parser, Subcommand};
use docker_registry::config::{CliOverrides, Config, LoadOptions, LogLevel};
use docker_registry::server;
use std::net::IpAddr;
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
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Debug, Clone, Default)]
struct GlobalArgs {
    /// The sysconfig file (KEY=VALUE) [default: /etc/sysconfig/docker-registry]
    #[arg(long, global = true, value_name = "FILE")]
    sysconfig: Option<PathBuf>,
    /// The YAML configuration file, legacy flavored or registry:2 format
    /// [default: $DOCKER_REGISTRY_CONFIG or /etc/docker-registry.yml]
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to bind (overrides REGISTRY_ADDRESS)
    #[arg(long, global = true, value_name = "IP")]
    address: Option<IpAddr>,
    /// Port to bind, 0 for any free port (overrides REGISTRY_PORT)
    #[arg(long, short = 'p', global = true, value_name = "PORT")]
    port: Option<u16>,
    /// Worker threads, 0 for one per CPU (overrides GUNICORN_WORKERS)
    #[arg(long, global = true, value_name = "N")]
    workers: Option<usize>,
    /// Storage directory (overrides storage_path / rootdirectory)
    #[arg(long, global = true, value_name = "DIR")]
    storage_path: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace
    #[arg(long, global = true, value_name = "LEVEL", value_parser = parse_level)]
    log_level: Option<LogLevel>,
    /// Allow deleting manifests, tags and blobs (storage.delete.enabled)
    #[arg(long, global = true, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    delete_enabled: Option<bool>,
}

fn parse_level(s: &str) -> Result<LogLevel, String> {
    LogLevel::parse(s).ok_or_else(|| format!("unknown log level {s:?}: use error, warn, info, debug or trace"))
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the registry (the default command)
    Serve {
        /// A configuration file, as `registry serve FILE` takes it (same as --config)
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Print the effective configuration and where each value came from
    Config {
        /// Only validate: print problems as file:line: key: message and exit non-zero
        #[arg(long)]
        check: bool,
    },
}

fn load_options(g: &GlobalArgs, file: Option<PathBuf>) -> LoadOptions {
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
        },
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve { file: None }) {
        Command::Serve { file } => {
            let opts = load_options(&cli.global, file);
            let config = match Config::load(&opts) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("docker-registry: configuration errors:\n{e}");
                    return ExitCode::from(2);
                }
            };
            let log = server::logging::init(config.log_level.value, &config.log_target.value);
            let reload: server::Reloader = Box::new(move || {
                let mut o = opts.clone();
                o.env = std::env::vars().collect();
                Config::load(&o)
            });
            ExitCode::from(server::run(config, log, reload) as u8)
        }
        Command::Config { check } => {
            let opts = load_options(&cli.global, None);
            match Config::load(&opts) {
                Ok(c) => {
                    for w in &c.warnings {
                        eprintln!("warning: {w}");
                    }
                    if check {
                        println!("configuration OK");
                    } else {
                        print!("{}", c.describe());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
