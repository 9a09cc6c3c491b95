//! `docker-registry [serve [FILE]]`: loads the configuration, starts logging and runs the
//! daemon until it is stopped; SIGHUP reloads the configuration from the same sources.

use super::{load_options, GlobalArgs};
use crate::config::Config;
use crate::server;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Serve the registry (the default command)
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// A configuration file, as `registry serve FILE` takes it (same as --config)
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// Exit codes: 0 after a clean stop, 1 when the daemon cannot start, 2 for configuration
/// errors.
pub(super) fn run(global: &GlobalArgs, args: &ServeArgs) -> ExitCode {
    let opts = load_options(global, args.file.clone());
    let config = match Config::load(&opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("docker-registry: configuration errors:\n{e}");
            return ExitCode::from(2);
        }
    };
    let log = server::logging::init(
        config.log_level.value,
        &config.log_target.value,
        config.log_formatter.value,
    );
    let reload: server::Reloader = Box::new(move || {
        let mut o = opts.clone();
        o.env = std::env::vars().collect();
        Config::load(&o)
    });
    ExitCode::from(server::run(config, log, reload) as u8)
}
