//! `docker-registry garbage-collect [--online]`: removes blobs no manifest references (and,
//! with `--delete-untagged`, manifests no tag reaches) and unfinished uploads past their age.
//! Offline it works on the configured storage and refuses to run while the daemon answers on
//! its admin socket; `--online` asks the daemon to collect and prints what it sends back, the
//! same lines the offline collection prints: each digest removed on stdout, progress and the
//! summary on stderr.

use super::{human_bytes, load_config, parse_duration, Exit, GlobalArgs, Storage};
use crate::registry::gc::{GcOptions, GcReport};
use crate::registry::Registry;
use crate::server::admin::{self, AdminRequest};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Remove blobs no manifest references, and unfinished uploads past their age
#[derive(Args, Debug, Clone, Default)]
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
pub struct GcArgs {
    /// A registry:2 configuration file, as `registry garbage-collect FILE` takes it
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    // `-d` and `-m` as registry:2 spells them.
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

/// Prints one admin-protocol line the way the offline command prints the same event.
fn print_line(line: &str) {
    let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
    match kind {
        "blob" => println!("{}", rest.split(' ').next().unwrap_or(rest)),
        "manifest" => println!("{rest}"),
        "upload" => {
            let mut p = rest.splitn(3, ' ');
            let (repo, id, size) = (
                p.next().unwrap_or(""),
                p.next().unwrap_or(""),
                p.next().unwrap_or("?"),
            );
            eprintln!("unfinished upload {id} in {repo} ({size} bytes)");
        }
        "progress" => eprintln!("{rest}"),
        "warning" => eprintln!("warning: {rest}"),
        _ => eprintln!("{line}"),
    }
}

/// Prints the summary; the exit code says whether every removal succeeded.
fn print_summary(r: &GcReport) -> ExitCode {
    let (verb, freed) = if r.dry_run {
        ("eligible for deletion", "would be freed")
    } else {
        ("removed", "freed")
    };
    eprintln!(
        "{} blobs {verb}: {} ({} bytes) {freed}; {} blobs marked from {} manifests in {} repositories; \
         {} unreferenced blobs kept (younger than the grace period or in use); \
         {} untagged manifests {verb}; {} unfinished uploads {verb}; {:.2}s",
        r.blobs_removed,
        human_bytes(r.bytes_freed),
        r.bytes_freed,
        r.blobs_marked,
        r.manifests,
        r.repositories,
        r.blobs_kept_young,
        r.manifests_removed,
        r.uploads_purged,
        r.elapsed.as_secs_f64()
    );
    if r.links_removed + r.leftovers_removed > 0 {
        eprintln!(
            "{} layer links to blobs no longer stored removed; {} leftovers of interrupted writes removed",
            r.links_removed, r.leftovers_removed
        );
    }
    if r.errors > 0 {
        eprintln!(
            "docker-registry: {} blobs or links could not be removed (see the warnings above)",
            r.errors
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

pub(super) fn run(global: &GlobalArgs, args: &GcArgs) -> Exit {
    let config = load_config(global, args.file.clone())?;
    let socket = admin::socket_path(&config);
    if args.online {
        return online(&socket, args);
    }
    if !args.dry_run && admin::daemon_answers(&socket) {
        eprintln!(
            "docker-registry: the daemon is running on this storage (it answers on {}): an offline \
             collection could delete blobs a push is using. Run `docker-registry garbage-collect --online` \
             to collect inside the daemon, or stop it first.",
            socket.display()
        );
        return Err(ExitCode::from(1));
    }
    let purging = &config.upload_purging.value;
    let upload_age = args
        .upload_age
        .or_else(|| purging.enabled.then_some(purging.age));
    let storage = Storage::open(&config)?;
    let report = storage.run(
        "garbage-collect",
        offline(&storage.registry, args, upload_age),
    )?;
    Ok(print_summary(&report))
}

/// Asks the daemon to collect; what it leaves out (grace, upload age) the daemon's
/// configuration decides.
fn online(socket: &Path, args: &GcArgs) -> Exit {
    let req = AdminRequest {
        command: "garbage-collect".into(),
        dry_run: args.dry_run,
        delete_untagged: args.delete_untagged,
        grace_seconds: args.grace.map(|g| g.as_secs_f64()),
        upload_age_seconds: args.upload_age.map(|a| a.as_secs_f64()),
    };
    match admin::request(socket, &req, &mut |l| print_line(l)) {
        Ok(report) => Ok(print_summary(&report)),
        Err(e) => {
            eprintln!("docker-registry: garbage-collect --online: {e}");
            Err(ExitCode::from(1))
        }
    }
}

/// Clears what interrupted writes left, purges uploads older than `upload_age`, then
/// collects; returns the collection's report, with the uploads purged.
async fn offline(
    registry: &Registry,
    args: &GcArgs,
    upload_age: Option<Duration>,
) -> Result<GcReport, String> {
    let leftovers = registry
        .recover(!args.dry_run)
        .await
        .map_err(|e| format!("leftovers of interrupted writes: {e}"))?;
    if !leftovers.is_empty() {
        eprintln!(
            "{} leftovers of interrupted writes {}",
            leftovers.len(),
            if args.dry_run {
                "found (`fsck` lists them)"
            } else {
                "removed"
            }
        );
    }
    let mut purged = 0;
    if let Some(age) = upload_age {
        let stale = registry
            .purge_uploads(age, args.dry_run)
            .await
            .map_err(|e| format!("upload purging: {e}"))?;
        for s in &stale {
            print_line(&format!("upload {} {} {}", s.repository, s.id, s.size));
        }
        purged = stale.len();
    }
    let opts = GcOptions {
        dry_run: args.dry_run,
        delete_untagged: args.delete_untagged,
        grace: args.grace.unwrap_or_default(),
        ..GcOptions::default()
    };
    let mut report = registry
        .collect_garbage(&opts, &mut |e| print_line(&admin::event_line(&e)))
        .await
        .map_err(|e| e.to_string())?;
    report.uploads_purged = purged;
    Ok(report)
}
