//! The filesystem driver: a directory tree under a root, the same layout `registry:2`'s
//! filesystem driver writes, so an existing data directory is served as it is.
//!
//! Durability: small files are written to a temporary name beside their target, fsynced,
//! renamed over it, and the directory is fsynced; a crash leaves the old file or the new one.
//! Large content goes through [`FsWriter`], which writes from a blocking thread while the
//! next batch arrives, past the page cache where the filesystem allows (see `direct_io`),
//! else through it, starting writeback as it goes; the staged write that moves the finished
//! file into place makes it durable.
//!
//! A crash between writing a temporary and renaming it leaves the temporary (and the
//! directories made for it) behind. Temporaries are named `.<target>.tmp-<32 hex>`, which
//! no listing shows and [`FilesystemDriver::leftovers`] recognises; the first 8 digits mark
//! the process, so that it never takes its own writes in flight for leftovers. Whether
//! another process's temporary is abandoned is told by a lock on `.docker-registry.lock` in
//! the root: every process of ours holds it shared while it runs, so a process that gets it
//! exclusively knows that no other is writing (see [`StorageDriver::use_alone`]).

use super::direct_io::{Direct, DirectWrites, Wrote};
use super::durable::{
    create_beside, create_parent, fsync_dir, kind_of, start_writeback, sync_created, temp_name,
    Kind,
};
use super::group_commit::{self, GroupCommit, Source, StagedFile};
use super::{
    BlobReader, FileInfo, FileWriter, Leftover, Staged, StorageDriver, StorageError, StoragePath,
    StorageResult,
};
use async_trait::async_trait;
use bytes::Bytes;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Bytes gathered by small writes before each write system call.
const WRITE_BUFFER: usize = 256 << 10;

/// The file in the root that processes sharing the store lock (see the module doc).
const LOCK_FILE: &str = ".docker-registry.lock";

#[derive(Debug, Clone)]
pub struct FilesystemDriver {
    root: PathBuf,
    /// Started on the first staged write (see `group_commit`); `None` if the thread could
    /// not be started, and each request then runs the same steps alone.
    committer: Arc<std::sync::OnceLock<Option<GroupCommit>>>,
    /// This process's hold on [`LOCK_FILE`].
    lock: Arc<Mutex<StoreLock>>,
    /// Whether the committer keeps a journal (see [`StorageDriver::journal_writes`]).
    journal: Arc<std::sync::atomic::AtomicBool>,
    /// Whether blobs are written past the page cache (see `direct_io`).
    direct: DirectWrites,
}

/// How this process holds the store's lock file.
#[derive(Debug, Default)]
enum StoreLock {
    #[default]
    Unopened,
    /// Open, not locked (another process used the store alone when we tried).
    Open(File),
    Alone(Flock<File>),
    Shared(Flock<File>),
}

impl FilesystemDriver {
    pub fn new(root: impl Into<PathBuf>) -> FilesystemDriver {
        FilesystemDriver {
            root: root.into(),
            committer: Default::default(),
            lock: Default::default(),
            journal: Default::default(),
            direct: DirectWrites::new(true),
        }
    }

    /// Writes blobs through the page cache instead of past it (see `direct_io`).
    pub fn with_buffered_writes(self) -> FilesystemDriver {
        FilesystemDriver {
            direct: DirectWrites::new(false),
            ..self
        }
    }

    fn committer(&self) -> Option<&GroupCommit> {
        self.committer
            .get_or_init(|| {
                let journal = self.journal.load(std::sync::atomic::Ordering::Relaxed);
                match GroupCommit::start(journal.then_some(self.root.as_path())) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!(
                            "cannot start the storage commit thread ({e}); each staged write syncs alone"
                        );
                        None
                    }
                }
            })
            .as_ref()
    }

    /// Before a write that does not go through the group commit: every write the journal
    /// acknowledged is made durable in place first, so that no replay can undo this one.
    async fn checkpoint(&self) -> StorageResult<()> {
        match self.committer.get() {
            Some(Some(c)) => c.checkpoint().await,
            _ => Ok(()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &StoragePath) -> PathBuf {
        self.root.join(path.as_str())
    }

    /// Opens a file for reading; a directory at the path counts as not found.
    async fn open_regular(&self, path: &StoragePath) -> StorageResult<File> {
        let full = self.full(path);
        let path = path.clone();
        let regular = move |opened: io::Result<(File, fs::Metadata)>| {
            let (f, meta) = opened.map_err(|e| not_found_or(&path, e))?;
            if meta.is_dir() {
                return Err(StorageError::NotFound(path));
            }
            Ok(f)
        };
        match super::cached::open(&full) {
            Some(opened) => regular(opened),
            None => {
                blocking(move || {
                    let opened = File::open(&full).and_then(|f| {
                        let meta = f.metadata()?;
                        Ok((f, meta))
                    });
                    regular(opened)
                })
                .await
            }
        }
    }
}

impl FilesystemDriver {
    /// Temp file beside the target, renamed over it; with `durable`, the file and then its
    /// directory are fsynced so the new content survives a crash once this returns.
    /// Writes a small file through a temporary moved into place; with `only_new`, linked
    /// into place instead, which fails if a file is there: returns whether it was written.
    async fn write_small(
        &self,
        path: &StoragePath,
        content: &[u8],
        durable: bool,
        only_new: bool,
    ) -> StorageResult<bool> {
        let full = self.full(path);
        let path = path.clone();
        let content = content.to_vec();
        blocking(move || {
            let err = |e| StorageError::io(&path, e);
            let tmp = temp_name(&full);
            let result = (|| {
                let mut f = create_beside(&full, &tmp)?;
                f.write_all(&content)?;
                if durable {
                    f.sync_data()?;
                }
                if only_new {
                    let linked = match fs::hard_link(&tmp, &full) {
                        Ok(()) => true,
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                        Err(e) => return Err(e),
                    };
                    fs::remove_file(&tmp)?;
                    return Ok(linked);
                }
                fs::rename(&tmp, &full)?;
                if durable {
                    if let Some(dir) = full.parent() {
                        fsync_dir(dir)?;
                    }
                    sync_created()?;
                }
                Ok(true)
            })();
            if result.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            result.map_err(err)
        })
        .await
    }
}

fn not_found_or(path: &StoragePath, e: io::Error) -> StorageError {
    if e.kind() == io::ErrorKind::NotFound {
        StorageError::NotFound(path.clone())
    } else {
        StorageError::io(path, e)
    }
}

async fn blocking<T, F>(f: F) -> StorageResult<T>
where
    F: FnOnce() -> StorageResult<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(StorageError::Io {
            path: String::new(),
            source: io::Error::other(format!("storage task failed: {e}")),
        }),
    }
}

