//! Maintenance inside the running daemon: scheduled upload purging, scheduled garbage
//! collection (`gc.interval`), and the admin socket through which
//! `docker-registry garbage-collect --online` asks the daemon to collect now.
//!
//! # The admin socket
//!
//! A Unix stream socket (by default `docker-registry-admin.sock` in the filesystem storage
//! root, or `gc.socket`), mode 0600: only the daemon's user and root can connect, so it
//! needs no credentials of its own and is never reachable from the network — unlike an
//! HTTP admin endpoint, which would need its own authentication and could not be told
//! apart from the registry API by a proxy. The protocol is one JSON request line
//! ([`AdminRequest`]) answered by lines: `blob <digest> <size>`, `manifest <repo>@<digest>`,
//! `upload <repo> <id> <size>`, `progress <text>`, `warning <text>`, and a last line
//! `done <report JSON>` or `error <text>`. The same lines serve scripts and the CLI.

use crate::api::AppState;
use crate::config::{Config, StorageConfig};
use crate::registry::gc::{GcEvent, GcOptions, GcReport};
use crate::registry::Registry;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

/// The socket file name in the storage root when `gc.socket` is not set.
pub const SOCKET_NAME: &str = "docker-registry-admin.sock";
/// A request line longer than this is refused.
const MAX_REQUEST: u64 = 4096;

/// Where the daemon listens for admin requests (and where the CLI looks for it).
pub fn socket_path(config: &Config) -> PathBuf {
    if let Some(p) = &config.gc.value.socket {
        return p.clone();
    }
    match &config.storage.value {
        StorageConfig::Filesystem { root } => root.join(SOCKET_NAME),
    }
}

/// One request on the admin socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminRequest {
    /// Only `garbage-collect` for now.
    pub command: String,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub delete_untagged: bool,
    /// Overrides `gc.grace` for this run.
    #[serde(default)]
    pub grace_seconds: Option<f64>,
    /// Also purge unfinished uploads older than this; `None`: the configured policy.
    #[serde(default)]
    pub upload_age_seconds: Option<f64>,
}

/// The report as sent on the `done` line.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct AdminReport {
    pub repositories: usize,
    pub manifests: usize,
    pub blobs_marked: usize,
    pub blobs_seen: usize,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    pub manifests_removed: usize,
    pub blobs_kept_young: usize,
    pub uploads_purged: usize,
    /// Blobs that could not be removed.
    #[serde(default)]
    pub errors: usize,
    pub dry_run: bool,
    pub seconds: f64,
}

impl AdminReport {
    pub fn from_gc(r: &GcReport, uploads_purged: usize) -> AdminReport {
        AdminReport {
            repositories: r.repositories,
            manifests: r.manifests,
            blobs_marked: r.blobs_marked,
            blobs_seen: r.blobs_seen,
            blobs_removed: r.blobs_removed,
            bytes_freed: r.bytes_freed,
            manifests_removed: r.manifests_removed,
            blobs_kept_young: r.blobs_kept_young,
            uploads_purged,
            errors: r.errors,
            dry_run: r.dry_run,
            seconds: r.elapsed.as_secs_f64(),
        }
    }
}

