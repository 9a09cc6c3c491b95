//! The `docker-registry` command: `serve` (the default), `config`, the maintenance
//! commands (`garbage-collect`, `fsck`, `retention`, in `maintenance_cli`), and `htpasswd`
//! (also run as `docker-registry-htpasswd`).

use clap::Parser;
use docker_registry::auth::command::{self, HtpasswdArgs};
use docker_registry::cli::{load_options, Cli, Command};
use docker_registry::config::Config;
use docker_registry::server;
use std::process::ExitCode;

/// `docker-registry htpasswd ARGS` and `docker-registry-htpasswd ARGS`: parsed on their own
/// because Apache's `-c` (create) would clash with our global `-c` (config file).
fn htpasswd(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let argv = std::iter::once("docker-registry htpasswd".into()).chain(args);
    match HtpasswdArgs::try_parse_from(argv) {
        Ok(a) => ExitCode::from(command::main(a)),
        Err(e) => {
            let _ = e.print();
            ExitCode::from(if e.use_stderr() { 2 } else { 0 })
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let program = argv
        .first()
        .map(std::path::Path::new)
        .and_then(|p| p.file_name());
    if program.is_some_and(|p| p == "docker-registry-htpasswd") {
        return htpasswd(argv.into_iter().skip(1));
    }
    if argv.get(1).is_some_and(|a| a == "htpasswd") {
        return htpasswd(argv.into_iter().skip(2));
    }
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
        Command::Htpasswd { args } => htpasswd(args.into_iter().map(Into::into)),
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