/// Walks `dir` (at `at` in storage) for [`StorageDriver::leftovers`]: pushes the leftovers
/// found onto `out` and returns whether `dir` held any and nothing else (so it is a leftover
/// itself, and with `remove` is now empty).
fn leftovers_below(
    dir: &Path,
    at: &StoragePath,
    before: Option<SystemTime>,
    remove: bool,
    out: &mut Vec<Leftover>,
) -> StorageResult<bool> {
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StorageError::io(at, e)),
    };
    let (mut found, mut other) = (false, false);
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(at, e))?;
        let (Ok(name), Ok(kind)) = (entry.file_name().into_string(), entry.file_type()) else {
            other = true;
            continue;
        };
        let Ok(path) = at.join(&name) else {
            other = true;
            continue;
        };
        if kind.is_dir() {
            let sub = entry.path();
            if !leftovers_below(&sub, &path, before, remove, out)? {
                other = true;
                continue;
            }
            match remove.then(|| fs::remove_dir(&sub)) {
                // A write began in it meanwhile: it is in use again.
                Some(Err(e)) if e.kind() != io::ErrorKind::NotFound => other = true,
                _ => {
                    found = true;
                    out.push(Leftover::Directory(path));
                }
            }
        } else if kind.is_file()
            && kind_of(&name) == Kind::Temporary
            && before.is_none_or(|t| {
                entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m < t)
            })
        {
            if remove {
                match fs::remove_file(entry.path()) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(StorageError::io(&path, e))
                    }
                    _ => {}
                }
            }
            found = true;
            out.push(Leftover::Temporary(path));
        } else {
            other = true;
        }
    }
    Ok(found && !other)
}

/// Names each leftover directory once, by its topmost leftover directory: the directories
/// and temporaries inside one are not listed again.
fn topmost(found: Vec<Leftover>) -> Vec<Leftover> {
    let dirs: std::collections::HashSet<String> = found
        .iter()
        .filter_map(|l| match l {
            Leftover::Directory(p) => Some(p.as_str().to_owned()),
            Leftover::Temporary(_) | Leftover::Upload(_) => None,
        })
        .collect();
    let inside_another = |p: &StoragePath| {
        let mut parent = p.parent();
        while let Some(q) = parent {
            if dirs.contains(q.as_str()) {
                return true;
            }
            parent = q.parent();
        }
        false
    };
    let mut out: Vec<Leftover> = found
        .into_iter()
        .filter(|l| !inside_another(l.path()))
        .collect();
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

impl FilesystemDriver {
    fn open_lock_file(&self) -> io::Result<File> {
        let path = self.root.join(LOCK_FILE);
        // Read access is enough to lock, and is all another user's file may allow.
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => File::open(&path),
            r => r,
        }
    }
}