/// Renders a collection event as a protocol line (without the newline).
pub fn event_line(e: &GcEvent) -> String {
    match e {
        GcEvent::Blob { digest, size } => format!("blob {digest} {size}"),
        GcEvent::UntaggedManifest { repository, digest } => {
            format!("manifest {repository}@{digest}")
        }
        GcEvent::Progress(t) => format!("progress {}", t.replace('\n', " ")),
        GcEvent::Warning(t) => format!("warning {}", t.replace('\n', " ")),
    }
}

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
pub fn spawn(state: Arc<AppState>, config: &Config) -> Maintenance {
    let mut tasks = Vec::new();
    let purging = config.upload_purging.value.clone();
    if purging.enabled {
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            // A first pass soon after start, as registry:2 does, then every interval.
            let mut next = Duration::from_secs(60).min(purging.interval);
            loop {
                tokio::time::sleep(next).await;
                next = purging.interval.max(Duration::from_secs(1));
                purge_uploads(&state.registry, purging.age, purging.dry_run).await;
            }
        }));
    }
    let gc = config.gc.value.clone();
    if let Some(interval) = gc.interval {
        let state = state.clone();
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
                scheduled_collection(&state.registry, &opts).await;
            }
        }));
    }
    let path = socket_path(config);
    let socket = match bind_admin(&path) {
        Ok(listener) => {
            tracing::info!(
                "admin socket for `garbage-collect --online`: {}",
                path.display()
            );
            let defaults = config.clone();
            tasks.push(tokio::spawn(accept_loop(listener, state, defaults)));
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

/// Binds the admin socket, replacing a stale file left by a daemon that died, but never
/// stealing the socket of a daemon that still answers on it.
fn bind_admin(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::other(
                "a file that is not a socket is in the way",
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::other(
                "another daemon answers on it (same storage?)",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn accept_loop(listener: UnixListener, state: Arc<AppState>, config: Config) {
    let config = Arc::new(config);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let state = state.clone();
                let config = config.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_admin(stream, &state.registry, &config).await {
                        tracing::debug!("admin connection ended: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("admin socket accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn serve_admin(
    stream: UnixStream,
    registry: &Registry,
    config: &Config,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    tokio::io::BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    let req: AdminRequest = match serde_json::from_str(line.trim()) {
        Ok(r) => r,
        Err(e) => {
            write
                .write_all(format!("error request is not valid JSON: {e}\n").as_bytes())
                .await?;
            return Ok(());
        }
    };
    if req.command != "garbage-collect" {
        write
            .write_all(format!("error unknown command {:?}\n", req.command).as_bytes())
            .await?;
        return Ok(());
    }
    let grace = match req.grace_seconds.map(Duration::try_from_secs_f64) {
        None => config.gc.value.grace,
        Some(Ok(g)) => g,
        Some(Err(e)) => {
            write
                .write_all(format!("error grace_seconds: {e}\n").as_bytes())
                .await?;
            return Ok(());
        }
    };
    let upload_age = match req.upload_age_seconds.map(Duration::try_from_secs_f64) {
        None => config
            .upload_purging
            .value
            .enabled
            .then_some(config.upload_purging.value.age),
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => {
            write
                .write_all(format!("error upload_age_seconds: {e}\n").as_bytes())
                .await?;
            return Ok(());
        }
    };
    tracing::info!(
        "garbage collection requested on the admin socket (dry run: {}, delete untagged: {}, grace {}s)",
        req.dry_run,
        req.delete_untagged,
        grace.as_secs_f64()
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let work = async {
        let mut purged = 0;
        if let Some(age) = upload_age {
            match registry.purge_uploads(age, req.dry_run).await {
                Ok(stale) => {
                    purged = stale.len();
                    for s in stale {
                        let _ = tx.send(format!("upload {} {} {}", s.repository, s.id, s.size));
                    }
                }
                Err(e) => {
                    let _ = tx.send(format!("warning upload purging failed: {e}"));
                }
            }
        }
        let opts = GcOptions {
            dry_run: req.dry_run,
            delete_untagged: req.delete_untagged,
            grace,
            ..GcOptions::default()
        };
        let sender = tx.clone();
        let mut sink = move |e: GcEvent| {
            let _ = sender.send(event_line(&e));
        };
        let result = registry.collect_garbage(&opts, &mut sink).await;
        let last = match result {
            Ok(r) => {
                tracing::info!(
                    "garbage collection: {} blobs removed, {} bytes freed in {:.1}s",
                    r.blobs_removed,
                    r.bytes_freed,
                    r.elapsed.as_secs_f64()
                );
                format!(
                    "done {}",
                    serde_json::to_string(&AdminReport::from_gc(&r, purged)).unwrap_or_default()
                )
            }
            Err(e) => format!("error {e}"),
        };
        let _ = tx.send(last);
        drop(tx);
    };
    let forward = async {
        let mut ok = true;
        while let Some(l) = rx.recv().await {
            // The client may go away; the collection still finishes.
            if ok && write.write_all(format!("{l}\n").as_bytes()).await.is_err() {
                ok = false;
            }
        }
    };
    tokio::join!(work, forward);
    Ok(())
}

/// The CLI side: sends a request and hands each answer line to `on_line` until the last
/// one, which is returned: `Ok(report)` for `done`, `Err(message)` otherwise.
pub fn request(
    path: &Path,
    req: &AdminRequest,
    on_line: &mut dyn FnMut(&str),
) -> Result<AdminReport, String> {
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        format!("cannot reach the daemon's admin socket {}: {e} (is the daemon running on this storage, and are you its user or root?)", path.display())
    })?;
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    for l in BufReader::new(stream).lines() {
        let l = l.map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(json) = l.strip_prefix("done ") {
            return serde_json::from_str(json)
                .map_err(|e| format!("unreadable report from the daemon: {e}"));
        }
        if let Some(msg) = l.strip_prefix("error ") {
            return Err(msg.to_owned());
        }
        on_line(&l);
    }
    Err("the daemon closed the admin connection before the collection finished".into())
}

/// Whether a daemon answers on the admin socket (an offline collection must not run then).
pub fn daemon_answers(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}
