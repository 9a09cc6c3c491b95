//! The admin socket, both ends: through it `docker-registry garbage-collect --online` asks
//! the running daemon to collect now.
//!
//! A Unix stream socket (by default `docker-registry-admin.sock` in the filesystem storage
//! root, or `gc.socket`), mode 0600: only the daemon's user and root can connect, so it
//! needs no credentials of its own and is never reachable from the network — unlike an
//! HTTP admin endpoint, which would need its own authentication and could not be told
//! apart from the registry API by a proxy. The protocol is one JSON request line
//! ([`AdminRequest`]) answered by lines: `blob <digest> <size>`, `manifest <repo>@<digest>`,
//! `upload <repo> <id> <size>`, `progress <text>`, `warning <text>`, and a last line
//! `done <report JSON>` or `error <text>`. The same lines serve scripts and the CLI.
//!
//! The daemon side is [`bind`] and [`serve`] (started by [`super::maintenance::spawn`]);
//! the command side is [`request`] and [`daemon_answers`].

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
        // No directory of its own on S3: the local default data directory holds it.
        StorageConfig::S3(_) => config.storage_root.value.join(SOCKET_NAME),
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

/// Binds the admin socket, replacing a stale file left by a daemon that died, but never
/// stealing the socket of a daemon that still answers on it.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
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

/// Answers requests on the admin socket until the task is aborted; `config` gives the
/// defaults a request leaves out (grace, upload purging).
pub async fn serve(listener: UnixListener, registry: Arc<Registry>, config: Config) {
    let config = Arc::new(config);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let registry = registry.clone();
                let config = config.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &registry, &config).await {
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

/// One admin connection: a request line, then the collection's lines as they come.
async fn answer(stream: UnixStream, registry: &Registry, config: &Config) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    tokio::io::BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    let (opts, upload_age) = match collection(&line, config) {
        Ok(c) => c,
        Err(e) => return write.write_all(format!("error {e}\n").as_bytes()).await,
    };
    tracing::info!(
        "garbage collection requested on the admin socket (dry run: {}, delete untagged: {}, grace {}s)",
        opts.dry_run,
        opts.delete_untagged,
        opts.grace.as_secs_f64()
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let work = async move {
        let last = collect(registry, &opts, upload_age, &tx).await;
        let _ = tx.send(last);
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

/// What a request line asks for: the collection's options and the age past which
/// unfinished uploads are purged first (`None`: no purge). `config` fills in what the
/// request leaves out.
fn collection(line: &str, config: &Config) -> Result<(GcOptions, Option<Duration>), String> {
    let req: AdminRequest =
        serde_json::from_str(line.trim()).map_err(|e| format!("request is not valid JSON: {e}"))?;
    if req.command != "garbage-collect" {
        return Err(format!("unknown command {:?}", req.command));
    }
    let grace = match req.grace_seconds.map(Duration::try_from_secs_f64) {
        None => config.gc.value.grace,
        Some(g) => g.map_err(|e| format!("grace_seconds: {e}"))?,
    };
    let purging = &config.upload_purging.value;
    let upload_age = match req.upload_age_seconds.map(Duration::try_from_secs_f64) {
        None => purging.enabled.then_some(purging.age),
        Some(a) => Some(a.map_err(|e| format!("upload_age_seconds: {e}"))?),
    };
    let opts = GcOptions {
        dry_run: req.dry_run,
        delete_untagged: req.delete_untagged,
        grace,
        ..GcOptions::default()
    };
    Ok((opts, upload_age))
}

/// Purges old uploads when asked, then collects, sending a protocol line for each event;
/// returns the last line (`done` or `error`).
async fn collect(
    registry: &Registry,
    opts: &GcOptions,
    upload_age: Option<Duration>,
    lines: &tokio::sync::mpsc::UnboundedSender<String>,
) -> String {
    let mut purged = 0;
    if let Some(age) = upload_age {
        match registry.purge_uploads(age, opts.dry_run).await {
            Ok(stale) => {
                purged = stale.len();
                for s in stale {
                    let _ = lines.send(format!("upload {} {} {}", s.repository, s.id, s.size));
                }
            }
            Err(e) => {
                let _ = lines.send(format!("warning upload purging failed: {e}"));
            }
        }
    }
    let mut sink = |e: GcEvent| {
        let _ = lines.send(event_line(&e));
    };
    match registry.collect_garbage(opts, &mut sink).await {
        Ok(mut r) => {
            r.uploads_purged = purged;
            tracing::info!(
                "garbage collection: {} blobs removed, {} bytes freed in {:.1}s",
                r.blobs_removed,
                r.bytes_freed,
                r.elapsed.as_secs_f64()
            );
            format!("done {}", serde_json::to_string(&r).unwrap_or_default())
        }
        Err(e) => format!("error {e}"),
    }
}

/// The CLI side: sends a request and hands each answer line to `on_line` until the last
/// one, which is returned: `Ok(report)` for `done`, `Err(message)` otherwise.
pub fn request(
    path: &Path,
    req: &AdminRequest,
    on_line: &mut dyn FnMut(&str),
) -> Result<GcReport, String> {
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