#[async_trait]
impl StorageDriver for FilesystemDriver {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn get_content(&self, path: &StoragePath, limit: u64) -> StorageResult<Bytes> {
        let full = self.full(path);
        if let Some(read) = super::cached::content(&full, limit) {
            return read.map_err(|e| not_found_or(path, e));
        }
        let path = path.clone();
        blocking(move || {
            let mut f = File::open(&full).map_err(|e| not_found_or(&path, e))?;
            let meta = f.metadata().map_err(|e| StorageError::io(&path, e))?;
            if meta.is_dir() {
                return Err(StorageError::NotFound(path));
            }
            if meta.len() > limit {
                return Err(StorageError::TooLarge { path, limit });
            }
            let mut buf = Vec::with_capacity(meta.len() as usize);
            // `take` guards against a file that grows between stat and read.
            (&mut f)
                .take(limit + 1)
                .read_to_end(&mut buf)
                .map_err(|e| StorageError::io(&path, e))?;
            if buf.len() as u64 > limit {
                return Err(StorageError::TooLarge { path, limit });
            }
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn put_content(&self, path: &StoragePath, content: &[u8]) -> StorageResult<()> {
        self.checkpoint().await?;
        self.write_small(path, content, true, false).await.map(drop)
    }

    async fn put_small(&self, path: &StoragePath, content: &[u8]) -> StorageResult<()> {
        self.write_small(path, content, false, false)
            .await
            .map(drop)
    }

    async fn create_new(&self, path: &StoragePath, content: &[u8]) -> StorageResult<bool> {
        self.write_small(path, content, false, true).await
    }

    async fn put_staged(&self, stages: &[&[(StoragePath, Staged)]]) -> StorageResult<()> {
        let jobs: Vec<Vec<StagedFile>> = stages
            .iter()
            .map(|stage| {
                stage
                    .iter()
                    .map(|(p, what)| {
                        let source = match what {
                            Staged::Content(c) => Source::Content(c.clone()),
                            Staged::MovedFrom(from) => Source::Moved(self.full(from)),
                        };
                        (p.clone(), self.full(p), source)
                    })
                    .collect()
            })
            .collect();
        match self.committer() {
            Some(c) => c.put_staged(jobs).await,
            None => blocking(move || group_commit::put_staged_alone(jobs)).await,
        }
    }

    async fn reader(&self, path: &StoragePath, offset: u64) -> StorageResult<(BlobReader, u64)> {
        let full = self.full(path);
        let path2 = path.clone();
        let (file, size) = blocking(move || {
            let mut f = File::open(&full).map_err(|e| not_found_or(&path2, e))?;
            let meta = f.metadata().map_err(|e| StorageError::io(&path2, e))?;
            if meta.is_dir() {
                return Err(StorageError::NotFound(path2));
            }
            if offset > 0 {
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| StorageError::io(&path2, e))?;
            }
            Ok((f, meta.len()))
        })
        .await?;
        Ok((Box::new(tokio::fs::File::from_std(file)), size))
    }

    async fn read_chunks(
        &self,
        path: &StoragePath,
        offset: u64,
        len: u64,
    ) -> StorageResult<super::ChunkStream> {
        Ok(file_chunks(self.open_regular(path).await?, offset, len))
    }

    async fn open_file(&self, path: &StoragePath) -> StorageResult<Option<File>> {
        self.open_regular(path).await.map(Some)
    }

    async fn writer(&self, path: &StoragePath, append: bool) -> StorageResult<Box<dyn FileWriter>> {
        let full = self.full(path);
        let path = path.clone();
        let p2 = path.clone();
        let f2 = full.clone();
        let switch = self.direct.clone();
        let (file, size, direct) = blocking(move || {
            let err = |e| StorageError::io(&p2, e);
            create_parent(&f2).map_err(err)?;
            // Direct writes give their own offsets: the descriptor is not O_APPEND then,
            // and goes on from the end if direct I/O is refused later.
            let direct = switch.enabled();
            let mut file = OpenOptions::new()
                .create(true)
                .write(true)
                .read(direct)
                .append(append && !direct)
                .truncate(!append)
                .open(&f2)
                .map_err(err)?;
            let size = file.metadata().map_err(err)?.len();
            let direct = if direct {
                file.seek(SeekFrom::Start(size)).map_err(err)?;
                Some(Direct::start(switch, &file, size).map_err(err)?)
            } else {
                None
            };
            Ok((file, size, direct))
        })
        .await?;
        Ok(Box::new(FsWriter::new(path, full, file, size, direct)))
    }

    async fn stat(&self, path: &StoragePath) -> StorageResult<FileInfo> {
        let full = self.full(path);
        let path = path.clone();
        let info = move |meta: io::Result<fs::Metadata>| {
            let meta = meta.map_err(|e| not_found_or(&path, e))?;
            Ok(FileInfo {
                size: meta.len(),
                modified: meta.modified().map_err(|e| StorageError::io(&path, e))?,
                is_dir: meta.is_dir(),
            })
        };
        match super::cached::metadata(&full) {
            Some(meta) => info(meta),
            None => blocking(move || info(fs::metadata(&full))).await,
        }
    }

    async fn list(&self, path: &StoragePath) -> StorageResult<Vec<String>> {
        let full = self.full(path);
        let path = path.clone();
        blocking(move || {
            let rd = fs::read_dir(&full).map_err(|e| not_found_or(&path, e))?;
            let mut out = Vec::new();
            for entry in rd {
                let entry = entry.map_err(|e| StorageError::io(&path, e))?;
                // Names that are not UTF-8 cannot have been written by a registry.
                if let Ok(name) = entry.file_name().into_string() {
                    if !name.starts_with(".") {
                        out.push(name);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn find_directories_with(
        &self,
        root: &StoragePath,
        marker: &str,
    ) -> StorageResult<Vec<String>> {
        let full = self.full(root);
        let root = root.clone();
        let marker = marker.to_owned();
        blocking(move || {
            let mut out = Vec::new();
            let mut stack: Vec<(PathBuf, String)> = vec![(full, String::new())];
            while let Some((dir, name)) = stack.pop() {
                let rd = match fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StorageError::io(&root, e)),
                };
                let mut has_marker = false;
                for entry in rd {
                    let entry = entry.map_err(|e| StorageError::io(&root, e))?;
                    let Ok(child) = entry.file_name().into_string() else {
                        continue;
                    };
                    if child == marker {
                        has_marker = true;
                    }
                    if child.starts_with('_') || child.starts_with('.') {
                        continue;
                    }
                    // d_type spares a stat per entry on most filesystems.
                    let is_dir = match entry.file_type() {
                        Ok(t) if t.is_symlink() => entry.path().is_dir(),
                        Ok(t) => t.is_dir(),
                        Err(_) => false,
                    };
                    if is_dir {
                        let child_name = if name.is_empty() {
                            child.clone()
                        } else {
                            format!("{name}/{child}")
                        };
                        stack.push((entry.path(), child_name));
                    }
                }
                if has_marker && !name.is_empty() {
                    out.push(name);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn rename(&self, from: &StoragePath, to: &StoragePath) -> StorageResult<()> {
        self.checkpoint().await?;
        let src = self.full(from);
        let dst = self.full(to);
        let from = from.clone();
        let to = to.clone();
        blocking(move || {
            create_parent(&dst).map_err(|e| StorageError::io(&to, e))?;
            fs::rename(&src, &dst).map_err(|e| not_found_or(&from, e))?;
            if let Some(dir) = dst.parent() {
                fsync_dir(dir).map_err(|e| StorageError::io(&to, e))?;
            }
            sync_created().map_err(|e| StorageError::io(&to, e))
        })
        .await
    }

    async fn delete(&self, path: &StoragePath) -> StorageResult<()> {
        self.checkpoint().await?;
        let full = self.full(path);
        let path = path.clone();
        blocking(move || {
            let meta = fs::symlink_metadata(&full).map_err(|e| not_found_or(&path, e))?;
            let r = if meta.is_dir() {
                fs::remove_dir_all(&full)
            } else {
                fs::remove_file(&full)
            };
            r.map_err(|e| not_found_or(&path, e))
        })
        .await
    }

    /// One process, or several on one machine, with the store lock (see `use_alone`).
    fn shared_by_instances(&self) -> bool {
        false
    }

    fn directory_times_track_entries(&self) -> bool {
        true
    }

    async fn redirect_url(
        &self,
        _path: &StoragePath,
        _method: &http::Method,
    ) -> StorageResult<Option<String>> {
        Ok(None)
    }

    async fn check_writable(&self) -> StorageResult<()> {
        let root = self.root.clone();
        blocking(move || {
            let shown = root.display().to_string();
            fs::create_dir_all(&root).map_err(|e| StorageError::io(&shown, e))?;
            let probe = root.join(format!(".write-check-{}", uuid::Uuid::new_v4().simple()));
            let r = File::create(&probe)
                .and_then(|mut f| f.write_all(b"ok"))
                .and_then(|_| fs::remove_file(&probe));
            r.map_err(|e| StorageError::io(&shown, e))
        })
        .await
    }

    async fn use_alone(&self) -> StorageResult<bool> {
        let driver = self.clone();
        blocking(move || {
            let mut held = driver.lock.lock().unwrap_or_else(|p| p.into_inner());
            let file = match std::mem::take(&mut *held) {
                StoreLock::Alone(l) => {
                    *held = StoreLock::Alone(l);
                    return Ok(true);
                }
                StoreLock::Shared(l) => {
                    *held = StoreLock::Shared(l);
                    return Ok(false);
                }
                StoreLock::Open(f) => f,
                StoreLock::Unopened => match driver.open_lock_file() {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(
                            "cannot open {}: {e}; leftovers of interrupted writes are only removed once they are old",
                            driver.root.join(LOCK_FILE).display()
                        );
                        return Ok(false);
                    }
                },
            };
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(l) => {
                    *held = StoreLock::Alone(l);
                    Ok(true)
                }
                Err((f, _)) => {
                    *held = StoreLock::Open(f);
                    Ok(false)
                }
            }
        })
        .await
    }

    async fn use_shared(&self) -> StorageResult<()> {
        let driver = self.clone();
        blocking(move || {
            let mut held = driver.lock.lock().unwrap_or_else(|p| p.into_inner());
            let file = match std::mem::take(&mut *held) {
                StoreLock::Alone(l) => {
                    // Downgrading cannot wait: nobody else holds the lock.
                    if let Err(e) = l.relock(FlockArg::LockShared) {
                        tracing::warn!("cannot share {}: {e}", LOCK_FILE);
                    }
                    *held = StoreLock::Shared(l);
                    return Ok(());
                }
                StoreLock::Shared(l) => {
                    *held = StoreLock::Shared(l);
                    return Ok(());
                }
                StoreLock::Open(f) => f,
                StoreLock::Unopened => match driver.open_lock_file() {
                    Ok(f) => f,
                    Err(_) => return Ok(()),
                },
            };
            let file = match Flock::lock(file, FlockArg::LockSharedNonblock) {
                Ok(l) => {
                    *held = StoreLock::Shared(l);
                    return Ok(());
                }
                Err((f, _)) => f,
            };
            tracing::info!(
                "waiting for another docker-registry process clearing leftovers of interrupted writes in {}",
                driver.root.display()
            );
            match Flock::lock(file, FlockArg::LockShared) {
                Ok(l) => *held = StoreLock::Shared(l),
                Err((f, e)) => {
                    tracing::warn!("cannot lock {}: {e}", driver.root.join(LOCK_FILE).display());
                    *held = StoreLock::Open(f);
                }
            }
            Ok(())
        })
        .await
    }

    async fn replay_journals(&self) -> StorageResult<usize> {
        let root = self.root.clone();
        blocking(move || {
            super::journal::replay_orphans(&root, &group_commit::side_by_side)
                .map_err(|e| StorageError::io(root.display(), e))
        })
        .await
    }

    async fn journal_writes(&self) {
        self.journal
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    async fn flush(&self) -> StorageResult<()> {
        match self.committer.get() {
            Some(Some(c)) => c.close().await,
            _ => Ok(()),
        }
    }

    async fn leftovers(
        &self,
        under: &StoragePath,
        before: Option<SystemTime>,
        remove: bool,
    ) -> StorageResult<Vec<Leftover>> {
        let full = self.full(under);
        let under = under.clone();
        blocking(move || {
            let mut found = Vec::new();
            leftovers_below(&full, &under, before, remove, &mut found)?;
            Ok(topmost(found))
        })
        .await
    }
}

/// Read buffers kept for the next chunk once the network has sent theirs: each is zeroed once,
/// when first made, and then read into again and again, so no chunk pays for clearing memory
/// the file's bytes overwrite anyway (and no read goes into uninitialised memory). At most
/// [`KEPT_BUFFERS`] wait here (8 MiB); beyond, a sent buffer is freed.
static READ_BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
const KEPT_BUFFERS: usize = 16;

/// A read buffer on loan: its first `len` bytes are a chunk's content; dropped (when the
/// chunk is sent), it goes back to [`READ_BUFFERS`].
struct ReadBuffer {
    buf: Vec<u8>,
    len: usize,
}

impl ReadBuffer {
    /// A buffer of at least `n` initialised bytes, a kept one where there is one.
    fn take(n: usize) -> ReadBuffer {
        let kept = READ_BUFFERS.lock().ok().and_then(|mut kept| kept.pop());
        let mut buf = kept.unwrap_or_default();
        if buf.len() < n {
            // Zeroes only what the buffer never had: kept buffers stay at their full length.
            buf.resize(n, 0);
        }
        ReadBuffer { buf, len: 0 }
    }
}

impl AsRef<[u8]> for ReadBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for ReadBuffer {
    fn drop(&mut self) {
        if let Ok(mut kept) = READ_BUFFERS.lock() {
            if kept.len() < KEPT_BUFFERS && self.buf.len() <= super::READ_CHUNK {
                kept.push(std::mem::take(&mut self.buf));
            }
        }
    }
}

/// `n` bytes of `file` at `offset`, read with `pread` into a [`ReadBuffer`] and handed out
/// without another copy.
fn read_chunk(file: &File, offset: u64, n: usize) -> io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut chunk = ReadBuffer::take(n);
    while chunk.len < n {
        match file.read_at(&mut chunk.buf[chunk.len..n], offset + chunk.len as u64) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "blob shorter than its recorded size",
                ))
            }
            Ok(k) => chunk.len += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Bytes::from_owner(chunk))
}

/// `len` bytes of an open file from `offset`, as a stream of chunks (see [`FileChunks`]).
pub fn file_chunks(file: File, offset: u64, len: u64) -> super::ChunkStream {
    Box::pin(FileChunks {
        file: std::sync::Arc::new(file),
        offset,
        remaining: len,
        pending: None,
        cached_first: true,
    })
}

/// Reads a file in [`super::READ_CHUNK`] pieces. What the page cache holds (a blob pulled
/// before, or just pushed) is read on the spot, on the request's own thread: a copy of memory,
/// no hand-off to another thread and back. Anything else is read with `pread` on the blocking
/// pool, one read always in flight ahead of the network. No thread waits on a slow client:
/// each read is its own short task.
struct FileChunks {
    file: std::sync::Arc<File>,
    offset: u64,
    remaining: u64,
    pending: Option<tokio::task::JoinHandle<io::Result<Bytes>>>,
    /// Whether reads from the page cache are tried first: cleared when the filesystem refuses
    /// them.
    cached_first: bool,
}

impl FileChunks {
    /// The size of the next read: a chunk, or what is left.
    fn next_len(&self) -> usize {
        self.remaining.min(super::READ_CHUNK as u64) as usize
    }

    /// The next chunk, when the page cache holds its start: read on the spot into a
    /// [`ReadBuffer`] (see [`super::cached::read_at`]).
    fn read_cached(&mut self) -> Option<Bytes> {
        if !self.cached_first || self.pending.is_some() || self.remaining == 0 {
            return None;
        }
        let n = self.next_len();
        let mut chunk = ReadBuffer::take(n);
        match super::cached::read_at(&self.file, &mut chunk.buf[..n], self.offset) {
            Ok(Some(got)) => {
                chunk.len = got;
                self.offset += got as u64;
                self.remaining -= got as u64;
                Some(Bytes::from_owner(chunk))
            }
            Ok(None) => None,
            Err(_) => {
                self.cached_first = false;
                None
            }
        }
    }

    fn start_read(&mut self) {
        if self.remaining == 0 || self.pending.is_some() {
            return;
        }
        let n = self.next_len();
        let file = self.file.clone();
        let offset = self.offset;
        self.offset += n as u64;
        self.remaining -= n as u64;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            read_chunk(&file, offset, n)
        }));
    }
}

impl futures_core::Stream for FileChunks {
    type Item = io::Result<Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        if let Some(chunk) = this.read_cached() {
            return Poll::Ready(Some(Ok(chunk)));
        }
        this.start_read();
        let Some(handle) = this.pending.as_mut() else {
            return Poll::Ready(None);
        };
        match std::pin::Pin::new(handle).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(joined) => {
                this.pending = None;
                let result = joined
                    .unwrap_or_else(|e| Err(io::Error::other(format!("read task failed: {e}"))));
                if result.is_ok() {
                    // Read ahead while this chunk goes out.
                    this.start_read();
                } else {
                    this.remaining = 0;
                }
                Poll::Ready(Some(result))
            }
        }
    }
}

/// What a write task hands back: the file, its direct-write state (`None` for buffered
/// writes), the emptied copy buffer (if it used one), and the offset up to which writeback
/// has been started.
type WriteDone = (File, Option<Direct>, Option<Vec<u8>>, u64);
type PendingWrite = tokio::task::JoinHandle<io::Result<WriteDone>>;

/// Once this many bytes are written but not yet handed to writeback, the kernel is asked to
/// start writing them out (`sync_file_range`), so that the sync that makes an upload durable
/// finds little left to do and a large upload never piles up gigabytes of dirty pages.
const WRITEBACK_STEP: u64 = 8 << 20;

/// What a write task writes: bytes gathered by [`FileWriter::write`], or chunks as they came
/// off the network.
enum WriteJob {
    Buffer(Vec<u8>),
    Chunks(Vec<Bytes>),
}

/// Append-only writer over a local file. While one write runs on a blocking thread the
/// request keeps receiving, so receiving, hashing and writing overlap instead of taking
/// turns. Whole blocks go past the page cache where the filesystem allows (`direct_io`);
/// otherwise chunks from the network are written as they are (`writev`). Small writes are
/// gathered into a buffer allocated on first use.
pub struct FsWriter {
    path: StoragePath,
    full: PathBuf,
    /// The file, when no write is in flight.
    file: Option<File>,
    /// Direct writes, when no write is in flight; `None` for buffered ones.
    direct: Option<Direct>,
    /// The write in flight.
    pending: Option<PendingWrite>,
    buf: Vec<u8>,
    spare: Option<Vec<u8>>,
    /// Bytes accepted so far, in the file or on their way to it.
    size: u64,
    /// Bytes handed to write tasks: the file's length once they finish.
    handed: u64,
    /// Everything before this offset has been handed to writeback.
    writeback_from: u64,
}

impl FsWriter {
    fn new(
        path: StoragePath,
        full: PathBuf,
        file: File,
        size: u64,
        direct: Option<Direct>,
    ) -> FsWriter {
        FsWriter {
            path,
            full,
            file: Some(file),
            direct,
            pending: None,
            buf: Vec::new(),
            spare: None,
            size,
            handed: size,
            writeback_from: size,
        }
    }

