//! The storage driver: the small interface every backend implements (filesystem now, S3
//! later). Everything above it — blobs, links, tags, uploads — is written once against
//! [`StorageDriver`], so a backend knows nothing of HTTP, manifests or digests.
//!
//! Paths are [`StoragePath`]s: `/`-separated, relative to the backend's root, built only by
//! the registry's layout code from validated names, and re-checked here so that no path can
//! leave the root whatever a caller does.

mod cached;
#[cfg(test)]
mod conformance;
mod direct_io;
mod durable;
pub mod filesystem;
mod group_commit;
mod journal;
pub mod memory;
pub mod s3;
mod side_by_side;
pub mod timed;

use async_trait::async_trait;
use bytes::Bytes;
use std::fmt;
use std::time::SystemTime;
use tokio::io::AsyncRead;

pub use filesystem::{file_chunks, FilesystemDriver};
pub use memory::MemoryDriver;
pub use s3::{S3Driver, S3Options};
pub use timed::TimedDriver;

/// A path inside a storage backend, e.g. `docker/registry/v2/blobs/sha256/ab/ab…/data`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoragePath(String);

impl StoragePath {
    /// Builds a path from components; each must be a plain name (no `/`, not `.` or `..`,
    /// not empty, no NUL).
    pub fn new<I, S>(components: I) -> Result<StoragePath, StorageError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = String::new();
        for c in components {
            let c = c.as_ref();
            for part in c.split('/') {
                if part.is_empty() || part == "." || part == ".." || part.contains('\0') {
                    return Err(StorageError::InvalidPath(format!("{out}/{c}")));
                }
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(part);
            }
        }
        if out.is_empty() {
            return Err(StorageError::InvalidPath(String::new()));
        }
        Ok(StoragePath(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A child of this path; the same checks as [`StoragePath::new`].
    pub fn join(&self, child: &str) -> Result<StoragePath, StorageError> {
        StoragePath::new([self.0.as_str(), child])
    }

    pub fn parent(&self) -> Option<StoragePath> {
        self.0
            .rsplit_once('/')
            .map(|(p, _)| StoragePath(p.to_owned()))
    }

    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[derive(Debug)]
pub enum StorageError {
    NotFound(StoragePath),
    InvalidPath(String),
    TooLarge {
        path: StoragePath,
        limit: u64,
    },
    /// The backend refused because it is full (ENOSPC, EDQUOT).
    Full(StoragePath),
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The backend cannot be reached or keeps failing (S3 down, throttling): worth retrying
    /// later; the API answers 503 UNAVAILABLE with `Retry-After`.
    Unavailable {
        /// Which backend, for the message (`s3://bucket/prefix at endpoint`).
        backend: String,
        reason: String,
    },
}

impl StorageError {
    pub fn io(path: impl fmt::Display, source: std::io::Error) -> StorageError {
        match source.raw_os_error() {
            Some(code) if code == nix::libc::ENOSPC || code == nix::libc::EDQUOT => {
                StorageError::Full(StoragePath(path.to_string()))
            }
            _ => StorageError::Io {
                path: path.to_string(),
                source,
            },
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound(_))
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::NotFound(p) => write!(f, "{p}: not found"),
            StorageError::InvalidPath(p) => write!(f, "invalid storage path {p:?}"),
            StorageError::TooLarge { path, limit } => {
                write!(f, "{path}: larger than the {limit} bytes allowed")
            }
            StorageError::Full(p) => write!(f, "{p}: no space left on the storage device"),
            StorageError::Io { path, source } => write!(f, "{path}: {source}"),
            StorageError::Unavailable { backend, reason } => {
                write!(f, "{backend}: unavailable: {reason}")
            }
        }
    }
}

impl std::error::Error for StorageError {}

pub type StorageResult<T> = Result<T, StorageError>;

/// What `stat` knows about an entry.
#[derive(Debug, Clone)]
pub struct FileInfo {
    pub size: u64,
    pub modified: SystemTime,
    pub is_dir: bool,
}

/// What [`StorageDriver::put_staged`] puts at a path.
#[derive(Clone, Debug)]
pub enum Staged {
    /// These bytes (a small file: a manifest, a link).
    Content(Bytes),
    /// The file now at this path, moved (a finished upload becoming a blob). Its writer must
    /// have been closed; making its content durable is part of the staged write, before the
    /// move. A backend that keeps the default `put_staged` must make `close`d content durable
    /// itself.
    MovedFrom(StoragePath),
}

/// What an interrupted write left in a backend (see [`StorageDriver::leftovers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    /// A temporary that was never moved into place.
    Temporary(StoragePath),
    /// A directory that held nothing but leftovers (the topmost such one is named).
    Directory(StoragePath),
    /// An unfinished multipart upload (object stores) at this path that holds no file's
    /// content: an object at the path shadows it, or a newer upload there does.
    Upload(StoragePath),
}

impl Leftover {
    pub fn path(&self) -> &StoragePath {
        match self {
            Leftover::Temporary(p) | Leftover::Directory(p) | Leftover::Upload(p) => p,
        }
    }
}

/// A readable stream positioned at the requested offset.
pub type BlobReader = Box<dyn AsyncRead + Send + Unpin>;

/// Content as a stream of chunks, for serving: each chunk is handed to the network as it is,
/// without another copy.
pub type ChunkStream =
    std::pin::Pin<Box<dyn futures_core::Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Bytes per chunk when streaming content out.
pub const READ_CHUNK: usize = 512 << 10;

/// A streaming writer for large content (uploads). Nothing written is visible at its final
/// place until the layer above moves it there, with [`StorageDriver::put_staged`], which
/// also makes the bytes durable.
#[async_trait]
pub trait FileWriter: Send {
    /// Appends bytes.
    async fn write(&mut self, data: &[u8]) -> StorageResult<()>;
    /// Appends a batch of chunks as they came off the network, without copying them into
    /// a buffer of the writer's own where the backend can write them as they are.
    async fn write_chunks(&mut self, chunks: Vec<Bytes>) -> StorageResult<()> {
        for c in chunks {
            self.write(&c).await?;
        }
        Ok(())
    }
    /// Bytes in the file so far, including what was there when it was opened for append.
    fn size(&self) -> u64;
    /// Flushes what was written, without the durability promise (a PATCH that ends, or an
    /// upload about to be moved into place by a staged write).
    async fn close(self: Box<Self>) -> StorageResult<u64>;
    /// Abandons and removes the content.
    async fn cancel(self: Box<Self>) -> StorageResult<()>;
}

/// The storage backend interface. Implementations must be safe to share between tasks.
///
/// No method has a default body: a wrapper ([`TimedDriver`]) that forgot one would silently
/// run the default instead of the wrapped driver's own (losing the filesystem's `open_file`,
/// hence zero-copy pulls, or S3's `shared_by_instances`). So every implementation says what
/// it does for each, and the compiler refuses one that does not; a backend without anything
/// better calls the plain versions below ([`put_staged_in_turn`], [`chunks_from_reader`],
/// [`walk_for_marker`]) or answers as the method's documentation says "backends without
/// one" do.
#[async_trait]
pub trait StorageDriver: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs: `filesystem`, `s3`.
    fn name(&self) -> &'static str;

