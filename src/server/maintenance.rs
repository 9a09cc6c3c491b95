//! Maintenance inside the running daemon: scheduled upload purging, scheduled garbage
//! collection (`gc.interval`), and the [admin socket](super::admin) through which
//! `docker-registry garbage-collect --online` asks the daemon to collect now.

use super::admin;
use crate::config::Config;
use crate::registry::gc::{GcEvent, GcOptions};
use crate::registry::Registry;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The tasks the daemon runs besides serving; stopped with [`Maintenance::stop`].
pub struct Maintenance {
    tasks: Vec<JoinHandle<()>>,
    socket: Option<PathBuf>,
}

impl Maintenance {
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
        if let Some(p) = self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Starts upload purging, scheduled collection and the admin socket as the configuration
/// says. Failing to open the admin socket is logged, not fatal: the registry still serves.
pub fn spawn(registry: Arc<Registry>, config: &Config) -> Maintenance {
    let mut tasks = Vec::new();
    let purging = config.upload_purging.value.clone();
    if purging.enabled {
        let registry = registry.clone();
        tasks.push(tokio::spawn(async move {
            // A first pass soon after start, as registry:2 does, then every interval.
            let mut next = Duration::from_secs(60).min(purging.interval);
            loop {
                tokio::time::sleep(next).await;
                next = purging.interval.max(Duration::from_secs(1));
                purge_uploads(&registry, purging.age, purging.dry_run).await;
            }
        }));
    }
    let gc = config.gc.value.clone();
    if let Some(interval) = gc.interval {
        let registry = registry.clone();
        tasks.push(tokio::spawn(async move {
            let interval = interval.max(Duration::from_secs(1));
            loop {
                tokio::time::sleep(interval).await;
                let opts = GcOptions {
                    dry_run: false,
                    delete_untagged: gc.delete_untagged,
                    grace: gc.grace,
                    ..GcOptions::default()
                };
                scheduled_collection(&registry, &opts).await;
            }
        }));
    }
    let path = admin::socket_path(config);
    let socket = match admin::bind(&path) {
        Ok(listener) => {
            tracing::info!(
                "admin socket for `garbage-collect --online`: {}",
                path.display()
            );
            let defaults = config.clone();
            tasks.push(tokio::spawn(admin::serve(listener, registry, defaults)));
            Some(path)
        }
        Err(e) => {
            tracing::warn!("admin socket {} not opened: {e}; `garbage-collect --online` will not reach this daemon", path.display());
            None
        }
    };
    Maintenance { tasks, socket }
}

async fn purge_uploads(registry: &Registry, age: Duration, dry_run: bool) -> usize {
    match registry.purge_uploads(age, dry_run).await {
        Ok(stale) => {
            for s in &stale {
                tracing::info!(
                    "upload purging: {} unfinished upload {} in {} ({} bytes, started {})",
                    if dry_run { "would remove" } else { "removed" },
                    s.id,
                    s.repository,
                    s.size,
                    humantime::format_rfc3339_seconds(s.started)
                );
            }
            stale.len()
        }
        Err(e) => {
            tracing::warn!("upload purging failed: {e}");
            0
        }
    }
}

async fn scheduled_collection(registry: &Registry, opts: &GcOptions) {
    let mut log = |e: GcEvent| match e {
        GcEvent::Blob { digest, size } => {
            tracing::debug!("garbage collection: removed blob {digest} ({size} bytes)")
        }
        GcEvent::UntaggedManifest { repository, digest } => {
            tracing::info!("garbage collection: removed untagged manifest {repository}@{digest}")
        }
        GcEvent::Progress(t) => tracing::debug!("garbage collection: {t}"),
        GcEvent::Warning(t) => tracing::warn!("garbage collection: {t}"),
    };
    match registry.collect_garbage(opts, &mut log).await {
        Ok(r) => tracing::info!(
            "garbage collection: {} blobs removed, {} bytes freed, {} kept as young or in use, {} marked, in {:.1}s",
            r.blobs_removed,
            r.bytes_freed,
            r.blobs_kept_young,
            r.blobs_marked,
            r.elapsed.as_secs_f64()
        ),
        Err(e) => tracing::warn!("garbage collection failed: {e}"),
    }
}