    /// Waits for the write in flight, if any, and takes the file back.
    async fn settle(&mut self) -> StorageResult<()> {
        if let Some(h) = self.pending.take() {
            let (file, direct, buf, writeback_from) = h
                .await
                .map_err(|e| {
                    StorageError::io(
                        &self.path,
                        io::Error::other(format!("write task failed: {e}")),
                    )
                })?
                .map_err(|e| StorageError::io(&self.path, e))?;
            self.file = Some(file);
            self.direct = direct;
            if buf.is_some() {
                self.spare = buf;
            }
            self.writeback_from = writeback_from;
        }
        Ok(())
    }

    /// Hands a job to a blocking thread, after the one before it has finished.
    async fn submit(&mut self, job: WriteJob) -> StorageResult<()> {
        self.settle().await?;
        let Some(mut file) = self.file.take() else {
            return Err(StorageError::io(
                &self.path,
                io::Error::other("writer already closed"),
            ));
        };
        let len = match &job {
            WriteJob::Buffer(b) => b.len() as u64,
            WriteJob::Chunks(c) => c.iter().map(|b| b.len() as u64).sum(),
        };
        let end = self.handed + len;
        self.handed = end;
        let mut writeback_from = self.writeback_from;
        let mut direct = self.direct.take();
        let full = self.full.clone();
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let pieces: Vec<&[u8]> = match &job {
                WriteJob::Buffer(b) => vec![b],
                WriteJob::Chunks(c) => c.iter().map(|c| &c[..]).collect(),
            };
            match direct.as_mut() {
                Some(d) => {
                    if let Wrote::Buffered = d.write(&full, &file, &pieces)? {
                        direct = None;
                    }
                    // Nothing of a direct write waits in the page cache for writeback.
                    writeback_from = end;
                }
                None => {
                    write_all_chunks(&mut file, &pieces)?;
                    if end - writeback_from >= WRITEBACK_STEP {
                        start_writeback(&file, writeback_from, end - writeback_from);
                        writeback_from = end;
                    }
                }
            }
            let buf = match job {
                WriteJob::Buffer(mut b) => {
                    b.clear();
                    Some(b)
                }
                WriteJob::Chunks(_) => None,
            };
            Ok((file, direct, buf, writeback_from))
        }));
        Ok(())
    }

    /// Hands the gathered buffer to a write task, keeping the spare one for what follows.
    async fn submit_buffer(&mut self) -> StorageResult<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.settle().await?;
        let next = self.spare.take().unwrap_or_default();
        let buf = std::mem::replace(&mut self.buf, next);
        self.submit(WriteJob::Buffer(buf)).await
    }

    /// Everything written so far is in the file.
    async fn drain(&mut self) -> StorageResult<()> {
        self.submit_buffer().await?;
        self.settle().await?;
        // The last partial block of direct writes goes through the page cache.
        if !self.direct.as_ref().is_some_and(|d| d.carries()) {
            return Ok(());
        }
        let (Some(file), Some(mut d)) = (self.file.take(), self.direct.take()) else {
            return Ok(());
        };
        let path = self.path.clone();
        let (file, d) = blocking(move || {
            d.finish(&file).map_err(|e| StorageError::io(&path, e))?;
            Ok((file, d))
        })
        .await?;
        self.file = Some(file);
        self.direct = Some(d);
        Ok(())
    }
}

