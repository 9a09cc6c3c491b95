//! The `docker-registry` command: `serve` (the default), `config`, and the maintenance
//! commands (`garbage-collect`, `fsck`, `retention`, in `maintenance_cli`).

use clap::Parser;
use docker_registry::cli::{load_options, Cli, Command};
use docker_registry::config::Config;
use docker_registry::server;
use std::process::ExitCode;

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
        Command::GarbageCollect(args) => {
            docker_registry::maintenance_cli::garbage_collect(&cli.global, &args)
        }
        Command::Fsck(args) => docker_registry::maintenance_cli::fsck(&cli.global, &args),
        Command::Retention(args) => docker_registry::maintenance_cli::retention(&cli.global, &args),
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
