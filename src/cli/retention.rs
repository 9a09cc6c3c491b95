//! `docker-registry retention [--apply]`: removes the tags the configured retention rules
//! (or one rule given on the command line) do not keep; a dry run by default. Each tag
//! removed, or that would be, is printed as `REPOSITORY:TAG` on stdout.

use super::{load_config, parse_duration, Exit, GlobalArgs, Storage};
use crate::config::Config;
use crate::registry::retention::RetentionPolicy;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Remove tags that retention rules do not keep (a dry run unless --apply)
#[derive(Args, Debug, Clone, Default)]
#[command(
    long_about = "Apply the retention rules of the configuration (or the one rule \
    given with --repositories and --keep-tags / --keep-younger-than / --protect-tags): for \
    each repository the first matching rule keeps the newest N tags and/or those pushed \
    less than D ago; tags matching the protect pattern are never touched. Prints each \
    tag removed (or, by default, that would be removed) as REPOSITORY:TAG on stdout.\n\n\
    Removing a tag frees no disk by itself: run `garbage-collect --delete-untagged` after."
)]
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

pub(super) fn run(global: &GlobalArgs, args: &RetentionArgs) -> Exit {
    let config = load_config(global, args.file.clone())?;
    let policies = policies(args, &config).map_err(|e| {
        eprintln!("docker-registry: retention: {e}");
        ExitCode::from(2)
    })?;
    if policies.is_empty() {
        eprintln!(
            "no retention rules configured (and none given with --repositories): nothing to do"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let storage = Storage::open(&config)?;
    let decisions = storage.run(
        "retention",
        storage.registry.apply_retention(&policies, args.apply),
    )?;
    let removed = decisions.iter().filter(|d| !d.keep).count();
    for d in decisions.iter().filter(|d| !d.keep) {
        println!("{}:{}", d.repository, d.tag);
    }
    eprintln!(
        "{} tags kept, {removed} {}{}",
        decisions.len() - removed,
        if args.apply {
            "removed"
        } else {
            "would be removed (dry run; --apply to remove them)"
        },
        if args.apply && removed > 0 {
            "; run `docker-registry garbage-collect --delete-untagged` to free their disk"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The one rule the command line gives, else the configured ones.
fn policies(args: &RetentionArgs, config: &Config) -> Result<Vec<RetentionPolicy>, String> {
    let Some(pattern) = &args.repositories else {
        return config
            .retention
            .value
            .iter()
            .map(|r| {
                RetentionPolicy::new(
                    &r.repositories,
                    r.keep_tags,
                    r.keep_younger_than,
                    r.protect_tags.as_deref(),
                )
                .map_err(|e| format!("{e} ({})", config.retention.source))
            })
            .collect();
    };
    let rule = RetentionPolicy::new(
        pattern,
        args.keep_tags,
        args.keep_younger_than,
        args.protect_tags.as_deref(),
    )?;
    Ok(vec![rule])
}