/// `write_all` over a list of chunks with as few `writev` calls as the kernel allows.
fn write_all_chunks(file: &mut File, chunks: &[&[u8]]) -> io::Result<()> {
    // IOV_MAX is 1024 on Linux; batches are far smaller, but stay within it regardless.
    for group in chunks.chunks(512) {
        // Empty slices are left out: a trailing one would look like a write of zero bytes.
        let mut slices: Vec<io::IoSlice<'_>> = group
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| io::IoSlice::new(c))
            .collect();
        let mut rest: &mut [io::IoSlice<'_>] = &mut slices;
        while !rest.is_empty() {
            match file.write_vectored(rest) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => io::IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[async_trait]
impl FileWriter for FsWriter {
    async fn write(&mut self, mut data: &[u8]) -> StorageResult<()> {
        while !data.is_empty() {
            if self.buf.capacity() == 0 {
                self.buf
                    .reserve_exact(WRITE_BUFFER.min(data.len().max(8 << 10)));
            }
            let room = WRITE_BUFFER - self.buf.len();
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            self.size += n as u64;
            data = &data[n..];
            if self.buf.len() >= WRITE_BUFFER {
                self.submit_buffer().await?;
            }
        }
        Ok(())
    }

    async fn write_chunks(&mut self, chunks: Vec<Bytes>) -> StorageResult<()> {
        // Bytes gathered by `write` go first, to keep the order.
        self.submit_buffer().await?;
        let len: u64 = chunks.iter().map(|b| b.len() as u64).sum();
        if len == 0 {
            return Ok(());
        }
        self.size += len;
        self.submit(WriteJob::Chunks(chunks)).await
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn close(mut self: Box<Self>) -> StorageResult<u64> {
        self.drain().await?;
        Ok(self.size)
    }

    async fn cancel(mut self: Box<Self>) -> StorageResult<()> {
        let _ = self.settle().await;
        self.file = None;
        let full = self.full.clone();
        let path = self.path.clone();
        blocking(move || match fs::remove_file(&full) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(&path, e)),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::durable::instance;
    use tokio::io::AsyncReadExt;

    /// A blob read partly from the page cache (on the request's thread) and partly from the
    /// disk (on the blocking pool) streams exactly its bytes, in order, from any offset.
    #[tokio::test]
    async fn streams_blobs_partly_in_the_page_cache() {
        use futures_util::StreamExt;
        use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        let len = 3 * super::super::READ_CHUNK + 4099;
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
        fs::write(&path, &bytes).expect("write");
        for (offset, evict) in [(0, 0), (0, 1), (5, 2), (super::super::READ_CHUNK + 1, 3)] {
            let f = File::open(&path).expect("open");
            f.sync_all().expect("sync");
            // Evicts every `evict`-th chunk-sized region (none for 0), so that reads alternate
            // between the two paths; on a filesystem that keeps no page cache, all are cached.
            if evict > 0 {
                for (i, at) in (0..len).step_by(super::super::READ_CHUNK).enumerate() {
                    if i % evict == 0 {
                        let n = super::super::READ_CHUNK as i64;
                        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
                        posix_fadvise(fd, at as i64, n, PosixFadviseAdvice::POSIX_FADV_DONTNEED)
                            .expect("fadvise");
                    }
                }
            }
            let mut s = file_chunks(f, offset as u64, (len - offset) as u64);
            let mut got = Vec::new();
            while let Some(chunk) = s.next().await {
                got.extend_from_slice(&chunk.expect("chunk"));
            }
            assert!(
                got == bytes[offset..],
                "from {offset}, evicting every {evict}"
            );
        }
        // A file shorter than the length asked for ends the stream with an error.
        let f = File::open(&path).expect("open");
        let mut s = file_chunks(f, 0, len as u64 + 10);
        let mut last = None;
        while let Some(chunk) = s.next().await {
            last = Some(chunk.map(|c| c.len()));
        }
        assert!(matches!(last, Some(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof));
    }

    #[tokio::test]
    async fn round_trips_content_and_streams() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = FilesystemDriver::new(dir.path());
        let p = StoragePath::new(["a", "b", "link"]).expect("path");
        d.put_content(&p, b"sha256:x").await.expect("put");
        assert_eq!(&d.get_content(&p, 100).await.expect("get")[..], b"sha256:x");
        assert!(matches!(
            d.get_content(&p, 3).await,
            Err(StorageError::TooLarge { .. })
        ));

        let w = StoragePath::new(["up", "data"]).expect("path");
        let mut wr = d.writer(&w, false).await.expect("writer");
        wr.write(&vec![7u8; WRITE_BUFFER + 10])
            .await
            .expect("write");
        assert_eq!(wr.close().await.expect("close"), WRITE_BUFFER as u64 + 10);
        let mut wr = d.writer(&w, true).await.expect("append");
        assert_eq!(wr.size(), WRITE_BUFFER as u64 + 10);
        wr.write(b"xyz").await.expect("write");
        wr.close().await.expect("close");
        let (mut r, size) = d
            .reader(&w, WRITE_BUFFER as u64 + 10)
            .await
            .expect("reader");
        assert_eq!(size, WRITE_BUFFER as u64 + 13);
        let mut s = String::new();
        r.read_to_string(&mut s).await.expect("read");
        assert_eq!(s, "xyz");

        let mut names = d
            .list(&StoragePath::new(["a"]).expect("p"))
            .await
            .expect("list");
        names.sort();
        assert_eq!(names, vec!["b"]);
        d.delete(&StoragePath::new(["a"]).expect("p"))
            .await
            .expect("delete");
        assert!(d.stat(&p).await.expect_err("gone").is_not_found());
    }

    /// Every file under `root` whose name starts with `.` (temporaries).
    fn temporaries(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).expect("read_dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if e.file_name().to_string_lossy().starts_with('.') {
                    out.push(p);
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn staged_writes_land_whole_and_leave_no_temporaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = FilesystemDriver::new(dir.path());
        let p = |parts: &[&str]| StoragePath::new(parts.iter().copied()).expect("path");
        let (data, link, tag) = (
            p(&["blobs", "ab", "data"]),
            p(&["repo", "rev", "link"]),
            p(&["repo", "tag", "link"]),
        );
        d.put_content(&tag, b"old").await.expect("old tag");
        let upload = p(&["uploads", "u1", "data"]);
        let blob = p(&["blobs", "cd", "data"]);
        let mut w = d.writer(&upload, false).await.expect("writer");
        w.write(b"uploaded").await.expect("write");
        w.close().await.expect("close");
        d.put_staged(&[
            &[
                (
                    data.clone(),
                    Staged::Content(Bytes::from_static(b"content")),
                ),
                (blob.clone(), Staged::MovedFrom(upload.clone())),
            ],
            &[(
                link.clone(),
                Staged::Content(Bytes::from_static(b"sha256:ab")),
            )],
            &[],
            &[(tag.clone(), Staged::Content(Bytes::from_static(b"new")))],
        ])
        .await
        .expect("staged");
        assert_eq!(
            &d.get_content(&data, 100).await.expect("data")[..],
            b"content"
        );
        assert_eq!(
            &d.get_content(&link, 100).await.expect("link")[..],
            b"sha256:ab"
        );
        assert_eq!(&d.get_content(&tag, 100).await.expect("tag")[..], b"new");
        assert_eq!(
            &d.get_content(&blob, 100).await.expect("blob")[..],
            b"uploaded"
        );
        assert!(d.stat(&upload).await.expect_err("moved").is_not_found());
        assert!(temporaries(dir.path()).is_empty());
        // Moving a file that is not there fails, and takes nothing else with it.
        let missing = p(&["uploads", "gone", "data"]);
        let err = d
            .put_staged(&[
                &[(p(&["x", "data"]), Staged::Content(Bytes::from_static(b"x")))],
                &[(p(&["y", "data"]), Staged::MovedFrom(missing))],
            ])
            .await
            .expect_err("missing source");
        assert!(err.is_not_found(), "{err}");
        assert!(d.stat(&p(&["x", "data"])).await.is_err());
        assert!(temporaries(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn chunks_and_small_writes_keep_their_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = FilesystemDriver::new(dir.path());
        let p = StoragePath::new(["up", "data"]).expect("path");
        let mut w = d.writer(&p, false).await.expect("writer");
        w.write(b"ab").await.expect("write");
        w.write_chunks(vec![
            Bytes::from_static(b"cd"),
            Bytes::new(),
            Bytes::from_static(b"ef"),
        ])
        .await
        .expect("chunks");
        w.write(b"g").await.expect("write");
        w.write_chunks(vec![Bytes::new()]).await.expect("empty");
        assert_eq!(w.size(), 7);
        assert_eq!(w.close().await.expect("close"), 7);
        assert_eq!(&d.get_content(&p, 100).await.expect("get")[..], b"abcdefg");

        // Batches past the writeback step, appended to what is there.
        let mut w = d.writer(&p, true).await.expect("append");
        let block: Vec<Bytes> = (0..12u8).map(|i| Bytes::from(vec![i; 1 << 20])).collect();
        w.write_chunks(block.clone()).await.expect("big");
        w.write_chunks(block).await.expect("big again");
        let size = w.close().await.expect("close");
        assert_eq!(size, 7 + 24 * (1 << 20));
        let all = d.get_content(&p, size).await.expect("get");
        assert_eq!(all.len() as u64, size);
        assert_eq!(&all[..7], b"abcdefg");
        assert_eq!(all[7 + (13 << 20)], 1);
        assert_eq!(all[all.len() - 1], 11);
    }

    /// Pieces of odd sizes, through both ways in (gathered small writes and network
    /// chunks), across whole blocks and continued at unaligned lengths, come out whole and
    /// in order, with direct writes and without.
    #[tokio::test]
    async fn odd_pieces_continued_at_unaligned_lengths_come_out_whole() {
        use super::super::direct_io::tests::pattern;
        const MIB: usize = 1 << 20;
        let dirs = [tempfile::tempdir(), tempfile::tempdir()].map(|d| d.expect("tempdir"));
        for d in [
            FilesystemDriver::new(dirs[0].path()),
            FilesystemDriver::new(dirs[1].path()).with_buffered_writes(),
        ] {
            let p = StoragePath::new(["up", "data"]).expect("path");
            let mut at = 0;
            for (append, sizes) in [
                (false, vec![3, WRITE_BUFFER - 1, 2, MIB + 4097]),
                (true, vec![1, 4095, 2 * MIB + 11]),
                (true, vec![]),
                (true, vec![WRITE_BUFFER + 5, MIB]),
            ] {
                let mut w = d.writer(&p, append).await.expect("writer");
                assert_eq!(w.size(), at as u64);
                for (i, n) in sizes.into_iter().enumerate() {
                    let piece = pattern(at, n);
                    if i % 2 == 0 {
                        let (a, b) = piece.split_at(n / 3);
                        let chunks = vec![Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)];
                        w.write_chunks(chunks).await.expect("chunks");
                    } else {
                        w.write(&piece).await.expect("write");
                    }
                    at += n;
                }
                assert_eq!(w.close().await.expect("close"), at as u64);
                let all = d.get_content(&p, at as u64).await.expect("get");
                assert!(all[..] == pattern(0, at)[..], "{at} bytes differ");
            }
        }
    }

    /// Many requests at once share the committer's cycles: every one of them lands whole,
    /// with its stages in order, and a request with a bad path fails alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_staged_writes_all_land_and_a_failure_stays_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = FilesystemDriver::new(dir.path());
        // A regular file where a directory would have to be: writes below it fail.
        std::fs::write(dir.path().join("blocked"), b"").expect("blocker");
        let mut tasks = Vec::new();
        for i in 0..40u32 {
            let d = d.clone();
            tasks.push(tokio::spawn(async move {
                let root = if i == 7 { "blocked" } else { "ok" };
                let p = |leaf: &str| StoragePath::new([root, &format!("r{i}"), leaf]).expect("p");
                let content = [(
                    p("data"),
                    Staged::Content(Bytes::from(format!("content {i}"))),
                )];
                let links = [(p("link"), Staged::Content(Bytes::from(format!("link {i}"))))];
                let tag = [(p("tag"), Staged::Content(Bytes::from(format!("tag {i}"))))];
                (i, d.put_staged(&[&content, &links, &tag]).await)
            }));
        }
        for t in tasks {
            let (i, result) = t.await.expect("join");
            if i == 7 {
                assert!(result.is_err(), "a write below a file fails");
                continue;
            }
            result.expect("staged write");
            for (leaf, want) in [("data", "content"), ("link", "link"), ("tag", "tag")] {
                let p = StoragePath::new(["ok", &format!("r{i}"), leaf]).expect("p");
                let got = d.get_content(&p, 100).await.expect("read back");
                assert_eq!(&got[..], format!("{want} {i}").as_bytes());
            }
        }
        assert!(temporaries(dir.path()).is_empty());
    }

    /// Another process's temporaries and the directories that held only them are leftovers;
    /// this process's own are writes in flight, whatever their age.
    #[tokio::test]
    async fn leftovers_are_other_processes_temporaries_never_ours() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = FilesystemDriver::new(dir.path());
        let other = if instance().starts_with('0') {
            "1"
        } else {
            "0"
        };
        let theirs = dir
            .path()
            .join(format!("v2/a/b/.link.tmp-{}", other.repeat(32)));
        let ours = temp_name(&dir.path().join("v2/c/link"));
        for f in [&theirs, &ours] {
            create_parent(f).expect("mkdir");
            fs::write(f, b"x").expect("write");
        }
        let under = StoragePath::new(["v2"]).expect("path");
        let found = d.leftovers(&under, None, true).await.expect("leftovers");
        assert_eq!(
            found,
            vec![Leftover::Directory(StoragePath::new(["v2/a"]).expect("p"))]
        );
        assert!(!dir.path().join("v2/a").exists());
        assert!(ours.exists(), "a write in flight here is not a leftover");
        assert!(d
            .leftovers(&under, None, true)
            .await
            .expect("again")
            .is_empty());
    }

    /// Without the committer thread, a staged write runs the same steps alone.
    #[test]
    fn a_staged_write_alone_lands_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let full = |p: &str| dir.path().join(p);
        let path = |p: &str| StoragePath::new([p]).expect("path");
        fs::write(full("upload"), b"uploaded").expect("upload");
        let stages = vec![
            vec![(path("blob"), full("blob"), Source::Moved(full("upload")))],
            vec![(
                path("link"),
                full("link"),
                Source::Content(Bytes::from_static(b"sha256:ab")),
            )],
        ];
        group_commit::put_staged_alone(stages).expect("staged");
        assert_eq!(fs::read(full("blob")).expect("blob"), b"uploaded");
        assert_eq!(fs::read(full("link")).expect("link"), b"sha256:ab");
        assert!(!full("upload").exists());
        assert!(temporaries(dir.path()).is_empty());
    }
}