    /// A human description of where data goes (a directory, a bucket).
    fn location(&self) -> String;

    /// Reads a whole small file (links, manifests), refusing anything over `limit` bytes.
    async fn get_content(&self, path: &StoragePath, limit: u64) -> StorageResult<Bytes>;

    /// Writes a small file atomically and durably: readers see the old content or the new,
    /// never a mix.
    async fn put_content(&self, path: &StoragePath, content: &[u8]) -> StorageResult<()>;

    /// Writes a small file atomically, without waiting for it to reach the disk: for link
    /// files, whose loss in a crash leaves the state from before (a missing tag or link),
    /// never a half-written one. Backends where every write is durable call `put_content`.
    async fn put_small(&self, path: &StoragePath, content: &[u8]) -> StorageResult<()>;

    /// Writes a small file only if there is none at `path`, atomically: of several writers
    /// racing, exactly one gets true; the others get false and leave the file as the winner
    /// wrote it. The compare-and-swap that several instances agree through (an upload's next
    /// append, the collector's lease). Not durable on the filesystem, like
    /// [`StorageDriver::put_small`].
    async fn create_new(&self, path: &StoragePath, content: &[u8]) -> StorageResult<bool>;

    /// Whether several daemons may serve this store at once (an object store behind a
    /// load balancer): what they share then lives in the store, not only in memory.
    fn shared_by_instances(&self) -> bool;

