//! The maintenance commands as the administrator runs them: `garbage-collect` (offline on
//! the configured storage, or `--online` through the running daemon's admin socket),
//! `fsck [--repair]` and `retention [--apply]`. They read the same configuration as the
//! daemon, print what they find or remove on stdout (one item a line, for scripts) and
//! progress and the summary on stderr. Those that write refuse to run while the daemon
//! answers on its admin socket (offline `garbage-collect`, `fsck --repair`).

use crate::cli::{load_options, FsckArgs, GcArgs, GlobalArgs, RetentionArgs};
use crate::config::Config;
use crate::registry::gc::{GcOptions, GcReport};
use crate::registry::retention::RetentionPolicy;
use crate::registry::{Registry, RegistryOptions};
use crate::server::admin::{self, AdminReport, AdminRequest};
use std::path::PathBuf;
use std::process::ExitCode;

fn load(global: &GlobalArgs, file: Option<PathBuf>) -> Result<Config, ExitCode> {
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

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("docker-registry: cannot start the runtime: {e}");
            ExitCode::from(1)
        })
}

/// The registry over the configured storage, for a command that works on it directly.
fn maintenance_registry(config: &Config) -> Result<Registry, ExitCode> {
    match crate::server::build_driver(config) {
        Ok(driver) => Ok(Registry::new(driver, RegistryOptions::default())),
        Err(e) => {
            eprintln!("docker-registry: {e}");
            Err(ExitCode::from(1))
        }
    }
}

/// `1.5 MiB`-style sizes for people; the exact byte count is printed next to it.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
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
fn print_summary(r: &AdminReport) -> ExitCode {
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
        r.seconds
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

/// `docker-registry garbage-collect`.
pub fn garbage_collect(global: &GlobalArgs, args: &GcArgs) -> ExitCode {
    let config = match load(global, args.file.clone()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let socket = admin::socket_path(&config);
    let upload_age = args.upload_age.or_else(|| {
        config
            .upload_purging
            .value
            .enabled
            .then_some(config.upload_purging.value.age)
    });
    if args.online {
        let req = AdminRequest {
            command: "garbage-collect".into(),
            dry_run: args.dry_run,
            delete_untagged: args.delete_untagged,
            grace_seconds: args.grace.map(|g| g.as_secs_f64()),
            upload_age_seconds: args.upload_age.map(|a| a.as_secs_f64()),
        };
        return match admin::request(&socket, &req, &mut |l| print_line(l)) {
            Ok(report) => print_summary(&report),
            Err(e) => {
                eprintln!("docker-registry: garbage-collect --online: {e}");
                ExitCode::from(1)
            }
        };
    }
    if !args.dry_run && admin::daemon_answers(&socket) {
        eprintln!(
            "docker-registry: the daemon is running on this storage (it answers on {}): an offline \
             collection could delete blobs a push is using. Run `docker-registry garbage-collect --online` \
             to collect inside the daemon, or stop it first.",
            socket.display()
        );
        return ExitCode::from(1);
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let registry = match maintenance_registry(&config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let opts = GcOptions {
        dry_run: args.dry_run,
        delete_untagged: args.delete_untagged,
        grace: args.grace.unwrap_or_default(),
        ..GcOptions::default()
    };
    let result: Result<(GcReport, usize), String> = rt.block_on(async {
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
        let report = registry
            .collect_garbage(&opts, &mut |e| print_line(&admin::event_line(&e)))
            .await
            .map_err(|e| e.to_string())?;
        Ok((report, purged))
    });
    match result {
        Ok((report, purged)) => print_summary(&AdminReport::from_gc(&report, purged)),
        Err(e) => {
            eprintln!(
                "docker-registry: garbage-collect on {}: {e}",
                registry.driver().location()
            );
            ExitCode::from(1)
        }
    }
}

/// `docker-registry fsck`.
pub fn fsck(global: &GlobalArgs, args: &FsckArgs) -> ExitCode {
    let config = match load(global, args.file.clone()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if args.repair && admin::daemon_answers(&admin::socket_path(&config)) {
        eprintln!("docker-registry: fsck --repair: the daemon is running on this storage; stop it first (a check without --repair is fine)");
        return ExitCode::from(1);
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let registry = match maintenance_registry(&config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let report = match rt.block_on(registry.fsck(args.repair, &mut |p| eprintln!("{p}"))) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "docker-registry: fsck on {}: {e}",
                registry.driver().location()
            );
            return ExitCode::from(1);
        }
    };
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
    if remaining == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `docker-registry retention`.
pub fn retention(global: &GlobalArgs, args: &RetentionArgs) -> ExitCode {
    let config = match load(global, args.file.clone()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let policies: Result<Vec<RetentionPolicy>, String> = match &args.repositories {
        Some(pattern) => RetentionPolicy::new(
            pattern,
            args.keep_tags,
            args.keep_younger_than,
            args.protect_tags.as_deref(),
        )
        .map(|p| vec![p]),
        None => config
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
            .collect(),
    };
    let policies = match policies {
        Ok(p) => p,
        Err(e) => {
            eprintln!("docker-registry: retention: {e}");
            return ExitCode::from(2);
        }
    };
    if policies.is_empty() {
        eprintln!(
            "no retention rules configured (and none given with --repositories): nothing to do"
        );
        return ExitCode::SUCCESS;
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let registry = match maintenance_registry(&config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let decisions = match rt.block_on(registry.apply_retention(&policies, args.apply)) {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "docker-registry: retention on {}: {e}",
                registry.driver().location()
            );
            return ExitCode::from(1);
        }
    };
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
    ExitCode::SUCCESS
}
