//! `docker-registry config [--check]`: prints the effective configuration with where each
//! value came from, or only checks it (`file:line: key: message`, exit 1 on errors).

use super::{load_options, GlobalArgs};
use crate::config::Config;
use clap::Args;
use std::process::ExitCode;

/// Print the effective configuration and where each value came from
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// Only validate: print problems as file:line: key: message and exit non-zero
    #[arg(long)]
    pub check: bool,
}

pub(super) fn run(global: &GlobalArgs, args: &ConfigArgs) -> ExitCode {
    match Config::load(&load_options(global, None)) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            if args.check {
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