    /// Whether a directory's modification time ([`StorageDriver::stat`]) changes whenever an
    /// entry is made or removed in it (a local filesystem), so that a listing read earlier
    /// can be checked with one `stat` instead of read again. Object stores have no
    /// directories.
    fn directory_times_track_entries(&self) -> bool;

    /// Puts several files in place, each atomically, all durable when this returns, in
    /// stages: no file of a stage becomes visible, even after a crash, before every file of
    /// the stages before it is durable. (A tag must never point at a revision that a crash
    /// could lose, nor a link at a blob.) Backends make this cheaper than one
    /// [`StorageDriver::put_content`] after another: the filesystem waits for the disk once
    /// for all the content and once per stage, not twice per file, and shares those waits
    /// between requests. The plain way: [`put_staged_in_turn`].
    async fn put_staged(&self, stages: &[&[(StoragePath, Staged)]]) -> StorageResult<()>;

    /// Opens a stream at `offset`; returns it with the file's total size.
    async fn reader(&self, path: &StoragePath, offset: u64) -> StorageResult<(BlobReader, u64)>;

    /// Streams `len` bytes from `offset`: [`chunks_from_reader`] reads through
    /// [`StorageDriver::reader`]; backends do better, reading ahead without holding a thread
    /// while the client is slow.
    async fn read_chunks(
        &self,
        path: &StoragePath,
        offset: u64,
        len: u64,
    ) -> StorageResult<ChunkStream>;

    /// The file itself, opened for reading, where the backend keeps content in local files:
    /// the connection can then send it with `sendfile(2)`, without copying it through
    /// buffers. `None` where there is no such file (object stores, memory).
    async fn open_file(&self, path: &StoragePath) -> StorageResult<Option<std::fs::File>>;

    /// Opens a writer; with `append`, continues an existing file (created if missing).
    async fn writer(&self, path: &StoragePath, append: bool) -> StorageResult<Box<dyn FileWriter>>;

    /// A writer of a whole new file that appears at `path` only when [`FileWriter::close`]
    /// succeeds, all at once: until then no reader, on this instance or another, finds
    /// anything new there, and [`FileWriter::cancel`] or dropping the writer leaves nothing.
    /// For content checked before it is published (a blob whose digest is known as its
    /// bytes arrive), instead of writing it elsewhere and moving it into place. `None` where
    /// the backend has nothing cheaper than that move (a local rename costs nothing).
    async fn whole_writer(
        &self,
        _path: &StoragePath,
    ) -> StorageResult<Option<Box<dyn FileWriter>>> {
        Ok(None)
    }

    async fn stat(&self, path: &StoragePath) -> StorageResult<FileInfo>;

    /// Names of the direct children of a directory, unsorted.
    async fn list(&self, path: &StoragePath) -> StorageResult<Vec<String>>;

    /// Every directory under `root` that directly contains an entry named `marker`, as paths
    /// relative to `root` joined with `/`, not descending into entries whose names start
    /// with `_` (the registry's metadata). Used for the catalog. [`walk_for_marker`] walks
    /// with [`StorageDriver::list`]; backends do it in one go.
    async fn find_directories_with(
        &self,
        root: &StoragePath,
        marker: &str,
    ) -> StorageResult<Vec<String>>;

    /// Moves a file into place, replacing any file already there, atomically where the
    /// backend allows.
    async fn rename(&self, from: &StoragePath, to: &StoragePath) -> StorageResult<()>;

    /// Removes a file or a whole directory tree.
    async fn delete(&self, path: &StoragePath) -> StorageResult<()>;

    /// A URL the client can fetch `path` from directly with `method` (a presigned S3 URL),
    /// so the bytes do not pass through us; `None` when the backend has no such URL and we
    /// serve them.
    async fn redirect_url(
        &self,
        path: &StoragePath,
        method: &http::Method,
    ) -> StorageResult<Option<String>>;

    /// Checks at start-up that data can be written (READY=1 waits for this).
    async fn check_writable(&self) -> StorageResult<()>;

