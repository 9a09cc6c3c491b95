//! `docker-registry fsck [--repair]`: verifies every blob against its digest and every link,
//! and prints what is corrupt or missing by repository and tag, one problem a line on stdout
//! (exit 1 while any remains). `--repair` removes dangling links and the leftovers of
//! interrupted writes, never content, and refuses to run while the daemon answers on its
//! admin socket.

use super::{human_bytes, load_config, Exit, GlobalArgs, Storage};
use crate::server::admin;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Verify every blob's digest and every link; report broken images by repository and tag
#[derive(Args, Debug, Clone, Default)]
#[command(
    long_about = "Verify every blob's content against its digest and every link \
    (layer, revision, tag, tag history, referrer), and report what is corrupt or missing by \
    repository and tag, one problem a line on stdout. Exits 0 when the store is sound.\n\n\
    --repair removes dangling links (links to content that is gone) and nothing else: \
    corrupt content is reported, never deleted."
)]
pub struct FsckArgs {
    /// A registry:2 configuration file (same as --config)
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Remove dangling links (only those)
    #[arg(long)]
    pub repair: bool,
}

pub(super) fn run(global: &GlobalArgs, args: &FsckArgs) -> Exit {
    let config = load_config(global, args.file.clone())?;
    if args.repair && admin::daemon_answers(&admin::socket_path(&config)) {
        eprintln!("docker-registry: fsck --repair: the daemon is running on this storage; stop it first (a check without --repair is fine)");
        return Err(ExitCode::from(1));
    }
    let storage = Storage::open(&config)?;
    let report = storage.run(
        "fsck",
        storage
            .registry
            .fsck(args.repair, &mut |p| eprintln!("{p}")),
    )?;
    let removed = if args.repair { " (removed)" } else { "" };
    let mut remaining = 0;
    for p in &report.problems {
        let fixed = args.repair && p.repairable();
        println!("{p}{}", if fixed { removed } else { "" });
        if !fixed {
            remaining += 1;
        }
    }
    for l in &report.leftovers {
        println!("leftover: {l}{removed}");
    }
    eprintln!(
        "{} blobs ({}) and {} links in {} repositories checked: {} problems{}",
        report.blobs,
        human_bytes(report.bytes),
        report.links,
        report.repositories,
        report.problems.len(),
        if args.repair {
            format!(", {} dangling links removed", report.repaired)
        } else {
            String::new()
        }
    );
    if !report.leftovers.is_empty() {
        // Not errors: what writes that were never acknowledged left behind.
        eprintln!(
            "{} leftovers of interrupted writes (not errors){}",
            report.leftovers.len(),
            if args.repair {
                ": removed"
            } else {
                "; `fsck --repair`, `garbage-collect` or starting the daemon removes them"
            }
        );
    }
    Ok(if remaining == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