    /// Tries, without waiting, to become the only process of ours using the store (a
    /// daemon starting, an offline command). While it is, no other process writes, so
    /// every leftover of an interrupted write that is not this process's own is abandoned,
    /// whatever its age. Ends with [`StorageDriver::use_shared`], which a process that is
    /// not alone calls before it writes. Backends
    /// that cannot tell answer false: never alone, so leftovers are only taken once they
    /// are old enough that no write can still be using them.
    async fn use_alone(&self) -> StorageResult<bool>;

    /// Uses the store alongside other processes from now on, for as long as the driver
    /// lives; waits while another process uses it alone. Nothing to do for backends that
    /// cannot tell.
    async fn use_shared(&self) -> StorageResult<()>;

    /// What this backend's interrupted writes left under `under`: temporaries never moved
    /// into place, last modified before `before` (whatever their age with `None`), and the
    /// directories that held nothing else. Never a temporary of this process's own writes
    /// in flight, so it may run while they go on. With `remove`, removes them; a directory
    /// only while it is empty, so a write that starts in it meanwhile keeps it. Backends
    /// whose writes leave nothing behind find none.
    async fn leftovers(
        &self,
        under: &StoragePath,
        before: Option<SystemTime>,
        remove: bool,
    ) -> StorageResult<Vec<Leftover>>;

    /// Finishes the writes that processes now gone acknowledged through their journal
    /// (see [`StorageDriver::journal_writes`]) but may not have made durable in place: a
    /// process starting calls it once, before it serves or writes. How many it finished
    /// (none where there is no journal).
    async fn replay_journals(&self) -> StorageResult<usize>;

    /// From now on staged writes of new content only (manifest PUTs) may be acknowledged
    /// once a journal beside the store holds them, and reach their place durably later:
    /// for the daemon, which calls [`StorageDriver::flush`] when it stops. Nothing to do for
    /// backends without one.
    async fn journal_writes(&self);

    /// Makes every acknowledged write durable in its place and removes the journal: a
    /// clean stop.
    async fn flush(&self) -> StorageResult<()>;
}

/// [`StorageDriver::put_staged`] the plain way: one file after another, each with
/// `put_content` or `rename`, for backends where every write is durable once answered.
pub async fn put_staged_in_turn<D: StorageDriver + ?Sized>(
    driver: &D,
    stages: &[&[(StoragePath, Staged)]],
) -> StorageResult<()> {
    for stage in stages {
        for (path, what) in stage.iter() {
            match what {
                Staged::Content(content) => driver.put_content(path, content).await?,
                Staged::MovedFrom(from) => driver.rename(from, path).await?,
            }
        }
    }
    Ok(())
}

/// [`StorageDriver::read_chunks`] through [`StorageDriver::reader`].
pub async fn chunks_from_reader<D: StorageDriver + ?Sized>(
    driver: &D,
    path: &StoragePath,
    offset: u64,
    len: u64,
) -> StorageResult<ChunkStream> {
    use tokio::io::AsyncReadExt;
    let (reader, _) = driver.reader(path, offset).await?;
    Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
        reader.take(len),
        READ_CHUNK,
    )))
}

/// [`StorageDriver::find_directories_with`] by walking with [`StorageDriver::list`].
pub async fn walk_for_marker<D: StorageDriver + ?Sized>(
    driver: &D,
    root: &StoragePath,
    marker: &str,
) -> StorageResult<Vec<String>> {
    let mut out = Vec::new();
    let mut stack: Vec<(StoragePath, String)> = vec![(root.clone(), String::new())];
    while let Some((dir, name)) = stack.pop() {
        let children = match driver.list(&dir).await {
            Ok(c) => c,
            Err(StorageError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        if !name.is_empty() && children.iter().any(|c| c == marker) {
            out.push(name.clone());
        }
        for c in children {
            if c.starts_with('_') {
                continue;
            }
            let child_name = if name.is_empty() {
                c.clone()
            } else {
                format!("{name}/{c}")
            };
            if let Ok(p) = dir.join(&c) {
                stack.push((p, child_name));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_refuse_traversal() {
        assert!(StoragePath::new(["a", "b/c"]).is_ok());
        for bad in [
            vec!["a", ".."],
            vec!["a/../b"],
            vec![""],
            vec!["a//b"],
            vec!["/a"],
        ] {
            assert!(StoragePath::new(bad.clone()).is_err(), "{bad:?}");
        }
    }
}
